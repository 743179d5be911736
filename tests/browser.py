"""Debian's Chromium, headless, driven by Playwright: the console's pages as a person sees them.

Playwright's Python package drives the system's ``/usr/bin/chromium`` (Debian package
``chromium``); it never downloads a browser of its own. Where the package or the browser is
missing the test is skipped with the reason, except under ``CI=1`` where it fails
(:func:`tests.e2e.missing`).

Example::

    require_browser()
    with chromium() as browser:
        tab = Tab.open(browser, "http://127.0.0.1:9481")
        tab.login("anna", "a long password")
        tab.page.wait_for_selector("#agent-state")
        tab.shot("agent", tmp_path)

The pages run under the console's strict Content-Security-Policy (nothing is bypassed): a page
that breaks it, or throws, leaves its message in :attr:`Tab.errors`, which the tests check.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e import missing

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
SCREENSHOTS_ENV = "CONSOLE_SCREENSHOTS"
"""A folder the tests also save their screenshots to (``docs/screenshots`` refreshes the
README's)."""
VIEWPORT = {"width": 1280, "height": 800}


def require_browser() -> None:
    """Skip (fail under CI=1) where Playwright's package or Debian's Chromium is absent."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("the playwright package is not installed",
                "pip install -e '.[test]' installs it; it drives Debian's chromium")
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is not installed", "Debian package chromium; "
                "scripts/system-deps.sh installs it")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright's sync Browser), closed on the way out."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """One signed-in person: a browser context of its own (cookies), one page."""

    page: Any
    base: str
    errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Any, base: str, viewport: dict[str, int] | None = None,
             lang: str = "en-GB") -> Tab:
        context = browser.new_context(base_url=base, viewport=viewport or VIEWPORT,
                                      locale=lang)
        context.set_default_timeout(10_000)
        page = context.new_page()
        tab = cls(page, base.rstrip("/"))
        page.on("pageerror", lambda exc: tab.errors.append(f"page error: {exc}"))
        page.on("console", tab._console)
        page.on("response", lambda res: tab.errors.append(f"HTTP {res.status}: {res.url}")
                if res.status >= 400 else None)
        return tab

    def _console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        where = str((msg.location or {}).get("url", ""))
        if where.endswith("/favicon.ico"):  # the browser's own request, no page's
            return
        self.errors.append(f"console {msg.type}: {msg.text} ({where})")

    def login(self, name: str, password: str) -> None:
        """Sign in through the login form, as a person does; waits for the page after it."""
        self.page.goto("/login")
        self.page.fill("input[name=name]", name)
        self.page.fill("input[name=password]", password)
        with self.page.expect_navigation():
            self.page.click("form.login-form button[type=submit]")
        assert "/login" not in self.page.url, f"{name} not signed in: {self.page.url}\n" \
                                              f"{self.page.content()[:2000]}"

    def shot(self, name: str, folder: Path, full_page: bool = False) -> Path:
        """A PNG of the page from its top as *folder*/NAME.png and, when CONSOLE_SCREENSHOTS
        is set, there too."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        self.page.evaluate("window.scrollTo(0, 0)")  # a click may have scrolled it
        self.page.screenshot(path=str(path), full_page=full_page)
        extra = os.environ.get(SCREENSHOTS_ENV)
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(extra) / path.name)
        return path

    def close(self) -> None:
        self.page.context.close()


# -- the wallboard's figures against /metrics ---------------------------------------------------
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def sample_key(text: str) -> str:
    """A metric sample's name and labels as one comparable string, labels sorted:
    ``ivr_agents{state="available"}``."""
    found = _SAMPLE.match(text.strip())
    if found is None:
        raise ValueError(f"not a metric sample name: {text!r}")
    name, labels = found.group(1), found.group(2) or ""
    pairs = sorted(_LABEL.findall(labels))
    if not pairs:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition as {sample key: value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[sample_key(name)] = float(value)
    return out


def page_metrics(page: Any) -> dict[str, float]:
    """Every ``[data-metric]`` element's ``data-value`` on *page*, by sample key (all read in
    one script run, so at one moment of the page)."""
    pairs = page.eval_on_selector_all(
        "[data-metric]", "els => els.map(e => [e.dataset.metric, e.dataset.value])")
    out: dict[str, float] = {}
    for metric, value in pairs:
        key = sample_key(metric)
        number = float(value)
        if key in out and out[key] != number:
            raise AssertionError(f"the page shows {metric} twice, as {out[key]} and {value}")
        out[key] = number
    return out

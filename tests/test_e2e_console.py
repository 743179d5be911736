"""End to end: the console in a real browser while real calls go through the switchboard.

A real `ivr run` process on loopback with its console on a free port, accounts made with
`ivr user add --password-stdin` on its store, real pjsua2 peers (a caller who calls twice,
agent anna's phone, supervisor laura's phone) and Debian's Chromium, headless, driven by
Playwright (tests/browser.py). One scenario, as a working day goes:

1. anna signs in through the login form and sees her state. The caller keys through the IVR
   into the support queue and anna's phone rings: from the INVITE her phone receives (its
   own timestamp) to her page showing the offered call with the caller's number, under 1 s.
2. Her phone answers; the caller hangs up; in wrap-up anna picks a disposition, writes a note
   and saves: both are in the SQLite store file, and she is available again.
3. anna pauses from her page; the caller calls again and waits in the queue. Supervisor
   laura's wallboard shows the same figures as /metrics at one moment (two scrapes around the
   read of the page, equal): every ``[data-metric]`` element's ``data-value``. Again once
   anna, unpaused, talks to the caller, on laura's wallboard (her queues) and the admin's
   (every queue, the switchboard's totals); anna's page lists the first call, with her note,
   among the caller's previous calls.
4. laura clicks listen on anna's row: the box calls laura's phone, which answers and hears
   the caller's tone.
5. Screenshots of each page (login, agent desktop with a call, wallboard and its TV mode,
   reports, flows) in the test's folder and, with CONSOLE_SCREENSHOTS=DIR, there too (that is
   how docs/screenshots/ is refreshed).

Every page runs under the console's Content-Security-Policy unchanged: a script it refuses or a
script error fails the test. Waits are Playwright's and the peers' events, no fixed sleeps.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Tab, chromium, page_metrics, parse_metrics, require_browser
from tests.e2e import (
    ROOT,
    Peer,
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_sip_stack,
    wait_until,
)
from tests.support.audio import AGENT_TONE_HZ, CALLER_TONE_HZ, ToneFollower, make_tone_wav

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
CALLER = "3331112222"
"""The caller, who calls twice: on the second call anna sees the first, with her note."""
OFFER_TO_PAGE_S = 1.0
"""The issue's bound: the caller's context on the agent's page within 1 s of the offer."""
ANSWER_AFTER_S = 2.5
"""anna's phone rings this long before it answers: the page shows the offer meanwhile."""
NOTE = "Asked about the invoice of March; call back on Monday."
CLOCK_METRICS = ("ivr_queue_longest_wait_seconds",)
"""Gauges that grow with the clock while a caller waits: no two moments agree on them, so
the page's figure must lie between the scrapes around it (less the view's age, a second)."""
HEARD_S = 2.0
"""laura must hear the caller's tone for this long, without a break."""


@dataclass
class Box:
    sb: Switchboard
    console: str
    laura_port: int


def add_user(config: Path, name: str, role: str, *extra: str) -> None:
    """``ivr user add`` as a technician runs it, the password on standard input."""
    done = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "user", "add", name, "--role", role, "--lang", "en",
         "--password-stdin", "--config", str(config), *extra],
        input=PASSWORD + "\n", text=True, capture_output=True, cwd=ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, f"ivr user add {name}: {done.stdout}{done.stderr}"


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    require_sip_stack()
    require_browser()
    laura_port, console_port = free_udp_port(), free_tcp_port()
    sb = Switchboard(
        tmp_path, free_udp_port(), free_tcp_port(), agents={"anna": free_udp_port()},
        queues=("  support: {agents: [anna], ring_timeout: 10, retry_delay: 1, wrap_up: 120,\n"
                "            script: \"Good morning, support, this is {agent}. Caller {caller}: "
                "ask for the invoice number.\"}\n"
                "  sales: {agents: [anna], ring_timeout: 10}"),
        extra_config=(f"console: 127.0.0.1:{console_port}\n"
                      "supervisors:\n"
                      f"  laura: {{uri: \"sip:laura@127.0.0.1:{laura_port}\", "
                      "queues: [support]}\n"
                      "dispositions:\n"
                      "  \"1\": {label: resolved, resolves: true}\n"
                      "  \"2\": {label: callback}\n"))
    config = sb.write_config()
    add_user(config, "anna", "agent", "--agent", "anna")
    add_user(config, "laura", "supervisor", "--supervisor", "laura")
    add_user(config, "boss", "admin")
    sb.start()
    url = f"http://127.0.0.1:{console_port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as res:
                return bool(res.status == 200)
        except OSError:
            return False

    wait_until(healthy, "the console answering /healthz", 15, details=sb.log_tail)
    yield Box(sb, url, laura_port)
    assert sb.stop() == 0, sb.log_tail()
    assert "Traceback" not in sb.log_path.read_text(), sb.log_tail()


def record_of(db: Path, caller: str) -> dict[str, Any] | None:
    """The caller's call row, read from the store file as any reader would."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM calls WHERE caller = ? ORDER BY started_at DESC",
                          (caller,)).fetchone()
    return dict(row) if row is not None else None


def figures_agree(sb: Switchboard, tab: Tab, must: dict[str, float],
                  timeout: float = 10.0) -> dict[str, float]:
    """The wallboard's ``[data-metric]`` figures, once they equal /metrics at one moment: a
    scrape, the page, a scrape; compared when the two scrapes agree on what the page shows.
    *must*: figures the page has to show, with their values."""
    last: list[str] = ["nothing read"]

    def check() -> dict[str, float] | None:
        before = parse_metrics(sb.metrics())
        shown = page_metrics(tab.page)
        after = parse_metrics(sb.metrics())
        exact = {k: v for k, v in shown.items() if not k.startswith(CLOCK_METRICS)}
        clock = {k: v for k, v in shown.items() if k.startswith(CLOCK_METRICS)}
        if any(before.get(k) != after.get(k) for k in exact):
            last[0] = "the figures changed between two scrapes"
            return None
        wrong = {k: (v, before.get(k)) for k, v in exact.items() if before.get(k) != v}
        wrong.update({k: (v, before.get(k), after.get(k)) for k, v in clock.items()
                      if k not in before or k not in after
                      or not before[k] - 1.0 - 1e-6 <= v <= after[k] + 1e-6})
        absent = {k: v for k, v in must.items() if shown.get(k) != v}
        if wrong or absent:
            last[0] = (f"page != /metrics (page, metrics): {wrong}; "
                       f"expected on the page: {absent}; page shows {shown}")
            return None
        return shown

    return wait_until(check, "the wallboard's figures equal to /metrics", timeout,
                      interval=0.1, details=lambda: last[0])


def test_agent_desktop_wallboard_and_listen_in_a_real_browser(box: Box, tmp_path: Path) -> None:
    sb = box.sb
    shots = tmp_path / "screenshots"
    heard = tmp_path / "heard"
    heard.mkdir()
    started = time.monotonic()
    anna_phone = peer(tmp_path, "anna", "agent", sb.agents["anna"],
                      "--answer-after", str(ANSWER_AFTER_S),
                      "--play", str(make_tone_wav(tmp_path / "anna.wav", AGENT_TONE_HZ, 90)),
                      "--duration", "90").start()
    laura_phone = peer(tmp_path, "laura", "agent", box.laura_port, "--answer-after", "0.2",
                       "--record-dir", str(heard), "--duration", "90").start()
    peers: list[Peer] = [anna_phone, laura_phone]
    tabs: list[Tab] = []
    try:
        with chromium() as browser:
            # -- 1. anna signs in; a call is offered to her: on her page within 1 s --------------
            anna = Tab.open(browser, box.console)
            tabs.append(anna)
            anna.page.goto("/login")
            anna.page.wait_for_selector("form.login-form")
            anna.shot("login", shots)
            anna.login("anna", PASSWORD)
            assert anna.page.url.endswith("/agent"), anna.page.url
            anna.page.wait_for_selector('#agent-state[data-state="available"]')
            first = peer(tmp_path, CALLER, "caller", free_udp_port(), "--target", sb.uri,
                         "--digits", "2,1", "--first-digit-after", "0.5", "--digit-gap", "0.5",
                         "--duration", "60").start()
            peers.append(first)
            shown_at = float(anna.page.wait_for_function(
                """caller => {
                    const panel = document.querySelector('#call-panel');
                    const number = document.querySelector('#call-caller');
                    return panel && panel.dataset.offered === '1' && number
                        && number.textContent.includes(caller) && Date.now() / 1000;
                }""", arg=CALLER, timeout=30_000).json_value())
            (invite,) = anna_phone.wait_event("incoming", timeout=5)
            offer_to_page = shown_at - float(invite["t"])
            print(f"offer -> page: {offer_to_page * 1000:.0f} ms")
            assert offer_to_page < OFFER_TO_PAGE_S, (offer_to_page, anna_phone.output())
            assert anna.page.get_attribute("#call-panel", "data-call-id"), \
                anna.page.inner_html("#call-panel")
            assert "support" in anna.page.inner_text("#call-queue")
            assert CALLER in anna.page.inner_text("#call-script")

            # -- 2. answered; the caller hangs up; disposition and note saved in wrap-up -------
            anna_phone.wait_event("confirmed", timeout=15)
            anna.page.wait_for_selector('#agent-state[data-state="on_call"]')
            first.stop()  # the caller hangs up (BYE)
            anna.page.wait_for_selector('#agent-state[data-state="wrap_up"]')
            form = anna.page.locator("#wrapup-form")
            form.locator("select[name=disposition]").select_option("1")
            form.locator("textarea[name=note]").fill(NOTE)
            form.locator("select[name=ticket]").select_option("")
            anna.page.click("button#wrapup-save")
            anna.page.wait_for_selector('#notice[data-ok="1"]')
            anna.page.wait_for_selector('#agent-state[data-state="available"]')

            def saved() -> dict[str, Any] | None:
                row = record_of(sb.db, CALLER)
                if row is None or row["disposition"] != "1" or NOTE not in (row["note"] or ""):
                    return None
                return row

            row = wait_until(saved, "disposition 1 and the note in the store", 10,
                             details=lambda: f"row: {record_of(sb.db, CALLER)}")
            assert row["agent"] == "anna", row

            # -- 3. a caller waits (anna paused): the wallboard equals /metrics ----------------
            laura = Tab.open(browser, box.console)
            tabs.append(laura)
            laura.login("laura", PASSWORD)
            laura.page.goto("/wallboard")
            laura.page.wait_for_selector('tr[data-agent="anna"]')
            reason = anna.page.eval_on_selector(
                "#pause-reason", "s => [...s.options].map(o => o.value).find(v => v) || ''")
            anna.page.select_option("#pause-reason", reason)
            anna.page.click("#btn-pause")
            anna.page.wait_for_selector('#agent-state[data-state="paused"]')
            second = peer(tmp_path, CALLER, "caller", free_udp_port(), "--target",
                          sb.uri, "--digits", "2,1", "--first-digit-after", "0.5",
                          "--digit-gap", "0.5",
                          "--play", str(make_tone_wav(tmp_path / "caller.wav", CALLER_TONE_HZ,
                                                      90)),
                          "--duration", "90").start()
            peers.append(second)
            laura.page.wait_for_selector(
                '[data-queue="support"] [data-figure="waiting"][data-value="1"]', timeout=20_000)
            figures_agree(sb, laura, {'ivr_queue_callers_waiting{queue="support"}': 1.0,
                                      'ivr_queue_agents{queue="support",state="paused"}': 1.0})

            # -- 4. anna talks to the caller; laura listens from her wallboard -----------------
            anna.page.click("#btn-unpause")
            anna_phone.wait_event("confirmed", count=2, timeout=20)
            anna.page.wait_for_selector('#agent-state[data-state="on_call"]')
            earlier = anna.page.locator(f'#call-history tr[data-call-id="{row["call_id"]}"]')
            earlier.wait_for()
            assert NOTE in earlier.inner_text(), anna.page.inner_html("#call-history")
            anna.shot("agent", shots)
            laura.page.wait_for_selector(
                '[data-queue="support"] [data-figure="waiting"][data-value="0"]')
            figures_agree(sb, laura, {'ivr_queue_callers_waiting{queue="support"}': 0.0,
                                      'ivr_queue_agents{queue="support",state="on_call"}': 1.0})
            laura.shot("wallboard", shots)
            # the admin's wallboard shows every queue, and the switchboard's totals
            boss = Tab.open(browser, box.console)
            tabs.append(boss)
            boss.login("boss", PASSWORD)
            boss.page.goto("/wallboard")
            boss.page.wait_for_selector('[data-figure="calls_in_progress"][data-value="1"]')
            figures_agree(sb, boss, {'ivr_queue_callers_waiting{queue="support"}': 0.0,
                                     'ivr_queue_callers_waiting{queue="sales"}': 0.0,
                                     'ivr_agents{state="on_call"}': 1.0,
                                     "ivr_calls_in_progress": 1.0})
            laura.page.click('button[data-action="listen"][data-agent="anna"]')
            laura.page.wait_for_selector('#supervise-result[data-ok="1"]')
            laura_phone.wait_event("confirmed", timeout=15)
            (recording,) = laura_phone.wait_event("recording", timeout=10)
            follower = ToneFollower(recording["path"], (CALLER_TONE_HZ, AGENT_TONE_HZ))
            wait_until(lambda: follower.poll().longest_run_s(CALLER_TONE_HZ) >= HEARD_S,
                       f"laura hearing the caller's tone for {HEARD_S} s", 20, interval=0.1,
                       details=lambda: follower.poll().timeline())
            track = follower.poll()
            assert track.seconds(AGENT_TONE_HZ) >= 1.0, track.timeline()

            # -- 5. the other pages, for the eye --------------------------------------------------
            tv = laura.page.context.new_page()
            tv.set_viewport_size({"width": 1920, "height": 1080})  # a wall screen
            tv.goto("/wallboard?tv=1")
            tv.wait_for_selector("body.tv")
            tv.wait_for_selector('tr[data-agent="anna"]')
            tv.wait_for_selector('[data-queue="support"] [data-figure="waiting"]')
            Tab(tv, box.console, laura.errors).shot("wallboard-tv", shots)
            for name in ("reports", "flows"):
                answer = boss.page.goto(f"/{name}")
                assert answer is not None, name
                assert answer.ok, (name, answer.status)
                boss.page.wait_for_load_state("load")
                boss.shot(name, shots, full_page=True)
            errors = [e for tab in tabs for e in tab.errors]
            assert errors == [], errors
    finally:
        for p in reversed(peers):
            p.stop()
    elapsed = time.monotonic() - started
    print(f"scenario: {elapsed:.1f} s; screenshots in {shots}")
    for name in ("login", "agent", "wallboard", "wallboard-tv", "reports", "flows"):
        assert (shots / f"{name}.png").stat().st_size > 1000, name

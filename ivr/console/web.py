"""The console's web server: aiohttp on a thread of its own, beside the switchboard's loop.

Why aiohttp: one thread and one asyncio loop serve every page and every open live stream
(Server-Sent Events), which a wallboard keeps open all day; a threaded WSGI server would hold a
thread per open stream. It is well kept, has wheels for the Pi, and needs nothing else to serve.

What every request goes through (:func:`_guard`):

- the security headers (a strict Content-Security-Policy: scripts and styles from this server
  only, no inline script, no framing);
- who is asking: a session cookie (pages, and the API from the pages' own scripts) or an API
  token (``Authorization: Bearer``, the API only). Anonymous requests reach only ``/login``,
  ``/static/`` and ``/healthz``;
- for a request that changes something under a session: its CSRF token (form field ``csrf`` or
  header ``X-CSRF-Token``) must be the session's.

Pages live in :mod:`ivr.console.pages`: every module there with a ``setup(app, console)`` adds
its routes. They read :class:`Console` (the loop's published view, the store, the accounts) and
post commands to the loop's inbox; they never touch call state.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import importlib
import logging
import pkgutil
import secrets
import sqlite3
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from ivr.console.accounts import Accounts, LockedOut, Session, User
from ivr.console.hub import Hub
from ivr.console.i18n import LANGS, translator
from ivr.errors import StartupError

log = logging.getLogger("ivr.console")

SESSION_COOKIE = "centralino_session"
LOGIN_COOKIE = "centralino_login"
LANG_COOKIE = "centralino_lang"
PUBLIC = ("/login", "/static/", "/healthz", "/favicon.ico")
ROLE_RANK = {"agent": 0, "team_leader": 1, "supervisor": 2, "admin": 3}
HOME = {"agent": "/agent", "team_leader": "/reports", "supervisor": "/wallboard",
        "admin": "/wallboard"}
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
PACKAGE = Path(__file__).parent

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Console:
    """What the pages work with. ``post`` puts a message in the switchboard's inbox."""

    config: Any
    """The switchboard's :class:`ivr.config.Config`."""
    hub: Hub
    accounts: Accounts
    post: Callable[[Any], None]
    store_path: Path
    lang: str = "it"
    session_hours: float = 12.0
    secure_cookies: bool = False
    metrics: Any = None
    """The switchboard's :class:`ivr.metrics.Metrics` (None in tests without one)."""
    reloader: Any = None
    """The flows' :class:`ivr.driver.service.Reloader` (None: flows cannot be reloaded)."""
    templates: jinja2.Environment = field(init=False)
    pool: ThreadPoolExecutor = field(init=False)
    _local: threading.local = field(init=False, default_factory=threading.local)

    def __post_init__(self) -> None:
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(PACKAGE / "templates")),
            autoescape=jinja2.select_autoescape(("html", "svg")),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="console-io")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """*fn(args)* on the console's I/O threads (SQLite, password hashing, files): the
        event loop never waits on a disk."""
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, functools.partial(fn, *args))

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{quote(str(self.store_path))}?mode=ro", uri=True,
                                 timeout=5, check_same_thread=False)
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """*fn(connection)* with a read-only connection to the store, on an I/O thread."""
        return await self.run(lambda: fn(self._reader()))

    async def audit(self, request: web.Request, action: str, target: str = "",
                    detail: dict[str, Any] | None = None) -> None:
        """Write what the request's user changed to the audit log."""
        user: User | None = request.get("user")
        await self.run(self.accounts.audit, user, client_address(request), action, target,
                       detail, time.time())

    def render(self, request: web.Request, template: str, status: int = 200,
               **context: Any) -> web.Response:
        user: User | None = request.get("user")
        session: Session | None = request.get("session")
        lang = request_lang(request, self)
        body = self.templates.get_template(template).render(
            user=user, csrf=session.csrf if session else "", lang=lang, langs=LANGS,
            t=translator(lang), path=request.path, nav=nav_for(user), **context)
        return web.Response(text=body, status=status, content_type="text/html")


CONSOLE = web.AppKey("console", Console)


def client_address(request: web.Request) -> str:
    return request.remote or "?"


def request_lang(request: web.Request, console: Console) -> str:
    user: User | None = request.get("user")
    for lang in (request.cookies.get(LANG_COOKIE, ""), user.lang if user else "",
                 console.lang):
        if lang in LANGS:
            return lang
    return "it"


def nav_for(user: User | None) -> list[tuple[str, str]]:
    """(path, label key) of the pages the user may open."""
    if user is None:
        return []
    rank = ROLE_RANK.get(user.role, -1)
    items = []
    if user.role == "agent" or user.agent:
        items.append(("/agent", "nav.agent"))
    if rank >= ROLE_RANK["supervisor"]:
        items.append(("/wallboard", "nav.wallboard"))
    if rank >= ROLE_RANK["team_leader"]:
        items.append(("/reports", "nav.reports"))
        items.append(("/campaigns", "nav.campaigns"))
    if rank >= ROLE_RANK["admin"]:
        items.append(("/flows", "nav.flows"))
        items.append(("/audit", "nav.audit"))
    return items


def require(request: web.Request, minimum: str) -> User:
    """The request's user if their role is at least *minimum*; else 403."""
    user: User | None = request.get("user")
    if user is None:
        raise web.HTTPUnauthorized()
    if ROLE_RANK.get(user.role, -1) < ROLE_RANK[minimum]:
        raise web.HTTPForbidden(text="Your role does not allow this page.")
    return user


def require_agent(request: web.Request) -> tuple[User, str]:
    """The request's user and the agent (ivr.yaml) their account is tied to; else 403."""
    user: User | None = request.get("user")
    if user is None:
        raise web.HTTPUnauthorized()
    if not user.agent:
        raise web.HTTPForbidden(text="This account is not tied to an agent.")
    return user, user.agent


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


async def request_fields(request: web.Request) -> dict[str, str]:
    """A command's fields, from JSON (a page's script) or a form, as strings; 400 when the
    body cannot be read."""
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="The request could not be read.") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="The request could not be read.")
        return {str(k): "" if v is None else str(v) for k, v in data.items()}
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _is_public(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC)


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    console = console_of(request)
    try:
        response = await _authorised(request, handler, console)
    except web.HTTPException as exc:
        response = exc
        if exc.status == 401 and request.method == "GET" and \
                not request.path.startswith("/api/") and \
                "text/event-stream" not in request.headers.get("Accept", ""):
            response = web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
    _headers(response, request)
    if isinstance(response, web.HTTPException) and not response.body and \
            response.status >= 400:
        response.text = f"{response.status}: {response.reason}"
    return response


async def _authorised(request: web.Request, handler: Handler,
                      console: Console) -> web.StreamResponse:
    if _is_public(request.path):
        return await handler(request)
    now = time.time()
    bearer = request.headers.get("Authorization", "")
    if bearer.startswith("Bearer ") and request.path.startswith("/api/"):
        user = await console.run(console.accounts.token_user, bearer[7:].strip(), now)
        if user is None:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
        request["user"] = user
        request["via"] = "token"
        return await handler(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    session = await console.run(console.accounts.session, token, now) if token else None
    if session is None:
        raise web.HTTPUnauthorized()
    request["user"] = session.user
    request["session"] = session
    request["via"] = "session"
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        await _check_csrf(request, session)
    return await handler(request)


async def _check_csrf(request: web.Request, session: Session) -> None:
    sent = request.headers.get("X-CSRF-Token", "")
    if not sent and request.content_type in ("application/x-www-form-urlencoded",
                                             "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf", "")
        sent = value if isinstance(value, str) else ""
    if not sent or not hmac.compare_digest(sent, session.csrf) or not _same_origin(request):
        log.warning("console: %s %s from %s refused: missing or wrong CSRF token",
                    request.method, request.path, client_address(request))
        raise web.HTTPForbidden(text="The form is stale or came from another site: reload "
                                     "the page and try again.")


def _headers(response: web.StreamResponse, request: web.Request) -> None:
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")


# -- login, logout, language ---------------------------------------------------------------
async def login_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    pre = secrets.token_urlsafe(24)
    response = console.render(request, "login.html", pre=pre, error="",
                              next=request.query.get("next", ""))
    response.set_cookie(LOGIN_COOKIE, pre, httponly=True, samesite="Strict",
                        secure=console.secure_cookies, path="/login")
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    pre = request.cookies.get(LOGIN_COOKIE, "")
    sent = str(form.get("csrf", ""))
    address = client_address(request)
    t = translator(request_lang(request, console))
    next_path = str(form.get("next", ""))
    if not pre or not hmac.compare_digest(pre, sent) or not _same_origin(request):
        return console.render(request, "login.html", status=403, pre=pre,
                              error=t("login.stale"), next=next_path)
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    now = time.time()
    try:
        user = await console.run(console.accounts.login, name, password, address, now)
    except LockedOut as exc:
        log.warning("console: login from %s refused: locked out for %.0f s after too many "
                    "wrong passwords", address, exc.retry_after)
        return console.render(request, "login.html", status=429, pre=pre, next=next_path,
                              error=t("login.locked").format(
                                  minutes=max(1, round(exc.retry_after / 60))))
    if user is None:
        log.info("console: wrong name or password from %s", address)
        return console.render(request, "login.html", status=401, pre=pre, next=next_path,
                              error=t("login.wrong"))
    session = await console.run(console.accounts.new_session, user, address, now,
                                console.session_hours)
    request["user"] = user
    await console.audit(request, "login")
    log.info("console: %s (%s) logged in from %s", user.name, user.role, address)
    target = next_path if next_path.startswith("/") and not next_path.startswith("//") \
        else HOME.get(user.role, "/")
    response = web.HTTPSeeOther(target)
    response.set_cookie(SESSION_COOKIE, session.token, httponly=True, samesite="Strict",
                        secure=console.secure_cookies, path="/",
                        max_age=int(console.session_hours * 3600))
    response.del_cookie(LOGIN_COOKIE, path="/login")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    await console.audit(request, "logout")
    await console.run(console.accounts.end_session, token)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def set_lang(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    lang = str(form.get("lang", ""))
    back = str(form.get("back", "/"))
    response = web.HTTPSeeOther(back if back.startswith("/") and not back.startswith("//")
                                else "/")
    if lang in LANGS:
        response.set_cookie(LANG_COOKIE, lang, samesite="Strict", path="/",
                            secure=console_of(request).secure_cookies, max_age=365 * 86400)
    return response


async def home(request: web.Request) -> web.StreamResponse:
    user: User = request["user"]
    raise web.HTTPSeeOther(HOME.get(user.role, "/login"))


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok\n")


async def audit_page(request: web.Request) -> web.StreamResponse:
    require(request, "admin")
    console = console_of(request)
    who = request.query.get("user") or None
    entries = await console.run(lambda: console.accounts.audit_log(limit=500, user=who))
    return console.render(request, "audit.html", entries=entries, who=who or "")


def build_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=4 * 1024 * 1024)
    app[CONSOLE] = console
    app.router.add_get("/", home)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_post("/lang", set_lang)
    app.router.add_get("/audit", audit_page)
    app.router.add_static("/static/", PACKAGE / "static", append_version=False)
    from ivr.console import pages

    for info in pkgutil.iter_modules(pages.__path__):
        module = importlib.import_module(f"{pages.__name__}.{info.name}")
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(app, console)
    return app


class ConsoleServer:
    """The console on its own thread: :meth:`start` returns once it listens (or raises
    :class:`StartupError` when it cannot), :meth:`stop` closes it."""

    def __init__(self, console: Console, host: str, port: int,
                 tls: tuple[Path, Path] | None = None):
        self.console = console
        self.host, self.port = host, port
        self.tls = tls
        self.aloop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="console", daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/"

    def start(self) -> None:
        self.thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise StartupError(f"the console cannot listen on {self.host}:{self.port}: "
                               f"{self._error}")

    def _work(self) -> None:
        aloop = asyncio.new_event_loop()
        self.aloop = aloop
        asyncio.set_event_loop(aloop)
        try:
            aloop.run_until_complete(self._open())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            aloop.close()
            return
        self.console.hub.bind(aloop)
        self._ready.set()
        try:
            aloop.run_forever()
        finally:
            self.console.hub.bind(None)
            aloop.run_until_complete(self._close())
            aloop.close()

    async def _open(self) -> None:
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
        self._runner = web.AppRunner(build_app(self.console), access_log=None,
                                     handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=context,
                           reuse_address=True)
        await site.start()
        if self.port == 0:  # tests: the port the system chose
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        aloop = self.aloop
        if aloop is not None and self.thread.is_alive():
            aloop.call_soon_threadsafe(aloop.stop)
            self.thread.join(5)
        self.console.pool.shutdown(wait=False, cancel_futures=True)


def start(config: Any, post: Callable[[Any], None], metrics: Any = None,
          reloader: Any = None) -> ConsoleServer:
    """The console of a running switchboard, as ``console:`` in ivr.yaml says: listening when
    this returns (raises :class:`StartupError` when it cannot)."""
    settings = config.console
    tls = (Path(settings.tls_cert), Path(settings.tls_key)) \
        if settings.tls_cert and settings.tls_key else None
    accounts = Accounts(config.store)
    console = Console(config=config, hub=Hub(), accounts=accounts, post=post,
                      store_path=Path(config.store), lang=settings.lang,
                      session_hours=settings.session_hours, secure_cookies=tls is not None,
                      metrics=metrics, reloader=reloader)
    server = ConsoleServer(console, settings.listen.host, settings.listen.port, tls)
    server.start()
    users = accounts.users()
    if not users:
        log.warning("console: no user yet: create one with `ivr user add NAME --role admin` "
                    "(and one per agent with --role agent --agent NAME)")
    return server

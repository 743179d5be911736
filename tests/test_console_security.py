"""The console's security acceptance, for the whole app: every route the running server has
(pages added later included: the routes are read from its router) refuses anonymous requests
and changes without the session's CSRF token or from another site; agents cannot read others'
calls or tickets; the lockout after ten wrong passwords; the session cookie's flags, over TLS
too; logout; API tokens only for the API and not once revoked; the security headers."""

from __future__ import annotations

import dataclasses
import http.client
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from ivr.config import HostPort, load_config
from ivr.console import web as console_web
from ivr.console.web import LOGIN_COOKIE, SESSION_COOKIE
from ivr.store import CallRecord, CallStore
from ivr.tickets import Ticket, TicketEntry
from tests.consolekit import PASSWORD, Browser, Kit, start_console

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_790_000_000.0
PUBLIC = {"/login", "/healthz", "/favicon.ico"}
USERS = (("anna", "agent", "anna"), ("marco", "agent", "marco"), ("root", "admin", ""))
CHANGES = ("POST", "PUT", "PATCH", "DELETE")


def call_view(call_id: str, agent: str) -> dict[str, Any]:
    return {"call_id": call_id, "caller": "+3902" + call_id, "called": "100", "trunk": "main",
            "phase": "connected", "started": T0, "queue": "support", "queued_at": T0,
            "wait": 3.0, "level": 1, "path": ["menu"], "keys": "", "variables": {},
            "agent": agent, "ticket": "", "script": "", "recorded": False, "supervisors": [],
            "notes": []}


def agent_view(name: str, call_id: str) -> dict[str, Any]:
    return {"name": name, "state": "on_call", "since": T0, "pause_reason": "",
            "queues": ["support"], "team": "", "call_id": call_id, "offered": False,
            "wrapup_until": None, "answered": 0, "talk_seconds": 0.0, "notice": None,
            "last_call_id": None}


LIVE = {"agents": {"anna": agent_view("anna", "L1"), "marco": agent_view("marco", "L2")},
        "calls": {"L1": call_view("L1", "anna"), "L2": call_view("L2", "marco")},
        "ended": {}, "queues": {}, "supervisions": [], "notices": {}}


def new_kit(tmp: Path, **options: Any) -> Kit:
    config = load_config(ROOT / "ivr.yaml")
    return start_console(tmp, config, users=USERS, lang="en", **options)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    k = new_kit(tmp_path_factory.mktemp("security"))
    store = CallStore(k.console.store_path)
    try:
        store.save(CallRecord("a1", T0, caller="+390211", queue="support", agent="anna",
                              outcome="answered", ticket="2001"))
        store.save(CallRecord("m1", T0 + 10, caller="+390222", queue="support", agent="marco",
                              outcome="answered", ticket="2002"))
        for number, agent, call in (("2001", "anna", "a1"), ("2002", "marco", "m1")):
            store.save_ticket(Ticket(number, "+39" + number, "open", 1, "support", agent, T0,
                                     T0, None, (TicketEntry(T0, "call", call, "support", agent,
                                                            1),), 1))
    finally:
        store.close()
    k.publish(LIVE)
    yield k
    k.stop()


@pytest.fixture
def clean(kit: Kit) -> Kit:
    kit.posted.clear()
    kit.publish(LIVE)
    return kit


def routes(kit: Kit) -> list[tuple[str, str]]:
    """(method, a path the route answers) of every route of the running app but the public
    ones and the static files; a path parameter is filled with ``1``."""
    app = kit.server._runner.app
    out = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        canonical = resource.canonical
        if canonical in PUBLIC or canonical == "/static" or canonical.startswith("/static/"):
            continue
        path = re.sub(r"\{[^}]*\}", "1", canonical)
        methods = ("GET", "POST") if route.method == "*" else (route.method,)
        out += [(method, path) for method in methods]
    assert ("GET", "/api/calls") in out
    assert ("POST", "/logout") in out
    return sorted(set(out))


def audit_actions(kit: Kit) -> list[str]:
    return [e["action"] for e in kit.console.accounts.audit_log(limit=10_000)]


def signed_in(kit: Kit, name: str) -> Browser:
    browser = Browser(kit.url, follow=False)
    page = browser.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.body)
    assert token
    answer = browser.post("/login", {"csrf": token.group(1), "name": name,
                                     "password": PASSWORD})
    assert answer.status == 303, answer.body
    home = browser.get(answer.headers["Location"])
    assert home.status == 200, (answer.headers["Location"], home.body[:300])
    assert browser.csrf
    return browser


def session_cookie(browser: Browser) -> str:
    return next(c.value for c in browser.jar if c.name == SESSION_COOKIE and c.value)


# -- anonymous ---------------------------------------------------------------------------------
def test_every_route_refuses_anonymous_requests(clean: Kit) -> None:
    before = audit_actions(clean)
    anonymous = Browser(clean.url, follow=False)
    checked = routes(clean)
    for method, path in checked:
        body = {} if method in CHANGES else None
        answer = anonymous.request(method, path, json_body=body)
        where = f"{method} {path}: {answer.status}"
        assert not 200 <= answer.status < 300, where
        if path.startswith("/api/"):
            assert answer.status == 401, where
        elif method == "GET":
            assert answer.status == 303, where
            assert answer.headers["Location"].startswith("/login?next="), where
        else:
            assert answer.status in (401, 303), where
            if answer.status == 303:
                assert answer.headers["Location"].startswith("/login"), where
        assert answer.headers.get("X-Frame-Options") == "DENY", where
    # an event stream asked for by a script gets 401, not a login page
    streams = [p for m, p in checked if m == "GET" and p.endswith("/live")]
    for path in streams:
        answer = anonymous.get(path, headers={"Accept": "text/event-stream"})
        assert answer.status == 401, path
    assert clean.posted == []
    assert audit_actions(clean) == before


def test_the_public_routes_are_only_these(clean: Kit) -> None:
    anonymous = Browser(clean.url, follow=False)
    assert anonymous.get("/healthz").status == 200
    assert anonymous.get("/login").status == 200
    assert anonymous.get("/static/console.css").status == 200
    assert anonymous.get("/static/../ivr.yaml").status in (403, 404)
    app = clean.server._runner.app
    public = {r.resource.canonical for r in app.router.routes()
              if r.resource is not None and not r.resource.canonical.startswith("/static")
              and r.resource.canonical in PUBLIC}
    assert public <= PUBLIC


# -- CSRF and other sites ----------------------------------------------------------------------
def test_every_change_needs_the_sessions_csrf_token_from_this_site(clean: Kit) -> None:
    root = signed_in(clean, "root")
    before = audit_actions(clean)
    host = urlsplit(clean.url).netloc
    changes = [(m, p) for m, p in routes(clean) if m in CHANGES]
    assert ("POST", "/api/calls/1/notes") in changes
    for method, path in changes:
        attempts: list[dict[str, Any]] = [
            {"data": {}},                                          # a form without the token
            {"json_body": {}},                                     # a script without it
            {"data": {"csrf": "wrong"}},
            {"json_body": {}, "headers": {"X-CSRF-Token": "wrong"}},
            {"json_body": {}, "headers": {"X-CSRF-Token": root.csrf[:-1]}},
            # the right token, from another site
            {"json_body": {}, "headers": {"X-CSRF-Token": root.csrf,
                                          "Origin": "https://evil.example"}},
            {"data": {"csrf": root.csrf}, "headers": {"Origin": "null"}},
            {"data": {"csrf": root.csrf}, "headers": {"Origin": f"http://{host}.evil.example"}},
        ]
        for attempt in attempts:
            answer = root.request(method, path, **attempt)
            where = f"{method} {path} {attempt}: {answer.status} {answer.body[:100]}"
            assert answer.status == 403, where
            assert "stale" in answer.body, where  # refused for the token, not for the role
    assert clean.posted == []
    assert audit_actions(clean) == before
    # the same session with its token from its own page goes through
    ok = root.request("POST", "/lang", data={"csrf": root.csrf, "lang": "it", "back": "/"},
                      headers={"Origin": f"http://{host}"})
    assert ok.status == 303
    note = root.api("POST", "/api/calls/L1/notes", {"text": "seen"})
    assert note.status == 202, note.body
    assert [p.call_id for p in clean.posted] == ["L1"]


def test_the_login_form_needs_its_own_token_and_this_site(clean: Kit) -> None:
    browser = Browser(clean.url, follow=False)
    page = browser.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.body)
    assert token
    form = {"csrf": token.group(1), "name": "root", "password": PASSWORD}
    assert browser.post("/login", {**form, "csrf": "forged"}).status == 403
    assert browser.post("/login", form, headers={"Origin": "https://evil.example"}).status == 403
    stranger = Browser(clean.url, follow=False)  # the token without the browser's cookie
    assert stranger.post("/login", form).status == 403
    assert not any(c.name == SESSION_COOKIE for c in browser.jar)
    assert browser.post("/login", form).status == 303


# -- what agents may read ----------------------------------------------------------------------
def test_an_agent_cannot_read_another_agents_calls_or_tickets(clean: Kit) -> None:
    anna = signed_in(clean, "anna")
    assert anna.get("/api/calls/a1").status == 200
    assert anna.get("/api/calls/m1").status == 403
    assert [c["call_id"] for c in anna.get("/api/calls").json()["calls"]] == ["a1"]
    assert anna.get("/agent/context?call_id=L1").status == 200
    assert anna.get("/agent/context?call_id=L2").status == 403
    assert anna.get("/api/tickets/2001").status == 200
    assert anna.get("/api/tickets/2002").status == 403
    assert [t["number"] for t in anna.get("/api/tickets").json()["tickets"]] == ["2001"]
    assert "L2" not in anna.get("/api/live").body
    assert anna.api("POST", "/api/calls/L2/notes", {"text": "x"}).status == 403
    assert anna.api("POST", "/api/agents/marco/state", {"command": "logout"}).status == 403
    for page in ("/audit", "/wallboard", "/reports"):
        assert anna.get(page).status == 403, page
    assert clean.posted == []


# -- passwords, cookies, logout, tokens --------------------------------------------------------
def test_ten_wrong_passwords_lock_the_address_out(tmp_path: Path) -> None:
    kit = new_kit(tmp_path)
    try:
        browser = Browser(kit.url, follow=False)
        page = browser.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.body)
        assert token
        form = {"csrf": token.group(1), "name": "root"}
        for _ in range(10):
            assert browser.post("/login", {**form, "password": "wrong password"}).status == 401
        locked = browser.post("/login", {**form, "password": PASSWORD})
        assert locked.status == 429
        assert not any(c.name == SESSION_COOKIE for c in browser.jar)
        assert Browser(kit.url).login("anna").status == 429  # the address, whoever it is
    finally:
        kit.stop()


def raw_login(url: str, name: str, context: ssl.SSLContext | None = None) -> list[str]:
    """The Set-Cookie headers of the login page and of a right login, by hand (a cookie jar
    would not send a Secure cookie over plain HTTP)."""
    parts = urlsplit(url)

    def connect() -> http.client.HTTPConnection:
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.netloc, timeout=10, context=context)
        return http.client.HTTPConnection(parts.netloc, timeout=10)

    conn = connect()
    conn.request("GET", "/login")
    res = conn.getresponse()
    page = res.read().decode()
    cookies = res.headers.get_all("Set-Cookie") or []
    pre = re.search(r"centralino_login=([^;]+)", " ".join(cookies))
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert pre
    assert token
    conn.request("POST", "/login", urlencode({"csrf": token.group(1), "name": name,
                                              "password": PASSWORD}),
                 {"Content-Type": "application/x-www-form-urlencoded",
                  "Cookie": f"{LOGIN_COOKIE}={pre.group(1)}"})
    res = conn.getresponse()
    res.read()
    assert res.status == 303, res.status
    cookies += res.headers.get_all("Set-Cookie") or []
    conn.close()
    return cookies


def cookie_flags(cookies: list[str], name: str) -> set[str]:
    header = next(c for c in cookies if c.startswith(f"{name}=") and not
                  c.startswith(f'{name}=""'))
    return {p.strip().split("=")[0].lower() + ("=" + p.split("=")[1].strip().lower()
                                               if p.strip().lower().startswith("samesite")
                                               else "") for p in header.split(";")[1:]}


def test_session_cookie_flags(clean: Kit) -> None:
    cookies = raw_login(clean.url, "anna")
    for name in (SESSION_COOKIE, LOGIN_COOKIE):
        flags = cookie_flags(cookies, name)
        assert {"httponly", "samesite=strict"} <= flags, (name, flags)
        assert "secure" not in flags  # plain HTTP on loopback: a Secure cookie would be lost


def test_session_cookie_is_secure_with_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    config = load_config(ROOT / "ivr.yaml")
    assert config.console is not None
    config = dataclasses.replace(
        config, store=tmp_path / "calls.db",
        console=dataclasses.replace(config.console, listen=HostPort("127.0.0.1", 0),
                                    tls_cert=cert, tls_key=key))
    CallStore(config.store).close()
    posted: list[Any] = []
    server = console_web.start(config, posted.append)
    try:
        server.console.accounts.add_user("anna", PASSWORD, "agent", agent="anna")
        assert server.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        cookies = raw_login(server.url, "anna", context)
        for name in (SESSION_COOKIE, LOGIN_COOKIE):
            assert {"httponly", "samesite=strict", "secure"} <= cookie_flags(cookies, name)
    finally:
        server.stop()


def test_logout_ends_the_session(clean: Kit) -> None:
    anna = signed_in(clean, "anna")
    old = session_cookie(anna)
    assert anna.get("/api/calls").status == 200
    bye = anna.post("/logout", {"csrf": anna.csrf})
    assert bye.status == 303
    assert bye.headers["Location"] == "/login"
    replay = Browser(clean.url, follow=False)
    cookie = {"Cookie": f"{SESSION_COOKIE}={old}"}
    assert replay.get("/api/calls", headers=cookie).status == 401
    page = replay.get("/agent", headers=cookie)
    assert page.status == 303
    assert page.headers["Location"].startswith("/login")
    assert replay.request("POST", "/api/agents/anna/state", json_body={"command": "pause"},
                          headers={**cookie, "X-CSRF-Token": anna.csrf}).status == 401
    assert clean.posted == []
    assert audit_actions(clean)[0] == "logout"


def test_a_token_works_only_for_the_api_and_not_once_revoked(clean: Kit) -> None:
    token = clean.console.accounts.new_token("root", "crm", time.time())
    bearer = {"Authorization": f"Bearer {token}"}
    browser = Browser(clean.url, follow=False)
    assert browser.get("/api/calls", headers=bearer).status == 200
    for page in ("/wallboard", "/audit", "/agent", "/"):
        answer = browser.get(page, headers=bearer)
        assert answer.status == 303, page
        assert answer.headers["Location"].startswith("/login"), page
    assert browser.post("/lang", {"lang": "en"}, headers=bearer).status == 401
    # a token needs no CSRF token: it is not sent by a browser on its own
    assert browser.request("POST", "/api/calls/L1/notes", json_body={"text": "crm"},
                           headers=bearer).status == 202
    assert clean.console.accounts.revoke_tokens("root") == 1
    revoked = browser.get("/api/calls", headers=bearer)
    assert revoked.status == 401
    assert revoked.headers["WWW-Authenticate"] == "Bearer"
    assert browser.get("/api/calls", headers={"Authorization": "Bearer "}).status == 401
    assert browser.get("/api/calls", headers={"Authorization": f"Basic {token}"}).status == 401


# -- headers -----------------------------------------------------------------------------------
def test_security_headers_on_every_kind_of_answer(clean: Kit) -> None:
    anna = signed_in(clean, "anna")
    anonymous = Browser(clean.url, follow=False)
    answers = {
        "login page": anonymous.get("/login"),
        "redirect": anonymous.get("/agent"),
        "api refusal": anonymous.get("/api/calls"),
        "static": anonymous.get("/static/console.js"),
        "page": anna.get("/agent"),
        "api": anna.get("/api/calls"),
        "forbidden": anna.get("/audit"),
        "not found": anna.get("/nosuch"),
    }
    for what, answer in answers.items():
        csp = answer.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp, what
        assert "frame-ancestors 'none'" in csp, what
        assert "unsafe-inline" not in csp, what
        assert answer.headers.get("X-Frame-Options") == "DENY", what
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", what
        if what != "static":
            assert answer.headers.get("Cache-Control") == "no-store", what

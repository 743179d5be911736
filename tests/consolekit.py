"""A console served for tests: a real server on a free loopback port, a real SQLite store file,
real accounts; the loop's inbox is a list (``kit.posted``) and the view is published by hand
(``kit.publish({...})``). :class:`Browser` is a plain HTTP client with a cookie jar that signs in
like a person does (the login form and its token)."""

from __future__ import annotations

import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.console.accounts import Accounts
from ivr.console.hub import EMPTY, Hub
from ivr.console.web import Console, ConsoleServer
from ivr.store import CallStore

PASSWORD = "correct horse battery"


@dataclass
class Kit:
    server: ConsoleServer
    console: Console
    posted: list[Any] = field(default_factory=list)
    seq: int = 0

    @property
    def url(self) -> str:
        return self.server.url.rstrip("/")

    def publish(self, view: dict[str, Any]) -> None:
        self.seq += 1
        full = dict(EMPTY)
        full.update(view)
        full["seq"] = self.seq
        full.setdefault("at", time.time())
        self.console.hub.publish(full)

    def stop(self) -> None:
        self.server.stop()


def start_console(tmp_path: Path, config: Any = None, users: tuple[tuple[str, str, str], ...] = (),
                  **options: Any) -> Kit:
    """*users*: (name, role, agent) accounts made with :data:`PASSWORD`."""
    store_path = tmp_path / "calls.db"
    CallStore(store_path).close()
    accounts = Accounts(store_path)
    for name, role, agent in users:
        accounts.add_user(name, PASSWORD, role, agent=agent)
    posted: list[Any] = []
    console = Console(config=config, hub=Hub(), accounts=accounts, post=posted.append,
                      store_path=store_path, **options)
    server = ConsoleServer(console, "127.0.0.1", 0)
    server.start()
    return Kit(server, console, posted)


@dataclass
class Answer:
    status: int
    body: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Browser:
    def __init__(self, base: str, follow: bool = True):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        handlers: list[Any] = [urllib.request.HTTPCookieProcessor(self.jar)]
        if not follow:
            handlers.append(_NoRedirect())
        self.opener = urllib.request.build_opener(*handlers)
        self.csrf = ""

    def request(self, method: str, path: str, data: dict[str, str] | None = None,
                json_body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        body = None
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        elif data is not None:
            body = urllib.parse.urlencode(data).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=hdrs)
        try:
            with self.opener.open(req, timeout=10) as res:
                answer = Answer(res.status, res.read().decode(), dict(res.headers))
        except urllib.error.HTTPError as err:
            answer = Answer(err.code, err.read().decode(), dict(err.headers))
        found = re.search(r'<meta name="csrf" content="([^"]*)"', answer.body)
        if found and found.group(1):
            self.csrf = found.group(1)
        return answer

    def get(self, path: str, **kw: Any) -> Answer:
        return self.request("GET", path, **kw)

    def post(self, path: str, data: dict[str, str] | None = None, **kw: Any) -> Answer:
        return self.request("POST", path, data=data, **kw)

    def login(self, name: str, password: str = PASSWORD) -> Answer:
        page = self.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.body)
        assert token, page.body
        answer = self.post("/login", {"csrf": token.group(1), "name": name,
                                      "password": password})
        return answer

    def api(self, method: str, path: str, body: Any = None) -> Answer:
        """A call from the pages' own scripts: JSON with the session's CSRF header."""
        return self.request(method, path, json_body=body if body is not None else
                            ({} if method != "GET" else None),
                            headers={"X-CSRF-Token": self.csrf})

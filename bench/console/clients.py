"""The console bench's pages: many live streams from one process, as open browsers keep them.

    python -m bench.console.clients PLAN.json

Each client signs in through the console's login form (its own cookie jar and session), then
holds the page's Server-Sent Events stream open (``/wallboard/live`` or ``/agent/live``), as
the page's ``EventSource`` does. Every ``data:`` message is stamped with ``time.monotonic()``
the moment its line is read (the machine's one clock, which the agents process stamps its
answers with) and kept as it came; nothing is parsed while the bench runs, so the process
reads its sockets at once, and the messages are matched with the agents' answers afterwards
(:mod:`bench.console.run`). 50 wallboards mostly get the same text: each distinct message is
kept once.

Lines on stdout, one JSON object each: ``ready`` (every client signed in, its stream open and
its first message read), ``error``, ``result`` (with the path of the JSON file holding the
messages and each client's stamps). Standard input: the bench's ``t0``, then the clients run
until ``t0 + end``.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

LOGINS_AT_ONCE = 3
"""Logins in flight at once: the console hashes passwords on three threads."""


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


@dataclass
class Client:
    kind: str
    user: str
    password: str
    path: str
    stamps: list[tuple[float, int]] = field(default_factory=list)
    first: asyncio.Event = field(default_factory=asyncio.Event)
    bytes_read: int = 0
    error: str = ""


class Book:
    """Distinct messages, each kept once: index by text."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.texts)
            self.texts.append(text)
        return found


async def login(http: aiohttp.ClientSession, base: str, client: Client) -> None:
    async with http.get(base + "/login") as res:
        page = await res.text()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    if token is None:
        raise RuntimeError(f"{client.user}: no login form at {base}/login")
    form = {"csrf": token.group(1), "name": client.user, "password": client.password,
            "next": ""}
    async with http.post(base + "/login", data=form, allow_redirects=False) as res:
        if res.status != 303:
            raise RuntimeError(f"{client.user}: login answered {res.status}")


async def follow(base: str, client: Client, book: Book, gate: asyncio.Semaphore,
                 stop: asyncio.Event) -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as http:
        async with gate:
            await login(http, base, client)
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        async with http.get(base + client.path, headers=headers) as res:
            if res.status != 200:
                raise RuntimeError(f"{client.user}: {client.path} answered {res.status}")
            content = res.content
            while not stop.is_set():
                line = await content.readline()
                now = time.monotonic()
                if not line:
                    raise RuntimeError(f"{client.user}: the stream ended")
                client.bytes_read += len(line)
                if line.startswith(b"data: "):
                    client.stamps.append((now, book.add(line[6:].decode().rstrip("\n"))))
                    client.first.set()


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    base = str(plan["url"]).rstrip("/")
    clients = [Client("wallboard", u, p, "/wallboard/live") for u, p in plan["wallboards"]]
    clients += [Client("agent", u, p, "/agent/live") for u, p in plan["agents"]]
    book = Book()
    gate = asyncio.Semaphore(LOGINS_AT_ONCE)
    stop = asyncio.Event()

    async def guarded(client: Client) -> None:
        try:
            await follow(base, client, book, gate, stop)
        except (aiohttp.ClientError, RuntimeError, OSError) as exc:
            client.error = str(exc) or type(exc).__name__
            emit("error", message=f"{client.user} ({client.kind}): {client.error}")
            client.first.set()

    tasks = [asyncio.create_task(guarded(c)) for c in clients]
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(c.first.wait() for c in clients)),
                           timeout=float(plan.get("connect_timeout", 120)))
    failed = [c.user for c in clients if c.error]
    if failed:
        raise RuntimeError(f"{len(failed)} clients failed: {failed[:5]}")
    emit("ready", name="clients", clients=len(clients),
         connect_s=round(time.monotonic() - started, 2))
    loop = asyncio.get_running_loop()
    t0 = float(await loop.run_in_executor(None, sys.stdin.readline))
    await asyncio.sleep(max(0.0, t0 + float(plan["end"]) - time.monotonic()))
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"messages": book.texts,
            "clients": [{"kind": c.kind, "user": c.user, "stamps": c.stamps,
                         "bytes": c.bytes_read, "error": c.error} for c in clients]}


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    try:
        result = asyncio.run(run(plan))
    except (RuntimeError, TimeoutError) as exc:
        emit("error", name="clients", message=str(exc) or type(exc).__name__)
        return 1
    except KeyboardInterrupt:
        emit("error", name="clients", message="interrupted")
        return 130
    out = Path(plan["out"])
    out.write_text(json.dumps(result))
    emit("result", name="clients", path=str(out), messages=len(result["messages"]),
         stamps=sum(len(c["stamps"]) for c in result["clients"]), cpu_s=time.process_time())
    return 0


if __name__ == "__main__":
    sys.exit(main())

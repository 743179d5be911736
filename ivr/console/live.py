"""Live updates: a page's slice of the loop's view, sent by Server-Sent Events whenever it
changes.

A page opens ``EventSource(url)``; the handler calls :func:`stream` with a key and a function
that makes the page's data from a view. The data is made once per view and key
(:meth:`ivr.console.hub.Hub.derived`), serialised once, and sent only when it differs from what
that page got last. A comment line every :data:`KEEPALIVE` seconds keeps proxies from closing an
idle stream and lets the server notice a page that went away.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ivr.console.hub import View
from ivr.console.web import console_of

KEEPALIVE = 15.0


def encode(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)


async def stream(request: web.Request, key: str, make: Callable[[View], Any],
                 min_gap: float = 0.1) -> web.StreamResponse:
    """Serve *make(view)* as a Server-Sent Events stream until the page goes away; at most
    one message per *min_gap* seconds (the loop publishes up to 20 views a second)."""
    console = console_of(request)
    hub = console.hub
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    last_text = ""
    seq = -1
    try:
        while True:
            view = await hub.next(seq, KEEPALIVE)
            if view["seq"] == seq:
                await response.write(b": keepalive\n\n")
                continue
            seq = view["seq"]
            text = hub.derived(key, view, lambda v: encode(make(v)))
            if text != last_text:
                last_text = text
                await response.write(f"data: {text}\n\n".encode())
                await asyncio.sleep(min_gap)  # a burst of views is one message, the latest
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response

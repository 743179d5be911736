"""Where the loop's view meets the web server's connections.

The driver's loop thread calls :meth:`Hub.publish` with a fresh view (a plain dict, never changed
after) whenever something happened; the server's asyncio loop wakes every page waiting on
:meth:`Hub.next`. A page's own slice of the view (an agent's desktop, the wallboard) is made once
per view and per kind with :meth:`Hub.derived`, however many pages show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

View = dict[str, Any]
EMPTY: View = {"seq": 0, "at": 0.0, "agents": {}, "calls": {}, "queues": {}, "supervisions": []}


class Hub:
    def __init__(self) -> None:
        self._view: View = EMPTY
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._derived: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()
        self.published = 0

    @property
    def view(self) -> View:
        return self._view

    def bind(self, aloop: asyncio.AbstractEventLoop | None) -> None:
        """The server's event loop (None once it stopped): publish wakes its waiters."""
        self._aloop = aloop

    def publish(self, view: View) -> None:
        """Any thread (the driver's loop): the new view, woken pages read it."""
        self._view = view
        self.published += 1
        aloop = self._aloop
        if aloop is not None:  # always: a page may be about to wait (see next())
            with contextlib.suppress(RuntimeError):  # the server's loop closed meanwhile
                aloop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def next(self, seq: int, timeout: float) -> View:
        """The view once it is newer than *seq*, or the current one after *timeout* seconds."""
        if self._view["seq"] != seq:
            return self._view
        # no await between the check above and this: a publish from the loop's thread in
        # between has its wake-up queued on this event loop, which runs after the append
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, timeout)
        return self._view

    def derived(self, key: str, view: View, make: Callable[[View], Any]) -> Any:
        """``make(view)``, computed once per view for *key* (a page kind and its filter)."""
        with self._lock:
            cached = self._derived.get(key)
            if cached is not None and cached[0] == view["seq"]:
                return cached[1]
        value = make(view)
        with self._lock:
            self._derived[key] = (view["seq"], value)
        return value

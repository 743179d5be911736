"""Noticing that the flow file changed, so the switchboard reloads it without a SIGHUP.

:class:`FileWatcher` polls the files of the flow in service (``stat``: modification time, size,
inode; no inotify, no dependency) on a daemon thread of its own. An editor saves in several
steps (truncate and write, or write a temporary file and rename it), so a change is reported only
once the files have stayed the same for ``settle`` seconds. The report is a call of ``on_change``
with the state seen, which the switchboard passes to its loop through a queue: the watcher
touches nothing else. :meth:`FileWatcher.check` takes the time as an argument, so tests drive it
without the thread and without sleeping.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

from ivr.flow import Flow

log = logging.getLogger("ivr.watch")

Signature = tuple[int, int, int] | None
"""``(st_mtime_ns, st_size, st_ino)`` of a file, or None when it cannot be read."""

FilesState = tuple[tuple[str, Signature], ...]
"""The signature of each watched file, in order."""


def file_signature(path: str) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def files_state(paths: Iterable[str]) -> FilesState:
    return tuple((path, file_signature(path)) for path in paths)


def flow_files(flow: Flow) -> tuple[str, ...]:
    """The file of *flow* and those of the flows it includes (subflow nodes), without repeats."""
    seen: list[str] = []
    pending = [flow]
    while pending:
        current = pending.pop(0)
        if current.source in seen:
            continue
        seen.append(current.source)
        for node in current.nodes.values():
            sub = getattr(node, "flow", None)
            if isinstance(sub, Flow):
                pending.append(sub)
    return tuple(seen)


class FileWatcher:
    """Calls ``on_change(state)`` once the watched files changed and then held still.

        >>> w = FileWatcher(["flows/demo.yaml"], print, interval=1.0, settle=0.5)
        >>> w.check(now=0.0)    # False: nothing changed since the watcher was made
        >>> w.start()           # or let a daemon thread call check() every `interval` seconds
    """

    def __init__(self, paths: Iterable[str], on_change: Callable[[FilesState], None],
                 interval: float = 1.0, settle: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        self.on_change = on_change
        self.interval = interval
        self.settle = settle
        self._clock = clock
        self._wanted = tuple(paths)
        """Set by :meth:`watch` from any thread (one immutable tuple); read by :meth:`check`."""
        self._paths = self._wanted
        self._current = files_state(self._paths)
        self._pending: FilesState | None = None
        self._pending_since = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, paths: Iterable[str]) -> None:
        """Watch these files from now on (their state now is the new baseline: no report)."""
        self._wanted = tuple(paths)

    def check(self, now: float) -> bool:
        """Look at the files once; True when this call reported a change."""
        paths = self._wanted
        if paths != self._paths:
            self._paths = paths
            self._current = files_state(paths)
            self._pending = None
            return False
        state = files_state(paths)
        if state == self._current:
            self._pending = None
            return False
        if state != self._pending:
            self._pending, self._pending_since = state, now
            return False
        if now - self._pending_since < self.settle:
            return False
        self._current, self._pending = state, None
        self.on_change(state)
        return True

    def delay(self, now: float) -> float:
        """Seconds until the next look: sooner while a change is settling."""
        if self._pending is None:
            return self.interval
        return max(0.0, min(self.interval, self._pending_since + self.settle - now))

    # -- the thread ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flow-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while True:
            try:
                self.check(self._clock())
            except Exception as exc:  # noqa: BLE001 - keep watching whatever happens
                log.error("watching %s: %s: %s", ", ".join(self._paths), type(exc).__name__, exc)
            if self._stop.wait(self.delay(self._clock())):
                return

"""Serial devices (a night switch, a lamp, a modem) on ports opened by pyserial URL.

A device is addressed like pyserial addresses ports (``/dev/ttyUSB0``, ``rfc2217://host:port``,
``loop://``, ``spy:///dev/ttyUSB0``), so tests and field debugging need no code change. Each
device runs on its own thread: the switchboard's loop never waits on a port. A device reports
through callbacks (the service turns them into inbox messages) and takes commands on its own
queue (:meth:`SerialDevice.send`), which the executor fills.

The base class owns the port's life: open, hand the port to the subclass's hooks, and when the
port fails (unplugged: :class:`serial.SerialException` or :class:`OSError`) close it and open it
again with a growing backoff, reporting each up/down change once::

    class Printer(SerialDevice):
        def poll(self, port):
            port.write(b"ping\\r\\n")
            return 1.0          # seconds until the next poll

    dev = Printer("printer", "loop://", on_up=lambda name, up: print(name, up))
    dev.start(); ...; dev.stop()
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import serial

__all__ = ["OpenPort", "SerialDevice", "open_url"]

log = logging.getLogger(__name__)

OpenPort = Callable[[str], Any]
"""Opens a port by URL and returns a pyserial port object (or raises SerialException/OSError)."""

PORT_ERRORS = (serial.SerialException, OSError, ValueError)
"""What a port that is missing, unplugged or refused raises (ValueError: a bad URL)."""

_STOP = object()


def open_url(url: str) -> Any:
    """The port at *url*, opened with a short read timeout so a device thread stays responsive
    (and a write timeout where the URL's handler has one: rfc2217:// refuses it).

    An rfc2217:// port asks its server for the control lines when they are read
    (``poll_modem``): else it answers from what the server last sent, even long after the
    server went away, and an unplugged network adapter would never be noticed."""
    if url.startswith("rfc2217://"):
        if "poll_modem" not in url:
            url += ("&" if "?" in url else "?") + "poll_modem"
        return serial.serial_for_url(url, timeout=0.2)
    return serial.serial_for_url(url, timeout=0.2, write_timeout=2.0)


class SerialDevice:
    """One device on one port, on a thread of its own; survives unplug and replug.

    Subclasses override :meth:`on_open` (the port just opened), :meth:`poll` (called while the
    port is open; returns the seconds to wait before the next call, waking early for commands)
    and :meth:`on_command` (a command sent with :meth:`send`). Any of them may raise a port
    error: the port is then closed and reopened with backoff.
    """

    kind = "device"

    def __init__(self, name: str, url: str, *, on_up: Callable[[str, bool], None] | None = None,
                 open_port: OpenPort = open_url, backoff: tuple[float, float] = (0.5, 30.0),
                 clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.url = url
        self._on_up = on_up
        self._open_port = open_port
        self._backoff = backoff
        self._clock = clock
        self._commands: queue.Queue[object] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.up: bool | None = None
        """True while the port is open, False after a failure, None before the first try."""

    # -- the thread's life ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name=f"device-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._commands.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    def send(self, command: object) -> None:
        """Queue *command* for the device's thread (never blocks the caller)."""
        self._commands.put(command)

    # -- hooks ----------------------------------------------------------------------------------
    def on_open(self, port: Any) -> None:
        """The port has just been opened (or reopened after an unplug)."""

    def poll(self, port: Any) -> float:
        """Look at the port; return the seconds until the next look."""
        return 1.0

    def on_command(self, port: Any, command: object) -> None:
        """Carry out a command sent with :meth:`send`."""

    def on_close(self) -> None:
        """The port was closed (unplugged, or stopping)."""

    # -- internals --------------------------------------------------------------------------------
    def _set_up(self, up: bool, why: str = "") -> None:
        if self.up == up:
            return
        old, self.up = self.up, up
        if up:
            log.warning("device %s (%s) is up at %s", self.name, self.kind, self.url)
        elif old is None:
            log.warning("device %s (%s) cannot be opened at %s: %s", self.name, self.kind,
                        self.url, why)
        else:
            log.warning("device %s (%s) is down at %s: %s", self.name, self.kind, self.url, why)
        if self._on_up is not None:
            self._on_up(self.name, up)

    def _work(self) -> None:
        delay = self._backoff[0]
        while not self._stopping.is_set():
            try:
                port = self._open_port(self.url)
            except Exception as exc:  # noqa: BLE001 - a URL handler may raise anything
                self._set_up(False, str(exc) or type(exc).__name__)
                self._wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            self._set_up(True)
            why = self._serve(port)
            with contextlib.suppress(*PORT_ERRORS):
                port.close()
            self.on_close()
            if why:
                self._set_up(False, why)
                self._wait(delay)

    def _serve(self, port: Any) -> str:
        """Run the hooks on an open port until it fails (returns why) or we stop ('')."""
        try:
            self.on_open(port)
            while not self._stopping.is_set():
                wait = self.poll(port)
                deadline = self._clock() + max(0.0, wait)
                while not self._stopping.is_set():
                    left = deadline - self._clock()
                    if left <= 0:
                        break
                    try:
                        command = self._commands.get(timeout=left)
                    except queue.Empty:
                        break
                    if command is _STOP:
                        return ""
                    self.on_command(port, command)
        except PORT_ERRORS as exc:
            return str(exc) or type(exc).__name__
        return ""

    def _wait(self, seconds: float) -> None:
        """Wait *seconds* or until stopped; commands that come meanwhile wait for the port."""
        self._stopping.wait(seconds)

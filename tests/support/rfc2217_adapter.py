"""A USB-serial adapter on the network, for tests: an RFC 2217 server whose input lines
(CTS, DSR, DCD) the test sets, as a key wired to them would.

The switchboard under test opens ``rfc2217://127.0.0.1:PORT`` with pyserial as it would open
``/dev/ttyUSB0``; this module serves that port with pyserial's own RFC 2217 port manager, so the
control lines travel as they would from a real networked serial server. Pseudo-terminals cannot
do this: Linux ptys have no modem control lines (TIOCMGET fails on them).

    with Rfc2217Adapter() as adapter:
        start_switchboard(url=adapter.url)
        adapter.set_line("cts", True)     # the key is turned on
        adapter.unplug()                  # the connection drops and new ones are refused
"""

from __future__ import annotations

import select
import socket
import threading
from types import TracebackType
from typing import Any

from serial.rfc2217 import PortManager
from serial.urlhandler.protocol_loop import Serial as LoopSerial


class _Port(LoopSerial):  # type: ignore[misc]
    """loop://, with input lines set by the test instead of following RTS and DTR."""

    inputs: dict[str, bool]

    @property
    def cts(self) -> bool:
        return self.inputs["cts"]

    @property
    def dsr(self) -> bool:
        return self.inputs["dsr"]

    @property
    def cd(self) -> bool:
        return self.inputs["cd"]

    @property
    def ri(self) -> bool:
        return False


class _Writer:
    """The connection as the port manager writes to it."""

    def __init__(self, conn: socket.socket):
        self._conn = conn

    def write(self, data: bytes) -> None:
        self._conn.sendall(data)


class Rfc2217Adapter:
    def __init__(self) -> None:
        self._inputs = {"cts": False, "dsr": False, "cd": False}
        self.outputs: dict[str, bool] = {}
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.url = f"rfc2217://127.0.0.1:{self._server.getsockname()[1]}"
        self._plugged = threading.Event()
        self._plugged.set()
        self._stopping = threading.Event()
        self.connections = 0
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="rfc2217-adapter", daemon=True)

    def __enter__(self) -> Rfc2217Adapter:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._server.close()

    def set_line(self, line: str, on: bool) -> None:
        self._inputs[line] = on

    def unplug(self) -> None:
        self.connected.clear()
        self._plugged.clear()

    def replug(self) -> None:
        self._plugged.set()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            if not self._plugged.is_set():
                conn.close()
                continue
            with conn:
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        port: Any = _Port(None)
        port.inputs = self._inputs
        port.port = "loop://"
        port.open()
        manager = PortManager(port, _Writer(conn))
        self.connections += 1
        self.connected.set()
        try:
            while not self._stopping.is_set() and self._plugged.is_set():
                ready, _, _ = select.select([conn], [], [], 0.02)
                if ready:
                    data = conn.recv(4096)
                    if not data:
                        return
                    for byte in manager.filter(data):
                        port.write(byte)
                manager.check_modem_lines()
                self.outputs = {"rts": bool(port.rts), "dtr": bool(port.dtr)}
        except OSError:
            return
        finally:
            port.close()

"""A gateway stand-in on a real UDP socket: answers each SIP request with a fixed status, or
stays silent, so health checks can be tested against all three behaviours of a real gateway."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class GatewayStub:
    """Answers every request with ``SIP/2.0 <status>`` (echoing Via, From, To, CSeq, Call-ID);
    ``status=None``: reads requests and answers nothing (a gateway that hangs)."""

    def __init__(self, status: str | None = "200 OK") -> None:
        self.status = status
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.received = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return  # closed
            if not data:
                return
            self.requests.append(data)
            self.received.set()
            if self.status is not None:
                self.sock.sendto(self._reply(data), addr)

    def _reply(self, request: bytes) -> bytes:
        head = request.split(b"\r\n\r\n", 1)[0].decode()
        kept = [line for line in head.split("\r\n")[1:]
                if line.split(":", 1)[0].strip().lower() in ("via", "from", "to", "cseq",
                                                               "call-id")]
        return ("\r\n".join([f"SIP/2.0 {self.status}", *kept, "Content-Length: 0"])
                + "\r\n\r\n").encode()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wake the reader: an empty datagram to ourselves
            self.sock.sendto(b"", ("127.0.0.1", self.port))
        self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> GatewayStub:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

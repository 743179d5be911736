"""Fake CRMs on loopback for end-to-end tests of the lookup node.

:class:`JsonCrm` answers every ``GET`` with one JSON document at once. :class:`TricklingCrm`
accepts a connection and then sends its status line and headers one byte at a time, never
ending them: a CRM that would hold a lookup worker forever if the lookup had no overall deadline.

    >>> with TricklingCrm(every=0.5) as slow, JsonCrm({"customer": {"tier": "gold"}}) as crm:
    ...     url = f"http://127.0.0.1:{crm.port}/customers?number={{caller}}"
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Trickle: "
"""What a trickling CRM starts with; after it, one 'a' per tick, and never the blank line."""


class TricklingCrm:
    """A TCP server that answers every connection with one header byte every *every* seconds.

    Each connection is served by a daemon thread until the client goes away, :meth:`close` is
    called, or *limit_s* seconds have passed (a bound, far beyond any test). :attr:`accepted`
    counts connections taken; :attr:`open_now` those still being trickled to.
    """

    def __init__(self, every: float = 0.5, limit_s: float = 300.0) -> None:
        self.every = every
        self.limit_s = limit_s
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self._server.settimeout(0.2)
        self.port: int = int(self._server.getsockname()[1])
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.accepted = 0
        self.open_now = 0
        self._thread = threading.Thread(target=self._accept, name="trickle-accept", daemon=True)

    def start(self) -> TricklingCrm:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._server.close()

    def __enter__(self) -> TricklingCrm:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def counts(self) -> tuple[int, int]:
        """(accepted, open now), read together."""
        with self._lock:
            return self.accepted, self.open_now

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.open_now += 1
            threading.Thread(target=self._trickle, args=(conn,), name="trickle",
                             daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        ticks = int(self.limit_s / self.every)
        data = HEAD + b"a" * ticks
        try:
            with conn:
                for i in range(len(data)):
                    conn.sendall(data[i:i + 1])
                    if self._stop.wait(self.every):  # the pace of the trickle, not a test wait
                        return
        except OSError:
            return  # the client gave up: what a lookup with a deadline does
        finally:
            with self._lock:
                self.open_now -= 1


class JsonCrm:
    """An HTTP server answering every GET at once with *document* as JSON; :attr:`paths`
    lists the paths asked for, in order."""

    def __init__(self, document: Any) -> None:
        body = json.dumps(document).encode()
        paths: list[str] = []
        self.paths = paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="json-crm",
                                        daemon=True)

    def start(self) -> JsonCrm:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> JsonCrm:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

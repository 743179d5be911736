"""Lookups against real HTTP servers on 127.0.0.1: one deadline for a whole request however the
CRM trickles its answer, a pool that a slow CRM cannot wedge, cancelling, stopping."""

from __future__ import annotations

import json
import queue
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from ivr.lookup import STOPPING, LookupFailed, LookupResult, Lookups, fetch_json, redact_url

ROOT = Path(__file__).resolve().parent.parent
CUSTOMER = {"customer": {"name": "Rossi", "tier": "gold"}}
WAIT = 15.0
"""Longest wait for something that must happen (a result, a connection): a bound, not a pace."""


# -- a well-behaved CRM ---------------------------------------------------------------------------
class _Crm(BaseHTTPRequestHandler):
    """Answers by path; /gate waits until the test opens :attr:`gate`."""

    protocol_version = "HTTP/1.1"
    gate = threading.Event()
    at_gate = threading.Event()

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Crm.requests.append(self.path)
        path = self.path.partition("?")[0]
        if path == "/customers":
            self._send(200, json.dumps(CUSTOMER).encode())
        elif path == "/gate":
            _Crm.at_gate.set()
            _Crm.gate.wait(WAIT)
            self._send(200, json.dumps(CUSTOMER).encode())
        elif path == "/error":
            self._send(500, b'{"error": "database down"}')
        elif path == "/broken":
            self._send(200, b"{not json")
        elif path == "/null":
            self._send(200, b"null")
        elif path == "/latin1":
            self._send(200, '{"name": "Citt\xe0"}'.encode("latin-1"))
        elif path == "/big":
            self._send(200, b"[" + b"1," * 200 + b"1]")
        elif path in ("/chunked", "/chunked-big"):
            body = (json.dumps(CUSTOMER).encode() if path == "/chunked"
                    else b"[" + b"1," * 200 + b"1]")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 16):
                piece = body[start:start + 16]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/customers?number=3331234567")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"{}")

    def _send(self, status: int, data: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up

    def log_message(self, *args: object) -> None:
        pass


def _serve(server: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    _Crm.gate.set()  # no handler left waiting
    server.shutdown()
    server.server_close()


@pytest.fixture
def crm() -> Iterator[str]:
    """The address of a healthy CRM."""
    _Crm.gate = threading.Event()
    _Crm.at_gate = threading.Event()
    _Crm.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Crm)
    server.daemon_threads = True
    for port in _serve(server):
        yield f"http://127.0.0.1:{port}"


# -- a CRM that trickles ------------------------------------------------------------------------
class Trickler:
    """A TCP server that answers every connection a byte at a time, one per 0.5 s, starting at
    the part of the answer the path names: /status, /headers, /body (Content-Length), /chunked;
    /tls sends a TLS record header and then trickles its content."""

    PREFIX: ClassVar[dict[str, bytes]] = {
        "status": b"HTTP/1.1 ",
        "headers": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: ",
        "body": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n[",
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n[",
    }
    TLS_RECORD = b"\x16\x03\x03\x40\x00"  # a 16 kB handshake record: the client waits for it

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.accepted = 0
        self.changed = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, phase: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{phase}?number=3331234567"

    def wait_connections(self, n: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.accepted >= n, WAIT), self.accepted

    def close(self) -> None:
        self.stop.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.changed:
                self.accepted += 1
                self.changed.notify_all()
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(WAIT)
            first = conn.recv(4096)
            if first.startswith(b"GET "):
                request = first
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    more = conn.recv(4096)
                    if not more:
                        return
                    request += more
                phase = request.split(b" ")[1].decode().strip("/").partition("?")[0]
                prefix, byte = self.PREFIX[phase], b"1"
            else:  # a TLS ClientHello
                prefix, byte = self.TLS_RECORD, b"\x00"
            try:
                conn.sendall(prefix)
                for _ in range(120):  # a minute at most
                    if self.stop.wait(0.5):
                        return
                    conn.sendall(byte)
            except OSError:
                return  # the client gave up: what the tests want


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    server = Trickler()
    yield server
    server.close()


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def results_of(results: queue.SimpleQueue[LookupResult], n: int) -> list[LookupResult]:
    return [results.get(timeout=WAIT) for _ in range(n)]


# -- one deadline for the whole request --------------------------------------------------------
@pytest.mark.parametrize("phase", ["status", "headers", "body", "chunked"])
def test_a_trickled_answer_is_cut_at_the_deadline(trickler, phase):
    started = time.monotonic()
    with pytest.raises(LookupFailed, match=r"^timeout after 1 s$"):
        fetch_json(trickler.url(phase), 1.0)
    assert time.monotonic() - started < 1.0 + 2.0


def test_a_trickled_tls_handshake_is_cut_at_the_deadline(trickler):
    started = time.monotonic()
    with pytest.raises(LookupFailed, match=r"^timeout after 1.5 s$"):
        fetch_json(trickler.url("headers", scheme="https"), 1.5)
    assert time.monotonic() - started < 1.5 + 2.0


def test_trickling_crm_holding_every_worker_does_not_wedge_the_pool(trickler, crm):
    results: queue.SimpleQueue[LookupResult] = queue.SimpleQueue()
    lookups = Lookups(post=results.put, workers=4)
    submitted = time.monotonic()
    for n in range(4):
        lookups.submit(f"slow-{n}", 1, trickler.url("headers"), 1.0)
    trickler.wait_connections(4)  # each worker is inside a trickled request
    lookups.submit("healthy", 2, f"{crm}/customers?number=3331234567", 5.0)  # meanwhile
    arrived: dict[str, tuple[LookupResult, float]] = {}
    for result in results_of(results, 5):
        arrived[result.key] = (result, time.monotonic() - submitted)
    assert sorted(arrived) == ["healthy", "slow-0", "slow-1", "slow-2", "slow-3"]
    for n in range(4):
        result, elapsed = arrived[f"slow-{n}"]
        assert (result.request_id, result.data, result.error) == (1, None, "timeout after 1 s")
        assert elapsed < 1.0 + 2.0
        assert result.seconds < 1.0 + 2.0
    healthy, _ = arrived["healthy"]
    assert (healthy.data, healthy.error) == (CUSTOMER, "")
    # and after: every worker is free again
    lookups.submit("after", 3, f"{crm}/customers?number=3331234567", 1.0)
    (after,) = results_of(results, 1)
    assert (after.key, after.data, after.error) == ("after", CUSTOMER, "")
    lookups.shutdown()


# -- answers and their errors --------------------------------------------------------------------
def test_a_customer_is_found(crm):
    assert fetch_json(f"{crm}/customers?number=3331234567", 2.0) == CUSTOMER


@pytest.mark.parametrize(("path", "expected"), [
    ("/chunked", CUSTOMER),   # chunked transfer encoding
    ("/moved", CUSTOMER),     # a redirect is followed
])
def test_chunked_answers_and_redirects(crm, path, expected):
    assert fetch_json(crm + path, 2.0) == expected


@pytest.mark.parametrize(("path", "message"), [
    ("/error", "HTTP 500"),
    ("/nowhere", "HTTP 404"),
    ("/loop", "HTTP 302"),
    ("/broken", "bad JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ("/latin1", "bad JSON: not UTF-8 text"),
    ("/null", "the answer is JSON null"),
    ("/big", "answer larger than 100 bytes"),          # told by Content-Length
    ("/chunked-big", "answer larger than 100 bytes"),  # found while reading
])
def test_failures_say_why(crm, path, message):
    with pytest.raises(LookupFailed) as failure:
        fetch_json(f"{crm}{path}?number=3331234567&key=s3cret", 2.0, max_bytes=100)
    assert str(failure.value) == message


def test_addresses_that_cannot_be_looked_up():
    with pytest.raises(LookupFailed, match=r"^cannot connect: Connection refused$"):
        fetch_json(f"http://127.0.0.1:{closed_port()}/customers", 2.0)
    with pytest.raises(LookupFailed, match=r"^only http:// and https:// addresses are looked up$"):
        fetch_json("ftp://127.0.0.1/customers", 2.0)
    with pytest.raises(LookupFailed, match=r"^failed: ValueError$"):
        fetch_json("http://127.0.0.1:99999/customers", 2.0)


def test_redact_url_hides_numbers_keys_and_passwords():
    assert (redact_url("https://u:pw@crm.example/c/3331234567?number=333&key=abc#x")
            == "https://crm.example/c/***?number=***&key=***")


# -- https ---------------------------------------------------------------------------------------
@pytest.fixture
def tls_crm(tmp_path) -> Iterator[tuple[str, Path]]:
    """A CRM over https with a certificate for 127.0.0.1 made for the test, and that cert."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "crm.pem", tmp_path / "crm.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Crm)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for port in _serve(server):
        yield f"https://127.0.0.1:{port}", cert


def test_https_lookup_checks_the_certificate(tls_crm):
    address, cert = tls_crm
    results: queue.SimpleQueue[LookupResult] = queue.SimpleQueue()
    trusting = Lookups(post=results.put, workers=1,
                       ssl_context=ssl.create_default_context(cafile=str(cert)))
    trusting.submit("call-1", 1, f"{address}/customers?number=3331234567", 5.0)
    (found,) = results_of(results, 1)
    assert (found.data, found.error) == (CUSTOMER, "")
    # the system's CAs do not know the test's certificate
    with pytest.raises(LookupFailed, match=r"^cannot connect: .*CERTIFICATE_VERIFY_FAILED"):
        fetch_json(f"{address}/customers?number=3331234567", 5.0)
    trusting.shutdown()


# -- cancel --------------------------------------------------------------------------------------
def test_cancel_drops_the_queued_lookups_of_a_call(crm):
    results: queue.SimpleQueue[LookupResult] = queue.SimpleQueue()
    lookups = Lookups(post=results.put, workers=1)
    lookups.submit("A", 1, f"{crm}/gate", 10.0)
    assert _Crm.at_gate.wait(WAIT)  # the one worker is held by A's first lookup
    for request_id in (2, 3, 4):
        lookups.submit("A", request_id, f"{crm}/customers?number=3331234567", 10.0)
    lookups.submit("B", 5, f"{crm}/customers?number=3331230000", 10.0)
    assert lookups.cancel("A") == 3
    assert lookups.cancel("A") == 0
    lookups.submit("C", 6, f"{crm}/customers", 10.0)  # one worker, in order: C comes last
    _Crm.gate.set()
    arrived = results_of(results, 3)
    # the running lookup of A still answers (the driver ignores it); its queued ones are gone
    assert [(r.key, r.request_id, r.error) for r in arrived] == [("A", 1, ""), ("B", 5, ""),
                                                                 ("C", 6, "")]
    assert results.empty()
    lookups.shutdown()


def test_the_deadline_counts_from_submit_time_queued_included(crm):
    # the call's own timer started at submit: a lookup whose time ran out while it waited for a
    # worker is answered as timed out without asking the CRM
    results: queue.SimpleQueue[LookupResult] = queue.SimpleQueue()
    lookups = Lookups(post=results.put, workers=1)
    lookups.submit("A", 1, f"{crm}/gate", 10.0)
    assert _Crm.at_gate.wait(WAIT)
    submitted = time.monotonic()
    lookups.submit("B", 2, f"{crm}/customers?number=3331230000", 0.5)
    while time.monotonic() < submitted + 0.5:  # B's time runs out while it is queued
        time.sleep(0.05)
    _Crm.gate.set()
    arrived = results_of(results, 2)
    assert [(r.key, r.error) for r in arrived] == [("A", ""), ("B", "timeout after 0.5 s")]
    assert arrived[1].seconds >= 0.5
    assert [p.partition("?")[0] for p in _Crm.requests] == ["/gate"]
    lookups.shutdown()


# -- results: callback or inbox ----------------------------------------------------------------
def test_without_post_results_wait_in_the_inbox_for_drain(crm):
    lookups = Lookups(workers=2)
    assert lookups.drain() == []
    lookups.submit("call-1", 1, f"{crm}/customers?number=3331234567", 5.0)
    lookups.submit("call-2", 1, f"{crm}/error", 5.0)
    arrived: list[LookupResult] = []
    deadline = time.monotonic() + WAIT
    while len(arrived) < 2 and time.monotonic() < deadline:
        arrived += lookups.drain()
        time.sleep(0.01)  # polling, as the loop does on each turn
    assert sorted((r.key, r.data is not None, r.error) for r in arrived) == [
        ("call-1", True, ""), ("call-2", False, "HTTP 500")]
    lookups.shutdown()


def test_a_post_that_raises_does_not_stop_the_worker(crm):
    arrived: queue.SimpleQueue[LookupResult] = queue.SimpleQueue()

    def post(result: LookupResult) -> None:
        if result.request_id == 1:
            raise RuntimeError("inbox broken")
        arrived.put(result)

    lookups = Lookups(post=post, workers=1)
    lookups.submit("call-1", 1, f"{crm}/customers", 5.0)
    lookups.submit("call-1", 2, f"{crm}/customers", 5.0)
    (result,) = results_of(arrived, 1)
    assert (result.request_id, result.data) == (2, CUSTOMER)
    lookups.shutdown()


# -- stopping ------------------------------------------------------------------------------------
def test_after_shutdown_lookups_are_answered_at_once():
    arrived: list[LookupResult] = []
    lookups = Lookups(post=arrived.append)
    lookups.shutdown()
    lookups.submit("call-1", 7, f"http://127.0.0.1:{closed_port()}/customers", 5.0)
    assert [(r.key, r.request_id, r.data, r.error) for r in arrived] == [
        ("call-1", 7, None, STOPPING)]
    assert STOPPING == "switchboard stopping"


def test_shutdown_returns_at_once_and_answers_what_was_queued(crm):
    results: queue.SimpleQueue[LookupResult] = queue.SimpleQueue()
    lookups = Lookups(post=results.put, workers=1)
    lookups.submit("A", 1, f"{crm}/gate", 10.0)
    assert _Crm.at_gate.wait(WAIT)
    lookups.submit("A", 2, f"{crm}/customers", 10.0)
    lookups.submit("B", 3, f"{crm}/customers", 10.0)
    lookups.shutdown()  # the worker is still held at the gate: nothing here waits for it
    stopped = results_of(results, 2)
    assert [(r.key, r.request_id, r.error) for r in stopped] == [("A", 2, STOPPING),
                                                                 ("B", 3, STOPPING)]
    _Crm.gate.set()
    (running,) = results_of(results, 1)  # the running one still ends and answers
    assert (running.request_id, running.data) == (1, CUSTOMER)


def test_a_process_with_a_trickled_lookup_running_exits_promptly():
    # the CRM lives in the child, which accepts the worker's request (so that the worker is
    # waiting for an answer that never comes) and returns from main with the connection open
    script = textwrap.dedent("""
        import socket, sys
        from ivr.lookup import Lookups

        def main():
            listener = socket.create_server(("127.0.0.1", 0))
            port = listener.getsockname()[1]
            Lookups().submit("call-1", 1, f"http://127.0.0.1:{port}/customers", 600.0)
            conn, _ = listener.accept()
            conn.settimeout(10)
            request = b""
            while b"\\r\\n\\r\\n" not in request:
                request += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nX-Slow: ")
            globals()["held"] = (listener, conn)  # open until the interpreter is gone
            print("request held")

        main()
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "request held"

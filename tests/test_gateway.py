"""SIP OPTIONS health checks against real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from hw.gateway import GatewayMonitor, build_options, parse_status

TIMEOUT = 0.3


class Responder:
    """A tiny UDP SIP peer: answers each request with a fixed status line."""

    def __init__(self, status: str = "200 OK", call_id: Callable[[str], str] | None = None):
        self.status = status
        self.call_id = call_id or (lambda cid: cid)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.requests.append(data)
            head = data.split(b"\r\n\r\n", 1)[0].decode()
            echoed = [
                line
                for line in head.split("\r\n")[1:]
                if line.split(":", 1)[0].lower() in ("via", "from", "to", "cseq")
            ]
            cid = next(ln.split(":", 1)[1].strip() for ln in head.split("\r\n")
                       if ln.lower().startswith("call-id:"))
            reply = [f"SIP/2.0 {self.status}", *echoed, f"Call-ID: {self.call_id(cid)}",
                     "Content-Length: 0"]
            self.sock.sendto(("\r\n".join(reply) + "\r\n\r\n").encode(), addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


@pytest.fixture
def responders() -> Iterator[Callable[..., Responder]]:
    made: list[Responder] = []

    def make(*args: object, **kw: object) -> Responder:
        r = Responder(*args, **kw)  # type: ignore[arg-type]
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def dead_port() -> int:
    """A UDP port on 127.0.0.1 where nothing listens (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def monitor(gws: list[tuple[str, str, int]], changes: list[tuple[str, bool]]) -> GatewayMonitor:
    return GatewayMonitor(gws, interval=0.05, timeout=TIMEOUT, local_host="127.0.0.1",
                          on_change=lambda n, up: changes.append((n, up)))


# -- build_options ----------------------------------------------------------------


def test_build_options_is_well_formed() -> None:
    msg = build_options("10.0.0.1", 5060, "10.0.0.2", 40000, "abc@host", 7, "z9hG4bKxyz")
    assert msg.endswith(b"\r\n\r\n")
    lines = msg.decode().split("\r\n")
    assert lines[0] == "OPTIONS sip:10.0.0.1:5060 SIP/2.0"
    assert lines[-2:] == ["", ""]
    headers = {}
    for line in lines[1:-2]:
        name, sep, value = line.partition(": ")
        assert sep, line
        headers[name] = value
    assert headers["Via"] == "SIP/2.0/UDP 10.0.0.2:40000;rport;branch=z9hG4bKxyz"
    assert headers["Max-Forwards"] == "70"
    assert ";tag=" in headers["From"]
    assert headers["To"] == "<sip:10.0.0.1:5060>"
    assert headers["Call-ID"] == "abc@host"
    assert headers["CSeq"] == "7 OPTIONS"
    assert headers["Contact"].startswith("<sip:")
    assert headers["Accept"] == "application/sdp"
    assert headers["Content-Length"] == "0"
    assert headers["User-Agent"].startswith("Centralino")


def test_build_options_adds_magic_cookie_and_rejects_injection() -> None:
    msg = build_options("h", 5060, "l", 1, "c", 1, "abc").decode()
    assert ";branch=z9hG4bKabc\r\n" in msg
    with pytest.raises(ValueError, match="contain no whitespace"):
        build_options("h", 5060, "l", 1, "c\r\nX-Evil: 1", 1, "b")
    with pytest.raises(ValueError, match=r"^CSeq must be in 1\.\."):
        build_options("h", 5060, "l", 1, "c", 0, "b")


# -- parse_status -------------------------------------------------------------------

OK = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\nCall-ID: a@b\r\nCSeq: 3 OPTIONS\r\nContent-Length: 0\r\n\r\n"  # noqa: E501


def test_parse_status_response() -> None:
    assert parse_status(OK) == (200, "OK", "a@b", 3)
    compact = b"SIP/2.0 405 Method Not Allowed\r\ni: z\r\ncseq: 9 OPTIONS\r\n\r\n"
    assert parse_status(compact) == (405, "Method Not Allowed", "z", 9)


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00\xff\xfe garbage \x80",
        bytes(range(256)),
        b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nCall-ID: a\r\nCSeq: 1 GET\r\n\r\n",
        b"SIP/2.0 abc OK\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\n\r\n",
        b"SIP/2.0 999 Nope\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\n\r\n",
        b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\n",  # no Call-ID
        b"SIP/2.0 200 OK\r\nCall-ID: a\r\nCSeq: x OPTIONS\r\n\r\n",
        b"SIP/2.0 200 OK\r\nCall-ID: a\r\nno colon here\r\nCSeq: 1 OPTIONS\r\n\r\n",
        "not bytes",
        None,
    ],
)
def test_parse_status_garbage(garbage: object) -> None:
    assert parse_status(garbage) is None  # type: ignore[arg-type]


def test_parse_status_truncated() -> None:
    for cut in range(len(OK) - 1):
        assert parse_status(OK[:cut]) is None, cut


def test_parse_status_request_is_not_a_response() -> None:
    req = build_options("127.0.0.1", 5060, "127.0.0.1", 5061, "c@x", 1, "b")
    assert parse_status(req) is None


# -- GatewayMonitor with real sockets --------------------------------------------------


def test_200_ok_is_reachable(responders: Callable[..., Responder]) -> None:
    r = responders("200 OK")
    changes: list[tuple[str, bool]] = []
    m = monitor([("gw1", "127.0.0.1", r.port)], changes)
    t0 = time.monotonic()
    assert m.check_all() == {"gw1": True}
    assert time.monotonic() - t0 < TIMEOUT  # returns as soon as all answered
    assert m.state() == {"gw1": True}
    assert changes == [("gw1", True)]
    assert r.requests[0].startswith(b"OPTIONS sip:127.0.0.1:")


@pytest.mark.parametrize("status", ["405 Method Not Allowed", "403 Forbidden", "501 Not Impl"])
def test_error_response_still_proves_alive(
    responders: Callable[..., Responder], status: str
) -> None:
    r = responders(status)
    changes: list[tuple[str, bool]] = []
    assert monitor([("gw", "127.0.0.1", r.port)], changes).check_all() == {"gw": True}
    assert changes == [("gw", True)]


def test_silent_port_is_unreachable_within_timeout(caplog: pytest.LogCaptureFixture) -> None:
    changes: list[tuple[str, bool]] = []
    m = monitor([("dead", "127.0.0.1", dead_port())], changes)
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="hw.gateway"):
        assert m.check_all() == {"dead": False}
    assert TIMEOUT * 0.9 <= time.monotonic() - t0 < TIMEOUT + 0.5
    assert changes == [("dead", False)]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "OPTIONS" not in caplog.text  # never the message itself


def test_wrong_call_id_is_ignored(responders: Callable[..., Responder]) -> None:
    r = responders("200 OK", call_id=lambda cid: "other@x")
    changes: list[tuple[str, bool]] = []
    assert monitor([("gw", "127.0.0.1", r.port)], changes).check_all() == {"gw": False}


def test_mixed_gateways_one_socket(responders: Callable[..., Responder]) -> None:
    a, b = responders("200 OK"), responders("404 Not Found")
    changes: list[tuple[str, bool]] = []
    m = monitor([("a", "127.0.0.1", a.port), ("b", "127.0.0.1", b.port),
                 ("c", "127.0.0.1", dead_port())], changes)
    assert m.check_all() == {"a": True, "b": True, "c": False}
    assert sorted(changes) == [("a", True), ("b", True), ("c", False)]


def test_on_change_once_per_change(
    responders: Callable[..., Responder], caplog: pytest.LogCaptureFixture
) -> None:
    r = responders("200 OK")
    changes: list[tuple[str, bool]] = []
    m = monitor([("gw", "127.0.0.1", r.port)], changes)
    with caplog.at_level(logging.INFO, logger="hw.gateway"):
        m.check_all()
        m.check_all()  # no change: no callback
        assert changes == [("gw", True)]
        r.close()  # gateway goes away
        m.check_all()
        m.check_all()
        assert changes == [("gw", True), ("gw", False)]
        r2 = responders("200 OK")
        m._gateways = [("gw", "127.0.0.1", r2.port)]  # same gateway, back on a new port
        m.check_all()
    assert changes == [("gw", True), ("gw", False), ("gw", True)]
    levels = [rec.levelno for rec in caplog.records]
    assert levels == [logging.INFO, logging.WARNING, logging.INFO]
    assert "reachable: SIP 200 OK" in caplog.records[-1].getMessage()


def test_failing_callback_does_not_break_checks(responders: Callable[..., Responder]) -> None:
    r = responders("200 OK")

    def boom(name: str, up: bool) -> None:
        raise RuntimeError("callback bug")

    m = GatewayMonitor([("gw", "127.0.0.1", r.port)], timeout=TIMEOUT,
                       local_host="127.0.0.1", on_change=boom)
    assert m.check_all() == {"gw": True}
    assert m.state() == {"gw": True}


def test_default_bind_all_interfaces(responders: Callable[..., Responder]) -> None:
    r = responders("200 OK")
    m = GatewayMonitor([("gw", "127.0.0.1", r.port)], timeout=TIMEOUT, on_change=None)
    assert m.check_all() == {"gw": True}
    assert b"Via: SIP/2.0/UDP 127.0.0.1:" in r.requests[0]


def test_start_stop_thread(responders: Callable[..., Responder]) -> None:
    r = responders("200 OK")
    seen = threading.Event()
    m = GatewayMonitor([("gw", "127.0.0.1", r.port)], interval=0.05, timeout=TIMEOUT,
                       local_host="127.0.0.1", on_change=lambda n, up: seen.set())
    m.start()
    try:
        assert seen.wait(2)
        assert m.state() == {"gw": True}
    finally:
        m.stop()
    assert m._thread is None


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match=r"^duplicate gateway name 'a'$"):
        GatewayMonitor([("a", "h", 1), ("a", "h", 2)])
    with pytest.raises(ValueError, match=r"^gateway 'a': port 0 out of range$"):
        GatewayMonitor([("a", "h", 0)])
    with pytest.raises(ValueError, match=r"^interval and timeout must be positive$"):
        GatewayMonitor([], timeout=0)
    assert GatewayMonitor([]).check_all() == {}

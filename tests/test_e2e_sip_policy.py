"""SIP policy end to end: the switchboard never lets a caller or a phone make it dial elsewhere.

A REFER inside a call is refused with 403 and the Refer-To target hears nothing; a REFER
followed by the caller's BYE leaves the switchboard running (that sequence once crashed it);
an agent's phone answering 302 is not followed and counts as not answering.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e import Switchboard, free_tcp_port, free_udp_port, peer, require_sip_stack

pytestmark = pytest.mark.e2e

PREMIUM = "00390612345678"
CALLER, FIRST, SECOND = "0611111111", "0622222222", "0633333333"
"""Callers' numbers: a caller ID that is not a number is not stored as given."""
QUIET_WINDOW = 2.0
"""Seconds we keep watching a socket that must receive nothing, after the call is over."""


@dataclass
class Responder:
    """A UDP SIP endpoint on loopback that records every request and answers INVITEs with
    *answer* (e.g. '404 Not Found'; with *contact*, a 3xx pointing there); silent otherwise."""

    answer: str = ""
    contact: str = ""
    requests: list[str] = field(default_factory=list)
    sock: socket.socket = field(init=False)
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> Responder:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(2)
        self.sock.close()

    def methods(self) -> list[str]:
        return [r.split(" ", 1)[0] for r in self.requests]

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                continue
            text = data.decode("utf-8", "replace")
            self.requests.append(text)
            if text.startswith("INVITE ") and self.answer:
                self._reply(text, addr, "100 Trying")
                self._reply(text, addr, self.answer)

    def _reply(self, request: str, addr: tuple[str, int], status: str) -> None:
        lines = []
        for line in request.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
            name = line.split(":", 1)[0].strip().lower()
            if name in ("via", "from", "call-id", "cseq"):
                lines.append(line)
            elif name == "to":
                lines.append(line if status.startswith("100") else line + ";tag=phone")
        if self.contact and status[0] == "3":
            lines.append(f"Contact: <{self.contact}>")
        reply = "\r\n".join([f"SIP/2.0 {status}", *lines, "Content-Length: 0", "", ""])
        self.sock.sendto(reply.encode(), addr)


@pytest.fixture
def responders():
    made: list[Responder] = []

    def make(answer: str = "", contact: str = "") -> Responder:
        made.append(Responder(answer, contact).start())
        return made[-1]

    yield make
    for responder in made:
        responder.stop()


def watch_quietly(responder: Responder, seconds: float = QUIET_WINDOW) -> None:
    """The one bounded wait of these tests: time for an INVITE that must not come."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not responder.requests:
        time.sleep(0.05)


def board_for(tmp_path, agents: dict[str, int]) -> Switchboard:
    require_sip_stack()
    return Switchboard(tmp_path, free_udp_port(), free_tcp_port(), agents=agents,
                       ring_timeout=5.0).start()


def stop_cleanly(board: Switchboard) -> None:
    assert board.stop() == 0, board.log_tail()
    assert "Traceback" not in board.log_path.read_text(), board.log_tail()


def test_a_callers_refer_is_refused_and_its_target_is_never_called(tmp_path, responders):
    premium = responders()  # a listener where the Refer-To points: it must hear nothing
    board = board_for(tmp_path, {"anna": free_udp_port()})
    try:
        target = f"sip:{PREMIUM}@127.0.0.1:{premium.port}"
        caller = peer(tmp_path, CALLER, "caller", free_udp_port(), "--target", board.uri,
                      "--refer", target, "--refer-after", "0.5", "--refer-times", "2",
                      "--hold", "3", "--duration", "30").start()
        assert caller.wait_exit(35) == 0
        assert len(caller.events("refer_sent")) == 2
        statuses = caller.events("transfer_status")
        assert [(s["code"], s["final"]) for s in statuses] == [(403, True), (403, True)]
        watch_quietly(premium)
        assert premium.requests == []
        board.wait_for_log(f"refused REFER to {PREMIUM}@127.0.0.1:{premium.port} (403)")
        assert board.log_path.read_text().count("refused REFER") == 1  # once per call
        (record,) = board.records()
        assert record["caller"] == CALLER
        assert record["trunk"] == "test"
        assert record["answered_at"] is not None
        assert record["ended_at"] is not None
    finally:
        stop_cleanly(board)


def test_refer_to_a_target_answering_404_then_bye_and_the_next_call_completes(
        tmp_path, responders):
    # the sequence that crashed the process when REFERs were accepted: REFER (its target
    # answered 404), then the caller's BYE. Refused now, the target is never dialled.
    target = responders("404 Not Found")
    board = board_for(tmp_path, {"anna": free_udp_port()})
    try:
        first = peer(tmp_path, FIRST, "caller", free_udp_port(), "--target", board.uri,
                     "--refer", f"sip:{PREMIUM}@127.0.0.1:{target.port}", "--refer-after",
                     "0.3", "--hold", "1.0", "--duration", "30").start()
        assert first.wait_exit(35) == 0
        assert [e["code"] for e in first.events("transfer_status")] == [403]
        assert [e["code"] for e in first.events("disconnected")] == [200]  # our own BYE
        assert board.proc is not None
        assert board.proc.poll() is None

        anna = peer(tmp_path, "anna", "agent", board.agents["anna"], "--talk", "1",
                    "--duration", "40").start()
        second = peer(tmp_path, SECOND, "caller", free_udp_port(), "--target", board.uri,
                      "--digits", "2,1", "--first-digit-after", "0.5", "--digit-gap", "0.5",
                      "--duration", "40").start()
        try:
            assert second.wait_exit(45) == 0
        finally:
            anna.stop()
        watch_quietly(target)
        assert target.requests == []
        records = {r["caller"]: r for r in board.records()}
        assert set(records) == {FIRST, SECOND}
        assert records[SECOND]["outcome"] == "completed"
        assert records[SECOND]["agent"] == "anna"
        assert board.proc.poll() is None
    finally:
        stop_cleanly(board)


def test_an_agent_phone_answering_302_is_not_followed_and_counts_as_no_answer(
        tmp_path, responders):
    premium = responders()
    phone = responders("302 Moved Temporarily", f"sip:{PREMIUM}@127.0.0.1:{premium.port}")
    board = board_for(tmp_path, {"anna": phone.port})
    try:
        caller = peer(tmp_path, "caller", "caller", free_udp_port(), "--target", board.uri,
                      "--digits", "2,1", "--first-digit-after", "0.5", "--digit-gap", "0.5",
                      "--hold", "6", "--duration", "30").start()
        # (pjsip prints the target as a To URI: without its port)
        board.wait_for_log(f"refused redirect to {PREMIUM}@127.0.0.1 "
                           "(302 Moved Temporarily, not followed)")
        assert caller.wait_exit(35) == 0
        invites = phone.methods().count("INVITE")
        assert invites >= 1
        assert phone.methods().count("ACK") >= invites  # the 302 was acknowledged, and that is all
        watch_quietly(premium)
        assert premium.requests == []
        misses = board.queue_events("ring_no_answer")
        assert misses
        assert {m["agent"] for m in misses} == {"anna"}
        assert {m["detail"]["reason"] for m in misses} == {"302 Moved Temporarily"}
        (record,) = board.records()
        assert record["agent"] is None
        assert record["connected_at"] is None
    finally:
        stop_cleanly(board)


def test_a_refer_target_is_logged_escaped_and_cut():
    require_sip_stack()
    from ivr.sip.stack import printable_target

    assert printable_target(f"<sip:{PREMIUM}@gw.example:5060;transport=udp>") \
        == f"{PREMIUM}@gw.example:5060"
    assert printable_target("sip:a\r\nFAKE: line\x00\\@h") == "a\\r\\nFAKE: line\\x00\\\\@h"
    cut = printable_target("sip:" + "9" * 200 + "@h")
    assert len(cut) == 80
    assert cut.endswith("...")
    assert printable_target("not a uri \x1b[31m") == "not a uri \\x1b[31m"


# -- requests outside calls, and garbage, against `ivr run` -----------------------------------
STRANGER = "127.0.0.2"
FAKE_LINE = "2024-05-04 10:11:12,345 INFO ivr.driver: call 12 ended: completed"


def options(port: int, target: int, n: int) -> bytes:
    return "\r\n".join([
        f"OPTIONS sip:ivr@127.0.0.1:{target} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-o{n}-{port};rport",
        "Max-Forwards: 70", f"From: <sip:ping@127.0.0.1:{port}>;tag=o{n}",
        f"To: <sip:ivr@127.0.0.1:{target}>", f"Call-ID: o{n}-{port}@test", f"CSeq: {n} OPTIONS",
        "Content-Length: 0", "", ""]).encode()


def udp_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(5)
    return sock


def ping(sock: socket.socket, target: int, n: int) -> str:
    """An OPTIONS from the trunk and its answer: the switchboard reads datagrams in order on one
    thread, so everything sent to it before has been handled when this answer comes."""
    sock.sendto(options(sock.getsockname()[1], target, n), ("127.0.0.1", target))
    while True:
        answer = sock.recv(65535).decode("utf-8", "replace")
        if f"Call-ID: o{n}-" in answer:
            return answer


def test_options_from_the_trunk_is_answered_without_a_product_name_and_strangers_get_none(
        tmp_path: Path) -> None:
    board = board_for(tmp_path, {"anna": free_udp_port()})
    trunk, stranger = udp_socket("127.0.0.1"), udp_socket(STRANGER)
    try:
        stranger.sendto(options(stranger.getsockname()[1], board.sip_port, 1),
                        ("127.0.0.1", board.sip_port))
        answer = ping(trunk, board.sip_port, 2)
        head = answer.split("\r\n\r\n", 1)[0]
        assert head.startswith("SIP/2.0 200 ")
        assert "\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO" in head
        assert "user-agent:" not in head.lower()
        assert "server:" not in head.lower()
        stranger.setblocking(False)
        with pytest.raises(BlockingIOError):
            stranger.recv(65535)  # the trunk's answer came after: the stranger's never will
    finally:
        trunk.close()
        stranger.close()
        stop_cleanly(board)
    assert "refused options (no answer) from 127.0.0.2" in board.log_path.read_text()


def test_garbage_datagrams_add_little_to_the_log_and_nothing_unescaped(tmp_path: Path) -> None:
    board = board_for(tmp_path, {"anna": free_udp_port()})
    trunk, stranger = udp_socket("127.0.0.1"), udp_socket(STRANGER)
    target = ("127.0.0.1", board.sip_port)
    try:
        forged = (f"NOT SIP\r\n{FAKE_LINE}\n{FAKE_LINE}\r\n\x00\x1b[2J{FAKE_LINE}\n").encode()
        stranger.sendto(forged, target)
        ping(trunk, board.sip_port, 1)
        board.wait_for_log("unparseable SIP from 127.0.0.2")
        before = board.log_path.stat().st_size
        garbage = (bytes(range(256)) * 16)[:4096]  # NUL, ESC, CR, LF and non-UTF-8 bytes
        for n in range(2, 82):  # 2,000 datagrams of 4 KB, in bursts the socket can hold
            for _ in range(25):
                stranger.sendto(garbage, target)
            ping(trunk, board.sip_port, n)
    finally:
        trunk.close()
        stranger.close()
        stop_cleanly(board)  # the summary of what is still counted is written at the stop
    data = board.log_path.read_bytes()
    added = len(data) - before
    assert added < 20_000, board.log_tail()
    text = data.decode("utf-8")
    assert "\x1b" not in text
    assert "\x00" not in text
    assert not [line for line in text.splitlines() if line.startswith(FAKE_LINE)]
    assert "unparseable SIP x " in text

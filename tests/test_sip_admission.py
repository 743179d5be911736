"""The SIP adapter in this process, against raw SIP datagrams from a socket on loopback.

The line cap is enforced at admission, inside the INVITE callback, so a burst of INVITEs handled
in one poll cannot pass it; a leg frees its line when it ends. An incoming leg reports
CallConfirmed when the ACK of our 200 OK arrives, and never when it does not. Several files
play as one prompt, back to back.

A raw socket rather than a pjsua2 peer: it sends 60 INVITEs in one burst, can leave a 200 OK
unacknowledged, and hears the RTP we send.
"""

from __future__ import annotations

import math
import socket
import struct
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import free_udp_port, require_sip_stack, rtp_block

pytestmark = pytest.mark.e2e

TRUNK = "gw"


@dataclass
class Response:
    status: int
    reason: str
    call_id: str
    method: str
    headers: dict[str, str]


@dataclass
class RawSip:
    """A SIP caller made of one UDP socket: sends INVITEs, ACKs final answers, answers BYEs."""

    target_port: int
    sock: socket.socket = field(init=False)
    rtp: socket.socket = field(init=False)
    responses: list[Response] = field(default_factory=list)
    byes: list[str] = field(default_factory=list)
    invites: list[str] = field(default_factory=list)
    """INVITEs the stack sent us (left unanswered)."""
    rtp_packets: list[tuple[float, bytes]] = field(default_factory=list)
    ack_2xx: bool = True
    _sent: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Call-ID -> (branch, From header) of our INVITE."""

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.setblocking(False)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()

    def invite(self, n: int, caller: str = "0612345678", called: str = "800",
               extra: tuple[str, ...] = ()) -> str:
        call_id = f"c{n}-{self.port}@test"
        branch = f"z9hG4bK-{n}-{self.port}"
        from_hdr = f"<sip:{caller}@127.0.0.1:{self.port}>;tag=f{n}"
        rtp_port = self.rtp.getsockname()[1]
        sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
        self._send(
            f"INVITE sip:{called}@127.0.0.1:{self.target_port} SIP/2.0",
            [f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport",
             "Max-Forwards: 70", f"From: {from_hdr}",
             f"To: <sip:{called}@127.0.0.1:{self.target_port}>", f"Call-ID: {call_id}",
             "CSeq: 1 INVITE", f"Contact: <sip:{caller}@127.0.0.1:{self.port}>",
             *extra, "Content-Type: application/sdp"], sdp)
        self._sent[call_id] = (branch, from_hdr)
        return call_id

    def drain(self) -> None:
        """Read what arrived: ACK final answers, answer BYEs with 200, keep RTP."""
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                break
            self._handle(data.decode("utf-8", "replace"), addr)
        while True:
            try:
                data = self.rtp.recv(2048)
            except BlockingIOError:
                break
            self.rtp_packets.append((time.monotonic(), data))

    def finals(self, status: int | None = None) -> dict[str, int]:
        """Call-ID -> final status of the INVITEs answered (only *status* if given)."""
        return {r.call_id: r.status for r in self.responses
                if r.method == "INVITE" and r.status >= 200
                and (status is None or r.status == status)}

    def _handle(self, text: str, addr: tuple[str, int]) -> None:
        head = text.split("\r\n\r\n", 1)[0].split("\r\n")
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        if head[0].startswith("SIP/2.0 "):
            _, code, reason = [*head[0].split(" ", 2), ""][:3]
            method = headers.get("cseq", "").split()[-1]
            response = Response(int(code), reason, headers["call-id"], method, headers)
            self.responses.append(response)
            if method == "INVITE" and response.status >= 200:
                self._ack(response)
        elif head[0].startswith("INVITE "):
            self.invites.append(text)
        elif head[0].startswith("BYE "):
            self.byes.append(headers["call-id"])
            reply = "\r\n".join(["SIP/2.0 200 OK", *[
                f"{n}: {headers[n]}" for n in ("via", "from", "to", "call-id", "cseq")],
                "Content-Length: 0", "", ""])
            self.sock.sendto(reply.encode(), addr)

    def _ack(self, response: Response) -> None:
        branch, from_hdr = self._sent[response.call_id]
        if response.status < 300:
            if not self.ack_2xx:
                return
            contact = response.headers.get("contact", "")
            uri = contact[contact.find("<") + 1:contact.find(">")] if "<" in contact \
                else contact
            branch = branch + "-ack"  # the ACK of a 2xx is a transaction of its own
        else:
            uri = f"sip:800@127.0.0.1:{self.target_port}"
        self._send(f"ACK {uri} SIP/2.0",
                   [f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport",
                    "Max-Forwards: 70", f"From: {from_hdr}", f"To: {response.headers['to']}",
                    f"Call-ID: {response.call_id}", "CSeq: 1 ACK"], "")

    def _send(self, start: str, headers: list[str], body: str) -> None:
        message = "\r\n".join([start, *headers, f"Content-Length: {len(body.encode())}", "",
                               body])
        self.sock.sendto(message.encode(), ("127.0.0.1", self.target_port))


@dataclass
class Admission:
    """The admission function under test: a trunk with a line count, or the old 2-tuple."""

    lines: int | None = 30
    asked: int = 0

    def __call__(self, address: str) -> tuple[str | None, int] | tuple[str | None, int, int]:
        self.asked += 1
        if self.lines is None:
            return TRUNK, 200
        return TRUNK, 200, self.lines


@pytest.fixture
def sip_factory() -> Iterator[Callable[[Admission], tuple[object, RawSip]]]:
    require_sip_stack()
    from ivr.sip.stack import SipSettings, SipStack

    made: list[tuple[SipStack, RawSip]] = []

    def make(admission: Admission) -> tuple[SipStack, RawSip]:
        assert not made, "one SIP stack per process at a time"
        port = free_udp_port()
        stack = SipStack(SipSettings("127.0.0.1", port, rtp_port=rtp_block(400),
                                     rtp_port_range=400, max_calls=128), admission)
        stack.start()
        raw = RawSip(port)
        made.append((stack, raw))
        return stack, raw

    yield make  # type: ignore[misc]
    for stack, raw in made:
        stack.shutdown()
        raw.close()


def pump(stack: object, raw: RawSip, events: list[object], until: Callable[[], bool],
         timeout: float = 10.0) -> None:
    """Run the stack and the raw socket until *until()* holds; fail after *timeout*."""
    end = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < end, f"condition not met in {timeout}s; events: {events}"
        events.extend(stack.poll(10))  # type: ignore[attr-defined]
        raw.drain()


def of(kind: type, events: list[object]) -> list[object]:
    return [e for e in events if isinstance(e, kind)]


def test_a_burst_of_invites_gets_exactly_the_trunks_lines(sip_factory):
    from ivr.sip.events import CallRefused, IncomingCall, LegEnded

    admission = Admission(lines=30)
    stack, raw = sip_factory(admission)
    calls = [raw.invite(n) for n in range(60)]  # all sent before the stack reads any
    events: list[object] = []
    pump(stack, raw, events, lambda: len(of(IncomingCall, events))
         + len(of(CallRefused, events)) >= 60 and len(raw.finals(486)) >= 30)
    admitted = of(IncomingCall, events)
    refused = of(CallRefused, events)
    assert admission.asked == 60
    assert len(admitted) == 30
    assert {e.trunk for e in admitted} == {TRUNK}
    assert len(refused) == 30
    assert {(e.status, e.reason, e.trunk) for e in refused} == {(486, "Busy Here", TRUNK)}
    busy = raw.finals(486)
    assert len(busy) == 30
    assert set(busy) <= set(calls)
    assert raw.finals() == busy  # the 30 admitted ones have no final answer
    assert stack.lines_in_use(TRUNK) == 30

    # the driver hangs up five: their lines are free again, for five callers and no more
    for event in admitted[:5]:
        stack.hangup(event.leg)
    pump(stack, raw, events, lambda: len(of(LegEnded, events)) >= 5)
    assert stack.lines_in_use(TRUNK) == 25
    more = [raw.invite(n) for n in range(100, 106)]
    pump(stack, raw, events, lambda: (len(of(IncomingCall, events)) + len(of(CallRefused, events))
         >= 66 and more[-1] in raw.finals()) or len(of(IncomingCall, events)) > 35)
    assert len(of(IncomingCall, events)) == 35
    assert len(of(CallRefused, events)) == 31
    assert stack.lines_in_use(TRUNK) == 30


def test_without_a_line_count_the_stack_admits_what_the_driver_admits(sip_factory):
    from ivr.sip.events import CallRefused, IncomingCall

    stack, raw = sip_factory(Admission(lines=None))  # the 2-tuple answer of the old driver
    for n in range(40):
        raw.invite(n)
    events: list[object] = []
    pump(stack, raw, events, lambda: len(of(IncomingCall, events)) >= 40)
    assert not of(CallRefused, events)
    assert not raw.finals()
    assert stack.lines_in_use(TRUNK) == 40


def test_the_ack_of_our_200_confirms_an_incoming_call_and_bye_frees_its_line(sip_factory):
    from ivr.sip.events import CallConfirmed, IncomingCall, LegAnswered, LegEnded

    stack, raw = sip_factory(Admission(lines=2))
    call_id = raw.invite(1)
    events: list[object] = []
    pump(stack, raw, events, lambda: bool(of(IncomingCall, events)))
    (incoming,) = of(IncomingCall, events)
    stack.answer(incoming.leg)
    pump(stack, raw, events, lambda: bool(of(CallConfirmed, events)))
    assert raw.finals() == {call_id: 200}
    assert of(CallConfirmed, events) == [CallConfirmed(incoming.leg)]
    assert not of(LegAnswered, events)  # LegAnswered stays for outgoing legs
    stack.hangup(incoming.leg)
    pump(stack, raw, events, lambda: bool(of(LegEnded, events)))
    assert raw.byes == [call_id]
    assert stack.lines_in_use(TRUNK) == 0


def test_a_200_never_acknowledged_ends_the_leg_without_call_confirmed(sip_factory):
    """pjsip gives up on a 200 OK without ACK after 64*T1 (32 s): T1 is not settable through
    pjsua2 2.12.1, so this test takes about half a minute (bounded to 40 s)."""
    from ivr.sip.events import CallConfirmed, IncomingCall, LegEnded

    stack, raw = sip_factory(Admission(lines=2))
    raw.ack_2xx = False
    raw.invite(1)
    events: list[object] = []
    pump(stack, raw, events, lambda: bool(of(IncomingCall, events)))
    (incoming,) = of(IncomingCall, events)
    stack.answer(incoming.leg)
    pump(stack, raw, events, lambda: bool(of(LegEnded, events)), timeout=40)
    assert not of(CallConfirmed, events)
    (ended,) = of(LegEnded, events)
    assert ended.leg == incoming.leg
    oks = [r for r in raw.responses if r.method == "INVITE" and r.status == 200]
    assert len(oks) > 1  # pjsip retransmitted its 200 OK, in vain
    assert stack.lines_in_use(TRUNK) == 0


def test_session_timers_are_used_when_the_far_end_supports_them(sip_factory):
    from ivr.sip.events import CallConfirmed, IncomingCall

    stack, raw = sip_factory(Admission())
    plain = raw.invite(1)
    timed = raw.invite(2, extra=("Supported: timer", "Session-Expires: 300;refresher=uac"))
    events: list[object] = []
    pump(stack, raw, events, lambda: len(of(IncomingCall, events)) == 2)
    for event in of(IncomingCall, events):
        stack.answer(event.leg)
    pump(stack, raw, events, lambda: len(of(CallConfirmed, events)) == 2)
    oks = {r.call_id: r.headers for r in raw.responses if r.status == 200}
    # a gateway that runs the timer ends the call within 5 minutes if this process dies
    assert oks[timed]["session-expires"].split(";")[0] == "300"
    assert "timer" in oks[timed]["require"]
    assert "session-expires" not in oks[plain]

    # the calls we place (agents' phones) offer 5 minutes
    assert stack.dial(f"sip:agent@127.0.0.1:{raw.port}") is not None
    pump(stack, raw, events, lambda: bool(raw.invites))
    head = raw.invites[0].split("\r\n\r\n", 1)[0].lower()
    assert "\r\nsession-expires: 300" in head
    assert "timer" in head.split("supported:", 1)[1]


# -- prompts made of several files ---------------------------------------------------------
def write_tone(path: Path, seconds: float, amplitude: int, rate: int = 8000) -> str:
    frames = b"".join(struct.pack("<h", int(amplitude * math.sin(2 * math.pi * 400 * i / rate)))
                      for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return str(path)


def ulaw_level(payload: bytes) -> float:
    """Mean absolute amplitude of a G.711 mu-law payload."""
    total = 0
    for byte in payload:
        b = ~byte & 0xFF
        magnitude = (((b & 0x0F) << 3) + 0x84 << ((b >> 4) & 7)) - 0x84
        total += magnitude
    return total / max(1, len(payload))


def answered_call(stack: object, raw: RawSip, events: list[object]) -> str:
    from ivr.sip.events import CallConfirmed, IncomingCall

    raw.invite(1)
    pump(stack, raw, events, lambda: bool(of(IncomingCall, events)))
    (incoming,) = of(IncomingCall, events)
    stack.answer(incoming.leg)  # type: ignore[attr-defined]
    pump(stack, raw, events, lambda: bool(of(CallConfirmed, events)))
    return str(incoming.leg)


def test_three_files_play_back_to_back_as_one_prompt(sip_factory, tmp_path):
    from ivr.sip.events import PlaybackEnded
    from ivr.sip.stack import PLAYOUT_MARGIN

    files = [write_tone(tmp_path / "you-are-number.wav", 0.6, 1000),
             write_tone(tmp_path / "three.wav", 0.4, 4000),
             write_tone(tmp_path / "in-the-queue.wav", 0.8, 12000)]
    stack, raw = sip_factory(Admission())
    events: list[object] = []
    leg = answered_call(stack, raw, events)
    raw.rtp_packets.clear()
    started = time.monotonic()
    stack.play(leg, files, 7)
    pump(stack, raw, events, lambda: bool(of(PlaybackEnded, events)))
    assert of(PlaybackEnded, events) == [PlaybackEnded(leg, 7)]
    assert time.monotonic() - started >= 1.8 + PLAYOUT_MARGIN  # the sum of the three lengths

    # what the caller heard: quiet, louder, loudest, with no silence between them
    levels = [ulaw_level(data[12:]) for _, data in raw.rtp_packets]

    def kind(level: float) -> str:
        return "silence" if level < 200 else "low" if level < 1500 \
            else "mid" if level < 5000 else "high"

    kinds = [kind(level) for level in levels]
    sound = [i for i, k in enumerate(kinds) if k != "silence"]
    assert sound, f"nothing heard: {levels}"
    heard = kinds[sound[0]:sound[-1] + 1]
    assert "silence" not in heard, heard
    runs = [k for i, k in enumerate(heard) if i == 0 or heard[i - 1] != k]
    # a 20 ms packet across a boundary may read as a level between the two files
    runs = [k for i, k in enumerate(runs) if k in ("low", "high") or heard.count(k) > 2]
    assert runs == ["low", "mid", "high"], heard
    assert len(heard) == pytest.approx(90, abs=3)  # 1.8 s in 20 ms packets


def test_files_of_different_rates_or_missing_play_one_after_the_other(sip_factory, tmp_path):
    from ivr.sip.events import PlaybackEnded

    files = [write_tone(tmp_path / "a.wav", 0.3, 3000),
             write_tone(tmp_path / "b16k.wav", 0.3, 3000, rate=16000),
             write_tone(tmp_path / "c.wav", 0.3, 3000)]
    stack, raw = sip_factory(Admission())
    events: list[object] = []
    leg = answered_call(stack, raw, events)
    started = time.monotonic()
    stack.play(leg, files, 8)
    pump(stack, raw, events, lambda: bool(of(PlaybackEnded, events)))
    assert of(PlaybackEnded, events) == [PlaybackEnded(leg, 8)]
    assert time.monotonic() - started >= 0.9
    # a file that cannot be read is skipped; the others play one after the other
    started = time.monotonic()
    stack.play(leg, [files[0], str(tmp_path / "missing.wav"), files[2]], 10)
    pump(stack, raw, events, lambda: len(of(PlaybackEnded, events)) == 2)
    assert of(PlaybackEnded, events)[-1] == PlaybackEnded(leg, 10)
    assert time.monotonic() - started >= 0.6
    stack.play(leg, [], 9)  # nothing to play: ended at once
    pump(stack, raw, events, lambda: len(of(PlaybackEnded, events)) == 3)
    assert of(PlaybackEnded, events)[-1] == PlaybackEnded(leg, 9)


# -- requests outside calls: our build's request policy ----------------------------------------
STRANGER = "127.0.0.2"
"""A source that is no trunk's (the admission below knows only 127.0.0.1)."""


@dataclass
class Prober:
    """One UDP socket on *host* that sends SIP requests and collects the answers."""

    host: str
    target_port: int
    sock: socket.socket = field(init=False)
    answers: list[str] = field(default_factory=list)
    sent: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, 0))
        self.sock.setblocking(False)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def request(self, method: str, *, to_tag: str = "", call_id: str = "",
                from_tag: str = "", content_type: str = "", body: str = "",
                cseq: int = 1) -> str:
        self.sent += 1
        call_id = call_id or f"probe-{self.sent}-{self.port}@test"
        lines = [f"{method} sip:ivr@127.0.0.1:{self.target_port} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK-p{self.sent}-"
                 f"{self.port};rport",
                 "Max-Forwards: 70",
                 f"From: <sip:probe@{self.host}:{self.port}>;tag="
                 f"{from_tag or 'p' + str(self.sent)}",
                 f"To: <sip:ivr@127.0.0.1:{self.target_port}>" + (f";tag={to_tag}" if to_tag
                                                                  else ""),
                 f"Call-ID: {call_id}", f"CSeq: {cseq} {method}",
                 f"Contact: <sip:probe@{self.host}:{self.port}>"]
        if method == "SUBSCRIBE":
            lines.append("Event: presence")
        if method in ("NOTIFY", "PUBLISH"):
            lines += ["Event: presence", "Subscription-State: active"]
        if method == "REFER":
            lines.append(f"Refer-To: <sip:{PREMIUM_NUMBER}@127.0.0.1:9>")
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(),
                         ("127.0.0.1", self.target_port))
        return call_id

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            self.answers.append(data.decode("utf-8", "replace"))

    def close(self) -> None:
        self.sock.close()


PREMIUM_NUMBER = "00390612345678"


def status_of(answer: str) -> int:
    return int(answer.split(" ", 2)[1])


def header(answer: str, name: str) -> str | None:
    for line in answer.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


@dataclass
class TrunkOnly:
    """Admission: 127.0.0.1 is the trunk 'gw' (with *media_networks*), anything else is not."""

    media_networks: tuple[str, ...] = ()

    def __call__(self, address: str) -> tuple[str | None, int, int, tuple[str, ...]]:
        if address == "127.0.0.1":
            return TRUNK, 200, 30, self.media_networks
        return None, 403, 0, ()


@pytest.fixture
def policy_stack(sip_factory) -> Iterator[tuple[object, Prober, Prober, RawSip]]:
    stack, raw = sip_factory(TrunkOnly())  # type: ignore[arg-type]
    if not stack.request_policy:  # type: ignore[attr-defined]
        pytest.fail("this pjsua2 build has no request policy hook: run `make sipstack`")
    trunk, stranger = Prober("127.0.0.1", raw.target_port), Prober(STRANGER, raw.target_port)
    yield stack, trunk, stranger, raw
    trunk.close()
    stranger.close()


def ask(stack: object, prober: Prober, method: str, events: list[object] | None = None,
        **kw: str) -> str | None:
    """Send one request; its answer, or None when none came (the stack's events go to
    *events*). 'None' is known for sure without waiting on a clock: a trunk OPTIONS sent after
    it is answered first (one socket, one thread, datagrams in order), and only then is the
    prober's socket read."""
    seen = events if events is not None else []
    before = len(prober.answers)
    prober.request(method, **kw)  # type: ignore[arg-type]
    if prober.host != STRANGER:
        end = time.monotonic() + 5
        while len(prober.answers) == before:
            assert time.monotonic() < end, f"no answer to {method} within 5 s"
            seen.extend(stack.poll(10))  # type: ignore[attr-defined]
            prober.drain()
        return prober.answers[-1]
    marker = Prober("127.0.0.1", prober.target_port)
    try:
        assert ask(stack, marker, "OPTIONS", seen) is not None
    finally:
        marker.close()
    seen.extend(stack.poll(10))  # type: ignore[attr-defined]
    prober.drain()
    return prober.answers[-1] if len(prober.answers) > before else None


@pytest.mark.parametrize(("method", "status"), [
    ("MESSAGE", 403), ("SUBSCRIBE", 403), ("PUBLISH", 403), ("NOTIFY", 403), ("REFER", 403),
    ("REGISTER", 403), ("INFO", 403), ("FOOBAR", 405)])
def test_each_request_kind_from_a_trunk_and_from_a_stranger(
        policy_stack: Any, method: str, status: int) -> None:
    stack, trunk, stranger, _ = policy_stack
    answer = ask(stack, trunk, method)
    assert answer is not None
    assert status_of(answer) == status
    if status == 405:
        assert header(answer, "Allow") == "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
    assert ask(stack, stranger, method) is None
    kind = method.lower() if method != "FOOBAR" else "other"
    traffic, decisions = stack.traffic_counts()
    assert decisions[kind, "stranger"] == 1
    assert traffic[f"refused {kind} (no answer)"] == 1
    assert traffic[f"refused {kind} ({status})"] == 1


def test_options_from_the_trunk_names_no_product_and_allows_only_what_we_handle(
        policy_stack: Any) -> None:
    stack, trunk, stranger, _ = policy_stack
    answer = ask(stack, trunk, "OPTIONS")
    assert answer is not None
    assert status_of(answer) == 200
    assert header(answer, "Allow") == "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
    assert header(answer, "User-Agent") is None
    assert header(answer, "Server") is None
    assert "pjsip" not in answer.lower()
    assert "centralino" not in answer.lower()
    assert ask(stack, stranger, "OPTIONS") is None
    assert stack.request_decisions["options", "answered"] >= 1


def test_no_product_name_in_what_we_send(policy_stack: Any) -> None:
    stack, _, _, raw = policy_stack
    assert stack.dial(f"sip:agent@127.0.0.1:{raw.port}") is not None
    pump(stack, raw, [], lambda: bool(raw.invites))
    invite = raw.invites[0]
    assert "\r\ns=-\r\n" in invite
    for name in ("pjsip", "pjmedia", "pjsua", "centralino"):
        assert name not in invite.lower()
    assert header(invite, "Allow") == "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
    # and the 200 OK of a call we answer
    events: list[object] = []
    answered_call(stack, raw, events)
    ok = next(r for r in raw.responses if r.method == "INVITE" and r.status == 200)
    assert ok.headers["allow"] == "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
    assert "user-agent" not in ok.headers
    assert "server" not in ok.headers


def test_strangers_get_403_when_the_setting_says_so(sip_factory: Any) -> None:
    from dataclasses import replace

    stack, raw = sip_factory(TrunkOnly())  # type: ignore[arg-type]
    stack.settings = replace(stack.settings, refuse_strangers=True)
    stranger = Prober(STRANGER, raw.target_port)
    try:
        before = len(stranger.answers)
        stranger.request("OPTIONS")
        end = time.monotonic() + 5
        while len(stranger.answers) == before:
            assert time.monotonic() < end, "no 403 within 5 s"
            stack.poll(10)
            stranger.drain()
        assert status_of(stranger.answers[-1]) == 403
        assert header(stranger.answers[-1], "Allow") is None
    finally:
        stranger.close()


def test_in_a_call_dtmf_info_is_a_digit_and_other_info_is_415(policy_stack: Any) -> None:
    from ivr.sip.events import DigitReceived

    stack, trunk, _, raw = policy_stack
    events: list[object] = []
    leg = answered_call(stack, raw, events)
    ok = next(r for r in raw.responses if r.method == "INVITE" and r.status == 200)
    to_tag = ok.headers["to"].split("tag=", 1)[1].split(";")[0]
    from_tag = raw._sent[ok.call_id][1].split("tag=", 1)[1]
    in_call = {"to_tag": to_tag, "call_id": ok.call_id, "from_tag": from_tag}
    answer = ask(stack, trunk, "INFO", events, content_type="application/dtmf-relay",
                 body="Signal=5\r\nDuration=160\r\n", cseq="2", **in_call)  # type: ignore[arg-type]
    assert answer is not None
    assert status_of(answer) == 200
    pump(stack, raw, events, lambda: bool(of(DigitReceived, events)))
    assert of(DigitReceived, events) == [DigitReceived(leg, "5", "info")]
    answer = ask(stack, trunk, "INFO", events, content_type="application/media_control+xml",
                 body="<media_control/>", cseq="3", **in_call)  # type: ignore[arg-type]
    assert answer is not None
    assert status_of(answer) == 415
    assert stack.request_decisions["info", "not dtmf"] == 1
    # a made-up dialog is no call: INFO there is refused like any out-of-dialog INFO
    answer = ask(stack, trunk, "INFO", content_type="application/dtmf-relay",
                 body="Signal=1\r\n", to_tag="made-up")
    assert answer is not None
    assert status_of(answer) == 403


# -- INVITEs: framing and media -----------------------------------------------------------------
def raw_invite(raw: RawSip, n: int, *, connection: str = "127.0.0.1",
               content_length: str | None = None, cut: int = 0) -> str:
    call_id = f"m{n}-{raw.port}@test"
    rtp_port = raw.rtp.getsockname()[1]
    body = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {connection}\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
    length = str(len(body.encode())) if content_length is None else content_length
    branch = f"z9hG4bK-m{n}-{raw.port}"
    from_hdr = f"<sip:0612345678@127.0.0.1:{raw.port}>;tag=m{n}"
    head = "\r\n".join([
        f"INVITE sip:800@127.0.0.1:{raw.target_port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{raw.port};branch={branch};rport", "Max-Forwards: 70",
        f"From: {from_hdr}", f"To: <sip:800@127.0.0.1:{raw.target_port}>",
        f"Call-ID: {call_id}", "CSeq: 1 INVITE", f"Contact: <sip:0612345678@127.0.0.1:{raw.port}>",
        "Content-Type: application/sdp", f"Content-Length: {length}"])
    data = (head + "\r\n\r\n" + body).encode()
    raw._sent[call_id] = (branch, from_hdr)
    raw.sock.sendto(data[:len(data) - cut] if cut else data, ("127.0.0.1", raw.target_port))
    return call_id


def test_media_outside_the_trunk_is_488_and_a_refused_record(sip_factory: Any) -> None:
    from ivr.sip.events import CallRefused, IncomingCall

    stack, raw = sip_factory(TrunkOnly(media_networks=("10.9.0.0/16",)))  # type: ignore[arg-type]
    elsewhere = raw_invite(raw, 1, connection="8.8.8.8")
    allowed = raw_invite(raw, 2, connection="10.9.8.7")
    events: list[object] = []
    pump(stack, raw, events, lambda: elsewhere in raw.finals()
         and bool(of(IncomingCall, events)))
    assert raw.finals() == {elsewhere: 488}
    (refused,) = of(CallRefused, events)
    assert (refused.status, refused.trunk) == (488, TRUNK)
    assert refused.reason == "Not Acceptable Here: media address"
    assert [e.trunk for e in of(IncomingCall, events)] == [TRUNK]
    assert allowed not in raw.finals()
    assert stack.refused_requests["media address"] == 1
    assert stack.lines_in_use(TRUNK) == 1  # the refused one holds no line


@pytest.mark.parametrize(("content_length", "cut"), [
    (None, 12),        # the datagram lost its last line: Content-Length is 12 bytes too large
    ("65537", 0),      # more than any SIP datagram
    ("100000000000000000000", 0),
])
def test_a_content_length_larger_than_the_body_or_absurd_is_400(
        sip_factory: Any, content_length: str | None, cut: int) -> None:
    from ivr.sip.events import CallRefused, IncomingCall

    stack, raw = sip_factory(TrunkOnly())  # type: ignore[arg-type]
    call_id = raw_invite(raw, 1, content_length=content_length, cut=cut)
    events: list[object] = []
    pump(stack, raw, events, lambda: call_id in raw.finals())
    assert raw.finals() == {call_id: 400}
    (refused,) = of(CallRefused, events)
    assert refused.status == 400
    assert refused.reason.startswith("Bad Request: ")
    assert not of(IncomingCall, events)
    assert sum(stack.refused_requests.values()) == 1


@pytest.mark.parametrize("content_length", ["1e20", "abc", "-1"])
def test_a_content_length_that_is_no_number_makes_no_call(
        sip_factory: Any, content_length: str | None) -> None:
    """pjsip's parser rejects such a datagram before any module sees it (no Via parsed, so no
    answer can be sent): no call, no answer, and it is counted as unparseable."""
    from ivr.sip.events import IncomingCall

    stack, raw = sip_factory(TrunkOnly())  # type: ignore[arg-type]
    call_id = raw_invite(raw, 1, content_length=content_length)
    marker = raw.invite(2)  # a good INVITE after it: once it arrives, ours was handled
    events: list[object] = []
    pump(stack, raw, events, lambda: bool(of(IncomingCall, events))
         and stack.traffic["unparseable SIP"] >= 1)  # type: ignore[attr-defined]
    assert call_id not in raw.finals()
    assert [e.caller for e in of(IncomingCall, events)] == ["0612345678"]
    assert marker not in raw.finals()  # admitted, not yet answered

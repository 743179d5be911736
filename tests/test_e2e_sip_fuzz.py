"""Fuzzing a running switchboard over loopback: mutated INVITE, ACK, BYE, CANCEL, REFER, OPTIONS,
INFO and other requests, in and out of a live call's dialog (its real Call-ID and tags), from
the trunk's address and from a stranger's.

Afterwards the process is alive and answers, every call is closed with exactly one record (the
counter of ended calls and the records agree, every call the fuzzer saw answered has one), a
REFER dialled nothing, and a normal call still goes through the queue to an agent.

Everything stays on loopback. The switchboard sends to the addresses a request names (Contact
for BYE, the SDP's ``c=`` for RTP, Via for answers, Refer-To if a transfer were ever followed),
so those are only ever generated with a literal 127.0.0.1 host: random text never gets a ``:``
(no URI, no injected header) or ``maddr`` into them, and truncation or inserted bytes never
land inside those lines (they would turn 127.0.0.1 into a host name to look up).
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e import Switchboard, free_tcp_port, free_udp_port, peer, require_sip_stack

pytestmark = pytest.mark.e2e

try:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pytest.skip("hypothesis is not installed", allow_module_level=True)

EXAMPLES = 300
FUZZ_SECONDS = 60.0
"""The fuzzing stops after this long even if fewer examples ran (a loaded machine)."""
PING_EVERY = 25
RUN = os.getpid()
LIVE_PREFIX = "5550"
"""Caller numbers of the live calls the fuzz plays in (the switchboard stores only numbers)."""
NORMAL_CALLER = "5559999"

COMPACT = {"i": "call-id", "f": "from", "t": "to", "m": "contact", "v": "via",
           "l": "content-length", "c": "content-type", "k": "supported", "r": "refer-to",
           "o": "event", "s": "subject", "e": "content-encoding", "u": "allow-events",
           "b": "referred-by", "x": "session-expires"}
LONG_TO_COMPACT = {long: short for short, long in COMPACT.items()}
BODY_LENGTH = "{LEN}"
"""A Content-Length value that becomes the body's true length when the request is encoded."""
ROUTING = frozenset({"via", "contact", "refer-to", "route", "record-route", "path",
                     "service-route", "referred-by"})
"""Headers whose addresses the switchboard may send to: only safe values are generated."""
PROTECTED = ROUTING | {"content-length"}


# -- SIP messages, as little as a test needs --------------------------------------------------

@dataclass
class Message:
    """A received SIP message: first line, headers (lower-case long names), body."""

    first: str
    headers: list[tuple[str, str]]
    body: bytes

    def get(self, name: str) -> str:
        for key, value in self.headers:
            if key == name:
                return value
        return ""

    @property
    def status(self) -> int | None:
        parts = self.first.split(" ", 2)
        if parts[0] == "SIP/2.0" and len(parts) > 1 and parts[1].isdigit():
            return int(parts[1])
        return None

    @property
    def method(self) -> str:
        return self.first.split(" ", 1)[0]

    @property
    def cseq(self) -> tuple[int, str]:
        parts = self.get("cseq").split()
        number = int(parts[0]) if parts and parts[0].isdigit() else 0
        return number, parts[1] if len(parts) > 1 else ""

    @property
    def call_id(self) -> str:
        return self.get("call-id")


def parse(data: bytes) -> Message | None:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            headers.append((COMPACT.get(key, key), value.strip()))
    return Message(lines[0], headers, body) if lines and lines[0] else None


def tag_of(value: str) -> str:
    found = re.search(r";\s*tag=([^;>\s]+)", value)
    return found.group(1) if found else ""


def uri_of(value: str) -> str:
    found = re.search(r"<([^>]*)>", value)
    return found.group(1) if found else value.split(";")[0].strip()


def sdp(rtp_port: int) -> bytes:
    # c= is not the last line, so a Content-Length one byte short never cuts into it
    return (f"v=0\r\no=- {RUN} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n").encode()


@dataclass
class Request:
    """A request to send: headers as (name, value), Content-Length added on encoding."""

    method: str
    uri: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    version: str = "SIP/2.0"
    content_length: str | None = None
    """The value of every Content-Length header (None: as the header says)."""
    eol: str = "\r\n"

    def encode(self) -> tuple[bytes, list[tuple[int, int]]]:
        """The datagram and the byte spans that must stay whole (routing lines, SDP's c=)."""
        out = bytearray(f"{self.method} {self.uri} {self.version}{self.eol}".encode())
        spans: list[tuple[int, int]] = []
        for name, value in with_length(self.headers):
            key = COMPACT.get(name.strip().lower(), name.strip().lower())
            if key == "content-length":
                value = value if value != BODY_LENGTH else str(len(self.body))
                value = self.content_length if self.content_length is not None else value
            line = f"{name}: {value}{self.eol}".encode()
            if key in ROUTING:
                spans.append((len(out), len(out) + len(line)))
            out += line
        out += self.eol.encode()
        at = self.body.find(b"c=")
        if at >= 0:
            end = self.body.find(b"\n", at)
            spans.append((len(out) + at, len(out) + (end + 1 if end >= 0 else len(self.body))))
        out += self.body
        return bytes(out), spans


def with_length(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers with a Content-Length (the body's true length) if they have none."""
    if any(COMPACT.get(n.strip().lower(), n.strip().lower()) == "content-length"
           for n, _ in headers):
        return headers
    return [*headers, ("Content-Length", BODY_LENGTH)]


def response_to(request: Message, status: int, reason: str) -> bytes:
    lines = [f"SIP/2.0 {status} {reason}"]
    for name in ("via", "from", "to", "call-id", "cseq"):
        lines += [f"{name.title()}: {v}" for k, v in request.headers if k == name]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


# -- a raw SIP user agent on loopback ---------------------------------------------------------

@dataclass
class Dialog:
    """A call the fuzzer placed and the switchboard answered: its real identifiers."""

    call_id: str
    user: str
    from_tag: str
    to_tag: str
    target: str
    """The switchboard's Contact: the Request-URI of requests inside the call."""
    invite_branch: str
    cseq: int = 1
    ended: bool = False


class Agent:
    """UDP sockets on 127.0.0.1 (the trunk) and 127.0.0.2 (a stranger) talking SIP to the
    switchboard. A thread per socket answers the switchboard's requests (200; BYE ends the
    live call), ACKs every 200 to an INVITE, and hangs up at once each call the fuzz got
    answered, so they never hold the trunk's lines."""

    def __init__(self, board_port: int, rtp_port: int) -> None:
        self.board = ("127.0.0.1", board_port)
        self.rtp_port = rtp_port
        self.trunk = self._socket("127.0.0.1")
        self.stranger = self._socket("127.0.0.2")
        self.port = int(self.trunk.getsockname()[1])
        self.stranger_port = int(self.stranger.getsockname()[1])
        self.lock = threading.Condition()
        self.responses: dict[str, list[Message]] = {}
        self.pending: dict[str, Dialog] = {}
        self.live: dict[tuple[str, str], Dialog] = {}
        self.answered: set[tuple[str, str]] = set()
        """(Call-ID, To tag) of each call of the fuzz the switchboard answered with 200."""
        self.hung_up: set[tuple[str, str]] = set()
        self.counter = itertools.count(1)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._receive, args=(s,), daemon=True)
                        for s in (self.trunk, self.stranger)]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _socket(address: str) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, 0))
        s.settimeout(0.2)
        return s

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        self.trunk.close()
        self.stranger.close()

    def next_id(self) -> int:
        return next(self.counter)  # thread-safe: the receiving threads take ids too

    def via(self, s: socket.socket | None = None) -> str:
        port = (s or self.trunk).getsockname()[1]
        return f"SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bK-{RUN}-{self.next_id()}"

    def send(self, data: bytes, stranger: bool = False) -> None:
        (self.stranger if stranger else self.trunk).sendto(data, self.board)

    # -- the receiving threads ---------------------------------------------------------------
    def _receive(self, s: socket.socket) -> None:
        while not self.stop.is_set():
            try:
                data, _ = s.recvfrom(65535)
            except OSError:
                continue
            message = parse(data)
            if message is None:
                continue
            if message.status is None:
                self._request(s, message)
            else:
                self._response(s, message)

    def _request(self, s: socket.socket, message: Message) -> None:
        if message.method == "ACK":
            return
        status, reason = (603, "Decline") if message.method == "INVITE" else (200, "OK")
        s.sendto(response_to(message, status, reason), self.board)
        if message.method == "BYE":
            with self.lock:
                for dialog in self.live.values():
                    if dialog.call_id == message.call_id:
                        dialog.ended = True
                self.lock.notify_all()

    def _response(self, s: socket.socket, message: Message) -> None:
        number, method = message.cseq
        key = (message.call_id, tag_of(message.get("to")))
        hang_up = False
        with self.lock:
            self.responses.setdefault(message.call_id, []).append(message)
            if message.status == 200 and method == "INVITE":
                dialog = self.pending.pop(message.call_id, None)
                if dialog is not None:
                    dialog.to_tag = key[1]
                    dialog.target = uri_of(message.get("contact")) or dialog.target
                    self.live[key] = dialog
                elif key not in self.live and key not in self.hung_up:
                    self.answered.add(key)
                    self.hung_up.add(key)
                    hang_up = True
            if message.status == 200 and method == "BYE" and key in self.live:
                self.live[key].ended = True
            self.lock.notify_all()
        if message.status == 200 and method == "INVITE":
            s.sendto(self._in_dialog(message, "ACK", number), self.board)
            if hang_up:
                s.sendto(self._in_dialog(message, "BYE", min(number + 1, 2**31 - 1)),
                         self.board)

    def _in_dialog(self, answer: Message, method: str, number: int) -> bytes:
        """ACK or BYE for the call a 200 answered, built from that answer's own headers."""
        target = uri_of(answer.get("contact")) or f"sip:ivr@{self.board[0]}:{self.board[1]}"
        return (f"{method} {target} SIP/2.0\r\nVia: {self.via()}\r\nMax-Forwards: 70\r\n"
                f"From: {answer.get('from')}\r\nTo: {answer.get('to')}\r\n"
                f"Call-ID: {answer.call_id}\r\nCSeq: {number} {method}\r\n"
                "Content-Length: 0\r\n\r\n").encode()

    # -- what the test asks --------------------------------------------------------------------
    def wait(self, check: Callable[[], Any], timeout: float) -> Any:
        end = time.monotonic() + timeout
        with self.lock:
            while True:
                result = check()
                if result:
                    return result
                left = end - time.monotonic()
                if left <= 0:
                    return result
                self.lock.wait(min(left, 0.2))

    def invite(self, call_id: str, user: str, from_tag: str, branch: str,
               stranger: bool = False) -> Request:
        port = self.stranger_port if stranger else self.port
        host = "127.0.0.2" if stranger else "127.0.0.1"
        return Request("INVITE", f"sip:ivr@127.0.0.1:{self.board[1]}", [
            ("Via", f"SIP/2.0/UDP {host}:{port};rport;branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{user}@{host}:{port}>;tag={from_tag}"),
            ("To", f"<sip:ivr@127.0.0.1:{self.board[1]}>"),
            ("Call-ID", call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:{user}@{host}:{port}>"),
            ("Content-Type", "application/sdp"),
        ], sdp(self.rtp_port))

    def place_call(self, user: str, timeout: float = 20.0) -> Dialog:
        """A call from the trunk that the switchboard answers: the live dialog to fuzz."""
        n = self.next_id()
        call_id = f"live-{RUN}-{n}@127.0.0.1"
        branch = f"z9hG4bK-live-{RUN}-{n}"
        dialog = Dialog(call_id, user, f"ft{n}", "", f"sip:ivr@127.0.0.1:{self.board[1]}",
                        branch)
        with self.lock:
            self.pending[call_id] = dialog
        self.send(self.invite(call_id, user, dialog.from_tag, branch).encode()[0])
        if not self.wait(lambda: dialog.to_tag, timeout):
            finals = [m.first for m in self.responses.get(call_id, [])]
            raise AssertionError(f"the switchboard did not answer {call_id}: {finals}")
        return dialog

    def ping(self, timeout: float = 10.0) -> bool:
        """An OPTIONS from the trunk is answered (whatever the status): the loop still polls."""
        call_id = f"ping-{RUN}-{self.next_id()}@127.0.0.1"
        self.send((f"OPTIONS sip:ivr@127.0.0.1:{self.board[1]} SIP/2.0\r\nVia: {self.via()}\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:ping@127.0.0.1:{self.port}>;tag=p\r\n"
                   f"To: <sip:ivr@127.0.0.1:{self.board[1]}>\r\nCall-ID: {call_id}\r\n"
                   "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode())
        return bool(self.wait(lambda: self.responses.get(call_id), timeout))

    def hang_up_live(self) -> None:
        with self.lock:
            dialogs = [d for d in self.live.values() if not d.ended]
        for d in dialogs:
            d.cseq += 1
            self.send((f"BYE {d.target} SIP/2.0\r\nVia: {self.via()}\r\nMax-Forwards: 70\r\n"
                       f"From: <sip:{d.user}@127.0.0.1:{self.port}>;tag={d.from_tag}\r\n"
                       f"To: <sip:ivr@127.0.0.1:{self.board[1]}>;tag={d.to_tag}\r\n"
                       f"Call-ID: {d.call_id}\r\nCSeq: {d.cseq} BYE\r\n"
                       "Content-Length: 0\r\n\r\n").encode())


# -- what to send: templates ---------------------------------------------------------------------

@dataclass
class Context:
    agent: Agent
    refer_port: int
    """A listener that must never receive anything: the target of every REFER."""
    dialog: Dialog | None = None
    dialogs_placed: list[Dialog] = field(default_factory=list)

    def live(self) -> Dialog:
        if self.dialog is None or self.dialog.ended:
            self.dialog = self.agent.place_call(f"{LIVE_PREFIX}{len(self.dialogs_placed) + 1:03d}")
            self.dialogs_placed.append(self.dialog)
        return self.dialog


OUT_OF_DIALOG = ("INVITE", "INVITE+CANCEL", "OPTIONS", "REFER-out", "MESSAGE", "SUBSCRIBE",
                 "REGISTER", "NOTIFY-out", "PUBLISH", "BYE-out")
IN_DIALOG = ("ACK", "BYE", "CANCEL", "REFER", "INFO", "re-INVITE", "OPTIONS-in", "UPDATE",
             "NOTIFY", "MESSAGE-in", "PRACK", "INVITE-replaces")
KINDS = OUT_OF_DIALOG + IN_DIALOG


@dataclass
class Origin:
    """Where one example's requests come from and the names they use."""

    n: int
    host: str
    port: int
    board: str
    refer_to: str
    branch: str


def templates(kind: str, ctx: Context, stranger: bool) -> tuple[list[Request], Request]:
    """Requests sent as they are first (an INVITE before its CANCEL), and the one to mutate."""
    agent = ctx.agent
    n = agent.next_id()
    origin = Origin(n, "127.0.0.2" if stranger else "127.0.0.1",
                    agent.stranger_port if stranger else agent.port,
                    f"sip:ivr@127.0.0.1:{agent.board[1]}",
                    f"<sip:00390612345678@127.0.0.1:{ctx.refer_port}>",
                    f"z9hG4bK-fz-{RUN}-{n}")
    if kind in OUT_OF_DIALOG:
        return out_of_dialog(kind, ctx, stranger, origin)
    return [], in_dialog(kind, ctx, stranger, origin)


def out_of_dialog(kind: str, ctx: Context, stranger: bool,
                  origin: Origin) -> tuple[list[Request], Request]:
    agent = ctx.agent
    n, host, port, board, refer_to, branch = (origin.n, origin.host, origin.port, origin.board,
                                              origin.refer_to, origin.branch)
    call_id = f"fz-{RUN}-{n}@127.0.0.1"
    if kind in ("INVITE", "INVITE+CANCEL"):
        invite = agent.invite(call_id, f"fz{n}", f"t{n}", branch, stranger)
        if kind == "INVITE":
            return [], invite
        cancel = Request("CANCEL", board, [h for h in invite.headers
                                            if h[0] not in ("Content-Type", "Contact")])
        cancel.headers[5] = ("CSeq", "1 CANCEL")
        return [invite], cancel
    method = kind.split("-")[0]
    extra: list[tuple[str, str]] = {
        "REFER": [("Refer-To", refer_to)],
        "SUBSCRIBE": [("Event", "presence"), ("Expires", "60")],
        "NOTIFY": [("Event", "refer"), ("Subscription-State", "active")],
        "PUBLISH": [("Event", "presence")],
        "REGISTER": [("Expires", "60")],
    }.get(method, [])
    body, content_type = {
        "MESSAGE": (b"hello", "text/plain"),
        "NOTIFY": (b"SIP/2.0 200 OK\r\n", "message/sipfrag"),
    }.get(method, (b"", ""))
    headers = [("Via", f"SIP/2.0/UDP {host}:{port};rport;branch={branch}"),
               ("Max-Forwards", "70"),
               ("From", f"<sip:fz{n}@{host}:{port}>;tag=t{n}"),
               ("To", f"<{board}>"), ("Call-ID", call_id), ("CSeq", f"1 {method}"),
               ("Contact", f"<sip:fz{n}@{host}:{port}>"), *extra]
    if content_type:
        headers.append(("Content-Type", content_type))
    return [], Request(method, board, headers, body)


def in_dialog(kind: str, ctx: Context, stranger: bool, origin: Origin) -> Request:
    agent = ctx.agent
    n, host, port, board, refer_to, branch = (origin.n, origin.host, origin.port, origin.board,
                                              origin.refer_to, origin.branch)
    d = ctx.live()
    method = kind.split("-")[0]
    if kind == "INVITE-replaces":
        headers = agent.invite(f"fz-{RUN}-{n}@127.0.0.1", f"fz{n}", f"t{n}", branch,
                               stranger).headers
        headers.append(("Replaces", f"{d.call_id};to-tag={d.to_tag};from-tag={d.from_tag}"))
        return Request("INVITE", board, headers, sdp(agent.rtp_port))
    if method in ("ACK", "CANCEL"):
        number, the_branch = 1, d.invite_branch if method == "CANCEL" else branch
    else:
        d.cseq += 1
        number, the_branch = d.cseq, branch
    if method == "re":
        method = "INVITE"
    headers = [("Via", f"SIP/2.0/UDP {host}:{port};rport;branch={the_branch}"),
               ("Max-Forwards", "70"),
               # not the live call's user: a request the switchboard takes for a new call
               # must not pass for the live call in its records
               ("From", f"<sip:fz{n}@127.0.0.1:{agent.port}>;tag={d.from_tag}"),
               ("To", f"<{board}>" + (f";tag={d.to_tag}" if method != "CANCEL" else "")),
               ("Call-ID", d.call_id), ("CSeq", f"{number} {method}"),
               ("Contact", f"<sip:{d.user}@{host}:{port}>")]
    body = b""
    if method == "REFER":
        headers += [("Refer-To", refer_to), ("Referred-By", f"<sip:{d.user}@127.0.0.1>")]
    elif method == "INFO":
        digit = "5190*#A"[n % 7]
        headers.append(("Content-Type", "application/dtmf-relay"))
        body = f"Signal={digit}\r\nDuration=160\r\n".encode()
    elif method == "INVITE":
        headers.append(("Content-Type", "application/sdp"))
        body = sdp(agent.rtp_port)
    elif method == "NOTIFY":
        headers += [("Event", "refer"), ("Subscription-State", "terminated"),
                    ("Content-Type", "message/sipfrag")]
        body = b"SIP/2.0 404 Not Found\r\n"
    elif method == "MESSAGE":
        headers.append(("Content-Type", "text/plain"))
        body = b"hi"
    elif method == "PRACK":
        headers.append(("RAck", "1 1 INVITE"))
    uri = d.target if method != "CANCEL" else board
    return Request(method, uri, headers, body)


# -- how to change it: mutations -------------------------------------------------------------

def safe_text(value: str) -> bool:
    """Random text that cannot form a URI, inject a header, name a maddr or, once it lands in
    a body (a header cut short by an empty line), an SDP connection address. (Hypothesis also
    draws string constants it finds in the project's code, so "unlikely" is not enough.)"""
    has_break = "\r" in value or "\n" in value
    lower = value.lower()
    return not (has_break and ":" in value) and "maddr" not in lower and "c=" not in lower


def safe_bytes(value: bytes) -> bool:
    return safe_text(value.decode("latin-1"))


ODD_VALUES = ["", " ", "<>", "<", '"', '"unterminated', ";;;;", "%00", "\x00", "\x1b[2J",
              "-1", "0", "4294967296", "99999999999999999999", "1e20", "é" * 50, "\ufeff",
              "a,b,c", "*", "tag=", ";tag=;tag=", "\t", "2024-05-01 10:00:00 INFO ivr: forged"]
CL_CHOICES = ["-1", "0", "1", "10", "99999", "1e20", "abc", "", " 5 5", "0x10",
              "4294967296", "18446744073709551617", "+1", "LEN+1", "LEN+100", "LEN-1",
              "LEN-20"]
CSEQ_CHOICES = ["0 {m}", "-1 {m}", "4294967296 {m}", "2147483648 {m}", "abc {m}", "",
                "1", "{n}", "{n} FOO", "{n} {m} extra", "1 BYE", "1 INVITE", "99 ACK",
                "{n}{m}", "  {n}   {m}  "]
STRANGE_URIS = ["tel:+390612345678", "tel:+39;phone-context=x", "sip:ivr%00evil@127.0.0.1",
                "sips:ivr@127.0.0.1", "sip:@127.0.0.1", "sip:" + "9" * 300 + "@127.0.0.1",
                "<sip:ivr@127.0.0.1>", "*", "sip:ivr@[::1]", "urn:service:sos",
                "sip:ivr@127.0.0.1;transport=tcp", "sip:other@127.0.0.2", "sip:127.0.0.1",
                "sip:ivr@127.0.0.1:0", "sip:ivr@127.0.0.1:99999", "http://127.0.0.1/",
                "sip:ivr@127.0.0.1 SIP/2.0", "", " ", "sip:*#123@127.0.0.1",
                "sip:+39 06 123@127.0.0.1"]
EXTRA_HEADERS = [("Require", "100rel"), ("Require", "foo"), ("Proxy-Require", "bar"),
                 ("Supported", "replaces, timer"), ("Max-Forwards", "0"),
                 ("Max-Forwards", "-1"), ("Expires", "-1"), ("Session-Expires", "1"),
                 ("Min-SE", "99999999"), ("Event", "refer"), ("Content-Encoding", "gzip"),
                 ("Accept", "*/*"), ("Authorization", 'Digest username="a", realm="b"'),
                 ("Allow", "REFER"), ("Content-Type", "multipart/mixed;boundary=x"),
                 ("Content-Type", "application/sdp"), ("Content-Disposition", "session"),
                 ("P-Asserted-Identity", "<tel:+390612345678>"), ("Privacy", "id"),
                 ("Diversion", "<tel:+39061>"), ("X-" + "A" * 100, "x")]
NAME_FORMS = ("upper", "lower", "compact", "space-before-colon", "tab", "title")

text_value = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=120),
).filter(safe_text)
header_name = st.from_regex(r"[A-Za-z][A-Za-z0-9!%*_+`'~.-]{1,30}", fullmatch=True).filter(
    lambda name: name.lower() not in PROTECTED)
mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 99), text_value),
    st.tuples(st.just("dup"), st.integers(0, 99)),
    st.tuples(st.just("drop"), st.integers(0, 99)),
    st.tuples(st.just("huge"), st.integers(0, 99), st.integers(300, 16000)),
    st.tuples(st.just("add"), st.one_of(st.sampled_from(EXTRA_HEADERS),
                                        st.tuples(header_name, text_value))),
    st.tuples(st.just("name"), st.integers(0, 99), st.sampled_from(NAME_FORMS)),
    st.tuples(st.just("content-length"), st.sampled_from(CL_CHOICES)),
    st.tuples(st.just("cseq"), st.sampled_from(CSEQ_CHOICES)),
    st.tuples(st.just("uri"), st.one_of(st.sampled_from(STRANGE_URIS), text_value)),
    st.tuples(st.just("method"), st.one_of(
        st.sampled_from(["invite", "INVITE ", "FOO", "", "BYE", "ACK", "REFER", "INFO"]),
        st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=12))),
    st.tuples(st.just("version"), st.sampled_from(["SIP/2.1", "SIP/1.0", "sip/2.0",
                                                    "HTTP/1.1", "", "SIP/2.0 extra"])),
    st.tuples(st.just("eol"), st.sampled_from(["\n", "\r", "\r\n\r\n"])),
    st.tuples(st.just("body"), st.binary(max_size=300).filter(safe_bytes)),
    st.tuples(st.just("binary"), st.integers(0, 100_000),
              st.binary(min_size=1, max_size=64).filter(safe_bytes)),
    st.tuples(st.just("truncate"), st.integers(0, 100_000)),
)


def routing_value(name: str, text: str, ctx: Context, size: int = 0) -> str:
    """A value for a header the switchboard may send to: always at 127.0.0.1, on our ports."""
    key = COMPACT.get(name.strip().lower(), name.strip().lower())
    user = re.sub(r"[^A-Za-z0-9._+*#-]", "", text)[:60] + "9" * size
    port = ctx.refer_port if key in ("refer-to", "referred-by") else ctx.agent.port
    if key == "via":
        return [f"SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bK{user}",
                f"SIP/2.0/UDP 127.0.0.1:{port};rport",
                f"SIP/2.0/TCP 127.0.0.1:{port};rport;branch=z9hG4bK{user}",
                text if ":" not in text and "sip/" not in text.lower() else "x"][len(text) % 4]
    return [f"<sip:{user}@127.0.0.1:{port}>", f"<sip:{user}@127.0.0.1:{port};transport=tcp>",
            f'"{user}" <sip:127.0.0.1:{port}>;expires=0', text if ":" not in text else "<>",
            f"<sip:{user}@127.0.0.1:{port}?Replaces=x%3Bto-tag%3D1>"][len(text) % 5]


def content_length(choice: str, body: bytes) -> str:
    if choice.startswith("LEN"):
        return str(len(body) + int(choice[3:]))
    return choice


def apply(request: Request, mutations: list[tuple[Any, ...]], ctx: Context) -> bytes:  # noqa: C901 - one arm per mutation
    """The mutated datagram: header mutations first, then byte-level ones."""
    headers = request.headers = with_length(request.headers)
    late: list[tuple[Any, ...]] = []
    for m in mutations:
        kind = m[0]
        at = m[1] % len(headers) if headers and isinstance(m[1], int) else 0
        key = COMPACT.get(headers[at][0].lower(), headers[at][0].lower()) if headers else ""
        if kind == "set" and headers:
            value = routing_value(headers[at][0], m[2], ctx) if key in ROUTING else m[2]
            if key == "content-length":   # only values that never cut the SDP's c= line
                value = content_length(CL_CHOICES[len(m[2]) % len(CL_CHOICES)], request.body)
            headers[at] = (headers[at][0], value)
        elif kind == "dup" and headers:
            headers.insert(at, headers[at])
        elif kind == "drop" and headers:
            del headers[at]
        elif kind == "huge" and headers and key != "content-length":
            value = routing_value(headers[at][0], "", ctx, m[2]) if key in ROUTING \
                else "A" * m[2]
            headers[at] = (headers[at][0], value)
        elif kind == "add":
            headers.append(m[1])
        elif kind == "name" and headers:
            name = headers[at][0]
            headers[at] = ({"upper": name.upper(), "lower": name.lower(), "title": name.title(),
                            "compact": LONG_TO_COMPACT.get(key, name),
                            "space-before-colon": name + " ", "tab": name + "\t"}[m[2]],
                           headers[at][1])
        elif kind == "content-length":
            request.content_length = content_length(m[1], request.body)
        elif kind == "cseq":
            number = next((v.split()[0] for k, v in headers if k == "CSeq" and v.split()),
                          "1")
            value = m[1].format(n=number, m=request.method)
            headers[:] = [(k, value if k == "CSeq" else v) for k, v in headers]
        elif kind == "uri":
            request.uri = m[1]
        elif kind == "method":
            request.method = m[1]
        elif kind == "version":
            request.version = m[1]
        elif kind == "eol":
            request.eol = m[1]
        elif kind == "body" and b"c=" not in request.body:
            request.body = m[1]
        else:
            late.append(m)
    data, spans = request.encode()
    for m in late:
        if m[0] not in ("binary", "truncate") or not data:
            continue
        pos = m[1] % (len(data) + 1)
        for start, end in spans:
            if start < pos < end:
                pos = start          # never inside a line that names an address
        if m[0] == "truncate":
            data = data[:pos]
            spans = [(s, e) for s, e in spans if e <= pos]
        else:
            data = data[:pos] + m[2] + data[pos:]
            spans = [(s + len(m[2]), e + len(m[2])) if s >= pos else (s, e) for s, e in spans]
    return data


# -- the test ------------------------------------------------------------------------------------

@pytest.fixture
def board(tmp_path: Any) -> Iterator[Switchboard]:
    require_sip_stack()
    sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                     agents={"anna": free_udp_port()}, ring_timeout=5.0)
    sb.start()
    yield sb
    assert sb.stop() == 0, sb.log_tail()


def _listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def _received(s: socket.socket) -> list[bytes]:
    got = []
    for _ in range(1000):
        try:
            got.append(s.recv(65535))
        except BlockingIOError:
            break
    return got


def test_fuzzed_requests_leave_the_switchboard_up_and_every_call_recorded(board, tmp_path):
    from tests.e2e import rtp_block, wait_until

    anna = peer(tmp_path, "anna", "agent", board.agents["anna"], "--talk", "1",
                "--answer-after", "0.2", "--duration", "600").start()
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", rtp_block(2)))
    refer_target = _listener()
    agent = Agent(board.sip_port, int(rtp.getsockname()[1]))
    ctx = Context(agent, int(refer_target.getsockname()[1]))
    sent: list[bytes] = []
    started = [0.0]
    examples = [0]

    def alive(what: str) -> None:
        assert board.proc.poll() is None, (
            f"the switchboard died {what}; last datagrams sent:\n"
            + "\n".join(repr(d[:300]) for d in sent[-5:]) + f"\n{board.log_tail(60)}")

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.reuse, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(KINDS),
           stranger=st.sampled_from([False, False, False, True]),
           mutations=st.lists(mutation, max_size=3))
    def fuzz(kind: str, stranger: bool, mutations: list[tuple[Any, ...]]) -> None:
        if not started[0]:
            started[0] = time.monotonic()
        if time.monotonic() - started[0] > FUZZ_SECONDS:
            return
        examples[0] += 1
        first, request = templates(kind, ctx, stranger)
        for plain in first:
            agent.send(plain.encode()[0], stranger)
        data = apply(request, mutations, ctx)
        sent.append(data)
        del sent[:-20]
        agent.send(data, stranger)
        alive(f"after example {examples[0]} ({kind})")
        if examples[0] % PING_EVERY == 0:
            assert agent.ping(), f"no answer to OPTIONS after {examples[0]} examples"

    try:
        fuzz()
        alive("after the fuzz")
        assert agent.ping(), "the switchboard no longer answers after the fuzz"
        agent.hang_up_live()
        # the switchboard ends what is left (unacknowledged answers time out in 32 s)
        board.wait_for_metric("ivr_calls_in_progress", value=0.0, timeout=90)

        # and a normal call still goes through the queue to an agent
        caller = peer(tmp_path, NORMAL_CALLER, "caller", free_udp_port(), "--target", board.uri,
                      "--digits", "1,1", "--first-digit-after", "0.5", "--digit-gap", "0.8",
                      "--duration", "40").start()
        assert caller.wait_exit(45) == 0
    finally:
        anna.stop()
        agent.close()
        rtp.close()

    def ended_calls() -> float:
        return sum(float(s.value) for f in _families(board.metrics()) for s in f.samples
                   if s.name == "ivr_calls_total")

    total = wait_until(lambda: (len(board.records()) == ended_calls() and ended_calls())
                       or None, "records and ended calls agree", 30,
                       details=lambda: f"{len(board.records())} records, "
                                       f"{ended_calls()} ended calls")
    records = board.records()
    statuses = Counter(m.status for answers in agent.responses.values() for m in answers)
    print(f"fuzz: {examples[0]} examples, {len(ctx.dialogs_placed)} live calls, "
          f"{len(agent.answered)} fuzzed calls answered, {total:g} calls ended; "
          f"answers by status: {dict(sorted(statuses.items()))}")
    assert examples[0] >= 50, "the fuzz hardly ran"
    assert ctx.dialogs_placed, "no live call was fuzzed"
    assert [r for r in records if r["ended_at"] is None] == []
    by_caller: dict[str, int] = {}
    for r in records:
        by_caller[r["caller"]] = by_caller.get(r["caller"], 0) + 1
    for dialog in ctx.dialogs_placed:
        assert by_caller.get(dialog.user) == 1, (dialog.user, by_caller)
    placed_by_fuzz = [r for r in records if r["caller"] != NORMAL_CALLER
                      and not r["caller"].startswith(LIVE_PREFIX) and r["outcome"] != "refused"]
    assert len(placed_by_fuzz) >= len(agent.answered)
    (normal,) = [r for r in records if r["caller"] == NORMAL_CALLER]
    assert normal["outcome"] == "completed"
    assert normal["agent"] == "anna"
    assert normal["queue"] == "support"
    assert _received(refer_target) == [], "a REFER made the switchboard dial"
    refer_target.close()
    log = board.log_path.read_text(errors="replace")
    assert "Traceback" not in log, board.log_tail(80)


def _families(text: str) -> Any:
    from prometheus_client.parser import text_string_to_metric_families

    return text_string_to_metric_families(text)

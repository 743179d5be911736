"""A REFER accepted for transfer, its target's answer and the caller's BYE: the process lives on.

pjsua, accepting a REFER without a call object of ours (``newCall``), made the caller's leg
and the transfer call share one pjsua2 ``Call``: the transfer call's end (a 404, or a target
that answered and hung up) freed the caller's leg while pjsua still held it, and the caller's
BYE then crashed the process (SIGSEGV). ``SipStack.allow_transfer`` now decides, and an
allowed transfer runs on a leg of the stack's own.

The stack runs with every transfer allowed in a child process (this module run as a script,
see :func:`serve`), so that a crash fails the test instead of ending pytest; it answers every
call and prints its events as JSON lines. This process drives it with raw SIP datagrams: a
caller that calls, sends the REFER and hangs up, and the transfer target, which answers the
transfer's INVITE as each scenario needs. Each scenario ends with another call that must be
answered, and with a clean stop (exit status 0).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.e2e import ROOT, free_udp_port, require_sip_stack, rtp_block

pytestmark = pytest.mark.e2e

T = TypeVar("T")

TRANSFER_NUMBER = "00390612345678"
"""The user part the caller's Refer-To names."""
WAIT = 15.0
"""Seconds any one step may take (generous: the machine may be loaded)."""
CHILD_LIMIT = 180.0
"""Seconds after which the child stack stops on its own (it exits 3 then)."""
RTP_PORTS = 200

_branches = itertools.count(1)


# -- the child process: a SipStack that allows every transfer -------------------------------
def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def _admit(address: str) -> tuple[str | None, int, int]:
    """Loopback is the trunk 'gw' with 30 lines; anything else is refused."""
    return ("gw", 200, 30) if address == "127.0.0.1" else (None, 403, 0)


def serve(port: int, rtp_port: int, limit: float) -> int:
    """Run a SipStack on 127.0.0.1:*port* that answers every call and allows every transfer.

    Prints one JSON line per event (``{"event": "LegEnded", "leg": "L2", ...}``), plus
    ``Ready``, ``TransferAllowed`` (leg, target) and ``Stopped``. Stops on a line 'quit' (or the
    end) of stdin and exits 0; after *limit* seconds without it, exits 3.
    """
    import dataclasses
    import logging

    from ivr.sip.events import IncomingCall
    from ivr.sip.stack import SipSettings, SipStack

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stack = SipStack(SipSettings("127.0.0.1", port, rtp_port=rtp_port,
                                 rtp_port_range=RTP_PORTS, max_calls=16), _admit)

    def allow(leg: str, target: str) -> bool:
        _emit({"event": "TransferAllowed", "leg": leg, "target": target})
        return True

    stack.allow_transfer = allow
    stack.start()
    quit_asked = threading.Event()

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip() == "quit":
                break
        quit_asked.set()

    threading.Thread(target=read_commands, daemon=True).start()
    _emit({"event": "Ready"})
    end = time.monotonic() + limit
    while not quit_asked.is_set() and time.monotonic() < end:
        for event in stack.poll(10):
            _emit({"event": type(event).__name__, **dataclasses.asdict(event)})
            if isinstance(event, IncomingCall):
                stack.answer(event.leg)
    stack.shutdown()
    _emit({"event": "Stopped"})
    return 0 if quit_asked.is_set() else 3


@dataclass
class Board:
    """The child process running :func:`serve`, its events and its log (stderr)."""

    proc: subprocess.Popen[str]
    port: int
    log_path: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    """Other lines on stdout (pjsip prints a few before its log is redirected)."""
    _reader: threading.Thread | None = None

    @classmethod
    def start(cls, tmp: Path) -> Board:
        port = free_udp_port()
        log_path = tmp / "board.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-X", "faulthandler", "-m", "tests.test_sip_transfer_crash",
                 str(port), str(rtp_block(RTP_PORTS)), str(CHILD_LIMIT)],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
        board = cls(proc, port, log_path)
        board._reader = threading.Thread(target=board._read, daemon=True)
        board._reader.start()
        wait_until(lambda: board.seen("Ready"), "the stack to start", board, timeout=60)
        return board

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))
            else:
                self.output.append(line.rstrip())

    def seen(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["event"] == kind]

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> int:
        """Ask the child to stop; its exit status (negative: the signal that ended it)."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"the stack did not stop within 30 s\n{self.log_tail()}")
        if self._reader is not None:
            self._reader.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_until(condition: Callable[[], T | None], what: str, board: Board,
               timeout: float = WAIT) -> T:
    """Poll *condition* until it gives something true; fail at once if the child has ended
    (with its exit status: -11 is the crash) and after *timeout* seconds."""
    end = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        rc = board.proc.poll()
        if rc is not None:
            pytest.fail(f"the stack's process ended with status {rc} while waiting for {what}"
                        f"\n{board.log_tail()}")
        if time.monotonic() > end:
            pytest.fail(f"no {what} within {timeout} s; events: {board.events}\n"
                        f"{board.log_tail()}")
        time.sleep(0.02)


# -- raw SIP ---------------------------------------------------------------------------------
@dataclass
class Message:
    start: str
    headers: list[tuple[str, str]]
    """(lower-case name, value) in order."""
    body: str

    @classmethod
    def parse(cls, data: bytes) -> Message:
        text = data.decode("utf-8", "replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return cls(lines[0], headers, body)

    def get(self, name: str) -> str:
        return next((v for n, v in self.headers if n == name), "")

    @property
    def is_response(self) -> bool:
        return self.start.startswith("SIP/2.0 ")

    @property
    def status(self) -> int:
        return int(self.start.split(" ", 2)[1]) if self.is_response else 0

    @property
    def method(self) -> str:
        return self.get("cseq").split()[-1] if self.is_response else self.start.split(" ", 1)[0]

    @property
    def call_id(self) -> str:
        return self.get("call-id")


def uri_of(header: str) -> str:
    """'<sip:a@b:5>;tag=x' -> 'sip:a@b:5'."""
    return header[header.find("<") + 1:header.find(">")] if "<" in header else header


def reply_to(request: Message, status: str, extra: tuple[str, ...] = (), body: str = "",
             to_tag: str = "") -> bytes:
    """The response *status* ('200 OK') to *request*, with *to_tag* added to To if given."""
    lines = [f"SIP/2.0 {status}"]
    for name, value in request.headers:
        if name == "to" and to_tag and ";tag=" not in value:
            value = f"{value};tag={to_tag}"
        if name in ("via", "from", "to", "call-id", "cseq"):
            lines.append(f"{name.title()}: {value}")
    lines += [*extra, f"Content-Length: {len(body.encode())}", "", body]
    return "\r\n".join(lines).encode()


def sdp(rtp_port: int, version: int) -> str:
    return (f"v=0\r\no=- {version} {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
            f"t=0 0\r\nm=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


class Peer:
    """One SIP socket on loopback read by a thread: keeps every message, answers requests
    through :meth:`on_request`. An RTP socket is bound for the SDP and never read."""

    def __init__(self, name: str):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.received: list[Message] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def rtp_port(self) -> int:
        return int(self.rtp.getsockname()[1])

    def close(self) -> None:
        self._done.set()
        self._thread.join(2)
        self.sock.close()
        self.rtp.close()

    def messages(self) -> list[Message]:
        with self._lock:
            return list(self.received)

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        self.sock.sendto(data, address)

    def request(self, start: str, headers: list[str], address: tuple[str, int],
                body: str = "") -> None:
        via = f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-{self.name}-" \
              f"{next(_branches)};rport"
        lines = [start, via, "Max-Forwards: 70", *headers,
                 f"Content-Length: {len(body.encode())}", "", body]
        self.send("\r\n".join(lines).encode(), address)

    def final(self, call_id: str, method: str) -> Message | None:
        """The first final response to *method* in the call *call_id*, if it came."""
        return next((m for m in self.messages() if m.is_response and m.call_id == call_id
                     and m.method == method and m.status >= 200), None)

    def requests(self, method: str, call_id: str | None = None) -> list[Message]:
        return [m for m in self.messages() if not m.is_response and m.method == method
                and (call_id is None or m.call_id == call_id)]

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                data, address = self.sock.recvfrom(65535)
            except OSError:
                continue
            message = Message.parse(data)
            with self._lock:
                self.received.append(message)
            if not message.is_response:
                self.on_request(message, address)

    def on_request(self, message: Message, address: tuple[str, int]) -> None:
        if message.method not in ("ACK", "INVITE"):
            self.send(reply_to(message, "200 OK"), address)


@dataclass
class Dialog:
    """The caller's side of one call."""

    call_id: str
    from_hdr: str
    to_hdr: str = ""
    remote: str = ""
    """The switchboard's Contact URI (where in-dialog requests go)."""
    cseq: int = 1


class Caller(Peer):
    """A trunk's caller: INVITE, ACK of the 200, REFER and BYE in the call; answers the
    switchboard's requests (NOTIFYs of the transfer's progress, BYE) with 200, except the
    NOTIFY of the transfer's final answer, held until :meth:`answer_held`."""

    def __init__(self, board_port: int):
        super().__init__("caller")
        self.board = ("127.0.0.1", board_port)
        self._calls = itertools.count(1)
        self._held: list[tuple[Message, tuple[str, int]]] = []

    def on_request(self, message: Message, address: tuple[str, int]) -> None:
        fragment = message.body.strip().split(" ", 2)  # 'SIP/2.0 404 Not Found'
        if message.method == "NOTIFY" and len(fragment) > 1 and fragment[1].isdigit() \
                and int(fragment[1]) >= 200:
            with self._lock:
                self._held.append((message, address))
            return
        super().on_request(message, address)

    def answer_held(self) -> None:
        """Answer the NOTIFYs held so far (the transfer's end) with 200."""
        with self._lock:
            held, self._held = self._held, []
        for message, address in held:
            self.send(reply_to(message, "200 OK"), address)

    def invite(self) -> Dialog:
        n = next(self._calls)
        dialog = Dialog(f"xfer-{n}-{self.port}@test",
                        f"<sip:0612345678@127.0.0.1:{self.port}>;tag=c{n}")
        self.request(f"INVITE sip:800@127.0.0.1:{self.board[1]} SIP/2.0",
                     [f"From: {dialog.from_hdr}", f"To: <sip:800@127.0.0.1:{self.board[1]}>",
                      f"Call-ID: {dialog.call_id}", "CSeq: 1 INVITE",
                      f"Contact: <sip:0612345678@127.0.0.1:{self.port}>",
                      "Content-Type: application/sdp"], self.board, sdp(self.rtp_port, 1))
        return dialog

    def ack(self, dialog: Dialog, ok: Message) -> None:
        dialog.to_hdr = ok.get("to")
        dialog.remote = uri_of(ok.get("contact"))
        self.request(f"ACK {dialog.remote} SIP/2.0",
                     [f"From: {dialog.from_hdr}", f"To: {dialog.to_hdr}",
                      f"Call-ID: {dialog.call_id}", "CSeq: 1 ACK"], self.board)

    def in_dialog(self, dialog: Dialog, method: str, extra: tuple[str, ...] = ()) -> None:
        dialog.cseq += 1
        self.request(f"{method} {dialog.remote} SIP/2.0",
                     [f"From: {dialog.from_hdr}", f"To: {dialog.to_hdr}",
                      f"Call-ID: {dialog.call_id}", f"CSeq: {dialog.cseq} {method}",
                      f"Contact: <sip:0612345678@127.0.0.1:{self.port}>", *extra], self.board)

    def progress(self, dialog: Dialog) -> list[str]:
        """The status lines of the transfer NOTIFYs received in *dialog* ('SIP/2.0 404 ...')."""
        return [m.body.strip().split("\r\n")[0] for m in self.requests("NOTIFY", dialog.call_id)]


class Target(Peer):
    """Where the Refer-To points. *mode*: '404' answers at once; 'ring' answers 180 and the
    final answer on :meth:`finish`; 'answer' answers 200 (with SDP) and hangs up on
    :meth:`hang_up`."""

    def __init__(self, mode: str):
        super().__init__("target")
        self.mode = mode
        self.invite: tuple[Message, tuple[str, int]] | None = None
        self._sent: dict[str, bytes] = {}
        """The last answer per INVITE branch (sent again to a retransmitted INVITE)."""

    @property
    def uri(self) -> str:
        return f"sip:{TRANSFER_NUMBER}@127.0.0.1:{self.port}"

    def on_request(self, message: Message, address: tuple[str, int]) -> None:
        if message.method != "INVITE":
            super().on_request(message, address)
            return
        branch = message.get("via")
        if branch in self._sent:
            self.send(self._sent[branch], address)
            return
        self.invite = (message, address)
        self.send(reply_to(message, "100 Trying"), address)
        if self.mode == "404":
            self._answer("404 Not Found")
        elif self.mode == "ring":
            self._answer("180 Ringing")
        else:
            self._answer("200 OK", (f"Contact: <sip:{TRANSFER_NUMBER}@127.0.0.1:{self.port}>",
                                    "Content-Type: application/sdp"), sdp(self.rtp_port, 2))

    def _answer(self, status: str, extra: tuple[str, ...] = (), body: str = "") -> None:
        assert self.invite is not None
        message, address = self.invite
        data = reply_to(message, status, extra, body, to_tag="target")
        self._sent[message.get("via")] = data
        self.send(data, address)

    def finish(self, status: str) -> None:
        self._answer(status)

    def hang_up(self) -> str:
        """BYE the transfer call; its Call-ID."""
        assert self.invite is not None
        message, address = self.invite
        self.request(f"BYE {uri_of(message.get('contact'))} SIP/2.0",
                     [f"From: {message.get('to')};tag=target", f"To: {message.get('from')}",
                      f"Call-ID: {message.call_id}", "CSeq: 1 BYE"], address)
        return message.call_id

    def acks(self) -> list[Message]:
        return self.requests("ACK")


# -- the scenarios ----------------------------------------------------------------------------
@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    require_sip_stack()
    board = Board.start(tmp_path)
    yield board
    board.kill()  # only if a failed test left it running


@dataclass
class Peers:
    """The raw SIP peers of one test, closed at its end."""

    board_port: int
    made: list[Peer] = field(default_factory=list)

    def caller(self) -> Caller:
        caller = Caller(self.board_port)
        self.made.append(caller)
        return caller

    def target(self, mode: str) -> Target:
        target = Target(mode)
        self.made.append(target)
        return target


@pytest.fixture
def peers(board: Board) -> Iterator[Peers]:
    made = Peers(board.port)
    yield made
    for peer in made.made:
        peer.close()


def answered(board: Board, caller: Caller) -> Dialog:
    """A call from *caller*, answered and acknowledged."""
    dialog = caller.invite()
    ok = wait_until(lambda: caller.final(dialog.call_id, "INVITE"), "answer to the INVITE",
                    board)
    assert ok.status == 200, ok.start
    caller.ack(dialog, ok)
    return dialog


def hang_up(board: Board, caller: Caller, dialog: Dialog) -> None:
    caller.in_dialog(dialog, "BYE")
    ok = wait_until(lambda: caller.final(dialog.call_id, "BYE"), "answer to the caller's BYE",
                    board)
    assert ok.status == 200, ok.start


def transfer_round(board: Board, caller: Caller, target: Target) -> None:
    """Call, REFER to *target* (202), the target's answer as its mode says, the caller's BYE,
    then another call that must be answered (and is hung up).

    The caller answers the NOTIFY of the transfer's end only once the switchboard has reported
    that end, as a caller beyond loopback would: an answer within the same poll let pjsua2
    point the shared object back at the caller's call before it was freed, which hid the crash.
    """
    dialog = answered(board, caller)
    ended = len(board.seen("LegEnded"))
    caller.in_dialog(dialog, "REFER", (f"Refer-To: <{target.uri}>",
                                       f"Referred-By: <sip:0612345678@127.0.0.1:{caller.port}>"))
    accepted = wait_until(lambda: caller.final(dialog.call_id, "REFER"), "answer to the REFER",
                          board)
    assert accepted.status == 202, accepted.start
    invite = wait_until(lambda: target.invite, "transfer INVITE at the target", board)
    assert invite[0].start.startswith(f"INVITE {target.uri} SIP/2.0")

    def notified(status: str) -> Callable[[], bool]:
        return lambda: any(line.startswith(f"SIP/2.0 {status}")
                           for line in caller.progress(dialog))

    def transfer_ended(count: int) -> None:
        wait_until(lambda: len(board.seen("LegEnded")) >= count, "the transfer's end", board)
        caller.answer_held()

    if target.mode == "404":
        # the transfer call ends (404) before the caller hangs up: the crash's order
        wait_until(notified("404"), "NOTIFY of the transfer's 404", board)
        wait_until(target.acks, "ACK of the 404", board)
        transfer_ended(ended + 1)
        hang_up(board, caller, dialog)
    elif target.mode == "ring":
        wait_until(notified("180"), "NOTIFY of the transfer's 180", board)
        hang_up(board, caller, dialog)
        target.finish("404 Not Found")  # the transfer's end comes after the caller's BYE
        wait_until(target.acks, "ACK of the 404 after the caller's BYE", board)
        transfer_ended(ended + 2)
    else:
        wait_until(notified("200"), "NOTIFY of the transfer's 200", board)
        wait_until(target.acks, "ACK of the target's 200", board)
        call_id = target.hang_up()
        bye_ok = wait_until(lambda: target.final(call_id, "BYE"), "answer to the target's BYE",
                            board)
        assert bye_ok.status == 200, bye_ok.start
        transfer_ended(ended + 1)
        hang_up(board, caller, dialog)
    assert not caller.requests("BYE", dialog.call_id), "the switchboard hung up on the caller"
    hang_up(board, caller, answered(board, caller))  # the process is alive and takes calls


def check_events(board: Board, targets: list[Target]) -> None:
    """Each round's transfer ran on a leg of its own, which ended once with the target's
    answer; every incoming leg ended once."""
    rounds = len(targets)
    # per round: the caller's leg, the transfer leg and the next call's leg end
    wait_until(lambda: len(board.seen("LegEnded")) >= 3 * rounds, "the legs' ends", board)
    incoming = [e["leg"] for e in board.seen("IncomingCall")]
    assert len(incoming) == 2 * rounds
    allowed = board.seen("TransferAllowed")
    assert [uri_of(e["target"]) for e in allowed] == [t.uri for t in targets], allowed
    assert [e["leg"] for e in allowed] == incoming[::2]  # each round's first call
    ended: dict[str, list[int]] = {}
    for event in board.seen("LegEnded"):
        ended.setdefault(event["leg"], []).append(event["status"])
    assert all(len(statuses) == 1 for statuses in ended.values()), ended
    assert set(incoming) <= set(ended), ended
    transfer_legs = [leg for leg in ended if leg not in incoming]
    expected = [200 if t.mode == "answer" else 404 for t in targets]
    assert [ended[leg][0] for leg in transfer_legs] == expected, ended
    assert [e["leg"] for e in board.seen("LegAnswered")] == \
        [leg for leg, t in zip(transfer_legs, targets, strict=True) if t.mode == "answer"]


def stop_cleanly(board: Board) -> None:
    rc = board.stop()
    assert rc == 0, f"the stack's process ended with status {rc}\n{board.log_tail()}"
    assert board.seen("Stopped")
    assert "Traceback" not in board.log_path.read_text(), board.log_tail()


@pytest.mark.parametrize("mode", ["404", "ring", "answer"])
def test_a_transfer_ended_by_its_target_then_the_callers_bye_leave_the_process_up(
        board: Board, peers: Peers, mode: str) -> None:
    """'404': the target refuses before the caller hangs up (the crash); 'ring': it rings and
    refuses only after the caller's BYE; 'answer': it answers, then hangs up."""
    target = peers.target(mode)
    transfer_round(board, peers.caller(), target)
    check_events(board, [target])
    stop_cleanly(board)


def test_five_refused_transfers_in_a_row(board: Board, peers: Peers) -> None:
    caller = peers.caller()
    targets = [peers.target("404") for _ in range(5)]
    for target in targets:
        transfer_round(board, caller, target)
    check_events(board, targets)
    stop_cleanly(board)


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))

"""Acceptance tests of the call core in a real `ivr run` process: what a switchboard must survive.

- a CRM that trickles its headers forever cannot keep other calls' lookups or a stop waiting;
- a database locked by another process delays records, never the answer to a call;
- a crash (SIGKILL) with a bridged call leaves a row the next start closes as interrupted;
- a second switchboard on a live store is refused before it touches a row;
- an answer (200 OK) that is never acknowledged is recorded as failed.

The flow is tests/flows_e2e/core.yaml (the caller's number picks the path); the CRMs are in
tests/crm_server.py. Figures are printed and appended to var/e2e-figures.txt.
"""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.crm_server import JsonCrm, TricklingCrm
from tests.e2e import (
    ROOT,
    Peer,
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_sip_stack,
    wait_until,
)

pytestmark = pytest.mark.e2e
FLOW = Path(__file__).resolve().parent / "flows_e2e" / "core.yaml"
RESULTS = ROOT / "var" / "e2e-figures.txt"
EXIT_BOUND_S = 5.0
"""The acceptance bound for a stop (SIGINT -> process gone) with lookups hanging."""


def note_figure(text: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(text + "\n")
    print(text)


@dataclass
class StoreBoard(Switchboard):
    """A switchboard whose store may be another switchboard's database file."""

    store: Path | None = None

    def write_config(self) -> Path:
        path = super().write_config()
        if self.store is not None:
            text = path.read_text()
            assert "\nstore: calls.db\n" in text
            path.write_text(text.replace("\nstore: calls.db\n", f"\nstore: {self.store}\n"))
        return path

    @property
    def db(self) -> Path:
        return self.store if self.store is not None else self.workdir / "calls.db"


class Boards:
    """Starts switchboards and peers for one test; stops whatever is still running at the end
    and checks that every switchboard that was not killed stopped cleanly."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.boards: list[Switchboard] = []
        self.peers: list[Peer] = []
        self.killed: set[int] = set()

    def board(self, workdir: Path | None = None, *, flow_text: str | None = None,
              agents: dict[str, int] | None = None, store: Path | None = None,
              start: bool = True) -> StoreBoard:
        workdir = workdir or self.tmp_path
        workdir.mkdir(parents=True, exist_ok=True)
        flow = FLOW
        if flow_text is not None:
            flow = workdir / "core.yaml"
            flow.write_text(flow_text)
        sb = StoreBoard(workdir, free_udp_port(), free_tcp_port(),
                        agents=agents or {"anna": free_udp_port()}, flow=flow, store=store)
        if start:
            self.boards.append(sb)
            sb.start()
        return sb

    def peer(self, workdir: Path, name: str, mode: str, port: int, *extra: str) -> Peer:
        p = peer(workdir, name, mode, port, *extra)
        self.peers.append(p)
        return p.start()

    def kill(self, sb: Switchboard) -> None:
        assert sb.proc is not None
        sb.proc.kill()
        sb.proc.wait(10)
        self.killed.add(id(sb))

    def close(self) -> None:
        for p in self.peers:
            p.stop()
        problems = []
        for sb in self.boards:
            if sb.proc is None or id(sb) in self.killed:
                continue
            code = sb.stop()
            text = sb.log_path.read_text()
            if code != 0 or "Traceback" in text:
                problems.append(f"{sb.workdir}: exit {code}\n{sb.log_tail()}")
        assert not problems, "\n".join(problems)


@pytest.fixture
def boards(tmp_path: Path) -> Iterator[Boards]:
    require_sip_stack()
    b = Boards(tmp_path)
    yield b
    b.close()


def rows(db: Path, where: str = "1", params: tuple[object, ...] = ()) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM calls WHERE {where} "
                                               "ORDER BY started_at", params)]


def one_row(db: Path, where: str, params: tuple[object, ...] = ()) -> dict[str, object] | None:
    found = rows(db, where, params)
    return found[0] if len(found) == 1 else None


# -- 1. a CRM that trickles its headers forever ------------------------------------------------
def test_trickling_crm_neither_starves_other_lookups_nor_holds_up_a_stop(
        boards: Boards, tmp_path: Path) -> None:
    with TricklingCrm(every=0.5) as slow, JsonCrm({"customer": {"tier": "gold"}}) as crm:
        flow = FLOW.read_text().replace("127.0.0.1:8091", f"127.0.0.1:{crm.port}") \
            .replace("127.0.0.1:8092", f"127.0.0.1:{slow.port}")
        board = boards.board(flow_text=flow)
        # six calls whose lookups trickle: more than the four lookup workers
        trickled = boards.peer(tmp_path, "2000001", "caller", free_udp_port(), "--target",
                               board.uri, "--calls", "6", "--call-gap", "0.05",
                               "--duration", "40")
        wait_until(lambda: slow.counts()[1] >= 4, "four lookups stuck on the trickling CRM",
                   timeout=20, details=board.log_tail)
        healthy = boards.peer(tmp_path, "1000001", "caller", free_udp_port(), "--target",
                              board.uri, "--duration", "40")
        assert healthy.wait_exit(45) == 0  # the switchboard hangs up after "Gold."
        assert trickled.wait_exit(45) == 0
        by_caller: dict[str, list[dict[str, object]]] = {}
        for record in board.records():
            by_caller.setdefault(str(record["caller"]), []).append(record)
        (good,) = by_caller["1000001"]
        assert good["ivr_path"] == "who[case 1] > healthy > tier[case 1] > gold", good
        assert good["outcome"] == "completed"
        assert len(crm.paths) == 1
        assert crm.paths[0] == "/customers?number=1000001"
        stuck = by_caller["2000001"]
        assert len(stuck) == 6
        assert {r["ivr_path"] for r in stuck} == {"who[case 2] > trickle[error] > sorry"}
        log = board.log_path.read_text()
        answered = re.findall(rf"call {good['call_id']}: lookup \d+ answered in ([0-9.]+) s", log)
        assert len(answered) == 1, log
        timeouts = re.findall(r"lookup \d+ failed after ([0-9.]+) s: timeout after 2 s", log)
        assert len(timeouts) == 6, log
        # every trickling lookup was cut at its one deadline, whatever the bytes kept coming
        assert max(float(t) for t in timeouts) < 4.0, timeouts

        # a stop while lookups hang on the trickling CRM: the daemon workers do not hold it up
        opened = slow.counts()[0]
        late = boards.peer(tmp_path, "2000002", "caller", free_udp_port(), "--target",
                           board.uri, "--calls", "4", "--call-gap", "0.05", "--duration", "40")
        wait_until(lambda: slow.counts()[0] >= opened + 4 and slow.counts()[1] >= 4,
                   "four new lookups stuck on the trickling CRM", timeout=20,
                   details=board.log_tail)
        assert board.proc is not None
        sent = time.monotonic()
        board.proc.send_signal(signal.SIGINT)  # stop now (SIGTERM would drain the calls first)
        code = board.proc.wait(timeout=EXIT_BOUND_S)
        exit_s = time.monotonic() - sent
        assert code == 0, board.log_tail()
        assert late.wait_exit(15) == 0
        assert "Traceback" not in board.log_path.read_text(), board.log_tail()
        interrupted = [r for r in board.records() if r["caller"] == "2000002"]
        assert len(interrupted) == 4
        assert {r["outcome"] for r in interrupted} == {"interrupted"}, interrupted
    note_figure(f"trickling CRM: healthy lookup answered in {float(answered[0]):.2f} s behind "
                f"6 stuck lookups (4 workers); trickled lookups cut at "
                f"{max(float(t) for t in timeouts):.2f} s (timeout 2 s); SIGINT -> exit "
                f"{exit_s:.2f} s with 4 lookups hanging")


# -- 2. a database locked by another process ----------------------------------------------------
LOCK_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=20, isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
locked = time.monotonic()
print("locked", flush=True)
sys.stdin.readline()  # the test has seen what it needs while the lock is held
time.sleep(max(0.0, float(sys.argv[2]) - (time.monotonic() - locked)))
db.execute("COMMIT")
print("released", flush=True)
"""
"""Another process that holds the database's write lock for at least argv[2] seconds, and
until a line comes on its standard input (or that closes)."""


def test_answer_is_not_delayed_by_a_locked_database_and_the_record_follows(
        boards: Boards, tmp_path: Path) -> None:
    board = boards.board()
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(board.db), "8"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        caller = boards.peer(tmp_path, "4000001", "caller", free_udp_port(), "--target",
                             board.uri, "--duration", "30")
        (confirmed,) = caller.wait_event("confirmed", timeout=10)
        (dialing,) = caller.events("dialing")
        answer_s = float(str(confirmed["t"])) - float(str(dialing["t"]))
        assert caller.wait_exit(20) == 0  # "Hello.", then the switchboard hangs up
        # nothing could be written while the lock was held
        assert rows(board.db, "caller = ?", ("4000001",)) == []
        board.wait_for_log("cannot write", timeout=10)
        assert holder.poll() is None
        holder.stdin.write("release\n")
        holder.stdin.close()
        assert holder.stdout.readline().strip() == "released"
        assert holder.wait(10) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    released = time.monotonic()
    record = wait_until(lambda: one_row(board.db, "caller = ? AND outcome != 'in_progress'",
                                        ("4000001",)),
                        "the call's record after the lock was released", timeout=20,
                        details=board.log_tail)
    arrived_s = time.monotonic() - released
    assert record["outcome"] == "completed"
    assert record["ivr_path"] == "who[default] > hello"
    assert record["answered_at"] is not None
    assert record["ended_at"] is not None
    board.wait_for_log("call records are written to", timeout=10)
    note_figure(f"database locked 8 s by another process: INVITE -> 200 OK at the caller "
                f"{answer_s * 1000:.0f} ms (makeCall -> confirmed); record in the database "
                f"{arrived_s:.1f} s after the lock was released")
    assert answer_s < 0.5, f"answered {answer_s * 1000:.0f} ms after the INVITE"


# -- 3. kill -9 with a bridged call --------------------------------------------------------------
KEPT = ("call_id", "caller", "ivr_path", "queue", "agent", "answered_at", "queued_at",
        "connected_at", "started_at")


def connected_call(boards: Boards, board: Switchboard, workdir: Path,
                   caller: str) -> tuple[Peer, Peer, dict[str, object]]:
    """A caller through the queue to an agent who answers and talks on; returns the peers and
    the row once it names the agent and the connect time."""
    agent = boards.peer(workdir, "anna", "agent", board.agents["anna"], "--answer-after", "0.3",
                        "--duration", "90")
    calling = boards.peer(workdir, caller, "caller", free_udp_port(), "--target", board.uri,
                          "--duration", "90")
    row = wait_until(lambda: one_row(board.db, "caller = ? AND agent IS NOT NULL AND "
                                               "connected_at IS NOT NULL", (caller,)),
                     "the row shows the agent and the connect time", timeout=30,
                     details=board.log_tail)
    return agent, calling, row


def test_kill_9_with_a_bridged_call_leaves_a_row_the_next_start_closes(
        boards: Boards, tmp_path: Path) -> None:
    board = boards.board()
    agent, caller, row = connected_call(boards, board, tmp_path, "3000001")
    assert row["outcome"] == "in_progress"
    assert row["ivr_path"] == "who[case 3] > agents"
    assert row["queue"] == "support"
    assert row["agent"] == "anna"
    assert row["answered_at"] is not None
    assert row["connected_at"] is not None
    boards.kill(board)
    after_kill = one_row(board.db, "call_id = ?", (row["call_id"],))
    assert after_kill is not None
    assert after_kill["outcome"] == "in_progress"
    assert {k: after_kill[k] for k in KEPT} == {k: row[k] for k in KEPT}
    shutil.copy(board.log_path, tmp_path / "ivr-killed.log")
    # the next start on the same workdir and database
    again = boards.board(agents={"anna": free_udp_port()})
    again.wait_for_log("closed 1 call record(s) left open by an earlier stop as interrupted",
                       timeout=10)
    closed = one_row(again.db, "call_id = ?", (row["call_id"],))
    assert closed is not None
    assert closed["outcome"] == "interrupted", closed
    assert closed["end_reason"] == "process stopped during the call"
    assert closed["ended_at"] is not None
    assert {k: closed[k] for k in KEPT} == {k: row[k] for k in KEPT}
    caller.stop()
    agent.stop()


# -- 4. a second ivr run on a live store ---------------------------------------------------------
def test_second_switchboard_on_a_live_store_is_refused_and_touches_nothing(
        boards: Boards, tmp_path: Path) -> None:
    first = boards.board(tmp_path / "first")
    agent, caller, row = connected_call(boards, first, tmp_path / "first", "3000002")
    assert first.proc is not None
    second = boards.board(tmp_path / "second", store=first.db, start=False)
    config = second.write_config()
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "ivr.cli", "run", "--config", str(config)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    refused_s = time.monotonic() - started
    assert run.returncode == 2, (run.stdout, run.stderr)
    errors = [line for line in (run.stdout + run.stderr).splitlines()
              if line.startswith("ivr: error:")]
    assert len(errors) == 1, (run.stdout, run.stderr)
    (error,) = errors
    assert str(first.db) in error, error
    assert f"pid {first.proc.pid}" in error, error
    assert "in use by another switchboard" in error
    assert not (run.stdout + run.stderr).count("Traceback")
    # the first switchboard's row is untouched and its call goes on
    now = one_row(first.db, "call_id = ?", (row["call_id"],))
    assert now == row, (now, row)
    assert caller.events("disconnected") == []
    assert agent.events("disconnected") == []
    assert first.proc.poll() is None
    assert not first.db.with_name(first.db.name + ".unwritten.jsonl").exists()
    caller.stop()  # the caller hangs up: the first switchboard closes the record
    ended = wait_until(lambda: one_row(first.db, "call_id = ? AND outcome != 'in_progress'",
                                       (row["call_id"],)),
                       "the call's record closed by the first switchboard", timeout=15,
                       details=first.log_tail)
    assert ended["outcome"] == "completed", ended
    assert ended["end_reason"] == "caller hung up", ended
    assert ended["agent"] == "anna"
    assert float(str(ended["talk_seconds"])) > 0
    note_figure(f"second ivr run on a live store: refused in {refused_s:.1f} s: {error}")


# -- 5. a 200 OK that is never acknowledged -------------------------------------------------------
def raw_invite(target_port: int, local_port: int, rtp_port: int, caller: str,
               call_id: str) -> bytes:
    sdp = ("v=0\r\n"
           "o=- 1 1 IN IP4 127.0.0.1\r\n"
           "s=-\r\n"
           "c=IN IP4 127.0.0.1\r\n"
           "t=0 0\r\n"
           f"m=audio {rtp_port} RTP/AVP 0 101\r\n"
           "a=rtpmap:0 PCMU/8000\r\n"
           "a=rtpmap:101 telephone-event/8000\r\n"
           "a=fmtp:101 0-15\r\n"
           "a=sendrecv\r\n")
    head = (f"INVITE sip:ivr@127.0.0.1:{target_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{secrets.token_hex(8)};"
            "rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{caller}@127.0.0.1:{local_port}>;tag={secrets.token_hex(6)}\r\n"
            f"To: <sip:ivr@127.0.0.1:{target_port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:{caller}@127.0.0.1:{local_port}>\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp.encode())}\r\n\r\n")
    return (head + sdp).encode()


class RawCaller:
    """A caller made of one UDP socket: sends an INVITE, never ACKs, answers BYE with 200 (as a
    gateway that lost the ACK would), and keeps every datagram it got."""

    def __init__(self) -> None:
        self.sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sig.bind(("127.0.0.1", 0))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.got: list[str] = []

    def close(self) -> None:
        self.sig.close()
        self.rtp.close()

    def invite(self, target_port: int, caller: str) -> str:
        call_id = f"{secrets.token_hex(8)}@127.0.0.1"
        self.sig.sendto(raw_invite(target_port, self.sig.getsockname()[1],
                                   self.rtp.getsockname()[1], caller, call_id),
                        ("127.0.0.1", target_port))
        return call_id

    def read(self, wait: float = 0.0) -> int:
        """Take what has arrived (waiting up to *wait* s for the first); answer BYEs. Returns
        how many datagrams have arrived so far."""
        self.sig.settimeout(wait if wait > 0 else 0.001)
        while True:
            try:
                data, source = self.sig.recvfrom(65535)
            except (TimeoutError, BlockingIOError):
                return len(self.got)
            text = data.decode(errors="replace")
            self.got.append(text)
            if text.startswith("BYE "):
                head = [line for line in text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
                        if line.split(":", 1)[0].strip().lower()
                        in ("via", "from", "to", "call-id", "cseq")]
                reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(head) + \
                    "\r\nContent-Length: 0\r\n\r\n"
                self.sig.sendto(reply.encode(), source)
            self.sig.settimeout(0.001)

    def count(self, first_line: str) -> int:
        return sum(1 for d in self.got if d.startswith(first_line))


def test_an_answer_never_acknowledged_is_recorded_failed(
        boards: Boards, tmp_path: Path) -> None:
    board = boards.board()
    raw = RawCaller()
    try:
        raw.invite(board.sip_port, "5000001")

        def got_200() -> bool:
            raw.read(0.2)
            return raw.count("SIP/2.0 200") > 0

        wait_until(got_200, "a 200 OK to the INVITE", timeout=10, details=board.log_tail)
        answered = time.monotonic()
        # no ACK, ever: the row is in progress while pjsip retransmits the 200 OK
        row = wait_until(lambda: one_row(board.db, "caller = ? AND answered_at IS NOT NULL",
                                         ("5000001",)),
                         "the call's row, answered", timeout=10, details=board.log_tail)
        assert row["outcome"] == "in_progress"

        def closed() -> dict[str, object] | None:
            raw.read(0.1)  # and answer the BYE that pjsip sends when it gives up
            return one_row(board.db, "caller = ? AND outcome != 'in_progress'", ("5000001",))

        record = wait_until(closed, "the unacknowledged call's record closed", timeout=45,
                            interval=0.1, details=board.log_tail)
        closed_s = time.monotonic() - answered
    finally:
        raw.close()
    assert record["outcome"] == "failed", record
    assert "no ACK" in str(record["end_reason"]), record
    assert record["answered_at"] is not None
    assert record["ended_at"] is not None
    assert record["ivr_path"] == "who[case 4] > wait", record
    assert raw.count("SIP/2.0 200") > 1  # pjsip retransmitted its 200 OK, in vain
    assert raw.count("BYE ") >= 1
    note_figure(f"200 OK never acknowledged: record closed as failed {closed_s:.1f} s after "
                f"the first 200 OK ({raw.count('SIP/2.0 200')} copies of it, then a BYE)")

"""End to end over loopback with pjsua2 peers in their own processes: SIP INFO digits, refused
sources, and ten callers at once through the demo flow to two agents."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.e2e import Switchboard, free_tcp_port, free_udp_port, peer, require_sip_stack

pytestmark = pytest.mark.e2e
RESULTS = Path(__file__).resolve().parent.parent / "var" / "e2e-figures.txt"


@pytest.fixture
def board(tmp_path):
    require_sip_stack()
    sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                     agents={"anna": free_udp_port(), "marco": free_udp_port()})
    sb.start()
    yield sb
    assert sb.stop() == 0, sb.log_tail()
    assert "Traceback" not in sb.log_path.read_text(), sb.log_tail()


def note_figure(text: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(text + "\n")
    print(text)


def test_sip_info_digits_reach_sales_and_agent(board, tmp_path):
    marco = peer(tmp_path, "marco", "agent", board.agents["marco"], "--talk", "2",
                 "--duration", "40").start()
    caller = peer(tmp_path, "3330001111", "caller", free_udp_port(), "--target", board.uri,
                  "--digits", "2,2", "--dtmf", "info", "--first-digit-after", "0.5",
                  "--digit-gap", "0.8", "--duration", "40").start()
    try:
        assert caller.wait_exit(45) == 0
    finally:
        marco.stop()
    (incoming,) = marco.events("incoming")
    sent = caller.events("digit_sent")
    assert [e["digit"] for e in sent] == ["2", "2"]
    # the agent hung up after 2 s of talk; the caller's leg was then cleared by the switchboard
    (ended,) = caller.events("disconnected")
    assert ended["code"] == 200
    latency = float(incoming["t"]) - float(sent[-1]["t"])
    note_figure(f"SIP INFO: last digit -> agent INVITE {latency * 1000:.0f} ms "
                "(includes the queue's hold prompt)")
    (record,) = board.records()
    assert record["ivr_path"] == "welcome[2] > main[2] > sales"
    assert record["queue"] == "sales"
    assert record["agent"] == "marco"
    assert record["outcome"] == "completed"
    assert record["end_reason"] == "agent hung up"
    assert record["trunk"] == "test"
    assert record["caller"] == "3330001111"
    assert 1.5 < record["talk_seconds"] < 4.0
    assert 0 <= record["wait_seconds"] < 3.0
    assert record["started_at"] <= record["answered_at"] < record["queued_at"] \
        < record["connected_at"] < record["ended_at"]
    assert board.metric("ivr_calls_total", {"outcome": "completed", "trunk": "test"}) == 1.0
    assert board.metric("ivr_calls_in_progress") == 0.0
    assert board.metric("ivr_queue_answered_total", {"queue": "sales"}) == 1.0
    assert board.metric("ivr_queue_wait_seconds_count", {"queue": "sales"}) == 1.0
    assert board.metric("ivr_node_entries_total", {"flow": "demo", "node": "main"}) == 1.0
    assert board.metric("ivr_queue_service_level_ratio",
                        {"queue": "sales", "definition": "sl"}) == 1.0


def test_source_that_is_not_a_trunk_gets_403_and_no_answered_record(board, tmp_path):
    intruder = peer(tmp_path, "intruder", "caller", free_udp_port(), "--ip", "127.0.0.2",
                    "--target", board.uri, "--digits", "2,1", "--duration", "15").start()
    assert intruder.wait_exit(20) == 0
    assert [e["code"] for e in intruder.events("disconnected")] == [403]
    assert not intruder.events("confirmed")
    board.wait_for_log("refused call from 127.0.0.2")
    (record,) = board.records()
    assert record["outcome"] == "refused"
    assert record["source"] == "127.0.0.2"
    assert record["answered_at"] is None
    assert record["agent"] is None
    assert board.metric("ivr_calls_total", {"outcome": "refused"}) == 1.0


def test_ten_simultaneous_callers_to_two_agents_all_complete(board, tmp_path):
    agents = [peer(tmp_path, name, "agent", board.agents[name], "--talk", "1.5",
                   "--answer-after", "0.3", "--duration", "90").start()
              for name in ("anna", "marco")]
    callers = peer(tmp_path, "callers", "caller", free_udp_port(), "--target", board.uri,
                   "--calls", "10", "--call-gap", "0.1", "--digits", "2,1",
                   "--first-digit-after", "0.5", "--digit-gap", "0.5",
                   "--duration", "90").start()
    try:
        assert callers.wait_exit(95) == 0
    finally:
        for agent in agents:
            agent.stop()
    assert len(callers.events("disconnected")) == 10
    records = board.records()
    assert len(records) == 10
    assert {r["outcome"] for r in records} == {"completed"}
    assert {r["ivr_path"] for r in records} == {"welcome[2] > main[1] > support"}
    by_agent = {name: sum(1 for r in records if r["agent"] == name) for name in ("anna", "marco")}
    assert by_agent["anna"] + by_agent["marco"] == 10
    assert min(by_agent.values()) >= 3
    waits = sorted(float(r["wait_seconds"]) for r in records)
    # two agents, 1.5 s talks: callers further back waited for agents to come free
    assert waits[-1] > waits[0] + 2.0
    for agent in agents:
        assert len(agent.events("answered")) == by_agent[agent.name]
    note_figure(f"10 callers / 2 agents: median wait {statistics.median(waits):.1f} s, "
                f"max {waits[-1]:.1f} s; calls per agent {by_agent}")
    assert board.metric("ivr_calls_total", {"outcome": "completed"}) == 10.0


def test_malformed_sip_is_dropped_and_service_goes_on(board, tmp_path):
    import socket

    junk = [
        b"\x00\xff garbage that is not SIP at all\r\n\r\n",
        b"INVITE sip:ivr@127.0.0.1 SIP/2.0\r\nVia: nonsense\r\nContent-Length: 99999\r\n\r\nv=0",
        b"SIP/2.0 200 OK\r\nCSeq: banana\r\n\r\n",
        b"INVITE sip:ivr@127.0.0.1 SIP/2.0\r\n" + b"X-Long: " + b"A" * 3000 + b"\r\n\r\n",
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in junk:
            s.sendto(datagram, ("127.0.0.1", board.sip_port))
    anna = peer(tmp_path, "anna", "agent", board.agents["anna"], "--talk", "1",
                "--duration", "40").start()
    caller = peer(tmp_path, "3330001111", "caller", free_udp_port(), "--target", board.uri,
                  "--digits", "1,1", "--first-digit-after", "0.5", "--digit-gap", "0.8",
                  "--duration", "40").start()
    try:
        assert caller.wait_exit(45) == 0
    finally:
        anna.stop()
    (record,) = board.records()
    assert record["outcome"] == "completed"
    assert record["agent"] == "anna"
    assert record["ivr_path"] == "welcome[1] > main[1] > support"
    assert board.proc.poll() is None  # still running


def test_gateway_reachability_from_sip_options(tmp_path):
    import socket
    import threading
    import time

    require_sip_stack()
    responder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    responder.bind(("127.0.0.1", 0))
    responder.settimeout(0.2)
    answering = threading.Event()
    answering.set()
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                data, peer = responder.recvfrom(4096)
            except OSError:
                continue
            if not answering.is_set() or not data.startswith(b"OPTIONS "):
                continue
            head = [line for line in data.decode().split("\r\n")
                    if line.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")]
            reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(head) + "\r\nContent-Length: 0\r\n\r\n"
            responder.sendto(reply.encode(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(), agents={"anna": free_udp_port()},
                     trunk_ping=f"127.0.0.1:{responder.getsockname()[1]}")
    sb.start()
    try:
        def reachable():
            return sb.metric("ivr_trunk_reachable", {"trunk": "test"})

        end = time.monotonic() + 10
        while reachable() != 1.0 and time.monotonic() < end:
            time.sleep(0.2)
        assert reachable() == 1.0
        answering.clear()                       # the gateway goes silent
        end = time.monotonic() + 10
        while reachable() != 0.0 and time.monotonic() < end:
            time.sleep(0.2)
        assert reachable() == 0.0
        sb.wait_for_log("unreachable")
    finally:
        done.set()
        thread.join(2)
        responder.close()
        assert sb.stop() == 0, sb.log_tail()

"""Routing end to end behind the real edge: agents' phones (baresip, pjsua2) register with
Kamailio with digest auth, the switchboard (`ivr run`, with passwords and an `edge:` section)
dials them at the edge, and a gateway's calls (from TRUNK_IP) reach it through the edge.

Escalation by waiting (tiers), escalation by the agent's feature code (*9 by RFC 2833), and an
agent whose registered phone refuses every call being skipped, then paused after 3 misses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.e2e import (
    Peer,
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_baresip,
    require_sip_stack,
)
from tests.support.baresip import Baresip, free_port
from tests.test_e2e_kamailio import PASSWORDS, TRUNK_IP, Edge, agent_phone, edge

pytestmark = pytest.mark.e2e

__all__ = ["edge"]  # the module-scoped Kamailio fixture: one edge for this module's tests


def board(edge: Edge, tmp_path: Path, queues: str) -> Switchboard:
    """`ivr run` at the address the edge forwards to; anna and marco register with the edge."""
    (tmp_path / "ivr").mkdir()
    port = edge.settings.listen.port
    return Switchboard(
        tmp_path / "ivr", edge.settings.ivr.port, free_tcp_port(),
        agents={"anna": port, "marco": port}, trunk_sources=["127.0.0.1"],
        passwords={"anna": PASSWORDS["anna"], "marco": PASSWORDS["marco"]},
        queues=queues,
        extra_config=f"edge: {{listen: \"{edge.host_port}\", rpc_port: "
                     f"{edge.settings.rpc_port}, trunk_sources: [\"{TRUNK_IP}/32\"]}}\n")


def registered_pjsua(edge: Edge, tmp_path: Path, user: str, *extra: str) -> Peer:
    """A pjsua2 agent phone registered with the edge as *user* (digest auth)."""
    phone = peer(tmp_path, user, "agent", free_udp_port(), "--register", edge.host_port,
                 "--password", PASSWORDS[user], "--duration", "60", *extra).start()
    assert phone.wait_event("registered", timeout=10)[0]["code"] == 200
    return phone


def registered_baresip(stack: ExitStack, edge: Edge, tmp_path: Path, user: str,
                       answermode: str = "auto") -> Baresip:
    require_baresip()
    if answermode == "auto":
        phone = agent_phone(edge, tmp_path, user, PASSWORDS[user])
    else:  # rings, and is never picked up
        phone = Baresip(tmp_path / user, free_port(), free_port(), user=user,
                        answermode="manual", register_via=edge.host_port,
                        password=PASSWORDS[user])
    stack.enter_context(phone)
    assert phone.wait_registration() == "OK"
    return phone


def gateway_caller(edge: Edge, tmp_path: Path, *extra: str) -> Peer:
    """The trunk's gateway (TRUNK_IP) calling through the edge; demo flow keys 2 (English)
    then 1 (support); the hold prompt plays ~3.8 s after the last key, then the queue."""
    return peer(tmp_path, "gw", "caller", free_udp_port(), "--ip", TRUNK_IP,
                "--target", f"sip:0612345@{edge.host_port}", "--digits", "2,1",
                "--first-digit-after", "0.5", "--digit-gap", "0.8", *extra).start()


@contextmanager
def nobody_registered_after(edge: Edge) -> Iterator[None]:
    """Every phone of the test is gone from the edge at its end (none lingers into the next)."""
    edge.wait_registered(set())
    try:
        yield
    finally:
        edge.wait_registered(set(), timeout=10)


def wait_until_phones_seen(sb: Switchboard, *names: str) -> None:
    for name in names:
        sb.wait_for_log(f"agent {name}: phone registered", timeout=10)


def test_escalation_by_waiting_from_level_1_to_level_2(edge: Edge, tmp_path: Path) -> None:
    """anna's registered baresip rings and is never picked up; after tier_wait marco's
    registered pjsua2 phone is offered the call too and answers."""
    require_sip_stack()
    sb = board(edge, tmp_path, """\
  support: {tiers: {1: [anna], 2: [marco]}, tier_wait: 4, ring_timeout: 2.5, retry_delay: 0.5}
  sales: {agents: [anna]}""")
    with nobody_registered_after(edge), ExitStack() as stack:
        anna = registered_baresip(stack, edge, tmp_path, "anna", answermode="manual")
        marco = registered_pjsua(edge, tmp_path, "marco", "--talk", "1")
        stack.callback(marco.stop)
        sb.start()
        try:
            wait_until_phones_seen(sb, "anna", "marco")
            caller = gateway_caller(edge, tmp_path, "--hold", "25", "--duration", "35")
            assert caller.wait_exit(35) == 0
            assert caller.events("confirmed")
            assert len(marco.events("answered")) == 1
        finally:
            assert sb.stop() == 0, sb.log_tail()
        assert anna.events_seen("CALL_INCOMING"), anna.log_tail()  # her phone did ring
        assert not anna.events_seen("CALL_ESTABLISHED")
    (record,) = sb.records()
    assert record["outcome"] == "completed", record
    assert record["agent"] == "marco", record
    assert record["queue"] == "support", record
    assert record["wait_seconds"] >= 4.0, record
    (esc,) = sb.queue_events("escalate")
    assert esc["detail"] == {"kind": "waiting", "from_level": 1, "to_level": 2,
                             "from_queue": "support", "to_queue": "support"}, esc
    rings = [e["agent"] for e in sb.queue_events("ring")]
    assert rings[0] == "anna", rings
    assert rings[-1] == "marco", rings
    assert rings.count("marco") == 1, rings
    regs = [(e["kind"], e["agent"]) for e in sb.queue_events()
            if e["kind"] in ("register", "unregister")]
    assert regs[-2:] == [("register", "anna"), ("register", "marco")], regs
    kinds = [e["kind"] for e in sb.queue_events() if e["kind"] not in ("register", "unregister")]
    assert kinds[0] == "enter", kinds
    assert "connect" in kinds, kinds
    assert kinds[-1] == "complete", kinds


def test_escalation_by_the_agents_feature_code(edge: Edge, tmp_path: Path) -> None:
    """anna's registered pjsua2 phone answers and presses *9 (RFC 2833); the caller waits in
    level2, where marco's registered baresip answers."""
    require_sip_stack()
    sb = board(edge, tmp_path, """\
  support: {agents: [anna], escalate_to: level2}
  level2: {agents: [marco]}
  sales: {agents: [anna]}""")
    with nobody_registered_after(edge), ExitStack() as stack:
        anna = registered_pjsua(edge, tmp_path, "anna", "--digits", "*,9",
                                "--first-digit-after", "1", "--digit-gap", "0.2")
        stack.callback(anna.stop)
        marco = registered_baresip(stack, edge, tmp_path, "marco")
        sb.start()
        try:
            wait_until_phones_seen(sb, "anna", "marco")
            caller = gateway_caller(edge, tmp_path, "--hold", "30", "--duration", "40")
            established = marco.wait_event("CALL_ESTABLISHED", timeout=30)
            assert established["peeruri"].startswith("sip:ivr@"), established
            sb.wait_for_log("connected to agent marco", timeout=10)
            marco.hangup()
            marco.wait_event("CALL_CLOSED")
            assert caller.wait_exit(10) == 0
        finally:
            assert sb.stop() == 0, sb.log_tail()
        assert len(anna.events("answered")) == 1
        assert [e["digit"] for e in anna.events("digit_sent")] == ["*", "9"]
    (record,) = sb.records()
    assert record["outcome"] == "completed", record
    assert record["agent"] == "marco", record
    assert record["queue"] == "level2", record
    assert record["ivr_path"] == "welcome[2] > main[1] > support", record
    (esc,) = sb.queue_events("escalate")
    assert esc["agent"] == "anna", esc
    assert esc["detail"]["kind"] == "agent", esc
    assert esc["detail"]["from_queue"] == "support"
    assert esc["detail"]["to_queue"] == "level2"
    assert [e["agent"] for e in sb.queue_events("connect")] == ["anna", "marco"]
    sb.wait_for_log("agent anna escalates the call", timeout=1)


def test_agent_whose_phone_refuses_is_skipped_then_paused(edge: Edge, tmp_path: Path) -> None:
    """anna's registered pjsua2 phone refuses every call (486): she is skipped for marco
    (registered baresip) each time and, after max_no_answer (3) misses, paused."""
    require_sip_stack()
    sb = board(edge, tmp_path, """\
  support: {agents: [anna, marco], strategy: top_down, ring_timeout: 3, retry_delay: 0.5}
  sales: {agents: [anna]}""")
    calls = 4
    with nobody_registered_after(edge), ExitStack() as stack:
        anna = registered_pjsua(edge, tmp_path, "anna", "--reject", "486")
        stack.callback(anna.stop)
        marco = registered_baresip(stack, edge, tmp_path, "marco")
        sb.start()
        try:
            wait_until_phones_seen(sb, "anna", "marco")
            # one gateway, four callers 2 s apart; each hangs up 7 s after its last key
            caller = gateway_caller(edge, tmp_path, "--calls", str(calls), "--call-gap", "2",
                                    "--hold", "7", "--duration", "40")
            assert caller.wait_exit(40) == 0
            assert len(caller.events("confirmed")) == calls
        finally:
            assert sb.stop() == 0, sb.log_tail()
        assert len(anna.events("incoming")) == 3  # never offered a call after the pause
        assert len(marco.events_seen("CALL_ESTABLISHED")) == calls
    records = sb.records()
    assert [(r["agent"], r["outcome"]) for r in records] == [("marco", "completed")] * calls
    events = sb.queue_events()
    misses = [e for e in events if e["kind"] == "ring_no_answer"]
    assert [m["agent"] for m in misses] == ["anna"] * 3  # default max_no_answer: 3
    (pause,) = [e for e in events if e["kind"] == "pause"]
    assert pause["agent"] == "anna", pause
    assert pause["detail"]["reason"] == "no answer", pause
    assert pause["id"] > misses[-1]["id"]
    assert not [e for e in events if e["kind"] == "ring" and e["agent"] == "anna"
                and e["id"] > pause["id"]]

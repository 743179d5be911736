"""Routing over real SIP: escalation by waiting (tiers), by the agent's feature code, an agent
who does not answer is skipped and paused, and agents' states from phones and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import (
    ROOT,
    Peer,
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_sip_stack,
)

pytestmark = pytest.mark.e2e


def board_with(tmp_path: Path, queues: str, agents: tuple[str, ...] = ("anna", "marco"),
               extra: str = "") -> Switchboard:
    require_sip_stack()
    sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                     agents={name: free_udp_port() for name in agents}, queues=queues,
                     extra_config=extra)
    return sb.start()


def caller(tmp_path: Path, sb: Switchboard, name: str = "caller", digits: str = "2,1",
           **kw: object) -> Peer:
    extra = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    return peer(tmp_path, name, "caller", free_udp_port(), "--target", sb.uri, "--digits", digits,
                "--dtmf", "info", "--first-digit-after", "0.3", "--digit-gap", "0.4",
                *extra).start()


def test_escalation_by_waiting_rings_level_2_after_the_tier_wait(tmp_path: Path) -> None:
    sb = board_with(tmp_path, """\
  support: {tiers: {1: [anna], 2: [marco]}, tier_wait: 4, ring_timeout: 2.5, retry_delay: 0.5}
  sales: {agents: [anna]}""")
    try:
        # anna's phone is not there (nobody listens on her port): she never answers
        marco = peer(tmp_path, "marco", "agent", sb.agents["marco"], "--talk", "1",
                     "--duration", "40").start()
        c = caller(tmp_path, sb, duration=40)
        assert c.wait_exit(45) == 0
        marco.stop()
        (record,) = sb.records()
        assert record["outcome"] == "completed"
        assert record["agent"] == "marco"
        assert record["wait_seconds"] >= 4.0
        (esc,) = sb.queue_events("escalate")
        assert esc["detail"] == {"kind": "waiting", "from_level": 1, "to_level": 2,
                                 "from_queue": "support", "to_queue": "support"}
        rings = [e["agent"] for e in sb.queue_events("ring")]
        assert rings[0] == "anna"
        assert rings[-1] == "marco"
        kinds = [e["kind"] for e in sb.queue_events()]
        assert kinds[0] == "enter"
        assert "connect" in kinds
        assert kinds[-1] == "complete"
    finally:
        assert sb.stop() == 0, sb.log_tail()


def test_escalation_by_the_agent_feature_code_and_context_travels(tmp_path: Path) -> None:
    sb = board_with(tmp_path, """\
  support: {agents: [anna], escalate_to: level2, wrap_up: 30}
  level2: {agents: [marco]}
  sales: {agents: [anna]}""")
    try:
        anna = peer(tmp_path, "anna", "agent", sb.agents["anna"], "--digits", "*,9",
                    "--first-digit-after", "1", "--digit-gap", "0.2", "--duration", "40").start()
        marco = peer(tmp_path, "marco", "agent", sb.agents["marco"], "--talk", "1.5",
                     "--duration", "40").start()
        c = caller(tmp_path, sb, duration=40)
        assert c.wait_exit(45) == 0
        anna.stop()
        marco.stop()
        (record,) = sb.records()
        assert record["outcome"] == "completed"
        assert record["agent"] == "marco"
        assert record["queue"] == "level2"
        assert record["ivr_path"] == "welcome[2] > main[1] > support"
        (esc,) = sb.queue_events("escalate")
        assert esc["agent"] == "anna"
        assert esc["detail"]["kind"] == "agent"
        assert esc["detail"]["to_queue"] == "level2"
        assert len(anna.events("answered")) == 1
        assert len(marco.events("answered")) == 1
        sb.wait_for_log("agent anna escalates the call")
        agents = {e["agent"] for e in sb.queue_events("connect")}
        assert agents == {"anna", "marco"}
    finally:
        assert sb.stop() == 0, sb.log_tail()


def test_agent_who_does_not_answer_is_skipped_then_paused(tmp_path: Path) -> None:
    sb = board_with(tmp_path, """\
  support: {agents: [anna, marco], strategy: top_down, ring_timeout: 5, retry_delay: 0.5}
  sales: {agents: [anna]}""", extra="")
    try:
        anna = peer(tmp_path, "anna", "agent", sb.agents["anna"], "--reject", "486",
                    "--duration", "60").start()
        marco = peer(tmp_path, "marco", "agent", sb.agents["marco"], "--talk", "0.5",
                     "--duration", "60").start()
        for i in range(4):
            c = caller(tmp_path, sb, name=f"caller{i}", duration=30)
            assert c.wait_exit(35) == 0
        anna.stop()
        marco.stop()
        records = sb.records()
        assert [r["agent"] for r in records] == ["marco"] * 4
        misses = sb.queue_events("ring_no_answer")
        assert [m["agent"] for m in misses] == ["anna"] * 3   # default max_no_answer: 3
        (pause,) = sb.queue_events("pause")
        assert pause["agent"] == "anna"
        assert pause["detail"]["reason"] == "no answer"
        assert len(anna.events("incoming")) == 3               # never offered after the pause
    finally:
        assert sb.stop() == 0, sb.log_tail()


def test_agent_states_from_phone_feature_codes_and_cli_survive_a_restart(tmp_path: Path) -> None:
    sb = board_with(tmp_path, """\
  support: {agents: [anna, marco], ring_timeout: 5}
  sales: {agents: [marco]}""")
    try:
        # anna logs out by dialling *42 from her phone (her URI's user and address)
        phone = peer(tmp_path, "anna-phone", "caller", sb.agents["anna"], "--user", "anna",
                     "--target", f"sip:*42@127.0.0.1:{sb.sip_port}", "--duration", "15").start()
        assert phone.wait_exit(20) == 0
        sb.wait_for_log("agent anna: logout from phone 127.0.0.1")
        # marco is paused with the command line
        out = subprocess.run([sys.executable, "-m", "ivr.cli", "agent", "pause", "marco",
                              "--reason", "lunch", "--config", str(sb.workdir / "ivr.yaml")],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert "agent marco: paused (lunch)" in out.stdout
        sb.wait_for_log("agent marco: pause (lunch) from ivr agent")
        assert sb.metric("ivr_agents", {"state": "paused"}) == 1.0
        assert sb.metric("ivr_agents", {"state": "logged_out"}) == 1.0
        assert sb.stop() == 0
        sb.start()
        sb.wait_for_log("agent marco restored as paused (lunch)")
        sb.wait_for_log("agent anna restored as logged_out")
        sb.wait_for_metric("ivr_agents", {"state": "logged_out"}, value=1.0)
        kinds = [(e["kind"], e["agent"]) for e in sb.queue_events()]
        assert ("logout", "anna") in kinds
        assert ("pause", "marco") in kinds
    finally:
        assert sb.stop() == 0, sb.log_tail()


def test_callback_keeps_the_place_and_calls_the_caller_back_when_an_agent_is_free(
        tmp_path: Path) -> None:
    require_sip_stack()
    customer_port = free_udp_port()
    sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(), agents={"anna": free_udp_port()},
                     flow=ROOT / "tests" / "flows_e2e" / "callback.yaml",
                     queues="  support: {agents: [anna]}",
                     extra_config="dial_out:\n  - {pattern: '^3[0-9]{8,9}$', uri: "
                                  f"'sip:{{number}}@127.0.0.1:{customer_port}', "
                                  "callbacks: true}\n")
    sb.start()
    try:
        cli = [sys.executable, "-m", "ivr.cli", "agent"]
        config = ["--config", str(sb.workdir / "ivr.yaml")]
        subprocess.run([*cli, "pause", "anna", *config], cwd=ROOT, check=True, timeout=30,
                       capture_output=True)
        sb.wait_for_log("agent anna: pause")
        c = peer(tmp_path, "3331234567", "caller", free_udp_port(), "--target", sb.uri,
                 "--digits", "2", "--dtmf", "info", "--first-digit-after", "4",
                 "--duration", "30").start()
        assert c.wait_exit(35) == 0              # the switchboard hangs up after the promise
        sb.wait_for_log("caller asks to be called back")
        phone = peer(tmp_path, "customer", "agent", customer_port, "--user", "3331234567",
                     "--duration", "40").start()
        anna = peer(tmp_path, "anna", "agent", sb.agents["anna"], "--talk", "1.5",
                    "--duration", "40").start()
        subprocess.run([*cli, "unpause", "anna", *config], cwd=ROOT, check=True, timeout=30,
                       capture_output=True)
        sb.wait_for_log("callback ", timeout=20)
        sb.wait_for_log("ended: completed (agent hung up)", timeout=20)
        phone.stop()
        anna.stop()
        first, back = sb.records()
        assert first["outcome"] == "callback_requested"
        assert first["end_reason"] == \
            "call back 3331234567"
        assert back["call_id"] == first["call_id"] + "-cb"
        assert back["outcome"] == "completed"
        assert back["agent"] == "anna"
        assert back["caller"] == "3331234567"
        assert back["queue"] == "support"
        assert back["talk_seconds"] > 0.5
        assert len(phone.events("answered")) == 1
        assert len(anna.events("answered")) == 1
        kinds = [e["kind"] for e in sb.queue_events()]
        assert kinds[:4] == ["pause", "enter", "callback", "unpause"]
        assert kinds[-3:] == ["ring", "connect", "complete"]
    finally:
        assert sb.stop() == 0, sb.log_tail()

"""Drain on SIGTERM, end to end: the stop systemd sends (and an upgrade's restart) lets calls in
progress finish while new ones are refused.

Five callers are connected to five agents when the switchboard gets SIGTERM with
``drain_seconds: 10``: a new INVITE is answered 503, the agents hang up a few seconds later as
they would have anyway, the five records are ``completed`` (not ``interrupted``) and the process
exits 0 as soon as the last call ended, well inside the window.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import (
    Peer,
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_sip_stack,
    wait_until,
)

pytestmark = pytest.mark.e2e

FLOW = """\
flow: drain-e2e
languages: [en]
start: agents
nodes:
  agents: {type: queue, queue: support}
"""
AGENTS = ("anna", "bruno", "carla", "dario", "elena")
TALK_S = 7.0
"""How long each agent talks before hanging up: long enough for the 503 to come while the
calls are up, short enough for them to end well inside the 10 s window."""


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Switchboard, list[Peer]]]:
    require_sip_stack()
    flow = tmp_path / "drain.yaml"
    flow.write_text(FLOW)
    board = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                        agents={name: free_udp_port() for name in AGENTS}, flow=flow,
                        extra_config="drain_seconds: 10\n")
    peers: list[Peer] = []
    try:
        board.start()
        yield board, peers
    finally:
        for p in peers:
            p.stop()
        board.stop()


def test_sigterm_refuses_new_calls_and_lets_those_up_finish(
        running: tuple[Switchboard, list[Peer]], tmp_path: Path) -> None:
    board, peers = running
    agents = [peer(tmp_path, name, "agent", board.agents[name], "--answer-after", "0.3",
                   "--talk", str(TALK_S), "--duration", "60").start() for name in AGENTS]
    peers += agents
    callers = peer(tmp_path, "5550001", "caller", free_udp_port(), "--target", board.uri,
                   "--calls", "5", "--call-gap", "0.1", "--duration", "60").start()
    peers.append(callers)
    for agent in agents:
        agent.wait_event("answered", timeout=30)
    board.wait_for_metric("ivr_agents", {"state": "on_call"}, value=5)
    assert board.proc is not None
    sent = time.monotonic()
    board.proc.send_signal(signal.SIGTERM)
    board.wait_for_log("SIGTERM: new calls get 503", timeout=5)

    late = peer(tmp_path, "5550009", "caller", free_udp_port(), "--target", board.uri,
                "--duration", "15").start()
    peers.append(late)
    (refused,) = late.wait_event("disconnected", timeout=10)
    assert refused["code"] == 503, late.output()
    assert callers.events("disconnected") == [], "a call ended before its agent hung up"

    code = board.proc.wait(timeout=15)
    stopped_s = time.monotonic() - sent
    assert code == 0, board.log_tail()
    assert "Traceback" not in board.log_path.read_text(), board.log_tail()
    # within the window: the drain ended because the calls did, not because the time was up
    assert "drain over: every call ended" in board.log_path.read_text(), board.log_tail()
    wait_until(lambda: len(callers.events("disconnected")) == 5 or None,
               "the five callers' calls ended", timeout=10, details=callers.output)
    records = [r for r in board.records() if r["caller"] == "5550001"]
    assert len(records) == 5, records
    assert {r["outcome"] for r in records} == {"completed"}, records
    print(f"drain: SIGTERM with 5 calls up -> exit 0 after {stopped_s:.1f} s "
          f"(agents hang up {TALK_S:g} s after answering; window 10 s)")

"""The console's view as the loop publishes it: when, what shape, at what cost."""

from __future__ import annotations

import itertools
import json
import textwrap
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from ivr.config import load_config
from ivr.driver import messages as m
from ivr.driver.core import Core
from ivr.driver.service import VIEW_MAX_EVERY, VIEW_MIN_EVERY, Inbox, Loop
from ivr.flow import load_flow
from ivr.metrics import Metrics
from tests.driver_bench import Bench, files_for

AGENTS = 30
CALLS = 100

FLOW = """
flow: big
languages: [en]
start: support
nodes:
  support: {type: queue, queue: support}
"""


def big_core(tmp_path: Path) -> Core:
    agents = "\n".join(f"  a{i}: {{uri: \"sip:a{i}@192.0.2.{10 + i}\"}}" for i in range(AGENTS))
    members = ", ".join(f"a{i}" for i in range(AGENTS))
    (tmp_path / "ivr.yaml").write_text(
        "sip: {listen: 127.0.0.1:5999}\ntrunks: {gw: {sources: [192.0.2.1], lines: 200}}\n"
        f"agents:\n{agents}\nqueues:\n  support:\n    agents: [{members}]\n"
        "    script: \"Hello {caller}, ticket {ticket}\"\n"
        "flow: flow.yaml\nstore: calls.db\n")
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(FLOW))
    config = load_config(tmp_path / "ivr.yaml")
    flow = load_flow(tmp_path / "flow.yaml", known_queues=config.queues)
    ids = itertools.count(1)
    return Core(config, flow, files_for=files_for, music_on_hold="moh.wav", now=0.0,
                wall_offset=1_800_000_000.0, new_id=lambda: f"c{next(ids)}")


class FakeSip:
    def poll(self, wait_ms: int) -> list[Any]:
        return []


class FakeExecutor:
    def run(self, effects: list[m.Effect]) -> list[m.Message]:
        return []


def test_the_loop_publishes_after_changes_at_most_every_50_ms_and_at_least_every_second(
        tmp_path: Path) -> None:
    now = [0.0]
    views: list[dict[str, Any]] = []
    inbox = Inbox()
    loop = Loop(big_core(tmp_path), FakeExecutor(), FakeSip(),  # type: ignore[arg-type]
                inbox, Metrics(CollectorRegistry()), clock=lambda: now[0],
                on_view=views.append)

    def step(at: float) -> int:
        now[0] = at
        loop.step(0)
        return len(views)

    assert step(0.0) == 1  # the first turn
    assert step(0.01) == 1  # nothing happened
    inbox.post(m.AgentCommand("a1", "pause", "lunch", "console a1@127.0.0.1"))
    assert step(0.02) == 1  # something happened, but the last view is too recent
    assert step(0.02 + VIEW_MIN_EVERY / 2) == 1
    assert step(VIEW_MIN_EVERY + 0.001) == 2  # now it goes out
    assert views[-1]["agents"]["a1"]["state"] == "paused"
    assert step(0.5) == 2  # nothing since
    assert step(VIEW_MIN_EVERY + VIEW_MAX_EVERY + 0.002) == 3  # the refresh: waits move on
    for at in (1.2, 1.3, 1.4):
        inbox.post(m.AgentCommand("a1", "unpause", source="console a1@127.0.0.1"))
        step(at)
    assert len(views) == 6
    assert views[-1]["seq"] > views[0]["seq"]


def test_a_view_that_fails_to_build_does_not_stop_the_loop(tmp_path: Path) -> None:
    def broken(view: dict[str, Any]) -> None:
        raise RuntimeError("console gone")

    registry = CollectorRegistry()
    loop = Loop(big_core(tmp_path), FakeExecutor(), FakeSip(),  # type: ignore[arg-type]
                Inbox(), Metrics(registry), clock=lambda: 0.0, on_view=broken)
    loop.step(0)
    loop.step(0)
    # once: not again before anything changes
    assert registry.get_sample_value("ivr_loop_errors_total") == 1


def test_a_loop_without_a_console_builds_no_view(tmp_path: Path) -> None:
    core = big_core(tmp_path)
    loop = Loop(core, FakeExecutor(), FakeSip(), Inbox(),  # type: ignore[arg-type]
                Metrics(CollectorRegistry()), clock=lambda: 0.0)
    loop.step(0)
    assert loop.on_view is None
    assert core.console_view(0.0)["seq"] == 1  # the loop built none before


def test_the_view_of_100_calls_and_30_agents_is_plain_json_and_cheap(tmp_path: Path) -> None:
    bench = Bench(big_core(tmp_path))
    legs = [bench.incoming(caller=f"33312{i:05d}") for i in range(CALLS)]
    for agent, leg in list(bench.ringing().items())[:20]:
        bench.answer(leg)
        assert agent
    bench.tick(5.0)
    view = bench.core.console_view(bench.now)
    assert len(view["calls"]) == CALLS
    assert len(view["agents"]) == AGENTS
    phases = [c["phase"] for c in view["calls"].values()]
    assert (phases.count("connected"), phases.count("queued")) == (20, 80)
    assert view["queues"]["support"]["waiting"] == 80
    assert view["queues"]["support"]["agents"] == {"on_call": 20, "ringing": 10}
    assert json.loads(json.dumps(view)) == view
    started = time.perf_counter()
    for _ in range(20):
        bench.core.console_view(bench.now)
    per_view = (time.perf_counter() - started) / 20
    print(f"console view of {CALLS} calls, {AGENTS} agents: {per_view * 1000:.2f} ms")
    assert per_view < 0.02, f"{per_view * 1000:.1f} ms per view"  # 20 views a second: < 40%
    assert len(legs) == CALLS
    assert bench.core.problems() == []

"""How fast the pure core moves: call sessions through the demo flow, and routing decisions.

Prints medians over repeated runs; no target is asserted here (see the README for figures).
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.engine import CallSession, DigitPressed, PlaybackFinished, PlayPrompt  # noqa: E402
from ivr.flow import load_flow  # noqa: E402
from routing import QueueSpec, Router  # noqa: E402


def one_call(flow, n: int) -> int:
    events = 0
    session = CallSession(flow, f"c{n}")
    actions = session.start(0.0)
    now = 0.0
    for digit in ("2", "9", "1"):
        plays = [a for a in actions if isinstance(a, PlayPrompt)]
        now += 1.0
        session.handle(PlaybackFinished(plays[-1].play_id), now)
        actions = session.handle(DigitPressed(digit), now + 0.5)
        events += 2
    plays = [a for a in actions if isinstance(a, PlayPrompt)]
    session.handle(PlaybackFinished(plays[-1].play_id), now + 3)
    assert session.state == "queued"
    return events + 1


def bench_sessions(flow, calls: int = 5000) -> float:
    start = time.perf_counter()
    events = sum(one_call(flow, i) for i in range(calls))
    return (time.perf_counter() - start) / events


def bench_routing(waiting: int = 1000, agents: int = 200) -> float:
    names = tuple(f"a{i}" for i in range(agents))
    router = Router([QueueSpec("q", names, ring_timeout=15)], now=0.0)
    for i in range(waiting + agents):
        router.join(f"c{i}", "q", now=float(i) * 0.001)
    # every agent is ringing one caller; 1,000 more wait. Time answer+finish cycles.
    start = time.perf_counter()
    cycles = 200
    for i in range(cycles):
        agent = f"a{i % agents}"
        call = router.agents[agent].call_id
        if call is None:
            continue
        router.answered(call, agent, 10.0 + i)
        router.finished(call, 11.0 + i)
    return (time.perf_counter() - start) / (cycles * 2)


def main() -> None:
    flow = load_flow(ROOT / "flows" / "demo.yaml")
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}")
    s = statistics.median(bench_sessions(flow) for _ in range(5))
    print(f"call session, demo flow: median {s * 1e6:.1f} us per event")
    r = statistics.median(bench_routing() for _ in range(3))
    print(f"routing, 1,000 waiting callers and 200 agents: median {r * 1e3:.3f} ms per event")
    from routing.simulator import LoadSpec, simulate

    def sim() -> float:
        start = time.perf_counter()
        result = simulate(LoadSpec(agents=8, calls_per_hour=100, handle_time=240, hours=100))
        assert result.calls > 9000
        return (time.perf_counter() - start) * 10_000 / result.calls
    s10k = statistics.median(sim() for _ in range(3))
    print(f"simulator: median {s10k:.2f} s per 10,000 calls (goal: 2 s)")


if __name__ == "__main__":
    main()

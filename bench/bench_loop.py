"""The loop's turn time with 100 calls in the menu while 20 hear variable prompts.

The real loop (:class:`ivr.driver.service.Loop`), core, executor, metrics and a real call store
(SQLite in a temporary folder, its writer thread) with prompts prepared by the real
:class:`PromptLibrary` (espeak-ng and sox, cached under var/bench-prompts). Only the SIP layer is
a stand-in that replays events (keys, prompt ends) and does nothing with commands: pjsua2's own
polling is measured by the load bench, not here. Each turn advances a simulated clock by 20 ms
and is timed with the real clock. Prints p50/p99/max of the turn time in milliseconds; the goal
is p99 under 20 ms.

Then the quiet case, which is most of a switchboard's life: the same 100 calls in the menu with
no key pressed, turns of 10 ms (the loop's poll when nothing is due), and the loop's own CPU
time per second of it (ms per s, i.e. thousandths of a core), pjsua2 aside. `--profile` prints
where the busy turns' time goes (cProfile).
"""

from __future__ import annotations

import cProfile
import platform
import pstats
import random
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from ivr.config import load_config  # noqa: E402
from ivr.driver import messages as m  # noqa: E402
from ivr.driver.core import Core  # noqa: E402
from ivr.driver.executor import Executor  # noqa: E402
from ivr.driver.service import Inbox, Loop  # noqa: E402
from ivr.flow import load_flow  # noqa: E402
from ivr.metrics import Metrics  # noqa: E402
from ivr.prompts import PromptLibrary, PromptRenderer  # noqa: E402
from ivr.sip import events as sip  # noqa: E402
from ivr.store import CallStore  # noqa: E402

CALLS = 100
VARIABLE = 20
TURNS = 3000

FLOW = """
flow: loadbench
languages: [en]
start: menu
nodes:
  menu:
    type: menu
    prompt: {say: "For your account press one. For the queue press two."}
    options: {"1": account, "2": wait}
    timeout: 120
    max_timeouts: 20
    max_invalid: 20
    on_failure: menu
  account:
    type: collect
    prompt: {say: "Your account number, then hash."}
    variable: account
    min_length: 4
    max_length: 12
    terminator: "#"
    confirm: true
    next: menu
    on_failure: menu
  wait:
    type: queue
    queue: support
"""

CONFIG = """
sip: {listen: 127.0.0.1:5999}
trunks: {gw: {sources: [192.0.2.1], lines: 300}}
agents: {anna: {uri: "sip:anna@192.0.2.10"}}
queues:
  support: {agents: [anna], ring_timeout: 10, announce_every: 30}
flow: flow.yaml
store: calls.db
"""


class ReplaySip:
    """Stands for the SIP layer: hands out the events queued for the next poll."""

    def __init__(self) -> None:
        self.next: list[Any] = []
        self.commands = 0
        self._leg = 0

    def poll(self, timeout_ms: int) -> list[Any]:
        out, self.next = self.next, []
        return out

    def _count(self, *_: Any, **__: Any) -> None:
        self.commands += 1

    answer = hangup = stop_playback = start_recording = stop_recording = _count

    def play(self, leg: str, path: Any, token: int, loop: bool = False) -> None:
        self.commands += 1
        if not loop:
            self.next.append(sip.PlaybackEnded(leg, token))  # ends at the next turn

    def dial(self, uri: str) -> str | None:
        self._leg += 1
        return f"O{self._leg}"

    def bridge(self, a: str, b: str) -> bool:
        return True


class NoLookups:
    def submit(self, *_: Any) -> None:
        pass

    def cancel(self, key: str) -> int:
        return 0


def quiet(loop: Loop, clock: list[float], seconds: float = 30.0) -> None:
    """The calls in the menu, no key pressed: the loop's cost per second of switchboard time."""
    calls = len(loop.core.calls)
    n = int(seconds / 0.01)
    spent = 0.0
    for _ in range(n):
        clock[0] += 0.01
        t0 = time.perf_counter()
        loop.step(0)
        spent += time.perf_counter() - t0
    print(f"quiet: {calls} calls in the menu, no keys, {n} turns of 10 ms: loop CPU "
          f"{spent * 1000 / seconds:.2f} ms per s, {spent * 1e6 / n:.1f} us per turn")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    (work / "flow.yaml").write_text(textwrap.dedent(FLOW))
    (work / "ivr.yaml").write_text(textwrap.dedent(CONFIG))
    config = load_config(work / "ivr.yaml")
    flow = load_flow(work / "flow.yaml", known_queues=config.queues)
    prompts = PromptLibrary(ROOT / "var" / "bench-prompts", {"en": "en-us"})
    started = time.perf_counter()
    prompts.prepare(flow)
    print(f"prompts prepared in {time.perf_counter() - started:.1f} s")
    store = CallStore.open_for_service(work / "calls.db")
    metrics = Metrics(CollectorRegistry(), process=False)
    clock = [1000.0]
    inbox = Inbox()
    replay = ReplaySip()
    core = Core(config, flow, files_for=prompts.files_now, music_on_hold="moh.wav",
                now=clock[0], wall_offset=time.time() - clock[0])
    renderer = PromptRenderer(prompts, post=lambda done: inbox.post(
        m.PromptReady(done.key, done.play_id, done.files, done.error)))
    executor = Executor(replay, store, metrics, NoLookups(), renderer, time.time,
                        clock=lambda: clock[0])
    loop = Loop(core, executor, replay, inbox, metrics, clock=lambda: clock[0])
    rng = random.Random(7)
    for i in range(CALLS):
        replay.next.append(sip.IncomingCall(f"L{i}", "192.0.2.1", "gw", f"33312{i:05d}", "800"))
        replay.next.append(sip.CallConfirmed(f"L{i}"))
    loop.step(0)
    # 20 callers key account numbers (read back digit by digit); the others press invalid keys
    # now and then and hear the menu again
    scripts: dict[str, list[str]] = {}
    for i in range(CALLS):
        if i < VARIABLE:
            scripts[f"L{i}"] = ["1", *list(str(rng.randrange(10 ** 5, 10 ** 9))), "#", "1"]
        else:
            scripts[f"L{i}"] = ["7", "7", "7", "2"] if i % 4 == 0 else ["7"]
    profile = cProfile.Profile() if "--profile" in sys.argv else None
    if profile is not None:
        profile.enable()
    turns: list[float] = []
    for turn in range(TURNS):
        clock[0] += 0.02
        for leg, keys in scripts.items():
            if turn % 25 == hash(leg) % 25:  # each caller presses a key every half second
                replay.next.append(sip.DigitReceived(leg, keys[(turn // 25) % len(keys)],
                                                     "rfc2833"))
        t0 = time.perf_counter()
        loop.step(0)
        turns.append((time.perf_counter() - t0) * 1000)
    if profile is not None:
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    busy_ms = sum(turns) / (TURNS * 0.02)
    turns.sort()
    p50 = statistics.median(turns)
    p99 = turns[int(len(turns) * 0.99)]
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {len(turns)} turns, {CALLS} calls, {VARIABLE} "
          f"hearing read-backs, {replay.commands} SIP commands")
    print(f"loop turn: p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {turns[-1]:.3f} ms "
          f"(goal: p99 < 20 ms); loop CPU {busy_ms:.2f} ms per s")
    quiet(loop, clock)
    unwritten = store.close()
    renderer.close()
    print(f"records unwritten at close: {unwritten}")


if __name__ == "__main__":
    main()

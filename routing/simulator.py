"""A discrete-event simulator of a call centre, on the same routing code as the switchboard.

Callers arrive as a Poisson process, talk for exponentially distributed handle times and, with
a patience given, hang up after an exponentially distributed wait. Agents answer at once when
offered a call. Time is simulated: 8 hours of traffic take a fraction of a second.

    >>> result = simulate(LoadSpec(agents=6, calls_per_hour=120, handle_time=240, hours=8))
    >>> round(result.service_level, 2)
"""

from __future__ import annotations

import heapq
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from routing.acd import LeaveQueue, MovedQueue, QueueSpec, RingAgent, Router, RoutingAction

QUEUE = "queue"


@dataclass(frozen=True)
class LoadSpec:
    agents: int
    calls_per_hour: float
    handle_time: float
    """Mean seconds of talk (exponential)."""
    hours: float = 8.0
    patience: float | None = None
    """Mean seconds a caller waits before hanging up (exponential); None: nobody abandons."""
    threshold: float = 20.0
    """Service level threshold in seconds."""
    seed: int = 1
    strategy: str = "longest_idle"
    max_wait: float = 0.0
    """With an overflow queue of the same size: escalation by exhaustion after this wait."""


@dataclass
class LoadResult:
    calls: int
    answered: int
    abandoned: int
    service_level: float
    """Answered within the threshold / answered (Asterisk's SL)."""
    service_level_all: float
    """Answered within the threshold / (answered + abandoned) (Asterisk's SL2 counts abandons
    within the threshold as good; this is the stricter share of all callers)."""
    asa_seconds: float
    abandonment_rate: float
    occupancy: float
    calls_per_hour: float
    """Arrival rate as it came out of the random draw."""
    handle_time: float
    """Mean handle time as it came out of the random draw."""
    escalations: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def simulate(spec: LoadSpec) -> LoadResult:
    rng = random.Random(spec.seed)
    names = tuple(f"agent{i + 1}" for i in range(spec.agents))
    queues = [QueueSpec(QUEUE, names, strategy=spec.strategy, ring_timeout=30, retry_delay=0,
                        max_wait=spec.max_wait, overflow="overflow" if spec.max_wait else None)]
    if spec.max_wait:
        queues.append(QueueSpec("overflow", tuple(f"l2-{n}" for n in names),
                                strategy=spec.strategy, ring_timeout=30, retry_delay=0))
    router = Router(queues, now=0.0, seed=spec.seed)
    end_of_arrivals = spec.hours * 3600.0
    events: list[tuple[float, int, str, str]] = []
    seq = 0

    def push(t: float, kind: str, call: str) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, call))

    rate = spec.calls_per_hour / 3600.0
    t = rng.expovariate(rate) if rate > 0 else end_of_arrivals
    n = 0
    while t < end_of_arrivals:
        push(t, "arrive", f"c{n}")
        n += 1
        t += rng.expovariate(rate)

    joined: dict[str, float] = {}
    waits: list[float] = []
    abandoned = 0
    talk = 0.0

    def run(actions: list[RoutingAction], now: float) -> None:
        nonlocal talk
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, RingAgent):
                waits.append(now - joined[action.call_id])
                pending += router.answered(action.call_id, action.agent, now)
                handle = rng.expovariate(1.0 / spec.handle_time)
                talk += handle
                push(now + handle, "finish", action.call_id)
            elif isinstance(action, LeaveQueue):
                joined.pop(action.call_id, None)
            elif isinstance(action, MovedQueue):
                pass

    now = 0.0
    while events or router.waiting:
        deadline = router.next_deadline()
        if events and (deadline is None or events[0][0] <= deadline):
            now, _, kind, call = heapq.heappop(events)
            if kind == "arrive":
                joined[call] = now
                run(router.join(call, QUEUE, now), now)
                if spec.patience and call in router.waiting:
                    push(now + rng.expovariate(1.0 / spec.patience), "give_up", call)
            elif kind == "give_up":
                if call in router.waiting:
                    abandoned += 1
                    run(router.leave(call, now), now)
            elif kind == "finish":
                run(router.finished(call, now), now)
        elif deadline is not None:
            now = deadline
            run(router.on_timer(now), now)
        else:
            break
    answered = len(waits)
    within = sum(1 for w in waits if w <= spec.threshold)
    escalations: dict[str, int] = {}
    for event in router.log:
        if event.kind == "escalate":
            key = f"{event.queue}:{event.detail.get('kind')}"
            escalations[key] = escalations.get(key, 0) + 1
    staffed_seconds = max(now, end_of_arrivals) * spec.agents * (2 if spec.max_wait else 1)
    return LoadResult(
        calls=n, answered=answered, abandoned=abandoned,
        service_level=within / answered if answered else 1.0,
        service_level_all=within / (answered + abandoned) if answered + abandoned else 1.0,
        asa_seconds=sum(waits) / answered if answered else 0.0,
        abandonment_rate=abandoned / n if n else 0.0,
        occupancy=talk / staffed_seconds if staffed_seconds else 0.0,
        calls_per_hour=n / spec.hours if spec.hours else 0.0,
        handle_time=talk / answered if answered else 0.0,
        escalations=escalations)

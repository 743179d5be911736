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
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from routing.acd import (
    LeaveQueue,
    QueueEvent,
    QueueSpec,
    RingAgent,
    Router,
    RoutingAction,
)

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


def _arrivals(rng: random.Random, rate: float, end: float) -> list[float]:
    """Arrival times of a Poisson process of *rate* calls a second, up to *end*."""
    times: list[float] = []
    t = rng.expovariate(rate) if rate > 0 else end
    while t < end:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def _escalations(log: Iterable[QueueEvent]) -> dict[str, int]:
    """Escalations counted by ``queue:kind``."""
    counts: dict[str, int] = {}
    for event in log:
        if event.kind == "escalate":
            key = f"{event.queue}:{event.detail.get('kind')}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def simulate(spec: LoadSpec) -> LoadResult:
    return _Simulation(spec).run()


class _Simulation:
    """One run: a heap of timed events (arrivals, give-ups, ends of talk) and the router's own
    deadlines, taken in time order."""

    def __init__(self, spec: LoadSpec):
        self.spec = spec
        self.rng = random.Random(spec.seed)
        names = tuple(f"agent{i + 1}" for i in range(spec.agents))
        queues = [QueueSpec(QUEUE, names, strategy=spec.strategy, ring_timeout=30,
                            retry_delay=0, max_wait=spec.max_wait,
                            overflow="overflow" if spec.max_wait else None)]
        if spec.max_wait:
            queues.append(QueueSpec("overflow", tuple(f"l2-{n}" for n in names),
                                    strategy=spec.strategy, ring_timeout=30, retry_delay=0))
        self.router = Router(queues, now=0.0, seed=spec.seed)
        self.end_of_arrivals = spec.hours * 3600.0
        self.events: list[tuple[float, int, str, str]] = []
        self.seq = 0
        self.joined: dict[str, float] = {}
        self.waits: list[float] = []
        self.abandoned = 0
        self.talk = 0.0
        self.now = 0.0

    def push(self, t: float, kind: str, call: str) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, call))

    def run(self) -> LoadResult:
        arrivals = _arrivals(self.rng, self.spec.calls_per_hour / 3600.0, self.end_of_arrivals)
        for i, t in enumerate(arrivals):
            self.push(t, "arrive", f"c{i}")
        while self.events or self.router.waiting:
            deadline = self.router.next_deadline()
            if self.events and (deadline is None or self.events[0][0] <= deadline):
                self.now, _, kind, call = heapq.heappop(self.events)
                self.on_event(kind, call)
            elif deadline is not None:
                self.now = deadline
                self.apply(self.router.on_timer(self.now))
            else:
                break
        return self.result(len(arrivals))

    def on_event(self, kind: str, call: str) -> None:
        now, router = self.now, self.router
        if kind == "arrive":
            self.joined[call] = now
            self.apply(router.join(call, QUEUE, now))
            if self.spec.patience and call in router.waiting:
                self.push(now + self.rng.expovariate(1.0 / self.spec.patience), "give_up", call)
        elif kind == "give_up":
            if call in router.waiting:
                self.abandoned += 1
                self.apply(router.leave(call, now))
        elif kind == "finish":
            self.apply(router.finished(call, now))

    def apply(self, actions: list[RoutingAction]) -> None:
        """Agents answer at once; a caller moved to another queue needs nothing here."""
        now = self.now
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, RingAgent):
                self.waits.append(now - self.joined[action.call_id])
                pending += self.router.answered(action.call_id, action.agent, now)
                handle = self.rng.expovariate(1.0 / self.spec.handle_time)
                self.talk += handle
                self.push(now + handle, "finish", action.call_id)
            elif isinstance(action, LeaveQueue):
                self.joined.pop(action.call_id, None)

    def result(self, n: int) -> LoadResult:
        spec, waits, abandoned, talk = self.spec, self.waits, self.abandoned, self.talk
        answered = len(waits)
        within = sum(1 for w in waits if w <= spec.threshold)
        staffed_seconds = (max(self.now, self.end_of_arrivals) * spec.agents
                           * (2 if spec.max_wait else 1))
        return LoadResult(
            calls=n, answered=answered, abandoned=abandoned,
            service_level=within / answered if answered else 1.0,
            service_level_all=within / (answered + abandoned) if answered + abandoned else 1.0,
            asa_seconds=sum(waits) / answered if answered else 0.0,
            abandonment_rate=abandoned / n if n else 0.0,
            occupancy=talk / staffed_seconds if staffed_seconds else 0.0,
            calls_per_hour=n / spec.hours if spec.hours else 0.0,
            handle_time=talk / answered if answered else 0.0,
            escalations=_escalations(self.router.log))

"""Automatic call distribution: callers wait in queues, agents are offered calls one at a time.

Pure logic: it deals in caller ids, agent ids, queue names and time passed in by the caller of
each method. It returns actions for the driver to carry out and never reads a clock.

    >>> acd = Router([QueueSpec("support", ("anna", "marco"))], now=0.0)
    >>> acd.join("call-1", "support", now=1.0)
    [RingAgent(call_id='call-1', agent='anna', queue='support')]
    >>> acd.on_timer(now=16.0)        # anna did not answer within ring_timeout
    [StopRinging(call_id='call-1', agent='anna', reason='no_answer'), RingAgent(... 'marco' ...)]

Strategy in this slice: longest idle first (the agent whose last call ended longest ago), then
the next agent on no answer or busy; when every agent has been tried, a new round starts after
``retry_delay``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger("routing")


@dataclass(frozen=True)
class QueueSpec:
    name: str
    agents: tuple[str, ...]
    """Agent ids that serve this queue, in the order used to break ties."""
    ring_timeout: float = 15.0
    """Seconds an agent's phone rings before the next agent is tried."""
    retry_delay: float = 2.0
    """Pause before a new round once every agent of the queue was tried."""
    wrap_up: float = 0.0
    """Seconds an agent stays unavailable after a call of this queue."""


# -- actions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RingAgent:
    call_id: str
    agent: str
    queue: str


@dataclass(frozen=True)
class StopRinging:
    call_id: str
    agent: str
    reason: str
    """'no_answer' (ring timeout) or 'caller_left'."""


RoutingAction = RingAgent | StopRinging

AGENT_STATES = ("logged_out", "available", "ringing", "on_call", "wrap_up")


@dataclass
class AgentState:
    agent: str
    state: str = "available"
    idle_since: float = 0.0
    call_id: str | None = None
    ring_deadline: float | None = None
    wrap_up_until: float | None = None
    answered: int = 0
    missed: int = 0


@dataclass
class Caller:
    call_id: str
    queue: str
    joined: float
    priority: int = 0
    tried: set[str] = field(default_factory=set)
    ringing: str | None = None
    next_try: float = 0.0
    agent: str | None = None
    answered_at: float | None = None
    retry_pending: bool = False
    """Every agent was tried; a new round starts at ``next_try``."""


class Router:
    """The queues and agents of one switchboard."""

    def __init__(self, queues: Iterable[QueueSpec], now: float):
        self.queues = {q.name: q for q in queues}
        self.agents: dict[str, AgentState] = {}
        for q in self.queues.values():
            for agent in q.agents:
                self.agents.setdefault(agent, AgentState(agent, idle_since=now))
        self.waiting: dict[str, Caller] = {}
        """Callers not yet connected, by call id."""
        self.connected: dict[str, Caller] = {}

    # -- caller side -----------------------------------------------------------------------
    def join(self, call_id: str, queue: str, now: float, priority: int = 0) -> list[RoutingAction]:
        if queue not in self.queues:
            raise KeyError(f"unknown queue {queue!r}")
        self.waiting[call_id] = Caller(call_id, queue, now, priority, next_try=now)
        log.info("call %s joined queue %s (position %d)", call_id, queue,
                 self.position(call_id))
        return self._dispatch(now)

    def leave(self, call_id: str, now: float) -> list[RoutingAction]:
        """The caller hung up or was taken out of the queue before being connected."""
        caller = self.waiting.pop(call_id, None)
        if caller is None:
            return []
        actions: list[RoutingAction] = []
        if caller.ringing:
            agent = self.agents[caller.ringing]
            self._set(agent, "available")
            actions.append(StopRinging(call_id, agent.agent, "caller_left"))
        return actions + self._dispatch(now)

    def position(self, call_id: str) -> int:
        """1-based place of a waiting caller in its queue."""
        caller = self.waiting[call_id]
        ahead = [c for c in self._ordered(caller.queue) if c.call_id != call_id]
        mine = (-caller.priority, caller.joined)
        return 1 + sum(1 for c in ahead if (-c.priority, c.joined) <= mine)

    # -- agent side ------------------------------------------------------------------------
    def answered(self, call_id: str, agent_id: str, now: float) -> list[RoutingAction]:
        """The ringing agent picked up: the caller leaves the queue and is connected."""
        caller = self.waiting.get(call_id)
        agent = self.agents[agent_id]
        if caller is None or caller.ringing != agent_id:
            return []
        del self.waiting[call_id]
        caller.ringing = None
        caller.agent = agent_id
        caller.answered_at = now
        self.connected[call_id] = caller
        agent.ring_deadline = None
        agent.answered += 1
        self._set(agent, "on_call")
        return self._dispatch(now)

    def ring_failed(self, call_id: str, agent_id: str, now: float,
                    reason: str = "busy") -> list[RoutingAction]:
        """The agent's phone refused or could not be reached: try the next agent."""
        caller = self.waiting.get(call_id)
        agent = self.agents[agent_id]
        if caller is None or caller.ringing != agent_id:
            return []
        log.info("agent %s did not take call %s (%s)", agent_id, call_id, reason)
        caller.ringing = None
        agent.missed += 1
        agent.ring_deadline = None
        self._set(agent, "available")
        return self._dispatch(now)

    def finished(self, call_id: str, now: float) -> list[RoutingAction]:
        """A connected call ended: its agent goes to wrap-up (or straight back to available)."""
        caller = self.connected.pop(call_id, None)
        if caller is None or caller.agent is None:
            return []
        agent = self.agents[caller.agent]
        wrap = self.queues[caller.queue].wrap_up
        agent.call_id = None
        if wrap > 0:
            agent.wrap_up_until = now + wrap
            self._set(agent, "wrap_up")
        else:
            agent.idle_since = now
            self._set(agent, "available")
        return self._dispatch(now)

    def set_logged_in(self, agent_id: str, logged_in: bool, now: float) -> list[RoutingAction]:
        agent = self.agents[agent_id]
        if logged_in and agent.state == "logged_out":
            agent.idle_since = now
            self._set(agent, "available")
        elif not logged_in and agent.state == "available":
            self._set(agent, "logged_out")
        return self._dispatch(now)

    # -- time ------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        times = [a.ring_deadline for a in self.agents.values() if a.ring_deadline is not None]
        times += [a.wrap_up_until for a in self.agents.values() if a.wrap_up_until is not None]
        times += [c.next_try for c in self.waiting.values() if c.retry_pending]
        return min(times) if times else None

    def on_timer(self, now: float) -> list[RoutingAction]:
        actions: list[RoutingAction] = []
        for agent in self.agents.values():
            if agent.state == "ringing" and agent.ring_deadline is not None \
                    and now >= agent.ring_deadline:
                call_id = agent.call_id
                assert call_id is not None
                agent.missed += 1
                agent.ring_deadline = None
                caller = self.waiting[call_id]
                caller.ringing = None
                self._set(agent, "available")
                log.info("agent %s did not answer call %s in time", agent.agent, call_id)
                actions.append(StopRinging(call_id, agent.agent, "no_answer"))
            elif agent.state == "wrap_up" and agent.wrap_up_until is not None \
                    and now >= agent.wrap_up_until:
                agent.wrap_up_until = None
                agent.idle_since = now
                self._set(agent, "available")
        return actions + self._dispatch(now)

    # -- internals -------------------------------------------------------------------------
    def _set(self, agent: AgentState, state: str) -> None:
        """The one place an agent changes state."""
        if agent.state != state:
            log.debug("agent %s: %s -> %s", agent.agent, agent.state, state)
            agent.state = state
        if state in ("available", "logged_out"):
            agent.call_id = None
            agent.ring_deadline = None

    def _ordered(self, queue: str) -> list[Caller]:
        callers = [c for c in self.waiting.values() if c.queue == queue]
        return sorted(callers, key=lambda c: (-c.priority, c.joined))

    def _dispatch(self, now: float) -> list[RoutingAction]:
        actions: list[RoutingAction] = []
        for spec in self.queues.values():
            free = [self.agents[a] for a in spec.agents if self.agents[a].state == "available"]
            if not free:
                continue
            for caller in self._ordered(spec.name):
                if not free:
                    break
                if caller.ringing is not None or caller.next_try > now:
                    continue
                caller.retry_pending = False
                agent = self._pick(spec, caller, free, now)
                if agent is None:
                    continue
                free.remove(agent)
                caller.ringing = agent.agent
                caller.tried.add(agent.agent)
                agent.call_id = caller.call_id
                agent.ring_deadline = now + spec.ring_timeout
                self._set(agent, "ringing")
                actions.append(RingAgent(caller.call_id, agent.agent, spec.name))
        return actions

    def _pick(self, spec: QueueSpec, caller: Caller, free: list[AgentState],
              now: float) -> AgentState | None:
        untried = [a for a in free if a.agent not in caller.tried]
        if not untried:
            # every free agent had its chance: start a new round after a pause
            caller.tried.clear()
            caller.next_try = now + spec.retry_delay
            caller.retry_pending = True
            return None
        # free keeps the queue's configured order, and min() keeps the first of equals
        return min(untried, key=lambda a: a.idle_since)

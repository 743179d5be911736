"""Automatic call distribution: callers wait in queues, agents are offered calls one at a time.

Pure logic: it deals in caller ids, agent ids, queue names and time passed in by the caller of
each method. It returns actions for the driver to carry out, keeps a log of queue events, and
never reads a clock.

    >>> acd = Router([QueueSpec("support", ("anna", "marco"))], now=0.0)
    >>> acd.join("call-1", "support", now=1.0)
    [RingAgent(call_id='call-1', agent='anna', queue='support')]
    >>> acd.on_timer(now=16.0)        # anna did not answer within ring_timeout
    [StopRinging(call_id='call-1', agent='anna', reason='no_answer'), RingAgent(... 'marco' ...)]

Escalation, three kinds, each logged as an ``escalate`` queue event with its kind and levels:

- *waiting*: tiers inside a queue. Level-1 members are offered calls first; after ``tier_wait``
  seconds level 2 is added, then level 3 (``tier_wait_multiply``: level n waits n times as long).
  A level with no agent logged in is skipped. The caller keeps their place.
- *exhaustion*: after ``max_wait``, or when no agent of the queue is logged in, the caller moves
  to the ``overflow`` queue; their original join time gives them their place there.
- *agent*: the agent of a connected call escalates it (:meth:`Router.escalate`); the caller waits
  at the next level (``escalate_to`` queue, or the next tier) with priority.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("routing")

STRATEGIES = ("longest_idle", "ring_all", "round_robin", "fewest_calls", "top_down", "random")
AGENT_STATES = ("logged_out", "available", "ringing", "on_call", "wrap_up", "paused")
PRIORITY_BOOST = 100
"""Added to an escalated caller's priority, so they are served before new callers."""


@dataclass(frozen=True)
class Member:
    agent: str
    level: int = 1
    """Support level (tier): 1 first, then 2, then 3."""


@dataclass(frozen=True)
class QueueSpec:
    name: str
    agents: tuple[str, ...] = ()
    """Level-1 members, in the order used to break ties (shorthand for ``members``)."""
    members: tuple[Member, ...] = ()
    strategy: str = "longest_idle"
    ring_timeout: float = 15.0
    """Seconds an agent's phone rings before the next agent is tried."""
    retry_delay: float = 2.0
    """Pause before a new round once every free agent was tried."""
    wrap_up: float = 0.0
    """Seconds an agent stays unavailable after a call of this queue."""
    max_callers: int = 0
    """Callers waiting at most (0: no limit); one more is refused."""
    join_empty: bool = True
    """Accept callers when no agent is logged in (else refuse them, or overflow)."""
    leave_empty_after: float = 0.0
    """Seconds a caller may wait with no agent logged in before leaving (0: no limit)."""
    max_wait: float = 0.0
    """Seconds a caller may wait (0: no limit); then overflow, or leave to the flow."""
    overflow: str | None = None
    """Queue a caller moves to on max_wait or when no agent is logged in."""
    tier_wait: float = 0.0
    """Seconds before the next level of members is added (0: all levels at once)."""
    tier_wait_multiply: bool = False
    skill: str | None = None
    """Skill an agent needs (at ``skill_level``) to be offered this queue's calls."""
    skill_level: int = 1
    skill_fallback_after: float = 0.0
    """Seconds after which anyone of the queue is offered the call (0: never)."""
    escalate_to: str | None = None
    """Queue for calls the agent escalates (default: the next level of this queue)."""
    announce_every: float = 0.0
    """Seconds between position / expected-wait announcements (0: none)."""
    disposition_hold: float = 0.0
    """When set, a disposition is required: the agent's wrap-up lasts until they key one
    (:meth:`Router.disposed`), at least ``wrap_up``, at most this many seconds."""
    script: str = ""
    """Text shown to the agent offered a call of this queue (not used for routing)."""

    def all_members(self) -> tuple[Member, ...]:
        return self._all_members

    @functools.cached_property
    def _all_members(self) -> tuple[Member, ...]:
        return tuple(Member(a) for a in self.agents) + self.members


@dataclass(frozen=True)
class AgentSpec:
    name: str
    skills: Mapping[str, int] = field(default_factory=dict)
    max_no_answer: int = 3
    """Unanswered offers in a row after which the agent is paused with reason 'no answer'."""
    logged_in: bool = True
    """State at start (agents with fixed phones need no login)."""


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
    """'no_answer' (ring timeout), 'caller_left', 'answered_elsewhere' or 'moved'."""


@dataclass(frozen=True)
class Announce:
    call_id: str
    position: int
    expected_wait: float
    """Seconds, estimated from recent handle times and the agents logged in."""


@dataclass(frozen=True)
class LeaveQueue:
    call_id: str
    reason: str
    """'full', 'no_agents' or 'timeout': the flow takes the caller on from here."""


@dataclass(frozen=True)
class MovedQueue:
    call_id: str
    from_queue: str
    to_queue: str
    kind: str
    """'exhaustion' or 'agent'."""


RoutingAction = RingAgent | StopRinging | Announce | LeaveQueue | MovedQueue


@dataclass(frozen=True)
class QueueEvent:
    """One line of the queue log."""

    at: float
    kind: str
    """enter, ring, ring_no_answer, connect, complete, abandon, leave, escalate, login,
    logout, pause, unpause, wrap_up_end."""
    queue: str = ""
    call_id: str = ""
    agent: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class AgentState:
    agent: str
    state: str = "available"
    idle_since: float = 0.0
    call_id: str | None = None
    ring_deadline: float | None = None
    wrap_up_until: float | None = None
    wrap_up_since: float | None = None
    wrap_up_min: float | None = None
    """Wrap-up may end early at a disposition, but not before this (a required one)."""
    pause_reason: str = ""
    answered: int = 0
    missed: int = 0
    missed_in_row: int = 0
    skills: Mapping[str, int] = field(default_factory=dict)
    max_no_answer: int = 3
    reachable: bool = True
    """False while the agent's phone is not registered: never offered calls then."""


@dataclass
class Caller:
    call_id: str
    queue: str
    joined: float
    """When the caller joined this queue."""
    first_joined: float
    """When the caller first joined any queue: their place after an escalation."""
    priority: int = 0
    tried: set[str] = field(default_factory=set)
    ringing: set[str] = field(default_factory=set)
    next_try: float = 0.0
    retry_pending: bool = False
    agent: str | None = None
    answered_at: float | None = None
    min_level: int = 1
    level: int = 1
    """Highest level offered so far."""
    previous_agents: list[str] = field(default_factory=list)
    next_announce: float | None = None
    empty_since: float | None = None
    fallback_done: bool = False
    callback: bool = False
    """The caller hung up asking to be called back: their place is kept, and the agent who
    is offered the call is put through to them by a call out."""


class Router:
    """The queues and agents of one switchboard."""

    def __init__(self, queues: Iterable[QueueSpec], now: float,
                 agents: Iterable[AgentSpec] = (), seed: int = 0):
        self.queues = {q.name: q for q in queues}
        specs = {a.name: a for a in agents}
        self.agents: dict[str, AgentState] = {}
        for q in self.queues.values():
            for m in q.all_members():
                spec = specs.get(m.agent, AgentSpec(m.agent))
                self.agents.setdefault(m.agent, AgentState(
                    m.agent, "available" if spec.logged_in else "logged_out", now,
                    skills=spec.skills, max_no_answer=spec.max_no_answer))
        for name, spec in specs.items():
            self.agents.setdefault(name, AgentState(
                name, "available" if spec.logged_in else "logged_out", now,
                skills=spec.skills, max_no_answer=spec.max_no_answer))
        self._levels = {q.name: {m.agent: m.level for m in q.all_members()}
                        for q in self.queues.values()}
        self.waiting: dict[str, Caller] = {}
        """Callers not yet connected, by call id."""
        self.connected: dict[str, Caller] = {}
        self.log: list[QueueEvent] = []
        self._rr_last: dict[str, str] = {}
        self._rng = random.Random(seed)
        self._handle_times: dict[str, float] = {}
        """Moving average of handle time per queue, for expected-wait estimates."""

    # -- caller side -----------------------------------------------------------------------
    def join(self, call_id: str, queue: str, now: float, priority: int = 0,
             level: int = 1) -> list[RoutingAction]:
        """A caller enters *queue*; *level*: the lowest support level offered the call (a
        repeat caller's ticket is owned there)."""
        spec = self._spec(queue)
        waiting_here = sum(1 for c in self.waiting.values() if c.queue == queue)
        if spec.max_callers and waiting_here >= spec.max_callers:
            self._log(now, "leave", queue, call_id, reason="full")
            return [LeaveQueue(call_id, "full")]
        caller = Caller(call_id, queue, now, now, priority, next_try=now)
        caller.min_level = caller.level = max(1, level)
        if not self._logged_in_members(spec):
            if spec.overflow:
                self.waiting[call_id] = caller
                self._log(now, "enter", queue, call_id, position=self.position(call_id))
                return self._move(caller, spec.overflow, now, "exhaustion") + self._dispatch(now)
            if not spec.join_empty:
                self._log(now, "leave", queue, call_id, reason="no_agents")
                return [LeaveQueue(call_id, "no_agents")]
        self.waiting[call_id] = caller
        if spec.announce_every:
            caller.next_announce = now + spec.announce_every
        self._log(now, "enter", queue, call_id, position=self.position(call_id))
        log.info("call %s joined queue %s (position %d)", call_id, queue,
                 self.position(call_id))
        return self._dispatch(now)

    def leave(self, call_id: str, now: float, reason: str = "") -> list[RoutingAction]:
        """The caller hung up (no *reason*: an abandon) or chose to leave before an agent."""
        caller = self.waiting.get(call_id)
        if caller is None:
            return []
        position = self._position_of(caller)
        del self.waiting[call_id]
        if reason:
            self._log(now, "leave", caller.queue, call_id, reason=reason,
                      wait=round(now - caller.joined, 3), position=position)
        else:
            self._log(now, "abandon", caller.queue, call_id, wait=round(now - caller.joined, 3),
                      position=position)
        actions = self._stop_all_rings(caller, "caller_left")
        return actions + self._dispatch(now)

    def request_callback(self, call_id: str, now: float, ready: bool) -> list[RoutingAction]:
        """Keep a waiting caller's place for a callback. With ``ready`` False the call is not
        offered yet (the caller is still on the line hearing the confirmation)."""
        caller = self.waiting.get(call_id)
        if caller is None:
            return []
        actions = self._stop_all_rings(caller, "moved") if not ready else []
        if not caller.callback:
            self._log(now, "callback", caller.queue, call_id, position=self._position_of(caller))
        caller.callback = True
        caller.next_try = now if ready else math.inf
        caller.next_announce = None
        return actions + (self._dispatch(now) if ready else [])

    def position(self, call_id: str) -> int:
        """1-based place of a waiting caller in its queue."""
        return self._position_of(self.waiting[call_id])

    def expected_wait(self, call_id: str) -> float:
        caller = self.waiting[call_id]
        spec = self.queues[caller.queue]
        handle = self._handle_times.get(caller.queue, 180.0)
        staff = max(1, len(self._logged_in_members(spec)))
        return round(self._position_of(caller) * handle / staff, 1)

    # -- agent side ------------------------------------------------------------------------
    def answered(self, call_id: str, agent_id: str, now: float) -> list[RoutingAction]:
        """The ringing agent picked up: the caller leaves the queue and is connected."""
        caller = self.waiting.get(call_id)
        agent = self.agents[agent_id]
        if caller is None or agent_id not in caller.ringing:
            return []
        del self.waiting[call_id]
        caller.ringing.discard(agent_id)
        actions = self._stop_all_rings(caller, "answered_elsewhere")
        caller.agent = agent_id
        caller.answered_at = now
        caller.previous_agents.append(agent_id)
        self.connected[call_id] = caller
        agent.ring_deadline = None
        agent.answered += 1
        agent.missed_in_row = 0
        agent.call_id = call_id
        self._set(agent, "on_call", now)
        self._log(now, "connect", caller.queue, call_id, agent_id,
                  wait=round(now - caller.joined, 3), level=self._level_of(caller.queue, agent_id))
        return actions + self._dispatch(now)

    def ring_failed(self, call_id: str, agent_id: str, now: float,
                    reason: str = "busy") -> list[RoutingAction]:
        """The agent's phone refused or could not be reached: try the next agent."""
        caller = self.waiting.get(call_id)
        if caller is None or agent_id not in caller.ringing:
            return []
        log.info("agent %s did not take call %s (%s)", agent_id, call_id, reason)
        caller.ringing.discard(agent_id)
        self._missed(self.agents[agent_id], caller, now, reason)
        return self._dispatch(now)

    def finished(self, call_id: str, now: float) -> list[RoutingAction]:
        """A connected call ended: its agent goes to wrap-up (or straight back to available)."""
        caller = self.connected.pop(call_id, None)
        if caller is None or caller.agent is None:
            return []
        agent = self.agents[caller.agent]
        handle = now - (caller.answered_at or now)
        self._learn_handle_time(caller.queue, handle)
        self._log(now, "complete", caller.queue, call_id, agent.agent,
                  talk=round(handle, 3))
        self._after_call(agent, caller.queue, now)
        return self._dispatch(now)

    def escalate(self, call_id: str, now: float) -> list[RoutingAction]:
        """The agent of a connected call sends it to the next level; the agent wraps up."""
        caller = self.connected.pop(call_id, None)
        if caller is None or caller.agent is None:
            return []
        agent = self.agents[caller.agent]
        spec = self.queues[caller.queue]
        from_level = self._level_of(caller.queue, agent.agent)
        self._learn_handle_time(caller.queue, now - (caller.answered_at or now))
        self._after_call(agent, caller.queue, now)
        caller.agent = None
        caller.answered_at = None
        caller.priority += PRIORITY_BOOST
        caller.tried = set(caller.previous_agents)
        caller.ringing = set()
        caller.next_try = now
        self.waiting[call_id] = caller
        if spec.escalate_to:
            target = spec.escalate_to
            self._log(now, "escalate", caller.queue, call_id, agent.agent, kind="agent",
                      from_level=from_level, to_level=from_level + 1, from_queue=caller.queue,
                      to_queue=target)
            return self._move(caller, target, now, "agent", logged=True) + self._dispatch(now)
        caller.min_level = from_level + 1
        caller.level = max(caller.level, caller.min_level)
        self._log(now, "escalate", caller.queue, call_id, agent.agent, kind="agent",
                  from_level=from_level, to_level=caller.min_level, from_queue=caller.queue,
                  to_queue=caller.queue)
        return self._dispatch(now)

    def disposed(self, agent_id: str, now: float) -> list[RoutingAction]:
        """The agent keyed a disposition: a wrap-up held for one ends (after ``wrap_up``)."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.state != "wrap_up" or agent.wrap_up_min is None:
            return []
        agent.wrap_up_until = max(now, agent.wrap_up_min)
        agent.wrap_up_min = None
        return self.on_timer(now)

    def end_wrap_up(self, agent_id: str, now: float) -> list[RoutingAction]:
        """The agent says they are done with their last call (saved it): wrap-up ends now,
        a required disposition's hold included."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.state != "wrap_up":
            return []
        agent.wrap_up_until = now
        agent.wrap_up_min = None
        return self.on_timer(now)

    def after_outbound(self, agent_id: str, queue: str, now: float) -> list[RoutingAction]:
        """An agent held for a campaign's call out (paused 'outbound') is done with it:
        wrap-up as after a call of *queue* (or available straight away)."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.state != "paused" or agent.pause_reason != "outbound":
            return []
        agent.pause_reason = ""
        self._log(now, "unpause", agent=agent_id)
        if queue in self.queues:
            self._after_call(agent, queue, now)
        else:
            agent.idle_since = now
            self._set(agent, "available", now)
        return self._dispatch(now)

    def login(self, agent_id: str, now: float) -> list[RoutingAction]:
        agent = self.agents[agent_id]
        if agent.state == "logged_out":
            agent.idle_since = now
            self._set(agent, "available", now)
            self._log(now, "login", agent=agent_id)
        return self._dispatch(now)

    def logout(self, agent_id: str, now: float) -> list[RoutingAction]:
        agent = self.agents[agent_id]
        if agent.state in ("available", "paused", "wrap_up"):
            agent.wrap_up_until = None
            self._set(agent, "logged_out", now)
            self._log(now, "logout", agent=agent_id)
        return self._dispatch(now)

    def pause(self, agent_id: str, now: float, reason: str = "break") -> list[RoutingAction]:
        agent = self.agents[agent_id]
        if agent.state in ("available", "wrap_up"):
            agent.wrap_up_until = None
            agent.pause_reason = reason
            self._set(agent, "paused", now)
            self._log(now, "pause", agent=agent_id, reason=reason)
        return []

    def unpause(self, agent_id: str, now: float) -> list[RoutingAction]:
        agent = self.agents[agent_id]
        if agent.state == "paused":
            agent.pause_reason = ""
            agent.missed_in_row = 0
            agent.idle_since = now
            self._set(agent, "available", now)
            self._log(now, "unpause", agent=agent_id)
        return self._dispatch(now)

    def set_reachable(self, agent_id: str, reachable: bool, now: float) -> list[RoutingAction]:
        """Whether the agent's phone can be rung (registered with the SIP edge)."""
        agent = self.agents[agent_id]
        if agent.reachable != reachable:
            agent.reachable = reachable
            self._log(now, "register" if reachable else "unregister", agent=agent_id)
        return self._dispatch(now) if reachable else []

    def set_logged_in(self, agent_id: str, logged_in: bool, now: float) -> list[RoutingAction]:
        return self.login(agent_id, now) if logged_in else self.logout(agent_id, now)

    def drain_log(self) -> list[QueueEvent]:
        events, self.log = self.log, []
        return events

    # -- time ------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        times: list[float] = []
        for a in self.agents.values():
            if a.ring_deadline is not None:
                times.append(a.ring_deadline)
            if a.wrap_up_until is not None:
                times.append(a.wrap_up_until)
        for c in self.waiting.values():
            spec = self.queues[c.queue]
            if c.retry_pending:
                times.append(c.next_try)
            if c.next_announce is not None:
                times.append(c.next_announce)
            if spec.max_wait:
                times.append(c.joined + spec.max_wait)
            if spec.leave_empty_after and c.empty_since is not None:
                times.append(c.empty_since + spec.leave_empty_after)
            nxt = self._next_level_time(spec, c)
            if nxt is not None:
                times.append(nxt)
            if spec.skill and spec.skill_fallback_after and not c.fallback_done:
                times.append(c.joined + spec.skill_fallback_after)
        return min(times) if times else None

    def on_timer(self, now: float) -> list[RoutingAction]:
        actions: list[RoutingAction] = []
        for agent in self.agents.values():
            if agent.state == "ringing" and agent.ring_deadline is not None \
                    and now >= agent.ring_deadline:
                call_id = agent.call_id
                assert call_id is not None
                caller = self.waiting[call_id]
                caller.ringing.discard(agent.agent)
                log.info("agent %s did not answer call %s in time", agent.agent, call_id)
                actions.append(StopRinging(call_id, agent.agent, "no_answer"))
                self._missed(agent, caller, now, "no_answer")
            elif agent.state == "wrap_up" and agent.wrap_up_until is not None \
                    and now >= agent.wrap_up_until:
                agent.wrap_up_until = None
                agent.idle_since = now
                self._set(agent, "available", now)
                since = agent.wrap_up_since if agent.wrap_up_since is not None else now
                self._log(now, "wrap_up_end", agent=agent.agent, wrap=round(now - since, 3))
        for caller in list(self.waiting.values()):
            if caller.call_id not in self.waiting:
                continue
            spec = self.queues[caller.queue]
            if spec.max_wait and now >= caller.joined + spec.max_wait:
                actions += self._exhausted(caller, now, "timeout")
                continue
            if not self._logged_in_members(spec):
                if caller.empty_since is None:
                    caller.empty_since = now
                if spec.leave_empty_after and now >= caller.empty_since + spec.leave_empty_after:
                    actions += self._exhausted(caller, now, "no_agents")
                    continue
            else:
                caller.empty_since = None
            self._update_level(spec, caller, now)
            if spec.skill and spec.skill_fallback_after and \
                    now >= caller.joined + spec.skill_fallback_after:
                caller.fallback_done = True
            if caller.next_announce is not None and now >= caller.next_announce:
                caller.next_announce = now + spec.announce_every
                actions.append(Announce(caller.call_id, self._position_of(caller),
                                        self.expected_wait(caller.call_id)))
        return actions + self._dispatch(now)

    # -- internals -------------------------------------------------------------------------
    def _spec(self, queue: str) -> QueueSpec:
        if queue not in self.queues:
            raise KeyError(f"unknown queue {queue!r}")
        return self.queues[queue]

    def _log(self, at: float, event: str, queue: str = "", call_id: str = "", agent: str = "",
             **detail: Any) -> None:
        self.log.append(QueueEvent(at, event, queue, call_id, agent, detail))

    def _set(self, agent: AgentState, state: str, now: float) -> None:
        """The one place an agent changes state."""
        if agent.state != state:
            log.debug("agent %s: %s -> %s", agent.agent, agent.state, state)
            agent.state = state
        if state in ("available", "logged_out", "paused"):
            agent.call_id = None
            agent.ring_deadline = None

    def _level_of(self, queue: str, agent: str) -> int:
        return self._levels.get(queue, {}).get(agent, 1)

    def _logged_in_members(self, spec: QueueSpec) -> list[AgentState]:
        return [self.agents[m.agent] for m in spec.all_members()
                if self.agents[m.agent].state != "logged_out"]

    def _position_of(self, caller: Caller) -> int:
        mine = (-caller.priority, caller.first_joined)
        return 1 + sum(1 for c in self.waiting.values()
                       if c.queue == caller.queue and c.call_id != caller.call_id
                       and (-c.priority, c.first_joined) <= mine)

    def _ordered(self, queue: str) -> list[Caller]:
        callers = [c for c in self.waiting.values() if c.queue == queue]
        return sorted(callers, key=lambda c: (-c.priority, c.first_joined))

    def _learn_handle_time(self, queue: str, seconds: float) -> None:
        old = self._handle_times.get(queue)
        self._handle_times[queue] = seconds if old is None else 0.8 * old + 0.2 * seconds

    def _after_call(self, agent: AgentState, queue: str, now: float) -> None:
        spec = self.queues[queue]
        wrap = max(spec.wrap_up, spec.disposition_hold)
        agent.call_id = None
        agent.wrap_up_min = now + spec.wrap_up if spec.disposition_hold else None
        if wrap > 0:
            agent.wrap_up_until = now + wrap
            agent.wrap_up_since = now
            self._set(agent, "wrap_up", now)
        else:
            agent.idle_since = now
            self._set(agent, "available", now)

    def _missed(self, agent: AgentState, caller: Caller, now: float, reason: str) -> None:
        agent.missed += 1
        agent.missed_in_row += 1
        agent.ring_deadline = None
        self._log(now, "ring_no_answer", caller.queue, caller.call_id, agent.agent,
                  reason=reason)
        if agent.max_no_answer and agent.missed_in_row >= agent.max_no_answer:
            agent.pause_reason = "no answer"
            self._set(agent, "paused", now)
            self._log(now, "pause", agent=agent.agent, reason="no answer")
            log.warning("agent %s paused after %d unanswered calls", agent.agent,
                        agent.missed_in_row)
        else:
            self._set(agent, "available", now)

    def _stop_all_rings(self, caller: Caller, reason: str) -> list[RoutingAction]:
        actions: list[RoutingAction] = []
        for agent_id in sorted(caller.ringing):
            agent = self.agents[agent_id]
            self._set(agent, "available", 0.0)
            actions.append(StopRinging(caller.call_id, agent_id, reason))
        caller.ringing.clear()
        return actions

    def _exhausted(self, caller: Caller, now: float, reason: str) -> list[RoutingAction]:
        spec = self.queues[caller.queue]
        if spec.overflow:
            return self._move(caller, spec.overflow, now, "exhaustion")
        actions = self._stop_all_rings(caller, "moved")
        del self.waiting[caller.call_id]
        self._log(now, "leave", caller.queue, caller.call_id, reason=reason,
                  wait=round(now - caller.joined, 3))
        return [*actions, LeaveQueue(caller.call_id, reason)]

    def _move(self, caller: Caller, target: str, now: float, kind: str,
              logged: bool = False) -> list[RoutingAction]:
        source = caller.queue
        self._spec(target)
        actions = self._stop_all_rings(caller, "moved")
        if not logged:
            self._log(now, "escalate", source, caller.call_id, kind=kind,
                      from_level=caller.level, to_level=caller.level + 1, from_queue=source,
                      to_queue=target)
        caller.queue = target
        caller.joined = now
        caller.min_level = 1
        caller.level = 1
        caller.tried = set(caller.previous_agents)
        caller.retry_pending = False
        caller.next_try = now
        caller.empty_since = None
        spec = self.queues[target]
        caller.next_announce = now + spec.announce_every if spec.announce_every else None
        log.info("call %s moved from queue %s to %s (%s)", caller.call_id, source, target, kind)
        return [*actions, MovedQueue(caller.call_id, source, target, kind)]

    def _allowed_levels(self, spec: QueueSpec, caller: Caller, now: float) -> set[int]:
        """Levels of members this caller may be offered now (skipping levels nobody staffs)."""
        staffed = self._staffed_levels(spec, caller)
        if not staffed:
            return set()
        if not spec.tier_wait:
            return set(staffed)
        count, threshold = 1, 0.0
        while count < len(staffed):
            threshold += spec.tier_wait * (count if spec.tier_wait_multiply else 1)
            if now < caller.joined + threshold:  # the same sum as the deadline: no rounding gap
                break
            count += 1
        return set(staffed[:count])

    def _staffed_levels(self, spec: QueueSpec, caller: Caller) -> list[int]:
        return sorted({self._level_of(spec.name, a.agent) for a in self._logged_in_members(spec)
                       if self._level_of(spec.name, a.agent) >= caller.min_level})

    def _next_level_time(self, spec: QueueSpec, caller: Caller) -> float | None:
        """When the next level above the caller's current one opens to them."""
        if not spec.tier_wait:
            return None
        staffed = self._staffed_levels(spec, caller)
        threshold = 0.0
        for count in range(1, len(staffed)):
            threshold += spec.tier_wait * (count if spec.tier_wait_multiply else 1)
            if staffed[count] > caller.level:
                return caller.joined + threshold
        return None

    def _update_level(self, spec: QueueSpec, caller: Caller, now: float) -> set[int]:
        """The levels open to the caller now; logs an escalation by waiting when one opens."""
        levels = self._allowed_levels(spec, caller, now)
        if levels and max(levels) > caller.level:
            top = max(levels)
            self._log(now, "escalate", spec.name, caller.call_id, kind="waiting",
                      from_level=caller.level, to_level=top, from_queue=spec.name,
                      to_queue=spec.name)
            log.info("call %s: level %d agents added after %.0f s in queue %s",
                     caller.call_id, top, now - caller.joined, spec.name)
            caller.level = top
        return levels

    def _eligible(self, spec: QueueSpec, caller: Caller, now: float) -> list[AgentState]:
        levels = self._update_level(spec, caller, now)
        fallback = spec.skill_fallback_after and now >= caller.joined + spec.skill_fallback_after
        out = []
        for m in spec.all_members():
            agent = self.agents[m.agent]
            if agent.state != "available" or not agent.reachable or m.level not in levels:
                continue
            if spec.skill and not fallback and agent.skills.get(spec.skill, 0) < spec.skill_level:
                continue
            out.append(agent)
        return out

    def _dispatch(self, now: float) -> list[RoutingAction]:
        actions: list[RoutingAction] = []
        for spec in self.queues.values():
            callers = self._ordered(spec.name)
            if not callers:
                continue
            staffed = bool(self._logged_in_members(spec))
            free = sum(1 for m in spec.all_members()
                       if self.agents[m.agent].state == "available"
                       and self.agents[m.agent].reachable)
            for caller in callers:
                if not staffed and caller.empty_since is None:
                    caller.empty_since = now
                elif staffed:
                    caller.empty_since = None
                if caller.ringing or caller.next_try > now:
                    continue
                caller.retry_pending = False  # a due retry is consumed even with nobody free
                if free <= 0:
                    continue
                chosen = self._pick(spec, caller, now)
                free -= len(chosen)
                for agent in chosen:
                    caller.ringing.add(agent.agent)
                    caller.tried.add(agent.agent)
                    agent.call_id = caller.call_id
                    agent.ring_deadline = now + spec.ring_timeout
                    self._set(agent, "ringing", now)
                    self._log(now, "ring", spec.name, caller.call_id, agent.agent)
                    actions.append(RingAgent(caller.call_id, agent.agent, spec.name))
        return actions

    def _pick(self, spec: QueueSpec, caller: Caller, now: float) -> list[AgentState]:
        free = self._eligible(spec, caller, now)
        if not free:
            return []
        untried = [a for a in free if a.agent not in caller.tried]
        if not untried:
            # every free agent had its chance: start a new round after a pause
            caller.tried = set()
            caller.next_try = now + spec.retry_delay
            caller.retry_pending = True
            return []
        strategy = spec.strategy
        if strategy == "ring_all":
            return untried
        if strategy == "top_down":
            return [untried[0]]
        if strategy == "random":
            return [self._rng.choice(untried)]
        if strategy == "fewest_calls":
            return [min(untried, key=lambda a: (a.answered, a.idle_since))]
        if strategy == "round_robin":
            order = [m.agent for m in spec.all_members()]
            last = self._rr_last.get(spec.name)
            start = order.index(last) + 1 if last in order else 0
            rotated = order[start:] + order[:start]
            names = {a.agent: a for a in untried}
            agent = next(names[n] for n in rotated if n in names)
            self._rr_last[spec.name] = agent.agent
            return [agent]
        # longest idle: the agent whose last call ended longest ago (ties: configured order)
        return [min(untried, key=lambda a: a.idle_since)]

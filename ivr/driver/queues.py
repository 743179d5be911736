"""Queues and agents' legs: every router action carried out, agents rung, answered, bridged.

Every action the router returns goes through :meth:`Queues._routing`, whatever branch
produced it; an agent's leg is bridged to the caller before the router hears the answer, so a
bridge that fails leaves the caller waiting and the router trying the next agent.
"""

import logging
from typing import Any

from ivr.driver import messages as m
from ivr.driver.recordings import Recordings
from ivr.driver.state import (
    MOH_TOKEN,
    NOTICE_TOKEN,
    RENDER_DEADLINE,
    CallbackPhase,
    CallerCall,
    CallPhase,
    Leg,
    LegPhase,
    LegRole,
)
from ivr.engine import (
    Enqueue,
    PlayPrompt,
    QueueLeft,
)
from ivr.engine.session import resolve
from ivr.notices import NOTICES
from ivr.sip import events as sip
from ivr.store import QueueEventRow
from routing import RingAgent, StopRinging
from routing.acd import Announce, LeaveQueue, MovedQueue, RoutingAction

log = logging.getLogger("ivr.driver")


class Queues(Recordings):
    """Transitions of queued callers and agents' legs (a queue's calls may be recorded)."""

    # -- queues --------------------------------------------------------------------------------
    def _enqueue(self, call: CallerCall, action: Enqueue, now: float) -> None:
        self._to(call, CallPhase.QUEUED, f"queue {action.queue}")
        call.record.queue = action.queue
        call.record.queued_at = self.wall(now)
        call.record.ivr_path = call.session.path_text()
        self._save(call.record)
        self._emit(m.Play(call.leg, (self.music_on_hold,), MOH_TOKEN, loop=True))
        self._routing(self.router.join(call.call_id, action.queue, now, action.priority,
                                       self._ticket_level(call, action.queue)), now)

    def _notice(self, call: CallerCall, pieces: tuple[Any, ...]) -> None:
        """A message to a waiting caller; the hold music comes back after it."""
        files = self.files_for(pieces)
        if files is None:
            call.awaiting_render = NOTICE_TOKEN
            self._emit(m.RenderPrompt(call.call_id, NOTICE_TOKEN, pieces, RENDER_DEADLINE))
            return
        self._emit(m.Play(call.leg, files, NOTICE_TOKEN))

    def _routing(self, actions: list[RoutingAction], now: float) -> None:
        """Carry out every action the router returned, and those they lead to."""
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, RingAgent):
                pending += self._ring(action, now)
                continue
            cb = self.callbacks.get(action.call_id)
            if cb is not None and action.call_id not in self.calls:
                self._callback_routing(cb, action, now)
                continue
            call = self.calls.get(action.call_id)
            if call is None:
                log.debug("routing action %s for a call no longer here", action)
                continue
            if isinstance(action, StopRinging):
                ref = call.ringing.pop(action.agent, None)
                if ref is not None:
                    self._cancel(ref, action.reason)
            elif isinstance(action, Announce):
                notice = call.session.announcement(action.position, action.expected_wait)
                for play in notice:
                    if isinstance(play, PlayPrompt):
                        self._notice(call, play.pieces)
            elif isinstance(action, LeaveQueue):
                log.info("call %s: leaves queue %s unserved (%s)", call.call_id,
                         call.record.queue, action.reason)
                self._to(call, CallPhase.IVR, f"left queue: {action.reason}")
                self._emit(m.StopPlay(call.leg))
                self._session(call, call.session.handle(QueueLeft(action.reason), now), now)
            elif isinstance(action, MovedQueue):
                log.info("call %s: moved from queue %s to %s (escalation by %s)", call.call_id,
                         action.from_queue, action.to_queue, action.kind)
                call.record.queue = action.to_queue
                self._save(call.record)

    def _ring(self, action: RingAgent, now: float) -> list[RoutingAction]:
        agent = self.config.agents[action.agent]
        ref = self._ref()
        self.legs[ref] = Leg(ref, LegRole.AGENT, action.call_id, agent.name)
        cb = self.callbacks.get(action.call_id)
        if cb is not None and action.call_id not in self.calls:
            log.info("callback %s: ringing agent %s", cb.record.call_id, agent.name)
            cb.ringing[agent.name] = ref
        else:
            call = self.calls[action.call_id]
            log.info("call %s: ringing agent %s (%s)", call.call_id, agent.name, agent.uri)
            call.ringing[agent.name] = ref
        self._emit(m.Dial(ref, agent.uri))
        return []

    def _dialled(self, msg: m.Dialled, now: float) -> None:
        leg = self.legs.get(msg.ref)
        if leg is None:
            if msg.leg is not None:
                self._emit(m.HangupLeg(msg.leg))
            return
        if msg.leg is None:
            self._outgoing_ended(leg, 0, "cannot dial", now)
            return
        leg.sip = msg.leg
        self.by_sip[msg.leg] = leg.ref
        if leg.phase is LegPhase.CANCELLED:
            self._emit(m.HangupLeg(msg.leg))
            return
        self._leg_to(leg, LegPhase.RINGING, "dialled")

    def _leg_answered(self, sip_leg: str, now: float) -> None:
        leg = self._leg_of(sip_leg)
        if leg is None or not leg.live:
            self._emit(m.HangupLeg(sip_leg))
            return
        if leg.role is LegRole.AGENT:
            self._agent_answered(leg, now)
        elif leg.role is LegRole.TRANSFER:
            self._transfer_answered(leg, now)
        elif leg.role is LegRole.SUPERVISOR:
            self._supervisor_answered(leg, now)
        else:
            self._customer_answered(leg, now)

    def _agent_answered(self, leg: Leg, now: float) -> None:
        assert leg.sip is not None
        cb = self.callbacks.get(leg.call_id)
        if cb is not None and leg.call_id not in self.calls:
            if cb.ringing.get(leg.agent) != leg.ref:
                self._cancel(leg.ref, "not wanted")
                return
            self._callback_agent_answered(cb, leg, now)
            return
        call = self.calls.get(leg.call_id)
        if call is None or call.ringing.get(leg.agent) != leg.ref \
                or call.phase is not CallPhase.QUEUED:
            log.info("agent %s answered a call no longer waiting", leg.agent)
            self._cancel(leg.ref, "caller gone")
            return
        call.agent_ref = leg.ref
        self._bridge(leg, call.leg)

    def _bridged(self, msg: m.Bridged, now: float) -> None:
        ref = self.bridging.pop((msg.a, msg.b), None)
        leg = self.legs.get(ref) if ref is not None else None
        if leg is None:
            return
        if leg.role is LegRole.AGENT:
            self._agent_bridged(leg, msg.ok, now)
        elif leg.role is LegRole.TRANSFER:
            self._transfer_bridged(leg, msg.ok, now)
        else:
            self._customer_bridged(leg, msg.ok, now)

    def _agent_bridged(self, leg: Leg, ok: bool, now: float) -> None:
        call = self.calls.get(leg.call_id)
        if call is None or call.agent_ref != leg.ref:
            self._cancel(leg.ref, "caller gone")
            return
        call.ringing.pop(leg.agent, None)
        if not ok:
            log.warning("call %s: agent %s answered but the call cannot be put through; "
                        "the caller keeps waiting", call.call_id, leg.agent)
            call.agent_ref = None
            self._cancel(leg.ref, "cannot connect")
            self._emit(m.Play(call.leg, (self.music_on_hold,), MOH_TOKEN, loop=True))
            self._routing(self.router.ring_failed(call.call_id, leg.agent, now,
                                                  "cannot connect"), now)
            return
        actions = self.router.answered(call.call_id, leg.agent, now)
        if call.call_id not in self.router.connected:
            # the router no longer offered this caller to that agent (a race with a timer)
            call.agent_ref = None
            self._cancel(leg.ref, "offer withdrawn")
            self._routing(actions, now)
            return
        self._leg_to(leg, LegPhase.CONNECTED, "bridged")
        self._to(call, CallPhase.CONNECTED, f"agent {leg.agent}")
        call.agent_keys = ""
        call.record.agent = leg.agent
        call.record.connected_at = self.wall(now)
        waited = call.record.connected_at - (call.record.queued_at or call.record.started_at)
        log.info("call %s: connected to agent %s after %.1f s in queue %s", call.call_id,
                 leg.agent, waited, call.record.queue)
        self._start_call_recording(call, leg)
        self._save(call.record)
        self._routing(actions, now)

    def _agent_key(self, leg: Leg, digit: str, now: float) -> None:
        """A key from a connected agent: the escalation feature code sends the caller on;
        ``*`` and a disposition code records the call's outcome."""
        call = self.calls.get(leg.call_id)
        if call is None or call.agent_ref != leg.ref or call.phase is not CallPhase.CONNECTED:
            return
        code = self.config.feature_codes.escalate
        call.agent_keys = (call.agent_keys + digit)[-max(len(code), 2):]
        if not call.agent_keys.endswith(code):
            self._disposition_keys(call, leg.agent, now)
            return
        self._escalate_call(call, leg, now)

    def _escalate_call(self, call: CallerCall, leg: Leg, now: float) -> None:
        """The connected agent on *leg* sends the caller on to the next level (their code,
        or the console): the agent goes to wrap-up, the caller waits again."""
        log.info("call %s: agent %s escalates the call", call.call_id, leg.agent)
        actions = self.router.escalate(call.call_id, now)
        call.agent_ref = None
        self._cancel(leg.ref, "escalated")  # the agent goes to wrap-up
        self._to(call, CallPhase.QUEUED, "escalated by the agent")
        call.record.connected_at = None  # waits again: connected is set by the next agent
        call.record.agent = None
        self._save(call.record)
        self._notice(call, resolve(NOTICES["escalation"], call.session.language))
        self._routing(actions, now)

    # -- legs ending ---------------------------------------------------------------------------
    def _leg_ended(self, event: sip.LegEnded, now: float) -> None:
        self.feature_legs.discard(event.leg)
        leg = self._leg_of(event.leg)
        if leg is not None:
            self.by_sip.pop(event.leg, None)
            self._outgoing_ended(leg, event.status, event.reason, now)
            return
        call = self._caller_of(event.leg)
        if call is not None:
            self._caller_ended(call, event, now)

    def _outgoing_ended(self, leg: Leg, status: int, reason: str, now: float) -> None:
        was = leg.phase
        self._leg_to(leg, LegPhase.ENDED, f"{status} {reason}".strip())
        self.legs.pop(leg.ref, None)
        for key in [k for k, ref in self.bridging.items() if ref == leg.ref]:
            del self.bridging[key]
        if was is LegPhase.CANCELLED:
            return
        if leg.role is LegRole.AGENT:
            self._agent_leg_ended(leg, was, status, reason, now)
        elif leg.role is LegRole.TRANSFER:
            self._transfer_leg_ended(leg, was, status, reason, now)
        elif leg.role is LegRole.SUPERVISOR:
            self._supervisor_leg_ended(leg, was, status, reason, now)
        else:
            self._customer_leg_ended(leg, was, status, reason, now)

    def _agent_leg_ended(self, leg: Leg, was: LegPhase, status: int, reason: str,
                         now: float) -> None:
        cb = self.callbacks.get(leg.call_id)
        if cb is not None and leg.call_id not in self.calls:
            if cb.agent_ref == leg.ref:
                cb.agent_ref = None
                self._callback_done(cb, "completed" if cb.phase is CallbackPhase.CONNECTED
                                    else "failed", "agent hung up", now)
            elif cb.ringing.get(leg.agent) == leg.ref:
                del cb.ringing[leg.agent]
                self._routing(self.router.ring_failed(cb.call_id, leg.agent, now,
                                                      f"{status} {reason}"), now)
            return
        call = self.calls.get(leg.call_id)
        if call is None:
            return
        if call.agent_ref == leg.ref and call.phase is CallPhase.CONNECTED:
            call.agent_ref = None
            log.info("call %s: agent %s hung up", call.call_id, leg.agent)
            call.agent_hung_up = True
            self._to(call, CallPhase.CLOSING, f"agent {leg.agent} hung up")
            self._routing(self.router.finished(call.call_id, now), now)
            self._emit(m.HangupLeg(call.leg))
        elif call.ringing.get(leg.agent) == leg.ref:
            del call.ringing[leg.agent]
            if call.agent_ref == leg.ref:
                call.agent_ref = None
            self._routing(self.router.ring_failed(call.call_id, leg.agent, now,
                                                  f"{status} {reason}".strip()), now)

    # -- agents --------------------------------------------------------------------------------
    def _registrations(self, names: frozenset[str], now: float) -> None:
        for agent in sorted(self.registering & set(self.router.agents)):
            reachable = agent in names
            if self.router.agents[agent].reachable != reachable:
                log.info("agent %s: phone %s", agent,
                         "registered" if reachable else "no longer registered")
            self._routing(self.router.set_reachable(agent, reachable, now), now)

    def _agent_command(self, cmd: m.AgentCommand, now: float) -> None:
        if cmd.agent not in self.router.agents:
            log.warning("agent command %s for unknown agent '%s' ignored", cmd.command,
                        cmd.agent)
            return
        if cmd.command == "pause":
            actions = self.router.pause(cmd.agent, now, cmd.reason or "break")
        elif cmd.command in ("login", "logout", "unpause"):
            actions = getattr(self.router, cmd.command)(cmd.agent, now)
        else:
            log.warning("unknown agent command %r ignored", cmd.command)
            return
        log.info("agent %s: %s%s%s -> %s", cmd.agent, cmd.command,
                 f" ({cmd.reason})" if cmd.reason else "",
                 f" from {cmd.source}" if cmd.source else "", self.router.agents[cmd.agent].state)
        self._routing(actions, now)

    def _queue_log(self) -> None:
        """The router's queue log goes to the store; agent states that changed are saved."""
        events = self.router.drain_log()
        if not events:
            return
        self._ticket_events(events)
        self._console_events(events)
        rows = tuple(QueueEventRow(self.wall(e.at), e.kind, e.queue, e.call_id, e.agent,
                                   dict(e.detail)) for e in events)
        self._emit(m.SaveQueueEvents(rows))
        for e in events:
            if e.kind in ("login", "logout", "pause", "unpause") and e.agent:
                agent = self.router.agents[e.agent]
                state = "paused" if agent.state == "paused" else \
                    "logged_out" if agent.state == "logged_out" else "available"
                self._emit(m.SaveAgentState(e.agent, state, agent.pause_reason,
                                            self.wall(e.at)))

"""Callbacks: a caller's place kept in the queue; the agent first, then the caller dialled.

The caller's number is the caller ID the gateway presented, which anyone can forge (a premium
or international number called back at our expense), so a callback dials only what a
``dial_out`` rule with ``callbacks: true`` allows (:meth:`ivr.config.Config.callback_target`).
The flow knows it from the call's start: a caller no rule allows (or whose number is withheld)
who presses the callback key keeps waiting and is told why (:class:`~ivr.engine.CallbackRefused`);
nothing is dialled.
"""

import logging

from ivr.driver import messages as m
from ivr.driver.base import CoreBase
from ivr.driver.state import (
    MOH_TOKEN,
    Callback,
    CallbackPhase,
    CallerCall,
    CallPhase,
    Leg,
    LegPhase,
    LegRole,
    dial_failure,
)
from ivr.engine.session import resolve
from ivr.logs import caller as shown
from ivr.notices import CALLBACK_REFUSED_NOTICES
from ivr.store import CallRecord
from routing import StopRinging
from routing.acd import LeaveQueue, MovedQueue, RoutingAction

log = logging.getLogger("ivr.driver")


class Callbacks(CoreBase):
    """Transitions of a callback."""

    # -- callbacks -----------------------------------------------------------------------------
    def _callback_refused(self, call: CallerCall, reason: str) -> None:
        """The flow refused a caller's callback key: they keep their place in the queue and
        hear why, then the hold music again; the IVR path of the record shows it."""
        if reason == "withheld":
            log.info("call %s: callback refused: the caller's number is withheld; the caller "
                     "keeps waiting", call.call_id)
        else:
            log.warning("call %s: callback to %s refused: no dial_out rule with 'callbacks: "
                        "true' allows the number; the caller keeps waiting", call.call_id,
                        shown(call.record.caller, log))
        call.record.ivr_path = call.session.path_text()  # 'support[2 no callback]'
        self._save(call.record)
        notice = CALLBACK_REFUSED_NOTICES.get(reason, CALLBACK_REFUSED_NOTICES["not allowed"])
        self._notice(call, resolve(notice, call.session.language))  # then the hold music

    def _request_callback(self, call: CallerCall, now: float) -> None:
        if self.config.callback_target(call.record.caller) is None:  # the flow asks first
            log.error("call %s: callback asked for a number no dial_out rule allows; the "
                      "caller keeps waiting", call.call_id)
            return
        call.callback_requested = True
        self._to(call, CallPhase.IVR, "callback requested")  # the confirmation, then hang-up
        self._emit(m.StopPlay(call.leg))
        log.info("call %s: caller asks to be called back; place in queue %s kept",
                 call.call_id, call.record.queue)
        self._routing(self.router.request_callback(call.call_id, now, ready=False), now)

    def _start_callback(self, call: CallerCall, now: float) -> None:
        record = CallRecord(call_id=f"{call.call_id}-cb", started_at=self.wall(now),
                            caller=call.record.caller, called=call.record.caller,
                            trunk=call.trunk, source="callback", flow=call.record.flow,
                            flow_version=call.record.flow_version,
                            ivr_path=call.session.path_text(), queue=call.record.queue,
                            queued_at=call.record.queued_at)
        self.callbacks[call.call_id] = Callback(call.call_id, call.record.caller, call.trunk,
                                                record)
        self._save(record)
        self._routing(self.router.request_callback(call.call_id, now, ready=True), now)

    def _callback_routing(self, cb: Callback, action: RoutingAction, now: float) -> None:
        if isinstance(action, StopRinging):
            ref = cb.ringing.pop(action.agent, None)
            if ref is not None:
                self._cancel(ref, action.reason)
        elif isinstance(action, LeaveQueue):
            self._callback_done(cb, "failed", f"callback expired in the queue ({action.reason})",
                                now)
        elif isinstance(action, MovedQueue):
            cb.record.queue = action.to_queue
            self._save(cb.record)

    def _callback_agent_answered(self, cb: Callback, leg: Leg, now: float) -> None:
        assert leg.sip is not None
        actions = self.router.answered(cb.call_id, leg.agent, now)
        cb.ringing.pop(leg.agent, None)
        cb.agent, cb.agent_ref = leg.agent, leg.ref
        cb.record.agent = leg.agent
        self._leg_to(leg, LegPhase.CONNECTED, "answered for a callback")
        uri = self.config.callback_target(cb.number)
        log.info("callback %s: agent %s answered; calling %s back", cb.record.call_id,
                 leg.agent, shown(cb.number, log))
        self._routing(actions, now)
        if uri is None:
            self._callback_done(cb, "failed", "cannot dial the caller back", now)
            return
        ref = self._ref()
        self.legs[ref] = Leg(ref, LegRole.CUSTOMER, cb.call_id)
        cb.customer_ref = ref
        self._cb_to(cb, CallbackPhase.CALLING_BACK, f"agent {leg.agent}")
        self._save(cb.record)
        self._emit(m.Dial(ref, uri))
        self._emit(m.Play(leg.sip, (self.music_on_hold,), MOH_TOKEN, loop=True))

    def _customer_answered(self, leg: Leg, now: float) -> None:
        assert leg.sip is not None
        cb = self.callbacks.get(leg.call_id)
        agent = self.legs.get(cb.agent_ref) if cb is not None and cb.agent_ref else None
        if cb is None or agent is None or agent.sip is None or cb.customer_ref != leg.ref:
            self._cancel(leg.ref, "not wanted")
            return
        self._bridge(leg, agent.sip)

    def _customer_bridged(self, leg: Leg, ok: bool, now: float) -> None:
        cb = self.callbacks.get(leg.call_id)
        if cb is None or cb.customer_ref != leg.ref:
            self._cancel(leg.ref, "not wanted")
            return
        if not ok:
            self._callback_done(cb, "failed", "cannot connect the caller to the agent", now)
            return
        self._leg_to(leg, LegPhase.CONNECTED, "bridged")
        self._cb_to(cb, CallbackPhase.CONNECTED, "caller answered")
        cb.record.answered_at = cb.record.connected_at = self.wall(now)
        self._save(cb.record)
        log.info("callback %s: %s answered, connected to agent %s", cb.record.call_id,
                 shown(cb.number, log), cb.agent)

    def _customer_leg_ended(self, leg: Leg, was: LegPhase, status: int, reason: str,
                            now: float) -> None:
        cb = self.callbacks.get(leg.call_id)
        if cb is None or cb.customer_ref != leg.ref:
            return
        cb.customer_ref = None
        if cb.phase is CallbackPhase.CONNECTED:
            self._callback_done(cb, "completed", "caller hung up", now)
        else:
            self._callback_done(cb, "failed", "called back, no answer "
                                f"({dial_failure(status, reason)})", now)

    def _callback_done(self, cb: Callback, outcome: str, reason: str, now: float) -> None:
        self.callbacks.pop(cb.call_id, None)
        for ref in [*cb.ringing.values(), cb.agent_ref, cb.customer_ref]:
            if ref is not None:
                self._cancel(ref, "callback over")
        cb.ringing.clear()
        if cb.call_id in self.router.connected:
            self._routing(self.router.finished(cb.call_id, now), now)
        elif cb.call_id in self.router.waiting:
            self._routing(self.router.leave(cb.call_id, now, "callback over"), now)
        self._cb_to(cb, CallbackPhase.ENDED, outcome)
        cb.record.finish(self.wall(now), outcome, reason)
        self._save(cb.record)
        self._emit(m.CountCallEnded(cb.trunk, outcome))
        log.info("callback %s to %s ended: %s (%s)", cb.record.call_id, shown(cb.number, log),
                 outcome, reason)

"""Transfers: the destination dialled, bridged, or the caller told why not.

Two kinds start here. A flow's transfer node: its destination is dialled and the flow hears how
it went (:class:`~ivr.engine.TransferFinished`). An agent's transfer, asked by the agent's
phone (REFER, blind or attended) while connected to a caller: the SIP layer asks
:meth:`Transfers.transfer_refusal` inside the REFER's callback and, when it is allowed, answers
the phone 202 and a final NOTIFY 200 and reports :class:`~ivr.sip.events.TransferRequested`;
then the agent's leg ends and the agent goes to wrap-up, and the caller, hearing music on hold,
is moved by the switchboard itself to what ivr.yaml names (never to the Refer-To as written):

- an extension, or a number a ``dial_out`` rule with ``agent_transfers: true`` allows: dialled
  on a transfer leg (with the ``Replaces`` of an attended transfer, for an extension: the
  target's phone swaps the agent's consultation call for the caller's), bridged on answer; the
  record keeps its agent and shows ``transferred_to``. If the target does not answer in time,
  is busy or fails, the caller goes back to the queue they came from, ahead of the callers
  waiting there (as an escalated call);
- a queue: the caller joins it at once, ahead of its waiting callers; the record shows the
  queue and ``transferred_to`` and keeps the transferring agent until the next agent answers.
"""

import logging

from ivr.config import TransferTarget
from ivr.driver import messages as m
from ivr.driver.base import CoreBase
from ivr.driver.state import (
    MOH_TOKEN,
    CallerCall,
    CallPhase,
    Leg,
    LegPhase,
    LegRole,
    dial_failure,
)
from ivr.engine import (
    TransferFinished,
)
from ivr.logs import escape
from ivr.sip import events as sip
from routing.acd import PRIORITY_BOOST, RoutingAction

log = logging.getLogger("ivr.driver")


class Transfers(CoreBase):
    """Transitions of a caller being transferred."""

    # -- transfers -----------------------------------------------------------------------------
    def _transfer(self, call: CallerCall, destination: str, now: float) -> None:
        uri = self.config.transfer_target(destination)
        if uri is None:
            log.warning("call %s: transfer to '%s' refused: not an extension and no dial_out "
                        "rule allows it", call.call_id, destination)
            self._session(call, call.session.handle(TransferFinished(False, "not allowed"),
                                                    now), now)
            return
        log.info("call %s: transferring to %s (%s)", call.call_id, destination, uri)
        ref = self._ref()
        self.legs[ref] = Leg(ref, LegRole.TRANSFER, call.call_id)
        self._to(call, CallPhase.TRANSFERRING, destination)
        call.transfer_ref = ref
        call.transfer_to = destination
        call.transfer_deadline = now + self.transfer_timeout
        self._emit(m.Dial(ref, uri))
        self._emit(m.Play(call.leg, (self.music_on_hold,), MOH_TOKEN, loop=True))

    def _transfer_failed(self, call: CallerCall, reason: str, now: float) -> None:
        if call.transfer_by:
            self._agent_transfer_failed(call, reason, now)
            return
        if call.phase is CallPhase.TRANSFERRING:
            self._emit(m.StopPlay(call.leg))
        self._to(call, CallPhase.IVR, f"transfer failed: {reason}")
        call.transfer_ref = None
        call.transfer_deadline = None
        self._session(call, call.session.handle(TransferFinished(False, reason), now), now)

    def _transfer_answered(self, leg: Leg, now: float) -> None:
        assert leg.sip is not None
        call = self.calls.get(leg.call_id)
        if call is None or call.transfer_ref != leg.ref:
            self._cancel(leg.ref, "not wanted")
            return
        self._bridge(leg, call.leg)

    def _transfer_bridged(self, leg: Leg, ok: bool, now: float) -> None:
        call = self.calls.get(leg.call_id)
        if call is None or call.transfer_ref != leg.ref:
            self._cancel(leg.ref, "not wanted")
            return
        if not ok:
            log.warning("call %s: %s answered but the call cannot be put through",
                        call.call_id, call.transfer_to)
            self._cancel(leg.ref, "cannot connect")
            self._transfer_failed(call, "cannot connect", now)
            return
        self._leg_to(leg, LegPhase.CONNECTED, "bridged")
        self._to(call, CallPhase.TRANSFERRED, call.transfer_to)
        call.transfer_deadline = None
        call.record.transferred_to = call.transfer_to
        call.record.ivr_path = call.session.path_text()
        if call.transfer_by:  # the record keeps the agent and when they answered
            log.info("call %s: transferred to %s by agent %s", call.call_id, call.transfer_to,
                     call.transfer_by)
            self._save(call.record)
            return
        call.record.connected_at = self.wall(now)
        log.info("call %s: transferred to %s", call.call_id, call.transfer_to)
        self._save(call.record)
        self._session(call, call.session.handle(TransferFinished(True), now), now)

    def _transfer_leg_ended(self, leg: Leg, was: LegPhase, status: int, reason: str,
                            now: float) -> None:
        call = self.calls.get(leg.call_id)
        if call is None or call.transfer_ref != leg.ref:
            return
        call.transfer_ref = None
        if call.phase is CallPhase.TRANSFERRED:
            log.info("call %s: %s hung up", call.call_id, call.transfer_to)
            self._emit(m.HangupLeg(call.leg))
            return
        failure = dial_failure(status, reason)
        log.info("call %s: transfer to %s failed: %s", call.call_id, call.transfer_to, failure)
        self._transfer_failed(call, failure, now)

    def _transfer_timed_out(self, call: CallerCall, now: float) -> None:
        log.info("call %s: transfer to %s not answered in %g s", call.call_id, call.transfer_to,
                 self.transfer_timeout)
        if call.transfer_ref is not None:
            self._cancel(call.transfer_ref, "no answer")
        self._transfer_failed(call, "no answer", now)

    # -- agents' transfers (REFER from the agent's phone) --------------------------------------
    def transfer_refusal(self, sip_leg: str, refer_to: str) -> str:
        """'' when the phone on *sip_leg* may have its caller moved to the Refer-To URI
        *refer_to*, else why not (the SIP layer answers 403 and logs it).

        Only an agent's leg connected to a caller may transfer, and only to what
        :meth:`ivr.config.Config.agent_transfer_target` finds in ivr.yaml. Asked by the SIP
        layer inside the REFER's callback, on the loop thread: it reads and changes nothing.
        """
        leg = self._leg_of(sip_leg)
        call = self.calls.get(leg.call_id) if leg is not None else None
        if leg is None or call is None or leg.role is not LegRole.AGENT \
                or call.agent_ref != leg.ref or call.phase is not CallPhase.CONNECTED:
            return "not an agent's call with a caller"
        if self.config.agent_transfer_target(refer_to) is None:
            return "not an extension, a queue or a number agents may transfer to"
        return ""

    def _agent_transfer(self, event: sip.TransferRequested, now: float) -> None:
        leg = self._leg_of(event.leg)
        call = self.calls.get(leg.call_id) if leg is not None else None
        target = self.config.agent_transfer_target(event.refer_to)
        if leg is None or call is None or target is None or call.agent_ref != leg.ref \
                or call.phase is not CallPhase.CONNECTED:
            log.warning("transfer from leg %s to %s dropped: the call is no longer the "
                        "agent's", event.leg, escape(event.refer_to, 80))
            return
        self._agent_moves_caller(call, leg, target, event.replaces, now)

    def _agent_moves_caller(self, call: CallerCall, leg: Leg, target: TransferTarget,
                            replaces: str, now: float) -> None:
        """The agent on *leg* hands their connected caller to *target* (their phone's REFER,
        or the console): the agent's leg is hung up and the agent wraps up."""
        agent = leg.agent
        log.info("call %s: agent %s transfers the caller to %s %s%s", call.call_id, agent,
                 target.kind, target.name, " (attended)" if replaces else "")
        call.agent_ref = None
        self._cancel(leg.ref, "transferred")  # the phone had its NOTIFY 200: its part is over
        finished = self.router.finished(call.call_id, now)  # the agent wraps up as usual
        call.transfer_by = agent
        call.record.transferred_to = None
        if target.kind == "queue":
            self._agent_transfer_to_queue(call, target.name, finished, now)
            return
        uri = target.uri
        if target.kind == "extension" and replaces and "?" not in uri:
            uri = f"{uri}?Replaces={replaces}"
        ref = self._ref()
        self.legs[ref] = Leg(ref, LegRole.TRANSFER, call.call_id)
        self._to(call, CallPhase.TRANSFERRING, f"agent {agent} to {target.name}")
        call.transfer_ref = ref
        call.transfer_to = target.name
        call.transfer_deadline = now + self.transfer_timeout
        self._emit(m.Dial(ref, uri))
        self._emit(m.Play(call.leg, (self.music_on_hold,), MOH_TOKEN, loop=True))
        self._routing(finished, now)

    def _agent_transfer_to_queue(self, call: CallerCall, queue: str,
                                 finished: list[RoutingAction], now: float) -> None:
        self._to(call, CallPhase.QUEUED, f"agent {call.transfer_by} to queue {queue}")
        call.agent_keys = ""
        call.transfer_to = queue
        call.record.transferred_to = queue
        call.record.queue = queue
        self._save(call.record)
        self._emit(m.Play(call.leg, (self.music_on_hold,), MOH_TOKEN, loop=True))
        self._routing(finished + self.router.join(call.call_id, queue, now, PRIORITY_BOOST),
                      now)

    def _agent_transfer_failed(self, call: CallerCall, reason: str, now: float) -> None:
        """The target of an agent's transfer did not take the caller: back to their queue,
        ahead of those waiting there; the flow's own path (QueueLeft) if it will not have
        them."""
        queue = call.record.queue
        log.info("call %s: transfer to %s by agent %s failed (%s); back to queue %s",
                 call.call_id, call.transfer_to, call.transfer_by, reason, queue)
        call.transfer_ref = None
        call.transfer_deadline = None
        call.transfer_by = ""
        if queue is None or queue not in self.config.queues:
            self._emit(m.HangupLeg(call.leg))  # cannot happen: agents answer queued callers
            return
        self._to(call, CallPhase.QUEUED, f"transfer failed: {reason}")
        self._emit(m.Play(call.leg, (self.music_on_hold,), MOH_TOKEN, loop=True))
        self._routing(self.router.join(call.call_id, queue, now, PRIORITY_BOOST), now)

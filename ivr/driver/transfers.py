"""Transfers a flow asks for: the destination dialled, bridged, or the flow told why not."""

import logging

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
        call.record.connected_at = self.wall(now)
        call.record.ivr_path = call.session.path_text()
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

"""The caller's machine: from the INVITE through the IVR to the call record.

Feeds the engine's :class:`CallSession` and carries out what it asks (answer, prompts, lookups,
voicemail, queue, transfer, callback); decides the outcome when the caller's leg ends.
"""

import dataclasses as dc
import datetime as dt
import logging
from pathlib import Path
from typing import Any

from ivr.driver import messages as m
from ivr.driver.state import (
    AGENTS_TRUNK,
    FEATURE_TOKEN,
    GAVE_UP_REASONS,
    MOH_TOKEN,
    NOTICE_TOKEN,
    RENDER_DEADLINE,
    CallerCall,
    CallPhase,
    LegRole,
)
from ivr.driver.ticketing import Ticketing
from ivr.engine import (
    Action,
    Answer,
    CallbackRefused,
    CallSession,
    DigitPressed,
    Enqueue,
    HangupCall,
    HttpLookup,
    LeaveQueueRequest,
    LookupFinished,
    PlaybackFinished,
    PlayPrompt,
    RecordingFinished,
    RequestCallback,
    SendSms,
    SetOverrideState,
    StartRecording,
    StopPlayback,
    TransferCall,
)
from ivr.engine.session import resolve
from ivr.logs import caller as shown
from ivr.logs import escape
from ivr.lookup import LookupResult, redact_url
from ivr.notices import NOTICES
from ivr.numbers import normalise
from ivr.sip import events as sip
from ivr.store import CallRecord

log = logging.getLogger("ivr.driver")


class Callers(Ticketing):
    """Transitions of a caller's call."""

    # -- incoming calls ------------------------------------------------------------------------
    def _incoming(self, event: sip.IncomingCall, now: float) -> None:
        if self._supervision_call(event, now) or self._feature_call(event, now):
            return
        trunk = next((t for t in self.config.trunks if t.name == event.trunk), None)
        if trunk is not None:  # the gateway's profile: its called and caller numbers
            event = dc.replace(event, called=trunk.called(event.called))
        route = self.config.route_for(event.called)
        if route is None:
            log.warning("refused call from %s on trunk %s: no route for the called number %s",
                        event.source, event.trunk, escape(event.called, 40) or "(none)")
            self._emit(m.HangupLeg(event.leg, 404))
            self._refused(sip.CallRefused(event.source, event.caller, event.called, 404,
                                          "Not Found: no route for the called number",
                                          event.trunk), now)
            return
        caller = normalise(event.caller)
        if caller is None:  # a name, bytes: never stored or shown to a flow; the call goes on
            log.info("call from %s on trunk %s: the caller ID is not a number; taken as "
                     "withheld", event.source, event.trunk)
            caller = ""
        if trunk is not None:
            caller = trunk.caller(caller)
        called = normalise(event.called) or ""
        flow = self.flows.get(str(route.flow), self.flow)
        call_id = self.new_id()
        started = self.wall(now)
        record = CallRecord(call_id=call_id, started_at=started, caller=caller,
                            called=called, trunk=event.trunk, source=event.source,
                            flow=flow.name, flow_version=flow.version)
        session = CallSession(flow, call_id, caller, called,
                              started_at=dt.datetime.fromtimestamp(started, dt.UTC),
                              overrides=self.overrides, language=route.language,
                              callback_allowed=self.config.callback_target(caller) is not None)
        self._ticket_variables(session, caller)
        call = CallerCall(call_id, event.leg, event.trunk, session, record)
        self.calls[call_id] = call
        self.by_sip[event.leg] = call_id
        log.info("call %s from %s on trunk %s to %s: flow %s", call_id,
                 shown(caller, log) or "withheld", event.trunk, called or "?", flow.name)
        self._save(record)
        self._session(call, session.start(now), now)

    def _feature_call(self, event: sip.IncomingCall, now: float) -> bool:
        """An agent dialling a feature code (*41 login ...) from their own phone (the URI's
        user and host of a configured agent): True if handled. An agent's phone that is not
        a trunk may dial nothing else."""
        if self._disposition_call(event, now):
            return True
        command = self.config.feature_codes.action_for(event.called)
        agent = self.config.agent_for(event.source, event.caller)
        if command is None or agent is None:
            if event.trunk != AGENTS_TRUNK:
                return False
            log.warning("refused call from agent phone %s (%s) to %s: only feature codes are "
                        "taken from agents' phones", event.source, escape(event.caller, 40) or "?",
                        escape(event.called, 40) or "?")
            self._emit(m.HangupLeg(event.leg, 403))
            self._refused(sip.CallRefused(event.source, event.caller, event.called, 403,
                                          "Forbidden", event.trunk), now)
            return True
        self._agent_command(m.AgentCommand(agent.name, command,
                                           "break" if command == "pause" else "",
                                           f"phone {event.source}"), now)
        self._emit(m.AnswerLeg(event.leg))
        files = self.files_for(resolve(NOTICES[command], "en"))
        if files is None:
            log.error("the confirmation of feature code %s is not rendered", command)
            self._emit(m.HangupLeg(event.leg))
            return True
        self.feature_legs.add(event.leg)
        self._emit(m.Play(event.leg, files, FEATURE_TOKEN))
        return True

    def _refused(self, event: sip.CallRefused, now: float) -> None:
        at = self.wall(now)
        # numbers from a refused INVITE are stored only if they are numbers (never as given)
        record = CallRecord(call_id=self.new_id(), started_at=at,
                            caller=normalise(event.caller) or "",
                            called=normalise(event.called) or "", trunk=event.trunk,
                            source=event.source)
        record.finish(at, "refused", f"{event.status} {event.reason}")
        self._save(record)
        self._emit(m.CountCallEnded(event.trunk, "refused"))

    # -- what the flow asks for ----------------------------------------------------------------
    def _session(self, call: CallerCall, actions: list[Action], now: float) -> None:
        for action in actions:
            if call.phase is CallPhase.ENDED:
                return
            self._session_action(call, action, now)

    def _session_action(self, call: CallerCall, action: Action,  # noqa: C901 - one arm a kind
                        now: float) -> None:
        if isinstance(action, Answer):
            self._emit(m.AnswerLeg(call.leg))
            call.record.answered_at = self.wall(now)
            self._save(call.record)
        elif isinstance(action, PlayPrompt):
            self._play(call, action.play_id, action.pieces, now)
        elif isinstance(action, StopPlayback):
            call.awaiting_render = None
            self._emit(m.StopPlay(call.leg))
        elif isinstance(action, Enqueue):
            self._enqueue(call, action, now)
        elif isinstance(action, HangupCall):
            log.info("call %s: flow ends the call (%s)", call.call_id, action.reason)
            call.hangup_reason = action.reason
            self._emit(m.HangupLeg(call.leg))
        elif isinstance(action, HttpLookup):
            log.info("call %s: lookup %d: GET %s (timeout %g s)", call.call_id,
                     action.request_id, redact_url(action.url), action.timeout)
            self._emit(m.StartLookup(call.call_id, action.request_id, action.url,
                                     action.timeout))
        elif isinstance(action, StartRecording):
            self._start_recording(call, action)
        elif isinstance(action, TransferCall):
            self._transfer(call, action.destination, now)
        elif isinstance(action, SetOverrideState):
            if action.state == "auto":
                self.overrides.pop(action.override, None)
            else:
                self.overrides[action.override] = action.state
            self._emit(m.SaveOverride(action.override, action.state, self.wall(now)))
            log.warning("hours override %s set to %s by call %s", action.override,
                        action.state, call.call_id)
        elif isinstance(action, SendSms):
            # only ever the number that called: the node cannot name another
            self._emit(m.TextCaller(call.call_id, call.record.caller, action.text))
        elif isinstance(action, RequestCallback):
            self._request_callback(call, now)
        elif isinstance(action, CallbackRefused):
            self._callback_refused(call, action.reason)
        elif isinstance(action, LeaveQueueRequest):
            log.info("call %s: caller left queue %s by key", call.call_id, call.record.queue)
            self._to(call, CallPhase.IVR, "exit key")
            self._emit(m.StopPlay(call.leg))
            self._routing(self.router.leave(call.call_id, now, "key"), now)

    def _play(self, call: CallerCall, play_id: int, pieces: tuple[Any, ...], now: float) -> None:
        files = self.files_for(pieces)
        if files is not None:
            call.awaiting_render = None
            self._emit(m.Play(call.leg, files, play_id))
            return
        call.awaiting_render = play_id
        self._emit(m.RenderPrompt(call.call_id, play_id, pieces, RENDER_DEADLINE))

    def _prompt_ready(self, msg: m.PromptReady, now: float) -> None:
        call = self.calls.get(msg.call_id)
        if call is None or call.awaiting_render != msg.play_id:
            return
        call.awaiting_render = None
        if msg.play_id == NOTICE_TOKEN:
            if msg.files and call.phase is CallPhase.QUEUED:
                self._emit(m.Play(call.leg, msg.files, NOTICE_TOKEN))
            return
        if msg.files:
            self._emit(m.Play(call.leg, msg.files, msg.play_id))
            return
        log.error("call %s: a prompt could not be made (%s); the flow goes on without it",
                  call.call_id, msg.error or "no audio")
        self._session(call, call.session.handle(PlaybackFinished(msg.play_id), now), now)

    def _start_recording(self, call: CallerCall, action: StartRecording) -> None:
        call.recordings_made += 1
        name = call.call_id if call.recordings_made == 1 else \
            f"{call.call_id}-{action.recording_id}"
        path = Path(self.config.recordings) / f"{name}.wav"
        call.recording = action.recording_id
        log.info("call %s: recording a message (at most %g s, ends after %g s of silence)",
                 call.call_id, action.max_seconds, action.silence_seconds)
        self._emit(m.Record(call.leg, str(path), action.recording_id, action.max_seconds,
                            action.silence_seconds, self.beep if action.beep else None))

    def _recording_ended(self, event: sip.RecordingEnded, now: float) -> None:
        call = self._caller_of(event.leg)
        if call is None or call.recording != event.token:
            return
        call.recording = None
        if event.path and event.seconds > 0:
            call.record.voicemail_path = event.path
            self._save(call.record)
            log.info("call %s: message of %.1f s recorded (%s)", call.call_id, event.seconds,
                     event.reason)
        else:
            log.warning("call %s: no message recorded (%s)", call.call_id, event.reason)
        if event.reason == "hangup":
            call.voicemail_left = call.record.voicemail_path is not None
            return  # the call ends next: the flow goes no further
        self._session(call, call.session.handle(
            RecordingFinished(event.token, event.path, event.seconds, event.reason), now), now)

    def _lookup_done(self, result: LookupResult, now: float) -> None:
        call = self.calls.get(result.key)
        if call is None:
            log.debug("lookup %d of ended call %s answered after %.3f s", result.request_id,
                      result.key, result.seconds)
            return
        if result.error:
            log.warning("call %s: lookup %d failed after %.3f s: %s", call.call_id,
                        result.request_id, result.seconds, result.error)
        else:
            log.info("call %s: lookup %d answered in %.3f s", call.call_id, result.request_id,
                     result.seconds)
        if call.phase is CallPhase.IVR:
            self._session(call, call.session.handle(
                LookupFinished(result.request_id, result.data, result.error), now), now)

    # -- keys, prompt ends ---------------------------------------------------------------------
    def _digit(self, event: sip.DigitReceived, now: float) -> None:
        leg = self._leg_of(event.leg)
        if leg is not None:
            if leg.role is LegRole.AGENT:
                self._agent_key(leg, event.digit, now)
            return
        call = self._caller_of(event.leg)
        if call is None:
            return
        if call.phase is CallPhase.IVR:
            log.info("call %s: key %s (%s)", call.call_id, event.digit, event.method)
            if call.recording is not None:
                self._emit(m.StopRecord(call.leg, "key"))
        elif call.phase is not CallPhase.QUEUED:
            return
        self._session(call, call.session.handle(DigitPressed(event.digit), now), now)

    def _playback_ended(self, event: sip.PlaybackEnded, now: float) -> None:
        if event.leg in self.feature_legs:
            self._emit(m.HangupLeg(event.leg))
            return
        call = self._caller_of(event.leg)
        if call is None:
            return
        if call.phase is CallPhase.QUEUED and event.token == NOTICE_TOKEN:
            self._emit(m.Play(call.leg, (self.music_on_hold,), MOH_TOKEN, loop=True))
        elif call.phase is CallPhase.IVR:
            self._session(call, call.session.handle(PlaybackFinished(event.token), now), now)

    def _caller_ended(self, call: CallerCall, event: sip.LegEnded, now: float) -> None:
        self.by_sip.pop(call.leg, None)
        self.calls.pop(call.call_id, None)
        for ref in [*call.ringing.values(), call.agent_ref, call.transfer_ref]:
            if ref is not None:
                self._cancel(ref, "caller gone")
        call.ringing.clear()
        self._emit(m.CancelLookups(call.call_id))
        outcome, reason = self._outcome(call, now)
        self._to(call, CallPhase.ENDED, outcome)
        call.record.ivr_path = call.session.path_text()
        call.record.finish(self.wall(now), outcome, reason)
        self._save(call.record)
        self._emit(m.CountCallEnded(call.trunk, outcome))
        self._emit(m.CountIvrPath(call.session.flow.name,
                                  tuple((s.node, s.digits) for s in call.session.path),
                                  call.session.node if outcome == "abandoned_ivr" else None))
        log.info("call %s ended: %s (%s), path %s", call.call_id, outcome, reason,
                 call.record.ivr_path)

    def _outcome(self, call: CallerCall, now: float) -> tuple[str, str]:
        """How a caller's call ended. The router lets go of the caller here, once, whatever
        the outcome, unless they keep their place for a callback."""
        outcome, reason = self._judge(call)
        if outcome == "callback_requested":
            self._start_callback(call, now)
        elif call.call_id in self.router.waiting:
            self._routing(self.router.leave(call.call_id, now), now)
        elif call.call_id in self.router.connected:
            self._routing(self.router.finished(call.call_id, now), now)
        return outcome, reason

    def _judge(self, call: CallerCall) -> tuple[str, str]:
        if self.stopping:
            return "interrupted", "switchboard stopped"
        if self.expect_ack and not call.confirmed and call.record.answered_at is not None:
            return "failed", "the caller's side never acknowledged the answer (no ACK)"
        return self._judge_answered(call)

    def _judge_answered(self, call: CallerCall) -> tuple[str, str]:
        phase = call.phase
        if phase is CallPhase.TRANSFERRED:
            return "completed", f"transferred to {call.transfer_to}"
        if phase is CallPhase.TRANSFERRING and call.transfer_by:  # an agent served them
            return "completed", f"caller hung up during transfer to {call.transfer_to} by " \
                                f"agent {call.transfer_by}"
        if phase is CallPhase.TRANSFERRING:
            return "abandoned_ivr", f"caller hung up during transfer to {call.transfer_to}"
        if call.voicemail_left:
            return "completed", "voicemail left, caller hung up"
        if call.callback_requested:
            return "callback_requested", f"call back {call.record.caller}"
        if call.agent_hung_up:
            return "completed", "agent hung up"
        if phase is CallPhase.QUEUED:
            return "abandoned_queue", "caller hung up while waiting"
        if phase is CallPhase.CONNECTED:
            return "completed", "caller hung up"
        if call.session.state == "ended" or call.hangup_reason:
            reason = call.session.end_reason or call.hangup_reason
            if reason == "flow_error":
                return "failed", reason
            if reason in GAVE_UP_REASONS or call.session.gave_up_at is not None:
                return "ivr_gave_up", reason if reason in GAVE_UP_REASONS else \
                    f"{reason} after {call.session.gave_up_at} ran out of tries"
            return "completed", reason
        return "abandoned_ivr", f"caller hung up at {call.session.node}"

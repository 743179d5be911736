"""The executor: the only code that carries the core's effects out to SIP, store and metrics.

It is thin on purpose: each effect is one call. What a call gives back (the leg a dial made,
whether a bridge held) is returned as messages for the core, which takes every decision.
Work that could wait (rendering, lookups, disk commits) is handed to workers that answer
through the inbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from ivr.driver import messages as m
from ivr.metrics import Metrics
from ivr.recording import NOT_STARTED, RecordingDone
from ivr.sip.events import SipEvent
from ivr.store import CallRecord, QueueEventRow
from ivr.tickets import Ticket

log = logging.getLogger("ivr.driver")


class Sip(Protocol):
    """What the executor needs of the SIP layer (:class:`ivr.sip.stack.SipStack`)."""

    def poll(self, timeout_ms: int) -> list[SipEvent]: ...
    def answer(self, leg_id: str) -> None: ...
    def dial(self, uri: str, caller_id: str = "") -> str | None: ...
    def hangup(self, leg_id: str, status: int = 0) -> None: ...
    def play(self, leg_id: str, path: Any, token: int, loop: bool = False) -> None: ...
    def stop_playback(self, leg_id: str) -> None: ...
    def bridge(self, a: str, b: str) -> bool: ...
    def connect(self, src: str, dst: str) -> None: ...
    def disconnect(self, src: str, dst: str) -> None: ...
    def start_recording(self, leg_id: str, path: str, token: int, max_seconds: float,
                        silence_seconds: float, beep: str | None = None) -> None: ...
    def stop_recording(self, leg_id: str, reason: str = "key") -> None: ...
    def record_call(self, key: str, legs: tuple[str, str], parts: tuple[str, str]) -> bool: ...
    def stop_call_recording(self, key: str, reason: str) -> None: ...


class Store(Protocol):
    """What the executor needs of the call store: every method returns at once."""

    def save(self, record: CallRecord) -> Any: ...
    def add_events(self, events: list[QueueEventRow]) -> None: ...
    def set_agent_state(self, agent: str, state: str, reason: str, at: float) -> None: ...
    def set_override(self, name: str, state: str, changed_at: float) -> Any: ...
    def save_ticket(self, ticket: Ticket) -> None: ...


class Texts(Protocol):
    """The SMS outbox (:class:`ivr.sms.SmsOutbox`): returns at once."""

    def offer(self, number: str, text: str, now: float) -> str: ...


class Lookups(Protocol):
    def submit(self, key: str, request_id: int, url: str, timeout: float) -> None: ...
    def cancel(self, key: str) -> object: ...


class Renderer(Protocol):
    def submit(self, key: str, play_id: int, pieces: Any, deadline_s: float) -> None: ...


class Dialler(Protocol):
    """The hopper filler (:class:`ivr.driver.filler.HopperFiller`): takes the dialler's
    writes and fill requests, returns at once."""

    def submit(self, write: Any) -> None: ...


class Recorder(Protocol):
    """Joins a call recording's parts into its stereo file (see :mod:`ivr.recording`)."""

    def submit(self, call_id: str, caller_part: str, agent_part: str, path: str) -> None: ...


class Executor:
    """Carries effects out; see the module doc."""

    def __init__(self, sip: Sip, store: Store, metrics: Metrics, lookups: Lookups,
                 renderer: Renderer, wall: Callable[[], float],
                 clock: Callable[[], float] = time.monotonic, *,
                 recorder: Recorder | None = None):
        self.sip = sip
        self.recorder = recorder
        """None: recordings' parts are left as they are (a switchboard without the worker)."""
        self.store = store
        self.metrics = metrics
        self.lookups = lookups
        self.renderer = renderer
        self.wall = wall
        self.clock = clock
        self.errors = 0
        """Effects that failed (each logged with its trace)."""
        self.texts: Texts | None = None
        """Where a flow's texts go (None: no modem configured)."""
        self.dialler: Dialler | None = None
        """Where the dialler's writes go (None: no campaigns)."""

    def run(self, effects: list[m.Effect]) -> list[m.Message]:
        """Carry out *effects* in order; returns what the SIP layer answered at once.

        One effect that fails (the SIP stack refusing a command on a call that ended a moment
        ago, say) is logged with its trace and does not stop the others, nor the loop: every
        other call goes on. A dial or a bridge that fails answers as failed, so the core
        takes its usual path for it.
        """
        back: list[m.Message] = []
        for fx in effects:
            try:
                self._carry_out(fx, back)
            except Exception:  # one command's failure must not end every call
                log.exception("could not carry out %s", type(fx).__name__)
                self.errors += 1
                if isinstance(fx, m.Dial):
                    back.append(m.Dialled(fx.ref, None))
                elif isinstance(fx, m.Bridge):
                    back.append(m.Bridged(fx.a, fx.b, False))
                elif isinstance(fx, m.RecordCall):
                    back.append(RecordingDone(fx.call_id, fx.path, 0.0, NOT_STARTED))
        return back

    def _carry_out(  # noqa: C901 - one arm per kind
            self, fx: m.Effect, back: list[m.Message]) -> None:
        sip = self.sip
        if isinstance(fx, m.AnswerLeg):
            sip.answer(fx.leg)
        elif isinstance(fx, m.HangupLeg):
            sip.hangup(fx.leg, fx.status)
        elif isinstance(fx, m.Dial):
            back.append(m.Dialled(fx.ref, sip.dial(fx.uri, fx.caller_id) if fx.caller_id
                                  else sip.dial(fx.uri)))
        elif isinstance(fx, m.Play):
            sip.play(fx.leg, list(fx.files) if len(fx.files) > 1 else fx.files[0],
                     fx.token, fx.loop)
        elif isinstance(fx, m.StopPlay):
            sip.stop_playback(fx.leg)
        elif isinstance(fx, m.Bridge):
            back.append(m.Bridged(fx.a, fx.b, sip.bridge(fx.a, fx.b)))
        elif isinstance(fx, m.Connect):
            sip.connect(fx.src, fx.dst)
        elif isinstance(fx, m.Disconnect):
            sip.disconnect(fx.src, fx.dst)
        elif isinstance(fx, m.Record):
            sip.start_recording(fx.leg, fx.path, fx.token, fx.max_seconds,
                                fx.silence_seconds, fx.beep)
        elif isinstance(fx, m.StopRecord):
            sip.stop_recording(fx.leg, fx.reason)
        elif isinstance(fx, m.RecordCall):
            if not sip.record_call(fx.call_id, fx.legs, fx.parts):
                back.append(RecordingDone(fx.call_id, fx.path, 0.0, NOT_STARTED))
        elif isinstance(fx, m.StopCallRecording):
            sip.stop_call_recording(fx.call_id, fx.reason)
        elif isinstance(fx, m.JoinRecording):
            if self.recorder is None:
                log.warning("call %s: no worker joins the recording's parts", fx.call_id)
            else:
                self.recorder.submit(fx.call_id, fx.parts[0], fx.parts[1], fx.path)
        elif isinstance(fx, m.CountRecording):
            self.metrics.recordings.labels(result=fx.result).inc()
        elif isinstance(fx, m.RecordingsSuspended):
            self.metrics.recordings_suspended.set(int(fx.suspended))
        elif isinstance(fx, m.RenderPrompt):
            self.renderer.submit(fx.call_id, fx.play_id, fx.pieces,
                                 self.clock() + fx.deadline)
        elif isinstance(fx, m.StartLookup):
            self.lookups.submit(fx.call_id, fx.request_id, fx.url, fx.timeout)
        elif isinstance(fx, m.CancelLookups):
            self.lookups.cancel(fx.call_id)
        elif isinstance(fx, m.SaveRecord):
            self.store.save(fx.record)
        elif isinstance(fx, m.SaveQueueEvents):
            self.store.add_events(list(fx.rows))
            for row in fx.rows:
                self.metrics.queue_event(row.kind, row.queue, row.at, row.detail, row.agent)
        elif isinstance(fx, m.SaveAgentState):
            self.store.set_agent_state(fx.agent, fx.state, fx.reason, fx.at)
        elif isinstance(fx, m.SaveOverride):
            self.store.set_override(fx.name, fx.state, fx.at)
        elif isinstance(fx, m.SaveTicket):
            self.store.save_ticket(fx.ticket)
        elif isinstance(fx, m.TextCaller):
            self._text_caller(fx)
        elif isinstance(fx, m.CountCallEnded):
            self.metrics.call_ended(fx.trunk, fx.outcome)
        elif isinstance(fx, m.CountIvrPath):
            self.metrics.ivr_path(fx.flow, fx.steps, fx.gave_up_at)
        elif isinstance(fx, m.CountTransition):
            self.metrics.transition(fx.machine, fx.old, fx.new)
        elif isinstance(fx, (m.SaveAttempt, m.SaveContact, m.AddDnc, m.FillHoppers)):
            if self.dialler is None:
                log.warning("no hopper filler for the dialler's %s", type(fx).__name__)
            else:
                self.dialler.submit(fx)
        elif isinstance(fx, m.CountCampaign):
            self.metrics.campaign_event(fx.campaign, fx.event, fx.outcome)
        elif isinstance(fx, m.FlowInService):
            if fx.reloaded:
                self.metrics.reload_done(ok=True)
            self.metrics.flow_loaded(fx.name, fx.version, self.wall())

    def _text_caller(self, fx: m.TextCaller) -> None:
        if self.texts is None:
            log.warning("call %s: the flow's sms node has no modem to text with (add one to "
                        "devices in ivr.yaml)", fx.call_id)
            return
        refused = self.texts.offer(fx.number, fx.text, self.wall())
        if refused:
            log.info("call %s: no text to the caller: %s", fx.call_id, {
                "withheld": "the number is withheld",
                "per_number": "this caller had their texts for today",
                "per_day": "the day's texts are used up"}.get(refused, refused))
        else:
            log.info("call %s: text to the caller queued", fx.call_id)

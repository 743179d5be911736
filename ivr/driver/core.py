"""The switchboard's core: every call's state, fed messages and the time, answering effects.

Nothing here touches the SIP stack, the database, the metrics or a clock. :meth:`Core.handle`
takes one message of the inbox (:mod:`ivr.driver.messages`) with ``now`` (monotonic seconds) and
returns the effects to carry out; :meth:`Core.next_deadline` says when a :class:`Tick` is due.
What the executor learns by carrying out a command (the leg a dial created, whether a bridge
held) comes back as a message, so every decision is taken here, in one place.

Each call has one machine with one phase, changed only by its ``_to()`` method, which logs and
counts the change:

- a caller (:class:`CallerCall`): ``ivr -> queued -> connected``, ``ivr -> transferring ->
  transferred``, any -> ``ended``; its IVR walk is the engine's :class:`CallSession`, which the
  caller machine feeds;
- an outgoing leg (:class:`Leg`): ``dialling -> ringing -> bridging -> connected``, or
  ``cancelled`` when the switchboard no longer wants it, ``ended`` when SIP says so;
- a callback (:class:`Callback`): ``waiting -> agent_ringing -> calling_back -> connected``.

The router (:mod:`routing`) owns queues and agents; every action it returns is carried out by
:meth:`Core._routing`, whatever branch produced it.

    >>> core = Core(config, flow, files_for=library.files_now)     # doctest: +SKIP
    >>> core.handle(IncomingCall("L1", "127.0.0.1", "gw", "3331234", "800"), now=0.0)
    [SaveRecord(...), AnswerLeg('L1'), SaveRecord(...), Play('L1', (...), 1)]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.config import Config
from ivr.driver import messages as m
from ivr.engine import (
    Action,
    Answer,
    CallSession,
    DigitPressed,
    Enqueue,
    HangupCall,
    HttpLookup,
    LeaveQueueRequest,
    LookupFinished,
    PlaybackFinished,
    PlayPrompt,
    QueueLeft,
    RecordingFinished,
    RequestCallback,
    SetOverrideState,
    StartRecording,
    StopPlayback,
    TimerFired,
    TransferCall,
    TransferFinished,
)
from ivr.engine.session import resolve
from ivr.flow import Flow
from ivr.lookup import LookupResult
from ivr.metrics import Snapshot
from ivr.notices import NOTICES
from ivr.sip import events as sip
from ivr.store import CallRecord, QueueEventRow
from routing import RingAgent, Router, StopRinging
from routing.acd import AgentSpec, Announce, LeaveQueue, MovedQueue, RoutingAction

log = logging.getLogger("ivr.driver")

AGENTS_TRUNK = "agents"
"""Trunk name given to calls from agents' phones (feature codes only)."""
MOH_TOKEN = 0
"""Token of the music-on-hold player (looped, never reports an end)."""
NOTICE_TOKEN = -1
"""Token of a switchboard notice to a waiting caller (announcement, escalation message)."""
FEATURE_TOKEN = 1
RENDER_DEADLINE = 3.0
"""Seconds a prompt with free text (a lookup's answer) may take to render before the call goes
on without it."""
TRANSFER_TIMEOUT = 30.0

FilesFor = Callable[[tuple[Any, ...]], "tuple[str, ...] | None"]
"""Prompt pieces -> the audio files that speak them, if they are ready (no rendering)."""


class CallPhase(enum.Enum):
    IVR = "ivr"
    QUEUED = "queued"
    CONNECTED = "connected"
    TRANSFERRING = "transferring"
    TRANSFERRED = "transferred"
    ENDED = "ended"


class LegPhase(enum.Enum):
    DIALLING = "dialling"
    RINGING = "ringing"
    BRIDGING = "bridging"
    CONNECTED = "connected"
    CANCELLED = "cancelled"
    ENDED = "ended"


class LegRole(enum.Enum):
    AGENT = "agent"
    TRANSFER = "transfer"
    CUSTOMER = "customer"
    """The call out to a caller who asked to be called back."""


class CallbackPhase(enum.Enum):
    WAITING = "waiting"
    CALLING_BACK = "calling_back"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass
class Leg:
    """An outgoing leg: an agent's phone, a transfer destination, a caller called back."""

    ref: str
    role: LegRole
    call_id: str
    agent: str = ""
    phase: LegPhase = LegPhase.DIALLING
    sip: str | None = None
    """The SIP layer's leg, once the dial is placed."""

    @property
    def live(self) -> bool:
        return self.phase not in (LegPhase.CANCELLED, LegPhase.ENDED)


@dataclass
class CallerCall:
    """A caller's call, from the INVITE to the record."""

    call_id: str
    leg: str
    trunk: str
    session: CallSession
    record: CallRecord
    phase: CallPhase = CallPhase.IVR
    confirmed: bool = False
    """The caller's side acknowledged our answer (ACK)."""
    ringing: dict[str, str] = field(default_factory=dict)
    """Agent -> leg ref, for every agent phone ringing for this caller (ring-all: several)."""
    agent_ref: str | None = None
    """The agent leg being bridged or connected."""
    agent_keys: str = ""
    agent_hung_up: bool = False
    callback_requested: bool = False
    recording: int | None = None
    recordings_made: int = 0
    voicemail_left: bool = False
    transfer_ref: str | None = None
    transfer_to: str = ""
    transfer_deadline: float | None = None
    awaiting_render: int | None = None
    """Play id of a prompt being rendered for this call."""
    hangup_reason: str = ""


@dataclass
class Callback:
    """A caller who asked to be called back: their place in the queue, then the call out."""

    call_id: str
    """The router's id: the original call's."""
    number: str
    trunk: str
    record: CallRecord
    phase: CallbackPhase = CallbackPhase.WAITING
    ringing: dict[str, str] = field(default_factory=dict)
    agent: str | None = None
    agent_ref: str | None = None
    customer_ref: str | None = None


class Core:
    """The switchboard's state and decisions. See the module doc."""

    def __init__(self, config: Config, flow: Flow, *, files_for: FilesFor,
                 music_on_hold: str, now: float, wall_offset: float = 0.0,
                 beep: str | None = None, overrides: Mapping[str, str] | None = None,
                 agent_states: Mapping[str, tuple[str, str]] | None = None,
                 registering: Iterable[str] = (),
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:16],
                 expect_ack: bool = True,
                 transfer_timeout: float = TRANSFER_TIMEOUT):
        self.config = config
        self.flow = flow
        self.files_for = files_for
        self.music_on_hold = music_on_hold
        self.wall_offset = wall_offset
        self.beep = beep
        self.new_id = new_id
        self.expect_ack = expect_ack
        self.transfer_timeout = transfer_timeout
        self.overrides: dict[str, str] = dict(overrides or {})
        self.calls: dict[str, CallerCall] = {}
        self.callbacks: dict[str, Callback] = {}
        self.legs: dict[str, Leg] = {}
        """Outgoing legs by ref."""
        self.by_sip: dict[str, str] = {}
        """SIP leg -> the caller's call id (incoming legs) or an outgoing leg's ref."""
        self.feature_legs: set[str] = set()
        self.bridging: dict[tuple[str, str], str] = {}
        """(a, b) of a bridge asked for -> the ref of the outgoing leg it joins."""
        self.trunk_state: dict[str, bool] = {}
        self.transitions: dict[tuple[str, str, str], int] = {}
        self.stopping = False
        self._next_ref = 0
        self._fx: list[m.Effect] = []
        self.registering = frozenset(registering)
        agents = [AgentSpec(a.name, a.skills, a.max_no_answer) for a in config.agents.values()]
        self.router = Router(config.queues.values(), now=now, agents=agents)
        for name, (state, reason) in sorted((agent_states or {}).items()):
            if name not in self.router.agents:
                continue
            if state == "logged_out":
                self.router.logout(name, now)
            elif state == "paused":
                self.router.pause(name, now, reason or "break")
            log.info("agent %s restored as %s%s", name, state, f" ({reason})" if reason else "")
        for name in sorted(self.registering & set(self.router.agents)):
            self.router.set_reachable(name, False, now)  # offered calls once registered
        self.router.drain_log()  # restoring is not news for the queue log

    # -- admission: asked by the SIP layer while it holds the INVITE ---------------------------
    def admit(self, address: str) -> tuple[str | None, int, int]:
        """(trunk, status, lines) for an INVITE from *address*: the SIP layer refuses with the
        status when it is not 200, and counts the trunk's calls against its lines itself, so a
        burst of INVITEs taken in one poll cannot pass the cap."""
        trunk = self.config.trunk_for(address)
        if trunk is None:
            if any(_uri_host(a.uri) == address for a in self.config.agents.values()):
                return AGENTS_TRUNK, 200, 0  # an agent's phone: feature codes only
            return None, 403, 0
        if self.stopping:
            return trunk.name, 503, trunk.lines
        return trunk.name, 200, trunk.lines

    # -- the one entry point -------------------------------------------------------------------
    def handle(self, message: m.Message, now: float) -> list[m.Effect]:
        """Take one message; returns the effects to carry out, in order."""
        self._fx = []
        self._dispatch(message, now)
        self._queue_log()
        fx, self._fx = self._fx, []
        return fx

    def stop(self, now: float) -> list[m.Effect]:
        """Stop taking calls and hang up every leg; the legs' ends then close the records."""
        self._fx = []
        self.stopping = True
        for call in self.calls.values():
            self._emit(m.HangupLeg(call.leg))
        for leg in self.legs.values():
            if leg.live and leg.sip is not None:
                self._emit(m.HangupLeg(leg.sip))
        fx, self._fx = self._fx, []
        return fx

    def abandon(self, now: float) -> list[m.Effect]:
        """At the end of a stop: close what never confirmed its end as interrupted."""
        self._fx = []
        self.stopping = True
        for call in list(self.calls.values()):
            self._caller_ended(call, sip.LegEnded(call.leg, 0, "switchboard stopped"), now)
        for cb in list(self.callbacks.values()):
            self._callback_done(cb, "interrupted", "switchboard stopped", now)
        self._queue_log()
        fx, self._fx = self._fx, []
        return fx

    def next_deadline(self) -> float | None:
        times = [d for c in self.calls.values()
                 if c.phase is CallPhase.IVR and (d := c.session.next_deadline()) is not None]
        times += [c.transfer_deadline for c in self.calls.values()
                  if c.transfer_deadline is not None]
        routing = self.router.next_deadline()
        if routing is not None:
            times.append(routing)
        return min(times) if times else None

    def snapshot(self, now: float) -> Snapshot:
        waiting: dict[str, int] = {q: 0 for q in self.config.queues}
        longest: dict[str, float] = {q: 0.0 for q in self.config.queues}
        for caller in self.router.waiting.values():
            waiting[caller.queue] = waiting.get(caller.queue, 0) + 1
            longest[caller.queue] = max(longest.get(caller.queue, 0.0),
                                        round(now - caller.joined, 1))
        agents: dict[str, int] = {}
        for agent in self.router.agents.values():
            agents[agent.state] = agents.get(agent.state, 0) + 1
        by_queue: dict[tuple[str, str], int] = {}
        for spec in self.config.queues.values():
            for member in spec.all_members():
                key = (spec.name, self.router.agents[member.agent].state)
                by_queue[key] = by_queue.get(key, 0) + 1
        registered = {a: self.router.agents[a].reachable for a in self.registering
                      if a in self.router.agents}
        return Snapshot(len(self.calls), waiting, agents, longest, by_queue, registered,
                        dict(self.trunk_state))

    def wall(self, now: float) -> float:
        return round(now + self.wall_offset, 6)

    # -- dispatch ------------------------------------------------------------------------------
    def _dispatch(self, msg: m.Message, now: float) -> None:  # noqa: C901 - one arm per kind
        if isinstance(msg, m.Tick):
            self._timers(now)
        elif isinstance(msg, sip.IncomingCall):
            self._incoming(msg, now)
        elif isinstance(msg, sip.CallRefused):
            self._refused(msg, now)
        elif isinstance(msg, sip.DigitReceived):
            self._digit(msg, now)
        elif isinstance(msg, sip.PlaybackEnded):
            self._playback_ended(msg, now)
        elif isinstance(msg, sip.RecordingEnded):
            self._recording_ended(msg, now)
        elif isinstance(msg, sip.LegAnswered):
            self._leg_answered(msg.leg, now)
        elif isinstance(msg, sip.LegEnded):
            self._leg_ended(msg, now)
        elif _CallConfirmed is not None and isinstance(msg, _CallConfirmed):
            call = self._caller_of(msg.leg)
            if call is not None:
                call.confirmed = True
        elif isinstance(msg, m.Dialled):
            self._dialled(msg, now)
        elif isinstance(msg, m.Bridged):
            self._bridged(msg, now)
        elif isinstance(msg, m.PromptReady):
            self._prompt_ready(msg, now)
        elif isinstance(msg, LookupResult):
            self._lookup_done(msg, now)
        elif isinstance(msg, m.Registrations):
            self._registrations(msg.names, now)
        elif isinstance(msg, m.TrunkReachability):
            self.trunk_state[msg.trunk] = msg.up
        elif isinstance(msg, m.AgentCommand):
            self._agent_command(msg, now)
        elif isinstance(msg, m.FlowReady):
            old = self.flow
            self.flow = msg.flow
            log.info("flow reloaded (%s): %s version %s, was %s version %s; %d prompt(s) ready "
                     "in %.1f s; calls in progress keep theirs", msg.trigger, msg.flow.name,
                     msg.flow.version, old.name, old.version, msg.prompts, msg.seconds)
            self._emit(m.FlowInService(msg.flow.name, msg.flow.version, reloaded=True))
        else:
            log.debug("message %s ignored", type(msg).__name__)

    def _emit(self, effect: m.Effect) -> None:
        self._fx.append(effect)

    def _save(self, record: CallRecord) -> None:
        self._emit(m.SaveRecord(dataclasses.replace(record)))

    def _ref(self) -> str:
        self._next_ref += 1
        return f"D{self._next_ref}"

    def _caller_of(self, leg: str) -> CallerCall | None:
        key = self.by_sip.get(leg)
        return self.calls.get(key) if key is not None else None

    def _leg_of(self, sip_leg: str) -> Leg | None:
        key = self.by_sip.get(sip_leg)
        return self.legs.get(key) if key is not None else None

    # -- the machines' transitions: the only places phases change ------------------------------
    def _to(self, call: CallerCall, new: CallPhase, why: str) -> None:
        old = call.phase
        if old is new:
            return
        call.phase = new
        log.debug("call %s: %s -> %s (%s)", call.call_id, old.value, new.value, why)
        self._count("caller", old.value, new.value)

    def _leg_to(self, leg: Leg, new: LegPhase, why: str) -> None:
        old = leg.phase
        if old is new:
            return
        leg.phase = new
        log.debug("leg %s (%s of %s%s): %s -> %s (%s)", leg.ref, leg.role.value, leg.call_id,
                  f", agent {leg.agent}" if leg.agent else "", old.value, new.value, why)
        self._count(f"{leg.role.value}_leg", old.value, new.value)

    def _cb_to(self, cb: Callback, new: CallbackPhase, why: str) -> None:
        old = cb.phase
        if old is new:
            return
        cb.phase = new
        log.debug("callback %s: %s -> %s (%s)", cb.call_id, old.value, new.value, why)
        self._count("callback", old.value, new.value)

    def _count(self, machine: str, old: str, new: str) -> None:
        key = (machine, old, new)
        self.transitions[key] = self.transitions.get(key, 0) + 1
        self._emit(m.CountTransition(machine, old, new))

    # -- incoming calls ------------------------------------------------------------------------
    def _incoming(self, event: sip.IncomingCall, now: float) -> None:
        if event.trunk == AGENTS_TRUNK:
            self._feature_call(event, now)
            return
        call_id = self.new_id()
        flow = self.flow
        started = self.wall(now)
        record = CallRecord(call_id=call_id, started_at=started, caller=event.caller,
                            called=event.called, trunk=event.trunk, source=event.source,
                            flow=flow.name, flow_version=flow.version)
        session = CallSession(flow, call_id, event.caller, event.called,
                              started_at=dt.datetime.fromtimestamp(started, dt.UTC),
                              overrides=self.overrides)
        call = CallerCall(call_id, event.leg, event.trunk, session, record)
        self.calls[call_id] = call
        self.by_sip[event.leg] = call_id
        log.info("call %s from %s on trunk %s to %s: flow %s", call_id,
                 event.caller or "withheld", event.trunk, event.called or "?", flow.name)
        self._save(record)
        self._session(call, session.start(now), now)

    def _feature_call(self, event: sip.IncomingCall, now: float) -> None:
        """An agent dialling a feature code (*41 login ...) from their own phone."""
        command = self.config.feature_codes.action_for(event.called)
        agent = self.config.agent_for(event.source, event.caller)
        if command is None or agent is None:
            log.warning("refused call from agent phone %s (%s) to %s: only feature codes are "
                        "taken from agents' phones", event.source, event.caller or "?",
                        event.called or "?")
            self._emit(m.HangupLeg(event.leg, 403))
            self._refused(sip.CallRefused(event.source, event.caller, event.called, 403,
                                          "Forbidden", event.trunk), now)
            return
        self._agent_command(m.AgentCommand(agent.name, command,
                                           "break" if command == "pause" else "",
                                           f"phone {event.source}"), now)
        self._emit(m.AnswerLeg(event.leg))
        files = self.files_for(resolve(NOTICES[command], "en"))
        if files is None:
            log.error("the confirmation of feature code %s is not rendered", command)
            self._emit(m.HangupLeg(event.leg))
            return
        self.feature_legs.add(event.leg)
        self._emit(m.Play(event.leg, files, FEATURE_TOKEN))

    def _refused(self, event: sip.CallRefused, now: float) -> None:
        at = self.wall(now)
        record = CallRecord(call_id=self.new_id(), started_at=at, caller=event.caller,
                            called=event.called, trunk=event.trunk, source=event.source)
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
        elif isinstance(action, RequestCallback):
            self._request_callback(call, now)
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

    # -- timers --------------------------------------------------------------------------------
    def _timers(self, now: float) -> None:
        for call in list(self.calls.values()):
            deadline = call.session.next_deadline()
            if call.phase is CallPhase.IVR and deadline is not None and deadline <= now:
                self._session(call, call.session.handle(TimerFired(), now), now)
            if call.transfer_deadline is not None and call.transfer_deadline <= now:
                self._transfer_timed_out(call, now)
        deadline = self.router.next_deadline()
        if deadline is not None and deadline <= now:
            self._routing(self.router.on_timer(now), now)

    # -- queues --------------------------------------------------------------------------------
    def _enqueue(self, call: CallerCall, action: Enqueue, now: float) -> None:
        self._to(call, CallPhase.QUEUED, f"queue {action.queue}")
        call.record.queue = action.queue
        call.record.queued_at = self.wall(now)
        call.record.ivr_path = call.session.path_text()
        self._save(call.record)
        self._emit(m.Play(call.leg, (self.music_on_hold,), MOH_TOKEN, loop=True))
        self._routing(self.router.join(call.call_id, action.queue, now, action.priority), now)

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

    def _cancel(self, ref: str, why: str) -> None:
        """The switchboard no longer wants this leg: hang it up (now, or once it exists)."""
        leg = self.legs.get(ref)
        if leg is None or not leg.live:
            return
        self._leg_to(leg, LegPhase.CANCELLED, why)
        if leg.sip is not None:
            self._emit(m.HangupLeg(leg.sip))

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
        self._leg_to(leg, LegPhase.BRIDGING, "answered")
        call.agent_ref = leg.ref
        self.bridging[(call.leg, leg.sip)] = leg.ref
        self._emit(m.StopPlay(call.leg))
        self._emit(m.Bridge(call.leg, leg.sip))

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
        self._save(call.record)
        self._routing(actions, now)

    def _agent_key(self, leg: Leg, digit: str, now: float) -> None:
        """A key from a connected agent: the escalation feature code sends the caller on."""
        call = self.calls.get(leg.call_id)
        if call is None or call.agent_ref != leg.ref or call.phase is not CallPhase.CONNECTED:
            return
        code = self.config.feature_codes.escalate
        call.agent_keys = (call.agent_keys + digit)[-len(code):]
        if call.agent_keys != code:
            return
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
            self._routing(self.router.finished(call.call_id, now), now)
            self._emit(m.HangupLeg(call.leg))
        elif call.ringing.get(leg.agent) == leg.ref:
            del call.ringing[leg.agent]
            if call.agent_ref == leg.ref:
                call.agent_ref = None
            self._routing(self.router.ring_failed(call.call_id, leg.agent, now,
                                                  f"{status} {reason}".strip()), now)

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
        """How a caller's call ended; routing is told of a caller who left."""
        phase = call.phase
        if self.stopping:
            if phase is CallPhase.QUEUED:
                self._routing(self.router.leave(call.call_id, now), now)
            elif phase is CallPhase.CONNECTED and not call.agent_hung_up:
                self._routing(self.router.finished(call.call_id, now), now)
            return "interrupted", "switchboard stopped"
        if self.expect_ack and not call.confirmed and call.record.answered_at is not None:
            if phase is CallPhase.QUEUED:
                self._routing(self.router.leave(call.call_id, now), now)
            elif phase is CallPhase.CONNECTED and not call.agent_hung_up:
                self._routing(self.router.finished(call.call_id, now), now)
            return "failed", "the caller's side never acknowledged the answer (no ACK)"
        if phase is CallPhase.TRANSFERRED:
            return "completed", f"transferred to {call.transfer_to}"
        if phase is CallPhase.TRANSFERRING:
            return "abandoned_ivr", f"caller hung up during transfer to {call.transfer_to}"
        if call.voicemail_left:
            return "completed", "voicemail left, caller hung up"
        if call.callback_requested:
            self._start_callback(call, now)
            return "callback_requested", f"call back {call.record.caller}"
        if phase is CallPhase.QUEUED:
            self._routing(self.router.leave(call.call_id, now), now)
            return "abandoned_queue", "caller hung up while waiting"
        if phase is CallPhase.CONNECTED:
            if not call.agent_hung_up:
                self._routing(self.router.finished(call.call_id, now), now)
                return "completed", "caller hung up"
            return "completed", "agent hung up"
        if call.session.state == "ended" or call.hangup_reason:
            reason = call.session.end_reason or call.hangup_reason
            if reason == "flow_error":
                return "failed", reason
            if reason in GAVE_UP_REASONS or call.session.gave_up_at is not None:
                return "ivr_gave_up", reason if reason in GAVE_UP_REASONS else \
                    f"{reason} after {call.session.gave_up_at} ran out of tries"
            return "completed", reason
        return "abandoned_ivr", f"caller hung up at {call.session.node}"

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
        self._leg_to(leg, LegPhase.BRIDGING, "answered")
        self.bridging[(call.leg, leg.sip)] = leg.ref
        self._emit(m.StopPlay(call.leg))
        self._emit(m.Bridge(call.leg, leg.sip))

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

    # -- callbacks -----------------------------------------------------------------------------
    def _request_callback(self, call: CallerCall, now: float) -> None:
        if self.config.callback_target(call.record.caller) is None:
            log.error("call %s: caller asked for a callback but ivr.yaml has no 'callback' URI "
                      "(or the number cannot be dialled); the caller keeps waiting",
                      call.call_id)
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
                 leg.agent, cb.number)
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
        self._leg_to(leg, LegPhase.BRIDGING, "answered")
        self.bridging[(agent.sip, leg.sip)] = leg.ref
        self._emit(m.StopPlay(agent.sip))
        self._emit(m.Bridge(agent.sip, leg.sip))

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
                 cb.number, cb.agent)

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
        log.info("callback %s to %s ended: %s (%s)", cb.record.call_id, cb.number, outcome,
                 reason)

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

    # -- checks, for tests ---------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Disagreements between the call machines and the router (empty: all agree)."""
        out: list[str] = []
        for call_id, caller in self.router.waiting.items():
            call = self.calls.get(call_id)
            cb = self.callbacks.get(call_id)
            if call is None and cb is None:
                out.append(f"router has waiting caller {call_id} that no call holds")
            elif call is not None and call.phase not in (CallPhase.QUEUED, CallPhase.IVR):
                out.append(f"router has {call_id} waiting, the call is {call.phase.value}")
            ringing = call.ringing if call is not None else cb.ringing if cb else {}
            live = {a for a, ref in ringing.items() if ref in self.legs and self.legs[ref].live}
            if set(caller.ringing) != live:
                out.append(f"{call_id}: router rings {sorted(caller.ringing)}, "
                           f"driver {sorted(live)}")
        for call_id in self.router.connected:
            call = self.calls.get(call_id)
            cb = self.callbacks.get(call_id)
            if call is not None and call.phase is not CallPhase.CONNECTED:
                out.append(f"router has {call_id} connected, the call is {call.phase.value}")
            if call is None and cb is None:
                out.append(f"router has connected caller {call_id} that no call holds")
        for call in self.calls.values():
            if call.phase is CallPhase.QUEUED and call.call_id not in self.router.waiting:
                out.append(f"call {call.call_id} is queued, the router does not have it")
            if call.phase is CallPhase.CONNECTED and call.call_id not in self.router.connected:
                out.append(f"call {call.call_id} is connected, the router does not have it")
        busy: dict[str, int] = {}
        for leg in self.legs.values():
            if leg.role is LegRole.AGENT and leg.phase in (LegPhase.BRIDGING,
                                                           LegPhase.CONNECTED):
                busy[leg.agent] = busy.get(leg.agent, 0) + 1
        out += [f"agent {a} has {n} calls" for a, n in busy.items() if n > 1]
        return out


GAVE_UP_REASONS = frozenset({"menu_failures", "collect_failures"})
"""Ends where the IVR gave up on the caller (too many invalid keys or timeouts)."""

_CallConfirmed: Any = getattr(sip, "CallConfirmed", None)


def _uri_host(uri: str) -> str:
    host = uri.split("@", 1)[-1]
    return host.split(";", 1)[0].rsplit(":", 1)[0].strip("[]<>")


def dial_failure(status: int, reason: str) -> str:
    """A short reason for an outgoing leg that ended unanswered."""
    if status in (486, 600):
        return "busy"
    if status in (408, 480, 487):
        return "no answer"
    if status in (403, 603):
        return "declined"
    if status in (404, 604):
        return "not found"
    return f"{status} {reason}".strip()

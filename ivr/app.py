"""The driver: one loop thread that owns the SIP stack, the call sessions and the routing state.

Each turn of the loop polls the SIP stack for events, feeds them to the call sessions and the
router with the current time, carries out the actions they return, fires due timers, and
publishes a snapshot for the metrics thread. Every arrow is a plain call on this one thread.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import queue
import signal
import socket
import time
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ivr.config import Config
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
from ivr.flow import DocumentError, Flow
from ivr.flow.model import Say
from ivr.lookup import LookupResult, Lookups, redact_url
from ivr.metrics import Metrics, Snapshot
from ivr.prompts import PromptError, PromptLibrary
from ivr.retention import purge_older_than
from ivr.sip.events import (
    CallRefused,
    DigitReceived,
    IncomingCall,
    LegAnswered,
    LegEnded,
    PlaybackEnded,
    RecordingEnded,
    SipEvent,
)
from ivr.store import CallRecord, CallStore, QueueEventRow
from ivr.watch import FilesState, FileWatcher, files_state, flow_files
from routing import RingAgent, Router, StopRinging
from routing.acd import AgentSpec, Announce, LeaveQueue, MovedQueue, RoutingAction

log = logging.getLogger("ivr.app")

MOH_TOKEN = 0
"""Token of the music-on-hold player (looped, never reports an end)."""
NOTICE_TOKEN = -1
"""Token of a switchboard notice to a waiting caller (announcement, escalation message)."""
AGENT_COMMAND_POLL = 1.0
"""Seconds between looks at agent commands from 'ivr agent' (and other processes)."""

ESCALATION_NOTICE = (Say({
    "it": "La stiamo passando a un collega esperto. Resti in linea, per favore.",
    "en": "We are passing your call to a specialist. Please stay on the line.",
    "*": "We are passing your call to a specialist. Please stay on the line.",
}),)
FEATURE_DONE = {
    "login": "Agent {agent}: logged in.", "logout": "Agent {agent}: logged out.",
    "pause": "Agent {agent}: paused.", "unpause": "Agent {agent}: available.",
}


class Sip(Protocol):
    """What the driver needs of the SIP layer (:class:`ivr.sip.stack.SipStack`)."""

    def poll(self, timeout_ms: int) -> list[SipEvent]: ...
    def answer(self, leg_id: str) -> None: ...
    def dial(self, uri: str) -> str | None: ...
    def hangup(self, leg_id: str, status: int = 0) -> None: ...
    def play(self, leg_id: str, path: str, token: int, loop: bool = False) -> None: ...
    def stop_playback(self, leg_id: str) -> None: ...
    def bridge(self, a: str, b: str) -> bool: ...
    def start_recording(self, leg_id: str, path: str, token: int, max_seconds: float,
                        silence_seconds: float, beep: str | None = None) -> None: ...
    def stop_recording(self, leg_id: str, reason: str = "key") -> None: ...


@dataclass
class ActiveCall:
    call_id: str
    leg: str
    trunk: str
    session: CallSession
    record: CallRecord
    phase: str = "ivr"
    """'ivr', 'queued' or 'connected'."""
    agent_leg: str | None = None
    """The connected agent's leg."""
    agent: str | None = None
    ringing: dict[str, str] = field(default_factory=dict)
    """Agent -> leg, for every agent phone ringing for this caller (more than one: ring-all)."""
    callback_requested: bool = False
    agent_keys: str = ""
    """Keys the connected agent pressed, for the escalation feature code."""
    routing_done: bool = False
    recording: int | None = None
    """Token of the voicemail being recorded."""
    voicemail_left: bool = False
    """The caller hung up while leaving a message (which is kept)."""
    transfer_leg: str | None = None
    transfer_to: str = ""
    transfer_deadline: float | None = None
    """While the transfer destination rings: when it counts as not answering."""


@dataclass
class _Callback:
    """A caller who asked to be called back: their place in the queue, then the call out."""

    call_id: str
    """The router's id: the original call's."""
    number: str
    trunk: str
    record: CallRecord
    ringing: dict[str, str] = field(default_factory=dict)
    agent: str | None = None
    agent_leg: str | None = None
    customer_leg: str | None = None
    connected: bool = False


@dataclass
class _AgentLeg:
    call_id: str
    agent: str
    cancelled: bool = False


@dataclass
class Switchboard:
    """Wires SIP, call sessions, routing, the call store and metrics. See the module doc."""

    config: Config
    flow: Flow
    sip: Sip
    store: CallStore
    metrics: Metrics
    prompts: PromptLibrary
    music_on_hold: str
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    calls: dict[str, ActiveCall] = field(default_factory=dict)
    stopping: bool = False
    lookups: Lookups = field(default_factory=Lookups)
    """Worker threads for lookup nodes; their results come back through an inbox."""
    overrides: dict[str, str] | None = None
    """Hours override switches (name -> 'open' / 'closed'); None: load them from the store."""
    transfer_timeout: float = 30.0
    """Seconds a transfer destination may ring before the transfer fails ('no answer')."""
    trunk_state: dict[str, bool] = field(default_factory=dict)
    """Trunk -> the gateway answered the last OPTIONS ping (trunks with a ping only)."""
    registering: frozenset[str] = frozenset()
    """Agents whose phones register with the SIP edge (the others have fixed addresses)."""

    def __post_init__(self) -> None:
        agents = [AgentSpec(a.name, a.skills, a.max_no_answer)
                  for a in self.config.agents.values()]
        now = self.clock()
        self.router = Router(self.config.queues.values(), now=now, agents=agents)
        self._feature_legs: dict[str, int] = {}
        self.callbacks: dict[str, _Callback] = {}
        """Callers waiting to be called back, by the router's call id."""
        self._customer_legs: dict[str, str] = {}
        """Legs calling a caller back -> call id."""
        """Legs of agents' feature-code calls -> the token of their confirmation."""
        self._next_command_check = 0.0
        for name, (state, reason) in sorted(self.store.agent_states().items()):
            if name not in self.router.agents:
                continue
            if state == "logged_out":
                self.router.logout(name, now)
            elif state == "paused":
                self.router.pause(name, now, reason or "break")
            log.info("agent %s restored as %s%s", name, state, f" ({reason})" if reason else "")
        self.router.drain_log()  # restoring is not news for the queue log
        self._by_leg: dict[str, str] = {}
        self._agent_legs: dict[str, _AgentLeg] = {}
        self._transfer_legs: dict[str, str] = {}
        """Outgoing legs of transfers -> call id."""
        if self.overrides is None:
            self.overrides = self.store.overrides()
        for name, state in sorted(self.overrides.items()):
            log.warning("hours override %s is set to %s (a set_override node with state auto "
                        "releases it)", name, state)

    # -- admission (called by the SIP layer inside its INVITE callback) -----------------------
    def accept_source(self, address: str) -> tuple[str | None, int]:
        trunk = self.config.trunk_for(address)
        if trunk is None:
            if any(_uri_host(a.uri) == address for a in self.config.agents.values()):
                return AGENTS_TRUNK, 200  # an agent's phone: feature codes only (checked later)
            return None, 403
        if self.stopping:
            return trunk.name, 503
        busy = sum(1 for c in self.calls.values() if c.trunk == trunk.name)
        return trunk.name, 486 if busy >= trunk.lines else 200

    # -- the loop ----------------------------------------------------------------------------
    def step(self, max_wait_ms: int = 10) -> None:
        """One turn: SIP events, due timers, snapshot."""
        now = self.clock()
        deadline = self._next_deadline()
        wait = max_wait_ms if deadline is None else max(0, min(max_wait_ms,
                                                               int((deadline - now) * 1000)))
        for event in self.sip.poll(wait):
            self._on_sip(event)
        for result in self.lookups.drain():
            self._lookup_done(result)
        self._fire_timers(self.clock())
        if self.clock() >= self._next_command_check:
            self._next_command_check = self.clock() + AGENT_COMMAND_POLL
            for agent, command, reason in self.store.take_agent_commands(self.wall()):
                self.agent_command(agent, command, reason, source="ivr agent")
        self._record_queue_events()
        self.store.flush()
        self._publish()

    def _record_queue_events(self) -> None:
        """The router's queue log goes to the store with the call records, and agent states
        that changed are saved so that they survive a restart."""
        events = self.router.drain_log()
        if not events:
            return
        offset = self.wall() - self.clock()
        rows = [QueueEventRow(round(e.at + offset, 3), e.kind, e.queue, e.call_id, e.agent,
                              dict(e.detail)) for e in events]
        self.store.add_events(rows)
        for row in rows:
            self.metrics.queue_event(row.kind, row.queue, row.at, row.detail)
        for e in events:
            if e.kind in ("login", "logout", "pause", "unpause") and e.agent:
                agent = self.router.agents[e.agent]
                state = "paused" if agent.state == "paused" else \
                    "logged_out" if agent.state == "logged_out" else "available"
                self.store.set_agent_state(e.agent, state, agent.pause_reason, e.at + offset)

    def registrations(self, names: frozenset[str]) -> None:
        """The agents whose phones are registered with the SIP edge now."""
        now = self.clock()
        for agent in sorted(self.registering & set(self.router.agents)):
            reachable = agent in names
            if self.router.agents[agent].reachable != reachable:
                log.info("agent %s: phone %s", agent,
                         "registered" if reachable else "no longer registered")
            self._routing_actions(self.router.set_reachable(agent, reachable, now))

    def agent_command(self, agent: str, command: str, reason: str = "",
                      source: str = "") -> bool:
        """Log in, log out, pause or unpause an agent; False if the name is unknown."""
        if agent not in self.router.agents:
            log.warning("agent command %s for unknown agent '%s' ignored", command, agent)
            return False
        now = self.clock()
        if command == "pause":
            actions = self.router.pause(agent, now, reason or "break")
        else:
            actions = getattr(self.router, command)(agent, now)
        log.info("agent %s: %s%s%s -> %s", agent, command, f" ({reason})" if reason else "",
                 f" from {source}" if source else "", self.router.agents[agent].state)
        self._routing_actions(actions)
        return True

    def _next_deadline(self) -> float | None:
        times = [d for c in self.calls.values() if (d := c.session.next_deadline()) is not None]
        times += [c.transfer_deadline for c in self.calls.values()
                  if c.transfer_deadline is not None]
        routing = self.router.next_deadline()
        if routing is not None:
            times.append(routing)
        return min(times) if times else None

    def _fire_timers(self, now: float) -> None:
        for call in list(self.calls.values()):
            deadline = call.session.next_deadline()
            if call.phase == "ivr" and deadline is not None and deadline <= now:
                self._session_actions(call, call.session.handle(TimerFired(), now))
            if call.transfer_deadline is not None and call.transfer_deadline <= now:
                self._transfer_timed_out(call)
        deadline = self.router.next_deadline()
        if deadline is not None and deadline <= now:
            self._routing_actions(self.router.on_timer(now))

    def _publish(self) -> None:
        now = self.clock()
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
        self.metrics.publish(Snapshot(len(self.calls), waiting, agents, longest, by_queue,
                                      registered, dict(self.trunk_state)))

    # -- SIP events ----------------------------------------------------------------------------
    def _on_sip(self, event: SipEvent) -> None:
        if isinstance(event, IncomingCall):
            self._incoming(event)
        elif isinstance(event, CallRefused):
            self._refused(event)
        elif isinstance(event, DigitReceived) and event.leg in self._agent_legs:
            self._agent_key(event)
        elif isinstance(event, DigitReceived):
            call = self._call_of(event.leg)
            if call is not None and call.phase == "queued":
                self._session_actions(call, call.session.handle(DigitPressed(event.digit),
                                                                self.clock()))
            elif call is not None and call.phase == "ivr":
                log.info("call %s: key %s (%s)", call.call_id, event.digit, event.method)
                if call.recording is not None:
                    self.sip.stop_recording(call.leg, "key")
                self._session_actions(call, call.session.handle(DigitPressed(event.digit),
                                                                self.clock()))
        elif isinstance(event, PlaybackEnded) and event.leg in self._feature_legs:
            self.sip.hangup(event.leg)
        elif isinstance(event, PlaybackEnded):
            call = self._call_of(event.leg)
            if call is not None and call.phase == "queued" and event.token == NOTICE_TOKEN:
                self.sip.play(call.leg, self.music_on_hold, MOH_TOKEN, loop=True)
            elif call is not None and call.phase == "ivr":
                self._session_actions(call, call.session.handle(PlaybackFinished(event.token),
                                                                self.clock()))
        elif isinstance(event, RecordingEnded):
            self._recording_ended(event)
        elif isinstance(event, LegAnswered):
            if event.leg in self._customer_legs:
                self._customer_answered(event.leg)
            elif event.leg in self._transfer_legs:
                self._transfer_answered(event.leg)
            else:
                self._agent_answered(event.leg)
        elif isinstance(event, LegEnded):
            if event.leg in self._feature_legs:
                del self._feature_legs[event.leg]
            elif event.leg in self._customer_legs:
                self._customer_leg_ended(event)
            elif event.leg in self._agent_legs:
                self._agent_leg_ended(event)
            elif event.leg in self._transfer_legs:
                self._transfer_leg_ended(event)
            else:
                self._caller_ended(event)

    def _call_of(self, leg: str) -> ActiveCall | None:
        call_id = self._by_leg.get(leg)
        return self.calls.get(call_id) if call_id else None

    def _incoming(self, event: IncomingCall) -> None:
        if self._feature_call(event):
            return
        call_id = uuid.uuid4().hex[:16]
        flow = self.flow
        record = CallRecord(call_id=call_id, started_at=self.wall(), caller=event.caller,
                            called=event.called, trunk=event.trunk, source=event.source,
                            flow=flow.name, flow_version=flow.version)
        session = CallSession(flow, call_id, event.caller, event.called,
                              started_at=dt.datetime.fromtimestamp(record.started_at, dt.UTC),
                              overrides=self.overrides)
        call = ActiveCall(call_id, event.leg, event.trunk, session, record)
        self.calls[call_id] = call
        self._by_leg[event.leg] = call_id
        log.info("call %s from %s on trunk %s to %s: flow %s", call_id,
                 event.caller or "withheld", event.trunk, event.called or "?", flow.name)
        self.store.save(record)
        self._session_actions(call, session.start(self.clock()))

    def _feature_call(self, event: IncomingCall) -> bool:
        """An agent dialling a feature code (*41 login ...) from their phone: True if handled.

        Only a configured agent's phone (the URI's user and host) may use them; a phone of an
        agent dialling anything else from a non-trunk address is refused.
        """
        command = self.config.feature_codes.action_for(event.called)
        agent = self.config.agent_for(event.source, event.caller)
        if command is None or agent is None:
            if event.trunk != AGENTS_TRUNK:
                return False
            log.warning("refused call from agent phone %s (%s) to %s: only feature codes are "
                        "taken from agents' phones", event.source, event.caller or "?",
                        event.called or "?")
            self.sip.hangup(event.leg, 403)
            self._refused(CallRefused(event.source, event.caller, event.called, 403,
                                      "Forbidden", event.trunk))
            return True
        self.agent_command(agent.name, command, "break" if command == "pause" else "",
                           source=f"phone {event.source}")
        self.sip.answer(event.leg)
        text = FEATURE_DONE[command].format(agent=agent.name)
        try:
            path = self.prompts.say(text, "en")
        except (PromptError, OSError) as exc:
            log.error("cannot render the feature code confirmation: %s", exc)
            self.sip.hangup(event.leg)
            return True
        self._feature_legs[event.leg] = 1
        self.sip.play(event.leg, str(path), 1)
        return True

    def _refused(self, event: CallRefused) -> None:
        now = self.wall()
        record = CallRecord(call_id=uuid.uuid4().hex[:16], started_at=now, caller=event.caller,
                            called=event.called, trunk=event.trunk, source=event.source)
        record.finish(now, "refused", f"{event.status} {event.reason}")
        self.store.save(record)
        self.metrics.call_ended(event.trunk, "refused")

    # -- what sessions ask for -----------------------------------------------------------------
    def _session_actions(self, call: ActiveCall, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Answer):
                self.sip.answer(call.leg)
                call.record.answered_at = self.wall()
            elif isinstance(action, PlayPrompt):
                try:
                    path = self.prompts.sequence(action.pieces)
                except (PromptError, OSError) as exc:
                    log.error("call %s: cannot play prompt: %s", call.call_id, exc)
                    self._session_actions(call, call.session.handle(
                        PlaybackFinished(action.play_id), self.clock()))
                    continue
                self.sip.play(call.leg, str(path), action.play_id)
            elif isinstance(action, StopPlayback):
                self.sip.stop_playback(call.leg)
            elif isinstance(action, Enqueue):
                self._enqueue(call, action)
            elif isinstance(action, HangupCall):
                log.info("call %s: flow ends the call (%s)", call.call_id, action.reason)
                self.sip.hangup(call.leg)
            elif isinstance(action, HttpLookup):
                log.info("call %s: lookup %d: GET %s (timeout %g s)", call.call_id,
                         action.request_id, redact_url(action.url), action.timeout)
                self.lookups.submit(call.call_id, action.request_id, action.url, action.timeout)
            elif isinstance(action, StartRecording):
                self._start_recording(call, action)
            elif isinstance(action, TransferCall):
                self._transfer(call, action.destination)
            elif isinstance(action, SetOverrideState):
                self._set_override(call, action)
            elif isinstance(action, RequestCallback):
                if self.config.callback_target(call.record.caller) is None:
                    log.error("call %s: caller asked for a callback but ivr.yaml has no "
                              "'callback' URI (or the number %s cannot be dialled); the "
                              "caller keeps waiting", call.call_id, call.record.caller)
                    continue
                call.callback_requested = True
                call.phase = "ivr"  # the confirmation plays, then the flow hangs up
                log.info("call %s: caller asks to be called back; place in queue %s kept",
                         call.call_id, call.record.queue)
                self._routing_actions(self.router.request_callback(call.call_id, self.clock(),
                                                                   ready=False))
            elif isinstance(action, LeaveQueueRequest):
                log.info("call %s: caller left queue %s by key", call.call_id, call.record.queue)
                call.phase = "ivr"
                self.sip.stop_playback(call.leg)
                self._routing_actions(self.router.leave(call.call_id, self.clock(), "key"))

    # -- lookups, overrides ----------------------------------------------------------------------
    def _lookup_done(self, result: LookupResult) -> None:
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
        if call.phase == "ivr":
            self._session_actions(call, call.session.handle(
                LookupFinished(result.request_id, result.data, result.error), self.clock()))

    def _set_override(self, call: ActiveCall, action: SetOverrideState) -> None:
        assert self.overrides is not None
        if action.state == "auto":
            self.overrides.pop(action.override, None)
        else:
            self.overrides[action.override] = action.state
        self.store.set_override(action.override, action.state, self.wall())
        log.warning("hours override %s set to %s by call %s", action.override, action.state,
                    call.call_id)

    # -- voicemail -------------------------------------------------------------------------------
    def _start_recording(self, call: ActiveCall, action: StartRecording) -> None:
        folder = self.config.recordings
        path = folder / f"{call.call_id}.wav"
        if path.exists():  # a second message in the same call
            path = folder / f"{call.call_id}-{action.recording_id}.wav"
        beep = None
        if action.beep:
            try:
                beep = str(self._beep_file())
            except OSError as exc:
                log.error("call %s: cannot make the beep: %s; recording without it",
                          call.call_id, exc)
        call.recording = action.recording_id
        log.info("call %s: recording a message (at most %g s, ends after %g s of silence)",
                 call.call_id, action.max_seconds, action.silence_seconds)
        self.sip.start_recording(call.leg, str(path), action.recording_id, action.max_seconds,
                                 action.silence_seconds, beep)

    def _recording_ended(self, event: RecordingEnded) -> None:
        call = self._call_of(event.leg)
        if call is None or call.recording != event.token:
            return
        call.recording = None
        if event.path and event.seconds > 0:
            call.record.voicemail_path = event.path
            self.store.save(call.record)
            log.info("call %s: message of %.1f s recorded (%s)", call.call_id, event.seconds,
                     event.reason)
        else:
            log.warning("call %s: no message recorded (%s)", call.call_id, event.reason)
        if event.reason == "hangup":
            call.voicemail_left = call.record.voicemail_path is not None
            return  # the call ends next: the flow goes no further
        self._session_actions(call, call.session.handle(
            RecordingFinished(event.token, event.path, event.seconds, event.reason),
            self.clock()))

    def _beep_file(self) -> Path:
        """The beep before a message: 0.4 s of 1 kHz, made once into the prompt cache."""
        target = self.config.prompt_cache / "beep-1.wav"
        if target.exists():
            return target
        rate, n = 8000, 3200
        frames = bytearray()
        for i in range(n):
            envelope = min(1.0, i / 80, (n - i) / 80)
            frames += int(0.3 * 32767 * envelope * math.sin(2 * math.pi * 1000 * i / rate)
                          ).to_bytes(2, "little", signed=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}.wav")
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(bytes(frames))
        tmp.replace(target)
        return target

    # -- transfers -------------------------------------------------------------------------------
    def _transfer(self, call: ActiveCall, destination: str) -> None:
        uri = self.config.transfer_target(destination)
        if uri is None:
            log.warning("call %s: transfer to '%s' refused: not an extension and no dial_out "
                        "rule allows it", call.call_id, destination)
            self._transfer_failed(call, "not allowed")
            return
        log.info("call %s: transferring to %s (%s)", call.call_id, destination, uri)
        leg = self.sip.dial(uri)
        if leg is None:
            self._transfer_failed(call, "cannot dial")
            return
        call.phase = "transferring"
        call.transfer_leg = leg
        call.transfer_to = destination
        call.transfer_deadline = self.clock() + self.transfer_timeout
        self._transfer_legs[leg] = call.call_id
        self.sip.play(call.leg, self.music_on_hold, MOH_TOKEN, loop=True)

    def _transfer_failed(self, call: ActiveCall, reason: str) -> None:
        if call.phase == "transferring":
            self.sip.stop_playback(call.leg)
        call.phase = "ivr"
        call.transfer_leg = None
        call.transfer_deadline = None
        self._session_actions(call, call.session.handle(TransferFinished(False, reason),
                                                        self.clock()))

    def _transfer_answered(self, leg: str) -> None:
        call = self.calls.get(self._transfer_legs[leg])
        if call is None or call.transfer_leg != leg:
            self.sip.hangup(leg)
            return
        if not self.sip.bridge(call.leg, leg):
            log.warning("call %s: %s answered but the call cannot be put through",
                        call.call_id, call.transfer_to)
            self._transfer_legs.pop(leg, None)
            self.sip.hangup(leg)
            self._transfer_failed(call, "cannot connect")
            return
        call.phase = "transferred"
        call.transfer_deadline = None
        call.record.transferred_to = call.transfer_to
        call.record.connected_at = self.wall()
        call.record.ivr_path = call.session.path_text()
        log.info("call %s: transferred to %s", call.call_id, call.transfer_to)
        self.store.save(call.record)
        self._session_actions(call, call.session.handle(TransferFinished(True), self.clock()))

    def _transfer_leg_ended(self, event: LegEnded) -> None:
        call = self.calls.get(self._transfer_legs.pop(event.leg))
        if call is None or call.transfer_leg != event.leg:
            return
        call.transfer_leg = None
        if call.phase == "transferred":
            log.info("call %s: %s hung up", call.call_id, call.transfer_to)
            self.sip.hangup(call.leg)
            return
        reason = _dial_failure(event.status, event.reason)
        log.info("call %s: transfer to %s failed: %s", call.call_id, call.transfer_to, reason)
        self._transfer_failed(call, reason)

    def _transfer_timed_out(self, call: ActiveCall) -> None:
        leg = call.transfer_leg
        log.info("call %s: transfer to %s not answered in %g s", call.call_id, call.transfer_to,
                 self.transfer_timeout)
        if leg is not None:
            self._transfer_legs.pop(leg, None)
            self.sip.hangup(leg)
        self._transfer_failed(call, "no answer")

    def _enqueue(self, call: ActiveCall, action: Enqueue) -> None:
        call.phase = "queued"
        call.record.queue = action.queue
        call.record.queued_at = self.wall()
        call.record.ivr_path = call.session.path_text()
        self.sip.play(call.leg, self.music_on_hold, MOH_TOKEN, loop=True)
        self._routing_actions(self.router.join(call.call_id, action.queue, self.clock(),
                                               action.priority))

    # -- routing -------------------------------------------------------------------------------
    def _routing_actions(self, actions: list[RoutingAction]) -> None:
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, RingAgent):
                pending += self._ring(action)
                continue
            if action.call_id in self.callbacks and action.call_id not in self.calls:
                self._callback_routing(self.callbacks[action.call_id], action)
                continue
            call = self.calls.get(action.call_id)
            if call is None:
                continue
            if isinstance(action, StopRinging):
                leg = call.ringing.pop(action.agent, None)
                if leg is not None:
                    self._agent_legs[leg].cancelled = True
                    self.sip.hangup(leg)
            elif isinstance(action, Announce):
                self._notice(call, call.session.announcement(action.position,
                                                             action.expected_wait))
            elif isinstance(action, LeaveQueue):
                log.info("call %s: leaves queue %s unserved (%s)", call.call_id,
                         call.record.queue, action.reason)
                call.phase = "ivr"
                self.sip.stop_playback(call.leg)
                self._session_actions(call, call.session.handle(QueueLeft(action.reason),
                                                                self.clock()))
            elif isinstance(action, MovedQueue):
                log.info("call %s: moved from queue %s to %s (escalation by %s)", call.call_id,
                         action.from_queue, action.to_queue, action.kind)
                call.record.queue = action.to_queue

    def _notice(self, call: ActiveCall, actions: list[Action]) -> None:
        """Play a message to a waiting caller; the hold music comes back after it."""
        for action in actions:
            if isinstance(action, PlayPrompt):
                try:
                    path = self.prompts.sequence(action.pieces)
                except (PromptError, OSError) as exc:
                    log.error("call %s: cannot play a notice: %s", call.call_id, exc)
                    return
                self.sip.play(call.leg, str(path), NOTICE_TOKEN)

    def _callback_routing(self, cb: _Callback, action: RoutingAction) -> None:
        if isinstance(action, StopRinging):
            leg = cb.ringing.pop(action.agent, None)
            if leg is not None:
                self._agent_legs[leg].cancelled = True
                self.sip.hangup(leg)
        elif isinstance(action, LeaveQueue):
            self._callback_done(cb, "failed", f"callback expired in the queue ({action.reason})")
        elif isinstance(action, MovedQueue):
            cb.record.queue = action.to_queue

    def _callback_done(self, cb: _Callback, outcome: str, reason: str) -> None:
        self.callbacks.pop(cb.call_id, None)
        for leg in [*cb.ringing.values(), cb.agent_leg, cb.customer_leg]:
            if leg is not None:
                if leg in self._agent_legs:
                    self._agent_legs[leg].cancelled = True
                self._customer_legs.pop(leg, None)
                self.sip.hangup(leg)
        if cb.agent is not None and cb.call_id in self.router.connected:
            self._routing_actions(self.router.finished(cb.call_id, self.clock()))
        cb.record.finish(self.wall(), outcome, reason)
        self.store.save(cb.record)
        self.metrics.call_ended(cb.trunk, outcome)
        log.info("callback %s to %s ended: %s (%s)", cb.record.call_id, cb.number, outcome,
                 reason)

    def _callback_agent_answered(self, cb: _Callback, info: _AgentLeg, leg: str) -> None:
        now = self.clock()
        actions = self.router.answered(cb.call_id, info.agent, now)
        cb.ringing.pop(info.agent, None)
        cb.agent, cb.agent_leg = info.agent, leg
        cb.record.agent = info.agent
        uri = self.config.callback_target(cb.number)
        customer = self.sip.dial(uri) if uri else None
        log.info("callback %s: agent %s answered; calling %s back", cb.record.call_id,
                 info.agent, cb.number)
        self._routing_actions(actions)
        if customer is None:
            self._callback_done(cb, "failed", "cannot dial the caller back")
            return
        cb.customer_leg = customer
        self._customer_legs[customer] = cb.call_id
        self.sip.play(leg, self.music_on_hold, MOH_TOKEN, loop=True)  # the agent waits

    def _customer_answered(self, leg: str) -> None:
        cb = self.callbacks.get(self._customer_legs.get(leg, ""))
        if cb is None or cb.agent_leg is None or not self.sip.bridge(cb.agent_leg, leg):
            self.sip.hangup(leg)
            return
        cb.connected = True
        cb.record.answered_at = cb.record.connected_at = self.wall()
        log.info("callback %s: %s answered, connected to agent %s", cb.record.call_id,
                 cb.number, cb.agent)

    def _customer_leg_ended(self, event: LegEnded) -> None:
        cb = self.callbacks.get(self._customer_legs.pop(event.leg, ""))
        if cb is None:
            return
        cb.customer_leg = None
        if cb.connected:
            self._callback_done(cb, "completed", "caller hung up")
        else:
            failure = _dial_failure(event.status, event.reason)
            self._callback_done(cb, "failed", f"called back, no answer ({failure})")

    def _ring(self, action: RingAgent) -> list[RoutingAction]:
        agent = self.config.agents[action.agent]
        cb = self.callbacks.get(action.call_id)
        if cb is not None and action.call_id not in self.calls:
            log.info("callback %s: ringing agent %s", cb.record.call_id, agent.name)
            leg = self.sip.dial(agent.uri)
            if leg is None:
                return self.router.ring_failed(cb.call_id, agent.name, self.clock(),
                                               "unreachable")
            cb.ringing[agent.name] = leg
            self._agent_legs[leg] = _AgentLeg(cb.call_id, agent.name)
            return []
        call = self.calls[action.call_id]
        log.info("call %s: ringing agent %s (%s)", call.call_id, agent.name, agent.uri)
        leg = self.sip.dial(agent.uri)
        if leg is None:
            return self.router.ring_failed(call.call_id, agent.name, self.clock(), "unreachable")
        call.ringing[agent.name] = leg
        self._agent_legs[leg] = _AgentLeg(call.call_id, agent.name)
        return []

    def _agent_answered(self, leg: str) -> None:
        info = self._agent_legs.get(leg)
        cb = self.callbacks.get(info.call_id) if info else None
        if info is not None and cb is not None and info.call_id not in self.calls:
            if info.cancelled or cb.ringing.get(info.agent) != leg:
                self.sip.hangup(leg)
            else:
                self._callback_agent_answered(cb, info, leg)
            return
        call = self.calls.get(info.call_id) if info else None
        if info is None or call is None or call.ringing.get(info.agent) != leg \
                or info.cancelled:
            self.sip.hangup(leg)
            return
        now = self.clock()
        actions = self.router.answered(call.call_id, info.agent, now)
        call.ringing.pop(info.agent, None)
        if call.call_id not in self.router.connected or not self.sip.bridge(call.leg, leg):
            log.warning("call %s: agent %s answered but the caller is gone", call.call_id,
                        info.agent)
            info.cancelled = True
            self.sip.hangup(leg)
            if call.call_id in self.router.connected:
                self.router.finished(call.call_id, now)
            return
        call.phase = "connected"
        call.agent = info.agent
        call.agent_leg = leg
        call.agent_keys = ""
        call.record.agent = info.agent
        call.record.connected_at = self.wall()
        waited = call.record.connected_at - (call.record.queued_at or call.record.started_at)
        log.info("call %s: connected to agent %s after %.1f s in queue %s", call.call_id,
                 info.agent, waited, call.record.queue)
        self._routing_actions(actions)

    def _agent_key(self, event: DigitReceived) -> None:
        """A key from a connected agent: the escalation feature code sends the caller on."""
        info = self._agent_legs[event.leg]
        call = self.calls.get(info.call_id)
        if call is None or call.agent_leg != event.leg or call.phase != "connected":
            return
        code = self.config.feature_codes.escalate
        call.agent_keys = (call.agent_keys + event.digit)[-len(code):]
        if call.agent_keys != code:
            return
        log.info("call %s: agent %s escalates the call", call.call_id, info.agent)
        actions = self.router.escalate(call.call_id, self.clock())
        info.cancelled = True
        self.sip.hangup(event.leg)  # the agent goes to wrap-up
        call.agent_leg = None
        call.phase = "queued"
        call.record.connected_at = None  # waits again: connected is set by the next agent
        self._notice(call, [PlayPrompt(0, resolve(ESCALATION_NOTICE, call.session.language),
                                       False)])
        self._routing_actions(actions)

    def _agent_leg_ended(self, event: LegEnded) -> None:
        info = self._agent_legs.pop(event.leg)
        cb = self.callbacks.get(info.call_id)
        if cb is not None and not info.cancelled and info.call_id not in self.calls:
            if cb.agent_leg == event.leg:
                cb.agent_leg = None
                self._callback_done(cb, "completed" if cb.connected else "failed",
                                    "agent hung up")
            elif cb.ringing.get(info.agent) == event.leg:
                del cb.ringing[info.agent]
                self._routing_actions(self.router.ring_failed(
                    cb.call_id, info.agent, self.clock(), f"{event.status} {event.reason}"))
            return
        call = self.calls.get(info.call_id)
        if info.cancelled or call is None:
            return
        now = self.clock()
        if call.agent_leg == event.leg and call.phase == "connected":
            call.agent_leg = None
            log.info("call %s: agent %s hung up", call.call_id, info.agent)
            call.routing_done = True
            self._routing_actions(self.router.finished(call.call_id, now))
            self.sip.hangup(call.leg)
        elif call.ringing.get(info.agent) == event.leg:
            del call.ringing[info.agent]
            self._routing_actions(self.router.ring_failed(
                call.call_id, info.agent, now, f"{event.status} {event.reason}"))

    def _caller_ended(self, event: LegEnded) -> None:
        call_id = self._by_leg.pop(event.leg, None)
        call = self.calls.pop(call_id, None) if call_id else None
        if call is None:
            return
        now = self.clock()
        for leg in [*call.ringing.values(), *([call.agent_leg] if call.agent_leg else [])]:
            info = self._agent_legs.get(leg)
            if info is not None:
                info.cancelled = True
            self.sip.hangup(leg)
        call.ringing.clear()
        if call.transfer_leg is not None:
            self._transfer_legs.pop(call.transfer_leg, None)
            self.sip.hangup(call.transfer_leg)
        if call.phase == "transferred":
            outcome, reason = "completed", f"transferred to {call.transfer_to}"
        elif call.phase == "transferring":
            outcome, reason = "abandoned_ivr", \
                f"caller hung up during transfer to {call.transfer_to}"
        elif call.voicemail_left:
            outcome, reason = "completed", "voicemail left, caller hung up"
        elif call.callback_requested and not self.stopping:
            outcome, reason = "callback_requested", f"call back {call.record.caller}"
            self._start_callback(call, now)
        elif call.phase == "queued":
            outcome, reason = "abandoned_queue", "caller hung up while waiting"
            self._routing_actions(self.router.leave(call.call_id, now))
        elif call.phase == "connected":
            outcome, reason = "completed", "agent hung up" if call.routing_done \
                else "caller hung up"
            if not call.routing_done:
                self._routing_actions(self.router.finished(call.call_id, now))
        elif call.session.state == "ended":
            failed = call.session.end_reason == "flow_error"
            outcome, reason = ("failed" if failed else "completed"), call.session.end_reason
        else:
            outcome, reason = "abandoned_ivr", f"caller hung up at {call.session.node}"
        if self.stopping:
            outcome, reason = "interrupted", "switchboard stopped"
        call.record.ivr_path = call.session.path_text()
        call.record.finish(self.wall(), outcome, reason)
        self.store.save(call.record)
        self.metrics.call_ended(call.trunk, outcome)
        self.metrics.ivr_path(call.session.flow.name,
                              [(step.node, step.digits) for step in call.session.path],
                              call.session.node if outcome == "abandoned_ivr" else None)
        log.info("call %s ended: %s (%s), path %s", call.call_id, outcome, reason,
                 call.record.ivr_path)

    def _start_callback(self, call: ActiveCall, now: float) -> None:
        record = CallRecord(call_id=f"{call.call_id}-cb", started_at=self.wall(),
                            caller=call.record.caller, called=call.record.caller,
                            trunk=call.trunk, source="callback", flow=call.record.flow,
                            flow_version=call.record.flow_version,
                            ivr_path=call.session.path_text(), queue=call.record.queue,
                            queued_at=call.record.queued_at)
        self.callbacks[call.call_id] = _Callback(call.call_id, call.record.caller, call.trunk,
                                                 record)
        self.store.save(record)
        self._routing_actions(self.router.request_callback(call.call_id, now, ready=True))

    # -- shutdown ------------------------------------------------------------------------------
    def hang_up_all(self, grace_s: float = 2.0) -> None:
        """Stop taking calls, hang up those in progress and record them."""
        self.stopping = True
        for call in list(self.calls.values()):
            self.sip.hangup(call.leg)
        end = self.clock() + grace_s
        while self.calls and self.clock() < end:
            self.step(20)
        for call in list(self.calls.values()):  # legs that never confirmed their end
            self._caller_ended(LegEnded(call.leg, 0, "switchboard stopped"))
        self.lookups.shutdown()


AGENTS_TRUNK = "agents"
"""Trunk name given to calls from agents' phones (feature codes only)."""


def _uri_host(uri: str) -> str:
    host = uri.split("@", 1)[-1]
    return host.split(";", 1)[0].rsplit(":", 1)[0].strip("[]<>")


def _dial_failure(status: int, reason: str) -> str:
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


# -- systemd notification (Type=notify with watchdog) ------------------------------------------
def sd_notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)


@dataclass(frozen=True)
class ReloadRequest:
    """Posted to the loop by the SIGHUP handler or the file watcher."""

    trigger: str
    """'SIGHUP' or 'file change'."""
    files: FilesState | None = None
    """For a file change: the state of the files the watcher saw."""


def reload_flow(board: Switchboard, load: Callable[[], Flow], trigger: str) -> str:
    """Load and check the flow file again, render its prompts, then give it to new calls.

    Calls in progress keep the flow object they started with. Returns 'reloaded', 'unchanged'
    (same version: nothing to do) or 'failed' (every problem logged, the running version stays
    in service). Nothing raised here reaches the loop.
    """
    old = board.flow
    try:
        new = load()
        if new.name == old.name and new.version == old.version:
            log.debug("flow reload (%s): %s version %s is unchanged", trigger, old.name,
                      old.version)
            board.metrics.reload_done(ok=True)
            board.metrics.flow_loaded(old.name, old.version, board.wall())
            return "unchanged"
        started = time.monotonic()
        count = board.prompts.prepare(new)
    except DocumentError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        n = len(exc.problems)
        log.error("flow reload (%s) refused, %d problem%s: flow %s version %s stays in service",
                  trigger, n, "" if n == 1 else "s", old.name, old.version)
        board.metrics.reload_done(ok=False)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - a bad reload must never stop the switchboard
        log.error("flow reload (%s) failed: %s: %s", trigger, type(exc).__name__, exc)
        log.error("flow reload (%s) refused: flow %s version %s stays in service", trigger,
                  old.name, old.version)
        board.metrics.reload_done(ok=False)
        return "failed"
    board.flow = new
    board.metrics.reload_done(ok=True)
    board.metrics.flow_loaded(new.name, new.version, board.wall())
    log.info("flow reloaded (%s): %s version %s, was %s version %s; %d prompt(s) ready in "
             "%.1f s; calls in progress keep theirs", trigger, new.name, new.version, old.name,
             old.version, count, time.monotonic() - started)
    return "reloaded"


def run(config: Config, flow: Flow, reload_flow_file: Callable[[], Flow]) -> int:
    """Run the switchboard until SIGINT or SIGTERM.

    SIGHUP, or a change of the flow's files (polled every second), reloads the flow with
    *reload_flow_file*, which raises :class:`~ivr.flow.DocumentError` for a broken file.
    """
    from prometheus_client import CollectorRegistry

    from ivr.prompts import music_on_hold
    from ivr.sip.stack import SipSettings, SipStack, stack_version

    requests: queue.SimpleQueue[ReloadRequest] = queue.SimpleQueue()
    files = flow_files(flow)
    last_files = files_state(files)  # what the last (re)load read, near enough
    watcher = FileWatcher(files, lambda seen: requests.put(ReloadRequest("file change", seen)))
    prompts = PromptLibrary(config.prompt_cache, config.voices, config.speech_rate)
    started = time.monotonic()
    count = prompts.prepare(flow)
    log.info("prompts ready: %d sequence(s) in %.1f s (cache %s)", count,
             time.monotonic() - started, config.prompt_cache)
    moh = config.music_on_hold or music_on_hold(config.prompt_cache)
    store = CallStore(config.store)
    store.recover(time.time())
    metrics = Metrics(CollectorRegistry(), sl_threshold=config.sl_threshold,
                      sl_window=config.sl_window)
    metrics.set_build(stack_version())
    metrics.flow_loaded(flow.name, flow.version, time.time())
    if config.metrics is not None:
        metrics.serve(config.metrics.host, config.metrics.port)

    flags = {"stop": False}

    def on_stop(signum: int, _frame: object) -> None:
        flags["stop"] = True

    def on_hup(signum: int, _frame: object) -> None:
        requests.put(ReloadRequest("SIGHUP"))

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, on_hup)

    board: Switchboard | None = None
    settings = SipSettings(config.sip_listen.host, config.sip_listen.port, config.sip_user,
                           config.rtp_port, config.rtp_port_range, config.max_calls,
                           config.sip_log_level)
    sip = SipStack(settings, lambda ip: board.accept_source(ip) if board else (None, 503))
    sip.start()
    board = Switchboard(config, flow, sip, store, metrics, prompts, str(moh))
    watcher.start()
    from hw.gateway import GatewayMonitor

    gateways = [t for t in config.trunks if t.ping is not None]
    trunk_news: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()
    monitors = []
    for trunk in gateways:  # one monitor per trunk: each has its own interval
        assert trunk.ping is not None
        monitor = GatewayMonitor([(trunk.name, trunk.ping.host, trunk.ping.port)],
                                 interval=trunk.ping_interval,
                                 timeout=min(5.0, trunk.ping_interval / 2),
                                 on_change=lambda name, up: trunk_news.put((name, up)))
        monitor.start()
        monitors.append(monitor)
    registered: queue.SimpleQueue[frozenset[str]] = queue.SimpleQueue()
    poller = None
    if config.edge is not None:
        from ivr.edge import RegistrationsPoller

        # agents with a password register with the SIP edge: offered calls only while they do
        board.registering = frozenset(config.edge.agents)
        for name in board.registering & set(board.router.agents):
            board.router.set_reachable(name, False, board.clock())
        board.router.drain_log()  # not yet known is no news: the first poll logs who is there
        poller = RegistrationsPoller(config.edge.rpc_url, 2.0, registered.put)
        poller.start()
    metrics_url = f"http://{config.metrics}/metrics" if config.metrics else "off"
    log.info("Centralino ready: call %s | flow %s (version %s, %s) | metrics %s | %s",
             config.sip_uri, flow.name, flow.version, flow.source, metrics_url, stack_version())
    sd_notify("READY=1")
    watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    last_ping = 0.0
    next_purge = time.monotonic() + 60 if config.retention_days else math.inf
    try:
        while not flags["stop"]:
            board.step(10)
            while not registered.empty():
                board.registrations(registered.get_nowait())
            while not trunk_news.empty():
                name, up = trunk_news.get_nowait()
                board.trunk_state[name] = up
            pending: list[ReloadRequest] = []
            while not requests.empty():
                pending.append(requests.get_nowait())
            if pending:
                if all(r.files == last_files for r in pending):
                    # the watcher saw the change a SIGHUP reload already read
                    log.debug("flow file change already reloaded")
                else:
                    last_files = files_state(files)
                    triggers = ", ".join(dict.fromkeys(r.trigger for r in pending))
                    if reload_flow(board, reload_flow_file, triggers) == "reloaded":
                        files = flow_files(board.flow)
                        watcher.watch(files)
            if time.monotonic() >= next_purge:  # retention: once a minute after start, then daily
                next_purge = time.monotonic() + 86400
                board.store.flush()
                try:
                    purge_older_than(config.store, config.retention_days, time.time(),
                                     config.recordings)
                except Exception as exc:  # noqa: BLE001 - a failed purge must not stop calls
                    log.error("retention purge failed: %s; it is tried again tomorrow", exc)
            if watchdog_usec and time.monotonic() - last_ping > watchdog_usec / 2e6:
                sd_notify("WATCHDOG=1")
                last_ping = time.monotonic()
    finally:
        sd_notify("STOPPING=1")
        watcher.stop()
        if poller is not None:
            poller.stop()
        for monitor in monitors:
            monitor.stop()
        log.info("stopping: hanging up %d call(s)", len(board.calls))
        board.hang_up_all()
        sip.shutdown()
        store.close()
    log.info("stopped cleanly")
    return 0

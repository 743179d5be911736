"""What every machine of the core shares: the calls, the legs, the router, the effects.

:class:`CoreBase` holds the state and the few operations every machine needs (emit an effect,
save a record, change a phase, cancel a leg). Each kind of call adds its transitions in its own
module (:mod:`callers`, :mod:`queues`, :mod:`transfers`, :mod:`callbacks`,
:mod:`supervision`); :class:`Core` in
:mod:`ivr.driver.core` joins them and dispatches messages. Methods one module needs from another
are declared here, so each module reads on its own.
"""

import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ivr.config import Config
from ivr.driver import messages as m
from ivr.driver.state import (
    TRANSFER_TIMEOUT,
    Callback,
    CallbackPhase,
    CallerCall,
    CallPhase,
    FilesFor,
    Leg,
    LegPhase,
    OutboundState,
    Supervision,
    SupervisionPhase,
)
from ivr.engine import (
    Action,
    Enqueue,
)
from ivr.flow import Flow
from ivr.outbound.campaigns import Campaign
from ivr.sip import events as sip
from ivr.store import CallRecord
from ivr.tickets import TicketBook
from routing import Router
from routing.acd import AgentSpec, QueueEvent, RoutingAction

log = logging.getLogger("ivr.driver")


class CoreBase:
    """The state shared by the machines; see the module doc."""

    draining = False
    """Set by :meth:`Core.drain`: new calls are refused with 503, calls in progress go on."""

    def __init__(self, config: Config, flow: Flow, *, files_for: FilesFor,
                 music_on_hold: str, now: float, wall_offset: float = 0.0,
                 beep: str | None = None, overrides: Mapping[str, str] | None = None,
                 agent_states: Mapping[str, tuple[str, str]] | None = None,
                 registering: Iterable[str] = (),
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:16],
                 expect_ack: bool = True,
                 transfer_timeout: float = TRANSFER_TIMEOUT,
                 flows: Mapping[str, Flow] | None = None,
                 tickets: TicketBook | None = None,
                 campaigns: Mapping[str, Campaign] | None = None):
        self.config = config
        self.flow = flow
        """The flow of calls to the default route (the top-level ``flow``)."""
        self.flows: dict[str, Flow] = dict(flows or {})
        """Flows by file, for routes (called numbers) to other flows."""
        self.files_for = files_for
        self.music_on_hold = music_on_hold
        self.wall_offset = wall_offset
        self.beep = beep
        self.new_id = new_id
        self.ticket_book = tickets if tickets is not None else TicketBook()
        """The open tickets (loaded from the store at start) and those of calls in hand."""
        self.agent_last_call: dict[str, CallRecord] = {}
        """Agent -> the record of their last call: what a disposition they key applies to."""
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
        self.supervisions: dict[str, Supervision] = {}
        """Supervisors' sessions by their SIP leg."""
        self.bridging: dict[tuple[str, str], str] = {}
        """(a, b) of a bridge asked for -> the ref of the outgoing leg it joins."""
        self.trunk_state: dict[str, bool] = {}
        self.device_up: dict[str, bool] = {}
        """Serial device -> its port is open."""
        self.night_switches: dict[str, bool] = {}
        """Night switch -> its key is on."""
        self.call_recordings: dict[str, tuple[str, bool]] = {}
        """Call id -> (the stereo file, whether this is its first talk) of a recording in
        progress (until the parts are handed to the worker: maybe after the call ended)."""
        self.recordings_suspended = False
        """The disk under ``recordings`` is under its floor: no recording starts."""
        self.transitions: dict[tuple[str, str, str], int] = {}
        self.console_notices: dict[str, dict[str, Any]] = {}
        """Name (agent, supervisor, source) -> what came of their last console command."""
        self._notice_seq = 0
        self._view_seq = 0
        self.agent_since: dict[str, tuple[str, float]] = {}
        """Agent -> (state, wall time it started), followed after every message."""
        self.agent_talk: dict[str, float] = {}
        """Agent -> seconds talked in finished calls since the start."""
        self._talk_from: dict[str, float] = {}
        self.ended_calls: dict[str, CallerCall] = {}
        """Ended calls that are still an agent's last call (the console's wrap-up)."""
        self._agent_queues: dict[str, list[str]] | None = None
        self._teams: dict[str, str] = {}
        self.campaigns: dict[str, Campaign] = dict(campaigns or {})
        """The outbound campaigns (:mod:`ivr.driver.outbound`), by name."""
        self.outbound = OutboundState(self.campaigns)
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
            elif state == "paused" and reason == "outbound":
                state = "available"  # held for a campaign's call when the process stopped
            elif state == "paused":
                self.router.pause(name, now, reason or "break")
            log.info("agent %s restored as %s%s", name, state, f" ({reason})" if reason else "")
        for name in sorted(self.registering & set(self.router.agents)):
            self.router.set_reachable(name, False, now)  # offered calls once registered
        self.router.drain_log()  # restoring is not news for the queue log
        self.agent_since = {name: (agent.state, self.wall(now))
                            for name, agent in self.router.agents.items()}

    def wall(self, now: float) -> float:
        return round(now + self.wall_offset, 6)

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

    def _sup_to(self, sess: Supervision, new: SupervisionPhase, why: str) -> None:
        old = sess.phase
        if old is new:
            return
        sess.phase = new
        log.debug("supervision %s (%s on agent %s): %s -> %s (%s)", sess.leg, sess.supervisor,
                  sess.agent, old.value, new.value, why)
        self._count("supervision", old.value, new.value)

    def _count(self, machine: str, old: str, new: str) -> None:
        key = (machine, old, new)
        self.transitions[key] = self.transitions.get(key, 0) + 1
        self._emit(m.CountTransition(machine, old, new))

    def _cancel(self, ref: str, why: str) -> None:
        """The switchboard no longer wants this leg: hang it up (now, or once it exists)."""
        leg = self.legs.get(ref)
        if leg is None or not leg.live:
            return
        self._leg_to(leg, LegPhase.CANCELLED, why)
        if leg.sip is not None:
            self._emit(m.HangupLeg(leg.sip))

    def _bridge(self, leg: Leg, other: str) -> None:
        """Join the answered outgoing *leg* to the SIP leg *other*: its music stops, and
        whether the bridge held comes back as :class:`~ivr.driver.messages.Bridged`."""
        assert leg.sip is not None
        self._leg_to(leg, LegPhase.BRIDGING, "answered")
        self.bridging[(other, leg.sip)] = leg.ref
        self._emit(m.StopPlay(other))
        self._emit(m.Bridge(other, leg.sip))

    # -- provided by the other machines' modules ----------------------------------------------
    def _session(self, call: CallerCall, actions: list[Action], now: float) -> None:
        raise NotImplementedError

    def _caller_ended(self, call: CallerCall, event: sip.LegEnded, now: float) -> None:
        raise NotImplementedError

    def _supervision_call(self, event: sip.IncomingCall, now: float) -> bool:
        raise NotImplementedError

    def _refused(self, event: sip.CallRefused, now: float) -> None:
        raise NotImplementedError

    def _routing(self, actions: list[RoutingAction], now: float) -> None:
        raise NotImplementedError

    def _enqueue(self, call: CallerCall, action: Enqueue, now: float) -> None:
        raise NotImplementedError

    def _notice(self, call: CallerCall, pieces: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def _agent_key(self, leg: Leg, digit: str, now: float) -> None:
        raise NotImplementedError

    def _ticket_level(self, call: CallerCall, queue: str) -> int:
        raise NotImplementedError

    def _ticket_events(self, events: list[QueueEvent]) -> None:
        raise NotImplementedError

    def _disposition_keys(self, call: CallerCall, agent: str, now: float) -> bool:
        raise NotImplementedError

    def _agent_command(self, cmd: m.AgentCommand, now: float) -> None:
        raise NotImplementedError

    def _transfer(self, call: CallerCall, destination: str, now: float) -> None:
        raise NotImplementedError

    def _transfer_answered(self, leg: Leg, now: float) -> None:
        raise NotImplementedError

    def _transfer_bridged(self, leg: Leg, ok: bool, now: float) -> None:
        raise NotImplementedError

    def _transfer_leg_ended(self, leg: Leg, was: LegPhase, status: int, reason: str,
                            now: float) -> None:
        raise NotImplementedError

    def _request_callback(self, call: CallerCall, now: float) -> None:
        raise NotImplementedError

    def _callback_refused(self, call: CallerCall, reason: str) -> None:
        raise NotImplementedError

    def _start_callback(self, call: CallerCall, now: float) -> None:
        raise NotImplementedError

    def _callback_routing(self, cb: Callback, action: RoutingAction, now: float) -> None:
        raise NotImplementedError

    def _callback_agent_answered(self, cb: Callback, leg: Leg, now: float) -> None:
        raise NotImplementedError

    def _customer_answered(self, leg: Leg, now: float) -> None:
        raise NotImplementedError

    def _customer_bridged(self, leg: Leg, ok: bool, now: float) -> None:
        raise NotImplementedError

    def _customer_leg_ended(self, leg: Leg, was: LegPhase, status: int, reason: str,
                            now: float) -> None:
        raise NotImplementedError

    def _callback_done(self, cb: Callback, outcome: str, reason: str, now: float) -> None:
        raise NotImplementedError

    def _console_events(self, events: list[QueueEvent]) -> None:
        raise NotImplementedError

    def _supervisor_answered(self, leg: Leg, now: float) -> None:
        raise NotImplementedError

    def _supervisor_leg_ended(self, leg: Leg, was: LegPhase, status: int, reason: str,
                              now: float) -> None:
        raise NotImplementedError

    def _campaigns_view(self, now: float) -> dict[str, Any]:
        raise NotImplementedError

    def _preview_view(self, agent: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def _tell(self, name: str, text: str, ok: bool) -> None:
        raise NotImplementedError

    def _dispose(self, agent: str, code: str, now: float) -> bool:
        raise NotImplementedError

    def _leg_answered(self, sip_leg: str, now: float) -> None:
        raise NotImplementedError

    def _prompt_ready(self, msg: m.PromptReady, now: float) -> None:
        raise NotImplementedError

    def _playback_ended(self, event: sip.PlaybackEnded, now: float) -> None:
        raise NotImplementedError

    def _bridged(self, msg: m.Bridged, now: float) -> None:
        raise NotImplementedError

    def _outgoing_ended(self, leg: Leg, status: int, reason: str, now: float) -> None:
        raise NotImplementedError

    def _session_action(self, call: CallerCall, action: Action, now: float) -> None:
        raise NotImplementedError

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

import logging

from ivr.driver import messages as m
from ivr.driver.callbacks import Callbacks
from ivr.driver.callers import Callers
from ivr.driver.console import Console
from ivr.driver.devices import Devices
from ivr.driver.outbound import Outbound
from ivr.driver.queues import Queues
from ivr.driver.state import (
    AGENTS_TRUNK,
    CallbackPhase,
    CallPhase,
    LegPhase,
    LegRole,
    uri_host,
)
from ivr.driver.supervision import Supervisions
from ivr.driver.transfers import Transfers
from ivr.engine import (
    TimerFired,
)
from ivr.lookup import LookupResult
from ivr.metrics import Snapshot
from ivr.recording import RecordingDisk, RecordingDone
from ivr.sip import events as sip

log = logging.getLogger("ivr.driver")

class Core(Console, Outbound, Callers, Queues, Transfers, Callbacks, Supervisions, Devices):
    """The switchboard's state and decisions. See the module doc."""

    # -- admission: asked by the SIP layer while it holds the INVITE ---------------------------
    def admit(self, address: str) -> tuple[str | None, int, int, tuple[str, ...]]:
        """(trunk, status, lines, media networks) for an INVITE from *address*: the SIP layer
        refuses with the status when it is not 200, counts the trunk's calls against its lines
        itself (so a burst of INVITEs taken in one poll cannot pass the cap), and answers only
        SDP whose media address is the trunk's source or in the media networks.

        Behind the SIP edge the trunk's source is the edge, while the media come from the
        gateways and phones behind it: their networks (``edge.trunk_sources`` and
        ``edge.agent_sources``) are the media networks then."""
        trunk = self.config.trunk_for(address)
        if trunk is None:
            if any(uri_host(a.uri) == address for a in self.config.agents.values()) \
                    or any(uri_host(s.uri) == address for s in self.config.supervisors.values()):
                return AGENTS_TRUNK, 200, 0, ()  # an agent's phone: feature codes only
            return None, 403, 0, ()
        edge = self.config.edge
        media = tuple(str(net) for net in trunk.media_networks)
        if edge is not None:
            media += tuple(edge.trunk_sources) + tuple(edge.agent_sources)
        if self.stopping or self.draining:
            return trunk.name, 503, trunk.lines, media
        return trunk.name, 200, trunk.lines, media

    # -- the one entry point -------------------------------------------------------------------
    def handle(self, message: m.Message, now: float) -> list[m.Effect]:
        """Take one message; returns the effects to carry out, in order."""
        self._fx = []
        self._dispatch(message, now)
        if self.supervisions:
            self._supervision_sweep(now)
        self._queue_log()
        self._track_agents(now)
        fx, self._fx = self._fx, []
        return fx

    def drain(self) -> None:
        """Refuse new calls (503) and let those in progress finish as usual: the first half
        of a stop (SIGTERM); :meth:`stop` hangs up whatever is left when the time is up."""
        self.draining = True

    def drained(self) -> bool:
        """No caller on the line and no callback dialling or connected: a drain is over.
        Callbacks still waiting for an agent do not hold it up (they end interrupted)."""
        return not self.calls and not self.outbound.calls \
            and all(cb.phase is CallbackPhase.WAITING for cb in self.callbacks.values())

    def stop(self, now: float) -> list[m.Effect]:
        """Stop taking calls and hang up every leg; the legs' ends then close the records."""
        self._fx = []
        self.stopping = True
        for call in self.calls.values():
            self._emit(m.HangupLeg(call.leg))
        for sup_leg in self.supervisions:
            self._emit(m.HangupLeg(sup_leg))
        for leg in self.legs.values():
            if leg.live and leg.sip is not None and leg.sip not in self.supervisions:
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
        for sess in list(self.supervisions.values()):
            self._end_supervision(sess, "switchboard stopped", now, hang_up=False)
        self._outbound_stopped(now)
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
        outbound = self._outbound_deadline()
        if outbound is not None:
            times.append(outbound)
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
        dialling, paused = self._campaign_snapshot()
        return Snapshot(len(self.calls), waiting, agents, longest, by_queue, registered,
                        dict(self.trunk_state), devices=dict(self.device_up),
                        night_switches=dict(self.night_switches),
                        campaign_dialling=dialling, campaign_paused=paused)

    # -- dispatch ------------------------------------------------------------------------------
    def _dispatch(self, msg: m.Message, now: float) -> None:  # noqa: C901 - one arm per kind
        if isinstance(msg, m.Tick):
            self._timers(now)
            self._outbound_tick(now)
        elif isinstance(msg, sip.IncomingCall):
            self._incoming(msg, now)
        elif isinstance(msg, sip.CallRefused):
            self._refused(msg, now)
        elif isinstance(msg, sip.DigitReceived) and msg.leg in self.supervisions:
            self._supervisor_key(msg, now)
        elif isinstance(msg, sip.DigitReceived):
            self._digit(msg, now)
        elif isinstance(msg, sip.PlaybackEnded):
            self._playback_ended(msg, now)
        elif isinstance(msg, sip.RecordingEnded):
            self._recording_ended(msg, now)
        elif isinstance(msg, sip.LegAnswered):
            self._leg_answered(msg.leg, now)
        elif isinstance(msg, sip.LegEnded) and msg.leg in self.supervisions:
            self._supervisor_left(msg, now)
            if msg.leg in self.by_sip:  # a supervisor's phone the console had called
                self._leg_ended(msg, now)
        elif isinstance(msg, sip.LegEnded):
            self._leg_ended(msg, now)
        elif isinstance(msg, sip.TransferRequested):
            self._agent_transfer(msg, now)
        elif isinstance(msg, sip.CallConfirmed):
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
        elif isinstance(msg, (sip.CallRecordingEnded, RecordingDone, RecordingDisk)):
            self._recording_message(msg, now)
        elif isinstance(msg, m.Registrations):
            self._registrations(msg.names, now)
        elif isinstance(msg, m.TrunkReachability):
            self.trunk_state[msg.trunk] = msg.up
        elif isinstance(msg, (m.DeviceState, m.NightSwitchChanged)):
            self._device_message(msg, now)
        elif isinstance(msg, m.AgentCommand):
            self._agent_command(msg, now)
        elif isinstance(msg, (m.ConsoleWrapUp, m.ConsoleTransfer, m.Supervise, m.CallNote)):
            self._console_command(msg, now)
        elif isinstance(msg, (m.HopperFill, m.DncAdded, m.PreviewDial, m.ServiceLevels)):
            self._outbound_message(msg, now)
        elif isinstance(msg, m.FlowReady):
            old = self.flows.get(msg.path, self.flow) if msg.path else self.flow
            if msg.path:
                self.flows[msg.path] = msg.flow
            if not msg.path or msg.path == str(self.config.flow):
                self.flow = msg.flow
            log.info("flow reloaded (%s): %s version %s, was %s version %s; %d prompt(s) ready "
                     "in %.1f s; calls in progress keep theirs", msg.trigger, msg.flow.name,
                     msg.flow.version, old.name, old.version, msg.prompts, msg.seconds)
            self._emit(m.FlowInService(msg.flow.name, msg.flow.version, reloaded=True))
        else:
            log.debug("message %s ignored", type(msg).__name__)

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

    # -- checks, for tests ---------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Disagreements between the call machines and the router (empty: all agree)."""
        return self._router_problems() + self._call_problems() + self._supervision_problems() \
            + self._ticket_problems() + self._outbound_problems()

    def _router_problems(self) -> list[str]:
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
            if call is not None and call.phase is not CallPhase.CONNECTED:
                out.append(f"router has {call_id} connected, the call is {call.phase.value}")
            if call is None and call_id not in self.callbacks:
                out.append(f"router has connected caller {call_id} that no call holds")
        return out

    def _call_problems(self) -> list[str]:
        out: list[str] = self._recording_problems()
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
        return out + [f"agent {a} has {n} calls" for a, n in busy.items() if n > 1]

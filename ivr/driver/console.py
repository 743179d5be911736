"""The web console's side of the core: the view it reads, the commands it posts.

The loop publishes :meth:`Console.console_view` (plain JSON-able data, built fresh; the console's
thread only reads it) and the console posts commands to the inbox, handled here like any
message: :class:`~ivr.driver.messages.AgentCommand` (login, logout, pause with a reason,
unpause), :class:`~ivr.driver.messages.ConsoleWrapUp` (the agent saves their call: disposition,
note, ticket resolved or escalated; during wrap-up it ends the wrap-up),
:class:`~ivr.driver.messages.ConsoleTransfer` (the agent's caller to an extension, a queue or
an allowed number, as the phone's REFER does), :class:`~ivr.driver.messages.Supervise` (the box
calls the supervisor's phone and joins it to the agent's call, as ``*51``-``*53`` do) and
:class:`~ivr.driver.messages.CallNote` (a CRM's note on a live call).

What came of a command is a *notice* ``{"seq", "text", "ok"}``: in the view under
``notices[name]`` for the agent, supervisor or source that asked (an agent's also in
``agents[name]["notice"]``); ``seq`` grows with every notice, so a page shows each once.

The view (``seq`` grows with every build; times are wall-clock Unix seconds)::

    {"seq", "at",
     "agents": {name: {"name", "state", "since", "pause_reason", "queues", "team", "call_id",
                       "offered", "wrapup_until", "answered", "talk_seconds", "notice",
                       "last_call_id"}},
     "calls": {call_id: {"call_id", "caller", "called", "trunk", "phase", "started", "queue",
                         "queued_at", "wait", "level", "path", "keys", "variables", "agent",
                         "ticket", "script", "recorded", "supervisors", "notes"}},
     "ended": {call_id: same as calls, phase 'ended'}   # agents' last calls, for wrap-up
     "queues": {name: {"waiting", "longest_wait", "agents": {state: n}}},
     "supervisions": [{"supervisor", "agent", "call_id", "mode", "phase"}],
                       # phase 'joined', or 'calling' while the supervisor's phone rings
     "campaigns": {name: {"mode", "window_open", "paused_reason", "dialling", "connected",
                          "attempts_today", "connects_today", "abandoned_today", "hopper"}},
                       # paused_reason '' while it may dial; hopper: contacts in hand
     "notices": {name: notice}}

and under ``agents[name]["preview"]`` the contact offered to a preview agent (None if none):
``{"campaign", "contact_id", "number", "name", "vars", "script"}``; the agent calls it with
:class:`~ivr.driver.messages.PreviewDial`.
"""

import logging
import re
import time
from typing import Any

from ivr.config import SUPERVISION_MODES
from ivr.driver import messages as m
from ivr.driver.callers import Callers
from ivr.driver.queues import Queues
from ivr.driver.state import (
    ANNOUNCE_TOKEN,
    CallerCall,
    CallPhase,
    Leg,
    LegPhase,
    LegRole,
    Supervision,
    SupervisionPhase,
    dial_failure,
)
from ivr.driver.supervision import Supervisions, links_for
from ivr.driver.transfers import Transfers
from ivr.logs import escape
from ivr.sip import events as sip
from ivr.store import CallRecord
from routing.acd import QueueEvent

log = logging.getLogger("ivr.driver")

NOTE_MAX = 2000
"""Characters of one note kept (a longer one is cut)."""
NOTICES_KEPT = 200
"""Notices kept at most (one per agent, supervisor or API source; the oldest go)."""
TICKET_ACTIONS = ("", "resolve", "escalate")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_script(script: str, values: dict[str, str]) -> str:
    """The queue's *script* with ``{name}`` replaced by *values* (an unknown name: empty)."""
    if "{" not in script:
        return script
    return _PLACEHOLDER.sub(lambda match: values.get(match.group(1), ""), script)


def note_line(at: float, who: str, text: str) -> str:
    """One line of a call's note: ``[HH:MM who] text`` (local time), on one line."""
    clean = " ".join(text.split())[:NOTE_MAX]
    return f"[{time.strftime('%H:%M', time.localtime(at))} {who}] {clean}"


class Console(Callers, Queues, Transfers, Supervisions):
    """The console's view and commands; see the module doc."""

    # -- notices -------------------------------------------------------------------------------
    def _tell(self, name: str, text: str, ok: bool) -> None:
        self._notice_seq += 1
        self.console_notices.pop(name, None)  # the newest last: the oldest go first
        self.console_notices[name] = {"seq": self._notice_seq, "text": text, "ok": ok}
        while len(self.console_notices) > NOTICES_KEPT:
            del self.console_notices[next(iter(self.console_notices))]
        (log.info if ok else log.warning)("console notice to %s: %s", escape(name, 80), text)

    # -- the agents' state, followed after every message ---------------------------------------
    def _track_agents(self, now: float) -> None:
        since = self.agent_since
        for name, agent in self.router.agents.items():
            seen = since.get(name)
            if seen is None or seen[0] != agent.state:
                since[name] = (agent.state, self.wall(now))

    def _console_events(self, events: list[QueueEvent]) -> None:
        """Talk time per agent, from the queue log (connect to complete or escalate)."""
        for e in events:
            if not e.agent:
                continue
            if e.kind == "connect":
                self._talk_from[e.agent] = e.at
            elif e.kind in ("complete", "escalate"):
                start = self._talk_from.pop(e.agent, None)
                if start is not None:
                    self.agent_talk[e.agent] = self.agent_talk.get(e.agent, 0.0) + e.at - start

    # -- commands ------------------------------------------------------------------------------
    def _console_command(self, msg: m.Message, now: float) -> None:
        if isinstance(msg, m.ConsoleWrapUp):
            self._console_wrap_up(msg, now)
        elif isinstance(msg, m.ConsoleTransfer):
            self._console_transfer(msg, now)
        elif isinstance(msg, m.Supervise):
            self._supervise(msg, now)
        elif isinstance(msg, m.CallNote):
            self._call_note(msg, now)

    def _agent_command(self, cmd: m.AgentCommand, now: float) -> None:
        agent = self.router.agents.get(cmd.agent)
        if agent is None:
            super()._agent_command(cmd, now)
            return
        before = agent.state
        super()._agent_command(cmd, now)
        after = agent.state
        wanted = {"login": after != "logged_out", "logout": after == "logged_out",
                  "pause": after == "paused", "unpause": after != "paused"}
        ok = wanted.get(cmd.command, False)
        what = cmd.command + (f" ({cmd.reason})" if cmd.reason and cmd.command == "pause"
                              else "")
        if ok:
            self._tell(cmd.agent, f"{what}: {after}", True)
        else:
            self._tell(cmd.agent, f"{what} refused: the agent is {before}", False)

    def _connected_call(self, agent: str) -> tuple[CallerCall, Leg] | None:
        """The caller *agent* is connected to, and the agent's leg."""
        for call in self.calls.values():
            if call.agent_ref is None or call.phase is not CallPhase.CONNECTED:
                continue
            leg = self.legs.get(call.agent_ref)
            if leg is not None and leg.agent == agent:
                return call, leg
        return None

    def _add_note(self, record: CallRecord, at: float, who: str, text: str) -> None:
        line = note_line(at, who, text)
        record.note = f"{record.note}\n{line}" if record.note else line

    def _console_wrap_up(self, msg: m.ConsoleWrapUp, now: float) -> None:  # noqa: C901
        agent = msg.agent
        source = f" from {msg.source}" if msg.source else ""
        if agent not in self.router.agents:
            log.warning("console save for unknown agent '%s'%s ignored", escape(agent, 40),
                        source)
            return
        record = self.agent_last_call.get(agent)
        if record is None or record.call_id != msg.call_id:
            self._tell(agent, f"save refused: call {msg.call_id} is not your current or last "
                              "call", False)
            return
        live = self._connected_call(agent)
        connected = live if live is not None and live[0].call_id == msg.call_id else None
        code = msg.disposition
        if code and code not in self.config.dispositions:
            self._tell(agent, f"save refused: no disposition '{code}'", False)
            return
        spec = self.config.queues.get(record.queue or "")
        if connected is None and not code and record.disposition is None \
                and spec is not None and spec.disposition_hold > 0:
            self._tell(agent, f"save refused: queue {spec.name} needs a disposition", False)
            return
        if msg.ticket not in TICKET_ACTIONS:
            self._tell(agent, f"save refused: unknown ticket action '{msg.ticket}'", False)
            return
        ticket = self.ticket_book.of_call(record.call_id)
        call_escalation = msg.ticket == "escalate" and connected is not None
        if msg.ticket and not call_escalation and (ticket is None or not ticket.is_open):
            self._tell(agent, f"save refused: the call has no open ticket to {msg.ticket}",
                       False)
            return
        log.info("call %s: agent %s saves it%s: disposition %s, ticket %s%s", record.call_id,
                 agent, " during the call" if connected else "", code or "-",
                 msg.ticket or "-", source)
        if msg.note.strip():
            self._add_note(record, self.wall(now), agent, msg.note)
            self._save(record)
        if code:
            self._dispose(agent, code, now)
        if msg.ticket == "resolve" and ticket is not None:
            self._save_ticket(self.ticket_book.close(ticket.number, self.wall(now),
                                                     note=f"resolved by {agent}"))
        elif msg.ticket == "escalate" and connected is not None:
            self._escalate_call(connected[0], connected[1], now)
        elif msg.ticket == "escalate" and ticket is not None:
            queue = (spec.escalate_to if spec is not None else None) or ticket.queue
            self._save_ticket(self.ticket_book.escalated(
                record.call_id, queue=queue, level=ticket.level + 1, agent=agent,
                note="console", now=self.wall(now)))
        if connected is None:  # saved after the call: the wrap-up is over
            self._routing(self.router.end_wrap_up(agent, now), now)
        self._tell(agent, f"call {record.call_id} saved", True)

    def _console_transfer(self, msg: m.ConsoleTransfer, now: float) -> None:
        if msg.agent not in self.router.agents:
            log.warning("console transfer for unknown agent '%s' ignored", escape(msg.agent, 40))
            return
        live = self._connected_call(msg.agent)
        if live is None:
            self._tell(msg.agent, f"transfer to {msg.target} refused: not on a call", False)
            return
        target = self.config.agent_transfer_named(msg.target.strip())
        if target is None:
            self._tell(msg.agent, f"transfer to {msg.target} refused: not allowed (not an "
                                  "extension, a queue or a number agents may transfer to)",
                       False)
            return
        call, leg = live
        log.info("call %s: console transfer by agent %s%s", call.call_id, msg.agent,
                 f" from {msg.source}" if msg.source else "")
        self._agent_moves_caller(call, leg, target, "", now)
        self._tell(msg.agent, f"caller transferred to {target.kind} {target.name}", True)

    def _call_note(self, msg: m.CallNote, now: float) -> None:
        who = msg.author or (msg.source.split()[0] if msg.source.strip() else "api")
        asker = msg.source or who
        if not msg.text.strip():
            self._tell(asker, f"note on call {msg.call_id} refused: it is empty", False)
            return
        call = self.calls.get(msg.call_id)
        record = call.record if call is not None else None
        if record is None:
            record = next((r for a, r in self.agent_last_call.items()
                           if r.call_id == msg.call_id
                           and self.router.agents[a].state == "wrap_up"), None)
        if record is None:
            self._tell(asker, f"note refused: call {msg.call_id} is not in progress", False)
            return
        self._add_note(record, self.wall(now), who, msg.text)
        self._save(record)
        log.info("call %s: note from %s", record.call_id, escape(asker, 80))
        self._tell(asker, f"note added to call {record.call_id}", True)

    # -- supervision from the console: the box calls the supervisor ----------------------------
    def _supervise(self, msg: m.Supervise, now: float) -> None:
        sup = self.config.supervisors.get(msg.supervisor)
        name = msg.supervisor
        if sup is None:
            self._tell(msg.source or name, f"{msg.mode} refused: no supervisor '{name}'", False)
            return
        if msg.mode not in SUPERVISION_MODES:
            self._tell(name, f"'{msg.mode}' refused: not listen, whisper or barge", False)
            return
        sess = next((s for s in self.supervisions.values() if s.supervisor == name), None)
        if sess is not None:
            self._change_mode(sess, msg.agent, msg.mode, now)
            return
        dialling = next((leg for leg in self.legs.values() if leg.role is LegRole.SUPERVISOR
                         and leg.supervisor == name and leg.live), None)
        if dialling is not None:
            if dialling.agent != msg.agent:
                self._tell(name, f"{msg.mode} of {msg.agent} refused: your phone is being "
                                 f"called for {dialling.agent}'s call", False)
                return
            dialling.mode = msg.mode
            self._tell(name, f"calling your phone to {msg.mode} to {msg.agent}", True)
            return
        target = self._supervised_call(sup, msg.agent)
        if isinstance(target, str):
            self._tell(name, f"{msg.mode} of {msg.agent} refused: {target}", False)
            return
        call, agent_leg = target
        ref = self._ref()
        self.legs[ref] = Leg(ref, LegRole.SUPERVISOR, call.call_id, agent_leg.agent,
                             supervisor=name, mode=msg.mode)
        log.info("call %s: calling supervisor %s (%s) to %s agent %s's call%s", call.call_id,
                 name, sup.uri, msg.mode, agent_leg.agent,
                 f", asked from {msg.source}" if msg.source else "")
        self._emit(m.Dial(ref, sup.uri))
        self._tell(name, f"calling your phone to {msg.mode} to {agent_leg.agent}", True)

    def _change_mode(self, sess: Supervision, agent: str, mode: str, now: float) -> None:
        named = self.config.agent_named(agent)
        if named is None or named.name != sess.agent:
            self._tell(sess.supervisor, f"{mode} of {agent} refused: you are on "
                                        f"{sess.agent}'s call; hang up first", False)
            return
        call = self.calls.get(sess.call_id)
        leg = self.legs.get(call.agent_ref) if call and call.agent_ref else None
        if call is None or leg is None or leg.sip is None:
            self._tell(sess.supervisor, f"{mode} refused: {sess.agent} is not on a call", False)
            return
        if mode != sess.mode:
            log.info("call %s: supervisor %s: %s -> %s (console)", call.call_id,
                     sess.supervisor, sess.mode, mode)
            was, sess.mode = sess.mode, mode
            self._relink(sess, links_for(mode, call.leg, leg.sip, sess.leg))
            self._supervision_log(sess, "supervise_mode", now, was=was)
        self._tell(sess.supervisor, f"{mode} on {sess.agent}'s call", True)

    def _supervisor_answered(self, leg: Leg, now: float) -> None:
        assert leg.sip is not None
        sup = self.config.supervisors.get(leg.supervisor)
        target = self._supervised_call(sup, leg.agent)
        if sup is None or isinstance(target, str):
            why = target if isinstance(target, str) else "no such supervisor"
            self._cancel(leg.ref, "nothing to join")
            self._tell(leg.supervisor, f"{leg.mode} of {leg.agent} ended: {why}", False)
            return
        call, agent_leg = target
        assert agent_leg.sip is not None
        self._leg_to(leg, LegPhase.CONNECTED, "answered")
        sess = Supervision(leg.sip, sup.name, agent_leg.agent, call.call_id, leg.mode,
                           call.record.queue or "")
        self.supervisions[leg.sip] = sess
        self._relink(sess, links_for(leg.mode, call.leg, agent_leg.sip, leg.sip))
        log.info("call %s: supervisor %s joins agent %s's call (%s), called from the console",
                 call.call_id, sup.name, agent_leg.agent, leg.mode)
        if sup.announce and self.beep is not None:
            self._emit(m.Play(agent_leg.sip, (self.beep,), ANNOUNCE_TOKEN))
        self._supervision_log(sess, "supervise_start", now, announced=sup.announce,
                              called=True)

    def _supervisor_leg_ended(self, leg: Leg, was: LegPhase, status: int, reason: str,
                              now: float) -> None:
        if was in (LegPhase.DIALLING, LegPhase.RINGING):
            self._tell(leg.supervisor, f"your phone did not take the {leg.mode} of "
                                       f"{leg.agent}: {dial_failure(status, reason)}", False)

    def _end_supervision(self, sess: Supervision, why: str, now: float, *,
                         hang_up: bool) -> None:
        super()._end_supervision(sess, why, now, hang_up=hang_up)
        leg = self._leg_of(sess.leg)
        if leg is not None and leg.live:  # called from the console: its leg is done with
            self._leg_to(leg, LegPhase.CANCELLED, why)

    # -- calls that end: kept while they are an agent's last call (wrap-up) --------------------
    def _caller_ended(self, call: CallerCall, event: sip.LegEnded, now: float) -> None:
        super()._caller_ended(call, event, now)
        if call.record.agent:
            self.ended_calls[call.call_id] = call
        for leg in list(self.legs.values()):
            if leg.role is LegRole.SUPERVISOR and leg.call_id == call.call_id and leg.live \
                    and leg.phase is not LegPhase.CONNECTED:
                self._cancel(leg.ref, "the call ended")
                self._tell(leg.supervisor, f"{leg.mode} of {leg.agent} ended: the call ended",
                           False)

    # -- the view ------------------------------------------------------------------------------
    def console_view(self, now: float) -> dict[str, Any]:
        """What the console shows, as plain data; see the module doc."""
        self._view_seq += 1
        at = self.wall(now)
        last_ids = {r.call_id for r in self.agent_last_call.values()}
        for call_id in [c for c in self.ended_calls if c not in last_ids]:
            del self.ended_calls[call_id]
        sessions = self._sessions_by_call()
        calls = {cid: self._call_view(call, at, sessions) for cid, call in self.calls.items()}
        ended = {cid: self._call_view(call, at, sessions)
                 for cid, call in self.ended_calls.items()}
        return {"seq": self._view_seq, "at": at, "agents": self._agents_view(now),
                "calls": calls, "ended": ended, "queues": self._queues_view(now),
                "supervisions": self._supervisions_view(),
                "campaigns": self._campaigns_view(now),
                "notices": dict(self.console_notices)}

    def _sessions_by_call(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for sess in self.supervisions.values():
            out.setdefault(sess.call_id, []).append(sess.supervisor)
        return out

    def _call_view(self, call: CallerCall, at: float,
                   sessions: dict[str, list[str]]) -> dict[str, Any]:
        rec = call.record
        session = call.session
        ended = call.phase is CallPhase.ENDED
        waited_to = rec.connected_at or (rec.ended_at if ended else None) or at
        wait = round(waited_to - rec.queued_at, 1) if rec.queued_at is not None else 0.0
        routed = self.router.waiting.get(call.call_id) or self.router.connected.get(call.call_id)
        agent = rec.agent or next(iter(call.ringing), "")
        ticket = rec.ticket or session.variables.get("ticket", "")
        spec = self.config.queues.get(rec.queue or "")
        script = ""
        if spec is not None and spec.script:
            script = fill_script(spec.script, {**session.variables, "caller": rec.caller,
                                               "queue": spec.name, "agent": agent,
                                               "ticket": ticket})
        return {"call_id": call.call_id, "caller": rec.caller, "called": rec.called,
                "trunk": rec.trunk, "phase": call.phase.value, "started": rec.started_at,
                "queue": rec.queue or "", "queued_at": rec.queued_at, "wait": wait,
                "level": routed.min_level if routed is not None else 0,
                "path": [step.node for step in session.path], "keys": session.keys,
                "variables": dict(session.variables), "agent": agent, "ticket": ticket,
                "script": script, "recorded": call.call_id in self.call_recordings,
                "supervisors": sessions.get(call.call_id, []),
                "notes": rec.note.splitlines() if rec.note else []}

    def _agents_view(self, now: float) -> dict[str, Any]:
        if self._agent_queues is None:
            queues: dict[str, list[str]] = {}
            for spec in self.config.queues.values():
                for member in spec.all_members():
                    queues.setdefault(member.agent, []).append(spec.name)
            self._agent_queues = queues
            self._teams = self.config.team_of()
        offered, talking = self._agents_on_calls()
        out: dict[str, Any] = {}
        for name, agent in self.router.agents.items():
            last = self.agent_last_call.get(name)
            call_id = talking.get(name) or offered.get(name)
            if call_id is None and agent.state == "wrap_up" and last is not None:
                call_id = last.call_id
            talk = self.agent_talk.get(name, 0.0)
            started = self._talk_from.get(name)
            if started is not None:
                talk += max(0.0, now - started)
            wrap = agent.wrap_up_until if agent.state == "wrap_up" else None
            out[name] = {
                "name": name, "state": agent.state,
                "since": self.agent_since.get(name, (agent.state, 0.0))[1],
                "pause_reason": agent.pause_reason, "queues": self._agent_queues.get(name, []),
                "team": self._teams.get(name, ""), "call_id": call_id,
                "offered": name in offered and name not in talking,
                "wrapup_until": self.wall(wrap) if wrap is not None else None,
                "answered": agent.answered, "talk_seconds": round(talk, 1),
                "notice": self.console_notices.get(name),
                "last_call_id": last.call_id if last is not None else None,
                "preview": self._preview_view(name)}
        return out

    def _agents_on_calls(self) -> tuple[dict[str, str], dict[str, str]]:
        """Agent -> the call their phone rings for; agent -> the call they are on."""
        offered: dict[str, str] = {}
        talking: dict[str, str] = {}
        for call in self.calls.values():
            for name, ref in call.ringing.items():
                leg = self.legs.get(ref)
                if leg is not None and leg.live and ref != call.agent_ref:
                    offered[name] = call.call_id
            agent_leg = self.legs.get(call.agent_ref) if call.agent_ref else None
            if agent_leg is not None:
                talking[agent_leg.agent] = call.call_id
        for cb in self.callbacks.values():
            for name, ref in cb.ringing.items():
                leg = self.legs.get(ref)
                if leg is not None and leg.live:
                    offered[name] = cb.call_id
            if cb.agent and cb.agent_ref:
                talking[cb.agent] = cb.call_id
        return offered, talking

    def _queues_view(self, now: float) -> dict[str, Any]:
        out: dict[str, dict[str, Any]] = {
            q: {"waiting": 0, "longest_wait": 0.0, "agents": {}} for q in self.config.queues}
        for caller in self.router.waiting.values():
            view = out.get(caller.queue)
            if view is None:
                continue
            view["waiting"] += 1
            view["longest_wait"] = max(view["longest_wait"], round(now - caller.joined, 1))
        for spec in self.config.queues.values():
            states = out[spec.name]["agents"]
            for member in spec.all_members():
                state = self.router.agents[member.agent].state
                states[state] = states.get(state, 0) + 1
        return out

    def _supervisions_view(self) -> list[dict[str, str]]:
        out = [{"supervisor": s.supervisor, "agent": s.agent, "call_id": s.call_id,
                "mode": s.mode, "phase": s.phase.value} for s in self.supervisions.values()
               if s.phase is SupervisionPhase.JOINED]
        out += [{"supervisor": leg.supervisor, "agent": leg.agent, "call_id": leg.call_id,
                 "mode": leg.mode, "phase": "calling"} for leg in self.legs.values()
                if leg.role is LegRole.SUPERVISOR and leg.live
                and leg.phase is not LegPhase.CONNECTED]
        return out


__all__ = ["Console", "fill_script", "note_line"]

"""Supervision: a supervisor listens to, whispers in or joins an agent's call.

A supervisor calls from their own phone (the user and host of their ``supervisors`` URI; for a
phone that registers with the SIP edge, the URI is ``sip:NAME@`` the edge and the edge lets only
that phone, logged in as NAME, call From NAME) a supervision code followed by the agent's name
or number: ``*51anna`` listens, ``*52anna``
whispers, ``*53anna`` barges in. The switchboard answers and joins the supervisor's leg to the
agent's call with one-way audio connections of the conference bridge (no mixing of our own):

- listen: caller -> supervisor, agent -> supervisor;
- whisper: and supervisor -> agent (coaching: the caller does not hear it);
- barge: and supervisor -> caller (three-way).

Keys 1, 2 and 3 on the supervisor's phone switch between them. Anyone else, an agent who is
not on a call, or one on a call of a queue the supervisor may not watch, gets 403 and a log
line. The session ends with the supervisor's leg, or when the agent's call ends or leaves the
agent (transfer, escalation): then the switchboard hangs the supervisor up. Each start, mode
change and end is a line of the queue log (``supervise_start``, ``supervise_mode``,
``supervise_end``).
"""

import logging

from ivr.config import SUPERVISION_MODES, Supervisor
from ivr.driver import messages as m
from ivr.driver.base import CoreBase
from ivr.driver.state import (
    ANNOUNCE_TOKEN,
    CallerCall,
    CallPhase,
    Leg,
    LegRole,
    Supervision,
    SupervisionPhase,
)
from ivr.logs import escape
from ivr.sip import events as sip
from ivr.store import QueueEventRow

log = logging.getLogger("ivr.driver")

MODE_KEYS = {"1": "listen", "2": "whisper", "3": "barge"}
"""Keys the supervisor presses during a session to change its mode."""


def links_for(mode: str, caller: str, agent: str, supervisor: str) -> frozenset[tuple[str, str]]:
    """The one-way audio connections (source, destination) of a session in *mode*."""
    links = {(caller, supervisor), (agent, supervisor)}
    if mode in ("whisper", "barge"):
        links.add((supervisor, agent))
    if mode == "barge":
        links.add((supervisor, caller))
    return frozenset(links)


class Supervisions(CoreBase):
    """Transitions of a supervisor's session."""

    def _supervision_call(self, event: sip.IncomingCall, now: float) -> bool:
        """A call to a supervision code: joined, or refused with 403. False if the called
        number is no supervision code."""
        wanted = self.config.feature_codes.supervision_for(event.called)
        if wanted is None:
            return False
        mode, named = wanted
        sup = self.config.supervisor_for(event.source, event.caller)
        target = self._supervised_call(sup, named)
        if isinstance(target, str):
            log.warning("refused %s of '%s' from %s (%s): %s", mode, escape(named, 40),
                        event.source, escape(event.caller, 40) or "?", target)
            self._emit(m.HangupLeg(event.leg, 403))
            self._refused(sip.CallRefused(event.source, event.caller, event.called, 403,
                                          "Forbidden", event.trunk), now)
            return True
        assert sup is not None
        call, leg = target
        assert leg.sip is not None
        sess = Supervision(event.leg, sup.name, leg.agent, call.call_id, mode,
                           call.record.queue or "")
        self.supervisions[event.leg] = sess
        self._emit(m.AnswerLeg(event.leg))
        self._relink(sess, links_for(mode, call.leg, leg.sip, event.leg))
        log.info("call %s: supervisor %s joins agent %s's call (%s)", call.call_id, sup.name,
                 leg.agent, mode)
        if sup.announce:
            if self.beep is None:
                log.warning("call %s: no tone to announce supervisor %s to agent %s",
                            call.call_id, sup.name, leg.agent)
            else:
                self._emit(m.Play(leg.sip, (self.beep,), ANNOUNCE_TOKEN))
        self._supervision_log(sess, "supervise_start", now, announced=sup.announce)
        return True

    def _supervised_call(self, sup: Supervisor | None,
                         named: str) -> tuple[CallerCall, Leg] | str:
        """The call and agent leg *sup* may join, or why not."""
        if sup is None:
            return "not a supervisor's phone"
        agent = self.config.agent_named(named)
        if agent is None:
            return "no such agent"
        for call in self.calls.values():
            leg = self.legs.get(call.agent_ref) if call.agent_ref is not None else None
            if leg is None or leg.agent != agent.name or leg.sip is None \
                    or call.phase is not CallPhase.CONNECTED:
                continue
            if call.record.queue not in sup.queues:
                return f"agent {agent.name}'s call is in queue {call.record.queue}, not one " \
                       f"supervisor {sup.name} may watch"
            return call, leg
        return f"agent {agent.name} is not on a call"

    def _relink(self, sess: Supervision, links: frozenset[tuple[str, str]]) -> None:
        for src, dst in sorted(sess.links - links):
            self._emit(m.Disconnect(src, dst))
        for src, dst in sorted(links - sess.links):
            self._emit(m.Connect(src, dst))
        sess.links = links

    def _supervisor_key(self, event: sip.DigitReceived, now: float) -> None:
        sess = self.supervisions.get(event.leg)
        mode = MODE_KEYS.get(event.digit)
        if sess is None or mode is None or mode == sess.mode:
            return
        call = self.calls.get(sess.call_id)
        leg = self.legs.get(call.agent_ref) if call and call.agent_ref else None
        if call is None or leg is None or leg.sip is None:
            return  # the session ends at the end of this message
        log.info("call %s: supervisor %s: %s -> %s", call.call_id, sess.supervisor, sess.mode,
                 mode)
        was, sess.mode = sess.mode, mode
        self._relink(sess, links_for(mode, call.leg, leg.sip, sess.leg))
        self._supervision_log(sess, "supervise_mode", now, was=was)

    def _supervisor_left(self, event: sip.LegEnded, now: float) -> None:
        sess = self.supervisions.get(event.leg)
        if sess is not None:
            self._end_supervision(sess, "supervisor hung up", now, hang_up=False)

    def _supervision_sweep(self, now: float) -> None:
        """End the sessions whose agent's call ended or left the agent."""
        for sess in list(self.supervisions.values()):
            if not self._still_supervised(sess):
                self._end_supervision(sess, "the agent's call ended", now, hang_up=True)

    def _still_supervised(self, sess: Supervision) -> bool:
        call = self.calls.get(sess.call_id)
        leg = self.legs.get(call.agent_ref) if call and call.agent_ref else None
        return call is not None and leg is not None and leg.agent == sess.agent \
            and call.phase is CallPhase.CONNECTED and leg.role is LegRole.AGENT

    def _end_supervision(self, sess: Supervision, why: str, now: float, *,
                         hang_up: bool) -> None:
        self.supervisions.pop(sess.leg, None)
        self._relink(sess, frozenset())
        if hang_up:
            self._emit(m.HangupLeg(sess.leg))
        self._sup_to(sess, SupervisionPhase.ENDED, why)
        log.info("call %s: supervisor %s leaves agent %s's call (%s)", sess.call_id,
                 sess.supervisor, sess.agent, why)
        self._supervision_log(sess, "supervise_end", now, reason=why)

    def _supervision_log(self, sess: Supervision, kind: str, now: float,
                         **detail: object) -> None:
        self._emit(m.SaveQueueEvents((QueueEventRow(
            self.wall(now), kind, sess.queue, sess.call_id, sess.agent,
            {"supervisor": sess.supervisor, "mode": sess.mode, **detail}),)))

    def _supervision_problems(self) -> list[str]:
        out: list[str] = []
        for leg, sess in self.supervisions.items():
            if sess.leg != leg or sess.phase is not SupervisionPhase.JOINED:
                out.append(f"supervision on {leg} is {sess.phase.value} as {sess.leg}")
            elif not self._still_supervised(sess):
                out.append(f"supervisor {sess.supervisor} is on agent {sess.agent}'s call "
                           f"{sess.call_id}, which is no longer the agent's")
            elif sess.mode not in SUPERVISION_MODES:
                out.append(f"supervision on {leg} in unknown mode {sess.mode}")
        return out

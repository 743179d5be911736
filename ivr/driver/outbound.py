"""The dialler: campaigns' calls out, with the same agents as inbound and inbound first.

A worker thread (the "hopper filler", :mod:`ivr.driver.service`) owns the contact book: it
posts :class:`~ivr.driver.messages.HopperFill` with each open campaign's due contacts and
:class:`~ivr.driver.messages.DncAdded` when numbers join the do-not-call list, and takes the
core's :class:`~ivr.driver.messages.OutboundWrite` effects (attempts with their decision,
answers, dispositions, numbers for the list). The loop never waits on the store.

On each :class:`~ivr.driver.messages.Tick` every campaign in its window and not paused asks
the pacer (:class:`ivr.outbound.plan.Pacer`) how many contacts to dial, takes them from its
hopper and dials them, after checking a ``dial_out`` rule allows the number and it is not on
the do-not-call list; every decision, dialled or not, goes to the worker as an attempt.

Modes:

- **progressive**: one contact per free agent of the campaign's queue (none while an inbound
  caller waits for them); the agent is held for it (paused 'outbound': not offered inbound
  meanwhile). Inbound first: an inbound caller who starts waiting in a queue of the held agent
  before the contact answers gets the agent back on the dialler's next turn: the dial is
  withdrawn (the contact's phone stops ringing, outcome :data:`WITHDRAWN`, due again at once:
  no retry rule, no try counted) and the agent, released with no wrap-up, is offered the
  caller. Once the contact answered the call goes on as planned. On answer the
  agent's phone is called, hears the contact's name (a rendered prompt) and is bridged; after
  the call the agent wraps up as after a call of the queue. Not reached within the queue's
  ring timeout (2 s at most: :data:`AGENT_ANSWER`): the contact hears
  :data:`ivr.notices.OUTBOUND_SORRY_NOTICE` and the call is abandoned (counted against the
  cap, no new attempt that day). ``dial_ratio`` above 1 dials
  more contacts than free agents (while today's abandon rate is under the cap): an answered
  contact with no free agent is abandoned in the same way.
- **automated**: on answer the campaign's flow runs on the contact's leg as a caller's call;
  at its end the ``answers`` variables are stored on the contact, and a ``dnc`` variable set to
  1 lists the number (:data:`DNC_VARIABLE`).
- **preview**: an idle agent of the queue is offered the next due contact (the console's view,
  ``agents[name]["preview"]``); :class:`~ivr.driver.messages.PreviewDial` calls the agent's
  phone first, then the contact, and bridges them on answer.

Outcomes: busy (486, 600), no_answer (408, 480, 487, or no answer in
:data:`NO_ANSWER_TIMEOUT`), failed (any other), answered, abandoned; each goes through
:func:`ivr.outbound.plan.after_attempt` and its decision is stored with the attempt. A
withdrawn dial (:data:`WITHDRAWN`) is the switchboard's decision, not the contact's: it is
stored with its reason and the contact is due again at once. A
disposition the agent gives lands on the call's record and on the contact: the campaign's
``final_dispositions`` close it, its ``dnc_disposition`` lists the number.
"""

import datetime as dt
import logging
import zoneinfo
from dataclasses import replace
from typing import Any

from ivr.driver import messages as m
from ivr.driver.base import CoreBase
from ivr.driver.console import fill_script
from ivr.driver.state import (
    MOH_TOKEN,
    CallerCall,
    CampaignState,
    Leg,
    LegPhase,
    LegRole,
    OutCall,
    OutPhase,
)
from ivr.engine import Action, Answer, CallSession
from ivr.engine.session import resolve
from ivr.flow.prompts import PromptPiece
from ivr.logs import caller as shown
from ivr.notices import NOTICES
from ivr.outbound.plan import (
    ABANDONED,
    ANSWERED,
    Contact,
    Decision,
    Hopper,
    Pacer,
    PacerState,
    after_attempt,
    in_window,
)
from ivr.sip import events as sip
from ivr.store import CallRecord

log = logging.getLogger("ivr.driver")

NO_ANSWER_TIMEOUT = 30.0
"""Seconds a contact's phone may ring before the attempt counts as no answer."""
AGENT_ANSWER = 2.0
"""Seconds the held agent's phone may ring once the contact answered (at most the queue's
ring timeout): past them the contact hears the message, so an answered contact never waits
more than 2 s for a person (agents who work progressive campaigns use auto-answer)."""
SORRY_TOKEN = -10
"""Token of the message to a contact no agent could take."""
WHISPER_TOKEN = -11
"""Token of the contact's name whispered to the agent before the bridge."""
HOPPER_LOW = 2
"""A campaign's hopper with fewer contacts due asks the filler for more."""
FILL_EVERY = 2.0
"""Seconds between two asks for more contacts at most."""
LOOK_EVERY = 1.0
"""Seconds between two looks at the campaigns when nothing else happens."""
DNC_VARIABLE = "dnc"
"""An automated campaign's flow that sets this variable to 1 (a key the contact pressed: "press
9 not to be called again") puts the number on the do-not-call list (source 'ivr')."""
WITHDRAWN = "withdrawn"
"""Outcome (of the call record and of the attempt) of a progressive dial called off while the
contact's phone rang because an inbound caller waits for the agent held for it."""
BUSY = frozenset({486, 600})
NO_ANSWER = frozenset({408, 480, 487})


_PAUSE_KINDS = (("outside the calling window", "window"), ("inbound caller", "inbound_waiting"),
                ("service level", "service_level"), ("has waited", "wait_over"),
                ("no line free", "lines"), ("free agent", "agents"), ("preview", "preview"),
                ("stopping", "stopping"))


def pause_kind(reason: str) -> str:
    """The pacer's reason for dialling nothing, as a bounded label ('' : it may dial)."""
    if not reason:
        return ""
    return next((kind for words, kind in _PAUSE_KINDS if words in reason), "other")


def dial_outcome(status: int) -> str:
    """A contact leg that ended unanswered: 'busy', 'no_answer' or 'failed'."""
    if status in BUSY:
        return "busy"
    if status in NO_ANSWER:
        return "no_answer"
    return "failed"


class Outbound(CoreBase):
    """Campaigns' calls; see the module doc."""

    # -- messages ------------------------------------------------------------------------------
    def _outbound_message(self, msg: m.Message, now: float) -> None:
        if isinstance(msg, m.HopperFill):
            self._hopper_fill(msg)
        elif isinstance(msg, m.DncAdded):
            self._dnc_added(msg.numbers)
        elif isinstance(msg, m.PreviewDial):
            self._preview_dial(msg, now)
        elif isinstance(msg, m.ServiceLevels):
            self.outbound.service_levels = dict(msg.levels)

    def _hopper_fill(self, msg: m.HopperFill) -> None:
        st = self.outbound.campaigns.get(msg.campaign)
        if st is None:
            return
        decided = self.outbound.decided
        for cid in [c for c, seq in decided.items() if seq <= msg.applied]:
            del decided[cid]  # the store had it when it looked: its picture is current
        busy = {c.contact.id for c in self.outbound.calls.values()}
        busy |= {c.id for _, c in self.outbound.previews.values()}
        st.hopper = Hopper(c for c in msg.contacts
                           if c.id not in busy and c.id not in decided
                           and c.number not in self.outbound.dnc)

    def _dnc_added(self, numbers: frozenset[str]) -> None:
        fresh = numbers - self.outbound.dnc
        self.outbound.dnc |= numbers
        for name, st in self.outbound.campaigns.items():
            for number in fresh:
                if st.hopper.remove(number):
                    log.info("campaign %s: %s joined the do-not-call list; out of the hopper",
                             name, shown(number, log))
        for agent, (_, contact) in list(self.outbound.previews.items()):
            if contact.number in numbers:
                del self.outbound.previews[agent]

    # -- each turn: what to dial -----------------------------------------------------------------
    def _outbound_tick(self, now: float) -> None:
        if not self.outbound.campaigns:
            return
        self.outbound.next_look = now + LOOK_EVERY
        for call in list(self.outbound.calls.values()):
            self._out_timers(call, now)
        self._withdraw_for_inbound(now)
        wall = self.wall(now)
        low = False
        for st in self.outbound.campaigns.values():
            self._roll_day(st, wall)
            st.window_open = in_window(st.campaign, wall)
            if self.stopping or self.draining:
                st.paused_reason = "the switchboard is stopping"
                continue
            if not st.window_open:
                st.paused_reason = "outside the calling window"
                self._withdraw_previews(st.campaign.name)
                continue
            if st.campaign.mode == "preview":
                st.paused_reason = ""
                self._offer_previews(st, wall)
            else:
                self._pace(st, now)
            low = low or st.hopper.due_count(wall) < HOPPER_LOW
        if low and now - self.outbound.last_fill_ask >= FILL_EVERY:
            self.outbound.last_fill_ask = now
            self._emit(m.FillHoppers())

    def _withdraw_for_inbound(self, now: float) -> None:
        """Inbound first: each progressive dial whose contact has not answered and whose held
        agent serves a queue where a (non-callback) inbound caller waits is withdrawn."""
        waiting = {c.queue for c in self.router.waiting.values() if not c.callback}
        if not waiting:
            return
        for call in list(self.outbound.calls.values()):
            if call.phase is not OutPhase.DIALLING or call.answered_at is not None \
                    or call.agent_ref is not None or not call.agent \
                    or self.outbound.held.get(call.agent) != call.ref:
                continue  # answered, a preview call, or no agent held for it
            if any(self._serves(call.agent, queue) for queue in waiting):
                self._withdraw(call, now)

    def _serves(self, agent: str, queue: str) -> bool:
        spec = self.config.queues.get(queue)
        return spec is not None and any(mem.agent == agent for mem in spec.all_members())

    def _withdraw(self, call: OutCall, now: float) -> None:
        """Call the dial off: the contact's leg is cancelled, the agent released at once (the
        router offers them the caller), the contact due again now with no try counted."""
        st = self.outbound.campaigns[call.campaign]
        reason = f"withdrawn: inbound caller waiting for agent {call.agent}"
        call.phase = OutPhase.ENDED
        self.outbound.calls.pop(call.ref, None)
        self._cancel(call.ref, reason)
        self._release_agent(call, now, wrap_up=False)
        record = call.record
        if record.ended_at is None:
            record.finish(self.wall(now), WITHDRAWN, reason)
            self._save(record)
            self._emit(m.CountCallEnded(record.trunk, WITHDRAWN))
        # its place in the line: it was due when taken, and is the first dialled again
        again = replace(call.contact, next_at=min(call.contact.next_at, self.wall(now)))
        self._save_attempt(st, again, WITHDRAWN, record.call_id,
                           f"dialled ({call.why}): {reason}; due again now, no try counted",
                           None, "pending", now, next_at=again.next_at)
        st.hopper.put(again)
        log.info("campaign %s: contact %d %s", call.campaign, call.contact.id, reason)

    def _roll_day(self, st: CampaignState, wall: float) -> None:
        day = dt.datetime.fromtimestamp(
            wall, zoneinfo.ZoneInfo(st.campaign.window.timezone)).date().isoformat()
        if st.day != day:
            st.day = day
            st.attempts_today = st.connects_today = 0
            st.answered_today = st.abandoned_today = 0
            st.overdial_stopped = False

    def _members(self, st: CampaignState) -> list[str]:
        spec = self.config.queues.get(st.campaign.queue or "")
        return [mem.agent for mem in spec.all_members()] if spec is not None else []

    def _free_agents(self, st: CampaignState) -> list[str]:
        """The campaign's agents free now, not held for a call, longest idle first."""
        agents = [self.router.agents[a] for a in self._members(st) if a in self.router.agents]
        free = [a for a in agents if a.state == "available" and a.reachable
                and a.agent not in self.outbound.held and a.agent not in self.outbound.previews]
        return [a.agent for a in sorted(free, key=lambda a: (a.idle_since, a.agent))]

    def _pacer_state(self, st: CampaignState, now: float) -> PacerState:
        campaign = st.campaign
        members = set(self._members(st))
        queues = {spec.name for spec in self.config.queues.values()
                  if members & {mem.agent for mem in spec.all_members()}}
        waiting = [c for c in self.router.waiting.values() if not c.callback]
        mine = [c for c in self.outbound.calls.values() if c.campaign == campaign.name]
        ringing = [c for c in mine if c.answered_at is None]
        held_ringing = sum(1 for c in ringing if c.agent and self.outbound.held.get(c.agent)
                           == c.ref)
        flows = {c.caller_call for c in self.outbound.calls.values() if c.caller_call}
        on_trunk = sum(1 for c in self.calls.values()
                       if c.trunk == campaign.trunk and c.call_id not in flows)
        on_trunk += sum(1 for c in self.outbound.calls.values()
                        if self.outbound.campaigns[c.campaign].campaign.trunk == campaign.trunk)
        return PacerState(
            service_level=self.outbound.service_levels.get(campaign.queue or ""),
            free_agents=len(self._free_agents(st)) + held_ringing,
            inbound_waiting=sum(1 for c in waiting if c.queue in queues),
            longest_wait=max((now - c.joined for c in waiting), default=0.0),
            lines_in_use=on_trunk, campaign_lines=len(mine), ringing=len(ringing),
            answered_today=st.answered_today, abandoned_today=st.abandoned_today,
            window_open=st.window_open, overdial_stopped=st.overdial_stopped)

    def _pace(self, st: CampaignState, now: float) -> None:
        pace = Pacer.decide(st.campaign, self._pacer_state(st, now))
        if pace.dials <= 0:
            if st.paused_reason != pace.reason:
                log.info("campaign %s dials nothing: %s", st.campaign.name, pace.reason)
            st.paused_reason = pace.reason
            return
        st.paused_reason = ""
        wall = self.wall(now)
        dials = pace.dials
        while dials > 0:
            contact = st.hopper.take(wall)
            if contact is None:
                break
            if self._dial_contact(st, contact, pace.reason, now):
                dials -= 1

    def _refuse(self, st: CampaignState, contact: Contact, outcome: str, state: str,
                reason: str, now: float) -> None:
        log.info("campaign %s: contact %d not dialled: %s", st.campaign.name, contact.id,
                 reason)
        self._save_attempt(st, contact, outcome, None, reason, None, state, now)

    def _dial_contact(self, st: CampaignState, contact: Contact, why: str, now: float,
                      agent: str = "") -> bool:
        """Dial *contact* (True), or record why not (False)."""
        campaign = st.campaign
        uri = self.config.campaign_dial_target(contact.number)
        if uri is None:
            self._refuse(st, contact, "not_dialled", "failed", "not dialled: no dial_out rule "
                         "with campaigns: true allows the number", now)
            return False
        if contact.number in self.outbound.dnc:
            self._refuse(st, contact, "dnc_skipped", "dnc", "not dialled: on the do-not-call "
                         "list (added while the campaign ran)", now)
            return False
        if not agent and campaign.mode == "progressive":
            free = self._free_agents(st)
            agent = free[0] if free else ""
        ref = self._ref()
        call_id = self.new_id()
        record = CallRecord(call_id=call_id, started_at=self.wall(now),
                            caller=campaign.caller_id, called=contact.number,
                            trunk=campaign.trunk, source="dialler",
                            direction="out", campaign=campaign.name, contact_id=contact.id)
        call = OutCall(ref, campaign.name, contact, record, agent=agent,
                       dial_deadline=now + NO_ANSWER_TIMEOUT, why=why)
        self.outbound.calls[ref] = call
        self.legs[ref] = Leg(ref, LegRole.CONTACT, call_id)
        if agent and campaign.mode == "progressive":
            self.outbound.held[agent] = ref
            self._routing(self.router.pause(agent, now, "outbound"), now)
        st.attempts_today += 1
        log.info("campaign %s: dialling contact %d (%s)%s: %s", campaign.name, contact.id,
                 shown(contact.number, log), f" for agent {agent}" if agent else "", why)
        self._save(record)
        self._emit(m.Dial(ref, uri, campaign.caller_id))
        pieces = self._whisper_pieces(st, contact)
        if pieces and campaign.mode == "progressive" and self.files_for(pieces) is None:
            # the name is rendered while the contact's phone rings, so that it is ready
            # when the agent answers (the answer only warms the prompt cache)
            self._emit(m.RenderPrompt(call_id, WHISPER_TOKEN, pieces, NO_ANSWER_TIMEOUT))
        return True

    def _whisper_pieces(self, st: CampaignState, contact: Contact) -> tuple[Any, ...]:
        """The contact's name as the agent hears it before the connect (() for none)."""
        name = contact.name.strip()
        if not st.campaign.whisper or not name:
            return ()
        return (PromptPiece("say", name, self._campaign_language(st)),)

    # -- the contact's leg -----------------------------------------------------------------------
    def _out_timers(self, call: OutCall, now: float) -> None:
        if call.phase is OutPhase.DIALLING and call.dial_deadline is not None \
                and call.dial_deadline <= now:
            log.info("campaign %s: contact %d did not answer in %.0f s", call.campaign,
                     call.contact.id, NO_ANSWER_TIMEOUT)
            self._cancel(call.ref, "no answer")
            self._out_done(call, "no_answer", "no answer", now)
        elif call.phase is OutPhase.AGENT_RINGING and call.agent_deadline is not None \
                and call.agent_deadline <= now:
            log.warning("campaign %s: agent %s did not take contact %d in time",
                        call.campaign, call.agent, call.contact.id)
            self._no_agent(call, f"agent {call.agent} did not answer", now)

    def _out_call_of(self, leg: Leg) -> OutCall | None:
        for call in self.outbound.calls.values():
            if call.ref == leg.ref or call.agent_ref == leg.ref:
                return call
        return None

    def _leg_answered(self, sip_leg: str, now: float) -> None:
        leg = self._leg_of(sip_leg)
        if leg is None or leg.role not in (LegRole.CONTACT, LegRole.CAMPAIGN_AGENT):
            super()._leg_answered(sip_leg, now)
            return
        call = self._out_call_of(leg)
        if call is None or not leg.live:
            self._emit(m.HangupLeg(sip_leg))
            return
        if leg.role is LegRole.CONTACT:
            self._contact_answered(call, leg, now)
        else:
            self._campaign_agent_answered(call, leg, now)

    def _contact_answered(self, call: OutCall, leg: Leg, now: float) -> None:
        assert leg.sip is not None
        st = self.outbound.campaigns[call.campaign]
        call.answered_at = now
        call.record.answered_at = self.wall(now)
        st.answered_today += 1
        self._save(call.record)
        log.info("campaign %s: contact %d answered", call.campaign, call.contact.id)
        if call.phase is OutPhase.DIALLING and call.agent_ref is not None:  # preview
            agent = self.legs.get(call.agent_ref)
            if agent is not None and agent.sip is not None \
                    and agent.phase is LegPhase.CONNECTED:
                self._out_bridge(call, leg, agent.sip)
                return
        if st.campaign.mode == "automated":
            self._start_flow(call, leg, now)
            return
        name = call.agent
        if not name:
            free = self._free_agents(st)
            name = free[0] if free else ""
            if name:
                call.agent = name
                self.outbound.held[name] = call.ref
                self._routing(self.router.pause(name, now, "outbound"), now)
        if not name:
            self._no_agent(call, "answered with no agent free", now)
            return
        spec = self.config.queues.get(st.campaign.queue or "")
        ref = self._ref()
        self.legs[ref] = Leg(ref, LegRole.CAMPAIGN_AGENT, call.record.call_id, name)
        call.agent_ref = ref
        call.agent_deadline = now + min(AGENT_ANSWER, spec.ring_timeout if spec is not None
                                        else AGENT_ANSWER)
        call.phase = OutPhase.AGENT_RINGING
        self._emit(m.Play(leg.sip, (self.music_on_hold,), MOH_TOKEN, loop=True))
        self._emit(m.Dial(ref, self.config.agents[name].uri))

    def _campaign_agent_answered(self, call: OutCall, leg: Leg, now: float) -> None:
        assert leg.sip is not None
        self._leg_to(leg, LegPhase.CONNECTED, "answered")
        if call.phase is OutPhase.AGENT_FIRST:  # preview: now the contact
            uri = self.config.campaign_dial_target(call.contact.number)
            if uri is None or call.contact.number in self.outbound.dnc:
                self._cancel(leg.ref, "cannot dial the contact")
                self._out_done(call, "failed", "the contact cannot be dialled now", now)
                return
            call.phase = OutPhase.DIALLING
            call.dial_deadline = now + NO_ANSWER_TIMEOUT
            self.legs[call.ref] = Leg(call.ref, LegRole.CONTACT, call.record.call_id)
            self._emit(m.Play(leg.sip, (self.music_on_hold,), MOH_TOKEN, loop=True))
            self._emit(m.Dial(call.ref, uri, call.record.caller))
            return
        contact_leg = self.legs.get(call.ref)
        if call.phase is not OutPhase.AGENT_RINGING or contact_leg is None \
                or contact_leg.sip is None:
            self._cancel(leg.ref, "contact gone")
            return
        call.agent_deadline = None
        st = self.outbound.campaigns[call.campaign]
        pieces = self._whisper_pieces(st, call.contact)
        files = self.files_for(pieces) if pieces else None
        if files is not None:
            self._emit(m.Play(leg.sip, files, WHISPER_TOKEN))
            return
        if pieces:  # still rendering (rendered while the phone rang): the contact waits no more
            log.info("campaign %s: contact %d's name is not rendered yet: put through without "
                     "the whisper", call.campaign, call.contact.id)
        self._out_bridge(call, contact_leg, leg.sip)

    def _campaign_language(self, st: CampaignState) -> str:
        return "it" if st.campaign.window.timezone.startswith("Europe/Rome") else "en"

    def _prompt_ready(self, msg: m.PromptReady, now: float) -> None:
        call = next((c for c in self.outbound.calls.values()
                     if c.record.call_id == msg.call_id), None)
        if call is None:
            super()._prompt_ready(msg, now)
            return
        if msg.play_id == WHISPER_TOKEN and not msg.files:
            log.warning("campaign %s: contact %d's name could not be rendered (%s): the agent "
                        "is put through without it", call.campaign, call.contact.id,
                        msg.error or "no audio")
        # otherwise the name is in the prompt cache now: the agent's answer plays it

    def _playback_ended(self, event: sip.PlaybackEnded, now: float) -> None:
        leg = self._leg_of(event.leg)
        call = self._out_call_of(leg) if leg is not None else None
        if call is None:
            super()._playback_ended(event, now)
            return
        if event.token == WHISPER_TOKEN and leg is not None and leg.ref == call.agent_ref:
            self._whispered(call, now)
        elif event.token == SORRY_TOKEN and leg is not None and leg.ref == call.ref:
            self._cancel(call.ref, "told we will call back")

    def _whispered(self, call: OutCall, now: float) -> None:
        contact = self.legs.get(call.ref)
        agent = self.legs.get(call.agent_ref) if call.agent_ref else None
        if contact is None or contact.sip is None or agent is None or agent.sip is None:
            return
        self._out_bridge(call, contact, agent.sip)

    def _out_bridge(self, call: OutCall, contact: Leg, agent_sip: str) -> None:
        """Join the contact's answered leg to the agent's."""
        assert contact.sip is not None
        self._leg_to(contact, LegPhase.BRIDGING, "to the agent")
        self.bridging[(agent_sip, contact.sip)] = contact.ref
        self._emit(m.StopPlay(agent_sip))
        self._emit(m.StopPlay(contact.sip))
        self._emit(m.Bridge(agent_sip, contact.sip))

    def _bridged(self, msg: m.Bridged, now: float) -> None:
        ref = self.bridging.get((msg.a, msg.b))
        call = self.outbound.calls.get(ref) if ref is not None else None
        if call is None:
            super()._bridged(msg, now)
            return
        del self.bridging[(msg.a, msg.b)]
        leg = self.legs.get(call.ref)
        if leg is None:
            return
        if not msg.ok:
            log.warning("campaign %s: contact %d answered but cannot be put through to agent "
                        "%s", call.campaign, call.contact.id, call.agent)
            self._no_agent(call, "cannot connect to the agent", now)
            return
        st = self.outbound.campaigns[call.campaign]
        self._leg_to(leg, LegPhase.CONNECTED, "bridged")
        call.phase = OutPhase.CONNECTED
        call.record.agent = call.agent
        call.record.connected_at = self.wall(now)
        st.connects_today += 1
        self.agent_last_call[call.agent] = call.record
        self._talk_from[call.agent] = now
        self._emit(m.CountCampaign(call.campaign, "connect"))
        self._save(call.record)
        log.info("campaign %s: contact %d connected to agent %s", call.campaign,
                 call.contact.id, call.agent)

    def _no_agent(self, call: OutCall, why: str, now: float) -> None:
        """The contact answered and no agent takes it: the message, then the box hangs up;
        abandoned (the cap), no new attempt today."""
        st = self.outbound.campaigns[call.campaign]
        if call.agent_ref is not None:
            self._cancel(call.agent_ref, "no longer wanted")
        self._release_agent(call, now, wrap_up=False)
        call.phase = OutPhase.SORRY
        call.outcome = ABANDONED
        st.abandoned_today += 1
        st.overdial_stopped = True
        self._emit(m.CountCampaign(call.campaign, "abandoned"))
        leg = self.legs.get(call.ref)
        log.warning("campaign %s: contact %d abandoned: %s", call.campaign, call.contact.id,
                    why)
        call.record.end_reason = why
        files = self.files_for(resolve(NOTICES["outbound_sorry"], self._campaign_language(st)))
        if leg is None or leg.sip is None or files is None:
            if files is None:
                log.error("the outbound sorry message is not rendered")
            self._cancel(call.ref, why)
            return
        self._emit(m.StopPlay(leg.sip))
        self._emit(m.Play(leg.sip, files, SORRY_TOKEN))

    def _release_agent(self, call: OutCall, now: float, *, wrap_up: bool) -> None:
        agent = call.agent
        if not agent or self.outbound.held.get(agent) != call.ref:
            return
        del self.outbound.held[agent]
        start = self._talk_from.pop(agent, None)
        if start is not None:
            self.agent_talk[agent] = self.agent_talk.get(agent, 0.0) + now - start
        queue = self.outbound.campaigns[call.campaign].campaign.queue or ""
        self._routing(self.router.after_outbound(agent, queue if wrap_up else "", now), now)
        reason = self.outbound.pause_after.pop(agent, None)
        if reason is not None:
            self._routing(self.router.pause(agent, now, reason), now)

    # -- legs ending -----------------------------------------------------------------------------
    def _outgoing_ended(self, leg: Leg, status: int, reason: str, now: float) -> None:
        if leg.role not in (LegRole.CONTACT, LegRole.CAMPAIGN_AGENT):
            super()._outgoing_ended(leg, status, reason, now)
            return
        was = leg.phase
        call = self._out_call_of(leg)
        self._leg_to(leg, LegPhase.ENDED, f"{status} {reason}".strip())
        self.legs.pop(leg.ref, None)
        for key in [k for k, ref in self.bridging.items() if ref == leg.ref]:
            del self.bridging[key]
        if call is None or call.phase is OutPhase.ENDED:
            return
        if leg.role is LegRole.CONTACT:
            self._contact_ended(call, was, status, reason, now)
        else:
            self._campaign_agent_ended(call, was, status, reason, now)

    def _contact_ended(self, call: OutCall, was: LegPhase, status: int, reason: str,
                       now: float) -> None:
        if call.phase is OutPhase.SORRY:
            self._out_done(call, ABANDONED, call.record.end_reason or "no agent free", now)
        elif call.answered_at is None:
            outcome = dial_outcome(status)
            self._out_done(call, outcome, f"{status} {reason}".strip(), now)
        elif call.phase is OutPhase.CONNECTED:
            self._out_done(call, ANSWERED, "contact hung up", now)
        else:
            self._out_done(call, ANSWERED, "contact hung up before an agent took the call",
                           now)

    def _campaign_agent_ended(self, call: OutCall, was: LegPhase, status: int, reason: str,
                              now: float) -> None:
        call.agent_ref = None
        if call.phase in (OutPhase.SORRY, OutPhase.FLOW):
            return  # the contact hears the message; the agent is out of it already
        if call.phase is OutPhase.AGENT_FIRST:
            log.info("campaign %s: preview agent %s did not take the call (%s)",
                     call.campaign, call.agent, f"{status} {reason}".strip())
            self._tell(call.agent, "preview call not made: your phone did not answer", False)
            self._release_agent(call, now, wrap_up=False)
            self.outbound.calls.pop(call.ref, None)
            call.phase = OutPhase.ENDED
            self.outbound.campaigns[call.campaign].hopper.put(call.contact)
        elif call.phase is OutPhase.AGENT_RINGING:
            self._no_agent(call, f"agent {call.agent}'s phone did not take the call "
                                 f"({status} {reason})".strip(), now)
        elif call.phase is OutPhase.CONNECTED:
            log.info("campaign %s: agent %s hung up on contact %d", call.campaign, call.agent,
                     call.contact.id)
            self._out_done(call, ANSWERED, "agent hung up", now)
        else:  # preview: the agent gave up while the contact's phone rang
            self._out_done(call, "no_answer", "the agent hung up while the contact's phone "
                                              "rang", now)

    def _out_done(self, call: OutCall, outcome: str, reason: str, now: float) -> None:
        """The attempt is over: the record, the agent's wrap-up, the contact's next step."""
        if call.phase is OutPhase.ENDED:
            return
        connected = call.phase is OutPhase.CONNECTED
        call.phase = OutPhase.ENDED
        self.outbound.calls.pop(call.ref, None)
        for ref in (call.ref, call.agent_ref):
            if ref is not None:
                self._cancel(ref, reason)
        self._release_agent(call, now, wrap_up=connected)
        st = self.outbound.campaigns[call.campaign]
        record = call.record
        if record.ended_at is None:
            shown_outcome = "completed" if outcome == ANSWERED else outcome
            record.finish(self.wall(now), shown_outcome, reason)
            self._save(record)
            self._emit(m.CountCallEnded(record.trunk, shown_outcome))
        decision = after_attempt(st.campaign, call.contact, outcome, self.wall(now),
                                 record.disposition or "")
        self._save_attempt(st, call.contact, outcome, record.call_id,
                           f"dialled ({call.why}): {decision.reason}", decision, "", now,
                           disposition=record.disposition)
        log.info("campaign %s: contact %d: %s (%s); %s", call.campaign, call.contact.id,
                 outcome, reason, decision.reason)

    def _save_attempt(self, st: CampaignState, contact: Contact, outcome: str,
                      call_id: str | None, reason: str, decision: Decision | None, state: str,
                      now: float, disposition: str | None = None,
                      next_at: float | None = None) -> None:
        out = self.outbound
        out.write_seq += 1
        out.decided[contact.id] = out.write_seq
        tries: tuple[tuple[str, int], ...] = ()  # (): the store keeps the contact's counts
        if decision is not None:
            state = {"retry": "pending", "done": "done", "dnc": "dnc",
                     "failed": "failed"}[decision.action]
            tries = tuple(sorted(decision.contact.tries.items()))
            next_at = decision.at if state == "pending" else None
        if state == "dnc":
            self.outbound.dnc.add(contact.number)
        self._emit(m.SaveAttempt(out.write_seq, st.campaign.name, contact.id, outcome,
                                 call_id, reason, next_at, state, tries, disposition))
        self._emit(m.CountCampaign(st.campaign.name, "attempt", outcome))

    # -- agents held for a campaign's call -------------------------------------------------------
    def _agent_command(self, cmd: m.AgentCommand, now: float) -> None:
        """An agent held for a campaign's call (paused 'outbound') who asks for a pause gets it
        when the call is over; an unpause meanwhile is ignored (they are on that call)."""
        ref = self.outbound.held.get(cmd.agent)
        if ref is None or cmd.command not in ("pause", "unpause"):
            super()._agent_command(cmd, now)
            return
        if cmd.command == "pause":
            self.outbound.pause_after[cmd.agent] = cmd.reason or "break"
            log.info("agent %s: pause (%s) after their campaign call", cmd.agent,
                     cmd.reason or "break")
        else:
            self.outbound.pause_after.pop(cmd.agent, None)
            log.info("agent %s: unpause ignored: on a campaign's call", cmd.agent)

    # -- automated: the campaign's flow on the contact's leg --------------------------------------
    def _start_flow(self, call: OutCall, leg: Leg, now: float) -> None:
        assert leg.sip is not None
        campaign = self.outbound.campaigns[call.campaign].campaign
        flow = self.flows.get(str(campaign.flow)) if campaign.flow is not None else None
        if flow is None:
            log.error("campaign %s: its flow %s is not loaded; the contact is hung up",
                      campaign.name, campaign.flow)
            self._out_done(call, "failed", "the campaign's flow is not loaded", now)
            return
        record = call.record
        record.flow, record.flow_version = flow.name, flow.version
        session = CallSession(flow, record.call_id, call.contact.number, campaign.caller_id,
                              started_at=dt.datetime.fromtimestamp(record.started_at, dt.UTC),
                              overrides=self.overrides, callback_allowed=False)
        session.variables.update({**call.contact.vars, "name": call.contact.name,
                                  "campaign": campaign.name})
        caller = CallerCall(record.call_id, leg.sip, campaign.trunk, session, record,
                            confirmed=True)
        self._leg_to(leg, LegPhase.CONNECTED, "the flow runs")
        self.legs.pop(leg.ref, None)  # the leg is a caller's now
        self.by_sip[leg.sip] = record.call_id
        self.calls[record.call_id] = caller
        call.phase = OutPhase.FLOW
        call.caller_call = record.call_id
        st = self.outbound.campaigns[call.campaign]
        st.connects_today += 1
        self._emit(m.CountCampaign(call.campaign, "connect"))
        log.info("campaign %s: contact %d answered; flow %s runs", campaign.name,
                 call.contact.id, flow.name)
        self._session(caller, session.start(now), now)

    def _flow_call(self, call_id: str) -> OutCall | None:
        return next((c for c in self.outbound.calls.values()
                     if c.caller_call == call_id and c.phase is OutPhase.FLOW), None)

    def _session_action(self, call: CallerCall, action: Action, now: float) -> None:
        if isinstance(action, Answer) and call.record.direction == "out":
            return  # the contact answered our call: nothing to answer
        super()._session_action(call, action, now)

    def _caller_ended(self, call: CallerCall, event: sip.LegEnded, now: float) -> None:
        super()._caller_ended(call, event, now)
        out = self._flow_call(call.call_id)
        if out is None:
            return
        campaign = self.outbound.campaigns[out.campaign].campaign
        variables = call.session.variables
        answers = tuple((k, variables[k]) for k in campaign.answers if variables.get(k))
        if answers:
            self._emit(m.SaveContact(out.contact.id, answers=answers))
            log.info("campaign %s: contact %d answered %s", campaign.name, out.contact.id,
                     ", ".join(f"{k}={v}" for k, v in answers))
        if variables.get(DNC_VARIABLE, "").strip().lower() in ("1", "yes", "true"):
            number = out.contact.number
            log.info("campaign %s: contact %d asked in the flow not to be called again",
                     campaign.name, out.contact.id)
            self._emit(m.AddDnc(number, "ivr", f"asked in campaign {campaign.name}'s flow"))
            self._dnc_added(frozenset({number}))
        out.phase = OutPhase.CONNECTED  # ended by the flow's end, not abandoned
        self._out_done(out, ANSWERED, call.record.end_reason or "the flow ended", now)

    # -- dispositions: on the record and on the contact --------------------------------------------
    def _dispose(self, agent: str, code: str, now: float) -> bool:
        record = self.agent_last_call.get(agent)
        done = super()._dispose(agent, code, now)
        if not done or record is None or record.direction != "out" \
                or record.contact_id is None or record.campaign not in self.outbound.campaigns:
            return done
        campaign = self.outbound.campaigns[record.campaign].campaign
        dnc = code == campaign.dnc_disposition
        ends = dnc or code in campaign.final_dispositions
        self._emit(m.SaveContact(record.contact_id, disposition=code, ends=ends, dnc=dnc))
        if dnc:
            self.outbound.dnc.add(record.called)
            for st in self.outbound.campaigns.values():
                st.hopper.remove(record.called)
        log.info("campaign %s: contact %d disposition %s%s", campaign.name, record.contact_id,
                 code, " (do not call)" if dnc else " ends the contact" if ends else "")
        return done

    # -- preview ---------------------------------------------------------------------------------
    def _offer_previews(self, st: CampaignState, wall: float) -> None:
        """Offer the next due contact to each idle preview agent of the campaign; an agent
        who is no longer idle (an inbound call, a pause) gives theirs back."""
        for agent, (name, given) in list(self.outbound.previews.items()):
            state = self.router.agents.get(agent)
            if name == st.campaign.name and (state is None or state.state != "available"):
                del self.outbound.previews[agent]
                st.hopper.put(given)
        offered = {c.id for _, c in self.outbound.previews.values()}
        for agent in self._free_agents(st):
            contact = st.hopper.take(wall)
            while contact is not None and (contact.id in offered
                                           or contact.number in self.outbound.dnc):
                contact = st.hopper.take(wall)
            if contact is None:
                return
            self.outbound.previews[agent] = (st.campaign.name, contact)

    def _withdraw_previews(self, campaign: str) -> None:
        for agent, (name, contact) in list(self.outbound.previews.items()):
            if name == campaign:
                del self.outbound.previews[agent]
                self.outbound.campaigns[name].hopper.put(contact)

    def _preview_dial(self, msg: m.PreviewDial, now: float) -> None:
        agent = msg.agent
        who = msg.source or agent
        st = self.outbound.campaigns.get(msg.campaign)
        offer = self.outbound.previews.get(agent)
        if agent not in self.router.agents or agent not in self.config.agents:
            self._tell(who, f"preview call refused: no agent '{agent}'", False)
            return
        if st is None or st.campaign.mode != "preview":
            self._tell(agent, f"preview call refused: no preview campaign '{msg.campaign}'",
                       False)
            return
        if offer is None or offer[0] != msg.campaign or offer[1].id != msg.contact_id:
            self._tell(agent, f"preview call refused: contact {msg.contact_id} is not the one "
                              "offered to you", False)
            return
        if not st.window_open:
            self._tell(agent, "preview call refused: outside the campaign's calling window",
                       False)
            return
        if self.router.agents[agent].state != "available":
            self._tell(agent, "preview call refused: you are "
                              f"{self.router.agents[agent].state}", False)
            return
        contact = offer[1]
        del self.outbound.previews[agent]
        if self.config.campaign_dial_target(contact.number) is None:
            self._refuse(st, contact, "not_dialled", "failed", "not dialled: no dial_out rule "
                         "with campaigns: true allows the number", now)
            self._tell(agent, "preview call refused: no dial_out rule allows the number", False)
            return
        if contact.number in self.outbound.dnc:
            self._refuse(st, contact, "dnc_skipped", "dnc", "not dialled: on the do-not-call "
                         "list (added while the campaign ran)", now)
            self._tell(agent, "preview call refused: the number is on the do-not-call list",
                       False)
            return
        ref = self._ref()
        call_id = self.new_id()
        campaign = st.campaign
        record = CallRecord(call_id=call_id, started_at=self.wall(now),
                            caller=campaign.caller_id, called=contact.number,
                            trunk=campaign.trunk, source="dialler",
                            direction="out", campaign=campaign.name, contact_id=contact.id)
        agent_ref = self._ref()
        call = OutCall(ref, campaign.name, contact, record, phase=OutPhase.AGENT_FIRST,
                       agent=agent, agent_ref=agent_ref, why=f"preview by agent {agent}")
        self.outbound.calls[ref] = call
        self.outbound.held[agent] = ref
        self._routing(self.router.pause(agent, now, "outbound"), now)
        self.legs[agent_ref] = Leg(agent_ref, LegRole.CAMPAIGN_AGENT, call_id, agent)
        st.attempts_today += 1
        log.info("campaign %s: agent %s calls contact %d (%s): their phone first%s",
                 campaign.name, agent, contact.id, shown(contact.number, log),
                 f", asked from {msg.source}" if msg.source else "")
        self._save(record)
        self._emit(m.Dial(agent_ref, self.config.agents[agent].uri))
        self._tell(agent, f"calling your phone, then {contact.name or contact.number}", True)

    def _outbound_stopped(self, now: float) -> None:
        """At the end of a stop: the campaign calls left are closed as interrupted (their
        contacts stay due: no attempt is counted)."""
        for call in list(self.outbound.calls.values()):
            call.phase = OutPhase.ENDED
            self.outbound.calls.pop(call.ref, None)
            self._release_agent(call, now, wrap_up=False)
            if call.record.ended_at is None:
                call.record.finish(self.wall(now), "interrupted", "switchboard stopped")
                self._save(call.record)

    # -- time, checks ----------------------------------------------------------------------------
    def _outbound_deadline(self) -> float | None:
        times = [t for c in self.outbound.calls.values()
                 for t in (c.dial_deadline if c.phase is OutPhase.DIALLING else None,
                           c.agent_deadline if c.phase is OutPhase.AGENT_RINGING else None)
                 if t is not None]
        if self.outbound.next_look is not None:
            times.append(self.outbound.next_look)
        elif self.outbound.campaigns:
            times.append(0.0)  # the first look: at once
        return min(times) if times else None

    def _outbound_problems(self) -> list[str]:
        out: list[str] = []
        for agent, ref in self.outbound.held.items():
            call = self.outbound.calls.get(ref)
            state = self.router.agents[agent]
            if call is None:
                out.append(f"agent {agent} is held for call {ref} that is gone")
            if state.state != "paused" or state.pause_reason != "outbound":
                out.append(f"agent {agent} is held for a campaign's call but is {state.state}")
        for ref, call in self.outbound.calls.items():
            if call.agent and call.phase in (OutPhase.AGENT_RINGING, OutPhase.CONNECTED,
                                             OutPhase.AGENT_FIRST) \
                    and self.outbound.held.get(call.agent) != ref:
                out.append(f"campaign call {ref} has agent {call.agent}, who is not held for it")
        return out

    def _campaign_snapshot(self) -> tuple[dict[str, int], dict[str, str]]:
        """Campaign -> calls out now; campaign -> why it dials nothing (a short kind)."""
        dialling = {name: 0 for name in self.outbound.campaigns}
        for call in self.outbound.calls.values():
            dialling[call.campaign] = dialling.get(call.campaign, 0) + 1
        return dialling, {name: pause_kind(st.paused_reason)
                          for name, st in self.outbound.campaigns.items()}

    # -- the console's view --------------------------------------------------------------------
    def _campaigns_view(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        calls = list(self.outbound.calls.values())
        for name, st in self.outbound.campaigns.items():
            mine = [c for c in calls if c.campaign == name]
            out[name] = {
                "mode": st.campaign.mode, "window_open": st.window_open,
                "paused_reason": st.paused_reason,
                "dialling": sum(1 for c in mine if c.answered_at is None),
                "connected": sum(1 for c in mine if c.answered_at is not None),
                "attempts_today": st.attempts_today, "connects_today": st.connects_today,
                "abandoned_today": st.abandoned_today, "hopper": len(st.hopper)}
        return out

    def _preview_view(self, agent: str) -> dict[str, Any] | None:
        offer = self.outbound.previews.get(agent)
        if offer is None:
            return None
        name, contact = offer
        st = self.outbound.campaigns.get(name)
        script = st.campaign.script if st is not None else ""
        values = {**contact.vars, "name": contact.name, "number": contact.number,
                  "agent": agent, "campaign": name}
        return {"campaign": name, "contact_id": contact.id, "number": contact.number,
                "name": contact.name, "vars": dict(contact.vars),
                "script": fill_script(script, values) if script else ""}


__all__ = ["AGENT_ANSWER", "NO_ANSWER_TIMEOUT", "WITHDRAWN", "Outbound", "dial_outcome",
           "pause_kind"]

"""Tickets and dispositions in the core: the caller's ticket follows the call, the agent's
disposition lands on the record and the ticket.

* A call starts with its caller's open ticket in the flow's variables (``ticket``,
  ``ticket_status``, ``ticket_level``, ``ticket_queue``; empty when there is none), so a
  ``branch`` can send a repeat caller to the queue that owns the ticket and a prompt can say
  ``{ticket:digits}``. Joining that queue starts the caller at the ticket's level.
* The router's queue log drives the rest: ``connect`` opens or continues the ticket (at the
  answering agent's level), every ``escalate`` (the agent's code, overflow, a higher tier) moves
  it up with the caller.
* An agent keys ``*`` and a disposition code during the call (on the call's audio, like the
  escalation code), or dials it from their phone during wrap-up: it applies to the agent's last
  call until their next one connects. A queue with ``require_disposition`` holds the agent in
  wrap-up until then (the queue spec's ``disposition_hold``).

The ticket book answers from memory (the open tickets are loaded at start); changed tickets go
to the store's writer thread as effects.
"""

import logging

from ivr.driver import messages as m
from ivr.driver.base import CoreBase
from ivr.driver.state import FEATURE_TOKEN, CallerCall
from ivr.engine.session import CallSession, resolve
from ivr.notices import NOTICES
from ivr.sip import events as sip
from ivr.store import QueueEventRow
from ivr.tickets import Ticket
from routing.acd import QueueEvent

log = logging.getLogger("ivr.driver")

TICKET_VARIABLES = ("ticket", "ticket_status", "ticket_level", "ticket_queue")
"""Flow variables a call starts with: its caller's open ticket ('' when none)."""


class Ticketing(CoreBase):
    """Tickets and dispositions; see the module doc."""

    # -- the flow's view ----------------------------------------------------------------------
    def _ticket_variables(self, session: CallSession, caller: str) -> None:
        ticket = self.ticket_book.lookup(caller)
        values = ("", "", "", "") if ticket is None else (
            ticket.number, ticket.status, str(ticket.level), ticket.queue)
        session.variables.update(zip(TICKET_VARIABLES, values, strict=True))

    def _ticket_level(self, call: CallerCall, queue: str) -> int:
        """The level a caller joining *queue* starts at: their open ticket's, if that queue
        owns it."""
        ticket = self.ticket_book.of_call(call.call_id) or \
            self.ticket_book.lookup(self._customer(call))
        return ticket.level if ticket is not None and ticket.queue == queue else 1

    def _customer(self, call: CallerCall) -> str:
        """Who the ticket belongs to: the flow variable of ivr.yaml's ``tickets``, when the
        caller keyed it, else the calling number."""
        name = self.config.ticket_customer_variable
        keyed = call.session.variables.get(name, "") if name else ""
        return keyed or call.record.caller

    # -- the queue log ------------------------------------------------------------------------
    def _ticket_events(self, events: list[QueueEvent]) -> None:
        for e in events:
            call = self.calls.get(e.call_id)
            if e.kind == "connect" and call is not None:
                self._ticket_answered(call, e)
            elif e.kind == "escalate" and call is not None:
                ticket = self.ticket_book.escalated(
                    e.call_id, queue=str(e.detail.get("to_queue") or e.queue),
                    level=int(e.detail.get("to_level") or 1), agent=e.agent,
                    note=str(e.detail.get("kind", "")), now=self.wall(e.at))
                self._save_ticket(ticket)
            elif e.kind in ("complete", "abandon", "leave"):
                self._release_ticket_call(e.call_id)

    def _ticket_answered(self, call: CallerCall, e: QueueEvent) -> None:
        previous = self.agent_last_call.get(e.agent)
        self.agent_last_call[e.agent] = call.record
        if previous is not None and previous.call_id != call.call_id:
            self._release_ticket_call(previous.call_id)
        ticket = self.ticket_book.answered(
            call.call_id, self._customer(call), queue=e.queue, agent=e.agent,
            level=int(e.detail.get("level") or 1), now=self.wall(e.at))
        if ticket is None:
            return
        call.record.ticket = ticket.number
        call.record.ticket_seq = self.ticket_book.call_seq(call.call_id)
        self._save(call.record)
        self._save_ticket(ticket)

    def _release_ticket_call(self, call_id: str) -> None:
        """Forget the call's link to its ticket once nobody can key a disposition for it."""
        if call_id in self.calls or any(r.call_id == call_id
                                        for r in self.agent_last_call.values()):
            return
        self.ticket_book.call_ended(call_id)

    def _save_ticket(self, ticket: Ticket | None) -> None:
        if ticket is not None:
            self._emit(m.SaveTicket(ticket.copy()))

    # -- dispositions -------------------------------------------------------------------------
    def _dispose(self, agent: str, code: str, now: float) -> bool:
        """*agent* keyed disposition *code*: on their last call's record and ticket. False if
        the code is unknown or the agent has had no call."""
        disposition = self.config.dispositions.get(code)
        record = self.agent_last_call.get(agent)
        if disposition is None or record is None:
            return False
        log.info("call %s: agent %s keys disposition %s (%s)", record.call_id, agent, code,
                 disposition.label)
        record.disposition = code
        self._save(record)
        ticket = self.ticket_book.disposed(record.call_id, code, resolves=disposition.resolves,
                                           agent=agent, now=self.wall(now))
        self._save_ticket(ticket)
        self._emit(m.SaveQueueEvents((QueueEventRow(
            self.wall(now), "disposition", record.queue or "", record.call_id, agent,
            {"code": code, "label": disposition.label, "resolves": disposition.resolves,
             "ticket": record.ticket or "", "first_call": record.ticket_seq == 1}),)))
        self._routing(self.router.disposed(agent, now), now)
        return True

    def _disposition_keys(self, call: CallerCall, agent: str, now: float) -> bool:
        """The connected agent's last keys are ``*`` and a disposition code: True if taken."""
        keys = call.agent_keys
        if len(keys) < 2 or keys[-2] != "*" or keys[-1] not in self.config.dispositions:
            return False
        call.agent_keys = ""
        return self._dispose(agent, keys[-1], now)

    def _disposition_call(self, event: sip.IncomingCall, now: float) -> bool:
        """An agent's phone dialling ``*`` and a disposition code (wrap-up): True if taken."""
        code = event.called[1:] if event.called.startswith("*") else ""
        if code not in self.config.dispositions:
            return False
        agent = self.config.agent_for(event.source, event.caller)
        if agent is None:
            return False
        notice = "disposition" if self._dispose(agent.name, code, now) else "refused"
        self._emit(m.AnswerLeg(event.leg))
        files = self.files_for(resolve(NOTICES[notice], "en"))
        if files is None:
            log.error("the confirmation of a disposition is not rendered")
            self._emit(m.HangupLeg(event.leg))
            return True
        self.feature_legs.add(event.leg)
        self._emit(m.Play(event.leg, files, FEATURE_TOKEN))
        return True

    def _ticket_problems(self) -> list[str]:
        found = self.ticket_book.problems()
        found += [f"agent {a}'s last call {r.call_id} has a ticket the book lost"
                  for a, r in self.agent_last_call.items()
                  if r.ticket and self.ticket_book.of_call(r.call_id) is None]
        return found


__all__ = ["TICKET_VARIABLES", "Ticketing"]

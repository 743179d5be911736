"""Tickets: the caller's problem, followed across calls and support levels.

Pure logic, like :mod:`routing.acd`: it is fed what happened to a call and the time, and returns
the tickets it changed (for the store to write); it never reads a clock or a file.

A caller is known by a *customer* key: their calling number, or a number they keyed in a
``collect`` node (the flow variable named by ``tickets.customer_variable`` in ivr.yaml, e.g. an
account number), which wins when set. Withheld numbers have no ticket.

* An answered call (an agent took it) continues the customer's open ticket, or opens one at the
  queue's support level. "Open" means status ``open`` or ``escalated``.
* Every escalation of the call (the agent's ``*9``, overflow to another queue, a higher tier, the
  flow's ``escalate``) moves the ticket up: status ``escalated``, the new queue and level.
* A disposition keyed by the agent lands on the call's history entry; one that resolves sets
  the ticket ``resolved`` (the next call opens a new ticket). :meth:`TicketBook.close` sets a
  ticket ``closed`` (e.g. by a tool).

    >>> book = TicketBook()
    >>> t = book.answered("c1", "+3902555", queue="support", agent="anna", level=1, now=10.0)
    >>> t.number, t.status, t.level
    ('1001', 'open', 1)
    >>> book.escalated("c1", queue="support", level=2, now=20.0).status
    'escalated'
    >>> book.lookup("+3902555").level
    2
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

STATUSES = ("open", "escalated", "resolved", "closed")
OPEN_STATUSES = ("open", "escalated")
FIRST_NUMBER = 1001
"""The first ticket's number: short, four digits, easy to say and to key in."""
WITHHELD = {"", "anonymous", "unknown", "withheld", "private", "restricted", "unavailable"}


def is_known(customer: str | None) -> bool:
    """A customer key a ticket can be kept under (not empty, not a withheld number)."""
    return customer is not None and customer.strip().lower() not in WITHHELD


@dataclass(frozen=True)
class TicketEntry:
    """One line of a ticket's history."""

    at: float
    kind: str
    """'call' (an agent answered), 'escalate', 'disposition' or 'close'."""
    call_id: str = ""
    queue: str = ""
    agent: str = ""
    level: int = 0
    disposition: str = ""
    """The code the agent keyed (kind 'disposition')."""
    note: str = ""


@dataclass
class Ticket:
    """A caller's problem: who owns it now and what happened to it."""

    number: str
    customer: str
    status: str
    level: int
    queue: str
    agent: str
    opened_at: float
    updated_at: float
    closed_at: float | None = None
    """When it was resolved or closed."""
    history: tuple[TicketEntry, ...] = ()
    calls: int = 0
    """Answered calls of this ticket so far."""

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def first_call(self) -> str:
        """The call that opened the ticket."""
        return next((e.call_id for e in self.history if e.kind == "call"), "")

    def copy(self) -> Ticket:
        return dataclasses.replace(self)  # history is a tuple of frozen entries: shared safely


@dataclass
class _CallLink:
    ticket: str
    seq: int
    """1 for the ticket's first call, 2 for the next..."""


@dataclass
class TicketBook:
    """The tickets a switchboard needs at once: the open ones, and those of calls in progress.

    Loaded at start with the open tickets from the store (:meth:`load`); resolved and closed
    tickets are dropped from memory when no call in progress holds them.
    """

    tickets: dict[str, Ticket] = field(default_factory=dict)
    """Number -> ticket."""
    next_number: int = FIRST_NUMBER
    _by_customer: dict[str, str] = field(default_factory=dict)
    _calls: dict[str, _CallLink] = field(default_factory=dict)

    def load(self, tickets: Iterable[Ticket], highest_number: int = 0) -> None:
        """Take the open tickets read from the store; numbers go on after *highest_number*."""
        for ticket in tickets:
            if ticket.is_open:
                self.tickets[ticket.number] = ticket
                self._by_customer[ticket.customer] = ticket.number
            if ticket.number.isdigit():
                highest_number = max(highest_number, int(ticket.number))
        self.next_number = max(self.next_number, highest_number + 1)

    def lookup(self, customer: str | None) -> Ticket | None:
        """The customer's open ticket, or None (answers at once: no store read)."""
        if not is_known(customer):
            return None
        number = self._by_customer.get(customer or "")
        return self.tickets.get(number) if number else None

    def of_call(self, call_id: str) -> Ticket | None:
        link = self._calls.get(call_id)
        return self.tickets.get(link.ticket) if link else None

    def call_seq(self, call_id: str) -> int:
        """1 if *call_id* opened its ticket, 2 for the ticket's second call...; 0: no ticket."""
        link = self._calls.get(call_id)
        return link.seq if link else 0

    def answered(self, call_id: str, customer: str | None, *, queue: str, agent: str,
                 level: int, now: float) -> Ticket | None:
        """An agent answered *call_id*: continue the customer's open ticket or open one.

        Returns the ticket (changed: to be saved), or None for a withheld number. A second
        answer of the same call (after an escalation) is the same call of the ticket."""
        ticket = self.of_call(call_id)
        if ticket is None and not is_known(customer):
            return None
        if ticket is None:
            ticket = self.lookup(customer)
            if ticket is None:
                ticket = Ticket(str(self.next_number), (customer or "").strip(), "open", level,
                                queue, agent, now, now)
                self.next_number += 1
                self.tickets[ticket.number] = ticket
                self._by_customer[ticket.customer] = ticket.number
            ticket.calls += 1
            self._calls[call_id] = _CallLink(ticket.number, ticket.calls)
        ticket.queue, ticket.agent, ticket.updated_at = queue, agent, now
        ticket.level = max(ticket.level, level)
        ticket.history += (TicketEntry(now, "call", call_id, queue, agent, level),)
        return ticket

    def escalated(self, call_id: str, *, queue: str, level: int, now: float,
                  agent: str = "", note: str = "") -> Ticket | None:
        """The call moved up (agent's *9, overflow, higher tier, the flow's escalate): the
        ticket follows, to *queue* at *level* (never down). None: the call has no ticket."""
        ticket = self.of_call(call_id)
        if ticket is None or not ticket.is_open:
            return None
        ticket.status = "escalated"
        ticket.queue, ticket.level = queue, max(ticket.level, level)
        ticket.updated_at = now
        ticket.history += (TicketEntry(now, "escalate", call_id, queue, agent, ticket.level,
                                       note=note),)
        return ticket

    def disposed(self, call_id: str, code: str, *, resolves: bool, now: float,
                 agent: str = "", note: str = "") -> Ticket | None:
        """The agent keyed disposition *code* for *call_id* (during the call or wrap-up)."""
        ticket = self.of_call(call_id)
        if ticket is None:
            return None
        ticket.updated_at = now
        ticket.history += (TicketEntry(now, "disposition", call_id, ticket.queue,
                                       agent or ticket.agent, ticket.level, code, note),)
        if resolves and ticket.is_open:
            ticket.status = "resolved"
            ticket.closed_at = now
            self._by_customer.pop(ticket.customer, None)
        return ticket

    def close(self, number: str, now: float, note: str = "") -> Ticket | None:
        ticket = self.tickets.get(number)
        if ticket is None or ticket.status == "closed":
            return None
        ticket.status = "closed"
        ticket.closed_at = ticket.closed_at or now
        ticket.updated_at = now
        ticket.history += (TicketEntry(now, "close", note=note),)
        if self._by_customer.get(ticket.customer) == number:
            del self._by_customer[ticket.customer]
        self._drop_if_done(number)
        return ticket

    def call_ended(self, call_id: str) -> None:
        """The call is over (a disposition keyed in wrap-up still reaches it until then:
        the driver calls this when the agent's wrap-up ends)."""
        link = self._calls.pop(call_id, None)
        if link is not None:
            self._drop_if_done(link.ticket)

    def _drop_if_done(self, number: str) -> None:
        ticket = self.tickets.get(number)
        if ticket is None or ticket.is_open:
            return
        if not any(link.ticket == number for link in self._calls.values()):
            del self.tickets[number]

    def problems(self) -> list[str]:
        """Broken invariants (empty when all is well), for the driver's check."""
        found = []
        for customer, number in self._by_customer.items():
            ticket = self.tickets.get(number)
            if ticket is None or not ticket.is_open or ticket.customer != customer:
                found.append(f"customer index {customer!r} -> {number} is stale")
        for call_id, link in self._calls.items():
            if link.ticket not in self.tickets:
                found.append(f"call {call_id} holds ticket {link.ticket} not in memory")
        for ticket in self.tickets.values():
            if ticket.status not in STATUSES:
                found.append(f"ticket {ticket.number} has status {ticket.status!r}")
        return found


__all__ = ["OPEN_STATUSES", "STATUSES", "Ticket", "TicketBook", "TicketEntry", "is_known"]

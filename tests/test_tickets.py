"""Tickets: opened by an answered call, followed across calls and levels (time by hand)."""

from __future__ import annotations

import pytest

from ivr.tickets import Ticket, TicketBook

ANNA = "+390255501"


def answer(book: TicketBook, call_id: str, customer: str | None = ANNA, *, queue: str = "support",
           agent: str = "anna", level: int = 1, now: float = 0.0) -> Ticket | None:
    return book.answered(call_id, customer, queue=queue, agent=agent, level=level, now=now)


def test_an_answered_call_opens_a_ticket_with_a_short_number() -> None:
    book = TicketBook()
    ticket = answer(book, "c1", now=100.0)
    assert ticket is not None
    assert (ticket.number, ticket.status, ticket.level, ticket.queue, ticket.agent) == (
        "1001", "open", 1, "support", "anna")
    assert (ticket.opened_at, ticket.updated_at, ticket.calls) == (100.0, 100.0, 1)
    assert book.call_seq("c1") == 1
    assert book.lookup(ANNA) is ticket
    assert book.problems() == []


@pytest.mark.parametrize("number", [None, "", "anonymous", " Withheld "])
def test_a_withheld_number_has_no_ticket(number: str | None) -> None:
    book = TicketBook()
    assert answer(book, "c1", number) is None
    assert book.lookup(number) is None
    assert book.next_number == 1001


def test_a_second_call_continues_the_open_ticket() -> None:
    book = TicketBook()
    first = answer(book, "c1", now=10.0)
    book.call_ended("c1")
    again = answer(book, "c2", agent="marco", now=500.0)
    assert again is first
    assert (again.calls, again.agent, again.updated_at, again.opened_at) == (2, "marco", 500.0,
                                                                             10.0)
    assert book.call_seq("c2") == 2
    assert [e.call_id for e in again.history if e.kind == "call"] == ["c1", "c2"]
    assert again.first_call == "c1"
    other = answer(book, "c3", "+390255502", now=600.0)
    assert other is not None
    assert other.number == "1002"


def test_escalation_moves_the_ticket_up_and_a_repeat_caller_finds_its_level() -> None:
    book = TicketBook()
    answer(book, "c1", now=0.0)
    ticket = book.escalated("c1", queue="support", level=2, agent="anna", now=30.0)
    assert ticket is not None
    assert (ticket.status, ticket.level, ticket.queue) == ("escalated", 2, "support")
    # level 2 answers the same call: still the ticket's first call
    answer(book, "c1", agent="bruno", level=2, now=40.0)
    assert (ticket.calls, book.call_seq("c1"), ticket.agent) == (1, 1, "bruno")
    # an overflow to another queue at a lower level never moves the ticket down
    book.escalated("c1", queue="specialists", level=1, now=50.0)
    assert (ticket.queue, ticket.level) == ("specialists", 2)
    book.disposed("c1", "2", resolves=False, now=60.0)
    book.call_ended("c1")
    found = book.lookup(ANNA)
    assert found is ticket
    assert (found.is_open, found.level) == (True, 2)
    assert [e.kind for e in ticket.history] == ["call", "escalate", "call", "escalate",
                                                "disposition"]


def test_a_resolving_disposition_resolves_and_the_next_call_opens_a_new_ticket() -> None:
    book = TicketBook()
    ticket = answer(book, "c1", now=0.0)
    assert ticket is not None
    book.disposed("c1", "1", resolves=True, now=90.0, note="reset the router")
    assert (ticket.status, ticket.closed_at) == ("resolved", 90.0)
    assert ticket.history[-1].disposition == "1"
    assert ticket.history[-1].note == "reset the router"
    assert book.lookup(ANNA) is None
    assert book.of_call("c1") is ticket  # wrap-up still reaches it
    book.call_ended("c1")
    assert "1001" not in book.tickets
    new = answer(book, "c2", now=1000.0)
    assert new is not None
    assert (new.number, book.call_seq("c2")) == ("1002", 1)
    assert book.problems() == []


def test_dispositions_and_escalations_of_a_call_without_ticket_do_nothing() -> None:
    book = TicketBook()
    assert book.disposed("nope", "1", resolves=True, now=0.0) is None
    assert book.escalated("nope", queue="q", level=2, now=0.0) is None
    assert book.close("9999", 0.0) is None


def test_close_drops_the_ticket_and_loading_goes_on_after_the_highest_number() -> None:
    book = TicketBook()
    stored = [Ticket("1040", ANNA, "escalated", 2, "support", "bruno", 0.0, 5.0),
              Ticket("1077", "+39000", "resolved", 1, "support", "anna", 0.0, 5.0, 5.0)]
    book.load(stored)
    assert book.lookup(ANNA) is stored[0]
    assert "1077" not in book.tickets
    assert book.next_number == 1078
    closed = book.close("1040", 9.0, note="duplicate")
    assert closed is not None
    assert (closed.status, closed.closed_at) == ("closed", 9.0)
    assert book.lookup(ANNA) is None
    assert book.tickets == {}


def test_problems_reports_a_stale_index() -> None:
    book = TicketBook()
    ticket = answer(book, "c1")
    assert ticket is not None
    ticket.status = "resolved"  # changed behind the book's back
    assert book.problems() == [f"customer index {ANNA!r} -> 1001 is stale"]

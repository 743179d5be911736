"""Tickets in the call record file: written by the writer thread, read back at start, kept
through a full disk (fallback file), purged with the caller's records."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ivr.retention import purge_caller, purge_older_than
from ivr.store import CallRecord, CallStore
from ivr.tickets import TicketBook

ANNA = "+390255501"
DAY = 86400.0


def book_with_history() -> TicketBook:
    book = TicketBook()
    book.answered("c1", ANNA, queue="support", agent="anna", level=1, now=100.0)
    book.escalated("c1", queue="support", level=2, agent="anna", now=130.0)
    book.answered("c1", ANNA, queue="support", agent="bruno", level=2, now=140.0)
    book.disposed("c1", "2", resolves=False, now=200.0, note="calls back tomorrow")
    book.answered("c9", "+390255599", queue="sales", agent="carla", level=1, now=300.0)
    book.disposed("c9", "4", resolves=True, now=350.0)
    return book


def test_tickets_are_written_and_the_open_ones_read_back_as_they_were(tmp_path: Path) -> None:
    book = book_with_history()
    store = CallStore(tmp_path / "calls.db")
    for ticket in book.tickets.values():
        store.save_ticket(ticket)
    store.save(CallRecord("c1", 90.0, caller=ANNA, ticket="1001", ticket_seq=1, disposition="2"))
    assert store.wait_idle(20.0)
    opened, highest = store.open_tickets()
    assert highest == 1002
    assert [t.number for t in opened] == ["1001"]
    assert opened[0] == book.tickets["1001"]  # history, levels and times intact
    resolved = store.ticket("1002")
    assert resolved is not None
    assert (resolved.status, resolved.closed_at) == ("resolved", 350.0)
    row = store.get("c1")
    assert row is not None
    assert (row["ticket"], row["ticket_seq"], row["disposition"]) == ("1001", 1, "2")
    assert store.close() == 0

    again = TicketBook()
    again.load(*CallStore(tmp_path / "calls.db").open_tickets())
    assert again.lookup(ANNA) == book.tickets["1001"]
    assert again.next_number == 1003


def test_a_later_version_of_a_ticket_replaces_the_waiting_one(tmp_path: Path) -> None:
    book = TicketBook()
    store = CallStore(tmp_path / "calls.db")
    ticket = book.answered("c1", ANNA, queue="support", agent="anna", level=1, now=1.0)
    assert ticket is not None
    store.save_ticket(ticket)
    book.escalated("c1", queue="support", level=3, now=2.0)
    store.save_ticket(ticket)  # a copy is queued: later changes to the model do not leak in
    book.disposed("c1", "1", resolves=True, now=3.0)
    assert store.wait_idle(20.0)
    stored = store.ticket("1001")
    assert stored is not None
    assert (stored.status, stored.level) == ("escalated", 3)
    assert store.close() == 0


def test_tickets_that_could_not_be_written_go_to_the_fallback_file_and_back(
        tmp_path: Path) -> None:
    path = tmp_path / "calls.db"

    def full(db: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database or disk is full")  # small rows fit any page

    store = CallStore.open_for_service(path, before_write=full)
    for ticket in book_with_history().tickets.values():
        store.save_ticket(ticket)
    assert store.close(timeout=0.5) == 2
    lines = [json.loads(line) for line in store.fallback_path().read_text().splitlines()]
    assert [line["type"] for line in lines] == ["ticket", "ticket"]
    second = CallStore.open_for_service(path)
    assert second.import_fallback() == 2
    opened, highest = second.open_tickets()
    assert ([t.number for t in opened], highest) == (["1001"], 1002)
    assert second.close() == 0


def saved(tmp_path: Path) -> Path:
    path = tmp_path / "calls.db"
    store = CallStore(path)
    for ticket in book_with_history().tickets.values():
        store.save_ticket(ticket)
    store.save(CallRecord("c1", 90.0, caller=ANNA, ended_at=250.0, outcome="completed",
                          ticket="1001"))
    store.save(CallRecord("c9", 290.0, caller="+390255599", ended_at=360.0,
                          outcome="completed", ticket="1002"))
    assert store.close() == 0
    return path


def numbers(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        found = [r[0] for r in db.execute("SELECT number FROM tickets ORDER BY number")]
    db.close()
    return found


def test_purge_caller_removes_their_tickets(tmp_path: Path) -> None:
    path = saved(tmp_path)
    result = purge_caller(path, ANNA)
    assert (result.calls, result.tickets) == (1, 1)
    assert numbers(path) == ["1002"]


def test_retention_removes_tickets_last_changed_before_the_cutoff(tmp_path: Path) -> None:
    path = saved(tmp_path)
    result = purge_older_than(path, 1, now=300.0 + DAY)  # 1001 last changed at 200, 1002 at 350
    assert result.tickets == 1
    assert numbers(path) == ["1002"]

"""The hopper filler on a real store file: fills, writes in order, DNC added by another
process reaching the loop. The worker posts to a queue the test reads with a deadline."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import pytest

from ivr.driver import messages as m
from ivr.driver.filler import HopperFiller
from ivr.outbound.campaigns import Campaign, Window
from ivr.outbound.contacts import ContactBook, import_csv

NOW = 1_800_000_000.0  # Friday 2027-01-15 08:00 UTC


def campaign(name: str = "spring", hours: tuple[int, int] = (6 * 60, 20 * 60)) -> Campaign:
    return Campaign(name, "progressive", "gw", 30, 4, Window("UTC", tuple(range(7)), (hours,)),
                    queue="support")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "calls.db"
    csv = tmp_path / "list.csv"
    csv.write_text("number,name,city\n3470000001,Anna,Roma\n3470000002,Bruno,Milano\n"
                   "3470000003,Carla,Napoli\n", encoding="utf-8")
    with ContactBook(path) as book:
        assert import_csv(book, "spring", csv, now=NOW - 60).added == 3
        assert import_csv(book, "closed", csv, now=NOW - 60).added == 3
    return path


class Posts:
    def __init__(self) -> None:
        self.q: queue.SimpleQueue[m.Message] = queue.SimpleQueue()

    def post(self, message: m.Message) -> None:
        self.q.put(message)

    def next(self, kind: type, timeout: float = 5.0) -> m.Message:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind.__name__} posted in {timeout} s"
            try:
                message = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(message, kind):
                return message


def start(store: Path, posts: Posts, **campaigns: Campaign) -> HopperFiller:
    filler = HopperFiller(store, campaigns or {"spring": campaign(),
                                               "closed": campaign("closed", (0, 60))},
                          posts.post, clock=lambda: NOW, every=0.2)
    filler.start()
    return filler


def test_fills_only_campaigns_in_their_window(store: Path) -> None:
    posts = Posts()
    filler = start(store, posts)
    try:
        fill = posts.next(m.HopperFill)
        assert isinstance(fill, m.HopperFill)
        assert fill.campaign == "spring"  # 'closed' dials 00:00-01:00 only
        assert [c.number for c in fill.contacts] == ["+393470000001", "+393470000002",
                                                     "+393470000003"]
        assert fill.contacts[0].vars == {"city": "Roma"}
    finally:
        filler.stop()


def test_attempts_are_written_and_the_next_fill_says_so(store: Path) -> None:
    posts = Posts()
    filler = start(store, posts)
    try:
        first = posts.next(m.HopperFill)
        assert isinstance(first, m.HopperFill)
        contact = first.contacts[0]
        filler.submit(m.SaveAttempt(7, "spring", contact.id, "busy", "c1", "busy; retry",
                                    NOW + 900, "pending", (("busy", 1),)))
        filler.submit(m.SaveContact(first.contacts[1].id, answers=(("score", "4"),),
                                    disposition="1", ends=True))
        filler.submit(m.FillHoppers())
        deadline = time.monotonic() + 5
        while True:
            fill = posts.next(m.HopperFill)
            assert isinstance(fill, m.HopperFill)
            if fill.applied == 7:
                break
            assert time.monotonic() < deadline
        assert [c.number for c in fill.contacts] == ["+393470000003"]
    finally:
        filler.stop()
    with ContactBook(store) as book:
        busy = book.contact(contact.id)
        assert busy is not None
        assert (busy.state, busy.next_at, busy.tries) == ("pending", NOW + 900, {"busy": 1})
        [attempt] = book.attempts(contact.id)
        assert (attempt.outcome, attempt.call_id, attempt.decision) == ("busy", "c1",
                                                                        "busy; retry")
        done = book.contact(first.contacts[1].id)
        assert done is not None
        assert (done.state, done.disposition, done.answers) == ("done", "1", {"score": "4"})


def test_a_number_listed_by_another_process_reaches_the_loop(store: Path) -> None:
    posts = Posts()
    filler = start(store, posts)
    try:
        posts.next(m.HopperFill)
        with ContactBook(store) as other:  # `ivr dnc add` in another process
            other.add_dnc("+393470000002", "internal", "asked by phone")
        added = posts.next(m.DncAdded)
        assert isinstance(added, m.DncAdded)
        assert added.numbers == frozenset({"+393470000002"})
        fill = posts.next(m.HopperFill)
        assert isinstance(fill, m.HopperFill)
        assert "+393470000002" not in [c.number for c in fill.contacts]
    finally:
        filler.stop()


def test_a_dnc_add_from_the_loop_is_written(store: Path) -> None:
    posts = Posts()
    filler = start(store, posts)
    filler.submit(m.AddDnc("+393470000003", "ivr", "pressed 9"))
    filler.stop()
    with ContactBook(store) as book:
        assert book.is_dnc("+393470000003")

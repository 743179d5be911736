"""The hopper filler: the dialler's worker thread, the only one that touches the contact book.

The loop never waits on SQLite: the core's writes for the dialler (:class:`~ivr.driver.
messages.SaveAttempt`, :class:`~ivr.driver.messages.SaveContact`,
:class:`~ivr.driver.messages.AddDnc`) are queued here by the executor and written in order,
each one short transaction (:class:`ivr.outbound.contacts.ContactBook`). Every
:data:`FILL_EVERY` seconds, and when the core asks (:class:`~ivr.driver.messages.FillHoppers`),
the filler posts :class:`~ivr.driver.messages.HopperFill` with the due contacts of each
campaign in its window (``ContactBook.due`` closes those whose number was listed since the
import), stamped with the last attempt written, so the core can tell an older picture.

Numbers put on the do-not-call list by another process (``ivr dnc add``, a register import)
reach the loop too: every :data:`FILL_EVERY` seconds the numbers of the contacts handed out are
looked up on the list and those newly listed are posted as
:class:`~ivr.driver.messages.DncAdded` (the core takes them out of its hoppers and offers).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ivr.driver import messages as m
from ivr.outbound.campaigns import Campaign
from ivr.outbound.contacts import ContactBook
from ivr.outbound.plan import in_window

log = logging.getLogger("ivr.driver")

FILL_EVERY = 2.0
"""Seconds between two fills (and two looks at the do-not-call list)."""
HOPPER_SIZE = 50
"""Due contacts handed to the loop per campaign (at least 4 per line it may use)."""

Write = m.SaveAttempt | m.SaveContact | m.AddDnc | m.FillHoppers


class HopperFiller:
    """See the module doc. ``post`` is the loop's inbox; ``clock`` the wall clock."""

    def __init__(self, path: Path, campaigns: Mapping[str, Campaign],
                 post: Callable[[m.Message], None], clock: Callable[[], float] = time.time,
                 every: float = FILL_EVERY):
        self.path = path
        self.campaigns = dict(campaigns)
        self.post = post
        self.clock = clock
        self.every = every
        self._q: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="hopper-filler", daemon=True)
        self.applied = 0
        """The seq of the last :class:`SaveAttempt` written."""
        self.errors = 0
        self._handed: set[str] = set()
        """Numbers of the contacts handed to the loop in the last fills."""
        self._listed: set[str] = set()
        """Of those, the ones already reported on the do-not-call list."""

    def start(self) -> None:
        self._thread.start()

    def submit(self, write: Write) -> None:
        """Queue a write (or a fill request) for the worker; returns at once."""
        self._q.put(write)

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop."""
        self._q.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            book = ContactBook(self.path)
        except Exception:
            log.exception("the dialler cannot open the contact lists in %s; no campaign "
                          "dials", self.path)
            return
        try:
            self._serve(book)
        finally:
            book.close()

    def _serve(self, book: ContactBook) -> None:
        next_fill = 0.0
        while True:
            wait = max(0.0, next_fill - time.monotonic())
            try:
                item = self._q.get(timeout=wait) if wait > 0 else self._q.get_nowait()
            except queue.Empty:
                item = m.FillHoppers()
            if item is None:
                self._drain(book)
                return
            if isinstance(item, m.FillHoppers):
                if time.monotonic() < next_fill - self.every + 0.2:
                    continue  # filled a moment ago: the core asks again if still low
                self._safely(self._watch_dnc, book)  # the numbers handed out last time...
                self._safely(self._fill, book)  # ...before due() closes theirs
                next_fill = time.monotonic() + self.every
            else:
                self._safely(self._write, book, item)

    def _drain(self, book: ContactBook) -> None:
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return
            if item is not None and not isinstance(item, m.FillHoppers):
                self._safely(self._write, book, item)

    def _safely(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # one bad row must not stop the dialler's writes
            self.errors += 1
            log.exception("dialler store work failed (%s); it goes on", fn.__name__)

    def _write(self, book: ContactBook, item: Write) -> None:
        now = self.clock()
        if isinstance(item, m.SaveAttempt):
            try:
                book.record_attempt(item.contact_id, item.outcome, item.call_id, item.reason,
                                    item.next_at, item.state, now,
                                    dnc_checked=item.dnc_checked,
                                    tries=dict(item.tries) if item.tries else None,
                                    disposition=item.disposition)
            finally:
                self.applied = max(self.applied, item.seq)
        elif isinstance(item, m.SaveContact):
            if item.answers:
                book.set_answers(item.contact_id, dict(item.answers), now)
            if item.disposition:
                book.set_disposition(item.contact_id, item.disposition, now, ends=item.ends,
                                     dnc=item.dnc)
        elif isinstance(item, m.AddDnc):
            book.add_dnc(item.number, item.source, item.note, now)

    def _fill(self, book: ContactBook) -> None:
        now = self.clock()
        handed: set[str] = set()
        for name, campaign in self.campaigns.items():
            if not in_window(campaign, now):
                continue
            limit = max(HOPPER_SIZE, 4 * campaign.max_lines)
            contacts = tuple(c.to_plan() for c in book.due(name, now, limit))
            handed.update(c.number for c in contacts)
            self.post(m.HopperFill(name, contacts, self.applied))
        self._handed = handed
        self._listed &= handed

    def _watch_dnc(self, book: ContactBook) -> None:
        fresh = book.dnc.listed(self._handed - self._listed)
        if fresh:
            self._listed |= fresh
            log.info("dialler: %d number(s) of the hoppers joined the do-not-call list",
                     len(fresh))
            self.post(m.DncAdded(frozenset(fresh)))


__all__ = ["FILL_EVERY", "HopperFiller"]

"""The do-not-call list: numbers the box must never dial, in the switchboard's store file.

One table, ``outbound_dnc`` (number in E.164, primary key; source; added_at; note), in the
same SQLite file as the call records (``store:`` of ivr.yaml), WAL mode. Sources:

- ``internal``: added by hand (``ivr dnc add``) or by the console;
- ``disposition``: an agent closed a contact with a disposition that asks for it;
- ``ivr``: the called person asked for it with a key in an outbound flow;
- ``register:<name>``: loaded from a national opt-out register file (``ivr dnc import``).

Every number goes through :func:`to_e164` first, the same way a contact list's numbers do, so
``06 1234 5678``, ``0612345678`` and ``+390612345678`` are one entry. A register of a million
numbers loads in about 5 s on a 2-core box (``executemany`` in key order, by transactions of
:data:`CHUNK` so other writers never wait long) and a check is one primary-key lookup (~7 us).

Example::

    dnc = DncList(Path("calls.db"))
    dnc.add("347 123 4567", "internal", "asked on the phone")   # True: newly listed
    dnc.is_dnc("+393471234567")                                  # True
    report = dnc.import_file(Path("registro.csv"))               # ImportReport
    dnc.close()

Other threads and processes write the same file (the switchboard's writer, the console):
connections wait up to :data:`BUSY_TIMEOUT` seconds for a lock and transactions are short. A
``DncList`` belongs to the thread that made it.
"""

from __future__ import annotations

import contextlib
import csv
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ivr.numbers import normalise, to_e164_it

BUSY_TIMEOUT = 10.0
"""Seconds a connection waits for another writer's lock before it gives up."""
PROGRESS_EVERY = 10_000
"""Rows between two progress calls of an import."""
CHUNK = 50_000
"""Numbers of a register written per transaction: a short hold of the store's write lock."""
SOURCES = ("internal", "disposition", "ivr")
"""Sources besides ``register:<name>``."""

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_PLAIN = re.compile(r"\+?[0-9]+")

DNC_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbound_dnc (
    number TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    added_at REAL NOT NULL,
    note TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
"""

REASONS = {
    "empty": "empty number",
    "invalid": "not a telephone number",
    "not_e164": "not an E.164 number after normalisation",
    "duplicate_in_file": "duplicate of an earlier row of the file",
    "duplicate_in_campaign": "already in the campaign",
    "dnc": "on the do-not-call list",
    "already_listed": "already on the do-not-call list",
    "malformed": "wrong number of fields",
}
"""Why a row of an imported file was refused (or, for ``already_listed``, not added)."""


class ListError(Exception):
    """A whole file refused (a required column missing, not readable, not CSV) or a number
    refused by :meth:`DncList.add`: the message says why, for the operator."""


def to_e164(raw: str) -> tuple[str | None, str]:
    """*raw* as an E.164 number and ``""``, or None and the reason key (:data:`REASONS`).

    Separators are dropped and the text checked as :func:`ivr.numbers.normalise` does; Italian
    national numbers (``0...``, ``3...``) get ``+39`` and ``00...`` becomes ``+...`` as
    :func:`ivr.numbers.to_e164_it` does. What is left must be ``+`` and 7 to 15 digits, not
    starting with 0::

        >>> to_e164("06 1234 5678"), to_e164("0041 44 123 45 67"), to_e164("112")
        (('+390612345678', ''), ('+41441234567', ''), (None, 'not_e164'))
        >>> to_e164(" "), to_e164("abc")
        ((None, 'empty'), (None, 'invalid'))
    """
    text = raw.strip()
    if not text:
        return None, "empty"
    if _PLAIN.fullmatch(text) is None:  # the fast path takes clean numbers as they are
        number = normalise(text)
        if not number:  # None: refused; "": a word such as 'anonymous'
            return None, "invalid"
        text = number
    e164 = to_e164_it(text)
    if _E164.fullmatch(e164) is None:
        return None, "not_e164"
    return e164, ""


@dataclass
class Refused:
    """One refused row: its line in the file, the text found and the reason key."""

    line: int
    raw: str
    reason: str

    @property
    def why(self) -> str:
        return REASONS.get(self.reason, self.reason)


@dataclass
class ImportReport:
    """What an import did: rows read, rows taken, refusals by reason and every refused row."""

    read: int = 0
    added: int = 0
    already: int = 0
    """Valid numbers not added because they were there already (a register loaded again)."""
    removed: int = 0
    """Register entries dropped because a new edition (``replace``) no longer has them."""
    refused: list[Refused] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def by_reason(self) -> Counter[str]:
        return Counter(r.reason for r in self.refused)

    def refuse(self, line: int, raw: str, reason: str) -> None:
        self.refused.append(Refused(line, raw, reason))

    def summary(self, first: int = 10) -> str:
        """Counts by reason, then the first *first* refused rows with their line numbers."""
        lines = [f"{self.read} rows read, {self.added} added, {len(self.refused)} refused "
                 f"({self.seconds:.1f} s)"]
        if self.already:
            lines.append(f"  {self.already:>9}  {REASONS['already_listed']} (kept as it was)")
        if self.removed:
            lines.append(f"  {self.removed:>9}  dropped: no longer in the register")
        for reason, n in sorted(self.by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {n:>9}  {REASONS.get(reason, reason)}")
        if self.refused and first > 0:
            lines.append(f"first {min(first, len(self.refused))} refused rows:")
            for r in self.refused[:first]:
                lines.append(f"  line {r.line}: {r.raw!r}: {r.why}")
        return "\n".join(lines)

    def write_refused(self, path: Path) -> None:
        """Every refused row as CSV: line, number, reason, why."""
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "number", "reason", "why"])
            writer.writerows([r.line, r.raw, r.reason, r.why] for r in self.refused)


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the store file in WAL mode, autocommit (transactions are explicit).

    A new file becomes a call record store first (:class:`ivr.store.CallStore` makes its
    tables): the switchboard refuses to start on a file with tables but no call records."""
    _store_first(path)
    db = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _store_first(path: Path) -> None:
    try:
        with contextlib.closing(sqlite3.connect(str(path), timeout=BUSY_TIMEOUT)) as db:
            has_calls = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                   "name = 'calls'").fetchone() is not None
    except sqlite3.Error:
        has_calls = False  # not a database: the store says so in its own words
    if not has_calls:
        from ivr.store import CallStore

        CallStore(path).close()


def register_source(name: str) -> str:
    """The source of a register's entries: ``register:<name>``."""
    return f"register:{name}"


def check_source(source: str) -> str:
    if source in SOURCES or (source.startswith("register:") and len(source) > 9):
        return source
    raise ListError(f"unknown do-not-call source {source!r}: one of {', '.join(SOURCES)} or "
                    "register:<name>")


class DncList:
    """The do-not-call list of the store file at *path* (the table is made if missing)."""

    def __init__(self, path: Path, db: sqlite3.Connection | None = None) -> None:
        self.path = path
        self._own = db is None
        self.db = connect(path) if db is None else db
        self.db.executescript(DNC_SCHEMA)

    def close(self) -> None:
        if self._own:
            self.db.close()

    def __enter__(self) -> DncList:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- single numbers -------------------------------------------------------------------

    def _number(self, raw: str) -> str:
        number, reason = to_e164(raw)
        if number is None:
            raise ListError(f"{raw!r}: {REASONS[reason]}")
        return number

    def is_dnc(self, number: str) -> bool:
        """Whether *number* (any spelling :func:`to_e164` takes) is on the list. A number that
        is not a valid one cannot be dialled and is not "on the list": False."""
        e164, _ = to_e164(number)
        if e164 is None:
            return False
        return self.db.execute("SELECT 1 FROM outbound_dnc WHERE number = ?",
                               (e164,)).fetchone() is not None

    def entry(self, number: str) -> tuple[str, str, float, str] | None:
        """(number, source, added_at, note) of *number*'s entry, or None."""
        row = self.db.execute("SELECT number, source, added_at, note FROM outbound_dnc "
                              "WHERE number = ?", (self._number(number),)).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def add(self, number: str, source: str = "internal", note: str = "",
            now: float | None = None) -> bool:
        """List *number*; True if it was not listed yet (an existing entry is kept as it is).
        Raises :class:`ListError` for a number that is not one, or an unknown source."""
        e164 = self._number(number)
        check_source(source)
        at = time.time() if now is None else now
        cur = self.db.execute("INSERT INTO outbound_dnc (number, source, added_at, note) "
                              "VALUES (?, ?, ?, ?) ON CONFLICT(number) DO NOTHING",
                              (e164, source, at, note))
        return cur.rowcount == 1

    def remove(self, number: str) -> bool:
        """Take *number* off the list; True if it was on it."""
        cur = self.db.execute("DELETE FROM outbound_dnc WHERE number = ?",
                              (self._number(number),))
        return cur.rowcount == 1

    def count(self) -> dict[str, int]:
        """Entries by source."""
        return {row[0]: row[1] for row in self.db.execute(
            "SELECT source, COUNT(*) FROM outbound_dnc GROUP BY source ORDER BY source")}

    def listed(self, numbers: Iterable[str]) -> set[str]:
        """Those of *numbers* (E.164 already) that are on the list, looked up in chunks."""
        found: set[str] = set()
        chunk: list[str] = []
        for number in numbers:
            chunk.append(number)
            if len(chunk) == 500:
                found.update(self._listed(chunk))
                chunk = []
        if chunk:
            found.update(self._listed(chunk))
        return found

    def _listed(self, chunk: list[str]) -> Iterator[str]:
        marks = ",".join("?" * len(chunk))
        for (number,) in self.db.execute(
                f"SELECT number FROM outbound_dnc WHERE number IN ({marks})", chunk):
            yield number

    # -- files ------------------------------------------------------------------------------

    def import_file(self, path: Path, source: str | None = None, column: str | None = None,
                    replace: bool = False, now: float | None = None,
                    progress: Callable[[int], None] | None = None) -> ImportReport:
        """Load a register file: one number per line, or a CSV file with a header and the
        numbers in *column* (needed when a line has more than one field). *source* defaults to
        ``register:<file name>``. Entries already listed are kept as they were.

        With *replace* (a new edition of the register replaces the old): ``register:`` entries
        of numbers in the file take its source, and then those not in it are dropped. The
        numbers go in by transactions of :data:`CHUNK` in key order (a million in a few
        seconds, the switchboard's writer never waiting long for the lock); the list only
        ever grows until the new edition is all in, so a check never misses a number of
        either edition, and an import cut short can simply be run again. *progress* is
        called every :data:`PROGRESS_EVERY` rows read."""
        started = time.perf_counter()
        src = check_source(source or register_source(path.name))
        at = time.time() if now is None else now
        report = ImportReport()
        numbers: dict[str, None] = {}
        for line, raw in _numbers_of(path, column):
            report.read += 1
            if progress is not None and report.read % PROGRESS_EVERY == 0:
                progress(report.read)
            number, reason = to_e164(raw)
            if number is None:
                report.refuse(line, raw, reason)
            elif number in numbers:
                report.refuse(line, raw, "duplicate_in_file")
            else:
                numbers[number] = None
        ordered = sorted(numbers)  # in key order: the B-tree fills page by page
        db = self.db
        for i in range(0, len(ordered), CHUNK):
            chunk = ordered[i:i + CHUNK]
            with _transaction(db):
                before = db.total_changes
                db.executemany("INSERT INTO outbound_dnc (number, source, added_at, note) "
                               "VALUES (?, ?, ?, '') ON CONFLICT(number) DO NOTHING",
                               ((n, src, at) for n in chunk))
                report.added += db.total_changes - before
                if replace:
                    db.executemany("UPDATE outbound_dnc SET source = ? WHERE number = ? AND "
                                   "source LIKE 'register:%' AND source <> ?",
                                   ((src, n, src) for n in chunk))
        if replace:
            report.removed = self._drop_register_entries_but(ordered)
        report.already = len(numbers) - report.added
        report.seconds = time.perf_counter() - started
        return report

    def _drop_register_entries_but(self, kept: list[str]) -> int:
        """Delete ``register:`` entries whose number is not in *kept*, by chunks; how many."""
        db = self.db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS dnc_kept (number TEXT PRIMARY KEY) "
                   "WITHOUT ROWID")
        db.execute("DELETE FROM temp.dnc_kept")
        db.executemany("INSERT INTO temp.dnc_kept VALUES (?)", ((n,) for n in kept))
        removed = 0
        try:
            while True:
                with _transaction(db):
                    cur = db.execute(
                        "DELETE FROM outbound_dnc WHERE number IN (SELECT number FROM "
                        "outbound_dnc WHERE source LIKE 'register:%' AND number NOT IN "
                        "(SELECT number FROM temp.dnc_kept) LIMIT ?)", (CHUNK,))
                removed += cur.rowcount
                if cur.rowcount < CHUNK:
                    return removed
        finally:
            db.execute("DELETE FROM temp.dnc_kept")


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _numbers_of(path: Path, column: str | None) -> Iterator[tuple[int, str]]:
    """(line, raw number) of a register file: one per line, or *column* of a CSV file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            if column is None:
                for line, text in enumerate(f, 1):
                    text = text.strip()
                    if not text:
                        continue
                    if any(c in text for c in ",;\t"):
                        raise ListError(f"{path}:{line}: more than one field on a line: give "
                                        "the CSV column of the numbers with --column")
                    yield line, text
                return
            reader = csv.reader(f, delimiter=sniff_delimiter(f.readline()))
            f.seek(0)
            header = [h.strip() for h in next(reader, [])]
            index = column_index(path, header, column)
            last = reader.line_num
            for row in reader:
                line, last = last + 1, reader.line_num
                if not row:
                    continue
                yield line, row[index] if index < len(row) else ""
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ListError(f"{path}: cannot read it: {exc}") from exc


def sniff_delimiter(header_line: str) -> str:
    """``,``, ``;`` (spreadsheets set to Italian) or a tab: the most frequent in the header."""
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def column_index(path: Path, header: list[str], column: str) -> int:
    """The index of *column* in *header* (case and spaces ignored) or :class:`ListError`."""
    wanted = column.strip().lower()
    for i, name in enumerate(header):
        if name.lower() == wanted:
            return i
    shown = ", ".join(repr(h) for h in header) or "none"
    raise ListError(f"{path}: no column {column!r} in the header (columns: {shown})")


__all__ = ["BUSY_TIMEOUT", "DNC_SCHEMA", "REASONS", "SOURCES", "DncList", "ImportReport",
           "ListError", "Refused", "check_source", "column_index", "connect", "register_source",
           "sniff_delimiter", "to_e164"]

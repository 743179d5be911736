"""Call records in a SQLite file (WAL mode).

A record is written when a call starts (outcome ``in_progress``) and completed in one transaction
when it ends, so a crash leaves a trace that the next start closes as ``interrupted``. A write
that fails (disk full, file locked) is kept in memory and retried on the next write and at
shutdown: a record is never silently dropped.

Times are Unix timestamps (seconds, UTC).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

log = logging.getLogger("ivr.store")

OUTCOMES = ("in_progress", "completed", "abandoned_ivr", "abandoned_queue", "refused", "failed",
            "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    caller TEXT NOT NULL DEFAULT '',
    called TEXT NOT NULL DEFAULT '',
    trunk TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    flow TEXT NOT NULL DEFAULT '',
    flow_version TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL,
    answered_at REAL,
    queued_at REAL,
    connected_at REAL,
    ended_at REAL,
    ivr_path TEXT NOT NULL DEFAULT '',
    queue TEXT,
    agent TEXT,
    wait_seconds REAL,
    talk_seconds REAL,
    outcome TEXT NOT NULL,
    end_reason TEXT NOT NULL DEFAULT '',
    voicemail_path TEXT,
    transferred_to TEXT
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at);
CREATE INDEX IF NOT EXISTS calls_outcome ON calls(outcome);
CREATE TABLE IF NOT EXISTS overrides (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    changed_at REAL NOT NULL
);
"""
SCHEMA_VERSION = 2
_ADDED_COLUMNS = {"voicemail_path": "TEXT", "transferred_to": "TEXT"}
"""Columns added since version 1: a file made before them gets them with ALTER TABLE."""


@dataclass
class CallRecord:
    call_id: str
    started_at: float
    caller: str = ""
    called: str = ""
    trunk: str = ""
    source: str = ""
    flow: str = ""
    flow_version: str = ""
    answered_at: float | None = None
    queued_at: float | None = None
    connected_at: float | None = None
    """When an agent answered."""
    ended_at: float | None = None
    ivr_path: str = ""
    queue: str | None = None
    agent: str | None = None
    wait_seconds: float | None = None
    """Seconds in queue: until an agent answered, or until the caller gave up."""
    talk_seconds: float | None = None
    outcome: str = "in_progress"
    end_reason: str = ""
    voicemail_path: str | None = None
    """The caller's message (a WAV file), when they left one."""
    transferred_to: str | None = None
    """The extension or number the call was put through to by a transfer."""

    def finish(self, ended_at: float, outcome: str, reason: str = "") -> None:
        """Close the record, deriving wait and talk times from the timestamps."""
        assert outcome in OUTCOMES, outcome
        self.ended_at = ended_at
        self.outcome = outcome
        self.end_reason = reason
        if self.queued_at is not None:
            self.wait_seconds = round((self.connected_at or ended_at) - self.queued_at, 3)
        if self.connected_at is not None:
            self.talk_seconds = round(ended_at - self.connected_at, 3)


_COLUMNS = [f.name for f in fields(CallRecord)]


class CallStore:
    """The call record file. Used from the driver's thread only."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=5.0)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._migrate()
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.pending: list[CallRecord] = []

    def _migrate(self) -> None:
        """Add the columns a file from an earlier version lacks (its rows keep NULL there)."""
        have = {row["name"] for row in self.db.execute("PRAGMA table_info(calls)")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in have:
                self.db.execute(f"ALTER TABLE calls ADD COLUMN {column} {kind}")
                log.info("call records in %s: added column %s", self.path, column)

    def recover(self, now: float) -> int:
        """Close records left ``in_progress`` by a crash as ``interrupted``; returns how many."""
        cur = self.db.execute(
            "UPDATE calls SET outcome='interrupted', end_reason='process stopped during the call',"
            " ended_at=COALESCE(ended_at, ?) WHERE outcome='in_progress'", (now,))
        if cur.rowcount:
            log.warning("closed %d call record(s) left open by an earlier stop as interrupted",
                        cur.rowcount)
        return cur.rowcount

    def save(self, record: CallRecord) -> bool:
        """Insert or replace *record*; on failure keep it for a later retry. True if written."""
        self.pending.append(record)
        return self.flush()

    def flush(self) -> bool:
        if not self.pending:
            return True
        placeholders = ",".join("?" for _ in _COLUMNS)
        sql = f"INSERT OR REPLACE INTO calls ({','.join(_COLUMNS)}) VALUES ({placeholders})"
        try:
            with self.db:
                self.db.execute("BEGIN")
                for rec in self.pending:
                    row = asdict(rec)
                    self.db.execute(sql, [row[c] for c in _COLUMNS])
        except sqlite3.Error as exc:
            log.error("cannot write %d call record(s) to %s: %s; kept in memory, will retry",
                      len(self.pending), self.path, exc)
            return False
        self.pending.clear()
        return True

    # -- hours overrides (set_override nodes) -------------------------------------------------
    def overrides(self) -> dict[str, str]:
        """Hours override switches that are forced: name -> 'open' or 'closed'."""
        return {row["name"]: row["state"]
                for row in self.db.execute("SELECT name, state FROM overrides")}

    def set_override(self, name: str, state: str, changed_at: float) -> bool:
        """Persist a switch; 'auto' deletes it. False (and an error logged) if not written."""
        try:
            if state == "auto":
                self.db.execute("DELETE FROM overrides WHERE name=?", (name,))
            else:
                self.db.execute("INSERT OR REPLACE INTO overrides (name, state, changed_at) "
                                "VALUES (?, ?, ?)", (name, state, changed_at))
        except sqlite3.Error as exc:
            log.error("cannot save hours override %s=%s to %s: %s; it holds until the next "
                      "restart only", name, state, self.path, exc)
            return False
        return True

    def get(self, call_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM calls WHERE call_id=?", (call_id,)).fetchone()
        return row

    def rows(self) -> Iterator[sqlite3.Row]:
        yield from self.db.execute("SELECT * FROM calls ORDER BY started_at")

    def close(self) -> None:
        if not self.flush():
            log.error("%d call record(s) could not be written at shutdown: %s",
                      len(self.pending), [r.call_id for r in self.pending])
        self.db.close()

"""Call records in a SQLite file (WAL mode).

A record is written when a call starts (outcome ``in_progress``) and completed in one transaction
when it ends, so a crash leaves a trace that the next start closes as ``interrupted``. A write
that fails (disk full, file locked) is kept in memory and retried on the next write and at
shutdown: a record is never silently dropped.

Times are Unix timestamps (seconds, UTC).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

log = logging.getLogger("ivr.store")

OUTCOMES = ("in_progress", "completed", "abandoned_ivr", "abandoned_queue", "refused", "failed",
            "interrupted", "callback_requested")

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
CREATE TABLE IF NOT EXISTS queue_events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    queue TEXT NOT NULL DEFAULT '',
    call_id TEXT NOT NULL DEFAULT '',
    agent TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS queue_events_at ON queue_events(at);
CREATE INDEX IF NOT EXISTS queue_events_call ON queue_events(call_id);
CREATE TABLE IF NOT EXISTS agent_states (
    agent TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    changed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_commands (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL,
    command TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    requested_at REAL NOT NULL,
    done_at REAL
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


@dataclass(frozen=True)
class QueueEventRow:
    """One line of the queue log, as stored (times are Unix seconds)."""

    at: float
    kind: str
    queue: str
    call_id: str
    agent: str
    detail: Mapping[str, Any]


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
        self.pending_events: list[QueueEventRow] = []

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

    def add_events(self, events: list[QueueEventRow]) -> None:
        """Queue events, written with the next call records in one transaction."""
        self.pending_events.extend(events)

    def flush(self) -> bool:
        if not self.pending and not self.pending_events:
            return True
        placeholders = ",".join("?" for _ in _COLUMNS)
        sql = f"INSERT OR REPLACE INTO calls ({','.join(_COLUMNS)}) VALUES ({placeholders})"
        try:
            with self.db:
                self.db.execute("BEGIN")
                for rec in self.pending:
                    row = asdict(rec)
                    self.db.execute(sql, [row[c] for c in _COLUMNS])
                self.db.executemany(
                    "INSERT INTO queue_events (at, kind, queue, call_id, agent, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(e.at, e.kind, e.queue, e.call_id, e.agent, json.dumps(e.detail,
                                                                             sort_keys=True))
                     for e in self.pending_events])
        except sqlite3.Error as exc:
            log.error("cannot write %d call record(s) and %d queue event(s) to %s: %s; kept in "
                      "memory, will retry", len(self.pending), len(self.pending_events),
                      self.path, exc)
            return False
        self.pending.clear()
        self.pending_events.clear()
        return True

    # -- agents ------------------------------------------------------------------------------
    def agent_states(self) -> dict[str, tuple[str, str]]:
        """Saved agent states: name -> (state, reason); agents not listed are available."""
        return {row["agent"]: (row["state"], row["reason"])
                for row in self.db.execute("SELECT agent, state, reason FROM agent_states")}

    def set_agent_state(self, agent: str, state: str, reason: str, at: float) -> None:
        try:
            self.db.execute("INSERT OR REPLACE INTO agent_states (agent, state, reason, "
                            "changed_at) VALUES (?, ?, ?, ?)", (agent, state, reason, at))
        except sqlite3.Error as exc:
            log.error("cannot save the state of agent %s: %s", agent, exc)

    def request_agent_command(self, agent: str, command: str, reason: str, at: float) -> None:
        """Ask the running switchboard (or the next one to start) to log in, pause... an agent."""
        state = {"login": "available", "unpause": "available", "logout": "logged_out",
                 "pause": "paused"}[command]
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT INTO agent_commands (agent, command, reason, requested_at) "
                            "VALUES (?, ?, ?, ?)", (agent, command, reason, at))
            self.db.execute("INSERT OR REPLACE INTO agent_states (agent, state, reason, "
                            "changed_at) VALUES (?, ?, ?, ?)", (agent, state, reason, at))

    def take_agent_commands(self, at: float) -> list[tuple[str, str, str]]:
        """Commands not yet carried out, oldest first, marked done: (agent, command, reason)."""
        try:
            rows = self.db.execute("SELECT id, agent, command, reason FROM agent_commands "
                                   "WHERE done_at IS NULL ORDER BY id").fetchall()
            if rows:
                self.db.execute("UPDATE agent_commands SET done_at=? WHERE id<=? AND done_at "
                                "IS NULL", (at, rows[-1]["id"]))
        except sqlite3.Error as exc:
            log.error("cannot read agent commands: %s", exc)
            return []
        return [(r["agent"], r["command"], r["reason"]) for r in rows]

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

"""Call records in a SQLite file (WAL mode), written by one writer thread.

The driver's loop never waits on SQLite: :meth:`CallStore.save`, :meth:`~CallStore.add_events`,
:meth:`~CallStore.set_agent_state` and :meth:`~CallStore.set_override` put an immutable copy on
the writer's queue and return at once. The writer thread commits everything that waits in one
transaction per batch. A failed write (file locked by a backup, disk full, read-only) keeps the
batch, retries with exponential backoff and logs one line when it starts, at most one a minute
while it lasts and one when writes succeed again. :meth:`~CallStore.close` writes whatever still
could not be written to a JSON-lines file beside the database (``<db>.unwritten.jsonl``), which
:meth:`~CallStore.import_fallback` brings in at the next start: a record is never dropped.

A switchboard opens its store with :meth:`CallStore.open_for_service`, which holds an exclusive
lock on ``<db>.lock`` for as long as it runs: a second switchboard on the same file stops with
:class:`StoreInUse` before it touches any row. Tools and tests use the plain constructor.

Example::

    store = CallStore.open_for_service(Path("calls.db"))
    store.import_fallback()       # what an earlier stop could not write
    store.recover(time.time())    # rows a crash left in_progress -> interrupted
    store.start_command_poller(post_agent_commands)
    store.save(record)            # returns at once
    ...
    unwritten = store.close()     # 0: everything is in the database

Times are Unix timestamps (seconds, UTC).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Generic, TypeVar

from ivr.tickets import Ticket, TicketEntry

log = logging.getLogger("ivr.store")
T = TypeVar("T")

OUTCOMES = ("in_progress", "completed", "abandoned_ivr", "abandoned_queue", "refused", "failed",
            "interrupted", "callback_requested", "ivr_gave_up",
            # calls out to a campaign's contacts (direction 'out')
            "busy", "no_answer", "abandoned", "withdrawn")

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
    transferred_to TEXT,
    ticket TEXT,
    ticket_seq INTEGER,
    disposition TEXT,
    recording_path TEXT,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at);
CREATE INDEX IF NOT EXISTS calls_outcome ON calls(outcome);
CREATE INDEX IF NOT EXISTS calls_caller ON calls(caller, started_at);
CREATE INDEX IF NOT EXISTS calls_agent ON calls(agent, started_at);
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
    detail TEXT NOT NULL DEFAULT '{}',
    event_id TEXT
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
CREATE TABLE IF NOT EXISTS tickets (
    number TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    status TEXT NOT NULL,
    level INTEGER NOT NULL,
    queue TEXT NOT NULL DEFAULT '',
    agent TEXT NOT NULL DEFAULT '',
    opened_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    closed_at REAL,
    calls INTEGER NOT NULL DEFAULT 0,
    history TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS tickets_customer ON tickets(customer);
CREATE INDEX IF NOT EXISTS tickets_status ON tickets(status);
"""
SMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    number TEXT NOT NULL,
    text TEXT NOT NULL,
    purpose TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_at REAL NOT NULL,
    sent_at REAL,
    reference INTEGER,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sms_state ON sms(state, next_at);
"""
"""Texts for the modem, queued and retried by ivr/sms.py (version 5)."""
_SCHEMA += SMS_SCHEMA
SCHEMA_VERSION = 7  # 5: the sms table (texts the modem sends, ivr/sms.py); 6: calls.note;
# 7: calls.direction, campaign, contact_id (the dialler's calls out)
_ADDED_COLUMNS = {
    # table -> column -> type: a file made before them gets them with ALTER TABLE
    "calls": {"voicemail_path": "TEXT", "transferred_to": "TEXT",  # version 2
              "ticket": "TEXT", "ticket_seq": "INTEGER", "disposition": "TEXT",  # version 4
              "recording_path": "TEXT",  # a recorded call's stereo WAV (version 4 too)
              "note": "TEXT NOT NULL DEFAULT ''",  # version 6: the agents' and CRM's notes
              "direction": "TEXT NOT NULL DEFAULT 'in'",  # version 7: 'in' or 'out'...
              "campaign": "TEXT", "contact_id": "INTEGER"},  # ...a campaign's call out
    "queue_events": {"event_id": "TEXT"},  # version 3: the fallback file's dedupe key
}

RETRY_FIRST = 0.1
"""Seconds before the first retry of a failed write; doubled after each failure..."""
RETRY_MAX = 5.0
"""...up to this."""
WRITER_BUSY_TIMEOUT = 1.0
"""How long one write attempt waits for a lock held by another connection before it counts as
a failure and backs off (the loop never waits on it: only the writer thread does)."""
START_BUSY_TIMEOUT = 5.0
"""How long opening the file, recovery and import at start wait for a lock."""
FALLBACK_SUFFIX = ".unwritten.jsonl"


class StoreError(Exception):
    """The call record file cannot be used; the message is one line naming the file and the fix.

    Example: ``cannot open the call records at var: it is a folder; set 'store' in ivr.yaml to
    a file path``.
    """


class StoreInUse(StoreError):
    """Another switchboard holds the store's lock file; raised before any row is touched."""


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
    ticket: str | None = None
    """The number of the caller's ticket this call belongs to (see ivr.tickets)."""
    ticket_seq: int | None = None
    """1 if this call opened its ticket, 2 for the ticket's second call..."""
    disposition: str | None = None
    """The code the agent keyed for this call (``dispositions`` in ivr.yaml), the last one."""
    recording_path: str | None = None
    """The recording of the call with its agent (stereo WAV: caller left, agent right), when
    its queue records calls; set when the recording starts."""
    note: str = ""
    """Notes on the call, one a line: ``[HH:MM who] text`` (the agent's console, a CRM)."""
    direction: str = "in"
    """'in': a caller called; 'out': the dialler called a campaign's contact."""
    campaign: str | None = None
    """The campaign of a call out."""
    contact_id: int | None = None
    """The contact a call out was to (``outbound_contacts.id``)."""

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
_SAVE_CALL = (f"INSERT OR REPLACE INTO calls ({','.join(_COLUMNS)}) "
              f"VALUES ({','.join('?' for _ in _COLUMNS)})")


@dataclass(frozen=True)
class QueueEventRow:
    """One line of the queue log, as stored (times are Unix seconds)."""

    at: float
    kind: str
    queue: str
    call_id: str
    agent: str
    detail: Mapping[str, Any]
    event_id: str = ""
    """Unique id (uuid4 hex), given by :meth:`CallStore.add_events` when empty: importing a
    fallback file twice never stores the event twice."""


_SAVE_EVENT = ("INSERT OR IGNORE INTO queue_events (event_id, at, kind, queue, call_id, agent, "
               "detail) VALUES (?, ?, ?, ?, ?, ?, ?)")
_SAVE_STATE = ("INSERT OR REPLACE INTO agent_states (agent, state, reason, changed_at) "
               "VALUES (?, ?, ?, ?)")
_IMPORT_STATE = (  # an older state from the file never replaces a newer one (`ivr agent`)
    "INSERT INTO agent_states (agent, state, reason, changed_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(agent) DO UPDATE SET state=excluded.state, reason=excluded.reason, "
    "changed_at=excluded.changed_at WHERE excluded.changed_at >= agent_states.changed_at")


@dataclass(frozen=True)
class _Event:
    """A queue event as the writer keeps it: detail already serialized (an immutable copy)."""

    event_id: str
    at: float
    kind: str
    queue: str
    call_id: str
    agent: str
    detail_json: str

    def params(self) -> tuple[str, float, str, str, str, str, str]:
        return (self.event_id, self.at, self.kind, self.queue, self.call_id, self.agent,
                self.detail_json)


@dataclass(frozen=True)
class _AgentState:
    agent: str
    state: str
    reason: str
    at: float


@dataclass(frozen=True)
class _Override:
    name: str
    state: str
    """'open', 'closed' or 'auto' (deletes the switch)."""
    changed_at: float


_TICKET_COLUMNS = ("number", "customer", "status", "level", "queue", "agent", "opened_at",
                   "updated_at", "closed_at", "calls", "history")
_SAVE_TICKET = (f"INSERT OR REPLACE INTO tickets ({','.join(_TICKET_COLUMNS)}) "
                f"VALUES ({','.join('?' for _ in _TICKET_COLUMNS)})")


@dataclass(frozen=True)
class _TicketRow:
    """A ticket as the writer keeps it: history already serialized (an immutable copy)."""

    number: str
    customer: str
    status: str
    level: int
    queue: str
    agent: str
    opened_at: float
    updated_at: float
    closed_at: float | None
    calls: int
    history: str

    @classmethod
    def of(cls, ticket: Ticket) -> _TicketRow:
        history = json.dumps([asdict(e) for e in ticket.history], sort_keys=True)
        return cls(ticket.number, ticket.customer, ticket.status, ticket.level, ticket.queue,
                   ticket.agent, ticket.opened_at, ticket.updated_at, ticket.closed_at,
                   ticket.calls, history)

    def params(self) -> list[Any]:
        return [getattr(self, c) for c in _TICKET_COLUMNS]


def ticket_of_row(row: Mapping[str, Any]) -> Ticket:
    """A stored ticket (a row of the ``tickets`` table) as the model's :class:`Ticket`."""
    history = tuple(TicketEntry(**entry) for entry in json.loads(row["history"] or "[]"))
    return Ticket(row["number"], row["customer"], row["status"], int(row["level"]),
                  row["queue"], row["agent"], float(row["opened_at"]), float(row["updated_at"]),
                  row["closed_at"], history, int(row["calls"]))


@dataclass
class _Batch:
    """Items waiting to be written, each with the sequence number it was queued under."""

    calls: list[tuple[int, CallRecord]] = dataclasses.field(default_factory=list)
    events: list[tuple[int, _Event]] = dataclasses.field(default_factory=list)
    states: list[tuple[int, _AgentState]] = dataclasses.field(default_factory=list)
    overrides: list[tuple[int, _Override]] = dataclasses.field(default_factory=list)
    tickets: list[tuple[int, _TicketRow]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return (len(self.calls) + len(self.events) + len(self.states) + len(self.overrides)
                + len(self.tickets))


class _Latest(Generic[T]):
    """The newest version of each key (a call, an agent, a switch) waiting to be written, and
    the sequence number from which on its versions are not committed (what wait_idle waits
    for: a version replaced before it was written counts as written with its replacement)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[int, T]] = {}
        self.since: dict[str, int] = {}

    def put(self, key: str, seq: int, item: T) -> None:
        self.items.pop(key, None)  # re-inserted last: the dict keeps the order of the writes
        self.items[key] = (seq, item)
        self.since.setdefault(key, seq)

    def written(self, key: str, seq: int) -> None:
        """The version queued as *seq* is committed."""
        current = self.items.get(key)
        if current is None:
            return
        if current[0] == seq:
            del self.items[key], self.since[key]
        else:  # replaced meanwhile: the newer version still waits
            self.since[key] = seq + 1

    def oldest(self) -> int | None:
        return min(self.since.values(), default=None)

    def snapshot(self) -> list[tuple[int, T]]:
        return list(self.items.values())

    def clear(self) -> None:
        self.items.clear()
        self.since.clear()

    def __len__(self) -> int:
        return len(self.items)


def _duration(seconds: float) -> str:
    """2m10s, 45s, 1h05m: how long a failure has lasted, for the log."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _check_path(path: Path) -> None:
    """Raise :class:`StoreError` with the fix if *path* cannot hold the call records."""
    where = f"cannot open the call records at {path}"
    if path.is_dir():
        raise StoreError(f"{where}: it is a folder; set 'store' in ivr.yaml to a file path "
                         f"such as {path / 'centralino.db'}")
    existing = path.parent
    for _ in range(len(path.parts) + 1):  # the nearest ancestor that exists
        if existing.exists() or existing == existing.parent:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise StoreError(f"{where}: {existing} is a file, not a folder; move that file or set "
                         "'store' in ivr.yaml to a path in a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{where}: cannot create the folder {path.parent} "
                         f"({exc.strerror or exc}); create it or set 'store' in ivr.yaml to a "
                         "path in a writable folder") from None
    if path.exists():
        if not path.is_file():
            raise StoreError(f"{where}: it is not a regular file; set 'store' in ivr.yaml to a "
                             "file path")
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"{where}: the file is not writable by this user; give the "
                             "service's user write access to it or set 'store' in ivr.yaml to "
                             "another path")
    elif not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(f"{where}: the folder {path.parent} is not writable by this user; give "
                         "the service's user write access to it or set 'store' in ivr.yaml to "
                         "another path")


class CallStore:
    """The call record file: writes go through one writer thread, reads are direct.

    ``CallStore(path)`` is for tools and tests; a switchboard uses
    :meth:`open_for_service`, which also takes the store's lock. The write methods may be
    called from any thread and never wait on SQLite; the readers (:meth:`get`, :meth:`rows`,
    :meth:`agent_states`, :meth:`overrides`) read the file at once and see committed rows only.

    *before_write*, if given, is called on the writer thread with its connection before each
    batch (tests simulate a full disk with ``PRAGMA max_page_count``). *log_every* is the
    shortest time between two log lines about the same lasting write failure.
    """

    def __init__(self, path: Path, *, service: bool = False, log_every: float = 60.0,
                 before_write: Callable[[sqlite3.Connection], None] | None = None) -> None:
        self.path = Path(path)
        self.write_errors = 0
        """Failed write attempts so far (each retry counts): a counter for metrics."""
        self._log_every = log_every
        self._before_write = before_write
        self._lock_fd: int | None = None
        _check_path(self.path)
        if service:
            self._take_lock()
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None,
                                      timeout=START_BUSY_TIMEOUT, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            self._migrate()
            if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            self._release_lock()
            raise StoreError(f"cannot open the call records at {self.path}: {exc}; check the "
                             "file or set 'store' in ivr.yaml to another path") from None
        self._db_lock = threading.RLock()  # the reader connection may be used from any thread
        self._cond = threading.Condition()
        self._seq = 0
        self._calls: _Latest[CallRecord] = _Latest()
        self._events: list[tuple[int, _Event]] = []
        self._states: _Latest[_AgentState] = _Latest()
        self._overrides: _Latest[_Override] = _Latest()
        self._tickets: _Latest[_TicketRow] = _Latest()
        self._writer: threading.Thread | None = None
        self._closing = False
        self._retry_now = False
        self._abandon = False
        self._closed = False
        self._poller: threading.Thread | None = None
        self._poller_stop = threading.Event()

    @classmethod
    def open_for_service(cls, path: Path, **options: Any) -> CallStore:
        """The store of a running switchboard: takes ``<db>.lock`` first, so that a second
        switchboard on the same file raises :class:`StoreInUse` before touching any row."""
        return cls(path, service=True, **options)

    # -- the lock ----------------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _take_lock(self) -> None:
        if self._lock_fd is not None:
            return
        lock_path = self.lock_path
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the call records at {self.path}: cannot create the "
                             f"lock file {lock_path} ({exc.strerror or exc}); give the service's "
                             "user write access to the folder or set 'store' in ivr.yaml to "
                             "another path") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreInUse(
                f"the call records at {self.path} are in use by another switchboard (pid "
                f"{holder} holds {lock_path}); stop that one first, or set 'store' in ivr.yaml "
                "to another file") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- schema --------------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Add the columns a file from an earlier version lacks (its rows keep NULL there)."""
        for table, added in _ADDED_COLUMNS.items():
            have = {row["name"] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for column, kind in added.items():
                if column not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    log.info("call records in %s: added column %s.%s", self.path, table, column)
        # older events keep a NULL id: NULLs never collide in a unique index
        self.db.execute("CREATE UNIQUE INDEX IF NOT EXISTS queue_events_event_id "
                        "ON queue_events(event_id)")

    def recover(self, now: float) -> int:
        """Close records left ``in_progress`` by a crash as ``interrupted``; returns how many.

        Only the store's owner may do this: the lock is taken first if this store does not
        hold it yet (:class:`StoreInUse` if another switchboard does). What the row already
        holds (path, queue, agent, answer and connect times) is kept.
        """
        self._take_lock()
        with self._db_lock:
            cur = self.db.execute(
                "UPDATE calls SET outcome='interrupted', end_reason='process stopped during the "
                "call', ended_at=COALESCE(ended_at, ?) WHERE outcome='in_progress'", (now,))
        if cur.rowcount:
            log.warning("closed %d call record(s) left open by an earlier stop as interrupted",
                        cur.rowcount)
        return cur.rowcount

    # -- writes: queued for the writer thread ----------------------------------------------
    def save(self, record: CallRecord) -> None:
        """Queue a copy of *record* to be inserted or replaced; returns at once.

        A later save of the same ``call_id`` replaces an earlier one not yet written.
        """
        copy = dataclasses.replace(record)
        _check_values("CallRecord", asdict(copy))  # a bad value fails here, not in the writer
        with self._cond:
            self._calls.put(copy.call_id, self._next_seq(), copy)
            self._wake_writer()

    def add_events(self, rows: Iterable[QueueEventRow]) -> None:
        """Queue queue-log events, written with the call records in one transaction."""
        events = [_Event(row.event_id or uuid.uuid4().hex, row.at, row.kind, row.queue,
                         row.call_id, row.agent, json.dumps(dict(row.detail), sort_keys=True))
                  for row in rows]
        for event in events:
            _check_values("QueueEventRow", asdict(event))
        if not events:
            return
        with self._cond:
            for event in events:
                self._events.append((self._next_seq(), event))
            self._wake_writer()

    def set_agent_state(self, agent: str, state: str, reason: str, at: float) -> None:
        """Queue an agent's state, restored at the next start."""
        change = _AgentState(agent, state, reason, at)
        _check_values("agent state", asdict(change))
        with self._cond:
            self._states.put(agent, self._next_seq(), change)
            self._wake_writer()

    def set_override(self, name: str, state: str, changed_at: float) -> None:
        """Queue an hours override switch; 'auto' deletes it."""
        change = _Override(name, state, changed_at)
        _check_values("override", asdict(change))
        with self._cond:
            self._overrides.put(name, self._next_seq(), change)
            self._wake_writer()

    def save_ticket(self, ticket: Ticket) -> None:
        """Queue a copy of *ticket* to be inserted or replaced; returns at once."""
        row = _TicketRow.of(ticket)
        _check_values("ticket", asdict(row))
        with self._cond:
            self._tickets.put(row.number, self._next_seq(), row)
            self._wake_writer()

    def _next_seq(self) -> int:
        if self._closed:
            raise StoreError(f"the call records at {self.path} are closed: nothing can be "
                             "queued after close()")
        self._seq += 1
        return self._seq

    def _wake_writer(self) -> None:
        """Called with ``_cond`` held, after queuing: starts the writer if it is not running
        (it starts with the first write, and ends when close() has drained it)."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._run_writer, name="store-writer",
                                            daemon=True)
            self._writer.start()
        self._cond.notify_all()

    def pending_count(self) -> int:
        """Records, events and state changes queued and not yet committed (for metrics)."""
        with self._cond:
            return self._pending_count()

    def _pending_count(self) -> int:
        return (len(self._calls) + len(self._events) + len(self._states) + len(self._overrides)
                + len(self._tickets))

    def _oldest_pending(self) -> int | None:
        seqs = [self._calls.oldest(), self._states.oldest(), self._overrides.oldest(),
                self._tickets.oldest(), self._events[0][0] if self._events else None]
        return min((s for s in seqs if s is not None), default=None)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds until everything queued so far is committed.

        True if it is (at once when nothing waits). Never call it on the driver's loop."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._seq
            while True:
                oldest = self._oldest_pending()
                if oldest is None or oldest > target:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def flush(self) -> bool:
        """Kept for older callers: the writer thread writes by itself, so this only says
        whether nothing waits (it never waits; use :meth:`wait_idle` to wait)."""
        return self.pending_count() == 0

    # -- the writer thread ------------------------------------------------------------------
    def _snapshot(self) -> _Batch:
        return _Batch(self._calls.snapshot(), list(self._events), self._states.snapshot(),
                      self._overrides.snapshot(), self._tickets.snapshot())

    def _forget(self, batch: _Batch) -> None:
        """Drop what *batch* committed, unless it was queued again meanwhile."""
        for seq, rec in batch.calls:
            self._calls.written(rec.call_id, seq)
        del self._events[:len(batch.events)]  # only the writer removes events, oldest first
        for seq, st in batch.states:
            self._states.written(st.agent, seq)
        for seq, ov in batch.overrides:
            self._overrides.written(ov.name, seq)
        for seq, t in batch.tickets:
            self._tickets.written(t.number, seq)

    def _open_writer(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, timeout=WRITER_BUSY_TIMEOUT)
        db.execute("PRAGMA synchronous=FULL")  # off the loop: a commit survives a power cut
        return db

    @staticmethod
    def _write(db: sqlite3.Connection, batch: _Batch) -> None:
        """One transaction for the whole batch."""
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_SAVE_CALL, [_call_params(rec) for _, rec in batch.calls])
            db.executemany(_SAVE_EVENT, [e.params() for _, e in batch.events])
            db.executemany(_SAVE_STATE, [(s.agent, s.state, s.reason, s.at)
                                         for _, s in batch.states])
            for _, ov in batch.overrides:
                _apply_override(db, ov)
            db.executemany(_SAVE_TICKET, [t.params() for _, t in batch.tickets])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                # SQLite may have rolled back by itself (disk full)
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    def _run_writer(self) -> None:
        db: sqlite3.Connection | None = None
        delay = RETRY_FIRST
        failing_since: float | None = None
        last_logged = 0.0
        try:
            while True:
                with self._cond:
                    while not self._pending_count() and not self._closing:
                        self._cond.wait()
                    if self._abandon or not self._pending_count():
                        self._writer = None  # closing: drained, or close() gave up waiting
                        return
                    batch = self._snapshot()
                    self._retry_now = False
                try:
                    if db is None:
                        db = self._open_writer()
                    if self._before_write is not None:
                        self._before_write(db)
                    self._write(db, batch)
                except Exception as exc:  # anything but success keeps the batch
                    self.write_errors += 1
                    cause = str(exc) if isinstance(exc, sqlite3.Error) else repr(exc)
                    now = time.monotonic()
                    waiting = self.pending_count()
                    if failing_since is None:
                        failing_since = last_logged = now
                        log.error("cannot write %d record(s) to %s: %s; they are kept in memory "
                                  "and retried", waiting, self.path, cause,
                                  exc_info=not isinstance(exc, sqlite3.Error))
                    elif now - last_logged >= self._log_every:
                        last_logged = now
                        log.error("still cannot write %d record(s) to %s for %s: %s", waiting,
                                  self.path, _duration(now - failing_since), cause)
                    if db is not None:  # a fresh connection for the retry: nothing left half-done
                        db.close()
                        db = None
                    self._back_off(delay)
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                if failing_since is not None:  # said before anyone waiting is woken
                    log.warning("call records are written to %s again, after %s (%d record(s) "
                                "had waited)", self.path,
                                _duration(time.monotonic() - failing_since), len(batch))
                    failing_since = None
                with self._cond:
                    self._forget(batch)
                    self._cond.notify_all()
                delay = RETRY_FIRST
        finally:
            if db is not None:
                db.close()

    def _back_off(self, delay: float) -> None:
        """Sleep *delay* seconds, cut short when close() asks for one more try or gives up."""
        deadline = time.monotonic() + delay
        with self._cond:
            while not self._abandon and not self._retry_now:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    # -- stop and the fallback file ---------------------------------------------------------
    def close(self, timeout: float = 5.0) -> int:
        """Stop: wait up to *timeout* seconds for the writer to write everything, then write
        what it could not to the fallback file (see :meth:`fallback_path`).

        Returns how many records, events and state changes went to the fallback file (0: all
        are in the database). Closing twice returns 0 the second time.
        """
        if self._closed:
            return 0
        self.stop_command_poller()
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._retry_now = True  # a stop is a good moment to try once more at once
            self._cond.notify_all()
        self.wait_idle(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._abandon = True
            self._closed = True
            self._cond.notify_all()
            writer = self._writer
        if writer is not None:
            # an attempt in flight ends within the busy timeout; a hung disk must not hang stop
            writer.join(WRITER_BUSY_TIMEOUT + 2.0)
        with self._cond:
            left = self._snapshot()
        unwritten = len(left)
        if unwritten:
            self._write_fallback(left)
            with self._cond:
                self._calls.clear()
                self._events.clear()
                self._states.clear()
                self._overrides.clear()
                self._tickets.clear()
                self._cond.notify_all()
        with self._db_lock:
            self.db.close()
        self._release_lock()
        return unwritten

    def fallback_path(self) -> Path:
        """``<db>.unwritten.jsonl`` beside the database: where :meth:`close` puts what it
        could not write (elsewhere only if that folder is not writable)."""
        return self.path.with_name(self.path.name + FALLBACK_SUFFIX)

    def _fallback_paths(self) -> list[Path]:
        """Beside the database first; then the runtime dir and the temp dir, under a name
        that says which database they belong to."""
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:12]
        name = f"centralino-{self.path.name}-{digest}{FALLBACK_SUFFIX}"
        paths = [self.fallback_path()]
        for folder in (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir()):
            if folder and Path(folder) / name not in paths:
                paths.append(Path(folder) / name)
        return paths

    def _write_fallback(self, batch: _Batch) -> Path | None:
        lines = [json.dumps(obj, sort_keys=True, default=str) + "\n"
                 for obj in _fallback_objects(batch)]
        problems = []
        for path in self._fallback_paths():
            try:
                with open(path, "a", encoding="utf-8") as f:  # append: an earlier file may wait
                    f.writelines(lines)
                    f.flush()
                    os.fsync(f.fileno())
                _fsync_folder(path.parent)
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror or exc}")
                continue
            log.error("%d record(s) could not be written to %s; they are saved in %s and the "
                      "next start imports them%s", len(lines), self.path, path,
                      f" (not beside the database: {problems[0]})" if problems else "")
            return path
        # nowhere to write: the journal is the last place they can go
        log.critical("%d record(s) could not be written to %s nor to a fallback file (%s); "
                     "they follow, one per line", len(lines), self.path, "; ".join(problems))
        for line in lines:
            log.critical("unwritten record: %s", line.rstrip("\n"))
        return None

    def import_fallback(self) -> int:
        """Import what an earlier :meth:`close` could not write; returns how many items.

        Each file is imported in one transaction and deleted only after the commit; importing
        the same file again (a crash between the two) changes nothing: calls are replaced,
        queue events are ignored when their ``event_id`` is already stored. Takes the lock
        first, like :meth:`recover`. A file that cannot be imported now stays for next time.
        """
        self._take_lock()
        total = 0
        for path in self._fallback_paths():
            if path.is_file():
                total += self._import_file(path)
        return total

    def _import_file(self, path: Path) -> int:
        good: list[dict[str, Any]] = []
        bad = 0
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict) or obj.get("type") not in _IMPORTERS:
                        raise ValueError("unknown line")
                    good.append(obj)
                except ValueError:
                    bad += 1  # e.g. the last line of a stop that died while writing it
        imported = 0
        try:
            with self._db_lock:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    for obj in good:
                        try:
                            _IMPORTERS[obj["type"]](self.db, obj)
                            imported += 1
                        except (KeyError, TypeError, ValueError, sqlite3.IntegrityError):
                            bad += 1  # a line of the right kind with a wrong field
                    self.db.execute("COMMIT")
                except BaseException:
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            log.error("cannot import the records an earlier stop left in %s: %s; the file is "
                      "kept and the next start tries again", path, exc)
            return 0
        if bad:
            kept = path.with_name(path.name + f".rejected-{int(time.time())}")
            path.rename(kept)
            log.error("imported %d record(s) from %s; %d line(s) could not be read and are kept "
                      "in %s", imported, path, bad, kept)
        else:
            path.unlink()
            log.warning("imported %d record(s) that an earlier stop could not write, from %s "
                        "(file removed)", imported, path)
        return imported

    # -- agents ------------------------------------------------------------------------------
    def agent_states(self) -> dict[str, tuple[str, str]]:
        """Saved agent states: name -> (state, reason); agents not listed are available."""
        with self._db_lock:
            return {row["agent"]: (row["state"], row["reason"]) for row in
                    self.db.execute("SELECT agent, state, reason FROM agent_states")}

    def request_agent_command(self, agent: str, command: str, reason: str, at: float) -> None:
        """Ask the running switchboard (or the next one to start) to log in, pause... an agent.

        Written at once, on the caller's thread (``ivr agent``): not for the driver's loop."""
        state = {"login": "available", "unpause": "available", "logout": "logged_out",
                 "pause": "paused"}[command]
        with self._db_lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("INSERT INTO agent_commands (agent, command, reason, "
                                "requested_at) VALUES (?, ?, ?, ?)", (agent, command, reason, at))
                self.db.execute(_SAVE_STATE, (agent, state, reason, at))
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    def take_agent_commands(self, at: float) -> list[tuple[str, str, str]]:
        """Commands not yet carried out, oldest first, marked done: (agent, command, reason).

        Reads the file on the caller's thread: the switchboard uses
        :meth:`start_command_poller` instead."""
        try:
            with self._db_lock:
                return _take_commands(self.db, at)
        except sqlite3.Error as exc:
            log.error("cannot read agent commands from %s: %s", self.path, exc)
            return []

    def start_command_poller(self, on_commands: Callable[[list[tuple[str, str, str]]], None],
                             interval: float = 1.0) -> None:
        """Every *interval* seconds (the first time at once), on its own thread with its own
        connection, take the agent commands ``ivr agent`` wrote and pass them, oldest first,
        to *on_commands* as ``[(agent, command, reason), ...]``; only when there are some.

        *on_commands* runs on the poller's thread: it should only post them to the driver's
        inbox. :meth:`close` stops the poller."""
        if self._poller is not None:
            raise RuntimeError("the agent command poller is already running")
        self._poller_stop.clear()
        self._poller = threading.Thread(target=self._run_poller, args=(on_commands, interval),
                                        name="store-commands", daemon=True)
        self._poller.start()

    def stop_command_poller(self) -> None:
        if self._poller is not None:
            self._poller_stop.set()
            self._poller.join(WRITER_BUSY_TIMEOUT + 2.0)
            self._poller = None

    def _run_poller(self, on_commands: Callable[[list[tuple[str, str, str]]], None],
                    interval: float) -> None:
        db: sqlite3.Connection | None = None
        failing_since: float | None = None
        last_logged = 0.0
        try:
            while not self._poller_stop.is_set():
                try:
                    if db is None:
                        db = sqlite3.connect(str(self.path), isolation_level=None,
                                             timeout=WRITER_BUSY_TIMEOUT)
                        db.row_factory = sqlite3.Row
                    commands = _take_commands(db, time.time())
                except sqlite3.Error as exc:
                    now = time.monotonic()
                    if failing_since is None:
                        failing_since = last_logged = now
                        log.error("cannot read agent commands from %s: %s; trying again every "
                                  "%g s", self.path, exc, interval)
                    elif now - last_logged >= self._log_every:
                        last_logged = now
                        log.error("still cannot read agent commands from %s for %s: %s",
                                  self.path, _duration(now - failing_since), exc)
                else:
                    if failing_since is not None:
                        log.warning("agent commands are read from %s again", self.path)
                        failing_since = None
                    if commands:
                        try:
                            on_commands(commands)
                        except Exception:  # the poller must outlive a bad callback
                            log.exception("the agent command callback failed on %s", commands)
                self._poller_stop.wait(interval)
        finally:
            if db is not None:
                db.close()

    # -- hours overrides (set_override nodes) -------------------------------------------------
    def overrides(self) -> dict[str, str]:
        """Hours override switches that are forced: name -> 'open' or 'closed'."""
        with self._db_lock:
            return {row["name"]: row["state"]
                    for row in self.db.execute("SELECT name, state FROM overrides")}

    # -- tickets ------------------------------------------------------------------------------
    def open_tickets(self) -> tuple[list[Ticket], int]:
        """The open and escalated tickets, and the highest ticket number ever stored (new
        numbers go on after it): read once at start into the driver's TicketBook."""
        with self._db_lock:
            rows = self.db.execute("SELECT * FROM tickets WHERE status IN ('open', 'escalated') "
                                   "ORDER BY opened_at").fetchall()
            highest = self.db.execute("SELECT MAX(CAST(number AS INTEGER)) FROM tickets "
                                      "WHERE number GLOB '[0-9]*'").fetchone()[0]
        return [ticket_of_row(r) for r in rows], int(highest or 0)

    def ticket(self, number: str) -> Ticket | None:
        """The committed ticket *number*, or None."""
        with self._db_lock:
            row = self.db.execute("SELECT * FROM tickets WHERE number=?", (number,)).fetchone()
        return None if row is None else ticket_of_row(row)

    # -- reads --------------------------------------------------------------------------------
    def get(self, call_id: str) -> sqlite3.Row | None:
        """The committed row of *call_id*, or None."""
        with self._db_lock:
            row: sqlite3.Row | None = self.db.execute(
                "SELECT * FROM calls WHERE call_id=?", (call_id,)).fetchone()
        return row

    def rows(self) -> Iterator[sqlite3.Row]:
        """Every committed call row, oldest first."""
        with self._db_lock:
            rows = self.db.execute("SELECT * FROM calls ORDER BY started_at").fetchall()
        yield from rows


def _check_values(what: str, values: Mapping[str, Any]) -> None:
    """Raise TypeError, on the caller's side, for a value SQLite and JSON cannot both store:
    in the writer it would fail its batch on every retry."""
    for name, value in values.items():
        if value is not None and not isinstance(value, str | int | float):
            raise TypeError(f"{what}.{name} must be a str, int, float or None, not "
                            f"{type(value).__name__} ({value!r})")


def _call_params(rec: CallRecord) -> list[Any]:
    return [getattr(rec, c) for c in _COLUMNS]


def _apply_override(db: sqlite3.Connection, ov: _Override) -> None:
    if ov.state == "auto":
        db.execute("DELETE FROM overrides WHERE name=?", (ov.name,))
    else:
        db.execute("INSERT OR REPLACE INTO overrides (name, state, changed_at) VALUES (?, ?, ?)",
                   (ov.name, ov.state, ov.changed_at))


def _take_commands(db: sqlite3.Connection, at: float) -> list[tuple[str, str, str]]:
    """Read and mark done, in one transaction, the commands not yet carried out."""
    db.execute("BEGIN IMMEDIATE")
    try:
        rows = db.execute("SELECT id, agent, command, reason FROM agent_commands "
                          "WHERE done_at IS NULL ORDER BY id").fetchall()
        if rows:
            db.execute("UPDATE agent_commands SET done_at=? WHERE id<=? AND done_at IS NULL",
                       (at, rows[-1][0]))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return [(r[1], r[2], r[3]) for r in rows]


def _fallback_objects(batch: _Batch) -> Iterator[dict[str, Any]]:
    """One JSON object per record, event and state change: the fallback file's lines."""
    for _, rec in batch.calls:
        yield {"type": "call", "call": asdict(rec)}
    for _, e in batch.events:
        yield {"type": "queue_event", "event_id": e.event_id, "at": e.at, "kind": e.kind,
               "queue": e.queue, "call_id": e.call_id, "agent": e.agent,
               "detail": json.loads(e.detail_json)}
    for _, s in batch.states:
        yield {"type": "agent_state", "agent": s.agent, "state": s.state, "reason": s.reason,
               "at": s.at}
    for _, ov in batch.overrides:
        yield {"type": "override", "name": ov.name, "state": ov.state,
               "changed_at": ov.changed_at}
    for _, t in batch.tickets:
        yield {"type": "ticket", "ticket": asdict(t)}


def _import_call(db: sqlite3.Connection, obj: dict[str, Any]) -> None:
    rec = CallRecord(**{k: v for k, v in obj["call"].items() if k in _COLUMNS})
    db.execute(_SAVE_CALL, _call_params(rec))


def _import_event(db: sqlite3.Connection, obj: dict[str, Any]) -> None:
    db.execute(_SAVE_EVENT, (str(obj["event_id"]), float(obj["at"]), obj["kind"], obj["queue"],
                             obj["call_id"], obj["agent"],
                             json.dumps(obj["detail"], sort_keys=True)))


def _import_state(db: sqlite3.Connection, obj: dict[str, Any]) -> None:
    db.execute(_IMPORT_STATE, (obj["agent"], obj["state"], obj["reason"], float(obj["at"])))


def _import_ticket(db: sqlite3.Connection, obj: dict[str, Any]) -> None:
    row = _TicketRow(**{k: obj["ticket"][k] for k in _TICKET_COLUMNS})
    db.execute(_SAVE_TICKET, row.params())


def _import_override(db: sqlite3.Connection, obj: dict[str, Any]) -> None:
    _apply_override(db, _Override(obj["name"], obj["state"], float(obj["changed_at"])))


_IMPORTERS: dict[str, Callable[[sqlite3.Connection, dict[str, Any]], None]] = {
    "call": _import_call, "queue_event": _import_event, "agent_state": _import_state,
    "override": _import_override, "ticket": _import_ticket,
}


def _fsync_folder(folder: Path) -> None:
    """Make a newly created file's name durable too."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["OUTCOMES", "SCHEMA_VERSION", "CallRecord", "CallStore", "QueueEventRow",
           "StoreError", "StoreInUse", "ticket_of_row"]

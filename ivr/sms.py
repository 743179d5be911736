"""Texts the switchboard sends through its modem: a queue in SQLite, rate limits, the sender.

The queue is the ``sms`` table of the call records file (schema 5, :mod:`ivr.store`): a text
is a row from the moment it is queued, so nothing is lost when the modem is unplugged or the
switchboard stops. :class:`SmsQueue` opens its own connection to the file; the driver's loop
only ever calls :meth:`SmsQueue.add` (one short insert), everything else happens on the
sender's thread.

:class:`SmsSender` is the modem's thread: it opens the modem (reopening with backoff when the
port fails), takes the texts that are due, sends them one at a time and marks each ``sent``,
or retries it later with exponential backoff. A port that fails mid-message leaves the text
queued with its attempts unchanged: it goes out after the modem is back. A text the network
refused :data:`MAX_ATTEMPTS` times ends ``failed``.

:class:`RateLimit` keeps a flow's texts to callers in bounds: at most *per_number* texts to
one number and *per_day* texts in all in any 24 hours. Time is passed in (tests set it by
hand).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from hw.modem import Modem, ModemError, ModemGone
from ivr.store import SMS_SCHEMA

log = logging.getLogger("ivr.sms")

DAY = 86400.0
RETRY_FIRST = 30.0
"""Seconds before a text that failed is tried again; doubled after each failure..."""
RETRY_MAX = 3600.0
"""...up to this."""
MAX_ATTEMPTS = 8
"""Failed attempts (the modem answered with an error) after which a text ends 'failed'."""
REOPEN_FIRST = 1.0
"""Seconds before the sender opens a modem that failed again; doubled up to REOPEN_MAX."""
REOPEN_MAX = 60.0
BUSY_TIMEOUT = 5.0



@dataclass(frozen=True)
class Sms:
    id: int
    number: str
    text: str
    purpose: str
    attempts: int


class SmsMetrics:
    """``ivr_sms_total{result}`` (sent, error, failed) and ``ivr_sms_queued``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.total = Counter("ivr_sms", "Texts the modem tried to send, by result: sent, error "
                             "(to be retried), failed (given up).", ["result"], registry=registry)
        self.queued = Gauge("ivr_sms_queued", "Texts waiting in the queue for the modem.",
                            registry=registry)


class SmsQueue:
    """The ``sms`` table of the SQLite file at *path*; safe to use from several threads."""

    def __init__(self, path: Path, *, retry_first: float = RETRY_FIRST,
                 retry_max: float = RETRY_MAX, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.path = Path(path)
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._max_attempts = max_attempts
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=BUSY_TIMEOUT,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SMS_SCHEMA)  # a file the call store never opened
        self.changed = threading.Event()
        """Set by :meth:`add`: the sender wakes at once."""

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, number: str, text: str, purpose: str, now: float) -> int:
        """Queue a text; returns its id."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO sms (number, text, purpose, created_at, next_at) "
                "VALUES (?, ?, ?, ?, ?)", (number, text, purpose, now, now))
        self.changed.set()
        return int(cur.lastrowid or 0)

    def due(self, now: float, limit: int = 20) -> list[Sms]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, number, text, purpose, attempts FROM sms WHERE state = 'queued' "
                "AND next_at <= ? ORDER BY next_at, id LIMIT ?", (now, limit)).fetchall()
        return [Sms(*row) for row in rows]

    def next_due(self) -> float | None:
        """When the earliest queued text is due (None: the queue is empty)."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_at) FROM sms WHERE state = 'queued'").fetchone()
        return None if row[0] is None else float(row[0])

    def sent(self, sms_id: int, now: float, reference: int) -> None:
        with self._lock:
            self._db.execute("UPDATE sms SET state = 'sent', sent_at = ?, reference = ?, "
                             "attempts = attempts + 1, last_error = '' WHERE id = ?",
                             (now, reference, sms_id))

    def failed(self, sms: Sms, now: float, error: str) -> bool:
        """Count a failed attempt; True if the text is given up (state 'failed')."""
        attempts = sms.attempts + 1
        give_up = attempts >= self._max_attempts
        delay = min(self._retry_max, self._retry_first * 2 ** (attempts - 1))
        with self._lock:
            self._db.execute("UPDATE sms SET state = ?, attempts = ?, next_at = ?, "
                             "last_error = ? WHERE id = ?",
                             ("failed" if give_up else "queued", attempts, now + delay,
                              error[:200], sms.id))
        return give_up

    def queued_count(self) -> int:
        with self._lock:
            return int(self._db.execute(
                "SELECT COUNT(*) FROM sms WHERE state = 'queued'").fetchone()[0])

    def state(self, sms_id: int) -> tuple[str, int, str] | None:
        """(state, attempts, last error) of one text."""
        with self._lock:
            row = self._db.execute("SELECT state, attempts, last_error FROM sms WHERE id = ?",
                                   (sms_id,)).fetchone()
        return None if row is None else (row[0], int(row[1]), row[2])

    def recent(self, purpose: str, since: float) -> list[tuple[str, float]]:
        """(number, queued at) of the texts of *purpose* queued since *since*."""
        with self._lock:
            rows = self._db.execute("SELECT number, created_at FROM sms WHERE purpose = ? AND "
                                    "created_at >= ? ORDER BY created_at", (purpose, since))
            return [(row[0], float(row[1])) for row in rows]


class RateLimit:
    """At most *per_number* texts to one number and *per_day* in all in any 24 hours."""

    def __init__(self, per_number: int, per_day: int) -> None:
        self.per_number = per_number
        self.per_day = per_day
        self._all: deque[float] = deque()
        self._by_number: dict[str, deque[float]] = defaultdict(deque)

    def seed(self, sent: list[tuple[str, float]]) -> None:
        """Count texts queued before a restart (from :meth:`SmsQueue.recent`)."""
        for number, at in sent:
            self._all.append(at)
            self._by_number[number].append(at)

    def _expire(self, now: float) -> None:
        while self._all and self._all[0] <= now - DAY:
            self._all.popleft()
        for number in list(self._by_number):
            times = self._by_number[number]
            while times and times[0] <= now - DAY:
                times.popleft()
            if not times:
                del self._by_number[number]

    def allow(self, number: str, now: float) -> str:
        """'' and count the text if it may go; else why not (``per_number``, ``per_day``)."""
        self._expire(now)
        if len(self._all) >= self.per_day:
            return "per_day"
        if len(self._by_number.get(number, ())) >= self.per_number:
            return "per_number"
        self._all.append(now)
        self._by_number[number].append(now)
        return ""


class SmsSender:
    """The modem's thread: sends what the queue holds, survives unplug and replug.

    *on_up* is called with True/False (and the thread's view of it) each time the modem opens
    or fails, for ``ivr_device_up`` and the log.
    """

    def __init__(self, name: str, modem: Modem, queue: SmsQueue, *,
                 metrics: SmsMetrics | None = None,
                 on_up: Callable[[bool], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 reopen_first: float = REOPEN_FIRST, reopen_max: float = REOPEN_MAX) -> None:
        self.name = name
        self.modem = modem
        self.queue = queue
        self._metrics = metrics
        self._on_up = on_up
        self._clock = clock
        self._reopen_first = reopen_first
        self._reopen_max = reopen_max
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.up = False
        self.sent = threading.Event()
        """Set after each text that went out (tests wait on it)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"modem-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.queue.changed.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.modem.close()

    def _set_up(self, up: bool, why: str = "") -> None:
        if up == self.up:
            return
        self.up = up
        if up:
            log.info("modem %s: up on %s", self.name, self.modem.url)
        else:
            log.warning("modem %s: down (%s); texts stay queued", self.name, why)
        if self._on_up is not None:
            self._on_up(up)

    def _run(self) -> None:
        delay = self._reopen_first
        while not self._stop.is_set():
            if not self.modem.is_open:
                try:
                    info = self.modem.open()
                except ModemError as exc:
                    self._set_up(False, str(exc))
                    self._stop.wait(delay)
                    delay = min(self._reopen_max, delay * 2)
                    continue
                delay = self._reopen_first
                log.info("modem %s: registered (%s)", self.name, info.registration)
                self._set_up(True)
            self._publish()
            self._send_due()
            self._wait()

    def _wait(self) -> None:
        if not self.modem.is_open:
            return
        due = self.queue.next_due()
        wait = 60.0 if due is None else max(0.0, due - self._clock())
        if wait > 0:
            self.queue.changed.wait(min(wait, 60.0))
        self.queue.changed.clear()

    def _publish(self) -> None:
        if self._metrics is not None:
            self._metrics.queued.set(self.queue.queued_count())

    def _send_due(self) -> None:
        for sms in self.queue.due(self._clock()):
            if self._stop.is_set():
                return
            try:
                reference = self.modem.send(sms.number, sms.text)
            except ModemGone as exc:
                # the text stays queued as it was: it goes out when the modem is back
                self.modem.close()
                self._set_up(False, str(exc))
                return
            except ModemError as exc:
                given_up = self.queue.failed(sms, self._clock(), str(exc))
                self._count("failed" if given_up else "error")
                log.warning("modem %s: text %d to %s %s: %s", self.name, sms.id,
                            _masked(sms.number), "given up" if given_up else "will be retried",
                            exc)
                continue
            self.queue.sent(sms.id, self._clock(), reference)
            self._count("sent")
            log.info("modem %s: text %d (%s) sent to %s", self.name, sms.id, sms.purpose,
                     _masked(sms.number))
            self.sent.set()
        self._publish()

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.total.labels(result).inc()


def _masked(number: str) -> str:
    """A number for the log: its last three digits only (callers' numbers are personal)."""
    return "…" + number[-3:] if len(number) > 3 else number


__all__ = ["MAX_ATTEMPTS", "RateLimit", "Sms", "SmsMetrics", "SmsQueue", "SmsSender"]

"""Texts the switchboard sends through its modem: a queue in SQLite, rate limits, the sender.

The queue is the ``sms`` table of the call records file (schema 5, :mod:`ivr.store`): a text
is a row from the moment it is queued, so nothing is lost when the modem is unplugged or the
switchboard stops. :class:`SmsQueue` opens its own connection to the file. The driver's loop
never touches it: it calls :meth:`SmsOutbox.offer`, which applies the limits in memory and
hands the text to the outbox's thread, which writes the row and wakes the modem's thread.

:class:`SmsSender` is the modem's device (:class:`hw.serialdev.SerialDevice`, its own
thread): each time the port opens it runs the AT dialogue, then sends the texts that are due
one at a time and marks each ``sent``, or retries it later with exponential backoff. A port
that fails mid-message leaves the text queued with its attempts unchanged: it goes out after
the modem is back. A text the network refused :data:`MAX_ATTEMPTS` times ends ``failed``.

:class:`AlertTexts` texts the supervisors when an alert condition starts and when it ends:
the conditions of monitoring/alerts.yml that the switchboard knows in-process (a gateway not
answering, call records not written, recording suspended, callers waiting with no agent
logged in), each after the same hold time as its rule.

:class:`RateLimit` keeps a flow's texts to callers in bounds: at most *per_number* texts to
one number and *per_day* texts in all in any 24 hours. Time is passed in (tests set it by
hand).
"""

from __future__ import annotations

import logging
import queue as queue_module
import sqlite3
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import serial
from prometheus_client import CollectorRegistry, Counter, Gauge

from hw.modem import Modem, ModemError, ModemGone
from hw.serialdev import OpenPort, SerialDevice, open_url
from ivr.store import SMS_SCHEMA

if TYPE_CHECKING:
    from ivr.config import Config
    from ivr.metrics import Metrics, Snapshot

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
POLL_EVERY = 5.0
"""Seconds between two looks at the queue while nothing wakes the thread."""
HEARTBEAT = 30.0
"""Seconds between two ``AT`` to an idle modem: one unplugged, or that stopped answering, is
noticed (ivr_device_up) and reopened before a text needs it."""
_WAKE = "wake"
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

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, number: str, text: str, purpose: str, now: float) -> int:
        """Queue a text; returns its id."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO sms (number, text, purpose, created_at, next_at) "
                "VALUES (?, ?, ?, ?, ?)", (number, text, purpose, now, now))
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


@dataclass(frozen=True)
class AlertInputs:
    """What the alert conditions look at: the switchboard's state as last published."""

    gateways_down: tuple[str, ...] = ()
    """Trunks whose gateway does not answer OPTIONS (GatewayUnreachable)."""
    records_pending: int = 0
    """Records the store could not write yet (CallRecordsNotWritten)."""
    recordings_suspended: bool = False
    """Recording stopped for low disk (CallRecordingSuspended)."""
    unstaffed_queues: tuple[str, ...] = ()
    """Queues with callers waiting and no agent logged in (QueueNoAgentLoggedIn)."""


HOLD = {"gateway": 120.0, "records": 300.0, "recordings": 60.0, "no_agents": 60.0}
"""Seconds a condition must last before it is texted: the ``for:`` of the matching rule in
monitoring/alerts.yml, so the texts and the alert rules agree."""


def alert_conditions(inputs: AlertInputs) -> dict[str, str]:
    """Key -> what a supervisor reads, for each condition that holds now."""
    found = {f"gateway:{trunk}": f"gateway {trunk} does not answer" for trunk in
             inputs.gateways_down}
    if inputs.records_pending:
        found["records"] = f"call records are not being written ({inputs.records_pending} wait)"
    if inputs.recordings_suspended:
        found["recordings"] = "call recording suspended: the disk is nearly full"
    found |= {f"no_agents:{queue}": f"callers wait in {queue} and no agent is logged in"
              for queue in inputs.unstaffed_queues}
    return found


class AlertTexts:
    """Texts the supervisors when an alert condition starts (after it held for its
    :data:`HOLD` time) and when it ends. *read* returns the current :class:`AlertInputs`;
    *add* queues a text. :meth:`check` is called with the wall time, on the modem's thread."""

    def __init__(self, read: Callable[[], AlertInputs], numbers: Mapping[str, str],
                 add: Callable[[str, str, str, float], object], *, site: str = "Centralino",
                 hold: Mapping[str, float] | None = None) -> None:
        self._read = read
        self.numbers = dict(numbers)
        """Supervisor -> the number their texts go to."""
        self._add = add
        self._site = site
        self._hold = dict(HOLD if hold is None else hold)
        self._since: dict[str, float] = {}
        self.announced: dict[str, str] = {}
        """Conditions texted as started and not yet ended: key -> text."""

    def check(self, now: float) -> list[str]:
        """Queue the texts due now; returns them (for the log and tests)."""
        active = alert_conditions(self._read())
        for key in list(self._since):
            if key not in active:
                del self._since[key]
        texts = []
        for key, what in active.items():
            since = self._since.setdefault(key, now)
            if key not in self.announced and now - since >= self._hold.get(key.split(":")[0],
                                                                            0.0):
                self.announced[key] = what
                texts.append(f"{self._site} ALERT: {what}.")
        for key in [k for k in self.announced if k not in active]:
            texts.append(f"{self._site} OK again: {self.announced.pop(key)} - resolved.")
        for text in texts:
            log.warning("alert text to the supervisors: %s", text)
            for number in self.numbers.values():
                self._add(number, text, "alert", now)
        return texts


class SmsSender(SerialDevice):
    """The modem's device thread: sends what the queue holds, survives unplug and replug.

    The port is opened and reopened with backoff by :class:`hw.serialdev.SerialDevice`; each
    time it opens, the AT dialogue runs (:meth:`hw.modem.Modem.attach`). A modem that does not
    get through the dialogue counts as a port failure: closed, and tried again later.
    """

    kind = "modem"

    def __init__(self, name: str, url: str, queue: SmsQueue, *, modem: Modem | None = None,
                 metrics: SmsMetrics | None = None,
                 on_up: Callable[[str, bool], None] | None = None,
                 open_port: OpenPort = open_url, clock: Callable[[], float] = time.time,
                 backoff: tuple[float, float] = (REOPEN_FIRST, REOPEN_MAX),
                 poll_every: float = POLL_EVERY, heartbeat: float = HEARTBEAT) -> None:
        super().__init__(name, url, on_up=on_up, open_port=open_port, backoff=backoff)
        self.modem = modem or Modem(url)
        self.queue = queue
        self._metrics = metrics
        self._wall = clock
        self._poll_every = poll_every
        self._heartbeat = heartbeat
        self._heartbeat_at = 0.0
        self.sent = threading.Event()
        """Set after each text that went out (tests wait on it)."""

    def add(self, number: str, text: str, purpose: str, now: float) -> int:
        """Queue a text and wake the thread; returns the text's id. Never waits on the port
        (it does write the row: the driver's loop uses :class:`SmsOutbox` instead)."""
        sms_id = self.queue.add(number, text, purpose, now)
        self.wake()
        return sms_id

    def wake(self) -> None:
        """Look at the queue now (a text was added)."""
        self.send(_WAKE)

    def on_open(self, port: Any) -> None:
        self._heartbeat_at = time.monotonic() + self._heartbeat
        try:
            info = self.modem.attach(port)
        except ModemError as exc:
            self.modem.detach()
            raise serial.SerialException(f"modem not ready: {exc}") from None
        log.info("modem %s: registered (%s)", self.name, info.registration)

    def on_close(self) -> None:
        self.modem.detach()

    def poll(self, port: Any) -> float:
        if time.monotonic() >= self._heartbeat_at:
            try:
                self.modem.command("AT")
            except ModemError as exc:  # gone, or no answer: reopen and run the dialogue again
                raise serial.SerialException(f"modem does not answer: {exc}") from None
            self._heartbeat_at = time.monotonic() + self._heartbeat
        self._send_due()
        due = self.queue.next_due()
        wait = self._poll_every if due is None else due - self._wall()
        return max(0.0, min(wait, self._poll_every))

    def on_command(self, port: Any, command: object) -> None:
        self._send_due()

    def _publish(self) -> None:
        if self._metrics is not None:
            self._metrics.queued.set(self.queue.queued_count())

    def _send_due(self) -> None:
        self._publish()
        for sms in self.queue.due(self._wall()):
            try:
                reference = self.modem.send(sms.number, sms.text)
            except ModemGone as exc:
                # the text stays queued as it was: it goes out when the modem is back
                raise serial.SerialException(str(exc)) from None
            except ModemError as exc:
                given_up = self.queue.failed(sms, self._wall(), str(exc))
                self._count("failed" if given_up else "error")
                log.warning("modem %s: text %d to %s %s: %s", self.name, sms.id,
                            _masked(sms.number), "given up" if given_up else "will be retried",
                            exc)
                continue
            self.queue.sent(sms.id, self._wall(), reference)
            self._count("sent")
            log.info("modem %s: text %d (%s) sent to %s", self.name, sms.id, sms.purpose,
                     _masked(sms.number))
            self.sent.set()
        self._publish()

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.total.labels(result).inc()


@dataclass(frozen=True)
class _Offer:
    number: str
    text: str
    purpose: str
    at: float


class SmsOutbox:
    """Where the switchboard's texts go in: a thread of its own writes them to the queue
    (the driver's loop never waits on SQLite) and wakes the modem; it also looks at the
    *alerts* every *check_every* seconds, whether the modem is plugged in or not.

    :meth:`offer` (the loop's) applies the caller rate limit; texts to supervisors are not
    limited. Without a *sender* (no modem configured) texts are still queued, and go out when
    a modem is added.
    """

    def __init__(self, queue: SmsQueue, *, sender: SmsSender | None = None,
                 alerts: AlertTexts | None = None, limit: RateLimit | None = None,
                 clock: Callable[[], float] = time.time, check_every: float = 5.0) -> None:
        self.queue = queue
        self.sender = sender
        self.alerts = alerts
        self.limit = limit or RateLimit(3, 100)
        self.limit.seed(queue.recent("caller", clock() - DAY))
        self._clock = clock
        self._check_every = check_every
        self._offers: queue_module.Queue[_Offer | None] = queue_module.Queue()
        self._thread: threading.Thread | None = None
        self.written = threading.Event()
        """Set after each text written to the queue (tests wait on it)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sms-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and the modem; the queue is closed."""
        self._offers.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        self._write_waiting()  # what came after the thread stopped
        if self.sender is not None:
            self.sender.stop(timeout)
        self.queue.close()

    def offer(self, number: str, text: str, now: float) -> str:
        """A flow's text to its caller: '' if queued, else why not (``withheld``,
        ``per_number``, ``per_day``). Returns at once."""
        if not number or not any(c.isdigit() for c in number):
            return "withheld"
        refused = self.limit.allow(number, now)
        if not refused:
            self._offers.put(_Offer(number, text, "caller", now))
        return refused

    def _run(self) -> None:
        next_check = 0.0
        while True:
            wait = max(0.0, next_check - self._clock())
            try:
                offer = self._offers.get(timeout=wait)
            except queue_module.Empty:
                offer = _Offer("", "", "", 0.0)
            if offer is None:
                return
            if offer.number:
                self._write(offer)
            if self._clock() >= next_check:
                next_check = self._clock() + self._check_every
                if self.alerts is not None:
                    self.alerts.check(self._clock())

    def add_alert(self, number: str, text: str, purpose: str, now: float) -> None:
        """For :class:`AlertTexts` (called on this thread)."""
        self._write(_Offer(number, text, purpose, now))

    def _write(self, offer: _Offer, tries: int = 1000) -> None:
        delay = 0.1
        for left in range(tries - 1, -1, -1):
            try:
                self.queue.add(offer.number, offer.text, offer.purpose, offer.at)
                break
            except sqlite3.Error as exc:
                if not left:
                    log.error("text to %s lost: the queue cannot be written: %s",
                              _masked(offer.number), exc)
                    return
                log.warning("text to %s not queued yet: %s; trying again", _masked(offer.number),
                            exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.written.set()
        if self.sender is not None:
            self.sender.wake()

    def _write_waiting(self) -> None:
        while True:
            try:
                offer = self._offers.get_nowait()
            except queue_module.Empty:
                return
            if offer is not None and offer.number:
                self._write(offer, tries=3)


def alert_inputs(snap: Snapshot, records_pending: int, recordings_suspended: bool) -> AlertInputs:
    """The alert conditions' inputs from the driver's last published snapshot."""
    staffed = {queue for (queue, state), n in snap.queue_agents.items()
               if n and state != "logged_out"}
    return AlertInputs(
        gateways_down=tuple(sorted(t for t, up in snap.trunks.items() if not up)),
        records_pending=records_pending, recordings_suspended=recordings_suspended,
        unstaffed_queues=tuple(sorted(q for q, n in snap.callers_waiting.items()
                                      if n and q not in staffed)))


def start_sms(config: Config, metrics: Metrics, store_pending: Callable[[], int],
              on_up: Callable[[str, bool], None] | None = None) -> SmsOutbox | None:
    """Start the modem of ``devices`` (the first, if several) and the outbox; None without a
    modem. The alerts read the snapshot the loop publishes, never the core itself."""
    modems = [d for d in config.devices.values() if d.kind == "modem"]
    if not modems:
        return None
    device = modems[0]
    if len(modems) > 1:
        log.warning("devices: only modem %s sends texts; %s unused", device.name,
                    ", ".join(d.name for d in modems[1:]))
    queue = SmsQueue(config.store)
    sender = SmsSender(device.name, device.url, queue,
                       modem=Modem(device.url, pin=device.pin or None),
                       metrics=SmsMetrics(metrics.registry), on_up=on_up)
    outbox = SmsOutbox(queue, sender=sender,
                       limit=RateLimit(device.texts_per_number, device.texts_per_day))

    def read() -> AlertInputs:
        suspended = any(sample.value for family in metrics.recordings_suspended.collect()
                        for sample in family.samples)
        return alert_inputs(metrics.snapshot(), store_pending(), suspended)

    numbers = {name: s.sms for name, s in config.supervisors.items() if s.sms}
    if numbers:
        outbox.alerts = AlertTexts(read, numbers, outbox.add_alert)
    sender.start()
    outbox.start()
    log.info("modem %s on %s: texts queued in %s; alerts to %s", device.name, device.url,
             config.store, ", ".join(sorted(numbers)) or "nobody (no supervisor has sms)")
    return outbox


def format_queue(path: Path, limit: int = 20) -> str:
    """``ivr sms``: the texts by state, then the latest *limit* (numbers shown by their last
    three digits), read without writing to the file."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        return f"cannot read {path}: {exc}\n"
    try:
        counts = db.execute("SELECT state, COUNT(*) FROM sms GROUP BY state").fetchall()
        rows = db.execute("SELECT created_at, purpose, number, state, attempts, last_error "
                          "FROM sms ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    except sqlite3.Error as exc:
        return ("no texts yet\n" if "no such table" in str(exc)
                else f"cannot read {path}: {exc}\n")
    finally:
        db.close()
    by_state = dict(counts)
    lines = [", ".join(f"{state} {by_state.get(state, 0)}"
                       for state in ("queued", "sent", "failed"))]
    for at, purpose, number, state, attempts, error in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
        lines.append(f"{when}  {purpose:<6} {_masked(number):>6}  {state:<6} "
                     f"{attempts} attempt{'s' if attempts != 1 else ''}"
                     + (f"  {error}" if error else ""))
    return "\n".join(lines) + "\n"


def _masked(number: str) -> str:
    """A number for the log: its last three digits only (callers' numbers are personal)."""
    return "…" + number[-3:] if len(number) > 3 else number


__all__ = ["HOLD", "MAX_ATTEMPTS", "AlertInputs", "AlertTexts", "RateLimit", "Sms", "SmsMetrics",
           "SmsOutbox", "SmsQueue", "SmsSender", "alert_conditions", "alert_inputs",
           "format_queue", "start_sms"]

"""Retention of call data: purge old records, or everything about one caller (GDPR erasure).

Each purge is one database transaction (with ``secure_delete`` so the removed rows are
overwritten in the file); voicemail files are deleted only after the commit. Nothing here logs
or prints a caller's number.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from ivr.errors import RecordsError
from ivr.preflight import record_file_problem

log = logging.getLogger("ivr.retention")

DAY = 86400.0


@dataclass
class PurgeResult:
    calls: int = 0
    queue_events: int = 0
    voicemails: int = 0
    callbacks: int = 0
    """Callback call records (the switchboard calling the caller back), included in ``calls``."""
    tickets: int = 0
    texts: int = 0
    """SMS texts (to callers or supervisors) whose rows went."""
    recordings: int = 0
    """Recorded calls' WAV files deleted (their call records went)."""
    recording_files: list[str] = field(default_factory=list)
    missing_files: int = 0
    failed_files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"removed {self.calls} call record(s) ({self.callbacks} callback(s)), "
                f"{self.queue_events} queue event(s), {self.voicemails} voicemail file(s)")
        if self.tickets:
            text += f", {self.tickets} ticket(s)"
        if self.texts:
            text += f", {self.texts} text message(s)"
        if self.recordings:
            text += f", {self.recordings} call recording(s)"
        if self.missing_files:
            text += f"; {self.missing_files} voicemail file(s) were already gone"
        if self.failed_files:
            text += f"; could not delete {len(self.failed_files)} file(s)"
        return text


def _connect(store_path: Path) -> sqlite3.Connection:
    """The call record file opened for writing; :class:`RecordsError` if it is not one (it is
    never created: mode=rw opens only an existing file)."""
    problem = record_file_problem(store_path)
    if problem is not None:
        raise RecordsError(problem)
    db = sqlite3.connect(f"{Path(store_path).resolve().as_uri()}?mode=rw", uri=True,
                         isolation_level=None, timeout=10.0)
    db.execute("PRAGMA secure_delete=ON")
    return db


def _voicemail_file(path: str, recordings: Path | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or recordings is None else recordings / p


def _delete_files(paths: list[str], recordings: Path | None, result: PurgeResult) -> None:
    for path in paths:
        target = _voicemail_file(path, recordings)
        try:
            target.unlink()
            result.voicemails += 1
        except FileNotFoundError:
            result.missing_files += 1
        except OSError as exc:
            log.error("cannot delete a voicemail file: %s", exc.strerror or exc)
            result.failed_files.append(str(target))


def _recording_paths(db: sqlite3.Connection, where: str,
                     params: tuple[object, ...]) -> list[str]:
    """The recorded calls' files of the calls *where* selects (none in a file from before
    call recording, which lacks the column)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(calls)")}
    if "recording_path" not in columns:
        return []
    return [r[0] for r in db.execute(
        f"SELECT recording_path FROM calls WHERE ({where}) AND recording_path IS NOT NULL",
        params)]


def _delete_recordings(result: PurgeResult) -> None:
    """Delete the recorded calls' files, and any mono part a failed join left beside one."""
    from ivr.recording import parts_left

    for path in result.recording_files:
        for part in parts_left(path):
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        try:
            Path(path).unlink()
            result.recordings += 1
        except FileNotFoundError:
            pass  # never written: the call ended before any sound, or the join failed
        except OSError as exc:
            log.error("cannot delete a call recording: %s", exc.strerror or exc)
            result.failed_files.append(path)


def _purge(db: sqlite3.Connection, where: str, params: tuple[object, ...],
           events_where: str | None, events_params: tuple[object, ...],
           tickets_where: str, tickets_params: tuple[object, ...],
           texts_where: str, texts_params: tuple[object, ...]) -> tuple[
               PurgeResult, list[str]]:
    result = PurgeResult()
    db.execute("BEGIN IMMEDIATE")
    try:
        rows = db.execute(f"SELECT call_id, voicemail_path, source FROM calls WHERE {where}",
                          params).fetchall()
        ids = [r[0] for r in rows]
        files = [r[1] for r in rows if r[1]]
        result.callbacks = sum(1 for r in rows if r[2] == "callback")
        result.recording_files = _recording_paths(db, where, params)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" for _ in chunk)
            result.queue_events += db.execute(
                f"DELETE FROM queue_events WHERE call_id IN ({marks})", chunk).rowcount
        if events_where:
            result.queue_events += db.execute(f"DELETE FROM queue_events WHERE {events_where}",
                                              events_params).rowcount
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='tickets'").fetchone():
            # (a file from before tickets has none)
            result.tickets = db.execute(f"DELETE FROM tickets WHERE {tickets_where}",
                                        tickets_params).rowcount
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='sms'").fetchone():
            # the texts hold the number they went to (a file from before texts has none)
            result.texts = db.execute(f"DELETE FROM sms WHERE {texts_where}",
                                      texts_params).rowcount
        result.calls = db.execute(f"DELETE FROM calls WHERE {where}", params).rowcount
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    with contextlib.suppress(sqlite3.Error):  # move the overwritten pages out of the WAL too
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return result, files


def purge_older_than(store_path: Path, days: float, now: float,
                     recordings: Path | None = None) -> PurgeResult:
    """Delete call records that ended, and queue events that happened, more than *days* ago,
    with the voicemail files of those calls. Calls still in progress are kept.

    Called daily by the switchboard when ``retention_days`` is set, and by ``ivr purge``.
    """
    if days <= 0:
        raise ValueError("the retention period must be a positive number of days")
    cutoff = now - days * DAY
    db = _connect(store_path)
    try:
        result, files = _purge(
            db, "outcome != 'in_progress' AND COALESCE(ended_at, started_at) < ?", (cutoff,),
            "at < ?", (cutoff,), "updated_at < ?", (cutoff,),
            # a text still waiting for the modem stays until it goes or fails
            "state != 'queued' AND created_at < ?", (cutoff,))
    finally:
        db.close()
    _delete_files(files, recordings, result)
    _delete_recordings(result)
    log.info("retention (%g days): %s", days, result.summary())
    return result


def purge_caller(store_path: Path, number: str, recordings: Path | None = None) -> PurgeResult:
    """Remove one person's data: the calls from *number*, the callbacks made to it, the queue
    events of those calls, their tickets, the text messages sent to it and the voicemail files."""
    if not number.strip():
        raise ValueError("give the caller's number")
    db = _connect(store_path)
    try:
        where_caller = "caller = ? OR (source = 'callback' AND called = ?)"
        result, files = _purge(
            db, where_caller, (number, number), None, (),
            # the tickets kept under the number, and those of the removed calls (a ticket kept
            # under an account number keyed in the flow)
            f"customer = ? OR number IN (SELECT ticket FROM calls WHERE {where_caller})",
            (number, number, number),
            "number = ?", (number,))
    finally:
        db.close()
    _delete_files(files, recordings, result)
    _delete_recordings(result)
    return result

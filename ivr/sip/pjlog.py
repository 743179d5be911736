"""pjsip's own log lines, through Python logging.

pjsip writes its log to a file; ours is the write end of a pipe (``/proc/self/fd/N``) and a
daemon thread reads it (no Python ever runs on pjsip's threads: the media thread logs too). Our
pjproject build (``sipstack/patches/0002-log-file-records.patch``) writes each record with one
``write()`` followed by a NUL byte and never blocks on a full pipe, so records are told apart by
that NUL however their text looks: a packet dump that holds a forged log line stays inside its
record.

Each record becomes one line on the logger ``ivr.sip.pjsip``: the pjsip level mapped (1 ERROR,
2 WARNING, 3 INFO, 4 and more DEBUG), the sender, then the text with control characters escaped
and cut to :data:`RECORD_LIMIT`; a record that dumps a packet (pjsip's ``Error processing ...``,
``RX ... bytes ...:``) is cut to its first line. A datagram pjsip could not parse (garbage from
anyone) is reported to a :class:`~ivr.logs.Summarizer`: logged once per source, then counted and
summarised once a minute (``unparseable SIP x 1,240 from 192.0.2.77 in the last minute``).

>>> pjlog = PjsipLog()                                               # doctest: +SKIP
>>> cfg.logConfig.filename = pjlog.open()                            # doctest: +SKIP
>>> ep.libInit(cfg); pjlog.opened()                                  # doctest: +SKIP
>>> ...; ep.libDestroy(); pjlog.close()                              # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass

from ivr.logs import Summarizer, escape

__all__ = ["DECOR", "LOG_FILE_RECORDS", "OVER_BUDGET", "RECORD_BUDGET", "RECORD_LIMIT",
           "UNPARSEABLE", "PjsipLog",
           "PjsipRecord", "parse_record", "python_level"]

log = logging.getLogger("ivr.sip.pjsip")

LOG_FILE_RECORDS = 0x10000
"""``LogConfig.fileFlags`` bit of our build (PJSUA_LOG_FILE_RECORDS): one write per record,
NUL after each, non-blocking."""
DECOR = 2048 | 64 | 128
"""``LogConfig.decor``: level text, sender, newline (no time: Python logging adds it; no colour,
no indent)."""
RECORD_LIMIT = 400
"""Characters of a record's text kept in the log line."""
UNPARSEABLE = "unparseable SIP"
"""The summarizer's reason (and metric label) for datagrams pjsip could not parse."""
OVER_BUDGET = "pjsip log lines over budget"
"""The summarizer's reason for pjsip records beyond :data:`RECORD_BUDGET` in a minute."""
RECORD_BUDGET = 60
"""pjsip records logged per summarizer interval (a minute); more are counted and summarised:
many of them are caused by what peers send (a bad SDP logs an error), so a flood of such
requests must not flood the log."""

_LEVELS = {"FATAL": 0, "ERROR": 1, "WARN": 2, "INFO": 3, "DEBUG": 4, "TRACE": 5, "DETRC": 6}
_FIRST_LINE = re.compile(r"^ ?(FATAL|ERROR|WARN|INFO|DEBUG|TRACE|DETRC): +(\S+) ?(.*)$")
_GARBAGE = re.compile(r"^Error processing (\d+) bytes packet from \S+ (.+?):(\d+) *:? *(.*?):?$")
_DUMP = re.compile(r"\b\d+ bytes\b.*:$")
_READ_SIZE = 65536
_PENDING_LIMIT = 8192
"""Bytes kept while waiting for a record's NUL (a record is at most about 4000)."""


@dataclass(frozen=True)
class PjsipRecord:
    """One pjsip log record, parsed."""

    level: int
    """pjsip's level: 0 fatal, 1 error, 2 warning, 3 info, 4 debug, 5-6 trace."""
    sender: str
    first_line: str
    more: tuple[str, ...]
    """The record's other lines (a packet dump, a multi-line message)."""


def python_level(level: int) -> int:
    """pjsip level -> Python level: 0-1 ERROR, 2 WARNING, 3 INFO, 4 and more DEBUG."""
    if level <= 1:
        return logging.ERROR
    return {2: logging.WARNING, 3: logging.INFO}.get(level, logging.DEBUG)


def parse_record(data: bytes) -> PjsipRecord:
    """A record as pjsip wrote it (with :data:`DECOR`), without its NUL."""
    text = data.decode("utf-8", "replace").rstrip("\r\n")
    lines = text.split("\n")
    match = _FIRST_LINE.match(lines[0])
    if match is None:  # not our decor (should not happen): keep it all, as a warning
        return PjsipRecord(2, "pjsip", lines[0], tuple(lines[1:]))
    return PjsipRecord(_LEVELS[match.group(1)], match.group(2), match.group(3),
                       tuple(lines[1:]))


class PjsipLog:
    """Reads pjsip's log pipe on a daemon thread and logs its records (see the module doc).

    ``summarizer`` takes the unparseable datagrams (one is made if none is given);
    :attr:`counts` counts records by kind (``unparseable SIP``, ``error``, ``warning``...).
    """

    def __init__(self, logger: logging.Logger = log, summarizer: Summarizer | None = None,
                 limit: int = RECORD_LIMIT, budget: int = RECORD_BUDGET) -> None:
        self.logger = logger
        self.summarizer = summarizer if summarizer is not None else Summarizer(logger)
        self.limit = limit
        self.budget = budget
        self._budget_left = budget
        self._budget_start = self.summarizer.clock()
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._read_fd: int | None = None
        self._write_fd: int | None = None
        self._thread: threading.Thread | None = None

    def open(self) -> str:
        """Make the pipe and start the reader: the path to give pjsip as its log file."""
        read_fd, write_fd = os.pipe()
        self._read_fd, self._write_fd = read_fd, write_fd
        self._thread = threading.Thread(target=self._run, args=(read_fd,), name="pjsip-log",
                                        daemon=True)
        self._thread.start()
        return f"/proc/self/fd/{write_fd}"

    def opened(self) -> None:
        """pjsip has opened its own end (after ``libInit``): close ours, so that the reader
        sees the end of the pipe when pjsip closes its log file (``libDestroy``)."""
        write_fd, self._write_fd = self._write_fd, None
        if write_fd is not None:
            os.close(write_fd)

    def close(self, timeout: float = 2.0) -> None:
        """After ``libDestroy``: wait for the reader to drain the pipe and end."""
        self.opened()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def handle(self, data: bytes) -> None:
        """Log one record (also called by tests)."""
        record = parse_record(data)
        garbage = _GARBAGE.match(record.first_line)
        if garbage is not None:
            size, source, problem = garbage.group(1), garbage.group(2), garbage.group(4)
            self._count(UNPARSEABLE)
            self.summarizer.report(UNPARSEABLE, source.strip("[]"),
                                   f"{size} bytes, {problem or 'not SIP'}")
            return
        level = python_level(record.level)
        self._count(logging.getLevelName(level).lower())
        if not self.logger.isEnabledFor(level):
            return
        if record.more and _DUMP.search(record.first_line):
            size = sum(len(line) + 1 for line in record.more)
            text = f"{record.first_line} [{size} bytes not shown]"
        else:
            text = "\n".join((record.first_line, *record.more))
        line = f"{escape(record.sender, 40)}: {escape(text, self.limit)}"
        if not self._within_budget():
            self.summarizer.report(OVER_BUDGET, "pjsip", line)
            return
        self.logger.log(level, "%s", line)

    def _within_budget(self) -> bool:
        now = self.summarizer.clock()
        if now - self._budget_start >= self.summarizer.interval:
            self._budget_start, self._budget_left = now, self.budget
        if self._budget_left <= 0:
            return False
        self._budget_left -= 1
        return True

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def _run(self, read_fd: int) -> None:
        pending = b""
        try:
            while True:
                try:
                    chunk = os.read(read_fd, _READ_SIZE)
                except InterruptedError:  # pragma: no cover - retried by Python itself
                    continue
                if not chunk:
                    break
                *records, pending = (pending + chunk).split(b"\0")
                if len(pending) > _PENDING_LIMIT:  # no NUL: not our build's framing
                    records.append(pending)
                    pending = b""
                for data in records:
                    if data:
                        self._safely(data)
            if pending:
                self._safely(pending)
        except OSError as exc:  # pragma: no cover - the pipe itself failed
            self.logger.error("pjsip log pipe: %s", exc)
        finally:
            os.close(read_fd)
            self.summarizer.flush(force=True)

    def _safely(self, data: bytes) -> None:
        try:
            self.handle(data)
        except Exception:  # a handler's failure must not end pjsip's log
            self.logger.exception("cannot log a pjsip record")

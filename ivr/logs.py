"""Logs a technician can trust: text from the network escaped and bounded, floods summarised,
caller numbers only at debug level.

Three tools, used together:

- :func:`escape` turns any text into one printable line of bounded length. A datagram that
  holds a well-formed log line, a newline, an ESC sequence or NUL bytes cannot forge a line or
  upset a terminal once it has been through it.
- :class:`SafeFormatter` applies :func:`escape` to every record's final message (after the
  ``%`` arguments are merged in), so a network value passed as an argument is escaped too.
  ``ivr run`` installs it on the root handler.
- :class:`Summarizer` logs the first refusal of a kind from a source, then only counts, and
  writes one line per source and kind once the interval (a minute) has passed::

      refused INVITE (403) from 192.0.2.77: not a trunk source (more are counted, summarised
      every minute)
      refused INVITE (403) x 1,240 from 192.0.2.77 in the last minute

  Its ``reason`` is a fixed label chosen by the code (it is also a metric label), never text
  from the network; ``source`` is the sender's address; ``message`` may hold network text
  (control characters are escaped and it is cut; pass it through :func:`escape` first for
  backslashes that cannot be mistaken for escapes).

Caller numbers are personal data: a log line shows one through :func:`caller`, which gives the
number itself only while the logger is at DEBUG and a masked form (``+39***5678``) otherwise, so
a technician can still match a line to a call record by the last digits::

    log.info("call %s from %s to %s", call_id, caller(number, log), called)

The driver uses it for every line that names a calling number (arrival, refusal, callback
request, outcome); called numbers (our own DIDs) and agent names are not personal and stay as
they are.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SafeFormatter", "Summarizer", "caller", "escape", "mask_number"]

MESSAGE_LIMIT = 2000
"""Characters of a log record's message kept by SafeFormatter (the rest becomes ``...``)."""

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Unicode categories escaped besides C0/C1/DEL: format characters (bidirectional overrides can
# make a line read backwards), line and paragraph separators (some viewers break lines there),
# surrogates (bytes that were not UTF-8, kept by surrogateescape) and unassigned code points.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escaped_char(ch: str, backslashes: bool = True) -> str:
    if ch == "\\":
        return "\\\\" if backslashes else ch
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"\\x{code:02x}"
    if code < 0x80 or unicodedata.category(ch) not in _ESCAPED_CATEGORIES:
        return ch
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape(text: str, limit: int = 300, *, backslashes: bool = True) -> str:
    """``text`` as one printable line of at most ``limit`` characters plus ``...``.

    Control characters become escapes (``\\n``, ``\\r``, ``\\t``, ``\\x1b``, ``\\x00``,
    ``\\x7f``, ``\\x85``, ``\\u2028``...), a backslash is doubled (so an escape in the output
    always came from us), and longer text is cut at a whole escape and ends with ``...``:

    >>> escape("ok\\r\\n2024-01-01 INFO ivr: forged\\x1b[2J")
    'ok\\\\r\\\\n2024-01-01 INFO ivr: forged\\\\x1b[2J'
    >>> escape("abcdef", limit=4)
    'abcd...'

    Escape network text once, where it enters a log line. The formatter and the summarizer
    use ``backslashes=False``: they still let no control character through, but text escaped
    once already passes through them unchanged instead of being escaped twice.
    """
    limit = max(limit, 0)
    out: list[str] = []
    length = 0
    # each character gives at least one, so the first limit + 1 are enough to know about a cut
    for ch in text[:limit + 1]:
        piece = _escaped_char(ch, backslashes)
        if length + len(piece) > limit:
            return "".join(out) + "..."
        out.append(piece)
        length += len(piece)
    return "".join(out)


def _controls_escaped(text: str) -> str:
    """Control characters other than newline escaped, backslashes left alone: for tracebacks,
    which are ours and keep their lines, but whose last line may quote a network value."""
    return "".join(ch if ch == "\n" else _escaped_char(ch, False) for ch in text)


def _plain(text: str, limit: int) -> str:
    """No control character, bounded; backslashes left as they are (see :func:`escape`)."""
    return escape(text, limit, backslashes=False)


class SafeFormatter(logging.Formatter):
    """A Formatter whose records' messages are escaped and bounded.

    The final message (format string with its arguments) goes through :func:`escape` with
    ``max_message`` characters and ``backslashes=False`` (a message whose network text was
    escaped already reads the same, not escaped twice); a traceback keeps its lines (control
    characters other than the newline are escaped in it, in case an exception's text quotes
    the network).

    >>> handler = logging.StreamHandler()
    >>> handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    """

    def __init__(self, fmt: str | None = None, datefmt: str | None = None,
                 max_message: int = MESSAGE_LIMIT) -> None:
        super().__init__(fmt, datefmt)
        self.max_message = max_message

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape(record.getMessage(), self.max_message, backslashes=False)
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + _controls_escaped(record.exc_text)
        if record.stack_info:
            text += "\n" + _controls_escaped(self.formatStack(record.stack_info))
        return text


def _period(seconds: float) -> str:
    """``minute``, ``hour``, ``5 minutes``, ``12 s``: the span a summary line speaks of."""
    whole = round(seconds)
    if abs(seconds - whole) < 1e-9 and whole > 0:
        if whole == 3600:
            return "hour"
        if whole == 60:
            return "minute"
        if whole % 60 == 0:
            return f"{whole // 60} minutes"
        return f"{whole} s"
    return f"{seconds:.1f} s"


OTHER_SOURCES = "other sources"
"""The source named in the aggregate line of reports beyond ``max_sources``."""


@dataclass
class _Entry:
    count: int = 0
    logged: bool = False


class Summarizer:
    """Refusals and unparseable traffic logged once per (reason, source), then summarised.

    In each interval the first report of a (reason, source) is logged at WARNING with its
    message; the next ones are only counted. When the interval has passed (checked on every
    report, by :meth:`flush` and every second by the thread :meth:`start` runs), one WARNING
    line per (reason, source) gives the count, e.g.
    ``unparseable SIP x 1,240 from 192.0.2.77 in the last minute``. A (reason, source) seen in
    the interval just closed is not logged again as new in the next one: a steady flood gives
    one line a minute. ``on_count(reason)`` is called for every report (a metric by reason).

    Memory is bounded: at most ``max_sources`` pairs are tracked in an interval; reports for
    further pairs are counted by reason under ``other sources``.

    >>> summary = Summarizer(logging.getLogger("ivr.sip"), interval=60.0)
    >>> summary.report("unparseable SIP", "192.0.2.77", "Error processing 4000 bytes")
    """

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_count: Callable[[str], None] | None = None,
                 max_sources: int = 100, message_limit: int = 200) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.on_count = on_count
        self.max_sources = max(max_sources, 1)
        self.message_limit = message_limit
        self._lock = threading.Lock()
        self._start = clock()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._other: dict[str, int] = {}
        self._quiet: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def report(self, reason: str, source: str, message: str) -> None:
        """One refused or unparseable request of kind ``reason`` from ``source``."""
        now = self.clock()
        with self._lock:
            lines = self._roll(now, force=False)
            first = self._count(reason, source, message)
        self._emit(lines)
        if first is not None:
            self.logger.warning("%s", first)
        if self.on_count is not None:
            self.on_count(reason)

    def flush(self, force: bool = False) -> int:
        """Write the summary lines if the interval has passed (or at once with ``force``, e.g.
        at shutdown: the line then names the time actually covered). Returns the lines written.
        """
        now = self.clock()
        with self._lock:
            lines = self._roll(now, force=force)
        self._emit(lines)
        return len(lines)

    def start(self, tick: float = 1.0) -> None:
        """Check the interval every ``tick`` seconds on a daemon thread, so a summary is written
        even when the flood stops."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(tick,), name="log-summary",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread :meth:`start` began and write what is still counted."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout)
        self.flush(force=True)

    def _run(self, tick: float) -> None:
        while not self._stop.wait(tick):
            try:
                self.flush()
            except Exception:  # a broken handler must not end the summaries
                self.logger.exception("log summary failed")

    def _count(self, reason: str, source: str, message: str) -> str | None:
        """Count one report; the first-occurrence line to log, if any. Under the lock."""
        key = (reason, source)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.max_sources:
                first_other = not self._other
                # bounded too: reasons are labels from our code, but never trust a caller
                label = reason if reason in self._other or len(self._other) < self.max_sources \
                    else "other reasons"
                self._other[label] = self._other.get(label, 0) + 1
                if first_other:
                    return (f"{_plain(reason, 80)} from {_plain(source, 80)}: "
                            f"{_plain(message, self.message_limit)} (more than "
                            f"{self.max_sources} sources in this {_period(self.interval)}: "
                            f"further ones are counted together as '{OTHER_SOURCES}')")
                return None
            entry = self._entries[key] = _Entry()
        entry.count += 1
        if entry.count == 1 and key not in self._quiet:
            entry.logged = True
            return (f"{_plain(reason, 80)} from {_plain(source, 80)}: "
                    f"{_plain(message, self.message_limit)} (more are counted, summarised "
                    f"every {_period(self.interval)})")
        return None

    def _roll(self, now: float, force: bool) -> list[str]:
        """Close the interval if it has passed (or ``force``): its summary lines. Under lock."""
        elapsed = now - self._start
        if elapsed < self.interval and not force:
            return []
        period = _period(self.interval) if not force else _period(round(max(elapsed, 0), 1))
        lines = [f"{_plain(reason, 80)} x {entry.count:,} from {_plain(source, 80)} "
                 f"in the last {period}"
                 for (reason, source), entry in self._entries.items()
                 if not (entry.logged and entry.count == 1)]
        lines.extend(f"{_plain(reason, 80)} x {count:,} from {OTHER_SOURCES} in the last {period}"
                     for reason, count in self._other.items())
        # pairs still active stay quiet in the next interval only if it follows this one
        self._quiet = set(self._entries) if elapsed < 2 * self.interval else set()
        self._entries = {}
        self._other = {}
        self._start = now
        return lines

    def _emit(self, lines: list[str]) -> None:
        for line in lines:
            self.logger.warning("%s", line)


def mask_number(number: str) -> str:
    """A calling number with its middle hidden: ``+393331234567`` -> ``+39***4567``.

    Ten characters or more keep the first three and the last four; eight or nine keep the last
    four; five to seven the last two; shorter ones show nothing. Network text is escaped.
    """
    n = len(number)
    head = number[:3] if n >= 10 else ""
    tail = number[-4:] if n >= 8 else number[-2:] if n >= 5 else ""
    return f"{escape(head, 12)}***{escape(tail, 16)}"


def caller(number: str, logger: logging.Logger | None = None) -> str:
    """A calling number as a log line may show it: the number itself (escaped, bounded) while
    ``logger`` (default ``ivr``) logs DEBUG, :func:`mask_number` otherwise. An empty number
    stays empty (there is nothing to hide)."""
    if not number:
        return ""
    target = logger if logger is not None else logging.getLogger("ivr")
    if target.isEnabledFor(logging.DEBUG):
        return escape(number, 64)
    return mask_number(number)

"""ivr/logs.py: escaping, the safe formatter, the summarizer (fake clock, several threads),
masked caller numbers, and the fatal-signal trace that `ivr run` leaves on standard error."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from ivr.logs import SafeFormatter, Summarizer, caller, escape, mask_number

ROOT = Path(__file__).resolve().parent.parent
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


# -- escape ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "shown"), [
    ("plain text, accents è ok", "plain text, accents è ok"),
    ("a\nb", "a\\nb"),
    ("a\rb", "a\\rb"),
    ("a\tb", "a\\tb"),
    ("nul\x00", "nul\\x00"),
    ("esc\x1b[2J", "esc\\x1b[2J"),
    ("del\x7f", "del\\x7f"),
    ("c1 \x85 \x9b", "c1 \\x85 \\x9b"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("bidi \u202egnp.exe", "bidi \\u202egnp.exe"),
    ("bytes \udcff", "bytes \\udcff"),
    ("tag \U000e0041", "tag \\U000e0041"),
    ("back\\slash", "back\\\\slash"),
    ("fake \\n escape", "fake \\\\n escape"),
])
def test_escape_writes_every_control_character_as_an_escape(raw, shown):
    assert escape(raw) == shown


def test_escape_output_holds_no_control_character_for_any_code_point():
    everything = "".join(chr(c) for c in range(0x3000))
    shown = escape(everything, limit=10**6)
    assert not [ch for ch in shown if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F]
    assert "\u2028" not in shown
    assert "\u2029" not in shown


def test_escape_can_leave_backslashes_alone():
    assert escape("a\\b\n", backslashes=False) == "a\\b\\n"


def test_escaping_again_without_doubling_changes_nothing():
    once = escape("x\r\n\x00\\y\u2028")
    assert escape(once, backslashes=False) == once


def test_escape_cuts_to_the_limit_with_dots():
    assert escape("abcdef", limit=6) == "abcdef"
    assert escape("abcdefg", limit=6) == "abcdef..."


def test_escape_cuts_at_a_whole_escape():
    # "ab" + "\x00" (4 characters) would pass 5: the escape is left out whole
    assert escape("ab\x00cd", limit=5) == "ab..."


def test_escape_of_a_huge_text_is_bounded():
    assert len(escape("\x00" * 10_000_000, limit=300)) <= 303


# -- SafeFormatter ---------------------------------------------------------------------------

def _logger(name: str, level: int = logging.INFO) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(level)
    return logger, stream


def test_formatter_escapes_the_arguments_not_only_the_format_string():
    logger, stream = _logger("test.logs.args")
    forged = "x\n2024-05-01 10:00:00 INFO    ivr.app: call 1 ended: completed"
    logger.warning("garbage from %s: %s", "192.0.2.77", forged)
    assert stream.getvalue() == ("WARNING test.logs.args: garbage from 192.0.2.77: x\\n"
                                 "2024-05-01 10:00:00 INFO    ivr.app: call 1 ended: "
                                 "completed\n")


def test_formatter_does_not_escape_twice_what_was_escaped_once():
    logger, stream = _logger("test.logs.once")
    logger.warning("garbage: %s", escape("a\r\nb\\c"))
    assert stream.getvalue() == "WARNING test.logs.once: garbage: a\\r\\nb\\\\c\n"


def test_formatter_escapes_a_message_that_is_not_a_string():
    logger, stream = _logger("test.logs.object")
    logger.info(ValueError("bad\x00value"))
    assert stream.getvalue() == "INFO test.logs.object: bad\\x00value\n"


def test_formatter_bounds_the_message():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(message)s", max_message=10))
    logger = logging.getLogger("test.logs.bound")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.warning("%s", "A" * 5000)
    assert stream.getvalue() == "AAAAAAAAAA...\n"


def test_formatter_keeps_the_traceback_lines():
    logger, stream = _logger("test.logs.exc")
    try:
        raise RuntimeError("broken\x1b[2J")
    except RuntimeError:
        logger.exception("step failed")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "ERROR test.logs.exc: step failed"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: broken\\x1b[2J"


def test_formatter_default_format_has_date_level_and_name():
    formatter = SafeFormatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S")
    record = logging.LogRecord("ivr.sip", logging.INFO, __file__, 1, "from %s", ("a\rb",), None)
    text = formatter.format(record)
    date, clock, level, name, message = text.split(maxsplit=4)
    assert len(date) == 10
    assert len(clock) == 8
    assert level == "INFO"
    assert name == "ivr.sip:"
    assert message == "from a\\rb"


# -- Summarizer ------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """Every record's final message, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.levels: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.levels.append(record.levelno)


def _summarizer(name: str, **kwargs: object) -> tuple[Summarizer, Lines, FakeClock, Counter[str]]:
    logger = logging.getLogger(name)
    lines = Lines()
    logger.handlers[:] = [lines]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    clock = FakeClock()
    counts: Counter[str] = Counter()

    def count(reason: str) -> None:
        counts[reason] += 1

    summary = Summarizer(logger, clock=clock, on_count=count, **kwargs)  # type: ignore[arg-type]
    return summary, lines, clock, counts


def test_first_report_is_logged_the_next_are_counted_then_summarised():
    summary, lines, clock, counts = _summarizer("test.logs.sum1")
    for _ in range(1240):
        summary.report("refused INVITE (403)", "192.0.2.77", "not a trunk source")
    assert lines.lines == ["refused INVITE (403) from 192.0.2.77: not a trunk source "
                           "(more are counted, summarised every minute)"]
    assert lines.levels == [logging.WARNING]
    clock.now += 59.9
    assert summary.flush() == 0
    clock.now += 0.1
    assert summary.flush() == 1
    assert lines.lines[1] == "refused INVITE (403) x 1,240 from 192.0.2.77 in the last minute"
    assert lines.levels[1] == logging.WARNING
    assert counts == Counter({"refused INVITE (403)": 1240})


def test_a_single_report_gives_no_summary():
    summary, lines, clock, _ = _summarizer("test.logs.single")
    summary.report("unparseable SIP", "192.0.2.9", "Error processing 12 bytes")
    clock.now += 61
    assert summary.flush() == 0
    assert len(lines.lines) == 1


def test_sources_and_reasons_are_separate_lines():
    summary, lines, clock, counts = _summarizer("test.logs.sep")
    summary.report("unparseable SIP", "192.0.2.1", "a")
    summary.report("unparseable SIP", "192.0.2.1", "b")
    summary.report("unparseable SIP", "192.0.2.2", "c")
    summary.report("refused OPTIONS", "192.0.2.1", "d")
    summary.report("refused OPTIONS", "192.0.2.1", "e")
    summary.report("refused OPTIONS", "192.0.2.1", "f")
    clock.now += 60
    assert summary.flush() == 2
    assert lines.lines == [
        "unparseable SIP from 192.0.2.1: a (more are counted, summarised every minute)",
        "unparseable SIP from 192.0.2.2: c (more are counted, summarised every minute)",
        "refused OPTIONS from 192.0.2.1: d (more are counted, summarised every minute)",
        "unparseable SIP x 2 from 192.0.2.1 in the last minute",
        "refused OPTIONS x 3 from 192.0.2.1 in the last minute",
    ]
    assert counts == Counter({"unparseable SIP": 3, "refused OPTIONS": 3})


def test_the_interval_is_checked_on_report_too():
    summary, lines, clock, _ = _summarizer("test.logs.onreport")
    summary.report("unparseable SIP", "192.0.2.1", "a")
    summary.report("unparseable SIP", "192.0.2.1", "a")
    clock.now += 60
    summary.report("unparseable SIP", "192.0.2.5", "z")
    assert lines.lines == [
        "unparseable SIP from 192.0.2.1: a (more are counted, summarised every minute)",
        "unparseable SIP x 2 from 192.0.2.1 in the last minute",
        "unparseable SIP from 192.0.2.5: z (more are counted, summarised every minute)",
    ]


def test_a_steady_flood_gives_one_line_a_minute():
    summary, lines, clock, _ = _summarizer("test.logs.steady")
    for _minute in range(5):
        for _ in range(120):
            summary.report("unparseable SIP", "192.0.2.77", "junk")
            clock.now += 0.5
        summary.flush()
    assert lines.lines == [
        "unparseable SIP from 192.0.2.77: junk (more are counted, summarised every minute)",
        *["unparseable SIP x 120 from 192.0.2.77 in the last minute"] * 5,
    ]


def test_a_source_quiet_for_an_interval_is_logged_as_new_again():
    summary, lines, clock, _ = _summarizer("test.logs.again")
    summary.report("unparseable SIP", "192.0.2.77", "first")
    clock.now += 60
    summary.flush()                 # the interval closes: nothing to summarise
    clock.now += 60
    summary.flush()                 # a silent interval: the source is forgotten
    summary.report("unparseable SIP", "192.0.2.77", "back")
    assert lines.lines == [
        "unparseable SIP from 192.0.2.77: first (more are counted, summarised every minute)",
        "unparseable SIP from 192.0.2.77: back (more are counted, summarised every minute)",
    ]


def test_sources_beyond_the_bound_are_counted_together():
    summary, lines, clock, counts = _summarizer("test.logs.bound", max_sources=3)
    for i in range(1000):
        summary.report("unparseable SIP", f"10.0.{i // 250}.{i % 250}", "junk")
    assert lines.lines == [
        "unparseable SIP from 10.0.0.0: junk (more are counted, summarised every minute)",
        "unparseable SIP from 10.0.0.1: junk (more are counted, summarised every minute)",
        "unparseable SIP from 10.0.0.2: junk (more are counted, summarised every minute)",
        "unparseable SIP from 10.0.0.3: junk (more than 3 sources in this minute: further "
        "ones are counted together as 'other sources')",
    ]
    clock.now += 60
    summary.flush()
    assert lines.lines[4:] == ["unparseable SIP x 997 from other sources in the last minute"]
    assert counts == Counter({"unparseable SIP": 1000})


def test_a_report_escaped_once_reads_the_same_in_the_summary_line():
    summary, lines, _, _ = _summarizer("test.logs.esc1")
    summary.report("unparseable SIP", "192.0.2.7", escape("a\\b\x00"))
    assert lines.lines == ["unparseable SIP from 192.0.2.7: a\\\\b\\x00 "
                           "(more are counted, summarised every minute)"]


def test_network_text_in_a_report_is_escaped_and_cut():
    summary, lines, _, _ = _summarizer("test.logs.esc", message_limit=20)
    summary.report("unparseable SIP", "192.0.2.7", "INVITE\r\nX: " + "A" * 500)
    assert lines.lines == ["unparseable SIP from 192.0.2.7: INVITE\\r\\nX: AAAAAAA... "
                           "(more are counted, summarised every minute)"]


def test_other_interval_lengths_are_named():
    summary, lines, clock, _ = _summarizer("test.logs.period", interval=300.0)
    summary.report("unparseable SIP", "192.0.2.7", "a")
    summary.report("unparseable SIP", "192.0.2.7", "a")
    clock.now += 300
    summary.flush()
    assert lines.lines == [
        "unparseable SIP from 192.0.2.7: a (more are counted, summarised every 5 minutes)",
        "unparseable SIP x 2 from 192.0.2.7 in the last 5 minutes",
    ]


def test_stop_writes_what_is_still_counted_with_the_time_covered():
    summary, lines, clock, _ = _summarizer("test.logs.stop")
    summary.report("unparseable SIP", "192.0.2.7", "a")
    summary.report("unparseable SIP", "192.0.2.7", "a")
    clock.now += 12
    summary.stop()
    assert lines.lines[-1] == "unparseable SIP x 2 from 192.0.2.7 in the last 12 s"


def test_a_zero_interval_is_refused():
    with pytest.raises(ValueError, match="interval must be positive, not 0"):
        Summarizer(logging.getLogger("test.logs.zero"), interval=0)


def test_reports_from_several_threads_are_all_counted():
    summary, lines, clock, counts = _summarizer("test.logs.threads")
    threads_n, each = 8, 2000
    go = threading.Barrier(threads_n)

    def flood(n: int) -> None:
        go.wait()
        for i in range(each):
            summary.report("unparseable SIP", f"192.0.2.{n}", f"datagram {i}")

    threads = [threading.Thread(target=flood, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    clock.now += 60
    summary.flush()
    firsts = [line for line in lines.lines if "more are counted" in line]
    sums = sorted(line for line in lines.lines if " x " in line)
    assert len(firsts) == threads_n
    assert sums == sorted(f"unparseable SIP x 2,000 from 192.0.2.{n} in the last minute"
                          for n in range(threads_n))
    assert counts["unparseable SIP"] == threads_n * each


def test_the_timer_thread_writes_the_summary_when_reports_stop():
    summary, lines, clock, _ = _summarizer("test.logs.timer")
    written = threading.Event()

    class Signal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if " x " in record.getMessage():
                written.set()

    summary.logger.addHandler(Signal())
    summary.report("unparseable SIP", "192.0.2.7", "a")
    summary.report("unparseable SIP", "192.0.2.7", "a")
    summary.start(tick=0.01)
    try:
        clock.now += 60             # no report follows: only the thread can notice
        assert written.wait(10)
    finally:
        summary.stop()
    assert lines.lines[-1] == "unparseable SIP x 2 from 192.0.2.7 in the last minute"


# -- caller numbers --------------------------------------------------------------------------

@pytest.mark.parametrize(("number", "masked"), [
    ("+393331234567", "+39***4567"),
    ("0612345678", "061***5678"),
    ("12345678", "***5678"),
    ("12345", "***45"),
    ("201", "***"),
    ("+39333123\x00567", "+39***\\x00567"),
])
def test_mask_number(number, masked):
    assert mask_number(number) == masked


def test_caller_number_only_at_debug_level():
    logger = logging.getLogger("test.logs.caller")
    logger.setLevel(logging.INFO)
    assert caller("+393331234567", logger) == "+39***4567"
    logger.setLevel(logging.DEBUG)
    assert caller("+393331234567", logger) == "+393331234567"
    assert caller("+39333\r\n", logger) == "+39333\\r\\n"
    assert caller("", logger) == ""


# -- the fatal-signal trace of `ivr run` -------------------------------------------------------

CRASH = """
import logging, os, signal
from ivr.cli import _setup_logging
_setup_logging("info")
logging.getLogger("ivr").info("about to crash")
os.kill(os.getpid(), signal.SIGSEGV)
"""


def test_a_fatal_signal_leaves_a_faulthandler_trace_on_stderr():
    result = subprocess.run([sys.executable, "-c", CRASH], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == -signal.SIGSEGV
    assert "INFO    ivr: about to crash" in result.stderr
    assert "Fatal Python error: Segmentation fault" in result.stderr
    assert 'File "<string>", line 6 in <module>' in result.stderr

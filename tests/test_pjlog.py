"""pjsip's log records through Python logging: framing, levels, escaping, garbage summarised."""

from __future__ import annotations

import logging
import os

import pytest

from ivr.logs import Summarizer
from ivr.sip.pjlog import OVER_BUDGET, UNPARSEABLE, PjsipLog, parse_record, python_level

GARBAGE = (b"ERROR:        sip_transport.c Error processing 4096 bytes packet from UDP "
           b"127.0.0.2:40000 : PJSIP syntax error exception when parsing 'Request Line' "
           b"header on line 1 col 1:\n")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="ivr.sip.pjsip")
    return caplog


def make(clock: Clock | None = None) -> PjsipLog:
    logger = logging.getLogger("ivr.sip.pjsip")
    return PjsipLog(logger, Summarizer(logger, clock=clock or Clock()))


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records]


@pytest.mark.parametrize(("level", "expected"), [(0, logging.ERROR), (1, logging.ERROR),
                                                 (2, logging.WARNING), (3, logging.INFO),
                                                 (4, logging.DEBUG), (6, logging.DEBUG)])
def test_pjsip_levels_map_to_python_levels(level: int, expected: int) -> None:
    assert python_level(level) == expected


def test_a_record_is_parsed_into_level_sender_and_lines() -> None:
    record = parse_record(b" WARN:           pjsua_call.c Unable to answer: timeout\nmore\n")
    assert (record.level, record.sender) == (2, "pjsua_call.c")
    assert record.first_line == "Unable to answer: timeout"
    assert record.more == ("more",)


def test_each_record_is_one_escaped_line_at_its_level(captured: pytest.LogCaptureFixture) -> None:
    pjlog = make()
    pjlog.handle(b" INFO:          pjsua_core.c SIP UDP socket reachable at 127.0.0.1:5080\n")
    pjlog.handle(b"ERROR:          pjsua_call.c line one\n\x1b[2Jline two\n")
    assert messages(captured) == [
        (logging.INFO, "pjsua_core.c: SIP UDP socket reachable at 127.0.0.1:5080"),
        (logging.ERROR, "pjsua_call.c: line one\\n\\x1b[2Jline two"),
    ]
    assert pjlog.counts == {"info": 1, "error": 1}


def test_a_long_record_is_cut() -> None:
    pjlog = make()
    pjlog.limit = 50
    record = b" WARN: x.c " + b"a" * 5000
    logger = logging.getLogger("ivr.sip.pjsip")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            seen.append(rec.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    try:
        pjlog.handle(record)
    finally:
        logger.removeHandler(handler)
    assert seen == ["x.c: " + "a" * 50 + "..."]


def test_a_packet_dump_is_cut_to_its_first_line(captured: pytest.LogCaptureFixture) -> None:
    pjlog = make()
    pjlog.handle(b"DEBUG:          pjsua_core.c RX 300 bytes Request msg OPTIONS/cseq=1 from UDP "
                 b"127.0.0.1:5062:\nOPTIONS sip:x SIP/2.0\r\nVia: forged\r\n\r\n--end msg--\n")
    ((level, text),) = messages(captured)
    assert level == logging.DEBUG
    assert text.startswith("pjsua_core.c: RX 300 bytes Request msg OPTIONS/cseq=1 from UDP")
    assert "bytes not shown]" in text
    assert "forged" not in text


def test_garbage_is_reported_once_per_source_then_summarised(
        captured: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    pjlog = make(clock)
    dump = b"\x00\x1bERROR: 2024 ivr.app: call 12 ended: completed\n-- end of packet.\n"
    for _ in range(1240):
        pjlog.handle(GARBAGE + dump)
    first = messages(captured)
    assert len(first) == 1
    level, text = first[0]
    assert level == logging.WARNING
    assert text.startswith(f"{UNPARSEABLE} from 127.0.0.2: 4096 bytes, PJSIP syntax error")
    assert "ivr.app" not in text
    clock.now += 61
    pjlog.summarizer.flush()
    assert messages(captured)[-1] == (
        logging.WARNING, f"{UNPARSEABLE} x 1,240 from 127.0.0.2 in the last minute")
    assert pjlog.counts == {UNPARSEABLE: 1240}


def test_records_from_the_pipe_are_split_on_nul_whatever_their_text(
        captured: pytest.LogCaptureFixture) -> None:
    pjlog = make()
    path = pjlog.open()
    fd = os.open(path, os.O_WRONLY)  # what pjsip does with the path
    pjlog.opened()
    forged = b"\nERROR:      ivr.app forged record\n"
    os.write(fd, b" INFO:          pjsua_core.c first" + forged + b"\0")
    os.write(fd, b" WARN:          pjsua_core.c second\n\0 INFO:   x.c third\n\0")
    os.close(fd)
    pjlog.close(timeout=5)
    assert messages(captured) == [
        (logging.INFO, "pjsua_core.c: first\\nERROR:      ivr.app forged record"),
        (logging.WARNING, "pjsua_core.c: second"),
        (logging.INFO, "x.c: third"),
    ]


def test_a_failing_handler_does_not_end_the_reader(
        captured: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    pjlog = make()
    calls: list[bytes] = []
    real = pjlog.handle

    def flaky(data: bytes) -> None:
        calls.append(data)
        if len(calls) == 1:
            raise RuntimeError("boom")
        real(data)

    monkeypatch.setattr(pjlog, "handle", flaky)
    fd = os.open(pjlog.open(), os.O_WRONLY)
    pjlog.opened()
    os.write(fd, b" INFO: a.c one\0 INFO: a.c two\0")
    os.close(fd)
    pjlog.close(timeout=5)
    assert len(calls) == 2
    assert messages(captured)[-1] == (logging.INFO, "a.c: two")


def test_beyond_the_budget_records_are_summarised(captured: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logger = logging.getLogger("ivr.sip.pjsip")
    pjlog = PjsipLog(logger, Summarizer(logger, clock=clock), budget=3)
    for n in range(10):
        pjlog.handle(f"ERROR: sip_inv.c Error parsing/validating SDP body {n}\n".encode())
    texts = [text for _, text in messages(captured)]
    assert texts[:3] == [f"sip_inv.c: Error parsing/validating SDP body {n}" for n in range(3)]
    assert texts[3].startswith(f"{OVER_BUDGET} from pjsip: sip_inv.c: Error parsing")
    assert len(texts) == 4
    clock.now += 60
    pjlog.summarizer.flush()  # what the summarizer's thread does every second
    pjlog.handle(b"ERROR: sip_inv.c again\n")  # a new minute: a new budget
    texts = [text for _, text in messages(captured)]
    assert texts[4:] == [f"{OVER_BUDGET} x 7 from pjsip in the last minute", "sip_inv.c: again"]

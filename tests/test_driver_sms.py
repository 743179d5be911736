"""A flow's sms node through the driver: the core texts the number that called, the executor
hands the text to the outbox, which applies the limits (a withheld number gets nothing)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ivr.driver import messages as m
from ivr.driver.executor import Executor
from ivr.metrics import Metrics
from ivr.sms import RateLimit, SmsOutbox, SmsQueue
from tests.driver_bench import make_bench
from tests.test_executor import FailingSip, Nothing

FLOW = """
flow: texts
languages: [en]
start: confirm
nodes:
  confirm:
    type: sms
    text: "We call {caller} back today."
    next: bye
  bye: {type: hangup}
"""


def test_the_core_texts_the_number_that_called(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, flow=FLOW)
    bench.incoming(caller="3331234567")
    texts = [fx for fx in bench.effects if isinstance(fx, m.TextCaller)]
    assert [(fx.number, fx.text) for fx in texts] == [
        ("3331234567", "We call 3331234567 back today.")]


def test_the_executor_offers_the_text_to_the_outbox(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    queue = SmsQueue(tmp_path / "calls.db")
    outbox = SmsOutbox(queue, limit=RateLimit(per_number=1, per_day=10))
    executor = Executor(FailingSip(set()), Nothing(), Metrics(CollectorRegistry()), Nothing(),
                        Nothing(), wall=lambda: 1000.0)
    with caplog.at_level(logging.INFO, "ivr.driver"):
        executor.run([m.TextCaller("c1", "3331234567", "hello")])  # no modem configured
        assert "has no modem" in caplog.text
        executor.texts = outbox
        outbox.start()
        try:
            executor.run([m.TextCaller("c1", "3331234567", "hello"),
                          m.TextCaller("c2", "3331234567", "again"),
                          m.TextCaller("c3", "", "withheld")])
            assert outbox.written.wait(10.0)
        finally:
            outbox.stop()
    assert "this caller had their texts for today" in caplog.text
    assert "the number is withheld" in caplog.text
    assert executor.errors == 0
    queue = SmsQueue(tmp_path / "calls.db")
    assert queue.recent("caller", 0.0) == [("3331234567", 1000.0)]
    queue.close()

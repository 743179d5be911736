"""The executor: one effect that fails is logged and answered as failed; the rest still run."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry

from ivr.driver import messages as m
from ivr.driver.executor import Executor
from ivr.metrics import Metrics


class Boom(Exception):
    """Stands for pjsua2.Error: the stack refusing a command on a call that just ended."""


class FailingSip:
    """Records commands; the legs named in ``broken`` raise on every command."""

    def __init__(self, broken: set[str]):
        self.broken = broken
        self.done: list[tuple[str, ...]] = []

    def _do(self, *what: str) -> None:
        if set(what) & self.broken:
            raise Boom(f"INVITE session already terminated ({what})")
        self.done.append(what)

    def poll(self, timeout_ms: int) -> list[Any]:
        return []

    def answer(self, leg_id: str) -> None:
        self._do("answer", leg_id)

    def dial(self, uri: str) -> str | None:
        self._do("dial", uri)
        return "leg-new"

    def hangup(self, leg_id: str, status: int = 0) -> None:
        self._do("hangup", leg_id)

    def play(self, leg_id: str, path: Any, token: int, loop: bool = False) -> None:
        self._do("play", leg_id)

    def stop_playback(self, leg_id: str) -> None:
        self._do("stop", leg_id)

    def bridge(self, a: str, b: str) -> bool:
        self._do("bridge", a, b)
        return True

    def start_recording(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("not used")

    def stop_recording(self, leg_id: str, reason: str = "key") -> None:
        raise AssertionError("not used")


class Nothing:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def executor(sip: FailingSip) -> Executor:
    return Executor(sip, Nothing(), Metrics(CollectorRegistry()), Nothing(), Nothing(),
                    wall=lambda: 0.0)


def test_a_failing_command_is_logged_and_the_others_still_run(caplog):
    sip = FailingSip({"bad"})
    ex = executor(sip)
    with caplog.at_level(logging.ERROR, "ivr.driver"):
        back = ex.run([m.AnswerLeg("bad"), m.AnswerLeg("good"), m.HangupLeg("bad"),
                       m.Play("good", ("a.wav",), 1)])
    assert back == []
    assert sip.done == [("answer", "good"), ("play", "good")]
    assert ex.errors == 2
    failed = [r for r in caplog.records if r.getMessage().startswith("could not carry out")]
    assert [r.getMessage() for r in failed] == ["could not carry out AnswerLeg",
                                                "could not carry out HangupLeg"]
    assert all(r.exc_info for r in failed)


def test_a_dial_or_bridge_that_raises_answers_as_failed():
    sip = FailingSip({"sip:bad@192.0.2.9", "bad"})
    ex = executor(sip)
    back = ex.run([m.Dial("r1", "sip:bad@192.0.2.9"), m.Bridge("good", "bad"),
                   m.Dial("r2", "sip:ok@192.0.2.9"), m.Bridge("good", "other")])
    assert back == [m.Dialled("r1", None), m.Bridged("good", "bad", False),
                    m.Dialled("r2", "leg-new"), m.Bridged("good", "other", True)]

"""Drain (the first half of a stop on SIGTERM) in the core, and the STATUS line systemd shows;
the end-to-end drain is tests/test_e2e_drain.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.driver.service import StatusNotifier, status_text
from tests.driver_bench import Bench, make_bench


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return make_bench(tmp_path)


def connected_call(bench: Bench) -> str:
    """A caller connected to anna; returns the call's id."""
    leg = bench.incoming()
    bench.key(leg, "1")
    bench.answer(bench.ringing()["anna"])
    return bench.record_of(leg).call_id


def test_a_drained_call_ends_as_usual_and_new_ones_get_503(bench: Bench) -> None:
    call_id = connected_call(bench)
    assert bench.core.admit("192.0.2.1")[1] == 200
    bench.core.drain()
    assert bench.core.admit("192.0.2.1") == ("gw", 503, 30, ())
    assert not bench.core.drained()
    bench.end(bench.core.calls[call_id].leg)
    bench.settle()
    assert bench.record_of(call_id).outcome == "completed"
    assert bench.core.drained()
    assert bench.core.problems() == []


def test_what_the_drain_window_leaves_is_interrupted(bench: Bench) -> None:
    call_id = connected_call(bench)
    bench.core.drain()
    for answer in bench._apply(bench.core.stop(bench.now)):  # as the loop carries them out
        bench.send(answer)
    bench.settle()
    bench._apply(bench.core.abandon(bench.now))
    assert bench.record_of(call_id).outcome == "interrupted"


def test_status_counts_calls_and_free_agents(bench: Bench) -> None:
    agents = len(bench.core.router.agents)
    assert status_text(bench.core) == f"0 calls, {agents} of {agents} agents free"
    connected_call(bench)
    assert status_text(bench.core) == f"1 call, {agents - 1} of {agents} agents free"
    assert status_text(bench.core, draining=True).startswith("draining: 1 call, ")


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def test_status_is_sent_on_change_at_most_once_a_second(
        bench: Bench, notify_socket: socket.socket) -> None:
    status = StatusNotifier()
    status.update(bench.core, 100.0)
    first = notify_socket.recv(200).decode()
    assert first.startswith("STATUS=0 calls, ")
    connected_call(bench)
    status.update(bench.core, 100.5)  # changed, but within the second: not yet
    status.update(bench.core, 101.0)
    assert notify_socket.recv(200).decode().startswith("STATUS=1 call, ")
    status.update(bench.core, 102.0)  # unchanged: nothing sent
    notify_socket.setblocking(False)
    with pytest.raises(BlockingIOError):
        notify_socket.recv(200)

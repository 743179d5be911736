"""The driver's part in recording bridged calls: which calls, when, and the disk floor."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ivr.driver import messages as m
from ivr.recording import NOT_STARTED, RecordingDisk, RecordingDone, part_paths
from ivr.sip import events as sip
from tests.driver_bench import Bench, make_bench


def recording(bench: Bench, queues: frozenset[str] = frozenset({"support"})) -> Bench:
    bench.core.config = dataclasses.replace(bench.core.config, recorded_queues=queues)
    return bench


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return recording(make_bench(tmp_path))


def connect(bench: Bench, caller: str = "3331234567") -> tuple[str, str]:
    leg = bench.incoming(caller=caller)
    bench.key(leg, "1")
    agent_leg = next(iter(bench.ringing().values()))
    bench.answer(agent_leg)
    return leg, agent_leg


def effects_of(bench: Bench, kind: type) -> list:
    return [fx for fx in bench.effects if isinstance(fx, kind)]


def test_a_recorded_queue_records_the_talk_and_links_it_from_the_record(bench: Bench) -> None:
    leg, agent_leg = connect(bench)
    path = str(bench.core.config.recordings / "calls" / "c1.wav")
    ref = bench.core.calls["c1"].agent_ref
    assert ref is not None
    parts = part_paths(path, ref)
    assert parts[0].endswith(f"/calls/c1.{ref}.caller.part.wav")
    assert effects_of(bench, m.RecordCall) == [m.RecordCall("c1", (leg, agent_leg), parts, path)]
    assert bench.records["c1"].recording_path == path  # saved at connect
    assert bench.core.problems() == []
    bench.end(leg)
    bench.settle()
    assert bench.records["c1"].outcome == "completed"
    assert bench.records["c1"].recording_path == path
    # the SIP layer ends the recording with the leg; the worker joins the parts
    bench.send(sip.CallRecordingEnded("c1", parts, 12.5, "hangup"))
    assert effects_of(bench, m.JoinRecording) == [m.JoinRecording("c1", parts, path)]
    bench.send(RecordingDone("c1", path, 12.5))
    assert effects_of(bench, m.CountRecording) == [m.CountRecording("saved")]
    assert bench.core.call_recordings == {}


def test_a_queue_without_record_is_not_recorded(tmp_path: Path) -> None:
    bench = recording(make_bench(tmp_path), frozenset({"level2"}))
    leg, _ = connect(bench)
    bench.end(leg)
    bench.settle()
    assert effects_of(bench, m.RecordCall) == []
    assert bench.records["c1"].recording_path is None


def test_a_recording_the_stack_cannot_start_is_unlinked(bench: Bench) -> None:
    connect(bench)
    path = bench.records["c1"].recording_path
    assert path is not None
    bench.send(RecordingDone("c1", path, 0.0, NOT_STARTED))
    assert bench.records["c1"].recording_path is None
    assert effects_of(bench, m.CountRecording) == [m.CountRecording("not_started")]
    assert bench.core.call_recordings == {}
    assert bench.core.problems() == []


def test_low_disk_stops_recordings_and_starts_none_until_it_has_room(bench: Bench) -> None:
    first, _ = connect(bench)
    path = bench.records["c1"].recording_path
    assert path is not None
    bench.send(RecordingDisk(True, 120.0))
    assert effects_of(bench, m.RecordingsSuspended) == [m.RecordingsSuspended(True)]
    assert effects_of(bench, m.StopCallRecording) == [m.StopCallRecording("c1", "low_disk")]
    bench.send(sip.CallRecordingEnded("c1", part_paths(path), 3.0, "low_disk"))
    assert m.CountRecording("stopped_low_disk") in bench.effects
    assert effects_of(bench, m.JoinRecording) != []  # what was recorded is kept
    assert bench.core.calls["c1"].phase.value == "connected"  # the call goes on
    connect(bench, caller="3339999999")  # marco takes the next call: not recorded
    assert len(effects_of(bench, m.RecordCall)) == 1
    assert bench.records["c2"].recording_path is None
    assert m.CountRecording("skipped_low_disk") in bench.effects
    bench.send(RecordingDisk(False, 900.0))
    assert effects_of(bench, m.RecordingsSuspended)[-1] == m.RecordingsSuspended(False)
    bench.end(first)
    bench.settle()
    assert bench.core.problems() == []


def test_each_talk_is_recorded_into_the_call_s_one_file(tmp_path: Path) -> None:
    """After an escalation the next agent's talk is recorded too, with parts of its own."""
    bench = recording(make_bench(tmp_path), frozenset({"support", "level2"}))
    support = bench.core.router.queues["support"]
    bench.core.router.queues["support"] = dataclasses.replace(support, escalate_to="level2")
    leg, agent_leg = connect(bench)
    (first,) = effects_of(bench, m.RecordCall)
    bench.key(agent_leg, "*9")  # the agent escalates: the caller waits for lia (level2)
    bench.settle()
    bench.send(sip.CallRecordingEnded("c1", first.parts, 4.0, "hangup"))  # anna's leg ended
    lia = bench.ringing()["lia"]
    bench.answer(lia)
    assert bench.core.calls["c1"].record.agent == "lia"
    second = effects_of(bench, m.RecordCall)[1]
    assert second.path == first.path == bench.records["c1"].recording_path
    assert second.legs == (leg, lia)
    assert set(second.parts).isdisjoint(first.parts)
    assert bench.core.problems() == []
    # one that cannot start leaves the file of the first talk linked
    bench.send(RecordingDone("c1", second.path, 0.0, NOT_STARTED))
    assert bench.records["c1"].recording_path == first.path
    assert bench.core.problems() == []

"""Recordings of bridged calls: the stereo file from two mono parts, the worker, the disk floor,
the link in the call record and its deletion by retention and purge."""

from __future__ import annotations

import queue
import sqlite3
import wave
from array import array
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ivr.driver import messages as m
from ivr.driver.executor import Executor
from ivr.metrics import Metrics
from ivr.recording import (
    CHUNK_FRAMES,
    NOT_STARTED,
    InterleaveError,
    RecordingDisk,
    RecordingDone,
    RecordingWorker,
    call_recording_path,
    interleave,
    part_paths,
    parts_left,
)
from ivr.retention import purge_caller, purge_older_than
from ivr.store import CallRecord, CallStore

T0 = 1_800_000_000.0


def write_mono(path: Path, samples: list[int], rate: int = 8000, channels: int = 1) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(array("h", samples).tobytes())
    return str(path)


def read_stereo(path: str) -> tuple[int, list[tuple[int, int]]]:
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 2
        assert w.getsampwidth() == 2
        data = array("h")
        data.frombytes(w.readframes(w.getnframes()))
        return w.getframerate(), list(zip(data[0::2], data[1::2], strict=True))


def test_caller_goes_left_agent_right_and_the_shorter_part_is_padded(tmp_path: Path) -> None:
    left = write_mono(tmp_path / "l.wav", [1, -2, 3, 32767, -32768])
    right = write_mono(tmp_path / "r.wav", [10, 20])
    seconds = interleave(left, right, str(tmp_path / "out.wav"))
    rate, frames = read_stereo(str(tmp_path / "out.wav"))
    assert rate == 8000
    assert frames == [(1, 10), (-2, 20), (3, 0), (32767, 0), (-32768, 0)]
    assert seconds == 5 / 8000


def test_parts_longer_than_one_chunk_keep_every_sample_in_place(tmp_path: Path) -> None:
    n = CHUNK_FRAMES * 2 + 3
    left = write_mono(tmp_path / "l.wav", [i % 1000 for i in range(n)], rate=16000)
    right = write_mono(tmp_path / "r.wav", [-(i % 777) for i in range(n - 5)], rate=16000)
    interleave(left, right, str(tmp_path / "out.wav"))
    rate, frames = read_stereo(str(tmp_path / "out.wav"))
    assert rate == 16000
    assert frames == [(i % 1000, -(i % 777) if i < n - 5 else 0) for i in range(n)]


@pytest.mark.parametrize(("right_rate", "right_channels", "message"), [
    (16000, 1, r"8000 Hz, .* 16000 Hz"),
    (8000, 2, "is not 16-bit mono"),
])
def test_parts_that_do_not_match_are_refused_and_nothing_is_written(
        tmp_path: Path, right_rate: int, right_channels: int, message: str) -> None:
    left = write_mono(tmp_path / "l.wav", [1, 2])
    right = write_mono(tmp_path / "r.wav", [1, 2], rate=right_rate, channels=right_channels)
    with pytest.raises(InterleaveError, match=message):
        interleave(left, right, str(tmp_path / "out.wav"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.wav", "r.wav"]


def test_a_later_talk_is_added_after_the_earlier_one(tmp_path: Path) -> None:
    out = str(tmp_path / "out.wav")
    interleave(write_mono(tmp_path / "l1.wav", [1, 2]), write_mono(tmp_path / "r1.wav", [3]),
               out)
    seconds = interleave(write_mono(tmp_path / "l2.wav", [4]),
                         write_mono(tmp_path / "r2.wav", [5, 6]), out)
    assert read_stereo(out)[1] == [(1, 3), (2, 0), (4, 5), (0, 6)]
    assert seconds == 4 / 8000
    write_mono(tmp_path / "mono.wav", [1])
    with pytest.raises(InterleaveError, match="is not 16-bit stereo"):
        interleave(str(tmp_path / "l2.wav"), str(tmp_path / "r2.wav"),
                   str(tmp_path / "mono.wav"))
    assert read_stereo(out)[1] == [(1, 3), (2, 0), (4, 5), (0, 6)]  # untouched


def test_paths_are_named_by_call_id_under_recordings_calls(tmp_path: Path) -> None:
    path = call_recording_path(tmp_path, "c7")
    assert path == tmp_path / "calls" / "c7.wav"
    assert part_paths(path) == (str(tmp_path / "calls" / "c7.caller.part.wav"),
                                str(tmp_path / "calls" / "c7.agent.part.wav"))
    assert part_paths(path, "D2") == (str(tmp_path / "calls" / "c7.D2.caller.part.wav"),
                                      str(tmp_path / "calls" / "c7.D2.agent.part.wav"))
    path.parent.mkdir()
    for name in ("c7.D2.caller.part.wav", "c7.agent.part.wav", "c70.caller.part.wav",
                 "c7.wav"):
        (path.parent / name).write_bytes(b"")
    assert [p.name for p in parts_left(path)] == ["c7.D2.caller.part.wav", "c7.agent.part.wav"]


def test_worker_joins_the_parts_deletes_them_and_answers(tmp_path: Path) -> None:
    posted: queue.SimpleQueue[Any] = queue.SimpleQueue()
    worker = RecordingWorker(tmp_path, 100, posted.put, free_mb=lambda _: 1000.0)
    worker.start()
    path = str(call_recording_path(tmp_path, "c1"))
    Path(path).parent.mkdir()
    caller, agent = part_paths(path)
    write_mono(Path(caller), [5] * 80)
    write_mono(Path(agent), [7] * 80)
    worker.submit("c1", caller, agent, path)
    missing = str(tmp_path / "calls" / "c2.caller.part.wav")
    worker.submit("c2", missing, agent + "x", path + "2")
    assert posted.get(timeout=10) == RecordingDone("c1", path, 0.01)
    failed = posted.get(timeout=10)
    worker.stop()
    assert (failed.call_id, failed.seconds) == ("c2", 0.0)
    assert "cannot read" in failed.error
    assert read_stereo(path)[1] == [(5, 7)] * 80
    assert not Path(caller).exists()
    assert not Path(agent).exists()


def test_worker_says_when_the_disk_goes_under_the_floor_and_back(tmp_path: Path) -> None:
    free = [500.0]
    posted: queue.SimpleQueue[Any] = queue.SimpleQueue()
    worker = RecordingWorker(tmp_path, 200, posted.put, check_every=0.01,
                             free_mb=lambda _: free[0])
    worker.start()
    free[0] = 150.0
    assert posted.get(timeout=10) == RecordingDisk(True, 150.0)
    free[0] = 250.0
    assert posted.get(timeout=10) == RecordingDisk(False, 250.0)
    worker.stop()
    assert posted.empty()  # said once per crossing, not at every look


def test_a_low_disk_at_start_is_said_at_once(tmp_path: Path) -> None:
    posted: list[Any] = []
    RecordingWorker(tmp_path, 200, posted.append, free_mb=lambda _: 10.0).check_disk()
    assert posted == [RecordingDisk(True, 10.0)]


def saved_calls(tmp_path: Path) -> tuple[Path, list[Path]]:
    db = tmp_path / "calls.db"
    store = CallStore(db)
    paths = []
    for call_id, caller, at in (("c1", "333", T0 - 40 * 86400), ("c2", "444", T0)):
        path = call_recording_path(tmp_path / "recordings", call_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")
        paths.append(path)
        record = CallRecord(call_id, started_at=at, caller=caller, recording_path=str(path))
        record.finish(at + 60, "completed")
        store.save(record)
    store.flush()
    store.close()
    conn = sqlite3.connect(str(db))
    assert conn.execute("SELECT recording_path FROM calls WHERE call_id='c1'").fetchone() == (
        str(paths[0]),)
    conn.close()
    return db, paths


def test_purge_caller_deletes_the_recording_and_any_part_left(tmp_path: Path) -> None:
    db, (first, second) = saved_calls(tmp_path)
    left_over = Path(part_paths(first, "D4")[1])
    left_over.write_bytes(b"RIFF")  # a join that failed kept its parts
    result = purge_caller(db, "333")
    assert (result.calls, result.recordings) == (1, 1)
    assert "1 call recording(s)" in result.summary()
    assert not first.exists()
    assert not left_over.exists()
    assert second.exists()


def test_retention_deletes_old_calls_recordings(tmp_path: Path) -> None:
    db, (old, new) = saved_calls(tmp_path)
    result = purge_older_than(db, 30, T0)
    assert result.recordings == 1
    assert not old.exists()
    assert new.exists()


class RecordingSip:
    """The SIP layer's recording commands: *answer* is what record_call gives (or raises)."""

    def __init__(self, answer: bool | Exception):
        self.answer = answer
        self.stopped: list[tuple[str, str]] = []

    def record_call(self, key: str, legs: tuple[str, str], parts: tuple[str, str]) -> bool:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def stop_call_recording(self, key: str, reason: str) -> None:
        self.stopped.append((key, reason))


class Anything:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def carry_out(sip: RecordingSip, effects: list[Any],
              recorder: Any = None) -> tuple[list[Any], Metrics]:
    metrics = Metrics(CollectorRegistry(), process=False)
    ex = Executor(sip, Anything(), metrics, Anything(), Anything(), wall=lambda: 0.0,
                  recorder=recorder)
    return ex.run(effects), metrics


RECORD = m.RecordCall("c1", ("L1", "L2"), ("p.caller.part.wav", "p.agent.part.wav"), "p.wav")


@pytest.mark.parametrize("answer", [False, RuntimeError("the leg went away")])
def test_executor_answers_a_recording_the_stack_cannot_start(answer: bool | Exception) -> None:
    back, _ = carry_out(RecordingSip(answer), [RECORD])
    assert back == [RecordingDone("c1", "p.wav", 0.0, NOT_STARTED)]


def test_executor_hands_parts_to_the_worker_and_counts(tmp_path: Path) -> None:
    jobs: list[tuple[str, ...]] = []

    class Worker:
        def submit(self, *job: str) -> None:
            jobs.append(job)

    sip = RecordingSip(True)
    back, metrics = carry_out(sip, [
        RECORD, m.StopCallRecording("c1", "low_disk"),
        m.JoinRecording("c1", RECORD.parts, RECORD.path), m.CountRecording("saved"),
        m.RecordingsSuspended(True)], recorder=Worker())
    assert back == []
    assert sip.stopped == [("c1", "low_disk")]
    assert jobs == [("c1", "p.caller.part.wav", "p.agent.part.wav", "p.wav")]
    assert metrics.registry.get_sample_value("ivr_recordings_total", {"result": "saved"}) == 1
    assert metrics.registry.get_sample_value("ivr_recordings_suspended") == 1

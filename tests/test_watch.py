"""The flow file watcher (time passed by hand, a real file, no sleeping) and the reload step of
the driver: validate, render, swap; a broken file or a failing render keeps the old flow."""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from ivr.driver.messages import FlowReady
from ivr.driver.service import Reloader
from ivr.flow import load_flow
from ivr.metrics import Metrics
from ivr.prompts import PromptError
from ivr.watch import FileWatcher, file_signature, flow_files

ROOT = Path(__file__).resolve().parent.parent
QUEUES = ("support", "sales")


def write(path: Path, text: str, mtime_ns: int) -> None:
    """Write *path* and give it this modification time (no waiting for the clock to move)."""
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.fixture
def watched(tmp_path):
    path = tmp_path / "flow.yaml"
    write(path, "flow: a\n", 1_000_000_000)
    seen: list[object] = []
    watcher = FileWatcher([str(path)], seen.append, interval=1.0, settle=0.5)
    return path, watcher, seen


def test_nothing_changed_nothing_reported(watched):
    _path, watcher, seen = watched
    assert not any(watcher.check(t) for t in (0.0, 1.0, 2.0, 3.0))
    assert seen == []
    assert watcher.delay(3.0) == 1.0


def test_a_change_is_reported_once_after_it_settles(watched):
    path, watcher, seen = watched
    write(path, "flow: b\n", 2_000_000_000)
    assert not watcher.check(10.0)          # seen: wait for it to hold still
    assert watcher.delay(10.0) == pytest.approx(0.5)
    assert not watcher.check(10.3)          # not settled yet
    assert watcher.check(10.5)
    assert len(seen) == 1
    ((name, signature),) = seen[0]
    assert name == str(path)
    assert signature == file_signature(str(path))
    assert not any(watcher.check(t) for t in (11.5, 12.5))
    assert len(seen) == 1


def test_an_editor_writing_in_steps_is_reported_after_the_last_step(watched):
    path, watcher, seen = watched
    write(path, "", 2_000_000_000)          # truncated ...
    assert not watcher.check(10.0)
    write(path, "flow: b\n", 2_000_100_000)  # ... then written
    assert not watcher.check(10.4)
    assert not watcher.check(10.8)          # 0.4 s after the last step: still settling
    write(path, "flow: b\nstart: x\n", 2_000_200_000)
    assert not watcher.check(10.9)
    assert not watcher.check(11.3)
    assert watcher.check(11.4)
    assert len(seen) == 1


def test_a_file_replaced_by_rename_is_a_change_even_with_same_size_and_time(watched, tmp_path):
    path, watcher, seen = watched
    other = tmp_path / "flow.yaml.tmp"
    write(other, "flow: c\n", 1_000_000_000)  # same size and time as the watched file
    os.replace(other, path)                  # as editors that save atomically do
    assert not watcher.check(5.0)
    assert watcher.check(5.5)
    assert len(seen) == 1


def test_a_deleted_file_is_reported_so_the_reload_can_fail_loudly(watched):
    path, watcher, seen = watched
    path.unlink()
    assert not watcher.check(1.0)
    assert watcher.check(2.0)
    (((_name, signature),),) = seen
    assert signature is None


def test_a_change_undone_before_it_settles_is_not_reported(watched):
    path, watcher, seen = watched
    write(path, "flow: b\n", 2_000_000_000)
    assert not watcher.check(1.0)
    write(path, "flow: a\n", 1_000_000_000)  # back as it was
    assert not watcher.check(1.2)
    assert not watcher.check(2.0)
    assert seen == []
    assert watcher.delay(2.0) == 1.0


def test_watching_other_files_takes_their_state_as_the_baseline(watched, tmp_path):
    path, watcher, seen = watched
    sub = tmp_path / "sub.yaml"
    write(sub, "flow: s\n", 1_000_000_000)
    watcher.watch([str(path), str(sub)])
    assert not watcher.check(1.0)
    assert not watcher.check(2.0)
    write(sub, "flow: t\n", 2_000_000_000)
    assert not watcher.check(3.0)
    assert watcher.check(3.5)
    assert [name for name, _sig in seen[0]] == [str(path), str(sub)]


def test_the_thread_reports_a_change_and_stops(tmp_path):
    path = tmp_path / "flow.yaml"
    write(path, "flow: a\n", 1_000_000_000)
    reported = threading.Event()
    watcher = FileWatcher([str(path)], lambda _state: reported.set(), interval=0.01,
                          settle=0.02)
    watcher.start()
    try:
        write(path, "flow: b\n", 2_000_000_000)
        assert reported.wait(timeout=5.0)
    finally:
        watcher.stop()
    assert watcher._thread is not None
    assert not watcher._thread.is_alive()


# -- the reload step -----------------------------------------------------------------------------
class FakePrompts:
    def __init__(self, error: Exception | None = None):
        self.error = error
        self.prepared: list[str] = []

    def prepare(self, flow) -> int:
        if self.error is not None:
            raise self.error
        self.prepared.append(flow.version)
        return 3


@pytest.fixture
def flow_file(tmp_path):
    path = tmp_path / "demo.yaml"
    shutil.copy(ROOT / "flows" / "demo.yaml", path)
    return path


def board_on(flow, prompts: FakePrompts) -> SimpleNamespace:
    metrics = Metrics(CollectorRegistry(), process=False)
    metrics.flow_loaded(flow.name, flow.version, 1000.0)
    return SimpleNamespace(flow=flow, prompts=prompts, metrics=metrics, wall=lambda: 2000.0)


def sample(board, name: str, labels: dict[str, str] | None = None) -> float | None:
    value = board.metrics.registry.get_sample_value(name, labels or {})
    return None if value is None else float(value)


def flow_info(board) -> list[dict[str, str]]:
    return [s.labels for family in board.metrics.registry.collect() for s in family.samples
            if s.name == "ivr_flow_info"]


def reload_flow(board, load, trigger: str) -> str:
    """A reload as the switchboard runs it: the reloader on its own, then what the loop does
    with the FlowReady it posts (the new flow for new calls, counted and shown in /metrics)."""
    posted: list[FlowReady] = []
    reloader = Reloader(lambda _path: load(), board.prompts.prepare, posted.append,
                        board.metrics, {"": board.flow})
    result = reloader.reload(trigger)
    for msg in posted:
        board.flow = msg.flow
        board.metrics.reload_done(ok=True)
        board.metrics.flow_loaded(msg.flow.name, msg.flow.version, board.wall())
    assert (result == "reloaded") == bool(posted)
    return result


def load(path: Path):
    return lambda: load_flow(path, known_queues=QUEUES)


def test_flow_files_of_a_flow_without_subflows_is_its_own_file(flow_file):
    flow = load_flow(flow_file, known_queues=QUEUES)
    assert flow_files(flow) == (str(flow_file),)


def test_flow_files_include_subflow_files():
    flow = load_flow(ROOT / "flows" / "office.yaml")
    files = flow_files(flow)
    assert files[0] == str(ROOT / "flows" / "office.yaml")
    assert any(Path(f).name == "closed.yaml" for f in files[1:])
    assert len(set(files)) == len(files)


def test_reload_renders_then_swaps_and_counts(flow_file):
    old = load_flow(flow_file, known_queues=QUEUES)
    prompts = FakePrompts()
    board = board_on(old, prompts)
    flow_file.write_text(flow_file.read_text() + "# edited\n")
    assert reload_flow(board, load(flow_file), "SIGHUP") == "reloaded"
    assert board.flow.version != old.version
    assert prompts.prepared == [board.flow.version]
    assert sample(board, "ivr_flow_reloads_total", {"result": "ok"}) == 1.0
    assert sample(board, "ivr_flow_reloads_total", {"result": "failed"}) == 0.0
    assert flow_info(board) == [{"flow": old.name, "version": board.flow.version}]
    assert sample(board, "ivr_flow_last_reload_timestamp_seconds") == 2000.0


def test_reload_of_an_unchanged_file_is_a_no_op(flow_file, caplog):
    old = load_flow(flow_file, known_queues=QUEUES)
    prompts = FakePrompts()
    board = board_on(old, prompts)
    with caplog.at_level(logging.DEBUG, logger="ivr.driver"):
        assert reload_flow(board, load(flow_file), "file change") == "unchanged"
    assert board.flow is old
    assert prompts.prepared == []
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert flow_info(board) == [{"flow": old.name, "version": old.version}]


def test_a_broken_file_keeps_the_old_flow_and_logs_every_problem(flow_file, caplog):
    old = load_flow(flow_file, known_queues=QUEUES)
    prompts = FakePrompts()
    board = board_on(old, prompts)
    text = re.sub(r"(?m)^start:.*$", "start: nowhere", flow_file.read_text())
    flow_file.write_text(text + "  extra:\n    type: hangup\n    next: somewhere\n")
    with caplog.at_level(logging.INFO, logger="ivr.driver"):
        assert reload_flow(board, load(flow_file), "file change") == "failed"
    assert board.flow is old
    assert prompts.prepared == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) >= 3  # at least two problems, then the verdict
    assert all(e.startswith(f"{flow_file}:") for e in errors[:-1])
    assert any("nowhere" in e for e in errors)
    assert errors[-1].endswith(f"flow {old.name} version {old.version} stays in service")
    assert sample(board, "ivr_flow_reloads_total", {"result": "failed"}) == 1.0
    assert sample(board, "ivr_flow_reloads_total", {"result": "ok"}) == 0.0
    assert flow_info(board) == [{"flow": old.name, "version": old.version}]
    assert sample(board, "ivr_flow_last_reload_timestamp_seconds") == 1000.0


@pytest.mark.parametrize("error", [PromptError("espeak-ng failed"), RuntimeError("surprise")])
def test_a_failing_render_keeps_the_old_flow_without_a_traceback(flow_file, caplog, error):
    old = load_flow(flow_file, known_queues=QUEUES)
    board = board_on(old, FakePrompts(error))
    flow_file.write_text(flow_file.read_text() + "# edited\n")
    with caplog.at_level(logging.INFO, logger="ivr.driver"):
        assert reload_flow(board, load(flow_file), "SIGHUP") == "failed"
    assert board.flow is old
    assert all(r.exc_info is None for r in caplog.records)
    assert str(error) in caplog.text
    assert "stays in service" in caplog.text
    assert sample(board, "ivr_flow_reloads_total", {"result": "failed"}) == 1.0


def test_a_missing_file_is_a_failed_reload(flow_file, caplog):
    old = load_flow(flow_file, known_queues=QUEUES)
    board = board_on(old, FakePrompts())
    flow_file.unlink()
    with caplog.at_level(logging.INFO, logger="ivr.driver"):
        assert reload_flow(board, load(flow_file), "file change") == "failed"
    assert board.flow is old
    assert "cannot read the file" in caplog.text

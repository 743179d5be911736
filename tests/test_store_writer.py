"""The store's writer thread against real trouble: a locked file, a full disk, a second
switchboard, a stop that cannot write; and the agent command poller."""

import json
import logging
import os
import select
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ivr.store import CallRecord, CallStore, QueueEventRow, StoreInUse

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition, timeout=20.0):
    """Poll *condition* until it holds or *timeout* passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.01)


def count(path, sql):
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchone()[0]
    finally:
        db.close()


def store_errors(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "ivr.store" and r.levelno >= logging.ERROR]


class Disk:
    """A disk that can be full: the writer's connection may not grow the file while it is."""

    def __init__(self):
        self.full = True

    def __call__(self, db):
        # a limit below the file's size is taken as its size: the file cannot grow
        db.execute(f"PRAGMA max_page_count={1 if self.full else 1073741823}")


def big(call_id):
    return CallRecord(call_id, started_at=1.0, ivr_path="x" * 200_000)  # needs new pages


def test_save_returns_at_once_while_another_connection_holds_the_file(tmp_path, caplog):
    path = tmp_path / "calls.db"
    store = CallStore(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a backup, an sqlite3 shell left in a transaction...
    returned = threading.Event()

    def loop_turn():
        store.save(CallRecord("c1", started_at=1.0))
        store.save(CallRecord("c1", started_at=1.0, outcome="completed"))  # replaces the first
        store.add_events([QueueEventRow(2.0, "enter", "sales", "c1", "", {})])
        returned.set()

    loop = threading.Thread(target=loop_turn)
    loop.start()
    assert returned.wait(20)  # the lock is still held: the loop side did not wait on it
    assert wait_for(lambda: store.write_errors >= 2)  # the writer tried, and tries again
    assert store.pending_count() == 2
    assert not store.wait_idle(0)
    assert count(path, "SELECT count(*) FROM calls") == 0
    assert len(store_errors(caplog)) == 1
    assert "database is locked" in store_errors(caplog)[0]
    holder.execute("COMMIT")
    holder.close()
    loop.join()
    assert store.wait_idle(20)
    assert store.pending_count() == 0
    assert store.get("c1")["outcome"] == "completed"
    assert count(path, "SELECT count(*) FROM queue_events") == 1
    assert any("written to" in r.getMessage() and "again" in r.getMessage()
               for r in caplog.records if r.name == "ivr.store")
    assert store.close() == 0


def test_full_disk_logs_once_keeps_records_and_writes_them_when_space_returns(tmp_path, caplog):
    path = tmp_path / "calls.db"
    disk = Disk()
    store = CallStore(path, before_write=disk)
    store.save(big("c1"))
    assert wait_for(lambda: store.write_errors >= 3)  # retried, with backoff
    errors = store_errors(caplog)
    assert errors == [f"cannot write 1 record(s) to {path}: database or disk is full; they are "
                      "kept in memory and retried"]
    assert store.get("c1") is None
    disk.full = False
    assert store.wait_idle(30)
    assert store.get("c1")["ivr_path"] == "x" * 200_000
    assert store.close() == 0
    assert not store.fallback_path().exists()


def test_a_lasting_failure_is_logged_again_at_most_once_per_interval(tmp_path, caplog):
    path = tmp_path / "calls.db"
    store = CallStore(path, before_write=Disk(), log_every=0.2)
    store.save(big("c1"))
    assert wait_for(lambda: any(m.startswith("still cannot write") for m in store_errors(caplog)))
    still = next(m for m in store_errors(caplog) if m.startswith("still"))
    assert still.startswith(f"still cannot write 1 record(s) to {path} for ")
    assert still.endswith("s: database or disk is full")
    assert store.close(timeout=0.1) == 1


def test_stop_on_a_full_disk_writes_a_fallback_file_that_the_next_start_imports_once(tmp_path,
                                                                                    caplog):
    path = tmp_path / "calls.db"
    store = CallStore.open_for_service(path, before_write=Disk())
    for call_id in ("c1", "c2", "c3"):
        store.save(big(call_id))
    store.add_events([QueueEventRow(2.0, "enter", "sales", "c1", "", {"position": 1}),
                      QueueEventRow(3.0, "leave", "sales", "c1", "", {})])
    store.set_agent_state("anna", "paused", "lunch", 4.0)
    store.set_override("holiday", "closed", 5.0)
    assert wait_for(lambda: store.write_errors >= 1)
    assert store.close(timeout=0.5) == 7
    fallback = tmp_path / "calls.db.unwritten.jsonl"
    lines = [json.loads(line) for line in fallback.read_text().splitlines()]
    assert sorted(line["type"] for line in lines) == ["agent_state", "call", "call", "call",
                                                      "override", "queue_event", "queue_event"]
    assert any(f"saved in {fallback} and the next start imports them" in m
               for m in store_errors(caplog))
    assert count(path, "SELECT count(*) FROM calls") == 0

    crashed_copy = tmp_path / "copy.jsonl"
    shutil.copy(fallback, crashed_copy)
    second = CallStore.open_for_service(path)
    assert second.import_fallback() == 7
    assert not fallback.exists()  # deleted after the commit
    assert [r["call_id"] for r in second.rows()] == ["c1", "c2", "c3"]
    assert second.agent_states() == {"anna": ("paused", "lunch")}
    assert second.overrides() == {"holiday": "closed"}
    assert second.import_fallback() == 0
    # a crash between the commit and the delete leaves the file: importing it again adds nothing
    shutil.copy(crashed_copy, fallback)
    assert second.import_fallback() == 7
    assert second.close() == 0
    assert count(path, "SELECT count(*) FROM calls") == 3
    assert count(path, "SELECT count(*) FROM queue_events") == 2
    assert count(path, "SELECT detail FROM queue_events WHERE kind='enter'") == '{"position": 1}'


def test_fallback_goes_to_the_runtime_folder_when_it_cannot_be_beside_the_database(
        tmp_path, monkeypatch, caplog):
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    path = tmp_path / "data" / "calls.db"
    store = CallStore(path, before_write=Disk())
    store.fallback_path().mkdir()  # something in the way: the file cannot be made there
    store.save(big("c1"))
    assert store.close(timeout=0.2) == 1
    [elsewhere] = list(run.glob("centralino-calls.db-*.unwritten.jsonl"))
    assert any(f"saved in {elsewhere}" in m for m in store_errors(caplog))
    store.fallback_path().rmdir()
    again = CallStore.open_for_service(path)
    assert again.import_fallback() == 1
    assert again.get("c1") is not None
    assert not elsewhere.exists()
    again.close()


def test_a_truncated_last_line_is_kept_aside_and_the_rest_imported(tmp_path, caplog):
    path = tmp_path / "calls.db"
    good = json.dumps({"type": "call", "call": {"call_id": "c1", "started_at": 1.0}})
    (tmp_path / "calls.db.unwritten.jsonl").write_text(good + "\n" + '{"type": "ca')
    store = CallStore.open_for_service(path)
    assert store.import_fallback() == 1
    assert store.get("c1")["outcome"] == "in_progress"
    assert len(list(tmp_path.glob("calls.db.unwritten.jsonl.rejected-*"))) == 1
    assert store.close() == 0


SWITCHBOARD = """
import sys
from pathlib import Path
from ivr.store import CallRecord, CallStore
store = CallStore.open_for_service(Path(sys.argv[1]))
store.save(CallRecord("live", started_at=1.0, queue="sales"))
assert store.wait_idle(30)
print("ready", flush=True)
sys.stdin.readline()
store.close()
"""


def test_a_second_switchboard_on_the_same_store_stops_before_touching_a_row(tmp_path):
    path = tmp_path / "calls.db"
    first = subprocess.Popen([sys.executable, "-c", SWITCHBOARD, str(path)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert select.select([first.stdout], [], [], 60)[0]
        assert first.stdout.readline() == "ready\n"
        with pytest.raises(StoreInUse) as err:
            CallStore.open_for_service(path)
        assert str(err.value) == (
            f"the call records at {path} are in use by another switchboard (pid {first.pid} "
            f"holds {path}.lock); stop that one first, or set 'store' in ivr.yaml to another "
            "file")
        tool = CallStore(path)  # tools may read; recovery needs the lock
        with pytest.raises(StoreInUse):
            tool.recover(now=99.0)
        tool.close()
        assert count(path, "SELECT outcome FROM calls WHERE call_id='live'") == "in_progress"
    finally:
        first.stdin.write("\n")
        first.stdin.close()
        assert first.wait(60) == 0
    after = CallStore.open_for_service(path)  # the lock went with the first switchboard
    assert after.recover(now=99.0) == 1
    after.close()


def test_a_second_open_in_the_same_process_is_refused_too(tmp_path):
    path = tmp_path / "calls.db"
    first = CallStore.open_for_service(path)
    with pytest.raises(StoreInUse, match=f"pid {os.getpid()} holds"):
        CallStore.open_for_service(path)
    first.close()
    CallStore.open_for_service(path).close()


def test_the_command_poller_delivers_what_ivr_agent_wrote(tmp_path):
    path = tmp_path / "calls.db"
    store = CallStore.open_for_service(path)
    got = []
    delivered = threading.Event()

    def on_commands(commands):
        got.append((threading.current_thread() is threading.main_thread(), commands))
        delivered.set()

    store.start_command_poller(on_commands, interval=0.05)
    cli = CallStore(path)  # what `ivr agent pause anna --reason lunch` does
    cli.request_agent_command("anna", "pause", "lunch", 10.0)
    cli.request_agent_command("bruno", "login", "", 11.0)
    cli.close()
    assert delivered.wait(20)
    assert store.close() == 0  # stops the poller
    commands = [c for _, batch in got for c in batch]
    assert commands == [("anna", "pause", "lunch"), ("bruno", "login", "")]
    assert not any(on_main for on_main, _ in got)
    assert count(path, "SELECT count(*) FROM agent_commands WHERE done_at IS NULL") == 0


def test_wait_idle_waits_for_the_version_that_replaced_a_waiting_one(tmp_path):
    disk = Disk()
    seen = {"waiting": False, "replaced": False}

    def writer_hook(db):
        if seen["replaced"]:
            disk.full = False
        elif seen["waiting"]:  # the loop saves a newer version while the test waits
            store.save(CallRecord("c1", started_at=1.0, outcome="completed"))
            seen["replaced"] = True
        disk(db)

    store = CallStore(tmp_path / "calls.db", before_write=writer_hook)
    store.save(big("c1"))
    assert wait_for(lambda: store.write_errors >= 1)
    seen["waiting"] = True
    assert store.wait_idle(30)
    assert store.get("c1")["outcome"] == "completed"  # not 'idle' with nothing written
    assert store.close() == 0

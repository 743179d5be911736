"""Call records in a real SQLite file: records, recovery, schema, paths."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.store import SCHEMA_VERSION, CallRecord, CallStore, QueueEventRow, StoreError

ROOT = Path(__file__).resolve().parent.parent


def test_record_round_trip_and_wal(tmp_path):
    store = CallStore(tmp_path / "calls.db")
    rec = CallRecord("c1", started_at=100.0, caller="3331234567", called="800123456",
                     trunk="gw", queued_at=110.0)
    store.save(rec)
    rec.connected_at = 125.0
    rec.agent = "anna"
    rec.finish(ended_at=185.5, outcome="completed", reason="caller hung up")
    store.save(rec)
    assert store.wait_idle(10)
    row = store.get("c1")
    assert row["outcome"] == "completed"
    assert row["agent"] == "anna"
    assert row["wait_seconds"] == 15.0
    assert row["talk_seconds"] == 60.5
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.close() == 0


def test_save_keeps_a_copy_not_the_callers_object(tmp_path):
    store = CallStore(tmp_path / "calls.db")
    rec = CallRecord("c1", started_at=1.0)
    store.save(rec)
    rec.outcome = "completed"  # the driver goes on changing its own record
    assert store.close() == 0
    with sqlite3.connect(tmp_path / "calls.db") as db:
        assert db.execute("SELECT outcome FROM calls").fetchall() == [("in_progress",)]


def test_abandoned_in_queue_wait_runs_to_the_end(tmp_path):
    rec = CallRecord("c2", started_at=0.0, queued_at=10.0)
    rec.finish(ended_at=42.0, outcome="abandoned_queue")
    assert rec.wait_seconds == 32.0
    assert rec.talk_seconds is None


CRASHING_SWITCHBOARD = """
import os, sys
from pathlib import Path
from ivr.store import CallRecord, CallStore
store = CallStore.open_for_service(Path(sys.argv[1]))
store.save(CallRecord("c1", started_at=10.0, answered_at=11.0, queued_at=20.0,
                      connected_at=30.0, ivr_path="menu>1", queue="sales", agent="anna"))
assert store.wait_idle(30)
os._exit(9)  # dies during the call: no finish, no close
"""


def test_crash_leaves_in_progress_and_next_start_closes_it_keeping_what_was_known(tmp_path):
    path = tmp_path / "calls.db"
    crashed = subprocess.run([sys.executable, "-c", CRASHING_SWITCHBOARD, str(path)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert crashed.returncode == 9
    second = CallStore.open_for_service(path)
    assert second.recover(now=99.0) == 1
    row = second.get("c1")
    assert row["outcome"] == "interrupted"
    assert row["ended_at"] == 99.0
    assert row["end_reason"] == "process stopped during the call"
    assert (row["answered_at"], row["queued_at"], row["connected_at"]) == (11.0, 20.0, 30.0)
    assert (row["ivr_path"], row["queue"], row["agent"]) == ("menu>1", "sales", "anna")
    assert second.recover(now=100.0) == 0
    assert second.close() == 0


def test_agent_states_and_overrides_survive_a_restart(tmp_path):
    path = tmp_path / "calls.db"
    store = CallStore(path)
    store.set_agent_state("anna", "paused", "lunch", 5.0)
    store.set_agent_state("bruno", "paused", "", 5.0)
    store.set_agent_state("bruno", "logged_out", "", 6.0)  # the later one wins
    store.set_override("holiday", "closed", 7.0)
    store.set_override("night", "open", 7.0)
    store.set_override("night", "auto", 8.0)  # 'auto' removes the switch
    assert store.close() == 0
    again = CallStore(path)
    assert again.agent_states() == {"anna": ("paused", "lunch"), "bruno": ("logged_out", "")}
    assert again.overrides() == {"holiday": "closed"}
    again.close()


def test_queue_events_get_an_id_and_keep_their_detail(tmp_path):
    store = CallStore(tmp_path / "calls.db")
    store.add_events([QueueEventRow(1.0, "enter", "sales", "c1", "", {"position": 2}),
                      QueueEventRow(2.0, "connect", "sales", "c1", "anna", {}, event_id="e-2")])
    assert store.close() == 0
    with sqlite3.connect(tmp_path / "calls.db") as db:
        rows = db.execute("SELECT event_id, kind, detail FROM queue_events ORDER BY at").fetchall()
    assert len(rows[0][0]) == 32
    assert rows[1][0] == "e-2"
    assert [(r[1], r[2]) for r in rows] == [("enter", '{"position": 2}'), ("connect", "{}")]


def test_a_file_from_version_2_gets_the_event_id_column_and_keeps_its_rows(tmp_path):
    path = tmp_path / "calls.db"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE calls (call_id TEXT PRIMARY KEY, caller TEXT NOT NULL DEFAULT '',
                called TEXT NOT NULL DEFAULT '', trunk TEXT NOT NULL DEFAULT '',
                source TEXT NOT NULL DEFAULT '', flow TEXT NOT NULL DEFAULT '',
                flow_version TEXT NOT NULL DEFAULT '', started_at REAL NOT NULL,
                answered_at REAL, queued_at REAL, connected_at REAL, ended_at REAL,
                ivr_path TEXT NOT NULL DEFAULT '', queue TEXT, agent TEXT, wait_seconds REAL,
                talk_seconds REAL, outcome TEXT NOT NULL, end_reason TEXT NOT NULL DEFAULT '',
                voicemail_path TEXT, transferred_to TEXT);
            CREATE TABLE queue_events (id INTEGER PRIMARY KEY, at REAL NOT NULL,
                kind TEXT NOT NULL, queue TEXT NOT NULL DEFAULT '',
                call_id TEXT NOT NULL DEFAULT '', agent TEXT NOT NULL DEFAULT '',
                detail TEXT NOT NULL DEFAULT '{}');
            INSERT INTO calls (call_id, started_at, outcome) VALUES ('old', 1.0, 'completed');
            INSERT INTO queue_events (at, kind) VALUES (1.0, 'enter'), (2.0, 'leave');
            PRAGMA user_version=2;
        """)
    db.close()
    store = CallStore(path)
    store.add_events([QueueEventRow(3.0, "enter", "q", "new", "", {})])
    assert store.close() == 0
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        assert db.execute("SELECT call_id FROM calls").fetchall() == [("old",)]
        ids = db.execute("SELECT event_id FROM queue_events ORDER BY at").fetchall()
    db.close()
    assert ids[0] == ids[1] == (None,)
    assert ids[2][0]


def test_a_store_path_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(StoreError) as err:
        CallStore(tmp_path)
    assert str(err.value) == (f"cannot open the call records at {tmp_path}: it is a folder; set "
                              f"'store' in ivr.yaml to a file path such as "
                              f"{tmp_path / 'centralino.db'}")


def test_a_store_path_under_a_file_says_which_file(tmp_path):
    (tmp_path / "var").write_text("not a folder")
    path = tmp_path / "var" / "db" / "calls.db"
    with pytest.raises(StoreError) as err:
        CallStore.open_for_service(path)
    assert str(err.value) == (f"cannot open the call records at {path}: {tmp_path / 'var'} is a "
                              "file, not a folder; move that file or set 'store' in ivr.yaml to "
                              "a path in a folder")


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path):
    path = tmp_path / "calls.db"
    path.write_text("these are notes, not call records\n" * 100)
    with pytest.raises(StoreError, match=r"^cannot open the call records at .*calls\.db: file "
                                         r"is not a database; check the file or set 'store'"):
        CallStore(path)


def test_nothing_is_queued_after_close(tmp_path):
    store = CallStore(tmp_path / "calls.db")
    assert store.close() == 0
    assert store.close() == 0
    with pytest.raises(StoreError, match="are closed"):
        store.save(CallRecord("late", started_at=1.0))


def test_a_value_sqlite_cannot_store_fails_on_the_callers_side(tmp_path):
    store = CallStore(tmp_path / "calls.db")
    with pytest.raises(TypeError, match=r"^CallRecord\.voicemail_path must be a str, int, float "
                                        r"or None, not PosixPath"):
        store.save(CallRecord("c1", started_at=1.0, voicemail_path=tmp_path / "c1.wav"))
    with pytest.raises(TypeError):
        store.add_events([QueueEventRow(1.0, "enter", "q", "c1", "", {"at": tmp_path})])
    store.save(CallRecord("c2", started_at=1.0))  # the writer is not stuck on a bad one
    assert store.close() == 0
    again = CallStore(tmp_path / "calls.db")
    assert [r["call_id"] for r in again.rows()] == ["c2"]
    again.close()


def test_a_file_from_version_5_gets_the_note_column_empty_and_notes_are_kept(tmp_path):
    path = tmp_path / "calls.db"
    with sqlite3.connect(path) as db:
        columns = ", ".join(f"{c} TEXT" for c in (
            "caller", "called", "trunk", "source", "flow", "flow_version", "ivr_path", "queue",
            "agent", "end_reason", "voicemail_path", "transferred_to", "ticket", "disposition",
            "recording_path"))
        db.executescript(f"""
            CREATE TABLE calls (call_id TEXT PRIMARY KEY, {columns}, started_at REAL NOT NULL,
                answered_at REAL, queued_at REAL, connected_at REAL, ended_at REAL,
                wait_seconds REAL, talk_seconds REAL, ticket_seq INTEGER,
                outcome TEXT NOT NULL);
            INSERT INTO calls (call_id, started_at, outcome) VALUES ('old', 1.0, 'completed');
            PRAGMA user_version=5;
        """)
    db.close()
    store = CallStore(path)
    store.save(CallRecord("new", 2.0, note="[10:01 anna] wants a callback\n[10:02 crm] VIP"))
    assert store.close() == 0
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 7
        rows = db.execute("SELECT call_id, note FROM calls ORDER BY started_at").fetchall()
    db.close()
    assert rows == [("old", ""), ("new", "[10:01 anna] wants a callback\n[10:02 crm] VIP")]

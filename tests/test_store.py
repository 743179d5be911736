"""Call records in a real SQLite file."""

import sqlite3

from ivr.store import CallRecord, CallStore


def test_record_round_trip_and_wal(tmp_path):
    store = CallStore(tmp_path / "calls.db")
    rec = CallRecord("c1", started_at=100.0, caller="3331234567", called="800123456",
                     trunk="gw", queued_at=110.0)
    assert store.save(rec)
    rec.connected_at = 125.0
    rec.agent = "anna"
    rec.finish(ended_at=185.5, outcome="completed", reason="caller hung up")
    assert store.save(rec)
    row = store.get("c1")
    assert row["outcome"] == "completed" and row["agent"] == "anna"
    assert row["wait_seconds"] == 15.0 and row["talk_seconds"] == 60.5
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_abandoned_in_queue_wait_runs_to_the_end(tmp_path):
    rec = CallRecord("c2", started_at=0.0, queued_at=10.0)
    rec.finish(ended_at=42.0, outcome="abandoned_queue")
    assert rec.wait_seconds == 32.0 and rec.talk_seconds is None


def test_crash_leaves_in_progress_and_next_start_closes_it(tmp_path):
    path = tmp_path / "calls.db"
    first = CallStore(path)
    first.save(CallRecord("c1", started_at=10.0))
    # the process dies here: no finish, no close
    second = CallStore(path)
    assert second.recover(now=99.0) == 1
    row = second.get("c1")
    assert row["outcome"] == "interrupted" and row["ended_at"] == 99.0
    assert second.recover(now=100.0) == 0


def test_full_disk_keeps_record_and_writes_it_later(tmp_path):
    path = tmp_path / "calls.db"
    store = CallStore(path)
    store.save(CallRecord("warmup", started_at=1.0))
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count={pages}")  # the file may not grow: a full disk
    big = CallRecord("c-full", started_at=2.0, ivr_path="x" * 200_000)
    assert store.save(big) is False
    assert [r.call_id for r in store.pending] == ["c-full"]
    assert store.get("c-full") is None
    store.db.execute("PRAGMA max_page_count=1073741823")  # space again
    assert store.flush() is True
    assert store.pending == []
    assert store.get("c-full")["ivr_path"] == "x" * 200_000
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM calls").fetchone()[0] == 2

"""ivr purge: retention by age and erasure of one caller's data."""

import sqlite3

import pytest

from ivr.cli import main
from ivr.config import load_config
from ivr.retention import purge_caller, purge_older_than
from ivr.store import CallRecord, CallStore, QueueEventRow
from ivr.yamlsrc import DocumentError
from tests.test_report import DAY, T0, TARGET, scenario


def every_value(db_path):
    db = sqlite3.connect(str(db_path))
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    values = []
    for table in tables:
        for row in db.execute(f"SELECT * FROM {table}"):
            values.extend(str(v) for v in row)
    db.close()
    return values


def test_purge_by_caller_leaves_no_trace(tmp_path, capsys):
    db, rec = tmp_path / "calls.db", tmp_path / "recordings"
    scenario(db, rec)
    assert any(TARGET in v for v in every_value(db))
    assert (rec / "c19.wav").exists()
    assert main(["purge", "--store", str(db), "--caller", TARGET]) == 0
    out = capsys.readouterr().out
    assert out.strip() == ("removed 2 call record(s) (1 callback(s)), 3 queue event(s), "
                           "1 voicemail file(s)")
    assert not any(TARGET in v for v in every_value(db))
    assert not any(v in ("c19", "old-cb") for v in every_value(db))
    assert not (rec / "c19.wav").exists()
    conn = sqlite3.connect(str(db))
    assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 21  # 23 - 2
    conn.close()
    raw = db.read_bytes() + (db.with_name("calls.db-wal").read_bytes()
                             if db.with_name("calls.db-wal").exists() else b"")
    assert TARGET.encode() not in raw  # secure_delete + checkpoint: not left in free pages


def test_purge_older_than_removes_old_rows_only(tmp_path):
    db, rec = tmp_path / "calls.db", tmp_path / "recordings"
    rec.mkdir()
    store = CallStore(db)
    for call_id, at in (("old", T0 - 40 * DAY), ("new", T0 - 2 * DAY), ("open", T0 - 50 * DAY)):
        wav = rec / f"{call_id}.wav"
        wav.write_bytes(b"RIFF")
        r = CallRecord(call_id, started_at=at, caller="333", voicemail_path=str(wav))
        if call_id != "open":
            r.finish(at + 60, "completed")
        store.save(r)
        store.add_events([QueueEventRow(at + 1, "enter", "q", call_id, "", {}),
                          QueueEventRow(at + 2, "login", "", "", "anna", {})])
    store.flush()
    store.close()
    result = purge_older_than(db, 30, T0, rec)
    assert (result.calls, result.queue_events, result.voicemails) == (1, 4, 1)
    conn = sqlite3.connect(str(db))
    assert sorted(r[0] for r in conn.execute("SELECT call_id FROM calls")) == ["new", "open"]
    assert conn.execute("SELECT COUNT(*) FROM queue_events WHERE at < ?",
                        (T0 - 30 * DAY,)).fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM queue_events").fetchone()[0] == 2
    conn.close()
    assert not (rec / "old.wav").exists()
    assert (rec / "new.wav").exists()
    with pytest.raises(ValueError, match="positive number of days"):
        purge_older_than(db, 0, T0, rec)


BASE = """\
sip: {listen: 127.0.0.1:5080}
trunks: {gw: {sources: [127.0.0.1]}}
flow: flows/demo.yaml
store: calls.db
"""


def test_retention_days_in_config_is_the_default_of_purge(tmp_path, capsys):
    (tmp_path / "ivr.yaml").write_text(BASE + "retention_days: 30\n")
    assert load_config(tmp_path / "ivr.yaml").retention_days == 30
    store = CallStore(tmp_path / "calls.db")
    r = CallRecord("ancient", started_at=1000.0)
    r.finish(1060.0, "completed")
    store.save(r)
    store.close()
    assert main(["purge", "--config", str(tmp_path / "ivr.yaml")]) == 0
    assert capsys.readouterr().out.startswith("removed 1 call record(s)")


def test_retention_days_default_keeps_forever_and_bad_values_are_located(tmp_path, capsys):
    (tmp_path / "ivr.yaml").write_text(BASE)
    assert load_config(tmp_path / "ivr.yaml").retention_days == 0
    assert main(["purge", "--config", str(tmp_path / "ivr.yaml")]) == 2
    assert "keep forever" in capsys.readouterr().err
    for bad, message in (("-3", "must be at least 0"), ("ten", "expected a whole number"),
                         ("1.5", "expected a whole number")):
        (tmp_path / "ivr.yaml").write_text(BASE + f"retention_days: {bad}\n")
        with pytest.raises(DocumentError) as err:
            load_config(tmp_path / "ivr.yaml")
        [problem] = [str(p) for p in err.value.problems]
        assert ":5:" in problem
        assert "retention_days" in problem
        assert message in problem


def _text(db_path, number: str, state: str, created_at: float) -> None:
    conn = sqlite3.connect(str(db_path))
    conn.execute("INSERT INTO sms (number, text, state, created_at, next_at) VALUES (?,?,?,?,?)",
                 (number, f"ticket for {number}", state, created_at, created_at))
    conn.commit()
    conn.close()


def test_texts_go_with_the_caller_and_with_age(tmp_path):
    db = tmp_path / "calls.db"
    CallStore(db).close()  # the schema, texts table included
    _text(db, TARGET, "sent", T0 - 2 * DAY)
    _text(db, TARGET, "queued", T0 - 1 * DAY)
    _text(db, "+393330000001", "sent", T0 - 40 * DAY)
    _text(db, "+393330000002", "queued", T0 - 40 * DAY)
    _text(db, "+393330000003", "failed", T0 - 2 * DAY)
    result = purge_caller(db, TARGET)
    assert result.texts == 2
    assert "2 text message(s)" in result.summary()
    assert not any(TARGET in v for v in every_value(db))
    result = purge_older_than(db, 30, T0)
    assert result.texts == 1  # the old sent one; a text still queued waits for the modem
    conn = sqlite3.connect(str(db))
    left = sorted(r[0] for r in conn.execute("SELECT number FROM sms"))
    conn.close()
    assert left == ["+393330000002", "+393330000003"]

"""ivr report: a scripted day of one queue with known figures, in a real SQLite file."""

import csv
import io
from datetime import datetime

import pytest

from ivr.cli import main
from ivr.report import _logged_in_seconds, compute
from ivr.store import CallRecord, CallStore, QueueEventRow

T0 = datetime(2026, 11, 2, 8, 0).timestamp()  # local time, as the report reads it
DAY = 86400.0
TARGET = "3339999999"


def scenario(path, recordings=None):
    """20 calls in 'support' on 2 Nov 2026 (local): 12 answered within 20 s, 3 after 20 s,
    4 abandoned (2 within, 2 after), 1 escalated (overflowed to voicemail).

    FCR: of the 15 answered, one is withheld; c1's number calls again (abandoned c13) and
    c2's number calls again the next day (IVR only, not a queue call); c3's calls again after
    10 days (beyond 7). So 12 of 14 are resolved at first contact.
    """
    store = CallStore(path)
    events = []
    waits = [*range(5, 17), 30, 40, 50]  # 15 answered
    for i, wait in enumerate(waits):
        start = T0 + i * 600
        caller = "" if i == 14 else f"33300000{i:02d}"
        rec = CallRecord(f"c{i}", started_at=start, caller=caller, queue="support",
                         queued_at=start + 5, agent="anna" if i < 8 else "marco")
        rec.connected_at = start + 5 + wait
        rec.finish(rec.connected_at + 100, "completed")
        store.save(rec)
        events.append(QueueEventRow(rec.connected_at, "connect", "support", rec.call_id,
                                    rec.agent or "", {}))
        events.append(QueueEventRow(rec.ended_at or 0, "complete", "support", rec.call_id,
                                    rec.agent or "", {"talk": 100}))
    # c0: 10 s of wrap-up recorded
    events.append(QueueEventRow(T0 + 5 + 5 + 100 + 10, "wrap_up_end", "", "", "anna", {}))
    for j, wait in enumerate([10, 15, 30, 60]):  # 4 abandoned
        start = T0 + (15 + j) * 600
        caller = "3330000001" if j == 0 else f"33311111{j:02d}"
        rec = CallRecord(f"c{15 + j}", started_at=start, caller=caller, queue="support",
                         queued_at=start + 5)
        rec.finish(start + 5 + wait, "abandoned_queue")
        store.save(rec)
        events.append(QueueEventRow(start + 5 + wait, "abandon", "support", rec.call_id, "",
                                    {"wait": wait, "position": 1}))
    # c19: escalated by max_wait, then left a voicemail
    start = T0 + 19 * 600
    vm = (recordings / "c19.wav") if recordings else None
    if vm is not None:
        vm.parent.mkdir(parents=True, exist_ok=True)
        vm.write_bytes(b"RIFF....WAVE")
    rec = CallRecord("c19", started_at=start, caller=TARGET, queue="support",
                     queued_at=start + 5, voicemail_path=str(vm) if vm else None)
    rec.finish(start + 200, "completed")
    store.save(rec)
    events.append(QueueEventRow(start + 5, "enter", "support", "c19", "", {"position": 1}))
    events.append(QueueEventRow(start + 125, "escalate", "support", "c19", "",
                                {"kind": "max_wait", "from_level": 1, "to_level": 1,
                                 "from_queue": "support", "to_queue": ""}))
    # repeat calls: c2's number the next day (IVR only), c3's after 10 days
    for call_id, caller, at in (("r1", "3330000002", T0 + DAY), ("r2", "3330000003",
                                                                   T0 + 10 * DAY)):
        rec = CallRecord(call_id, started_at=at, caller=caller)
        rec.finish(at + 30, "abandoned_ivr")
        store.save(rec)
    # the target was called back a week earlier (a callback record) and called once before
    cb = CallRecord("old-cb", started_at=T0 - 7 * DAY, caller=TARGET, called=TARGET,
                    source="callback", queue="support", queued_at=T0 - 7 * DAY)
    cb.connected_at = T0 - 7 * DAY + 3
    cb.agent = "anna"
    cb.finish(T0 - 7 * DAY + 60, "completed")
    store.save(cb)
    events.append(QueueEventRow(T0 - 7 * DAY + 3, "connect", "support", "old-cb", "anna", {}))
    # anna logged in for 4 hours; marco has no login/logout events
    events.append(QueueEventRow(T0 - 60, "login", "", "", "anna", {}))
    events.append(QueueEventRow(T0 + 4 * 3600 - 60, "logout", "", "", "anna", {}))
    store.add_events(events)
    store.flush()
    store.close()


EXPECTED = {"offered": 20, "answered": 15, "abandoned": 4, "sl": 12 / 15,
            "sl2": (12 + 2) / (15 + 4), "asa": (sum(range(5, 17)) + 120) / 15,
            "aht": (15 * 100 + 10) / 15, "abandonment": 4 / 20, "escalation": 1 / 19,
            "fcr": 12 / 14}


def run(capsys, *args):
    assert main(["report", *args]) == 0
    return capsys.readouterr().out


def test_report_csv_has_the_exact_figures(tmp_path, capsys):
    db = tmp_path / "calls.db"
    scenario(db)
    out = run(capsys, "--store", str(db), "--from", "2026-11-02", "--to", "2026-11-02", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["queue"] for r in rows] == ["support", "total"]
    support = rows[0]
    for key in ("offered", "answered", "abandoned"):
        assert int(support[key]) == EXPECTED[key], key
    for key in ("sl", "sl2", "asa", "aht", "abandonment", "escalation", "fcr"):
        tolerance = 0.005 if key in ("asa", "aht") else 0.00005  # CSV: 2 or 4 decimals
        assert float(support[key]) == pytest.approx(EXPECTED[key], abs=tolerance), key
    assert support["occupancy"] == ""
    assert rows[1]["offered"] == "20"


def test_report_table_is_aligned_and_shows_percentages(tmp_path, capsys):
    db = tmp_path / "calls.db"
    scenario(db)
    out = run(capsys, "--store", str(db), "--from", "2026-11-02T00:00", "--to",
              "2026-11-03T00:00")
    lines = out.splitlines()
    assert lines[0].split() == ["queue", "offered", "answered", "abandoned", "SL", "SL2",
                                "ASA", "s", "AHT", "s", "aband", "escal", "FCR", "occup"]
    cells = lines[1].split()
    assert cells == ["support", "20", "15", "4", "80.0%", "73.7%", "16.4", "100.7", "20.0%",
                     "5.3%", "85.7%"]
    assert len(lines[1].rstrip()) <= len(lines[0])
    assert lines[2].startswith("total")


def test_report_by_agent_gives_calls_and_occupancy_where_known(tmp_path, capsys):
    db = tmp_path / "calls.db"
    scenario(db)
    out = run(capsys, "--store", str(db), "--from", "2026-11-02", "--to", "2026-11-02",
              "--by", "agent", "--csv")
    rows = {r["agent"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["anna"]["answered"] == "8"
    assert rows["marco"]["answered"] == "7"
    assert float(rows["anna"]["occupancy"]) == pytest.approx(800 / (4 * 3600), abs=0.0001)
    assert rows["marco"]["occupancy"] == ""


def test_report_by_day_and_hour_use_local_time(tmp_path, capsys):
    db = tmp_path / "calls.db"
    scenario(db)
    out = run(capsys, "--store", str(db), "--from", "2026-11-02", "--to", "2026-11-02",
              "--by", "hour", "--csv")
    hours = [r["hour"] for r in csv.DictReader(io.StringIO(out))]
    assert hours[:4] == ["2026-11-02 08:00", "2026-11-02 09:00", "2026-11-02 10:00",
                         "2026-11-02 11:00"]
    out = run(capsys, "--store", str(db), "--from", "2026-11-02", "--to", "2026-11-02",
              "--by", "day", "--csv")
    assert [r["day"] for r in csv.DictReader(io.StringIO(out))] == ["2026-11-02", "total"]


def test_shorter_fcr_window_and_threshold_change_the_figures():
    calls = [
        {"call_id": "a", "caller": "1", "source": "", "queue": "q", "started_at": 0.0,
         "ended_at": 100.0, "connected_at": 30.0, "wait_seconds": 30.0, "talk_seconds": 70.0,
         "outcome": "completed"},
        {"call_id": "b", "caller": "1", "source": "", "queue": None, "started_at": 2 * DAY,
         "ended_at": 2 * DAY + 5, "connected_at": None, "wait_seconds": None,
         "talk_seconds": None, "outcome": "abandoned_ivr"},
    ]
    week = compute(calls, [], start=0, end=DAY, fcr_days=7, threshold=20)[0]
    day = compute(calls, [], start=0, end=DAY, fcr_days=1, threshold=30)[0]
    assert week.fcr == 0
    assert week.sl == 0
    assert day.fcr == 1
    assert day.sl == 1


def test_logged_in_seconds_from_partial_login_logout_events():
    events = [{"at": 50.0, "kind": "logout", "agent": "a"},
              {"at": 60.0, "kind": "login", "agent": "b"}]
    assert _logged_in_seconds(events, 0.0, 100.0) == {"a": 50.0, "b": 40.0}


def test_bad_dates_are_refused(tmp_path, capsys):
    assert main(["report", "--store", str(tmp_path / "x.db"), "--from", "yesterday",
                 "--to", "2026-11-02"]) == 2
    assert "not a date" in capsys.readouterr().err

"""ivr report --campaign: a scripted campaign day with known figures, in a real store file."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.outbound.contacts import ContactBook, import_csv
from ivr.report import compute, compute_campaign
from ivr.store import CallRecord, CallStore

T0 = datetime(2026, 11, 2, 10, 0).timestamp()  # local time, as the report reads it


def out_call(i: int, at: float, outcome: str, *, agent: str | None = None, talk: float = 0.0,
             disposition: str | None = None, answered: bool = True,
             campaign: str = "spring") -> CallRecord:
    rec = CallRecord(f"o{i}", started_at=at, caller="+390600000000", called=f"+39347000{i:04d}",
                     trunk="gw", source="dialler", direction="out", campaign=campaign,
                     contact_id=i, agent=agent, disposition=disposition)
    if answered:
        rec.answered_at = at + 5
    if agent:
        rec.connected_at = at + 7
    rec.finish(at + 7 + talk if agent else at + 10, outcome)
    return rec


def scenario(db: Path) -> None:
    """10 numbers dialled: 6 answered (4 put through to anna or marco, 1 abandoned, 1 hung
    up before an agent), 2 busy, 1 no answer, 1 failed; 2 not dialled (no rule, DNC); the
    connects' dispositions: 1 (sale) twice, 6 (do not call), none; plus an inbound call and
    another campaign's call that must not count."""
    store = CallStore(db)
    calls = [
        out_call(1, T0, "completed", agent="anna", talk=60, disposition="1"),
        out_call(2, T0 + 120, "completed", agent="anna", talk=30, disposition="1"),
        out_call(3, T0 + 300, "completed", agent="anna", talk=90, disposition="6"),
        out_call(4, T0 + 100, "completed", agent="marco", talk=45),
        out_call(5, T0 + 400, "abandoned"),
        out_call(6, T0 + 500, "completed"),  # answered, hung up before the agent
        out_call(7, T0 + 600, "busy", answered=False),
        out_call(8, T0 + 700, "busy", answered=False),
        out_call(9, T0 + 800, "no_answer", answered=False),
        out_call(10, T0 + 900, "failed", answered=False),
        out_call(11, T0 + 950, "completed", agent="anna", talk=10, campaign="other"),
    ]
    calls[5].agent = None
    for rec in calls:
        store.save(rec)
    inbound = CallRecord("in1", started_at=T0 + 50, caller="3331234567", queue="support",
                         queued_at=T0 + 55, agent="anna")
    inbound.connected_at = T0 + 60
    inbound.finish(T0 + 160, "completed")
    store.save(inbound)
    assert store.close() == 0
    with ContactBook(db) as book:
        listing = db.parent / "list.csv"
        listing.write_text("number\n" + "".join(f"+39347000{i:04d}\n" for i in range(1, 13)))
        import_csv(book, "spring", listing, now=T0 - 60)
        ids = {c.number: c.id for c in book.contacts("spring")}
        outcomes = {1: "answered", 2: "answered", 3: "answered", 4: "answered",
                    5: "abandoned", 6: "answered", 7: "busy", 8: "busy", 9: "no_answer",
                    10: "failed", 11: "not_dialled", 12: "dnc_skipped"}
        for i, outcome in outcomes.items():
            state = "pending" if outcome in ("busy", "no_answer") else "failed"
            book.record_attempt(ids[f"+39347000{i:04d}"], outcome, f"o{i}", "why", T0 + 3600
                                if state == "pending" else None, state, T0 + i * 50)
        book.set_disposition(ids["+393470000001"], "1", T0 + 100, ends=True)
        book.set_disposition(ids["+393470000003"], "6", T0 + 400, ends=True, dnc=True)


def test_campaign_figures(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    scenario(db)
    from ivr.report import read_campaign_rows

    calls, attempts, closing = read_campaign_rows(db, "spring", T0 - 10, T0 + 86400)
    assert closing == {"1", "6"}
    report = compute_campaign("spring", calls, attempts, start=T0 - 10, end=T0 + 86400,
                              final_dispositions={"1", "6"})
    assert report.attempts == 10
    assert report.not_dialled == {"not_dialled": 1, "dnc_skipped": 1}
    assert report.outcomes == {"answered": 5, "abandoned": 1, "busy": 2, "no_answer": 1,
                               "failed": 1}
    assert report.answered == 6
    assert report.contact_rate == pytest.approx(0.6)
    assert report.connects == 4
    assert report.right_party == 3
    assert report.abandoned == 1
    assert report.abandon_rate == pytest.approx(1 / 6)
    assert report.conversions == {"1": 2, "6": 1, "": 1}
    assert report.talk == {"anna": 180.0, "marco": 45.0}
    # anna: o1 ends at T0+67, o2 starts T0+120 (53 s idle); o2 ends T0+157, o3 at T0+300
    assert report.idle == {"anna": pytest.approx(53 + 143), "marco": 0.0}


def test_inbound_reports_leave_the_dialler_out(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    scenario(db)
    from ivr.report import read_rows

    calls, events = read_rows(db, T0 - 10, T0 + 86400, 7)
    [support, total] = compute(calls, events, start=T0 - 10, end=T0 + 86400)
    assert (support.group, support.offered, support.answered) == ("support", 1, 1)
    assert total.offered == 1


def test_cli_campaign_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "calls.db"
    scenario(db)
    assert main(["report", "--store", str(db), "--campaign", "spring", "--from", "2026-11-02",
                 "--to", "2026-11-02", "--csv"]) == 0
    rows = dict(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows["attempts"] == "10"
    assert rows["connects"] == "4"
    assert rows["right-party contacts"] == "3"
    assert rows["contact rate"] == "60.0%"
    assert rows["abandon rate"] == "16.7%"
    assert rows["disposition 1"] == "2"
    assert rows["agent anna talk s"] == "180"
    assert main(["report", "--store", str(db), "--campaign", "spring", "--from", "2026-11-02",
                 "--to", "2026-11-02"]) == 0
    table = capsys.readouterr().out
    assert any(line.split() == ["right-party", "contacts", "3"] for line in table.splitlines())


def test_cli_campaign_report_of_an_old_store(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "calls.db"
    CallStore(db).close()
    assert main(["report", "--store", str(db), "--campaign", "spring", "--from", "2026-11-02",
                 "--to", "2026-11-02", "--csv"]) == 0
    rows = dict(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert (rows["attempts"], rows["contact rate"]) == ("0", "-")

"""ivr report with dispositions: calls by disposition and ticket-based FCR on a scripted day."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.report import compute
from ivr.store import CallRecord, CallStore

T0 = datetime(2026, 11, 2, 9, 0).timestamp()  # local time, as the report reads it

CONFIG = """
sip: {listen: 127.0.0.1:5999}
trunks:
  gw: {sources: [192.0.2.1]}
flow: flow.yaml
store: calls.db
dispositions:
  "1": {label: resolved, resolves: true}
  "2": {label: callback}
  "3": {label: escalated}
"""

FLOW = """
flow: f
languages: [en]
start: bye
nodes:
  bye: {type: hangup}
"""

# call id, agent, caller, ticket, its call number in the ticket, disposition
ANSWERED = [
    ("c1", "anna", "3330000001", "1001", 1, "1"),   # resolved at the first call
    ("c2", "anna", "3330000002", "1002", 1, "2"),   # a callback promised: not resolved
    ("c3", "anna", "3330000002", "1002", 2, "1"),   # resolved, but at the second call
    ("c4", "marco", "3330000004", "1003", 1, "3"),  # escalated
    ("c5", "marco", "3330000005", "1004", 1, "1"),  # resolved at the first call
    ("c6", "marco", "", None, None, None),          # withheld: no ticket, no disposition
]


def scenario(path: Path) -> list[dict[str, object]]:
    store = CallStore(path)
    for i, (call_id, agent, caller, ticket, seq, code) in enumerate(ANSWERED):
        start = T0 + i * 600
        rec = CallRecord(call_id, started_at=start, caller=caller, queue="support",
                         queued_at=start + 5, agent=agent, ticket=ticket, ticket_seq=seq,
                         disposition=code)
        rec.connected_at = start + 15
        rec.finish(start + 115, "completed")
        store.save(rec)
    gone = CallRecord("c7", started_at=T0 + 3600 * 2, caller="3330000007", queue="support",
                      queued_at=T0 + 3600 * 2 + 5)
    gone.finish(T0 + 3600 * 2 + 40, "abandoned_queue")
    store.save(gone)
    assert store.close() == 0
    return [dict(r) for r in CallStore(path).rows()]


def test_compute_counts_dispositions_and_fcr_by_ticket(tmp_path: Path) -> None:
    calls = scenario(tmp_path / "calls.db")
    by_agent = compute(calls, [], start=T0, end=T0 + 86400, by="agent", resolving={"1"})
    assert [(r.group, r.answered, r.fcr, r.dispositions) for r in by_agent] == [
        ("anna", 3, 1 / 2, {"1": 2, "2": 1}),
        ("marco", 3, 1 / 2, {"1": 1, "3": 1}),
        ("total", 6, 2 / 4, {"1": 3, "2": 1, "3": 1}),
    ]
    # without dispositions configured, FCR keeps its repeat-call definition
    plain = compute(calls, [], start=T0, end=T0 + 86400, by="queue")
    assert plain[0].fcr == pytest.approx(4 / 5)  # c2's number called again (c3)


def test_report_with_the_config_shows_a_column_per_disposition(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    (tmp_path / "ivr.yaml").write_text(CONFIG)
    (tmp_path / "flow.yaml").write_text(FLOW)
    scenario(tmp_path / "calls.db")
    assert main(["report", "--config", str(tmp_path / "ivr.yaml"), "--from", "2026-11-02",
                 "--to", "2026-11-02", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["queue"], r["answered"], r["abandoned"], r["fcr"], r["disposition_resolved"],
             r["disposition_callback"], r["disposition_escalated"]) for r in rows] == [
        ("support", "6", "1", "0.5000", "3", "1", "1"),
        ("total", "6", "1", "0.5000", "3", "1", "1"),
    ]
    assert main(["report", "--config", str(tmp_path / "ivr.yaml"), "--from", "2026-11-02",
                 "--to", "2026-11-02"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header[-3:] == ["resolved", "callback", "escalated"]

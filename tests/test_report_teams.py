"""ivr report --by agent|team and the per-agent metrics on one scripted day.

The day is driven through the router by hand (as the switchboard does), so the queue log is the
real one; the dispositions are logged as the core logs them. Every figure is checked exactly,
and the metrics fed the same events agree with the report.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ivr.cli import main
from ivr.metrics import MAX_PAUSE_REASONS, Metrics
from ivr.report import NO_TEAM, ReportRow, compute, read_rows
from ivr.store import CallRecord, CallStore, QueueEventRow
from routing.acd import QueueEvent, QueueSpec, RingAgent, Router

T0 = datetime(2026, 11, 2, 9, 0).timestamp()  # local time, as the report reads it
END = T0 + 86400
RESOLVES = {"1": True, "2": False}
LABELS = {"1": "resolved", "2": "callback"}
TEAMS = {"anna": "front", "marco": "front", "laura": "front", "paolo": "back"}
# call id -> (its ticket's call number, caller)
TICKETS = {"c1": (1, "3330000001"), "c2": (1, "3330000002"), "c3": (2, "3330000003"),
           "c4": (1, "3330000004")}


class Day:
    """The router and the queue log of the scripted day, times in seconds after T0."""

    def __init__(self) -> None:
        self.router = Router([QueueSpec("front", ("anna", "marco", "laura"), wrap_up=30,
                                        escalate_to="back"),
                              QueueSpec("back", ("paolo",), wrap_up=20)], now=T0)
        self.log: list[QueueEvent] = []
        self.dispositions: dict[str, str] = {}

    def drain(self) -> None:
        self.log += self.router.drain_log()

    def join(self, call_id: str, at: float, expected: str) -> None:
        rings = [a for a in self.router.join(call_id, "front", T0 + at)
                 if isinstance(a, RingAgent)]
        assert [r.agent for r in rings] == [expected]
        self.drain()

    def ring_after_escalation(self, call_id: str, at: float, expected: str) -> None:
        rings = [a for a in self.router.escalate(call_id, T0 + at) if isinstance(a, RingAgent)]
        assert [r.agent for r in rings] == [expected]
        self.drain()

    def do(self, at: float, method: str, *args: str) -> None:
        getattr(self.router, method)(*args, T0 + at)
        self.drain()

    def pause(self, at: float, agent: str, reason: str) -> None:
        self.router.pause(agent, T0 + at, reason)
        self.drain()

    def timer(self, at: float) -> None:
        self.router.on_timer(T0 + at)
        self.drain()

    def dispose(self, at: float, call_id: str, agent: str, code: str) -> None:
        """As the core logs a disposition the agent keyed."""
        self.dispositions[call_id] = code
        self.log.append(QueueEvent(T0 + at, "disposition", "", call_id, agent, {
            "code": code, "label": LABELS[code], "resolves": RESOLVES[code],
            "first_call": TICKETS[call_id][0] == 1}))


def scripted_day() -> Day:
    d = Day()
    d.pause(0, "marco", "training")
    d.pause(0, "laura", "break")
    # c1: anna answers, resolves it at the first call; 100 s talk, 30 s wrap-up
    d.join("c1", 100, "anna")
    d.do(105, "answered", "c1", "anna")
    d.do(205, "finished", "c1")
    d.dispose(210, "c1", "anna", "1")
    d.timer(235)
    d.do(600, "unpause", "laura")
    # c2: anna escalates it after 60 s; paolo talks 120 s and promises a callback
    d.join("c2", 700, "anna")
    d.do(710, "answered", "c2", "anna")
    d.ring_after_escalation("c2", 770, "paolo")
    d.do(780, "answered", "c2", "paolo")
    d.timer(800)
    d.do(900, "finished", "c2")
    d.dispose(905, "c2", "paolo", "2")
    d.timer(920)
    # c3: a repeat caller; laura resolves it, but not at the ticket's first call
    d.join("c3", 1000, "laura")
    d.do(1010, "answered", "c3", "laura")
    d.do(1310, "finished", "c3")
    d.dispose(1320, "c3", "laura", "1")
    d.timer(1340)
    d.do(1800, "unpause", "marco")
    d.pause(2000, "anna", "lunch")
    d.pause(3000, "laura", "break")
    d.do(3900, "unpause", "laura")
    # c4: marco escalates it; paolo resolves it, the ticket's first call
    d.pause(3950, "laura", "coaching")
    d.join("c4", 4000, "marco")
    d.do(4005, "answered", "c4", "marco")
    d.ring_after_escalation("c4", 4065, "paolo")
    d.do(4070, "answered", "c4", "paolo")
    d.timer(4095)
    d.do(4170, "finished", "c4")
    d.dispose(4175, "c4", "paolo", "1")
    d.timer(4190)
    d.do(4200, "unpause", "laura")
    d.do(5600, "logout", "anna")
    return d


def records(d: Day) -> list[CallRecord]:
    """The call records as the switchboard writes them: the last agent's connect."""
    calls: dict[str, CallRecord] = {}
    for e in d.log:
        if not e.call_id or e.kind == "disposition":
            continue
        seq, caller = TICKETS[e.call_id]
        rec = calls.setdefault(e.call_id, CallRecord(
            e.call_id, started_at=e.at, caller=caller, queue=e.queue, queued_at=e.at,
            ticket=f"T{e.call_id}", ticket_seq=seq, disposition=d.dispositions[e.call_id]))
        if e.kind == "connect":
            rec.agent, rec.connected_at, rec.queue = e.agent, e.at, e.queue
        elif e.kind == "complete":
            rec.finish(e.at, "completed")
    return list(calls.values())


def stored(tmp_path: Path, d: Day) -> Path:
    path = tmp_path / "calls.db"
    store = CallStore(path)
    for rec in records(d):
        store.save(rec)
    store.add_events([QueueEventRow(e.at, e.kind, e.queue, e.call_id, e.agent, dict(e.detail))
                      for e in d.log])
    assert store.close() == 0
    return path


def figures(rows: Sequence[ReportRow]) -> dict[str, tuple[object, ...]]:
    return {r.group: (r.answered, r.aht, r.wrap_up, r.escalations, r.first_contact, r.fcr,
                      r.dispositions, r.pauses) for r in rows}


def test_by_agent_every_figure_exactly(tmp_path: Path) -> None:
    calls, events = read_rows(stored(tmp_path, scripted_day()), T0, END, fcr_days=7)
    rows = compute(calls, events, start=T0, end=END, by="agent", resolving={"1"})
    assert figures(rows) == {
        # c1 only: c2 counts for paolo, who took it last; anna's escalation of it is hers
        "anna": (1, 130.0, 30.0, 1, 1, 1.0, {"1": 1}, {"lunch": 3600.0}),
        "laura": (1, 330.0, 30.0, 0, 0, None, {"1": 1},
                  {"break": 1500.0, "coaching": 250.0}),
        "marco": (0, None, 30.0, 1, 0, None, {}, {"training": 1800.0}),
        "paolo": (2, 130.0, 20.0, 0, 1, 0.5, {"1": 1, "2": 1}, {}),
        "total": (4, 180.0, 160 / 6, 2, 2, 2 / 3, {"1": 3, "2": 1},
                  {"break": 1500.0, "coaching": 250.0, "lunch": 3600.0,
                   "training": 1800.0}),
    }
    anna = rows[0]
    assert anna.occupancy == 100 / 5600  # logged out at T0 + 5600, in since the window began


def test_by_team_sums_its_members_and_a_leader_who_is_an_agent(tmp_path: Path) -> None:
    calls, events = read_rows(stored(tmp_path, scripted_day()), T0, END, fcr_days=7)
    rows = compute(calls, events, start=T0, end=END, by="team", resolving={"1"},
                   teams={**TEAMS, "ugo": "night"})
    assert figures(rows) == {
        "back": (2, 130.0, 20.0, 0, 1, 0.5, {"1": 1, "2": 1}, {}),
        "front": (2, 230.0, 30.0, 2, 1, 1.0, {"1": 2},
                  {"break": 1500.0, "coaching": 250.0, "lunch": 3600.0,
                   "training": 1800.0}),
        "night": (0, None, None, 0, 0, None, {}, {}),  # a team without a call yet
        "total": (4, 180.0, 160 / 6, 2, 2, 2 / 3, {"1": 3, "2": 1},
                  {"break": 1500.0, "coaching": 250.0, "lunch": 3600.0,
                   "training": 1800.0}),
    }
    without_paolo = compute(calls, events, start=T0, end=END, by="team", resolving={"1"},
                            teams={a: t for a, t in TEAMS.items() if a != "paolo"})
    assert [r.group for r in without_paolo] == [NO_TEAM, "front", "total"]


def test_a_pause_cut_by_the_window_counts_its_part_inside() -> None:
    events = [{"at": 50.0, "kind": "unpause", "agent": "a", "detail": {}},
              {"at": 80.0, "kind": "pause", "agent": "a", "detail": {"reason": "lunch"}},
              {"at": 90.0, "kind": "pause", "agent": "b", "detail": {"reason": "no answer"}},
              {"at": 95.0, "kind": "logout", "agent": "b", "detail": {}}]
    (a, total) = compute([], events, start=0.0, end=100.0, by="agent")[::2]
    assert (a.group, a.pauses) == ("a", {"lunch": 20.0, "unknown": 50.0})
    assert total.pauses == {"lunch": 20.0, "no answer": 5.0, "unknown": 50.0}


def test_the_metrics_of_the_same_day_agree_with_the_report(tmp_path: Path) -> None:
    d = scripted_day()
    metrics = Metrics(CollectorRegistry(), process=False)
    for e in d.log:
        metrics.queue_event(e.kind, e.queue, e.at, e.detail, e.agent)
    calls, events = read_rows(stored(tmp_path, d), T0, END, fcr_days=7)
    rows = {r.group: r for r in compute(calls, events, start=T0, end=END, by="agent",
                                        resolving={"1"})}

    def value(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    for agent in ("anna", "laura", "marco", "paolo"):
        row = rows[agent]
        assert value("ivr_agent_escalations_total", agent=agent) == row.escalations
        assert value("ivr_agent_tickets_resolved_first_call_total", agent=agent) \
            == row.first_contact
        wraps = value("ivr_agent_wrap_ups_total", agent=agent)
        assert value("ivr_agent_wrap_up_time_seconds_total", agent=agent) / wraps == row.wrap_up
        for reason, seconds in row.pauses.items():
            assert value("ivr_agent_pause_seconds_total", agent=agent, reason=reason) == seconds
        for code, n in row.dispositions.items():
            assert value("ivr_agent_dispositions_total", agent=agent,
                         disposition=LABELS[code]) == n


def test_pause_reasons_in_the_metrics_are_bounded() -> None:
    metrics = Metrics(CollectorRegistry(), process=False)
    for i in range(MAX_PAUSE_REASONS + 3):
        metrics.queue_event("pause", "", 10.0 * i, {"reason": f"r{i}"}, "anna")
        metrics.queue_event("unpause", "", 10.0 * i + 4, {}, "anna")
    other = metrics.registry.get_sample_value("ivr_agent_pause_seconds_total",
                                              {"agent": "anna", "reason": "other"})
    assert other == 12.0
    assert metrics.registry.get_sample_value("ivr_agent_pause_seconds_total",
                                             {"agent": "anna", "reason": "r0"}) == 4.0


CONFIG = """
sip: {listen: 127.0.0.1:5999}
trunks:
  gw: {sources: [192.0.2.1]}
flow: flow.yaml
store: calls.db
agents:
  anna: {uri: "sip:anna@192.0.2.10"}
  marco: {uri: "sip:marco@192.0.2.11"}
  laura: {uri: "sip:laura@192.0.2.12"}
  paolo: {uri: "sip:paolo@192.0.2.13"}
dispositions:
  "1": {label: resolved, resolves: true}
  "2": {label: callback}
teams:
  front: {leader: laura, members: [anna, marco]}
"""

FLOW = """
flow: f
languages: [en]
start: bye
nodes:
  bye: {type: hangup}
"""


def test_report_by_team_from_the_config(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ivr.yaml").write_text(CONFIG)
    (tmp_path / "flow.yaml").write_text(FLOW)
    stored(tmp_path, scripted_day())
    args = ["report", "--config", str(tmp_path / "ivr.yaml"), "--from", "2026-11-02T09:00",
            "--to", "2026-11-03T09:00", "--by", "team"]
    assert main([*args, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["team"], r["answered"], r["aht"], r["wrap_up"], r["escalations"],
             r["first_contact"], r["fcr"], r["disposition_resolved"], r["disposition_callback"],
             r["pause_lunch"], r["pause_training"]) for r in rows] == [
        (NO_TEAM, "2", "130.00", "20.00", "0", "1", "0.5000", "1", "1", "0.00", "0.00"),
        ("front", "2", "230.00", "30.00", "2", "1", "1.0000", "2", "0", "3600.00", "1800.00"),
        ("total", "4", "180.00", "26.67", "2", "2", "0.6667", "3", "1", "3600.00", "1800.00"),
    ]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["team", "calls", "AHT", "s", "wrap", "s", "escalated", "FCR",
                                "n", "FCR", "occup", "resolved", "callback", "pause", "break",
                                "pause", "coaching", "pause", "lunch", "pause", "training"]
    assert lines[2].split() == ["front", "2", "230.0", "30.0", "2", "1", "100.0%", "2", "0",
                                "0:25:00", "0:04:10", "1:00:00", "0:30:00"]

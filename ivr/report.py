"""Contact-centre reports from the call records (``ivr report``).

The figures are computed by pure functions over lists of rows (mappings with the columns of the
``calls`` and ``queue_events`` tables), so tests can feed rows directly; :func:`read_rows` is the
thin SQLite part. Definitions (see README, "Reports and retention"):

* offered: calls in the window (by ``started_at``) that reached a queue (``queue`` set);
* answered: offered calls an agent took (``connected_at`` set);
* abandoned: offered calls with outcome ``abandoned_queue``;
* SL = answered within the threshold / answered;
  SL2 = (answered within + abandoned within the threshold) / (answered + abandoned);
* ASA = mean wait of answered calls; AHT = mean talk + wrap-up (talk only when no wrap-up is
  recorded for the call);
* escalation rate = offered calls with an ``escalate`` event / (answered + abandoned);
* FCR = answered calls from a known number that were not escalated and after whose end the same
  number did not call again within ``fcr_days`` days / answered calls from a known number;
  with ``dispositions`` in ivr.yaml it is ticket-based: answered calls that opened their ticket
  (``ticket_seq`` 1) and got a disposition that resolves / answered calls that opened a ticket;
* calls by disposition: answered calls by the last disposition code the agent keyed;
* occupancy (by agent) = talk seconds / logged-in seconds from login/logout events in the window;
* by agent or team (``teams`` in ivr.yaml; agents in none form the group "(no team)"), also:
  escalations made (the agent's own ``*9``: ``escalate`` events of kind ``agent``), tickets
  resolved at first contact (answered calls with ``ticket_seq`` 1 and a resolving
  disposition), average wrap-up (``wrap_up_end`` events) and pause seconds by reason (from a
  ``pause`` event to the agent's next ``unpause``/``logout``, within the window; a pause begun
  before the window counts from its start as reason "unknown").
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from ivr.errors import RecordsError
from ivr.preflight import record_file_problem

Row = Mapping[str, Any]

GROUPINGS = ("queue", "agent", "team", "day", "hour")
PEOPLE = ("agent", "team")
NO_TEAM = "(no team)"
UNKNOWN_REASON = "unknown"
WITHHELD = {"", "anonymous", "unknown", "withheld", "private", "restricted", "unavailable"}
DAY = 86400.0


def is_withheld(number: str | None) -> bool:
    return number is None or number.strip().lower() in WITHHELD


def parse_time(text: str, *, end: bool = False) -> float:
    """'YYYY-MM-DD' or 'YYYY-MM-DDTHH:MM' in the machine's local time -> Unix seconds.

    A bare date given as the end of a window means the end of that day (midnight after it).
    """
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            moment = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if end and fmt == "%Y-%m-%d":
            moment += timedelta(days=1)
        return moment.timestamp()
    raise ValueError(f"'{text}' is not a date such as 2026-11-02 or 2026-11-02T08:30")


@dataclass
class ReportRow:
    group: str
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    sl: float | None = None
    sl2: float | None = None
    asa: float | None = None
    aht: float | None = None
    abandonment: float | None = None
    escalation: float | None = None
    fcr: float | None = None
    occupancy: float | None = None
    dispositions: dict[str, int] = field(default_factory=dict)
    """Answered calls by disposition code (those with none are not counted)."""
    escalations: int = 0
    """By agent or team: calls the agent(s) escalated with the escalate feature code."""
    first_contact: int = 0
    """By agent or team: tickets resolved at first contact."""
    wrap_up: float | None = None
    """By agent or team: mean wrap-up seconds."""
    pauses: dict[str, float] = field(default_factory=dict)
    """By agent or team: pause seconds by reason."""


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _group_key(call: Row, by: str, teams: Mapping[str, str]) -> str:
    if by == "queue":
        return str(call["queue"])
    if by == "agent":
        return str(call["agent"] or "")
    if by == "team":
        return teams.get(str(call["agent"] or ""), NO_TEAM)
    moment = datetime.fromtimestamp(float(call["started_at"]))  # local time of this machine
    return moment.strftime("%Y-%m-%d") if by == "day" else moment.strftime("%Y-%m-%d %H:00")


def _wrap_ups(events: Sequence[Row]) -> dict[str, float]:
    """call id -> wrap-up seconds: from its ``complete`` to the agent's next ``wrap_up_end``."""
    out: dict[str, float] = {}
    open_calls: dict[str, tuple[str, float]] = {}  # agent -> (call id, completed at)
    for e in sorted(events, key=lambda e: float(e["at"])):
        if e["kind"] == "complete" and e["agent"]:
            open_calls[e["agent"]] = (e["call_id"], float(e["at"]))
        elif e["kind"] == "connect" and e["agent"]:
            open_calls.pop(e["agent"], None)
        elif e["kind"] == "wrap_up_end" and e["agent"] in open_calls:
            call_id, done = open_calls.pop(e["agent"])
            out[call_id] = float(e["at"]) - done
    return out


def _logged_in_seconds(events: Sequence[Row], start: float, end: float) -> dict[str, float]:
    """agent -> seconds logged in within [start, end), for agents with login/logout events.

    A logout without an earlier login in the window means logged in since the window's start;
    a login without a later logout, until its end. Agents without such events are unknown.
    """
    out: dict[str, float] = {}
    since: dict[str, float | None] = {}
    for e in sorted(events, key=lambda e: float(e["at"])):
        at, agent = float(e["at"]), e["agent"]
        if not agent or not start <= at < end or e["kind"] not in ("login", "logout"):
            continue
        out.setdefault(agent, 0.0)
        if e["kind"] == "login":
            since.setdefault(agent, None)
            if since[agent] is None:
                since[agent] = at
        else:
            began = since.get(agent, start)
            if agent not in since or began is not None:
                out[agent] += at - (start if began is None else began)
            since[agent] = None
    for agent, began in since.items():
        if began is not None:
            out[agent] += end - began
    return out


def _pause_seconds(events: Sequence[Row], start: float,
                   end: float) -> dict[str, dict[str, float]]:
    """agent -> pause reason -> seconds paused within [start, end)."""
    out: dict[str, dict[str, float]] = {}
    since: dict[str, tuple[float, str]] = {}

    def add(agent: str, reason: str, began: float, ended: float) -> None:
        seconds = min(ended, end) - max(began, start)
        if seconds > 0:
            reasons = out.setdefault(agent, {})
            reasons[reason] = reasons.get(reason, 0.0) + seconds

    for e in sorted(events, key=lambda e: float(e["at"])):
        at, agent, kind = float(e["at"]), e["agent"], e["kind"]
        if not agent or at >= end:
            continue
        if kind == "pause":
            detail = e.get("detail")
            reason = detail.get("reason") if isinstance(detail, dict) else None
            since.setdefault(agent, (at, str(reason or UNKNOWN_REASON)))
        elif kind in ("unpause", "logout", "login") and agent in since:
            began, reason = since.pop(agent)
            add(agent, reason, began, at)
        elif kind == "unpause":
            add(agent, UNKNOWN_REASON, start, at)
    for agent, (began, reason) in since.items():
        add(agent, reason, began, end)
    return out


@dataclass
class _People:
    """Event-based figures of one agent or team."""

    escalations: int = 0
    wraps: list[float] = field(default_factory=list)
    pauses: dict[str, float] = field(default_factory=dict)


def _people(events: Sequence[Row], start: float, end: float,
            key: Callable[[str], str]) -> dict[str, _People]:
    """Group (agent or team, by *key* of the agent) -> its escalations, wrap-ups, pauses."""
    out: dict[str, _People] = {}
    for e in events:
        agent = e["agent"]
        if not agent or not start <= float(e["at"]) < end:
            continue
        detail = e.get("detail")
        if not isinstance(detail, dict):
            detail = {}
        if e["kind"] == "escalate" and detail.get("kind") == "agent":
            out.setdefault(key(agent), _People()).escalations += 1
        elif e["kind"] == "wrap_up_end" and "wrap" in detail:
            out.setdefault(key(agent), _People()).wraps.append(float(detail["wrap"]))
    for agent, reasons in _pause_seconds(events, start, end).items():
        pauses = out.setdefault(key(agent), _People()).pauses
        for reason, seconds in reasons.items():
            pauses[reason] = pauses.get(reason, 0.0) + seconds
    return out


def _people_groups(groups: dict[str, list[Row]], events: Sequence[Row], start: float,
                   end: float, by: str, team_of: Mapping[str, str]) -> dict[str, _People]:
    """By agent or team: the event-based figures of each group; *groups* gains those with
    events but no calls (and, by team, every team)."""
    if by not in PEOPLE:
        return {}
    people = _people(events, start, end,
                     (lambda a: a) if by == "agent" else (lambda a: team_of.get(a, NO_TEAM)))
    for name in [*people, *(team_of.values() if by == "team" else ())]:
        groups.setdefault(name, [])
    return people


def _add_queues_left(groups: dict[str, list[Row]], offered: list[Row],
                     events: list[Row]) -> set[tuple[str, str]]:
    """Add each caller escalated to another queue to the group of the queue they left, and
    return those (queue, call id) pairs.

    Such a caller was offered to the queue they left too (as the queue log and the metrics
    count them), though answered or abandoned elsewhere.
    """
    passed: set[tuple[str, str]] = set()
    for e in events:
        detail = e["detail"] if isinstance(e["detail"], dict) else {}
        source, target = detail.get("from_queue"), detail.get("to_queue")
        if e["kind"] != "escalate" or not source or not target or source == target:
            continue
        for c in offered:
            if c["call_id"] == e["call_id"] and c["queue"] != source \
                    and (source, c["call_id"]) not in passed:
                passed.add((source, c["call_id"]))
                groups.setdefault(source, []).append(c)
    return passed


def compute(calls: Iterable[Row], events: Iterable[Row], *, start: float, end: float,
            by: str = "queue", threshold: float = 20.0, fcr_days: float = 7.0,
            total: bool = True, resolving: Collection[str] | None = None,
            teams: Mapping[str, str] | None = None) -> list[ReportRow]:
    """The report's rows, one per group (sorted) and a final 'total' row if *total*.

    *calls* may include calls after *end* (up to ``fcr_days`` later): they count only as
    repeat calls for FCR. *events* are the queue events of the same period. *resolving*: the
    disposition codes that resolve a ticket; given, FCR is ticket-based (see the module doc).
    *teams*: agent -> team, for ``by="team"`` (every team named there gets a row).
    """
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping '{by}'")
    all_calls = [c for c in calls if c.get("direction") != "out"]  # the dialler's: --campaign
    all_events = list(events)
    escalated = {e["call_id"] for e in all_events if e["kind"] == "escalate" and e["call_id"]}
    wrap = _wrap_ups(all_events)
    later: dict[str, list[float]] = {}
    for c in all_calls:
        if c["source"] != "callback" and not is_withheld(c["caller"]):
            later.setdefault(c["caller"], []).append(float(c["started_at"]))

    team_of = dict(teams or {})
    offered = [c for c in all_calls if c["queue"] and start <= float(c["started_at"]) < end]
    if by in PEOPLE:
        offered = [c for c in offered if c["agent"]]
    groups: dict[str, list[Row]] = {}
    for c in offered:
        groups.setdefault(_group_key(c, by, team_of), []).append(c)
    passed = _add_queues_left(groups, offered, all_events) if by == "queue" else set()
    logged = _logged_in_seconds(all_events, start, end) if by == "agent" else {}
    people = _people_groups(groups, all_events, start, end, by, team_of)

    def _called_again(c: Row) -> bool:
        ended = float(c["ended_at"] if c["ended_at"] is not None else c["started_at"])
        return any(ended < t <= ended + fcr_days * DAY for t in later.get(c["caller"], []))

    def row_for(name: str, group: list[Row], occupancy_known: bool) -> ReportRow:
        served_here = [c for c in group if (name, c["call_id"]) not in passed]
        answered = [c for c in served_here if c["connected_at"] is not None]
        abandoned = [c for c in served_here if c["outcome"] == "abandoned_queue"]
        ans_in = sum(1 for c in answered if float(c["wait_seconds"] or 0) <= threshold)
        ab_in = sum(1 for c in abandoned if float(c["wait_seconds"] or 0) <= threshold)
        handled = [c for c in answered if c["talk_seconds"] is not None]
        if resolving is not None:
            fcr_base = [c for c in answered if c.get("ticket_seq") == 1]
            resolved = sum(1 for c in fcr_base if c.get("disposition") in resolving)
        else:
            fcr_base = [c for c in answered if not is_withheld(c["caller"])]
            resolved = sum(1 for c in fcr_base
                           if c["call_id"] not in escalated and not _called_again(c))
        codes = [str(c.get("disposition")) for c in answered if c.get("disposition")]
        both = len(answered) + len(abandoned)
        occupancy = None
        if occupancy_known and logged.get(name):
            occupancy = sum(float(c["talk_seconds"]) for c in handled) / logged[name]
        return ReportRow(
            group=name, offered=len(group), answered=len(answered), abandoned=len(abandoned),
            sl=_ratio(ans_in, len(answered)), sl2=_ratio(ans_in + ab_in, both),
            asa=_mean([float(c["wait_seconds"] or 0) for c in answered]),
            aht=_mean([float(c["talk_seconds"]) + wrap.get(c["call_id"], 0.0) for c in handled]),
            abandonment=_ratio(len(abandoned), len(group)),
            escalation=_ratio(sum(1 for c in group if c["call_id"] in escalated), both),
            fcr=_ratio(resolved, len(fcr_base)), occupancy=occupancy,
            dispositions={code: codes.count(code) for code in sorted(set(codes))},
            first_contact=sum(1 for c in answered if c.get("ticket_seq") == 1
                              and c.get("disposition") in (resolving or ())))

    rows = [_with_people(row_for(name, groups[name], by == "agent"), [people.get(name)])
            for name in sorted(groups)]
    if total:
        rows.append(_with_people(row_for("total", offered, False),
                                 list(people.values()) if by in PEOPLE else []))
    return rows


def _with_people(row: ReportRow, figures: Sequence[_People | None]) -> ReportRow:
    """*row* with the event-based figures of its agents or teams."""
    wraps: list[float] = []
    for f in figures:
        if f is None:
            continue
        row.escalations += f.escalations
        wraps += f.wraps
        for reason, seconds in f.pauses.items():
            row.pauses[reason] = row.pauses.get(reason, 0.0) + seconds
    row.wrap_up = _mean(wraps)
    row.pauses = dict(sorted(row.pauses.items()))
    return row


COLUMNS = ("group", "offered", "answered", "abandoned", "sl", "sl2", "asa", "aht",
           "abandonment", "escalation", "fcr", "occupancy")
PEOPLE_COLUMNS = ("group", "answered", "aht", "wrap_up", "escalations", "first_contact", "fcr",
                  "occupancy")
"""The columns by agent or team (queue figures such as SL mean little for one agent)."""
_HEADERS = {"sl": "SL", "sl2": "SL2", "asa": "ASA s", "aht": "AHT s", "abandonment": "aband",
            "escalation": "escal", "fcr": "FCR", "occupancy": "occup", "wrap_up": "wrap s",
            "escalations": "escalated", "first_contact": "FCR n"}
_PERCENT = ("sl", "sl2", "abandonment", "escalation", "fcr", "occupancy")


def _cell(row: ReportRow, column: str, *, csv_form: bool) -> str:
    value = getattr(row, column)
    if value is None:
        return ""
    if column in _PERCENT:
        return f"{value:.4f}" if csv_form else f"{value:.1%}"
    if column in ("asa", "aht", "wrap_up"):
        return f"{value:.2f}" if csv_form else f"{value:.1f}"
    return str(value)


def _disposition_cells(row: ReportRow, labels: Mapping[str, str]) -> list[str]:
    return [str(row.dispositions.get(code, 0)) for code in labels]


def _columns(by: str) -> tuple[str, ...]:
    return PEOPLE_COLUMNS if by in PEOPLE else COLUMNS


def _reasons(rows: Sequence[ReportRow]) -> list[str]:
    """Every pause reason of the rows, sorted."""
    return sorted({reason for r in rows for reason in r.pauses})


def _pause_cells(row: ReportRow, reasons: Sequence[str], *, csv_form: bool) -> list[str]:
    cells = []
    for reason in reasons:
        seconds = row.pauses.get(reason, 0.0)
        minutes, sec = divmod(round(seconds), 60)
        cells.append(f"{seconds:.2f}" if csv_form
                     else f"{minutes // 60}:{minutes % 60:02}:{sec:02}")
    return cells


def format_table(rows: Sequence[ReportRow], by: str,
                 labels: Mapping[str, str] | None = None) -> str:
    """The report as an aligned table; *labels* (disposition code -> label) adds a column of
    calls for each disposition."""
    labels = labels or {}
    columns, reasons = _columns(by), _reasons(rows)
    headers = [by if c == "group" else _HEADERS.get(c, c) for c in columns]
    if by in PEOPLE:
        headers[columns.index("answered")] = "calls"
    headers += list(labels.values()) + [f"pause {reason}" for reason in reasons]
    cells = [[_cell(r, c, csv_form=False) for c in columns] + _disposition_cells(r, labels)
             + _pause_cells(r, reasons, csv_form=False) for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(headers, widths, strict=True)))]
    for line in cells:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                               for i, (v, w) in enumerate(zip(line, widths, strict=True))))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def format_csv(rows: Sequence[ReportRow], by: str,
               labels: Mapping[str, str] | None = None) -> str:
    labels = labels or {}
    columns, reasons = _columns(by), _reasons(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([by if c == "group" else c for c in columns]
                    + [f"disposition_{label}" for label in labels.values()]
                    + [f"pause_{reason}" for reason in reasons])
    for r in rows:
        writer.writerow([_cell(r, c, csv_form=True) for c in columns]
                        + _disposition_cells(r, labels) + _pause_cells(r, reasons, csv_form=True))
    return out.getvalue()


def open_records(store_path: Path) -> sqlite3.Connection:
    """A read-only connection to the store, rows as :class:`sqlite3.Row`; raises
    :class:`~ivr.errors.RecordsError` for a file that is not a store (never creates one)."""
    problem = record_file_problem(store_path)
    if problem is not None:
        raise RecordsError(problem)
    db = sqlite3.connect(f"{Path(store_path).resolve().as_uri()}?mode=ro", uri=True,
                         timeout=5.0)
    db.row_factory = sqlite3.Row
    return db


def read_rows(store_path: Path, start: float, end: float,
              fcr_days: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Calls started in [start, end + fcr_days) and queue events in [start, end), read-only.

    Raises :class:`~ivr.errors.RecordsError` if *store_path* is not a call record database
    (missing, a folder, text, another program's SQLite file); the file is never created.
    """
    db = open_records(store_path)
    try:
        calls = [dict(r) for r in db.execute(
            "SELECT * FROM calls WHERE started_at >= ? AND started_at < ? ORDER BY started_at",
            (start, end + fcr_days * DAY))]
        events = []
        for r in db.execute("SELECT at, kind, queue, call_id, agent, detail FROM queue_events "
                            "WHERE at >= ? AND at < ? ORDER BY at, id", (start, end + DAY)):
            event = dict(r)
            try:
                event["detail"] = json.loads(event["detail"] or "{}")
            except ValueError:
                event["detail"] = {}
            events.append(event)
    finally:
        db.close()
    return calls, events


# -- campaigns (``ivr report --campaign NAME``) ---------------------------------------------------

DIALLED = ("answered", "busy", "no_answer", "failed", "abandoned")
"""Attempts' outcomes of a number actually dialled (``not_dialled`` and ``dnc_skipped`` are
decisions not to dial; ``withdrawn``, a dial called off while the phone rang because an
inbound caller waited for the agent, is counted apart: not the contact's outcome)."""
WITHDRAWN = "withdrawn"
BREAK_GAP = 900.0
"""Seconds between two campaign calls of an agent over which the gap is a break, not idle."""


@dataclass
class CampaignReport:
    """A campaign's figures over a window (see :func:`compute_campaign`)."""

    campaign: str
    attempts: int = 0
    """Numbers dialled."""
    not_dialled: dict[str, int] = field(default_factory=dict)
    """Decisions not to dial, by why (no dial_out rule, on the do-not-call list)."""
    withdrawn: int = 0
    """Dials called off before the answer for an inbound caller (not in :attr:`attempts`)."""
    outcomes: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    connects: int = 0
    """Answered and put through to an agent (or, automated, the flow ran)."""
    right_party: int = 0
    abandoned: int = 0
    conversions: dict[str, int] = field(default_factory=dict)
    """Connects by the agent's disposition ('' : none given)."""
    talk: dict[str, float] = field(default_factory=dict)
    """Agent -> seconds talked on the campaign's calls."""
    idle: dict[str, float] = field(default_factory=dict)
    """Agent -> seconds between their campaign calls (gaps up to :data:`BREAK_GAP`)."""

    @property
    def contact_rate(self) -> float | None:
        return _ratio(self.answered, self.attempts)

    @property
    def abandon_rate(self) -> float | None:
        return _ratio(self.abandoned, self.answered)


def compute_campaign(campaign: str, calls: Iterable[Row], attempts: Iterable[Row], *,
                     start: float, end: float,
                     final_dispositions: Collection[str]) -> CampaignReport:
    """A campaign's KPIs from its calls out (``calls`` rows with ``direction`` 'out') and its
    attempts (``outbound_attempts`` rows) started in [start, end):

    * attempts: numbers dialled; contact rate = answered / attempts;
    * connects: answered calls put through to an agent (``connected_at``), or an automated
      campaign's answered calls whose flow ran (``flow`` set, outcome completed);
    * right-party contacts: connects whose disposition is one of *final_dispositions*;
    * conversions: connects by disposition; abandon rate = abandoned / answered;
    * agent talk: talk seconds of the campaign's calls; agent idle: seconds from the end of an
      agent's campaign call to the start of their next (gaps over :data:`BREAK_GAP` are breaks).
    """
    report = CampaignReport(campaign)
    _count_attempts(report, attempts, start, end)
    by_agent: dict[str, list[tuple[float, float]]] = {}
    for c in calls:
        if c.get("direction") != "out" or c.get("campaign") != campaign \
                or not start <= float(c["started_at"]) < end:
            continue
        if c["answered_at"] is not None:
            report.answered += 1
        if c["outcome"] == "abandoned":
            report.abandoned += 1
            continue
        connected = c["connected_at"] is not None or (  # automated: the flow ran
            c["answered_at"] is not None and bool(c["flow"]) and c["outcome"] == "completed")
        if not connected:
            continue
        report.connects += 1
        code = c["disposition"] or ""
        report.conversions[code] = report.conversions.get(code, 0) + 1
        if code and code in final_dispositions:
            report.right_party += 1
        if c["agent"] and c["connected_at"] is not None:
            talk = float(c["talk_seconds"] or 0.0)
            report.talk[c["agent"]] = report.talk.get(c["agent"], 0.0) + talk
            ended = float(c["ended_at"] if c["ended_at"] is not None else c["connected_at"])
            by_agent.setdefault(c["agent"], []).append((float(c["started_at"]), ended))
    for agent, spans in by_agent.items():
        spans.sort()
        report.idle[agent] = sum(nxt - done for (_, done), (nxt, _) in pairwise(spans)
                                 if 0 < nxt - done <= BREAK_GAP)
    return report


def _count_attempts(report: CampaignReport, attempts: Iterable[Row], start: float,
                    end: float) -> None:
    for a in attempts:
        if a["campaign"] != report.campaign or not start <= float(a["at"]) < end:
            continue
        outcome = str(a["outcome"])
        if outcome in DIALLED:
            report.attempts += 1
            report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
        elif outcome == WITHDRAWN:
            report.withdrawn += 1
        else:
            report.not_dialled[outcome] = report.not_dialled.get(outcome, 0) + 1


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def campaign_lines(report: CampaignReport,
                   labels: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """The report as (figure, value) pairs, in the order shown."""
    names = labels or {}
    out = [("campaign", report.campaign), ("attempts", str(report.attempts))]
    out += [(f"attempts {k}", str(v)) for k, v in sorted(report.outcomes.items())]
    out += [(f"not dialled ({k})", str(v)) for k, v in sorted(report.not_dialled.items())]
    if report.withdrawn:
        out.append(("withdrawn for inbound", str(report.withdrawn)))
    out += [("answered", str(report.answered)), ("contact rate", _percent(report.contact_rate)),
            ("connects", str(report.connects)),
            ("right-party contacts", str(report.right_party)),
            ("abandoned", str(report.abandoned)),
            ("abandon rate", _percent(report.abandon_rate))]
    for code, n in sorted(report.conversions.items()):
        label = f"{code} {names[code]}" if code in names else (code or "none")
        out.append((f"disposition {label}", str(n)))
    for agent in sorted(set(report.talk) | set(report.idle)):
        out.append((f"agent {agent} talk s", f"{report.talk.get(agent, 0.0):.0f}"))
        out.append((f"agent {agent} idle s", f"{report.idle.get(agent, 0.0):.0f}"))
    return out


def format_campaign(report: CampaignReport, labels: Mapping[str, str] | None = None, *,
                    csv_form: bool = False) -> str:
    lines = campaign_lines(report, labels)
    if csv_form:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["figure", "value"])
        writer.writerows(lines)
        return out.getvalue()
    width = max(len(k) for k, _ in lines)
    return "".join(f"{k.ljust(width)}  {v}\n" for k, v in lines)


def read_campaign_rows(store_path: Path, campaign: str, start: float, end: float
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """The campaign's calls out and attempts in [start, end), and the dispositions that closed
    its contacts (for right-party contacts when no campaign file says which are final);
    read-only. Raises :class:`~ivr.errors.RecordsError` for a file that is not a store."""
    db = open_records(store_path)
    try:
        columns = {r["name"] for r in db.execute("PRAGMA table_info(calls)")}
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        calls: list[dict[str, Any]] = []
        if "campaign" in columns:
            calls = [dict(r) for r in db.execute(
                "SELECT * FROM calls WHERE campaign = ? AND started_at >= ? AND started_at < ? "
                "ORDER BY started_at", (campaign, start, end))]
        attempts: list[dict[str, Any]] = []
        closing: set[str] = set()
        if "outbound_attempts" in tables:
            attempts = [dict(r) for r in db.execute(
                "SELECT * FROM outbound_attempts WHERE campaign = ? AND at >= ? AND at < ? "
                "ORDER BY at, id", (campaign, start, end))]
            closing = {str(r[0]) for r in db.execute(
                "SELECT DISTINCT disposition FROM outbound_contacts WHERE campaign = ? AND "
                "state IN ('done', 'dnc') AND disposition IS NOT NULL", (campaign,))}
    finally:
        db.close()
    return calls, attempts, closing

"""Reports (``/reports``, team leaders and above): the tables of ``ivr report`` for a window of
days, grouped by queue, agent, team, day, hour or disposition, with charts drawn on the server
(service level by hour of the day against the target, calls by outcome, the IVR's drop-off
funnel), and the same table as CSV (``/reports.csv``, same query).

The figures are :func:`ivr.report.compute`'s, over :func:`ivr.report.read_rows`, run on the
console's I/O threads. Every team leader sees every queue, agent and team (an account is not
tied to the team it leads).
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from markupsafe import Markup

from ivr import report
from ivr.console import charts, i18n
from ivr.console.web import Console, console_of, request_lang, require
from ivr.errors import RecordsError
from ivr.store import OUTCOMES

BYS = (*report.GROUPINGS, "disposition")
PRESETS = ("today", "yesterday", "7d", "month")
SL_TARGET = 0.8
"""The service level the chart draws as the target: the alert rule's (monitoring/alerts.yml)."""
FCR_DAYS = 7.0
"""Days a caller may call again before a call counts as not resolved (``ivr report``'s
default)."""
MAX_DAYS = 366
FUNNEL_NODES = 30
DROPPED = ("abandoned_ivr", "ivr_gave_up")
"""Outcomes of callers who left in the IVR (hung up, or the flow gave up on them)."""
PERCENT = ("sl", "sl2", "abandonment", "escalation", "fcr", "occupancy")
SECONDS = ("asa", "aht", "wrap_up")

i18n.add({
    "en": {
        "reports.title": "Reports",
        "reports.from": "From",
        "reports.to": "To",
        "reports.by": "Group by",
        "reports.show": "Show",
        "reports.csv": "Download CSV",
        "reports.preset.today": "Today",
        "reports.preset.yesterday": "Yesterday",
        "reports.preset.7d": "Last 7 days",
        "reports.preset.month": "This month",
        "reports.by.queue": "Queue",
        "reports.by.agent": "Agent",
        "reports.by.team": "Team",
        "reports.by.day": "Day",
        "reports.by.hour": "Hour",
        "reports.by.disposition": "Disposition",
        "reports.col.offered": "Offered",
        "reports.col.answered": "Answered",
        "reports.col.calls": "Calls",
        "reports.col.abandoned": "Abandoned",
        "reports.col.sl": "SL",
        "reports.col.sl2": "SL2",
        "reports.col.asa": "ASA s",
        "reports.col.aht": "AHT s",
        "reports.col.abandonment": "Abandon %",
        "reports.col.escalation": "Escalated %",
        "reports.col.fcr": "FCR",
        "reports.col.occupancy": "Occupancy",
        "reports.col.wrap_up": "Wrap-up s",
        "reports.col.escalations": "Escalations",
        "reports.col.first_contact": "Resolved 1st call",
        "reports.col.pause": "Pause",
        "reports.col.code": "Code",
        "reports.col.label": "Disposition",
        "reports.col.resolves": "Resolves",
        "reports.col.share": "Share",
        "reports.yes": "yes",
        "reports.no": "no",
        "reports.total": "total",
        "reports.no_team": "(no team)",
        "reports.empty": "No calls in this window.",
        "reports.window": "Window",
        "reports.threshold": "answered within {seconds} s",
        "reports.chart.sl": "Service level by hour of the day",
        "reports.chart.sl_target": "Target {target}",
        "reports.chart.outcomes": "Calls by outcome",
        "reports.chart.funnel": "IVR drop-off",
        "reports.chart.dispositions": "Answered calls by disposition",
        "reports.funnel.flow": "Flow",
        "reports.funnel.help": "Calls that reached each node of the main path; the darker "
                               "part left the IVR there.",
        "reports.funnel.node": "Node",
        "reports.funnel.reached": "Reached",
        "reports.funnel.left": "Left here",
        "reports.funnel.other": "Other nodes",
        "reports.funnel.none": "No IVR path recorded in this window.",
        "reports.error.date": "Dates are like 2026-11-02.",
        "reports.error.order": "'To' must not be before 'From'.",
        "reports.error.long": "At most 366 days at a time.",
        "reports.error.records": "The call records cannot be read: {error}",
        "outcome.completed": "completed",
        "outcome.abandoned_ivr": "left in the IVR",
        "outcome.abandoned_queue": "left in queue",
        "outcome.refused": "refused",
        "outcome.failed": "failed",
        "outcome.interrupted": "interrupted",
        "outcome.callback_requested": "callback requested",
        "outcome.ivr_gave_up": "IVR gave up",
        "outcome.in_progress": "in progress",
    },
    "it": {
        "reports.title": "Report",
        "reports.from": "Dal",
        "reports.to": "Al",
        "reports.by": "Raggruppa per",
        "reports.show": "Mostra",
        "reports.csv": "Scarica CSV",
        "reports.preset.today": "Oggi",
        "reports.preset.yesterday": "Ieri",
        "reports.preset.7d": "Ultimi 7 giorni",
        "reports.preset.month": "Questo mese",
        "reports.by.queue": "Coda",
        "reports.by.agent": "Operatore",
        "reports.by.team": "Squadra",
        "reports.by.day": "Giorno",
        "reports.by.hour": "Ora",
        "reports.by.disposition": "Esito",
        "reports.col.offered": "Offerte",
        "reports.col.answered": "Risposte",
        "reports.col.calls": "Chiamate",
        "reports.col.abandoned": "Abbandonate",
        "reports.col.sl": "SL",
        "reports.col.sl2": "SL2",
        "reports.col.asa": "ASA s",
        "reports.col.aht": "AHT s",
        "reports.col.abandonment": "Abbandono %",
        "reports.col.escalation": "Scalate %",
        "reports.col.fcr": "FCR",
        "reports.col.occupancy": "Occupazione",
        "reports.col.wrap_up": "Post-chiamata s",
        "reports.col.escalations": "Scalate",
        "reports.col.first_contact": "Risolte alla 1a",
        "reports.col.pause": "Pausa",
        "reports.col.code": "Codice",
        "reports.col.label": "Esito",
        "reports.col.resolves": "Risolve",
        "reports.col.share": "Quota",
        "reports.yes": "sì",
        "reports.no": "no",
        "reports.total": "totale",
        "reports.no_team": "(nessuna squadra)",
        "reports.empty": "Nessuna chiamata in questo periodo.",
        "reports.window": "Periodo",
        "reports.threshold": "risposte entro {seconds} s",
        "reports.chart.sl": "Livello di servizio per ora del giorno",
        "reports.chart.sl_target": "Obiettivo {target}",
        "reports.chart.outcomes": "Chiamate per esito",
        "reports.chart.funnel": "Abbandoni nel risponditore",
        "reports.chart.dispositions": "Chiamate risposte per esito",
        "reports.funnel.flow": "Flusso",
        "reports.funnel.help": "Chiamate arrivate a ogni nodo del percorso principale; la "
                               "parte scura ha lasciato il risponditore lì.",
        "reports.funnel.node": "Nodo",
        "reports.funnel.reached": "Arrivate",
        "reports.funnel.left": "Uscite qui",
        "reports.funnel.other": "Altri nodi",
        "reports.funnel.none": "Nessun percorso registrato in questo periodo.",
        "reports.error.date": "Le date sono come 2026-11-02.",
        "reports.error.order": "'Al' non può venire prima di 'Dal'.",
        "reports.error.long": "Al massimo 366 giorni alla volta.",
        "reports.error.records": "Impossibile leggere le chiamate: {error}",
        "outcome.completed": "completata",
        "outcome.abandoned_ivr": "uscita nel risponditore",
        "outcome.abandoned_queue": "abbandonata in coda",
        "outcome.refused": "rifiutata",
        "outcome.failed": "fallita",
        "outcome.interrupted": "interrotta",
        "outcome.callback_requested": "richiamata chiesta",
        "outcome.ivr_gave_up": "risponditore arreso",
        "outcome.in_progress": "in corso",
    },
})


# -- the window and the query -------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    first: date
    last: date
    """Inclusive."""

    @property
    def start(self) -> float:
        return report.parse_time(self.first.isoformat())

    @property
    def end(self) -> float:
        return report.parse_time(self.last.isoformat(), end=True)


def preset_window(preset: str, today: date) -> Window:
    if preset == "yesterday":
        day = today - timedelta(days=1)
        return Window(day, day)
    if preset == "7d":
        return Window(today - timedelta(days=6), today)
    if preset == "month":
        return Window(today.replace(day=1), today)
    return Window(today, today)


@dataclass(frozen=True)
class Query:
    window: Window
    by: str
    flow: str
    error: str = ""
    """An i18n key: what was wrong with the query (the window is then today's)."""

    def args(self, **changes: str) -> str:
        values = {"from": self.window.first.isoformat(), "to": self.window.last.isoformat(),
                  "by": self.by}
        if self.flow:
            values["flow"] = self.flow
        values.update(changes)
        return urlencode(values)


def parse_query(query: Mapping[str, str], today: date) -> Query:
    by = query.get("by", "queue")
    by = by if by in BYS else "queue"
    flow = query.get("flow", "")[:200]
    preset = query.get("preset", "")
    if preset in PRESETS:
        return Query(preset_window(preset, today), by, flow)
    if not query.get("from") and not query.get("to"):
        return Query(Window(today, today), by, flow)
    try:
        first = date.fromisoformat(query.get("from") or query.get("to", ""))
        last = date.fromisoformat(query.get("to") or query.get("from", ""))
    except ValueError:
        return Query(Window(today, today), by, flow, "reports.error.date")
    if last < first:
        return Query(Window(today, today), by, flow, "reports.error.order")
    if (last - first).days >= MAX_DAYS:
        return Query(Window(today, today), by, flow, "reports.error.long")
    return Query(Window(first, last), by, flow)


# -- the figures (on an I/O thread) ---------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """What ivr.yaml says about reports."""

    threshold: float = 20.0
    resolving: frozenset[str] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    """Disposition code -> label."""
    resolves: Mapping[str, bool] = field(default_factory=dict)
    teams: Mapping[str, str] = field(default_factory=dict)


def settings_of(config: Any) -> Settings:
    if config is None:
        return Settings()
    dispositions = dict(getattr(config, "dispositions", {}) or {})
    return Settings(
        threshold=float(getattr(config, "sl_threshold", 20.0)),
        resolving=frozenset(c for c, d in dispositions.items() if d.resolves)
        if dispositions else None,
        labels={code: d.label for code, d in sorted(dispositions.items())},
        resolves={code: bool(d.resolves) for code, d in dispositions.items()},
        teams=config.team_of() if hasattr(config, "team_of") else {})


@dataclass(frozen=True)
class Step:
    node: str
    reached: int
    left: int


@dataclass
class Figures:
    rows: list[report.ReportRow]
    outcomes: list[tuple[str, int]]
    hours: list[tuple[int, float | None, int]]
    """(hour of the day, SL or None, answered calls)."""
    flows: list[str]
    flow: str
    main_path: list[Step]
    other_nodes: list[Step]
    dispositions: list[tuple[str, int]]
    """(code, answered calls) of the window, codes of ivr.yaml first."""


def parse_path(text: str) -> list[str]:
    """The nodes of an ``ivr_path`` ('welcome > menu[2] > support'), keys dropped."""
    nodes = []
    for step in (text or "").split(" > "):
        step = step.strip()
        if step.endswith("]") and "[" in step:
            step = step[:step.index("[")]
        if step:
            nodes.append(step)
    return nodes


def funnel(calls: Sequence[Mapping[str, Any]]) -> tuple[list[Step], list[Step]]:
    """The main path (from the commonest first node, each time the commonest next node not
    yet on it) with how many calls reached each node and how many left the IVR there; and
    the other nodes, most reached first."""
    paths = [(parse_path(str(c["ivr_path"] or "")), str(c["outcome"])) for c in calls]
    paths = [(p, outcome) for p, outcome in paths if p]
    reached: Counter[str] = Counter()
    left: Counter[str] = Counter()
    for nodes, outcome in paths:
        reached.update(set(nodes))
        if outcome in DROPPED:
            left[nodes[-1]] += 1
    main: list[str] = []
    firsts = Counter(nodes[0] for nodes, _ in paths)
    node = firsts.most_common(1)[0][0] if firsts else None
    while node is not None and len(main) < FUNNEL_NODES:
        main.append(node)
        nexts = Counter(nodes[i + 1] for nodes, _ in paths for i in range(len(nodes) - 1)
                        if nodes[i] == node and nodes[i + 1] not in main)
        node = nexts.most_common(1)[0][0] if nexts else None
    others = sorted((n for n in reached if n not in main), key=lambda n: (-reached[n], n))
    return ([Step(n, reached[n], left[n]) for n in main],
            [Step(n, reached[n], left[n]) for n in others[:FUNNEL_NODES]])


def figures(store_path: Path, query: Query, settings: Settings,
            with_charts: bool = True) -> Figures:
    """Everything the page shows, from the store (read-only); without *with_charts*, the
    table's figures only (the CSV)."""
    start, end = query.window.start, query.window.end
    calls, events = report.read_rows(store_path, start, end, FCR_DAYS)

    def compute(rows: Sequence[Mapping[str, Any]], by: str) -> list[report.ReportRow]:
        return report.compute(rows, events, start=start, end=end, by=by,
                              threshold=settings.threshold, fcr_days=FCR_DAYS,
                              resolving=settings.resolving,
                              teams=settings.teams if by == "team" else None)

    rows = compute(calls, "queue" if query.by == "disposition" else query.by)
    inside = [c for c in calls if start <= float(c["started_at"]) < end]
    counted = Counter(str(c["outcome"]) for c in inside)
    outcomes = [(o, counted[o]) for o in (*OUTCOMES, *sorted(set(counted) - set(OUTCOMES)))
                if counted[o]]
    by_hour: dict[int, list[Mapping[str, Any]]] = {hour: [] for hour in range(24)}
    for c in inside if with_charts else ():
        by_hour[datetime.fromtimestamp(float(c["started_at"])).hour].append(c)
    hours: list[tuple[int, float | None, int]] = []
    for hour, these in by_hour.items():
        # the calls of this hour of every day of the window; SL needs no queue events
        total = report.compute(these, (), start=start, end=end, by="day",
                               threshold=settings.threshold, fcr_days=FCR_DAYS)[-1]
        hours.append((hour, total.sl, total.answered))
    names = Counter(str(c["flow"]) for c in inside if c["flow"] and c["ivr_path"])
    flow = query.flow if query.flow in names else (names.most_common(1)[0][0] if names else "")
    main_path, others = funnel([c for c in inside if c["flow"] == flow] if with_charts else [])
    codes = rows[-1].dispositions if rows else {}
    ordered = [*settings.labels, *sorted(set(codes) - set(settings.labels))]
    return Figures(rows=rows, outcomes=outcomes, hours=hours, flows=sorted(names), flow=flow,
                   main_path=main_path, other_nodes=others,
                   dispositions=[(code, codes.get(code, 0)) for code in ordered])


# -- presenting -----------------------------------------------------------------------------------
def cell(row: report.ReportRow, column: str) -> str:
    value = getattr(row, column)
    if value is None:
        return ""
    if column in PERCENT:
        return f"{value:.1%}"
    if column in SECONDS:
        return f"{value:.1f}"
    return str(value)


def pause_text(seconds: float) -> str:
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02}:{sec:02}"


def table(fig: Figures, by: str, settings: Settings,
          t: Callable[[str], str]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the report's table, as ``ivr report`` shows it."""
    if by == "disposition":
        answered = fig.rows[-1].answered if fig.rows else 0
        headers = [t("reports.col.code"), t("reports.col.label"), t("reports.col.resolves"),
                   t("reports.col.answered"), t("reports.col.share")]
        cells = [[code, settings.labels.get(code, ""),
                  t("reports.yes") if settings.resolves.get(code) else t("reports.no"),
                  str(n), f"{n / answered:.1%}" if answered else ""]
                 for code, n in fig.dispositions]
        return headers, cells
    columns = report.PEOPLE_COLUMNS if by in report.PEOPLE else report.COLUMNS
    reasons = sorted({reason for r in fig.rows for reason in r.pauses})
    headers = [t(f"reports.by.{by}") if c == "group" else
               t("reports.col.calls") if c == "answered" and by in report.PEOPLE else
               t(f"reports.col.{c}") for c in columns]
    headers += list(settings.labels.values())
    headers += [f"{t('reports.col.pause')} {reason}" for reason in reasons]
    cells = []
    for r in fig.rows:
        line = [cell(r, c) for c in columns]
        if line[0] == "total" and r is fig.rows[-1]:
            line[0] = t("reports.total")
        elif line[0] == report.NO_TEAM:
            line[0] = t("reports.no_team")
        line += [str(r.dispositions.get(code, 0)) for code in settings.labels]
        line += [pause_text(r.pauses.get(reason, 0.0)) for reason in reasons]
        cells.append(line)
    return headers, cells


def disposition_csv(fig: Figures, settings: Settings) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["disposition", "label", "resolves", "answered"])
    for code, n in fig.dispositions:
        writer.writerow([code, settings.labels.get(code, ""),
                         "yes" if settings.resolves.get(code) else "no", n])
    return out.getvalue()


def charts_of(fig: Figures, by: str, settings: Settings,
              t: Callable[[str], str]) -> dict[str, Markup]:
    out: dict[str, Markup] = {}
    target = t("reports.chart.sl_target").format(target=f"{SL_TARGET:.0%}")
    out["sl"] = charts.columns(
        [charts.Bar(f"{hour:02}", sl or 0.0, f"{sl:.0%} ({answered})" if sl is not None
                    else "-", "none" if sl is None else "ok" if sl >= SL_TARGET else "bad")
         for hour, sl, answered in fig.hours],
        t("reports.chart.sl"), kind="columns sl", target=SL_TARGET, target_text=target)
    out["outcomes"] = charts.hbars(
        [charts.Bar(t(f"outcome.{o}") if t(f"outcome.{o}") != f"outcome.{o}" else o, n,
                    kind=o.replace("_", "-")) for o, n in fig.outcomes],
        t("reports.chart.outcomes"), kind="hbars outcomes")
    if fig.main_path:
        out["funnel"] = charts.hbars(
            [charts.Bar(s.node, s.reached, f"{s.reached} / -{s.left}" if s.left
                        else str(s.reached), part=s.left,
                        part_text=f"{s.node}: {t('reports.funnel.left')} {s.left}")
             for s in fig.main_path], t("reports.chart.funnel"), kind="hbars funnel",
            maximum=max(s.reached for s in fig.main_path))
    if by == "disposition" and fig.dispositions:
        out["dispositions"] = charts.hbars(
            [charts.Bar(settings.labels.get(code, code), n) for code, n in fig.dispositions],
            t("reports.chart.dispositions"), kind="hbars dispositions")
    return out


# -- the routes -----------------------------------------------------------------------------------
async def _figures(console: Console, query: Query,
                   with_charts: bool = True) -> tuple[Figures | None, str]:
    try:
        fig = await console.run(figures, console.store_path, query, settings_of(console.config),
                                with_charts)
    except (RecordsError, sqlite3.Error) as exc:
        return None, str(exc)
    return fig, ""


async def reports_page(request: web.Request) -> web.StreamResponse:
    require(request, "team_leader")
    console = console_of(request)
    t = i18n.translator(request_lang(request, console))
    query = parse_query(request.query, date.today())
    settings = settings_of(console.config)
    fig, problem = await _figures(console, query)
    headers: list[str] = []
    cells: list[list[str]] = []
    drawn: dict[str, Markup] = {}
    if fig is not None:
        headers, cells = table(fig, query.by, settings, t)
        drawn = charts_of(fig, query.by, settings, t)
    errors = [t(query.error)] if query.error else []
    if problem:
        errors.append(t("reports.error.records").format(error=problem))
    return console.render(
        request, "reports.html", query=query, bys=BYS, presets=PRESETS, fig=fig,
        headers=headers, cells=cells, charts=drawn, errors=errors,
        threshold=t("reports.threshold").format(seconds=f"{settings.threshold:g}"),
        status=400 if query.error else 200)


async def reports_csv(request: web.Request) -> web.StreamResponse:
    require(request, "team_leader")
    console = console_of(request)
    query = parse_query(request.query, date.today())
    if query.error:
        raise web.HTTPBadRequest(text=i18n.translator("en")(query.error))
    fig, problem = await _figures(console, query, with_charts=False)
    if fig is None:
        raise web.HTTPServiceUnavailable(text=problem)
    settings = settings_of(console.config)
    text = disposition_csv(fig, settings) if query.by == "disposition" \
        else report.format_csv(fig.rows, query.by, settings.labels)
    name = f"centralino-{query.window.first}-{query.window.last}-{query.by}.csv"
    return web.Response(text=text, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


def setup(app: web.Application, console: Console) -> None:
    app.router.add_get("/reports", reports_page)
    app.router.add_get("/reports.csv", reports_csv)

"""Outbound campaigns (``/campaigns``, team leaders and above): each campaign's definition, its
live figures, its contacts and attempts, its KPIs, an export, and the do-not-call list.

- The definition (mode, queue, trunk and lines, calling window, caller ID, retry rules, the
  dispositions that end a contact) is the campaign file's, loaded with
  :func:`ivr.outbound.campaigns.load_campaigns` on an I/O thread (a file with problems shows
  them instead).
- Live figures come from the loop's view (``campaigns``: dialling, connected, attempts,
  connects and abandoned calls today, contacts in the hopper, whether the window is open,
  why it is paused) through ``/campaigns/live``.
- Contacts by state, attempts by outcome and contacts by disposition are read from the store
  (``outbound_contacts``, ``outbound_attempts``) on the console's I/O threads, kept
  :data:`CACHE_SECONDS` so open pages do not read them again and again; the page's script
  asks ``/campaigns/figures`` for them now and then.
- Calls put through to each agent and their talk time, from the call records of the dialler's
  calls out (``calls`` with ``direction = 'out'``).
- KPIs over all of a campaign's attempts: *contact rate* = attempts a person answered
  (put through, or abandoned: answered with no agent free) per dial; *abandon rate* =
  abandoned per answered attempt (the cap of issue 14 is 3%); *conversions* = contacts by
  disposition per contact reached (a contact with an answered attempt).
- ``/campaigns/NAME.csv``: every contact, the columns of ``ivr campaign export``
  (:func:`ivr.outbound.cli.export_table`).
- ``POST /campaigns/dnc`` (supervisors and above): a number on the do-not-call list (source
  ``internal``), audited; the switchboard checks the list before every dial, so it holds from
  the next dial on.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from ivr.console import i18n
from ivr.console.hub import View
from ivr.console.live import stream
from ivr.console.web import Console, console_of, request_fields, request_lang, require
from ivr.outbound.campaigns import OUTCOMES as RETRY_OUTCOMES
from ivr.outbound.campaigns import Campaign, load_campaigns
from ivr.outbound.contacts import _COLUMNS, STATES, Contact, check_campaign_name
from ivr.outbound.dnc import DncList, ListError
from ivr.yamlsrc import DocumentError

T = TypeVar("T")

CACHE_SECONDS = 5.0
"""How long figures read from the store (and the campaign files) are reused."""
ATTEMPT_OUTCOMES = ("answered", "busy", "no_answer", "failed", "callback", "abandoned",
                    "dnc_skipped", "withdrawn")
"""Outcomes of an attempt row (ivr.outbound.plan, the do-not-call skip, and a dial withdrawn
for an inbound caller)."""
NOT_DIALS = ("dnc_skipped", "withdrawn")
"""Attempt outcomes that are not the contact's (not in the dials of the contact rate)."""
LIVE_FIELDS = ("window_open", "paused_reason", "dialling", "connected", "attempts_today",
               "connects_today", "abandoned_today", "hopper")
"""The view's figures of a campaign the page shows."""
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NOTE_MAX = 200

i18n.add({
    "en": {
        "nav.campaigns": "Campaigns",
        "campaigns.title": "Campaigns",
        "campaigns.none": "No campaign: campaign files go in the folder 'campaigns:' of "
                          "ivr.yaml names, contacts in with 'ivr campaign import'.",
        "campaigns.problems": "The campaign files have problems: the switchboard does not "
                              "load them until they are fixed.",
        "campaigns.no_file": "No campaign file: contacts only.",
        "campaigns.definition": "Definition",
        "campaigns.mode": "Mode",
        "campaigns.mode.preview": "preview",
        "campaigns.mode.progressive": "progressive",
        "campaigns.mode.automated": "automated",
        "campaigns.queue": "Queue",
        "campaigns.trunk": "Trunk",
        "campaigns.lines": "Lines",
        "campaigns.lines_text": "at most {max} of {trunk}, {reserve} kept for inbound",
        "campaigns.window": "Calling window",
        "campaigns.holidays": "holidays",
        "campaigns.caller_id": "Caller ID",
        "campaigns.trunk_own": "the trunk's own",
        "campaigns.retries": "Retries",
        "campaigns.retry_text": "{times} more after {after}",
        "campaigns.final": "Dispositions that end a contact",
        "campaigns.dnc_disposition": "Do-not-call disposition",
        "campaigns.ratio": "Dial ratio",
        "campaigns.ratio_text": "{ratio} (abandoned calls at most {cap} of answered)",
        "campaigns.flow": "Flow",
        "campaigns.live": "Now",
        "campaigns.live.window_open": "Window",
        "campaigns.live.paused_reason": "Paused",
        "campaigns.live.dialling": "Dialling",
        "campaigns.live.connected": "Connected",
        "campaigns.live.attempts_today": "Attempts today",
        "campaigns.live.connects_today": "Connects today",
        "campaigns.live.abandoned_today": "Abandoned today",
        "campaigns.live.hopper": "In the hopper",
        "campaigns.open": "open",
        "campaigns.closed": "closed",
        "campaigns.not_paused": "no",
        "campaigns.not_running": "The switchboard does not run this campaign now.",
        "campaigns.contacts": "Contacts",
        "campaigns.total": "total",
        "campaigns.due_now": "due now",
        "campaigns.state.pending": "pending",
        "campaigns.state.done": "done",
        "campaigns.state.dnc": "do not call",
        "campaigns.state.failed": "failed",
        "campaigns.state.invalid": "invalid",
        "campaigns.attempts": "Attempts by outcome",
        "campaigns.kpis": "KPIs",
        "campaigns.kpi.dials": "Dials",
        "campaigns.kpi.answered": "Answered by a person",
        "campaigns.kpi.contact_rate": "Contact rate",
        "campaigns.kpi.abandon_rate": "Abandon rate",
        "campaigns.kpi.reached": "Contacts reached",
        "campaigns.conversions": "Conversions by disposition",
        "campaigns.disposition": "Disposition",
        "campaigns.count": "Contacts",
        "campaigns.share": "of reached",
        "campaigns.no_dispositions": "No disposition yet.",
        "campaigns.export": "Export CSV",
        "campaigns.agents": "Agents",
        "campaigns.agent": "Agent",
        "campaigns.agent_calls": "Calls",
        "campaigns.agent_talk": "Talk",
        "campaigns.no_agents": "No call put through to an agent yet.",
        "campaigns.figures_error": "The contact lists cannot be read: {error}",
        "campaigns.dnc": "Do not call",
        "campaigns.dnc_help": "A number put here is never dialled again by any campaign, "
                              "from the next dial on.",
        "campaigns.dnc_number": "Number",
        "campaigns.dnc_note": "Why",
        "campaigns.dnc_add": "Add to the list",
        "campaigns.dnc_added": "{number} is now on the do-not-call list.",
        "campaigns.dnc_already": "{number} was already on the do-not-call list "
                                 "(source {source}).",
        "campaigns.err.number": "Not a telephone number: {why}.",
        "campaigns.err.note": "The note is too long.",
        "campaigns.err.store": "The do-not-call list cannot be written now: {error}",
        "outbound.outcome.answered": "answered",
        "outbound.outcome.busy": "busy",
        "outbound.outcome.no_answer": "no answer",
        "outbound.outcome.failed": "failed",
        "outbound.outcome.callback": "call back",
        "outbound.outcome.abandoned": "abandoned",
        "outbound.outcome.dnc_skipped": "not dialled: do not call",
        "outbound.outcome.withdrawn": "withdrawn for an inbound caller",
    },
    "it": {
        "nav.campaigns": "Campagne",
        "campaigns.title": "Campagne",
        "campaigns.none": "Nessuna campagna: i file delle campagne vanno nella cartella "
                          "'campaigns:' di ivr.yaml, i contatti con 'ivr campaign import'.",
        "campaigns.problems": "I file delle campagne hanno problemi: il centralino non li "
                              "carica finché non sono corretti.",
        "campaigns.no_file": "Nessun file di campagna: solo contatti.",
        "campaigns.definition": "Definizione",
        "campaigns.mode": "Modalità",
        "campaigns.mode.preview": "anteprima",
        "campaigns.mode.progressive": "progressiva",
        "campaigns.mode.automated": "automatica",
        "campaigns.queue": "Coda",
        "campaigns.trunk": "Linea",
        "campaigns.lines": "Linee",
        "campaigns.lines_text": "al massimo {max} di {trunk}, {reserve} riservate alle "
                                "chiamate in arrivo",
        "campaigns.window": "Fascia di chiamata",
        "campaigns.holidays": "festivi",
        "campaigns.caller_id": "Numero presentato",
        "campaigns.trunk_own": "quello della linea",
        "campaigns.retries": "Nuovi tentativi",
        "campaigns.retry_text": "altri {times} dopo {after}",
        "campaigns.final": "Classificazioni che chiudono un contatto",
        "campaigns.dnc_disposition": "Classificazione 'non chiamare'",
        "campaigns.ratio": "Rapporto di chiamata",
        "campaigns.ratio_text": "{ratio} (chiamate abbandonate al massimo {cap} delle "
                                "risposte)",
        "campaigns.flow": "Flusso",
        "campaigns.live": "Adesso",
        "campaigns.live.window_open": "Fascia",
        "campaigns.live.paused_reason": "In pausa",
        "campaigns.live.dialling": "In composizione",
        "campaigns.live.connected": "In conversazione",
        "campaigns.live.attempts_today": "Tentativi oggi",
        "campaigns.live.connects_today": "Contatti oggi",
        "campaigns.live.abandoned_today": "Abbandonate oggi",
        "campaigns.live.hopper": "Pronti da chiamare",
        "campaigns.open": "aperta",
        "campaigns.closed": "chiusa",
        "campaigns.not_paused": "no",
        "campaigns.not_running": "Il centralino non sta eseguendo questa campagna.",
        "campaigns.contacts": "Contatti",
        "campaigns.total": "totale",
        "campaigns.due_now": "da chiamare ora",
        "campaigns.state.pending": "in attesa",
        "campaigns.state.done": "conclusi",
        "campaigns.state.dnc": "non chiamare",
        "campaigns.state.failed": "falliti",
        "campaigns.state.invalid": "non validi",
        "campaigns.attempts": "Tentativi per esito",
        "campaigns.kpis": "Indicatori",
        "campaigns.kpi.dials": "Chiamate fatte",
        "campaigns.kpi.answered": "Risposte da una persona",
        "campaigns.kpi.contact_rate": "Tasso di contatto",
        "campaigns.kpi.abandon_rate": "Tasso di abbandono",
        "campaigns.kpi.reached": "Contatti raggiunti",
        "campaigns.conversions": "Conversioni per classificazione",
        "campaigns.disposition": "Classificazione",
        "campaigns.count": "Contatti",
        "campaigns.share": "dei raggiunti",
        "campaigns.no_dispositions": "Ancora nessuna classificazione.",
        "campaigns.export": "Esporta CSV",
        "campaigns.agents": "Operatori",
        "campaigns.agent": "Operatore",
        "campaigns.agent_calls": "Chiamate",
        "campaigns.agent_talk": "Conversazione",
        "campaigns.no_agents": "Ancora nessuna chiamata passata a un operatore.",
        "campaigns.figures_error": "Impossibile leggere le liste di contatti: {error}",
        "campaigns.dnc": "Non chiamare",
        "campaigns.dnc_help": "Un numero inserito qui non viene più chiamato da nessuna "
                              "campagna, dalla prossima chiamata.",
        "campaigns.dnc_number": "Numero",
        "campaigns.dnc_note": "Motivo",
        "campaigns.dnc_add": "Aggiungi all'elenco",
        "campaigns.dnc_added": "{number} è ora nell'elenco 'non chiamare'.",
        "campaigns.dnc_already": "{number} era già nell'elenco 'non chiamare' "
                                 "(fonte {source}).",
        "campaigns.err.number": "Non è un numero di telefono: {why}.",
        "campaigns.err.note": "Il motivo è troppo lungo.",
        "campaigns.err.store": "Impossibile scrivere ora l'elenco 'non chiamare': {error}",
        "outbound.outcome.answered": "risposta",
        "outbound.outcome.busy": "occupato",
        "outbound.outcome.no_answer": "nessuna risposta",
        "outbound.outcome.failed": "fallita",
        "outbound.outcome.callback": "da richiamare",
        "outbound.outcome.abandoned": "abbandonata",
        "outbound.outcome.dnc_skipped": "non chiamato: non chiamare",
        "outbound.outcome.withdrawn": "ritirata per una chiamata in entrata",
    },
})

JS_WORDS = ("campaigns.open", "campaigns.closed", "campaigns.not_paused",
            "campaigns.not_running")
"""The words the page's script shows (given to it in the page)."""


# -- a small cache (the event loop's thread only) ------------------------------------------------
@dataclass
class Cache:
    """Values made on an I/O thread, reused for :data:`CACHE_SECONDS`; callers asking while one
    is being made share it."""

    seconds: float = CACHE_SECONDS
    _items: dict[str, tuple[float, Any]] = field(default_factory=dict)
    _making: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    async def get(self, key: str, make: Callable[[], Awaitable[T]]) -> T:
        found = self._items.get(key)
        now = time.monotonic()
        if found is not None and now - found[0] < self.seconds:
            value: T = found[1]
            return value
        pending = self._making.get(key)
        if pending is not None:
            shared: T = await asyncio.shield(pending)
            return shared
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._making[key] = fut
        try:
            made = await make()
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: nobody else may be waiting
            raise
        except BaseException:  # cancelled: those waiting ask again
            fut.cancel()
            raise
        finally:
            self._making.pop(key, None)
        fut.set_result(made)
        self._items[key] = (time.monotonic(), made)
        return made

    def clear(self) -> None:
        self._items.clear()


CACHE = web.AppKey("campaigns_cache", Cache)


# -- the definitions -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Definitions:
    campaigns: dict[str, Campaign]
    problems: list[str]


_load_lock = threading.Lock()


def definitions(config: Any) -> Definitions:
    """The campaign files of *config* (an I/O thread: files, flows), or their problems."""
    if config is None or getattr(config, "campaigns_dir", None) is None:
        return Definitions({}, [])
    with _load_lock:
        try:
            return Definitions(load_campaigns(config), [])
        except DocumentError as exc:
            return Definitions({}, [str(p) for p in exc.problems])
        except OSError as exc:
            return Definitions({}, [str(exc)])


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _days(days: tuple[int, ...]) -> str:
    """mon-fri, sat for (0, 1, 2, 3, 4, 5)... in ranges."""
    parts: list[str] = []
    run: list[int] = []
    for day in sorted(days):
        if run and day != run[-1] + 1:
            parts.append(_run(run))
            run = []
        run.append(day)
    if run:
        parts.append(_run(run))
    return ", ".join(parts)


def _run(run: list[int]) -> str:
    if len(run) == 1:
        return DAY_NAMES[run[0]]
    return f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def describe(campaign: Campaign) -> dict[str, Any]:
    """The campaign's definition as the page shows it."""
    window = campaign.window
    hours = ",".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in window.intervals)
    holidays = [x for x in (window.holiday_country, window.holiday_subdivision) if x]
    holidays += list(window.holiday_dates)
    return {
        "name": campaign.name, "mode": campaign.mode, "queue": campaign.queue or "",
        "trunk": campaign.trunk, "trunk_lines": campaign.trunk_lines,
        "max_lines": campaign.max_lines, "reserve_inbound": campaign.reserve_inbound,
        "window": f"{_days(window.days)} {hours} ({window.timezone})",
        "holidays": ", ".join(holidays), "caller_id": campaign.caller_id,
        "retries": [(outcome, campaign.retry(outcome).times,
                     _duration(campaign.retry(outcome).after)) for outcome in RETRY_OUTCOMES],
        "final": sorted(campaign.final_dispositions),
        "dnc_disposition": campaign.dnc_disposition or "",
        "dial_ratio": f"{campaign.dial_ratio:g}", "abandon_cap": f"{campaign.abandon_cap:.0%}",
        "flow": campaign.flow.name if campaign.flow is not None else "",
        "source": campaign.source, "description": campaign.description}


# -- the store's figures (I/O threads) -----------------------------------------------------------
def _missing_table(exc: sqlite3.OperationalError) -> bool:
    return "no such table" in str(exc)


def store_figures(db: sqlite3.Connection, now: float) -> dict[str, dict[str, Any]]:
    """Per campaign with contacts or attempts: contacts by state, due now, attempts by
    outcome, contacts by disposition, contacts reached, and the KPIs."""
    out: dict[str, dict[str, Any]] = {}

    def of(name: str) -> dict[str, Any]:
        if name not in out:
            out[name] = {"states": dict.fromkeys(STATES, 0), "total": 0, "due_now": 0,
                         "outcomes": {}, "dispositions": {}, "reached": 0, "agents": {}}
        return out[name]
    try:
        for name, state, n in db.execute("SELECT campaign, state, COUNT(*) FROM "
                                         "outbound_contacts GROUP BY campaign, state"):
            fig = of(name)
            fig["states"][state] = fig["states"].get(state, 0) + n
            fig["total"] += n
        for name, n in db.execute("SELECT campaign, COUNT(*) FROM outbound_contacts WHERE "
                                  "state = 'pending' AND next_at <= ? GROUP BY campaign",
                                  (now,)):
            of(name)["due_now"] = n
        for name, code, n in db.execute(
                "SELECT campaign, disposition, COUNT(*) FROM outbound_contacts WHERE "
                "disposition IS NOT NULL AND disposition != '' GROUP BY campaign, disposition"):
            of(name)["dispositions"][code] = n
        for name, outcome, n in db.execute("SELECT campaign, outcome, COUNT(*) FROM "
                                           "outbound_attempts GROUP BY campaign, outcome"):
            of(name)["outcomes"][outcome] = n
        for name, n in db.execute("SELECT campaign, COUNT(DISTINCT contact_id) FROM "
                                  "outbound_attempts WHERE outcome = 'answered' "
                                  "GROUP BY campaign"):
            of(name)["reached"] = n
    except sqlite3.OperationalError as exc:
        if not _missing_table(exc):  # no list was ever imported into this store
            raise
    _agents_talk(db, out)
    for fig in out.values():
        fig["kpis"] = kpis(fig["outcomes"], fig["reached"], fig["dispositions"])
    return out


def _agents_talk(db: sqlite3.Connection, out: dict[str, dict[str, Any]]) -> None:
    """Calls put through to each agent and their talk time, per campaign (the call records
    of the dialler's calls out); only campaigns with contacts."""
    try:
        rows = db.execute("SELECT campaign, agent, COUNT(*), COALESCE(SUM(talk_seconds), 0) "
                          "FROM calls WHERE direction = 'out' AND campaign IS NOT NULL AND "
                          "agent IS NOT NULL AND agent != '' GROUP BY campaign, agent "
                          "ORDER BY campaign, agent").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such column" not in str(exc):  # a store the switchboard has not upgraded yet
            raise
        return
    for name, agent, calls, talk in rows:
        if name in out:
            out[name]["agents"][agent] = {"calls": calls, "talk": round(float(talk), 1)}


def kpis(outcomes: Mapping[str, int], reached: int,
         dispositions: Mapping[str, int]) -> dict[str, Any]:
    """Dials, answered, contact rate, abandon rate, conversions by disposition (None: no
    denominator yet)."""
    dials = sum(n for outcome, n in outcomes.items() if outcome not in NOT_DIALS)
    answered = outcomes.get("answered", 0) + outcomes.get("abandoned", 0)
    abandoned = outcomes.get("abandoned", 0)
    return {"dials": dials, "answered": answered, "reached": reached,
            "contact_rate": answered / dials if dials else None,
            "abandon_rate": abandoned / answered if answered else None,
            "conversions": {code: (n / reached if reached else None)
                            for code, n in dispositions.items()}}


def export_csv(db: sqlite3.Connection, campaign: str) -> tuple[int, str]:
    """(contacts, CSV text) of *campaign*: the columns of ``ivr campaign export``."""
    from ivr.outbound.cli import export_table

    try:
        contacts = [Contact.from_row(tuple(row)) for row in db.execute(
            f"SELECT {_COLUMNS} FROM outbound_contacts WHERE campaign = ? ORDER BY id",
            (campaign,))]
    except sqlite3.OperationalError as exc:
        if not _missing_table(exc):
            raise
        contacts = []
    header, rows = export_table(contacts)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return len(contacts), out.getvalue()


def add_dnc(console: Console, number: str, note: str) -> tuple[bool, tuple[str, str, float, str]]:
    """Put *number* on the do-not-call list (source ``internal``); (newly added, entry). An I/O
    thread: the list's own connection writes, waiting a moment for the switchboard's writer."""
    with DncList(console.store_path) as dnc:
        added = dnc.add(number, "internal", note)
        entry = dnc.entry(number)
    assert entry is not None
    return added, entry


# -- the live slice ------------------------------------------------------------------------------
def live_slice(view: View) -> dict[str, Any]:
    campaigns = view.get("campaigns") or {}
    return {"seq": view.get("seq", 0), "at": view.get("at", 0.0),
            "campaigns": {name: {k: c.get(k) for k in ("mode", *LIVE_FIELDS)}
                          for name, c in campaigns.items()}}


# -- handlers ------------------------------------------------------------------------------------
async def _definitions(request: web.Request) -> Definitions:
    console = console_of(request)
    return await request.app[CACHE].get(
        "definitions", lambda: console.run(definitions, console.config))


async def _store_figures(request: web.Request) -> tuple[dict[str, dict[str, Any]], str]:
    console = console_of(request)
    try:
        figures = await request.app[CACHE].get(
            "figures", lambda: console.read(lambda db: store_figures(db, time.time())))
    except sqlite3.Error as exc:
        return {}, str(exc)
    return figures, ""


def _labels(config: Any) -> dict[str, str]:
    return {code: d.label for code, d in (getattr(config, "dispositions", {}) or {}).items()}


async def page(request: web.Request) -> web.StreamResponse:
    user = require(request, "team_leader")
    console = console_of(request)
    t = i18n.translator(request_lang(request, console))
    found = await _definitions(request)
    figures, problem = await _store_figures(request)
    live = live_slice(console.hub.view)["campaigns"]
    names = sorted(set(found.campaigns) | set(figures) | set(live))
    campaigns = [{"name": name,
                  "definition": describe(found.campaigns[name])
                  if name in found.campaigns else None,
                  "figures": figures.get(name) or _empty_figures(),
                  "live": live.get(name)} for name in names]
    errors = [t("campaigns.figures_error").format(error=problem)] if problem else []
    return console.render(
        request, "campaigns.html", campaigns=campaigns, problems=found.problems,
        errors=errors, labels=_labels(console.config), states=STATES,
        outcomes=ATTEMPT_OUTCOMES, live_fields=LIVE_FIELDS, percent=_percent,
        duration=_talk,
        can_dnc=_rank_at_least(user.role, "supervisor"),
        words={k: t(k) for k in JS_WORDS})


def _rank_at_least(role: str, minimum: str) -> bool:
    from ivr.console.web import ROLE_RANK

    return ROLE_RANK.get(role, -1) >= ROLE_RANK[minimum]


def _empty_figures() -> dict[str, Any]:
    return {"states": dict.fromkeys(STATES, 0), "total": 0, "due_now": 0, "outcomes": {},
            "dispositions": {}, "reached": 0, "agents": {}, "kpis": kpis({}, 0, {})}


def _talk(seconds: float) -> str:
    """3:07 for 187 s, 1:02:03 past an hour (as the pages' script shows durations)."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


async def figures_json(request: web.Request) -> web.StreamResponse:
    require(request, "team_leader")
    figures, problem = await _store_figures(request)
    if problem:
        return web.json_response({"error": problem}, status=503)
    return web.json_response({"campaigns": figures})


async def live(request: web.Request) -> web.StreamResponse:
    require(request, "team_leader")
    return await stream(request, "campaigns", live_slice)


async def export(request: web.Request) -> web.StreamResponse:
    require(request, "team_leader")
    console = console_of(request)
    name = request.match_info["name"]
    try:
        check_campaign_name(name)
    except ListError:
        raise web.HTTPNotFound() from None
    count, text = await console.read(lambda db: export_csv(db, name))
    found = await _definitions(request)
    if count == 0 and name not in found.campaigns:
        raise web.HTTPNotFound(text=f"No campaign {name!r}.")
    stamp = time.strftime("%Y%m%d-%H%M")
    return web.Response(text=text, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="campaign-{name}-{stamp}.csv"'})


async def dnc_add(request: web.Request) -> web.StreamResponse:
    require(request, "supervisor")
    console = console_of(request)
    t = i18n.translator(request_lang(request, console))
    body = await request_fields(request)
    number = body.get("number", "").strip()
    note = " ".join(body.get("note", "").split())
    if len(note) > NOTE_MAX:
        return web.json_response({"error": t("campaigns.err.note")}, status=400)
    try:
        added, entry = await console.run(add_dnc, console, number, note)
    except ListError as exc:
        why = str(exc).split(": ", 1)[-1]
        return web.json_response({"error": t("campaigns.err.number").format(why=why)},
                                 status=400)
    except sqlite3.Error as exc:
        return web.json_response({"error": t("campaigns.err.store").format(error=exc)},
                                 status=503)
    listed, source, since, _ = entry
    await console.audit(request, "campaigns.dnc_add", listed,
                        {"note": note, "added": added, "source": source})
    request.app[CACHE].clear()
    text = t("campaigns.dnc_added" if added else "campaigns.dnc_already").format(
        number=listed, source=source)
    return web.json_response({"ok": True, "number": listed, "added": added,
                              "source": source, "since": since, "text": text})


def setup(app: web.Application, console: Console) -> None:
    app[CACHE] = Cache()
    app.router.add_get("/campaigns", page)
    app.router.add_get("/campaigns/live", live)
    app.router.add_get("/campaigns/figures", figures_json)
    app.router.add_post("/campaigns/dnc", dnc_add)
    app.router.add_get("/campaigns/{name}.csv", export)

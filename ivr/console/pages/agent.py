"""The agent's desk (``/agent``): their state, the call offered to them, its wrap-up.

Everything live comes from the loop's view through ``/agent/live``: only this agent's slice (their
entry, their call, the waiting counts of the queues they serve), never another agent's call. What
the view does not hold (the caller's ticket and its history, their previous calls, the agent's
calls today) is read from the store on the console's I/O threads, and only for the agent's own
call (``/agent/context``).

Changes are commands to the switchboard's loop (:class:`~ivr.driver.messages.AgentCommand`,
``ConsoleWrapUp``, ``ConsoleTransfer``) sent for the account's own agent whatever the request
says; one the agent's state does not allow is refused here (409) with a message saying why, and
every command sent is written to the audit log.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ivr.console import i18n
from ivr.console.hub import View
from ivr.console.live import stream
from ivr.console.pages.campaigns import ATTEMPT_OUTCOMES
from ivr.console.web import (
    Console,
    client_address,
    console_of,
    request_fields,
    request_lang,
    require_agent,
)
from ivr.driver.messages import AgentCommand, ConsoleTransfer, ConsoleWrapUp, PreviewDial
from ivr.tickets import OPEN_STATUSES, is_known

PAUSE_REASONS = ("break", "lunch", "training", "meeting", "other")
"""The pause reasons offered (the switchboard itself pauses with 'no answer'); the phone's
pause code pauses with 'break'. Reports add pause time up by reason."""
TICKET_ACTIONS = ("", "resolve", "escalate")
NOTE_MAX = 2000
HISTORY_CALLS = 10
PREVIEW_ATTEMPTS = 20
"""A preview contact's previous attempts shown, newest first."""

COMMAND_STATES: dict[str, tuple[str, ...]] = {
    # what the routing layer accepts (routing/acd.py): anything else would do nothing
    "login": ("logged_out",),
    "logout": ("available", "paused", "wrap_up"),
    "pause": ("available", "wrap_up"),
    "unpause": ("paused",),
}
CALL_FIELDS = ("call_id", "caller", "called", "phase", "started", "queue", "queued_at", "wait",
               "level", "path", "keys", "variables", "ticket", "script", "recorded", "notes")
"""What the desk shows of its call (not who supervises it)."""
SHOWN_ELSEWHERE = frozenset(("caller", "called", "call_id", "position", "expected_wait"))
"""Flow variables every call has that the desk shows otherwise (or that mean nothing to the
agent once the call is theirs); with those that are empty, left out of the call's variables."""

i18n.add({
    "en": {
        "agent.title": "My desk",
        "agent.no_view": "The switchboard has not reported your state yet: try again in a moment.",
        "agent.state": "State",
        "agent.since": "For",
        "agent.reason": "Pause reason",
        "agent.login": "Log in",
        "agent.logout": "Log out",
        "agent.pause": "Pause",
        "agent.unpause": "Resume",
        "agent.queues": "My queues",
        "agent.waiting": "waiting",
        "agent.call": "Call",
        "agent.no_call": "No call.",
        "agent.offered": "Ringing",
        "agent.caller": "Caller",
        "agent.queue": "Queue",
        "agent.wait": "Waited",
        "agent.path": "IVR path",
        "agent.keys": "Keys",
        "agent.vars": "Collected and looked up",
        "agent.script": "Script",
        "agent.ticket": "Open ticket",
        "agent.no_ticket": "No open ticket.",
        "agent.ticket_level": "level",
        "agent.history": "Previous calls",
        "agent.when": "When",
        "agent.outcome": "Outcome",
        "agent.agent": "Agent",
        "agent.disposition": "Disposition",
        "agent.note": "Note",
        "agent.wrapup": "Wrap-up",
        "agent.ticket_action": "Ticket",
        "agent.ticket_leave": "Leave as is",
        "agent.ticket_resolve": "Resolve",
        "agent.ticket_escalate": "Escalate to the next level",
        "agent.transfer": "Transfer",
        "agent.transfer_to": "To",
        "agent.transfer_number": "or a number",
        "agent.extensions": "Extensions",
        "agent.my_calls": "My calls today",
        "agent.talk": "Talk",
        "agent.reason.break": "break",
        "agent.reason.lunch": "lunch",
        "agent.reason.training": "training",
        "agent.reason.meeting": "meeting",
        "agent.reason.other": "other",
        "agent.reason.no answer": "no answer",
        "agent.state.logged_out": "logged out",
        "agent.state.available": "available",
        "agent.state.ringing": "ringing",
        "agent.state.on_call": "on a call",
        "agent.state.wrap_up": "wrap-up",
        "agent.state.paused": "paused",
        "agent.state.unknown": "unknown",
        "agent.err.login": "You are already logged in.",
        "agent.err.logout": "Finish the call first (or you are already logged out).",
        "agent.err.pause": "You can pause only when available or in wrap-up.",
        "agent.err.unpause": "You are not paused.",
        "agent.err.command": "Unknown command.",
        "agent.err.reason": "Choose a pause reason from the list.",
        "agent.err.no_call": "That is not your call now.",
        "agent.err.wrapup_state": "Notes and disposition are saved during the call or its "
                                  "wrap-up.",
        "agent.err.disposition": "Unknown disposition.",
        "agent.err.ticket": "Unknown ticket action.",
        "agent.err.note": "The note is too long.",
        "agent.err.transfer_state": "You can transfer only a call you are talking on.",
        "agent.err.target": "Choose an extension or a queue, or type a number agents may "
                            "transfer to.",
        "agent.err.body": "The request could not be read.",
        "agent.preview": "Next contact",
        "agent.preview_campaign": "Campaign",
        "agent.preview_name": "Name",
        "agent.preview_number": "Number",
        "agent.preview_vars": "From the list",
        "agent.preview_call": "Call",
        "agent.preview_calling": "Calling: your phone rings first.",
        "agent.preview_attempts": "Previous attempts",
        "agent.preview_no_attempts": "Never called yet.",
        "agent.preview_decision": "What was decided",
        "agent.err.no_preview": "That contact is not the one offered to you now.",
        "agent.err.preview_busy": "Finish the call you are on first.",
    },
    "it": {
        "agent.title": "La mia postazione",
        "agent.no_view": "Il centralino non ha ancora comunicato il tuo stato: riprova tra poco.",
        "agent.state": "Stato",
        "agent.since": "Da",
        "agent.reason": "Motivo della pausa",
        "agent.login": "Entra in servizio",
        "agent.logout": "Esci dal servizio",
        "agent.pause": "Pausa",
        "agent.unpause": "Riprendi",
        "agent.queues": "Le mie code",
        "agent.waiting": "in attesa",
        "agent.call": "Chiamata",
        "agent.no_call": "Nessuna chiamata.",
        "agent.offered": "Squilla",
        "agent.caller": "Chiamante",
        "agent.queue": "Coda",
        "agent.wait": "Attesa",
        "agent.path": "Percorso IVR",
        "agent.keys": "Tasti",
        "agent.vars": "Dati raccolti e cercati",
        "agent.script": "Copione",
        "agent.ticket": "Ticket aperto",
        "agent.no_ticket": "Nessun ticket aperto.",
        "agent.ticket_level": "livello",
        "agent.history": "Chiamate precedenti",
        "agent.when": "Quando",
        "agent.outcome": "Esito",
        "agent.agent": "Operatore",
        "agent.disposition": "Classificazione",
        "agent.note": "Nota",
        "agent.wrapup": "Chiusura chiamata",
        "agent.ticket_action": "Ticket",
        "agent.ticket_leave": "Lascia com'è",
        "agent.ticket_resolve": "Risolvi",
        "agent.ticket_escalate": "Passa al livello successivo",
        "agent.transfer": "Trasferisci",
        "agent.transfer_to": "A",
        "agent.transfer_number": "o un numero",
        "agent.extensions": "Interni",
        "agent.my_calls": "Le mie chiamate di oggi",
        "agent.talk": "Conversazione",
        "agent.reason.break": "pausa breve",
        "agent.reason.lunch": "pranzo",
        "agent.reason.training": "formazione",
        "agent.reason.meeting": "riunione",
        "agent.reason.other": "altro",
        "agent.reason.no answer": "nessuna risposta",
        "agent.state.logged_out": "fuori servizio",
        "agent.state.available": "disponibile",
        "agent.state.ringing": "squilla",
        "agent.state.on_call": "in chiamata",
        "agent.state.wrap_up": "chiusura chiamata",
        "agent.state.paused": "in pausa",
        "agent.state.unknown": "sconosciuto",
        "agent.err.login": "Sei già in servizio.",
        "agent.err.logout": "Termina prima la chiamata (o sei già fuori servizio).",
        "agent.err.pause": "Puoi andare in pausa solo se disponibile o in chiusura chiamata.",
        "agent.err.unpause": "Non sei in pausa.",
        "agent.err.command": "Comando sconosciuto.",
        "agent.err.reason": "Scegli un motivo della pausa dall'elenco.",
        "agent.err.no_call": "Questa non è la tua chiamata in corso.",
        "agent.err.wrapup_state": "Note e classificazione si salvano durante la chiamata o la "
                                  "sua chiusura.",
        "agent.err.disposition": "Classificazione sconosciuta.",
        "agent.err.ticket": "Azione sul ticket sconosciuta.",
        "agent.err.note": "La nota è troppo lunga.",
        "agent.err.transfer_state": "Puoi trasferire solo una chiamata in conversazione.",
        "agent.err.target": "Scegli un interno o una coda, o scrivi un numero a cui gli "
                            "operatori possono trasferire.",
        "agent.err.body": "Richiesta illeggibile.",
        "agent.preview": "Prossimo contatto",
        "agent.preview_campaign": "Campagna",
        "agent.preview_name": "Nome",
        "agent.preview_number": "Numero",
        "agent.preview_vars": "Dalla lista",
        "agent.preview_call": "Chiama",
        "agent.preview_calling": "Chiamata in corso: prima squilla il tuo telefono.",
        "agent.preview_attempts": "Tentativi precedenti",
        "agent.preview_no_attempts": "Mai chiamato finora.",
        "agent.preview_decision": "Decisione",
        "agent.err.no_preview": "Questo contatto non è quello che ti è proposto ora.",
        "agent.err.preview_busy": "Termina prima la chiamata in corso.",
    },
})

AGENT_STATES = ("logged_out", "available", "ringing", "on_call", "wrap_up", "paused", "unknown")
JS_WORDS = ("agent.no_call", "agent.offered", "agent.no_ticket", "agent.ticket_level",
            "agent.waiting", "agent.preview_calling", "agent.preview_no_attempts",
            *(f"outbound.outcome.{o}" for o in ATTEMPT_OUTCOMES),
            *(f"agent.state.{s}" for s in AGENT_STATES),
            *(f"agent.reason.{r}" for r in (*PAUSE_REASONS, "no answer")))
"""The words the page's script shows (given to it in the page)."""


# -- the live slice ------------------------------------------------------------------------------
def agent_slice(view: View, agent: str) -> dict[str, Any]:
    """This agent's part of *view*: their entry, their call (offered, talking, or in wrap-up)
    and the waiting counts of their queues. Nothing of other agents."""
    entry: Mapping[str, Any] | None = view.get("agents", {}).get(agent)
    call: dict[str, Any] | None = None
    queues: dict[str, Any] = {}
    if entry is not None:
        found = _call_of(view, entry.get("call_id"))
        if found is not None:
            call = {k: found.get(k) for k in CALL_FIELDS}
            call["variables"] = {k: v for k, v in (found.get("variables") or {}).items()
                                 if k not in SHOWN_ELSEWHERE and v not in ("", None)}
        all_queues = view.get("queues", {})
        for name in entry.get("queues") or ():
            q = all_queues.get(name) or {}
            queues[name] = {"waiting": q.get("waiting", 0),
                            "longest_wait": q.get("longest_wait", 0)}
    return {"seq": view.get("seq", 0), "at": view.get("at", 0.0), "name": agent,
            "agent": dict(entry) if entry is not None else None, "call": call,
            "queues": queues}


def _call_of(view: View, call_id: Any) -> Mapping[str, Any] | None:
    """A call of the view: in progress, or ended and still an agent's last (their wrap-up)."""
    if not call_id:
        return None
    found: Mapping[str, Any] | None = view.get("calls", {}).get(call_id) or \
        view.get("ended", {}).get(call_id)
    return found


def _own_call_ids(view: View, agent: str) -> set[str]:
    """The calls the agent may read about now: the one on their entry (offered, talking, in
    wrap-up)."""
    entry = view.get("agents", {}).get(agent)
    if entry is not None and entry.get("call_id"):
        return {str(entry["call_id"])}
    return set()


# -- store reads (I/O threads) -------------------------------------------------------------------
def _day_start(now: float) -> float:
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


def _call_row(row: sqlite3.Row) -> dict[str, Any]:
    return {"call_id": row["call_id"], "started": row["started_at"], "caller": row["caller"],
            "queue": row["queue"] or "", "agent": row["agent"] or "",
            "outcome": row["outcome"], "disposition": row["disposition"] or "",
            "wait": row["wait_seconds"], "talk": row["talk_seconds"],
            "note": row["note"] or "", "ticket": row["ticket"] or ""}


def calls_today(db: sqlite3.Connection, agent: str, now: float) -> list[dict[str, Any]]:
    rows = db.execute("SELECT * FROM calls WHERE agent = ? AND started_at >= ? "
                      "ORDER BY started_at DESC LIMIT 500", (agent, _day_start(now))).fetchall()
    return [_call_row(r) for r in rows]


def _ticket_json(row: sqlite3.Row) -> dict[str, Any]:
    try:
        history = json.loads(row["history"] or "[]")
    except ValueError:
        history = []
    return {"number": row["number"], "customer": row["customer"], "status": row["status"],
            "level": row["level"], "queue": row["queue"], "agent": row["agent"],
            "opened_at": row["opened_at"], "updated_at": row["updated_at"],
            "calls": row["calls"], "history": history if isinstance(history, list) else []}


def call_context(db: sqlite3.Connection, call_id: str, caller: str, customer: str,
                 ticket: str) -> dict[str, Any]:
    """The caller's open ticket (the call's own, else the customer's open one) and their
    previous calls (not this one), newest first."""
    found = None
    if ticket:
        found = db.execute("SELECT * FROM tickets WHERE number = ?", (ticket,)).fetchone()
    if found is None and is_known(customer):
        marks = ",".join("?" for _ in OPEN_STATUSES)
        found = db.execute(f"SELECT * FROM tickets WHERE customer = ? AND status IN ({marks}) "
                           "ORDER BY updated_at DESC LIMIT 1",
                           (customer, *OPEN_STATUSES)).fetchone()
    if not caller:
        row = db.execute("SELECT caller FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        caller = row["caller"] if row is not None else ""
    history: list[dict[str, Any]] = []
    if is_known(caller):  # withheld callers are not one person
        rows = db.execute("SELECT * FROM calls WHERE caller = ? AND call_id != ? "
                          "ORDER BY started_at DESC LIMIT ?",
                          (caller, call_id, HISTORY_CALLS)).fetchall()
        history = [_call_row(r) for r in rows]
    return {"call_id": call_id, "caller": caller,
            "ticket": _ticket_json(found) if found is not None else None, "history": history}


def preview_attempts(db: sqlite3.Connection, contact_id: int) -> list[dict[str, Any]]:
    """A campaign contact's previous attempts (``outbound_attempts``), newest first."""
    try:
        rows = db.execute("SELECT at, outcome, call_id, decision FROM outbound_attempts "
                          "WHERE contact_id = ? ORDER BY at DESC, id DESC LIMIT ?",
                          (contact_id, PREVIEW_ATTEMPTS)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):  # no list was ever imported into this store
            raise
        rows = []
    return [{"at": r["at"], "outcome": r["outcome"], "call_id": r["call_id"] or "",
             "decision": r["decision"]} for r in rows]


def _preview_of(entry: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    preview: Mapping[str, Any] | None = (entry or {}).get("preview") or None
    return preview


def _contact_id(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


# -- handlers ------------------------------------------------------------------------------------
def _refuse(request: web.Request, key: str, status: int = 409) -> web.Response:
    t = i18n.translator(_lang(request))
    return web.json_response({"error": t(key), "code": key}, status=status)


def _lang(request: web.Request) -> str:
    return request_lang(request, console_of(request))


def _source(request: web.Request) -> str:
    user = request["user"]
    return f"console {user.name}@{client_address(request)}"


def _entry(console: Console, agent: str) -> Mapping[str, Any] | None:
    entry: Mapping[str, Any] | None = console.hub.view.get("agents", {}).get(agent)
    return entry


async def page(request: web.Request) -> web.StreamResponse:
    _, agent = require_agent(request)
    console = console_of(request)
    now = time.time()
    lang = _lang(request)
    t = i18n.translator(lang)
    config = console.config
    mine = await console.read(lambda db: calls_today(db, agent, now))
    data = agent_slice(console.hub.view, agent)
    entry = data["agent"] or {}
    preview = _preview_of(entry)
    attempts: list[dict[str, Any]] = []
    if preview is not None and isinstance(preview.get("contact_id"), int):
        contact_id = int(preview["contact_id"])
        attempts = await console.read(lambda db: preview_attempts(db, contact_id))
    queues = getattr(config, "queues", {}) or {}
    served = [name for name, q in queues.items() if agent in getattr(q, "agents", ())]
    dispositions = list((getattr(config, "dispositions", {}) or {}).values())
    return console.render(
        request, "agent.html", agent=agent, entry=entry, state=entry.get("state", ""),
        call=data["call"], now=now, reasons=PAUSE_REASONS,
        dispositions=dispositions, labels={d.code: d.label for d in dispositions},
        extensions=sorted((getattr(config, "extensions", {}) or {}).keys()),
        queues=sorted(queues.keys()), served=served, my_calls=mine, preview=preview,
        attempts=attempts, words={k: t(k) for k in JS_WORDS})


async def live(request: web.Request) -> web.StreamResponse:
    _, agent = require_agent(request)
    return await stream(request, f"agent:{agent}", lambda view: agent_slice(view, agent))


async def my_calls(request: web.Request) -> web.StreamResponse:
    _, agent = require_agent(request)
    console = console_of(request)
    now = time.time()
    return web.json_response({"calls": await console.read(
        lambda db: calls_today(db, agent, now))})


async def context(request: web.Request) -> web.StreamResponse:
    _, agent = require_agent(request)
    console = console_of(request)
    call_id = request.query.get("call_id", "")
    view = console.hub.view
    if not call_id or call_id not in _own_call_ids(view, agent):
        return _refuse(request, "agent.err.no_call", 403)
    call = _call_of(view, call_id) or {}
    caller = str(call.get("caller") or "")
    customer = caller
    variable = getattr(console.config, "ticket_customer_variable", None)
    variables = call.get("variables") or {}
    if variable and variables.get(variable):
        customer = str(variables[variable])
    ticket = str(call.get("ticket") or "")
    found = await console.read(lambda db: call_context(db, call_id, caller, customer, ticket))
    return web.json_response(found)


async def state_command(request: web.Request) -> web.StreamResponse:
    _, agent = require_agent(request)
    console = console_of(request)
    body = await request_fields(request)
    command = body.get("command", "")
    if command not in COMMAND_STATES:
        return _refuse(request, "agent.err.command", 400)
    reason = ""
    if command == "pause":
        reason = body.get("reason", "") or "break"
        if reason not in PAUSE_REASONS:
            return _refuse(request, "agent.err.reason", 400)
    entry = _entry(console, agent)
    if entry is None:
        return _refuse(request, "agent.no_view")
    if entry.get("state") not in COMMAND_STATES[command]:
        return _refuse(request, f"agent.err.{command}")
    console.post(AgentCommand(agent, command, reason, _source(request)))
    await console.audit(request, f"agent.{command}", agent,
                        {"reason": reason} if reason else None)
    return web.json_response({"ok": True, "command": command})


async def wrapup(request: web.Request) -> web.StreamResponse:
    _, agent = require_agent(request)
    console = console_of(request)
    body = await request_fields(request)
    call_id = body.get("call_id", "")
    disposition = body.get("disposition", "").strip()
    note = body.get("note", "").strip()
    ticket = body.get("ticket", "")
    entry = _entry(console, agent)
    if entry is None:
        return _refuse(request, "agent.no_view")
    if not call_id or entry.get("call_id") != call_id:
        return _refuse(request, "agent.err.no_call")
    if entry.get("state") not in ("on_call", "wrap_up"):
        return _refuse(request, "agent.err.wrapup_state")
    if disposition and disposition not in (getattr(console.config, "dispositions", {}) or {}):
        return _refuse(request, "agent.err.disposition", 400)
    if ticket not in TICKET_ACTIONS:
        return _refuse(request, "agent.err.ticket", 400)
    if len(note) > NOTE_MAX:
        return _refuse(request, "agent.err.note", 400)
    console.post(ConsoleWrapUp(agent, call_id, disposition, note, ticket, _source(request)))
    await console.audit(request, "agent.wrapup", call_id,
                        {"agent": agent, "disposition": disposition, "note": note,
                         "ticket": ticket, "state": entry.get("state")})
    return web.json_response({"ok": True})


async def transfer(request: web.Request) -> web.StreamResponse:
    _, agent = require_agent(request)
    console = console_of(request)
    body = await request_fields(request)
    target = body.get("target", "").strip().replace(" ", "")
    entry = _entry(console, agent)
    if entry is None:
        return _refuse(request, "agent.no_view")
    if entry.get("state") != "on_call" or not entry.get("call_id"):
        return _refuse(request, "agent.err.transfer_state")
    if console.config.agent_transfer_named(target) is None:  # the loop checks it again
        return _refuse(request, "agent.err.target", 400)
    console.post(ConsoleTransfer(agent, target, _source(request)))
    await console.audit(request, "agent.transfer", str(entry.get("call_id")),
                        {"agent": agent, "target": target})
    return web.json_response({"ok": True})


async def preview_context(request: web.Request) -> web.StreamResponse:
    """The previous attempts of the contact offered to this agent now (no other contact)."""
    _, agent = require_agent(request)
    console = console_of(request)
    contact_id = _contact_id(request.query.get("contact_id", ""))
    preview = _preview_of(_entry(console, agent))
    if preview is None or contact_id is None or preview.get("contact_id") != contact_id:
        return _refuse(request, "agent.err.no_preview", 403)
    attempts = await console.read(lambda db: preview_attempts(db, contact_id))
    return web.json_response({"contact_id": contact_id, "attempts": attempts})


async def preview_call(request: web.Request) -> web.StreamResponse:
    """The agent calls the contact offered to them: :class:`PreviewDial` for that contact
    only (the campaign is the offer's, whatever the request says)."""
    _, agent = require_agent(request)
    console = console_of(request)
    body = await request_fields(request)
    contact_id = _contact_id(body.get("contact_id", ""))
    entry = _entry(console, agent)
    if entry is None:
        return _refuse(request, "agent.no_view")
    preview = _preview_of(entry)
    if preview is None or contact_id is None or preview.get("contact_id") != contact_id:
        return _refuse(request, "agent.err.no_preview")
    if entry.get("call_id"):
        return _refuse(request, "agent.err.preview_busy")
    campaign = str(preview.get("campaign") or "")
    console.post(PreviewDial(agent, campaign, contact_id, _source(request)))
    await console.audit(request, "agent.preview_call", str(contact_id),
                        {"agent": agent, "campaign": campaign,
                         "number": str(preview.get("number") or "")})
    return web.json_response({"ok": True})


def setup(app: web.Application, console: Console) -> None:
    routes: list[tuple[str, str, Callable[[web.Request], Any]]] = [
        ("GET", "/agent", page), ("GET", "/agent/live", live),
        ("GET", "/agent/context", context), ("GET", "/agent/calls", my_calls),
        ("POST", "/agent/state", state_command), ("POST", "/agent/wrapup", wrapup),
        ("POST", "/agent/transfer", transfer), ("GET", "/agent/preview", preview_context),
        ("POST", "/agent/preview-call", preview_call)]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)

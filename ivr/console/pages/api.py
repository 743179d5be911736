"""The console's JSON API, for a CRM or a script: call records, tickets, the live view, queues
and agents; a note on a live call; an agent's state. Described by ``ivr/console/openapi.yaml``,
served at ``/api/openapi.yaml`` and ``/api/openapi.json``.

Who may ask is the middleware's business (:func:`ivr.console.web._guard`): an API token
(``Authorization: Bearer``) or the session cookie of a page (plus its CSRF token for a change).
What they see is decided here: an account of role ``agent`` sees only its own calls, tickets and
slice of the live view; team leaders and up see every record; the whole live view (callers'
numbers, what they keyed) is for supervisors and admins.

Errors are ``{"error": "..."}`` with their status, the middleware's own refusals (401, 403 for a
missing CSRF token) included: :func:`_json_errors` rewrites them for paths under ``/api/``.
Lists are pages of ``limit`` rows, newest first; the answer's ``next``, given as ``before``,
asks for the page after.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from ivr.console.accounts import User
from ivr.console.web import ROLE_RANK, Console, client_address, console_of
from ivr.driver.messages import AgentCommand, CallNote
from ivr.tickets import STATUSES

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
NOTE_MAX = 2000
REASON_MAX = 100
COMMANDS = ("login", "logout", "pause", "unpause")
JSON_BODY_MAX = 64 * 1024

CALL_FIELDS = ("call_id", "caller", "called", "trunk", "flow", "started_at", "answered_at",
               "queued_at", "connected_at", "ended_at", "queue", "agent", "wait_seconds",
               "talk_seconds", "outcome", "end_reason", "transferred_to", "ticket",
               "ticket_seq", "disposition", "note", "ivr_path")
TICKET_FIELDS = ("number", "customer", "status", "level", "queue", "agent", "opened_at",
                 "updated_at", "closed_at", "calls")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
    404: web.HTTPNotFound}


def api_error(status: int, message: str) -> web.HTTPException:
    """An error answered as ``{"error": message}``."""
    text = json.dumps({"error": message})
    if status == 413:
        return web.HTTPRequestEntityTooLarge(JSON_BODY_MAX, JSON_BODY_MAX + 1, text=text,
                                             content_type="application/json")
    return _ERRORS[status](text=text, content_type="application/json")


def _bad(message: str) -> web.HTTPException:
    return api_error(400, message)


# -- who sees what -----------------------------------------------------------------------------
def _user(request: web.Request) -> User:
    user: User | None = request.get("user")
    if user is None:
        raise api_error(401, "sign in or send an API token")
    return user


def _rank(user: User) -> int:
    return ROLE_RANK.get(user.role, -1)


def _own_agent(user: User) -> str | None:
    """The agent whose records alone *user* sees; None: they see every record."""
    if user.role == "agent":
        return user.agent or "\0"  # an agent account without its agent sees nothing
    return None


def _source(request: web.Request, user: User) -> str:
    kind = "api" if request.get("via") == "token" else "console"
    return f"{kind} {user.name}@{client_address(request)}"


# -- parameters --------------------------------------------------------------------------------
def _limit(request: web.Request) -> int:
    text = request.query.get("limit", "")
    if not text:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise _bad(f"limit must be a whole number from 1 to {MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise _bad(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return limit


def _time(request: web.Request, name: str) -> float | None:
    """A time parameter: Unix seconds or ISO 8601 (without a zone: the box's local time)."""
    text = request.query.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            value = datetime.fromisoformat(text).timestamp()
        except ValueError:
            raise _bad(f"{name} must be Unix seconds or an ISO 8601 time") from None
    if not math.isfinite(value):
        raise _bad(f"{name} must be Unix seconds or an ISO 8601 time")
    return value


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > JSON_BODY_MAX:
        raise api_error(413, "the body is too large")
    raw = await request.content.read(JSON_BODY_MAX + 1)
    if len(raw) > JSON_BODY_MAX:
        raise api_error(413, "the body is too large")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise _bad("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, limit: int, required: bool = True) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string")
    if required and not value.strip():
        raise _bad(f"{name} is required")
    if len(value) > limit:
        raise _bad(f"{name} is longer than {limit} characters")
    return value


# -- rows --------------------------------------------------------------------------------------
def call_json(row: sqlite3.Row) -> dict[str, Any]:
    out: dict[str, Any] = {f: row[f] for f in CALL_FIELDS}
    out["notes"] = (row["note"] or "").splitlines()
    out["recording"] = bool(row["recording_path"])
    out["voicemail"] = bool(row["voicemail_path"])
    return out


def ticket_json(row: sqlite3.Row, history: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {f: row[f] for f in TICKET_FIELDS}
    if history:
        out["history"] = json.loads(row["history"] or "[]")
    return out


def event_json(row: sqlite3.Row) -> dict[str, Any]:
    try:
        detail = json.loads(row["detail"] or "{}")
    except ValueError:
        detail = {}
    return {"at": row["at"], "kind": row["kind"], "queue": row["queue"],
            "agent": row["agent"], "detail": detail}


def _worked_on(alias: str = "tickets") -> str:
    """SQL: the ticket was worked on by agent ``?`` (three times the same parameter)."""
    return (f"({alias}.agent = ? OR EXISTS (SELECT 1 FROM json_each({alias}.history) h "
            f"WHERE json_extract(h.value, '$.agent') = ?) OR EXISTS (SELECT 1 FROM calls c "
            f"WHERE c.ticket = {alias}.number AND c.agent = ?))")


# -- handlers: records -------------------------------------------------------------------------
async def list_calls(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    console = console_of(request)
    where: list[str] = []
    params: list[Any] = []
    for name, column, op in (("since", "started_at", ">="), ("until", "started_at", "<")):
        value = _time(request, name)
        if value is not None:
            where.append(f"{column} {op} ?")
            params.append(value)
    for name in ("queue", "agent", "caller"):
        match = request.query.get(name, "")
        if match:
            where.append(f"{name} = ?")
            params.append(match)
    own = _own_agent(user)
    if own is not None:
        where.append("agent = ?")
        params.append(own)
    limit = _limit(request)
    before = request.query.get("before", "")

    def read(db: sqlite3.Connection) -> dict[str, Any]:
        clauses, args = list(where), list(params)
        if before:
            mark = db.execute("SELECT started_at FROM calls WHERE call_id = ?",
                              (before,)).fetchone()
            if mark is None:
                raise _bad("before must be the next of a previous page (a call id)")
            clauses.append("(started_at, call_id) < (?, ?)")
            args += [mark[0], before]
        sql = "SELECT * FROM calls" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        rows = db.execute(sql + " ORDER BY started_at DESC, call_id DESC LIMIT ?",
                          (*args, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return {"calls": [call_json(r) for r in rows],
                "next": rows[-1]["call_id"] if more else None}

    return web.json_response(await console.read(read))


async def get_call(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    console = console_of(request)
    call_id = request.match_info["call_id"]

    def read(db: sqlite3.Connection) -> tuple[sqlite3.Row | None, list[sqlite3.Row]]:
        row = db.execute("SELECT * FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        if row is None:
            return None, []
        events = db.execute("SELECT * FROM queue_events WHERE call_id = ? ORDER BY at, id",
                            (call_id,)).fetchall()
        return row, events

    row, events = await console.read(read)
    if row is None:
        raise api_error(404, f"no call {call_id}")
    own = _own_agent(user)
    if own is not None and row["agent"] != own:
        raise api_error(403, "this call is not yours")
    out = call_json(row)
    out["events"] = [event_json(e) for e in events]
    return web.json_response(out)


async def list_tickets(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    console = console_of(request)
    where: list[str] = []
    params: list[Any] = []
    status = request.query.get("status", "")
    if status:
        if status not in STATUSES:
            raise _bad(f"status must be one of {', '.join(STATUSES)}")
        where.append("status = ?")
        params.append(status)
    caller = request.query.get("caller", "")
    if caller:
        where.append("customer = ?")
        params.append(caller)
    own = _own_agent(user)
    if own is not None:
        where.append(_worked_on())
        params += [own, own, own]
    limit = _limit(request)
    before = request.query.get("before", "")

    def read(db: sqlite3.Connection) -> dict[str, Any]:
        clauses, args = list(where), list(params)
        if before:
            mark = db.execute("SELECT opened_at FROM tickets WHERE number = ?",
                              (before,)).fetchone()
            if mark is None:
                raise _bad("before must be the next of a previous page (a ticket number)")
            clauses.append("(opened_at, number) < (?, ?)")
            args += [mark[0], before]
        sql = "SELECT * FROM tickets" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        rows = db.execute(sql + " ORDER BY opened_at DESC, number DESC LIMIT ?",
                          (*args, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return {"tickets": [ticket_json(r) for r in rows],
                "next": rows[-1]["number"] if more else None}

    return web.json_response(await console.read(read))


async def get_ticket(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    console = console_of(request)
    number = request.match_info["number"]
    own = _own_agent(user)

    def read(db: sqlite3.Connection) -> tuple[sqlite3.Row | None, bool]:
        row = db.execute("SELECT * FROM tickets WHERE number = ?", (number,)).fetchone()
        if row is None or own is None:
            return row, True
        mine = db.execute(f"SELECT 1 FROM tickets WHERE number = ? AND {_worked_on()}",
                          (number, own, own, own)).fetchone()
        return row, mine is not None

    row, allowed = await console.read(read)
    if row is None:
        raise api_error(404, f"no ticket {number}")
    if not allowed:
        raise api_error(403, "you did not work on this ticket")
    return web.json_response(ticket_json(row, history=True))


# -- handlers: live ----------------------------------------------------------------------------
def _live_calls(view: dict[str, Any]) -> dict[str, Any]:
    """The calls in progress and those in their agent's wrap-up, by id."""
    return {**view.get("ended", {}), **view.get("calls", {})}


def _asker(source: str) -> str:
    """The user of a command's source ``"console NAME@ADDRESS"`` ('' for another name)."""
    kind, _, rest = source.partition(" ")
    return rest.rpartition("@")[0] if kind in ("console", "api") and "@" in rest else ""


def agent_slice(view: dict[str, Any], agent: str, user: str) -> dict[str, Any]:
    """What an agent sees of the live view: their own entry, calls and notices, and the
    figures of their queues."""
    me = view.get("agents", {}).get(agent)
    queues = set(me.get("queues", [])) if me else set()
    notices = {k: v for k, v in view.get("notices", {}).items()
               if k == agent or _asker(k) == user}
    return {"seq": view["seq"], "at": view["at"],
            "agents": {agent: me} if me else {},
            "calls": {k: c for k, c in view.get("calls", {}).items() if c.get("agent") == agent},
            "ended": {k: c for k, c in view.get("ended", {}).items() if c.get("agent") == agent},
            "queues": {k: q for k, q in view.get("queues", {}).items() if k in queues},
            "supervisions": [], "notices": notices}


async def live(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    view = console_of(request).hub.view
    if _rank(user) >= ROLE_RANK["supervisor"]:
        return web.json_response(view)
    if not user.agent:
        raise api_error(403, "the live view is for supervisors and agents")
    return web.json_response(agent_slice(view, user.agent, user.name))


async def queues(request: web.Request) -> web.StreamResponse:
    _user(request)
    view = console_of(request).hub.view
    return web.json_response({"at": view["at"], "queues": view.get("queues", {})})


AGENT_FIGURES = ("name", "state", "since", "pause_reason", "queues", "team", "call_id",
                 "wrapup_until", "answered", "talk_seconds")


async def agents(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    view = console_of(request).hub.view
    everyone = view.get("agents", {})
    if _rank(user) < ROLE_RANK["team_leader"]:
        everyone = {k: a for k, a in everyone.items() if k == user.agent}
    return web.json_response({"at": view["at"], "agents": {
        name: {f: a.get(f) for f in AGENT_FIGURES} for name, a in everyone.items()}})


# -- handlers: changes -------------------------------------------------------------------------
async def call_note(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    console = console_of(request)
    call_id = request.match_info["call_id"]
    body = await _json_body(request)
    text = _text(body, "text", NOTE_MAX)
    call = _live_calls(console.hub.view).get(call_id)
    if call is None:
        raise api_error(404, f"call {call_id} is not in progress")
    if _rank(user) < ROLE_RANK["supervisor"] and \
            not (user.agent and call.get("agent") == user.agent):
        raise api_error(403, "you may note only your own call")
    source = _source(request, user)
    console.post(CallNote(call_id, text, source=source, author=user.name))
    await console.audit(request, "call.note", call_id, {"text": text})
    return web.json_response({"accepted": True, "call_id": call_id, "notice": source},
                             status=202)


def _known_agents(console: Console) -> set[str]:
    known = set(console.hub.view.get("agents", {}))
    config = console.config
    if config is not None:
        known |= set(config.agents)
    return known


async def agent_state(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    console = console_of(request)
    name = request.match_info["name"]
    body = await _json_body(request)
    command = body.get("command")
    if command not in COMMANDS:
        raise _bad(f"command must be one of {', '.join(COMMANDS)}")
    reason = _text(body, "reason", REASON_MAX, required=False).strip()
    if name not in _known_agents(console):
        raise api_error(404, f"no agent {name}")
    if _rank(user) < ROLE_RANK["supervisor"] and user.agent != name:
        raise api_error(403, "you may change only your own state")
    source = _source(request, user)
    console.post(AgentCommand(name, str(command), reason, source))
    await console.audit(request, f"agent.{command}", name, {"reason": reason} if reason else None)
    return web.json_response({"accepted": True, "agent": name, "command": command,
                              "notice": source}, status=202)


# -- the description ---------------------------------------------------------------------------
def _spec_handlers(text: str) -> tuple[Handler, Handler]:
    as_json = json.dumps(yaml.safe_load(text), indent=1)

    async def spec_yaml(request: web.Request) -> web.StreamResponse:
        _user(request)
        return web.Response(text=text, content_type="application/yaml")

    async def spec_json(request: web.Request) -> web.StreamResponse:
        _user(request)
        return web.Response(text=as_json, content_type="application/json")

    return spec_yaml, spec_json


# -- errors as JSON ----------------------------------------------------------------------------
@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost for ``/api/``: any error answer not already JSON becomes ``{"error": ...}``,
    keeping its status and headers (WWW-Authenticate, the security headers)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    if not request.path.startswith("/api/") or response.status < 400 or \
            not isinstance(response, web.Response) or \
            response.content_type == "application/json":
        if isinstance(response, web.HTTPException):
            raise response  # aiohttp wants them raised, not returned
        return response
    text = (response.text or "") if response.body is not None else ""
    message = text.split(": ", 1)[1] if text.startswith(f"{response.status}: ") else text
    out = web.json_response({"error": message or response.reason}, status=response.status)
    for key, value in response.headers.items():
        if key.lower() not in ("content-type", "content-length"):
            out.headers[key] = value
    return out


def setup(app: web.Application, console: Console) -> None:
    app.middlewares.insert(0, _json_errors)
    spec_yaml, spec_json = _spec_handlers(SPEC_PATH.read_text(encoding="utf-8"))
    app.router.add_get("/api/calls", list_calls)
    app.router.add_get("/api/calls/{call_id}", get_call)
    app.router.add_post("/api/calls/{call_id}/notes", call_note)
    app.router.add_get("/api/tickets", list_tickets)
    app.router.add_get("/api/tickets/{number}", get_ticket)
    app.router.add_get("/api/live", live)
    app.router.add_get("/api/queues", queues)
    app.router.add_get("/api/agents", agents)
    app.router.add_post("/api/agents/{name}/state", agent_state)
    app.router.add_get("/api/openapi.yaml", spec_yaml)
    app.router.add_get("/api/openapi.json", spec_json)

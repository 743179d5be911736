"""The supervisor's wallboard (``/wallboard``; ``/wallboard?tv=1`` for a wall screen).

Per queue a tile: callers waiting and the longest wait (live, from the loop's view, the same
state ``/metrics`` shows), service level, answered, abandoned and escalated today and over the
last hour (from the store). Per agent a row with the state, time in it, today's calls and AHT,
the current caller's wait and path, and the supervisor's buttons (listen, whisper, barge, log
in/out, pause). The calls in progress below.

Where the figures come from:

- live figures: the view the loop publishes (:mod:`ivr.console.hub`), on every change;
- today and last hour: :func:`ivr.report.compute` over the store's calls and queue events, read
  by one background task at most every :data:`STATS_EVERY` seconds and only while a wallboard
  is open; 50 open wallboards share that one read.

Both go out in one Server-Sent Events stream (``/wallboard/live``): one payload per view, per
statistics read and per queue filter (a supervisor account tied to a ``supervisors:`` entry
sees that entry's queues; any other supervisor or admin sees every queue), made once however
many pages show it.

Service levels: ``sl`` = answered within ``metrics.service_level_threshold`` / answered;
``sl2`` = (answered + abandoned within the threshold) / (answered + abandoned), the two
definitions of ``ivr_queue_service_level_ratio`` (one threshold, two definitions).

Tile colours: ``warn`` when a caller waits, or the last hour's sl is below
:data:`SL_TARGET` (the 80 % of the ``QueueServiceLevelLow`` alert in monitoring/alerts.yml);
``bad`` when the longest wait passes the service level threshold or the last hour's sl is below
:data:`SL_BAD`.

Every figure ``/metrics`` also shows carries ``data-metric`` (the sample as Prometheus text
writes it) and ``data-value`` (the raw number), so the two can be compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from ivr.console import i18n
from ivr.console.hub import View
from ivr.console.live import KEEPALIVE, encode
from ivr.console.web import Console, client_address, console_of, require
from ivr.report import compute

log = logging.getLogger("ivr.console.wallboard")

WALL_GAP = 0.2
"""Seconds at least between two messages to one wallboard."""

STATS_EVERY = 5.0
"""Seconds between two reads of today's and the last hour's figures while a wallboard is open."""
HOUR = 3600.0
SL_TARGET = 0.8
"""Service level under which a tile turns warn: the QueueServiceLevelLow alert's 80 %."""
SL_BAD = 0.6
"""Service level under which a tile turns bad (no setting for it: a constant)."""
STATES = ("available", "ringing", "on_call", "wrap_up", "paused", "logged_out")
"""Agent states always shown (others the view names are added after them)."""
COMMANDS = ("login", "logout", "pause", "unpause")
MODES = ("listen", "whisper", "barge")
DEFAULT_THRESHOLD = 20.0

i18n.add({
    "en": {
        "wb.title": "Wallboard",
        "wb.tv": "TV mode",
        "wb.queues": "Queues",
        "wb.waiting": "Waiting",
        "wb.longest_wait": "Longest wait",
        "wb.sl_today": "SL today",
        "wb.sl2_today": "SL2 today",
        "wb.sl_hour": "SL last hour",
        "wb.sl2_hour": "SL2 last hour",
        "wb.answered": "Answered today",
        "wb.abandoned": "Abandoned today",
        "wb.escalated": "Escalated today",
        "wb.window": "/metrics, last {minutes} min of this run:",
        "wb.sl_note": "SL: answered within {threshold} s of answered; SL2: answered or "
                      "abandoned within {threshold} s of both.",
        "wb.calls_in_progress": "Calls in progress",
        "wb.agents_now": "Agents now",
        "wb.agents": "Agents",
        "wb.agent": "Agent",
        "wb.state": "State",
        "wb.in_state": "For",
        "wb.answered_short": "Answered",
        "wb.aht": "AHT",
        "wb.caller_wait": "Caller's wait",
        "wb.path": "Path",
        "wb.actions": "Actions",
        "wb.listen": "Listen",
        "wb.whisper": "Whisper",
        "wb.barge": "Barge",
        "wb.login": "Log in",
        "wb.logout": "Log out",
        "wb.pause": "Pause",
        "wb.unpause": "Unpause",
        "wb.calls": "Calls in progress",
        "wb.caller": "Caller",
        "wb.phase": "Phase",
        "wb.queue": "Queue",
        "wb.wait": "Wait",
        "wb.no_calls": "No call in progress.",
        "wb.no_agents": "No agent.",
        "wb.stats_at": "Today's figures read at",
        "wb.filtered": "Queues of {supervisor}",
        "wb.phase.ivr": "in the menu",
        "wb.phase.queued": "waiting",
        "wb.phase.connected": "with an agent",
        "wb.phase.transferring": "transferring",
        "wb.phase.transferred": "transferred",
        "wb.phase.closing": "closing",
        "wb.state.available": "available",
        "wb.state.ringing": "ringing",
        "wb.state.on_call": "on a call",
        "wb.state.wrap_up": "wrap-up",
        "wb.state.paused": "paused",
        "wb.state.logged_out": "logged out",
        "wb.no_tie": "Your account has no supervisor's phone: an admin ties it to an entry of "
                     "supervisors: in ivr.yaml (ivr user ... --supervisor NAME).",
        "wb.not_on_call": "{agent} is not on a call.",
        "wb.sent_supervise": "Calling your phone to {mode} {agent}.",
        "wb.sent_state": "{command} sent for {agent}.",
    },
    "it": {
        "wb.title": "Cruscotto",
        "wb.tv": "Modalità TV",
        "wb.queues": "Code",
        "wb.waiting": "In attesa",
        "wb.longest_wait": "Attesa più lunga",
        "wb.sl_today": "SL oggi",
        "wb.sl2_today": "SL2 oggi",
        "wb.sl_hour": "SL ultima ora",
        "wb.sl2_hour": "SL2 ultima ora",
        "wb.answered": "Risposte oggi",
        "wb.abandoned": "Abbandonate oggi",
        "wb.escalated": "Escalate oggi",
        "wb.window": "/metrics, ultimi {minutes} min da questo avvio:",
        "wb.sl_note": "SL: risposte entro {threshold} s sulle risposte; SL2: risposte o "
                      "abbandonate entro {threshold} s su entrambe.",
        "wb.calls_in_progress": "Chiamate in corso",
        "wb.agents_now": "Operatori ora",
        "wb.agents": "Operatori",
        "wb.agent": "Operatore",
        "wb.state": "Stato",
        "wb.in_state": "Da",
        "wb.answered_short": "Risposte",
        "wb.aht": "Durata media",
        "wb.caller_wait": "Attesa del chiamante",
        "wb.path": "Percorso",
        "wb.actions": "Azioni",
        "wb.listen": "Ascolta",
        "wb.whisper": "Suggerisci",
        "wb.barge": "Intervieni",
        "wb.login": "Entra",
        "wb.logout": "Esci",
        "wb.pause": "Pausa",
        "wb.unpause": "Riprendi",
        "wb.calls": "Chiamate in corso",
        "wb.caller": "Chiamante",
        "wb.phase": "Fase",
        "wb.queue": "Coda",
        "wb.wait": "Attesa",
        "wb.no_calls": "Nessuna chiamata in corso.",
        "wb.no_agents": "Nessun operatore.",
        "wb.stats_at": "Dati di oggi letti alle",
        "wb.filtered": "Code di {supervisor}",
        "wb.phase.ivr": "nel menu",
        "wb.phase.queued": "in attesa",
        "wb.phase.connected": "con un operatore",
        "wb.phase.transferring": "in trasferimento",
        "wb.phase.transferred": "trasferita",
        "wb.phase.closing": "in chiusura",
        "wb.state.available": "disponibile",
        "wb.state.ringing": "squilla",
        "wb.state.on_call": "in chiamata",
        "wb.state.wrap_up": "post-chiamata",
        "wb.state.paused": "in pausa",
        "wb.state.logged_out": "disconnesso",
        "wb.no_tie": "Il tuo account non ha un telefono da supervisore: un amministratore lo "
                     "lega a una voce di supervisors: in ivr.yaml (ivr user ... --supervisor "
                     "NOME).",
        "wb.not_on_call": "{agent} non è in chiamata.",
        "wb.sent_supervise": "Chiamo il tuo telefono: {mode} su {agent}.",
        "wb.sent_state": "{command} inviato per {agent}.",
    },
})


# -- figures --------------------------------------------------------------------------------
def metric(name: str, **labels: str) -> str:
    """The sample's name as ``/metrics`` writes it: ``name{a="x",b="y"}``, labels sorted by
    name as prometheus_client writes them."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def midnight(now: float) -> float:
    """The start of *now*'s day in the machine's local time."""
    day = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


def read_stats(db: Any, now: float, threshold: float) -> dict[str, Any]:
    """Today's and the last hour's figures by queue, and today's by agent, from the store
    (*db*: a read-only connection with rows by name)."""
    day = midnight(now)
    start = min(day, now - HOUR)
    calls = [dict(r) for r in db.execute(
        "SELECT * FROM calls WHERE started_at >= ? AND started_at < ?", (start, now))]
    events = []
    for r in db.execute("SELECT at, kind, queue, call_id, agent, detail FROM queue_events "
                        "WHERE at >= ? AND at < ? ORDER BY at, id", (start, now)):
        event = dict(r)
        try:
            event["detail"] = json.loads(event["detail"] or "{}")
        except ValueError:
            event["detail"] = {}
        events.append(event)
    today_events = [e for e in events if e["at"] >= day]
    today = compute(calls, today_events, start=day, end=now, threshold=threshold,
                    fcr_days=0.0, total=False)
    hour = compute(calls, [e for e in events if e["at"] >= now - HOUR], start=now - HOUR,
                   end=now, threshold=threshold, fcr_days=0.0, total=False)
    agents = compute(calls, today_events, start=day, end=now, by="agent",
                     threshold=threshold, fcr_days=0.0, total=False)
    escalated: dict[str, set[str]] = {}
    for e in today_events:
        if e["kind"] == "escalate" and e["queue"] and e["call_id"]:
            escalated.setdefault(e["queue"], set()).add(e["call_id"])
    queues: dict[str, dict[str, Any]] = {}
    for row in today:
        queues[row.group] = {"answered": row.answered, "abandoned": row.abandoned,
                             "offered": row.offered, "sl_today": row.sl,
                             "sl2_today": row.sl2, "sl_hour": None, "sl2_hour": None,
                             "escalated": len(escalated.get(row.group, ()))}
    empty = {"answered": 0, "abandoned": 0, "offered": 0, "sl_today": None, "sl2_today": None,
             "escalated": 0}
    for row in hour:
        entry = queues.setdefault(row.group, dict(empty))
        entry["sl_hour"], entry["sl2_hour"] = row.sl, row.sl2
    for queue, ids in escalated.items():
        queues.setdefault(queue, {**empty, "sl_hour": None, "sl2_hour": None})["escalated"] = \
            len(ids)
    return {"at": now, "queues": queues,
            "agents": {row.group: {"answered": row.answered, "aht": row.aht}
                       for row in agents}}


NO_STATS: dict[str, Any] = {"at": 0.0, "queues": {}, "agents": {}}


def tile_level(live: Mapping[str, Any], stats: Mapping[str, Any], threshold: float) -> str:
    """'ok', 'warn' or 'bad' for a queue's tile (see the module doc)."""
    level = "ok"
    sl = stats.get("sl_hour")
    if live.get("waiting", 0) > 0 or (sl is not None and sl < SL_TARGET):
        level = "warn"
    if live.get("longest_wait", 0.0) > threshold or (sl is not None and sl < SL_BAD):
        level = "bad"
    return level


@dataclass(frozen=True)
class Scope:
    """What one wallboard shows: every queue (``queues`` None) or a supervisor's."""

    queues: tuple[str, ...] | None
    supervisor: str = ""

    @property
    def key(self) -> str:
        return "wallboard:*" if self.queues is None else "wallboard:" + ",".join(self.queues)

    def has_queue(self, queue: str | None) -> bool:
        return self.queues is None or (queue is not None and queue in self.queues)

    def has_agent(self, agent: Mapping[str, Any]) -> bool:
        return self.queues is None or any(q in self.queues for q in agent.get("queues") or ())


def scope_of(console: Console, user: Any) -> Scope:
    supervisors = getattr(console.config, "supervisors", None) or {}
    entry = supervisors.get(user.supervisor) if user.supervisor else None
    if user.role == "supervisor" and entry is not None:
        return Scope(tuple(sorted(entry.queues)), entry.name)
    return Scope(None)


def _threshold(console: Console) -> float:
    return float(getattr(console.config, "sl_threshold", DEFAULT_THRESHOLD))


def _queue_names(console: Console, view: View, scope: Scope) -> list[str]:
    names = set(getattr(console.config, "queues", None) or ()) | set(view.get("queues") or ())
    return sorted(q for q in names if scope.has_queue(q))


def _path(call: Mapping[str, Any] | None) -> list[str]:
    return [str(p) for p in (call or {}).get("path") or ()]


def _call_wait(call: Mapping[str, Any], at: float) -> tuple[float, bool]:
    """(seconds the caller waited as of the view, whether it still grows: in the queue)."""
    if call.get("phase") == "queued" and call.get("queued_at") is not None:
        return max(float(call.get("wait") or 0.0), at - float(call["queued_at"])), True
    return float(call.get("wait") or 0.0), False


def on_call(agent: Mapping[str, Any], calls: Mapping[str, Any]) -> bool:
    """The agent talks to a caller (what listen, whisper and barge need): their call is
    connected, not just ringing or in wrap-up."""
    call = calls.get(agent.get("call_id") or "")
    return call is not None and call.get("phase") == "connected" \
        and not agent.get("offered") and call.get("agent") == agent.get("name")


def live_part(console: Console, view: View, scope: Scope) -> dict[str, Any]:
    """The live slice of *view* for *scope* (made once per view and scope)."""
    at = float(view.get("at") or 0.0)
    everyone = scope.queues is None
    vqueues: Mapping[str, Any] = view.get("queues") or {}
    queues = {}
    for name in _queue_names(console, view, scope):
        q = vqueues.get(name) or {}
        queues[name] = {"waiting": int(q.get("waiting") or 0),
                        "longest_wait": float(q.get("longest_wait") or 0.0),
                        "agents": dict(q.get("agents") or {})}
    calls_all: Mapping[str, Any] = view.get("calls") or {}
    vagents: Mapping[str, Any] = view.get("agents") or {}
    agents_shown = {n: a for n, a in vagents.items() if scope.has_agent(a)}
    supervised: dict[str, list[str]] = {}
    for s in view.get("supervisions") or ():
        supervised.setdefault(str(s.get("agent")), []).append(
            f"{s.get('supervisor')} ({s.get('mode')})")
    agents = []
    for name in sorted(agents_shown):
        a = agents_shown[name]
        call = calls_all.get(a.get("call_id") or "")
        talking = on_call(a, calls_all)
        wait, ticking = _call_wait(call, at) if call else (0.0, False)
        since = a.get("since")
        agents.append({
            "name": name, "state": str(a.get("state") or "logged_out"),
            "in_state": max(0.0, at - float(since)) if since else 0.0,
            "pause_reason": a.get("pause_reason") or "", "queues": list(a.get("queues") or ()),
            "call_id": a.get("call_id") or "", "on_call": talking,
            "caller_wait": wait if call else None, "caller_wait_ticks": ticking,
            "path": _path(call), "supervised": supervised.get(name, [])})
    calls = []
    for call_id in sorted(calls_all, key=lambda c: (calls_all[c].get("started") or 0, c)):
        c = calls_all[call_id]
        if not (scope.has_queue(c.get("queue")) or (c.get("agent") in agents_shown)):
            continue
        wait, ticking = _call_wait(c, at)
        calls.append({"call_id": call_id, "caller": c.get("caller") or "",
                      "phase": c.get("phase") or "", "queue": c.get("queue") or "",
                      "wait": wait, "wait_ticks": ticking, "agent": c.get("agent") or "",
                      "path": _path(c)})
    by_state: dict[str, int] = {s: 0 for s in STATES}
    for a in agents_shown.values():
        state = str(a.get("state") or "logged_out")
        by_state[state] = by_state.get(state, 0) + 1
    notices = view.get("notices") or {}
    supervisors = getattr(console.config, "supervisors", None) or {}
    return {"seq": view.get("seq", 0), "at": at, "everyone": everyone, "queues": queues,
            "notices": {name: notices[name] for name in supervisors if notices.get(name)},
            "agents": agents, "calls": calls, "agents_by_state": by_state,
            "calls_in_progress": len(calls_all) if everyone else len(calls)}


def window_levels(console: Console) -> dict[str, dict[str, float | None]]:
    """Queue -> sl and sl2 as ``/metrics`` has them now (``ivr_queue_service_level_ratio``:
    the switchboard's own window since it started); empty without the metrics."""
    metrics = console.metrics
    if metrics is None:
        return {}
    levels = metrics.service_levels(metrics.clock())
    return {queue: {"sl": sl, "sl2": sl2} for queue, (sl, sl2) in levels.items()}


def payload(console: Console, live: Mapping[str, Any], stats: Mapping[str, Any]
            ) -> dict[str, Any]:
    """What a wallboard shows: the live part with today's figures and the tiles' levels."""
    threshold = _threshold(console)
    queues = {}
    for name, q in live["queues"].items():
        s = stats["queues"].get(name) or {}
        queues[name] = {**q, **{k: s.get(k) for k in (
            "sl_today", "sl2_today", "sl_hour", "sl2_hour")},
            **{k: int(s.get(k) or 0) for k in ("answered", "abandoned", "escalated")},
            "window": (stats.get("window") or {}).get(name) or {},
            "level": tile_level(q, s, threshold)}
    agents = []
    for a in live["agents"]:
        s = stats["agents"].get(a["name"]) or {}
        agents.append({**a, "answered": int(s.get("answered") or 0), "aht": s.get("aht")})
    metrics = console.metrics
    return {**live, "queues": queues, "agents": agents, "stats_at": stats.get("at", 0.0),
            "threshold": threshold,
            "window_minutes": round(metrics.sl_window / 60) if metrics is not None else 0}


# -- the shared state: statistics and payloads ----------------------------------------------
@dataclass
class Board:
    """Today's figures, read while at least one wallboard is open, and the payloads made from
    them (one per scope)."""

    console: Console
    stats: dict[str, Any] = field(default_factory=lambda: dict(NO_STATS))
    version: int = 0
    watchers: int = 0
    read_at: float = 0.0
    """When the last read began (monotonic); 0: never."""
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Future[None] | None = None
    _lock: asyncio.Lock | None = None
    _payloads: dict[str, tuple[int, int, str, dict[str, Any]]] = field(default_factory=dict)

    def changed(self) -> asyncio.Future[None]:
        """Done at the next statistics update."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    async def refresh(self, max_age: float = STATS_EVERY) -> dict[str, Any]:
        """The statistics, read again if they are older than *max_age* seconds (one read at a
        time, however many ask)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.read_at and time.monotonic() - self.read_at < max_age:
                return self.stats
            self.read_at = time.monotonic()
            threshold = _threshold(self.console)
            now = time.time()
            try:
                stats = await self.console.read(lambda db: read_stats(db, now, threshold))
            except Exception:  # a locked or damaged file: keep the last figures
                log.exception("wallboard: today's figures could not be read from the store")
                return self.stats
            stats["window"] = window_levels(self.console)
            self.stats = stats
            self.version += 1
            if self._changed is not None and not self._changed.done():
                self._changed.set_result(None)
            return stats

    async def _work(self) -> None:
        try:
            while self.watchers > 0:
                await self.refresh(STATS_EVERY * 0.9)
                await asyncio.sleep(STATS_EVERY)
        finally:
            self._task = None

    def watch(self) -> None:
        """A wallboard opened: the reads run while any is open."""
        self.watchers += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._work())

    def unwatch(self) -> None:
        self.watchers = max(0, self.watchers - 1)

    async def stop(self) -> None:
        """The server stops: end the reads now."""
        self.watchers = 0
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def made(self, view: View, scope: Scope) -> tuple[str, dict[str, Any]]:
        """The payload (JSON text and data) for *view* and *scope*, made once per view, per
        statistics read and per scope."""
        seq = int(view.get("seq", 0))
        cached = self._payloads.get(scope.key)
        if cached is not None and cached[0] == seq and cached[1] == self.version:
            return cached[2], cached[3]
        live = self.console.hub.derived(scope.key, view,
                                        lambda v: live_part(self.console, v, scope))
        data = payload(self.console, live, self.stats)
        text = encode(data)
        self._payloads[scope.key] = (seq, self.version, text, data)
        return text, data


def board_of(console: Console) -> Board:
    board: Board | None = getattr(console, "_wallboard", None)
    if board is None:
        board = Board(console)
        console._wallboard = board  # type: ignore[attr-defined]
    return board


# -- pages ------------------------------------------------------------------------------------
def _states_in(data: Mapping[str, Any]) -> list[str]:
    return list(data["agents_by_state"])


async def wallboard_page(request: web.Request) -> web.StreamResponse:
    user = require(request, "supervisor")
    console = console_of(request)
    scope = scope_of(console, user)
    board = board_of(console)
    await board.refresh()
    _, data = board.made(console.hub.view, scope)
    tv = request.query.get("tv", "") not in ("", "0")
    notice = data["notices"].get(user.supervisor) or {}
    words = _t(request, console)

    def word(kind: str, name: str) -> str:
        found: str = words(f"wb.{kind}.{name}")
        return name if found.startswith(f"wb.{kind}.") else found

    return console.render(request, "wallboard.html", tv=tv, data=data, scope=scope,
                          notice_seq=notice.get("seq", 0), word=word,
                          states=_states_in(data), metric=metric, modes=MODES,
                          commands=COMMANDS, fmt_ratio=fmt_ratio, fmt_duration=fmt_duration,
                          value=value)


def fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.0f}%"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def value(number: float | None) -> str:
    """A figure's data-value: the raw number ('' for none)."""
    if number is None:
        return ""
    return str(number) if isinstance(number, int) else repr(float(number))


async def live(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the wallboard's payload at every view and every statistics read."""
    user = require(request, "supervisor")
    console = console_of(request)
    scope = scope_of(console, user)
    board = board_of(console)
    hub = console.hub
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    board.watch()
    last_text = ""
    last_write = time.monotonic()
    view_wait: asyncio.Task[View] | None = None
    view = hub.view
    try:
        while True:
            text, _ = board.made(view, scope)
            if text != last_text:
                last_text = text
                await response.write(f"data: {text}\n\n".encode())
                last_write = time.monotonic()
                # a burst of changes is one message: at most one per WALL_GAP (a wallboard's
                # message is ~10 KB; 50 of them 20 times a second cost the box more than the
                # calls), then the latest view
                await asyncio.sleep(WALL_GAP)
                if view_wait is None and hub.view.get("seq") != view.get("seq"):
                    view = hub.view
                    continue
            elif time.monotonic() - last_write >= KEEPALIVE * 0.9:
                await response.write(b": keepalive\n\n")
                last_write = time.monotonic()
            # the next view or the next statistics read, whichever comes first; the view's
            # waiter is kept across turns, so a quiet night adds no waiter per read
            if view_wait is None:
                view_wait = asyncio.ensure_future(hub.next(int(view.get("seq", 0)), KEEPALIVE))
            waits: set[asyncio.Future[Any]] = {view_wait, board.changed()}
            done, _ = await asyncio.wait(waits, timeout=KEEPALIVE,
                                         return_when=asyncio.FIRST_COMPLETED)
            if view_wait in done:
                view = view_wait.result()
                view_wait = None
            else:
                view = hub.view
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        board.unwatch()
        if view_wait is not None:
            view_wait.cancel()
    return response


def _source(request: web.Request, user: Any) -> str:
    return f"console {user.name}@{client_address(request)}"


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": "The request is not JSON."}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "The request is not an object."}),
                                 content_type="application/json")
    return body


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


def _t(request: web.Request, console: Console) -> Any:
    from ivr.console.web import request_lang

    return i18n.translator(request_lang(request, console))


async def supervise(request: web.Request) -> web.StreamResponse:
    """POST {agent, mode}: the box calls the user's supervisor phone into the agent's call."""
    from ivr.driver.messages import Supervise

    user = require(request, "supervisor")
    console = console_of(request)
    t = _t(request, console)
    body = await _json(request)
    agent, mode = str(body.get("agent", "")), str(body.get("mode", ""))
    if mode not in MODES:
        return _refuse(400, f"Unknown mode {mode!r}: listen, whisper or barge.")
    supervisors = getattr(console.config, "supervisors", None) or {}
    if not user.supervisor or user.supervisor not in supervisors:
        return _refuse(409, t("wb.no_tie"))
    scope = scope_of(console, user)
    state = (console.hub.view.get("agents") or {}).get(agent)
    if state is not None and not scope.has_agent(state):
        return _refuse(403, f"{agent} is not in your queues.")
    if state is None or not on_call(state, console.hub.view.get("calls") or {}):
        return _refuse(409, t("wb.not_on_call").format(agent=agent))
    console.post(Supervise(user.supervisor, agent, mode, _source(request, user)))
    await console.audit(request, "supervise", agent,
                        {"mode": mode, "supervisor": user.supervisor,
                         "call_id": state.get("call_id")})
    return web.json_response({"ok": True, "message": t("wb.sent_supervise").format(
        mode=t(f"wb.{mode}").lower(), agent=agent)})


async def agent_state(request: web.Request) -> web.StreamResponse:
    """POST {agent, command, reason}: log an agent in or out, pause or unpause them."""
    from ivr.driver.messages import AgentCommand

    user = require(request, "supervisor")
    console = console_of(request)
    t = _t(request, console)
    body = await _json(request)
    agent, command = str(body.get("agent", "")), str(body.get("command", ""))
    reason = str(body.get("reason", ""))[:64]
    if command not in COMMANDS:
        return _refuse(400, f"Unknown command {command!r}: {', '.join(COMMANDS)}.")
    if agent not in (getattr(console.config, "agents", None) or {}):
        return _refuse(404, f"No agent {agent!r} in ivr.yaml.")
    scope = scope_of(console, user)
    state = (console.hub.view.get("agents") or {}).get(agent)
    if scope.queues is not None and (state is None or not scope.has_agent(state)):
        return _refuse(403, f"{agent} is not in your queues.")
    if command == "pause" and not reason:
        reason = "supervisor"
    console.post(AgentCommand(agent, command, reason, _source(request, user)))
    await console.audit(request, "agent_state", agent, {"command": command, "reason": reason})
    return web.json_response({"ok": True, "message": t("wb.sent_state").format(
        command=t(f"wb.{command}"), agent=agent)})


def setup(app: web.Application, console: Console) -> None:
    app.router.add_get("/wallboard", wallboard_page)
    app.router.add_get("/wallboard/live", live)
    app.router.add_post("/wallboard/supervise", supervise)
    app.router.add_post("/wallboard/agent-state", agent_state)

    async def stop_reads(app: web.Application) -> None:
        await board_of(console).stop()

    app.on_cleanup.append(stop_reads)


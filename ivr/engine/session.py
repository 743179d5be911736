"""CallSession: one caller's walk through a flow, as a pure state machine.

The driver feeds events with the current time (monotonic seconds) and executes the actions
returned; it asks :meth:`CallSession.next_deadline` when to deliver :class:`TimerFired`. Nothing
here reads a clock, touches a socket or knows about SIP: the wall-clock time that business hours
need is derived from ``started_at`` given at construction.

    >>> session = CallSession(flow, "c1", caller="+39021234", called="800123456")
    >>> actions = session.start(now=0.0)          # [Answer(), PlayPrompt(...)]
    >>> actions = session.handle(PlaybackFinished(play_id=1), now=4.2)
    >>> actions = session.handle(DigitPressed("1"), now=5.0)
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr.flow.model import (
    Branch,
    Collect,
    Condition,
    Flow,
    Goto,
    Hangup,
    Hours,
    Language,
    Lookup,
    Menu,
    MenuOption,
    Node,
    Play,
    Prompts,
    Queue,
    Return,
    Say,
    SetOverride,
    Sms,
    Subflow,
    Transfer,
    Voicemail,
)
from ivr.flow.prompts import (  # re-exported: prompt resolution lives in ivr.flow.prompts
    _VAR,
    ANNOUNCE_PROMPT,
    CALLBACK_PROMPT,
    PromptPiece,
    fill,
    resolve,
)

log = logging.getLogger("ivr.engine")

MAX_STEPS_PER_EVENT = 64
CONFIRM_PROMPT: Prompts = (Say({
    "it": "Ha inserito {digits:digits}. Prema 1 per confermare, 2 per riprovare.",
    "en": "You entered {digits:digits}. Press 1 to confirm, 2 to try again.",
    "*": "You entered {digits:digits}. Press 1 to confirm, 2 to try again.",
}),)


# -- events -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DigitPressed:
    digit: str
    """One key: 0-9, *, #."""


@dataclass(frozen=True)
class PlaybackFinished:
    play_id: int
    """The id of the :class:`PlayPrompt` that ended; stale ids are ignored."""


@dataclass(frozen=True)
class TimerFired:
    """The deadline given by :meth:`CallSession.next_deadline` has passed."""


@dataclass(frozen=True)
class LookupFinished:
    request_id: int
    data: Any
    """The decoded JSON answer, or None on error."""
    error: str = ""


@dataclass(frozen=True)
class RecordingFinished:
    recording_id: int
    path: str
    seconds: float
    reason: str = ""
    """'silence', 'max_length', 'key' or 'hangup'."""


@dataclass(frozen=True)
class QueueLeft:
    """Routing took the caller out of the queue unserved."""

    reason: str
    """'full', 'no_agents' or 'timeout'."""


@dataclass(frozen=True)
class TransferFinished:
    ok: bool
    """True when the destination answered and the call was put through."""
    reason: str = ""


Event = (DigitPressed | PlaybackFinished | TimerFired | LookupFinished | RecordingFinished
         | TransferFinished | QueueLeft)


# -- actions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """Answer the caller's leg (200 OK)."""


@dataclass(frozen=True)
class PlayPrompt:
    play_id: int
    pieces: tuple[PromptPiece, ...]
    barge_in: bool
    """A key pressed during playback stops it (menus, collects)."""


@dataclass(frozen=True)
class StopPlayback:
    play_id: int


@dataclass(frozen=True)
class Enqueue:
    queue: str
    priority: int
    context: Mapping[str, str] = field(default_factory=dict)
    """The call's variables and IVR path, for the agent's screen and for escalation."""


@dataclass(frozen=True)
class HangupCall:
    reason: str
    """Why the IVR ends the call: 'flow_end', 'menu_failures', 'collect_failures',
    'voicemail_done', 'transfer_failed' or 'flow_error'."""


@dataclass(frozen=True)
class HttpLookup:
    request_id: int
    url: str
    timeout: float


@dataclass(frozen=True)
class StartRecording:
    recording_id: int
    max_seconds: float
    silence_seconds: float
    beep: bool


@dataclass(frozen=True)
class TransferCall:
    destination: str


@dataclass(frozen=True)
class LeaveQueueRequest:
    """The caller pressed an exit key: take them out of the queue."""


@dataclass(frozen=True)
class RequestCallback:
    """The caller pressed the callback key: keep their place and call them back."""


@dataclass(frozen=True)
class CallbackRefused:
    """The caller pressed the callback key but cannot be called back: they keep waiting in
    the queue, and the driver tells them so."""

    reason: str
    """'withheld' (no number to call) or 'not allowed' (no rule of ivr.yaml allows it)."""


@dataclass(frozen=True)
class SetOverrideState:
    override: str
    state: str


@dataclass(frozen=True)
class SendSms:
    """Text the number that called; the driver applies the rate limits and queues it."""

    text: str


Action = (Answer | PlayPrompt | StopPlayback | Enqueue | HangupCall | HttpLookup
          | StartRecording | TransferCall | SetOverrideState | LeaveQueueRequest
          | RequestCallback | CallbackRefused | SendSms)


@dataclass
class PathStep:
    """One node visited, and the keys that left it."""

    node: str
    digits: str = ""

    def __str__(self) -> str:
        return f"{self.node}[{self.digits}]" if self.digits else self.node


@functools.lru_cache(maxsize=64)
def _holiday_calendar(country: str, subdivision: str | None, year: int) -> frozenset[dt.date]:
    import holidays

    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))


def hours_state(node: Hours, when: dt.datetime, override: str | None) -> str:
    """'open', 'closed' or 'holiday' for *when* (an aware datetime)."""
    if override in ("open", "closed"):
        return override
    import zoneinfo

    local = when.astimezone(zoneinfo.ZoneInfo(node.timezone))
    day = local.date()
    if day.isoformat() in node.holiday_dates:
        return "holiday"
    if node.holiday_country and day in _holiday_calendar(
            node.holiday_country, node.holiday_subdivision, day.year):
        return "holiday"
    minute = local.hour * 60 + local.minute
    for start, end in node.schedule.get(local.weekday(), ()):
        if start <= minute < end:
            return "open"
    return "closed"


def _dig(data: Any, path: str) -> str | None:
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    if isinstance(data, (dict, list)):
        return None
    if isinstance(data, bool):
        return "true" if data else "false"
    return "" if data is None else str(data)


@dataclass
class _Entry:
    """Digit entry state of the current menu or collect node."""

    buffer: str = ""
    invalid: int = 0
    timeouts: int = 0
    attempts: int = 0
    phase: str = "prompt"
    """'prompt' (prompt playing), 'notice' (error prompt playing), 'wait', 'confirm'."""
    entered: str = ""
    """A collect's entry waiting for confirmation."""


@dataclass
class _Frame:
    flow: Flow
    prefix: str
    return_to: str | None
    """Node of the parent flow to continue at when this subflow returns."""


KEYS_KEPT = 128
"""How many of a caller's last keys :attr:`CallSession.keys` keeps."""


class CallSession:
    """One call in the IVR. See the module doc for the protocol."""

    def __init__(self, flow: Flow, call_id: str, caller: str = "", called: str = "",
                 started_at: dt.datetime | None = None,
                 overrides: Mapping[str, str] | None = None, language: str | None = None,
                 callback_allowed: bool = True):
        self.flow = flow
        self.call_id = call_id
        self.caller = caller
        self.callback_allowed = callback_allowed
        """False: no rule allows calling *caller* back, so a callback key is refused."""
        self.called = called
        self.language = language if language in flow.languages else flow.default_language
        self.variables: dict[str, str] = dict(flow.variables)
        self.variables.update(caller=caller, called=called, call_id=call_id,
                              language=self.language)
        self.path: list[PathStep] = []
        self.keys = ""
        """Every key the caller pressed in the IVR and while queued, in order (the last
        :data:`KEYS_KEPT`)."""
        self.state = "new"
        """'new', 'ivr', 'queued', 'transferred' or 'ended'."""
        self.end_reason = ""
        self.gave_up_at: str | None = None
        """The menu or collect that ran out of tries, while the flow has not since reached a
        queue or a transfer: a call that ends so is one the IVR gave up on."""
        self.exit: dict[str, str] = {}
        """How the call left the IVR: {'queue': name}, {'hangup': reason}, {'transfer': to}."""
        self.queue: str | None = None
        self._overrides = overrides if overrides is not None else {}
        self._set_overrides: dict[str, str] = {}
        """Overrides this call switched: the driver applies them for later calls."""
        self._started_at = started_at or dt.datetime.fromtimestamp(0, dt.UTC)
        self._start_now = 0.0
        self._frames = [_Frame(flow, "", None)]
        self._node: Node | None = None
        self._entry = _Entry()
        self._typeahead = ""
        self._play_id = 0
        self._playing: int | None = None
        self._waiting_for: str | None = None
        """What the current node waits for besides keys: 'lookup', 'recording', 'transfer'."""
        self._request_id = 0
        self._deadline: float | None = None
        self._after_play: str | None = None

    # -- public protocol ---------------------------------------------------------------------
    def start(self, now: float) -> list[Action]:
        self.state = "ivr"
        self._start_now = now
        return [Answer(), *self._enter(self.flow.start, now)]

    def handle(self, event: Event, now: float) -> list[Action]:
        if isinstance(event, DigitPressed) and self.state in ("ivr", "queued"):
            self.keys = (self.keys + event.digit)[-KEYS_KEPT:]
        if self.state == "queued":
            return self._queued(event, now)
        if self.state != "ivr":
            return []
        if isinstance(event, PlaybackFinished):
            if event.play_id != self._playing:
                return []
            self._playing = None
            return self._playback_done(now)
        if isinstance(event, DigitPressed):
            return self._digit(event.digit, now)
        if isinstance(event, TimerFired):
            if self._deadline is None or now < self._deadline:
                return []
            self._deadline = None
            return self._timer(now)
        if isinstance(event, LookupFinished):
            return self._lookup_done(event, now)
        if isinstance(event, RecordingFinished):
            return self._recording_done(event, now)
        if isinstance(event, TransferFinished):
            return self._transfer_done(event, now)
        raise TypeError(f"unknown event {event!r}")

    def announcement(self, position: int, expected_wait: float) -> list[Action]:
        """The position announcement for a waiting caller (routing says when)."""
        node = self._node
        if self.state != "queued" or not isinstance(node, Queue):
            return []
        minutes = max(1, round(expected_wait / 60))
        shown = dict(self.variables, position=str(position), expected_wait=str(minutes))
        self._play_id += 1
        return [PlayPrompt(self._play_id, resolve(node.announce_prompt or ANNOUNCE_PROMPT,
                                                  self.language, shown), False)]

    def _queued(self, event: Event, now: float) -> list[Action]:
        node = self._node
        assert isinstance(node, Queue)
        if isinstance(event, QueueLeft):
            self.state = "ivr"
            self.queue = None
            self.exit = {}
            self.path[-1].digits = event.reason
            if node.on_exit:
                return self._enter(node.on_exit, now)
            return self._end(f"queue_{event.reason}")
        if isinstance(event, DigitPressed) and event.digit in node.exit_keys:
            self.state = "ivr"
            self.path[-1].digits = event.digit
            target = node.exit_keys[event.digit]
            if target == "callback":
                if not self.caller or not self.callback_allowed:
                    self.state = "queued"  # the place is kept; the caller is told why not
                    self.path[-1].digits = f"{event.digit} no callback"
                    return [CallbackRefused("not allowed" if self.caller else "withheld")]
                self._after_play = "callback"
                self.exit = {"callback": self.caller}
                return [RequestCallback(), *self._play(CALLBACK_PROMPT, barge_in=False)]
            self.queue = None
            self.exit = {}
            return [LeaveQueueRequest(), *self._enter(target, now)]
        return []

    def next_deadline(self) -> float | None:
        return self._deadline if self.state == "ivr" else None

    def wall_time(self, now: float) -> dt.datetime:
        return self._started_at + dt.timedelta(seconds=now - self._start_now)

    @property
    def node(self) -> str | None:
        return self._node.name if self._node else None

    def path_text(self) -> str:
        return " > ".join(str(step) for step in self.path)

    # -- moving through the tree ---------------------------------------------------------------
    @property
    def _frame(self) -> _Frame:
        return self._frames[-1]

    def _enter(  # noqa: C901 - one arm per node kind
        self, name: str | None, now: float, steps: int = 0
    ) -> list[Action]:
        if name is None:
            return self._end("flow_end")
        if steps > MAX_STEPS_PER_EVENT:
            log.error("call %s: flow %s loops without pausing at node %s", self.call_id,
                      self.flow.name, name)
            return self._end("flow_error")
        node = self._frame.flow.nodes[name]
        self._node = node
        self._deadline = None
        self._waiting_for = None
        self._after_play = None
        self.path.append(PathStep(self._frame.prefix + name))
        go = functools.partial(self._enter, now=now, steps=steps + 1)
        if isinstance(node, Menu | Collect):
            self._entry = _Entry()
            if self._typeahead:
                keys, self._typeahead = self._typeahead, ""
                self._entry.phase = "wait"
                actions: list[Action] = []
                for key in keys:
                    if self._node is not node:
                        break
                    actions += self._digit(key, now)
                return actions
            return self._play(node.prompt, barge_in=True)
        if isinstance(node, Play):
            return self._play(node.prompt, barge_in=node.barge_in)
        if isinstance(node, Queue):
            if node.prompt:
                self._after_play = "enqueue"
                return self._play(node.prompt, barge_in=False)
            return self._join(node)
        if isinstance(node, Hangup):
            if node.prompt:
                return self._play(node.prompt, barge_in=False)
            return self._end("flow_end")
        if isinstance(node, Branch):
            return go(self._branch(node))
        if isinstance(node, Hours):
            when = self.wall_time(now)
            name = node.override or ""
            override = self._set_overrides.get(name, self._overrides.get(name))
            state = hours_state(node, when, override)
            self.path[-1].digits = state
            target = {"open": node.open, "closed": node.closed, "holiday": node.holiday}[state]
            return go(target)
        if isinstance(node, SetOverride):
            self._set_overrides[node.override] = node.state  # seen by this call at once
            return [SetOverrideState(node.override, node.state), *go(node.next)]
        if isinstance(node, Sms):
            return [SendSms(fill(node.text, self.variables)), *go(node.next)]
        if isinstance(node, Language):
            self._set_language(node.language)
            return go(node.next)
        if isinstance(node, Goto):
            return go(node.next)
        if isinstance(node, Subflow):
            self._frames.append(_Frame(node.flow, f"{self._frame.prefix}{node.name}/",
                                       node.next))
            return go(node.flow.start)
        if isinstance(node, Return):
            if len(self._frames) == 1:
                return self._end("flow_end")
            frame = self._frames.pop()
            return go(frame.return_to)
        if isinstance(node, Lookup):
            self._request_id += 1
            self._waiting_for = "lookup"
            self._deadline = now + node.timeout + 0.5  # the driver times out first
            url = _VAR.sub(lambda m: urllib.parse.quote(str(self.variables.get(m.group(1), "")),
                                                        safe=""), node.url)
            return [HttpLookup(self._request_id, url, node.timeout)]
        if isinstance(node, Voicemail):
            self._after_play = "record"
            return self._play(node.prompt, barge_in=False)
        if isinstance(node, Transfer):
            if node.prompt:
                self._after_play = "transfer"
                return self._play(node.prompt, barge_in=False)
            return self._transfer(node)
        raise TypeError(f"unknown node {node!r}")

    def _set_language(self, language: str) -> None:
        self.language = language
        self.variables["language"] = language

    def _play(self, prompts: Prompts, barge_in: bool) -> list[Action]:
        self._deadline = None  # no key timeout runs while a prompt plays
        self._play_id += 1
        self._playing = self._play_id
        return [PlayPrompt(self._play_id, resolve(prompts, self.language, self.variables),
                           barge_in)]

    def _stop_playing(self) -> list[Action]:
        if self._playing is None:
            return []
        play_id, self._playing = self._playing, None
        return [StopPlayback(play_id)]

    def _join(self, node: Queue) -> list[Action]:
        self.gave_up_at = None
        self.state = "queued"
        self.queue = node.queue
        self.exit = {"queue": node.queue}
        context = dict(self.variables, ivr_path=self.path_text())
        return [Enqueue(node.queue, node.priority, context)]

    def _transfer(self, node: Transfer) -> list[Action]:
        self.gave_up_at = None
        self._waiting_for = "transfer"
        return [TransferCall(fill(node.to, self.variables))]

    def _end(self, reason: str) -> list[Action]:
        self.state = "ended"
        self.end_reason = reason
        kept = {k: v for k, v in self.exit.items() if k == "voicemail"}  # a message stays known
        self.exit = {**kept, "hangup": reason}
        self._deadline = None
        return [HangupCall(reason)]

    def _playback_done(self, now: float) -> list[Action]:
        node = self._node
        if isinstance(node, Menu | Collect):
            entry = self._entry
            if entry.phase == "notice":
                entry.phase = "prompt"
                return self._play(self._reprompt(node), barge_in=True)
            if entry.phase == "confirm":
                self._deadline = now + node.timeout
                return []
            entry.phase = "wait"
            self._deadline = now + node.timeout
            return []
        if isinstance(node, Play):
            return self._enter(node.next, now)
        if isinstance(node, Queue) and self._after_play == "enqueue":
            return self._join(node)
        if isinstance(node, Queue) and self._after_play == "callback":
            self._after_play = None
            self.state = "ended"
            self.end_reason = "callback_requested"
            self.exit = {**self.exit, "hangup": "callback_requested"}
            return [HangupCall("callback_requested")]
        if isinstance(node, Voicemail) and self._after_play == "record":
            self._after_play = None
            self._request_id += 1
            self._waiting_for = "recording"
            self._deadline = now + node.max_seconds + 10  # the driver stops it first
            return [StartRecording(self._request_id, node.max_seconds, node.silence_seconds,
                                   node.beep)]
        if isinstance(node, Transfer) and self._after_play == "transfer":
            return self._transfer(node)
        if isinstance(node, Hangup):
            return self._end("flow_end")
        return []

    def _reprompt(self, node: Menu | Collect) -> Prompts:
        if isinstance(node, Menu) and node.short_prompt:
            return node.short_prompt
        return node.prompt

    # -- keys ------------------------------------------------------------------------------
    def _digit(self, digit: str, now: float) -> list[Action]:
        node = self._node
        if isinstance(node, Play) and node.barge_in and self._playing is not None:
            self._typeahead += digit
            return self._stop_playing() + self._enter(node.next, now)
        if isinstance(node, Queue) and digit in node.exit_keys and self._after_play == "enqueue":
            # an exit key pressed during the queue's own prompt (which may announce it): the
            # caller joins, then leaves as if they had pressed it while waiting
            self._after_play = None
            actions = self._stop_playing() + self._join(node)
            return actions + self._queued(DigitPressed(digit), now)
        if isinstance(node, Menu):
            return self._menu_digit(node, digit, now)
        if isinstance(node, Collect):
            return self._collect_digit(node, digit, now)
        return []  # keys elsewhere (a goodbye, a hold prompt) are ignored

    def _menu_digit(self, node: Menu, digit: str, now: float) -> list[Action]:
        actions = self._stop_playing()
        entry = self._entry
        entry.phase = "wait"
        if node.terminator and digit == node.terminator and entry.buffer:
            return actions + self._menu_evaluate(node, now)
        entry.buffer += digit
        keys = entry.buffer
        could_grow = len(keys) < node.longest_entry() and (
            any(k != keys and k.startswith(keys) for k in node.options)
            or node.could_be_extension(keys))
        if not could_grow:
            return actions + self._menu_evaluate(node, now)
        self._deadline = now + node.inter_digit_timeout
        return actions

    def _menu_evaluate(self, node: Menu, now: float) -> list[Action]:
        entry = self._entry
        keys, entry.buffer = entry.buffer, ""
        option = node.options.get(keys)
        if option is not None:
            return self._select(node, keys, option, now)
        if node.matches_extension(keys):
            self.path[-1].digits += keys
            self.variables["extension"] = keys
            return self._enter(node.extension_next, now)
        return self._menu_failure(node, "invalid", keys, now)

    def _select(self, node: Menu, keys: str, option: MenuOption, now: float) -> list[Action]:
        self.path[-1].digits += keys
        if option.language:
            self._set_language(option.language)
        if option.repeat:
            self._entry.phase = "prompt"
            return self._play(self._reprompt(node), barge_in=True)
        return self._enter(option.next, now)

    def _menu_failure(self, node: Menu, kind: str, keys: str, now: float) -> list[Action]:
        entry = self._entry
        if kind == "invalid":
            entry.invalid += 1
            self.path[-1].digits += keys + "!"
            exhausted = entry.invalid >= node.max_invalid
        else:
            entry.timeouts += 1
            self.path[-1].digits += "~"
            exhausted = entry.timeouts >= node.max_timeouts
        if exhausted:
            self.gave_up_at = node.name
            if node.on_failure is None:
                return self._end("menu_failures")
            return self._enter(node.on_failure, now)
        notice = node.invalid_prompt if kind == "invalid" else node.timeout_prompt
        if notice:
            entry.phase = "notice"
            return self._play(notice, barge_in=True)
        entry.phase = "prompt"
        return self._play(self._reprompt(node), barge_in=True)

    def _collect_digit(self, node: Collect, digit: str, now: float) -> list[Action]:
        actions = self._stop_playing()
        entry = self._entry
        if entry.phase == "confirm":
            self._deadline = None
            if digit == "1":
                return actions + self._collect_accept(node, entry.entered, now)
            entry.entered = ""
            entry.phase = "prompt"
            return actions + self._play(node.prompt, barge_in=True)
        entry.phase = "wait"
        if node.terminator and digit == node.terminator:
            return actions + self._collect_evaluate(node, now)
        entry.buffer += digit
        if len(entry.buffer) >= node.max_length:
            return actions + self._collect_evaluate(node, now)
        self._deadline = now + node.inter_digit_timeout
        return actions

    def _collect_evaluate(self, node: Collect, now: float) -> list[Action]:
        entry = self._entry
        keys, entry.buffer = entry.buffer, ""
        if not node.valid(keys):
            entry.attempts += 1
            self.path[-1].digits += (keys or "~") + "!"
            if entry.attempts >= node.max_attempts:
                self.gave_up_at = node.name
                if node.on_failure is None:
                    return self._end("collect_failures")
                return self._enter(node.on_failure, now)
            if node.invalid_prompt:
                entry.phase = "notice"
                return self._play(node.invalid_prompt, barge_in=True)
            entry.phase = "prompt"
            return self._play(node.prompt, barge_in=True)
        if node.confirm:
            entry.entered = keys
            entry.phase = "confirm"
            shown = dict(self.variables, digits=keys)
            self._deadline = None
            self._play_id += 1
            self._playing = self._play_id
            prompt = node.confirm_prompt or CONFIRM_PROMPT
            return [PlayPrompt(self._play_id, resolve(prompt, self.language, shown), True)]
        return self._collect_accept(node, keys, now)

    def _collect_accept(self, node: Collect, keys: str, now: float) -> list[Action]:
        self.variables[node.variable] = keys
        self.path[-1].digits += keys
        return self._enter(node.next, now)

    def _timer(self, now: float) -> list[Action]:
        node = self._node
        if self._waiting_for == "lookup" and isinstance(node, Lookup):
            self.path[-1].digits = "timeout"
            self._waiting_for = None
            return self._enter(node.on_failure, now)
        if self._waiting_for == "recording" and isinstance(node, Voicemail):
            self._waiting_for = None
            return self._enter(node.next, now) if node.next else self._end("voicemail_done")
        if isinstance(node, Menu):
            if self._entry.buffer:
                return self._menu_evaluate(node, now)
            return self._menu_failure(node, "timeout", "", now)
        if isinstance(node, Collect):
            if self._entry.phase == "confirm":
                self._entry.phase = "prompt"
                return self._play(node.prompt, barge_in=True)
            return self._collect_evaluate(node, now)
        return []

    # -- data-driven nodes -----------------------------------------------------------------
    def _branch(self, node: Branch) -> str:
        for i, case in enumerate(node.cases):
            if self._holds(case.when):
                self.path[-1].digits = f"case {i + 1}"
                return case.next
        self.path[-1].digits = "default"
        return node.default

    def _holds(self, c: Condition) -> bool:
        if c.variable is not None:
            value = self.variables.get(c.variable, "")
            if c.equals is not None and value != c.equals:
                return False
            if c.matches is not None and not re.fullmatch(c.matches, value):
                return False
            if c.one_of is not None and value not in c.one_of:
                return False
        if c.caller is not None:
            if c.caller == "withheld":
                if self.caller:
                    return False
            elif not re.fullmatch(c.caller, self.caller):
                return False
        if c.called is not None and self.called not in c.called:
            return False
        if not self._ticket_holds(c):
            return False
        return c.language is None or self.language == c.language

    def _ticket_holds(self, c: Condition) -> bool:
        """The ticket tests: the call's ``ticket_status`` / ``ticket_level`` variables, set at
        the start from the caller's open ticket."""
        has = self.variables.get("ticket_status", "") in ("open", "escalated")
        if c.ticket is not None and has != (c.ticket == "open"):
            return False
        return c.ticket_level is None or (
            has and self.variables.get("ticket_level", "") == str(c.ticket_level))

    def _lookup_done(self, event: LookupFinished, now: float) -> list[Action]:
        node = self._node
        if self._waiting_for != "lookup" or not isinstance(node, Lookup) \
                or event.request_id != self._request_id:
            return []
        self._waiting_for = None
        self._deadline = None
        if event.data is None:
            self.path[-1].digits = "error"
            log.info("call %s: lookup failed: %s", self.call_id, event.error)
            return self._enter(node.on_failure, now)
        for var, path in node.fields.items():
            value = _dig(event.data, path)
            self.variables[var] = "" if value is None else value
        return self._enter(node.next, now)

    def _recording_done(self, event: RecordingFinished, now: float) -> list[Action]:
        node = self._node
        if self._waiting_for != "recording" or not isinstance(node, Voicemail) \
                or event.recording_id != self._request_id:
            return []
        self._waiting_for = None
        self._deadline = None
        self.variables["voicemail"] = event.path
        self.exit = {"voicemail": event.path}
        if node.next:
            return self._enter(node.next, now)
        self.state = "ended"
        self.end_reason = "voicemail_done"
        return [HangupCall("voicemail_done")]

    def _transfer_done(self, event: TransferFinished, now: float) -> list[Action]:
        node = self._node
        if self._waiting_for != "transfer" or not isinstance(node, Transfer):
            return []
        self._waiting_for = None
        if event.ok:
            self.state = "transferred"
            self.exit = {"transfer": fill(node.to, self.variables)}
            return []
        self.path[-1].digits = "failed"
        if node.on_failure:
            return self._enter(node.on_failure, now)
        return self._end("transfer_failed")


__all__ = [
    "ANNOUNCE_PROMPT", "CALLBACK_PROMPT", "Action", "Answer", "CallSession", "CallbackRefused",
    "DigitPressed", "Enqueue", "Event", "HangupCall", "HttpLookup", "LeaveQueueRequest",
    "LookupFinished", "PathStep", "PlayPrompt", "PlaybackFinished", "PromptPiece", "QueueLeft",
    "RecordingFinished", "RequestCallback", "SendSms", "SetOverrideState", "StartRecording",
    "StopPlayback", "TimerFired", "TransferCall", "TransferFinished", "fill", "hours_state",
    "resolve",
]

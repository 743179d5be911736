"""Run a flow without SIP: a :class:`CallSession`, a virtual clock and a caller who presses keys.

Prompts are "heard" as text and take a time estimated from their length; lookups, recordings and
transfers are answered by the simulation itself; timers fire when the virtual clock reaches
:meth:`CallSession.next_deadline`. Nothing sleeps, so a five-minute call runs in milliseconds.

    sim = Simulation(flow, caller="3331234567", started_at=parse_when("2026-12-25 10:00",
                                                                      "Europe/Rome"))
    result = sim.run(["2", "1"])        # a token: keys typed together; "wait": let a timeout pass
    print(*result.transcript, sep="\\n")
    result.path, result.exit            # 'welcome[2] > main[1] > support', {'queue': 'support'}

By default the caller listens to each prompt to its end and then presses the next token's keys;
with ``barge_in=True`` they press as soon as a prompt that can be interrupted starts.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import sys
import wave
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.engine import (
    Action,
    Answer,
    CallSession,
    DigitPressed,
    Enqueue,
    Event,
    HangupCall,
    HttpLookup,
    LookupFinished,
    PlaybackFinished,
    PlayPrompt,
    RecordingFinished,
    SendSms,
    SetOverrideState,
    StartRecording,
    StopPlayback,
    TimerFired,
    TransferCall,
    TransferFinished,
)
from ivr.flow import Flow, Hours, Subflow
from ivr.flow.prompts import PromptPiece, spoken_text

SECONDS_PER_CHAR = 0.07
"""Estimated speaking time of a ``say:`` text, per character."""
FILE_SECONDS = 3.0
"""Playing time of a WAV prompt that cannot be read."""
LOOKUP_SECONDS = 0.2
TRANSFER_SECONDS = 2.0
RECORDING_SECONDS = 8.0
"""Length of a simulated voicemail message (at most the node's max_seconds)."""
MAX_CALL_SECONDS = 3600.0
"""A caller who is still in the IVR after this long (virtual time) hangs up."""
MAX_STEPS = 10_000
WAIT = "wait"
KEYS = frozenset("0123456789*#")
TIMEOUT_ANSWER = "timeout"
"""A lookup answer that means: no answer at all, let the lookup time out."""


@dataclass(frozen=True)
class Line:
    """One line of a transcript: what happened at a virtual time."""

    at: float
    text: str

    def __str__(self) -> str:
        return f"[{self.at:4.1f}s] {self.text}"


@dataclass
class Result:
    """How a simulated call went."""

    transcript: list[Line]
    path: str
    """The IVR path as in call records: 'welcome[2] > main[1] > support'."""
    nodes: list[str]
    """Node names visited, in order (subflow nodes as 'closed/message')."""
    exit: dict[str, str]
    """{'queue': name}, {'hangup': reason}, {'voicemail': file} or {'transfer': to};
    {'hangup': 'caller'} when the caller hung up in the IVR."""
    state: str
    variables: dict[str, str]
    unused: list[str] = field(default_factory=list)
    """Tokens of the script never used because the call had left the IVR."""
    seconds: float = 0.0

    def said(self) -> list[str]:
        """The texts of the prompts played, in order."""
        return [line.text.partition(": ")[2] for line in self.transcript
                if line.text.startswith(("say", "play"))]

    def exit_text(self) -> str:
        return " ".join(f"{k} {v}" for k, v in self.exit.items()) or "(still in the IVR)"


# -- input parsing ------------------------------------------------------------------------------
def parse_digits(value: str | Iterable[Any]) -> list[str]:
    """Script tokens from '2,1' or ['2', 1, 'wait']: keys typed together, or 'wait'.

    Raises ValueError naming the bad token.
    """
    raw = value.replace(",", " ").split() if isinstance(value, str) else \
        [str(v).strip() for v in value]
    tokens = []
    for token in raw:
        if token.lower() == WAIT:
            tokens.append(WAIT)
        elif token and set(token) <= KEYS:
            tokens.append(token)
        else:
            raise ValueError(f"'{token}' is neither phone keys (0-9, * and #) nor '{WAIT}'")
    return tokens


def parse_when(text: str, timezone: str | None = None,
               default_timezone: str | None = None) -> dt.datetime:
    """An aware datetime from '2026-12-25 10:00', '2026-12-25 10:00 Europe/Rome' or ISO with an
    offset. A zone in the text wins over *timezone*, which wins over *default_timezone* (UTC when
    none). Raises ValueError with a message for people."""
    words = text.strip().split()
    zone_name = None
    if len(words) > 1 and ("/" in words[-1] or words[-1].upper() == "UTC"):
        zone_name = words.pop()
    try:
        when = dt.datetime.fromisoformat(" ".join(words))
    except ValueError:
        raise ValueError(f"'{text}' is not a date and time such as '2026-12-25 10:00' "
                         "(optionally followed by a time zone such as Europe/Rome)") from None
    if when.tzinfo is not None and zone_name is None:
        return when
    name = zone_name or timezone or default_timezone or "UTC"
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}' (use a name such as 'Europe/Rome')") \
            from None
    return when.replace(tzinfo=zone)


def flow_timezone(flow: Flow) -> str | None:
    """The time zone of the flow's first hours node (subflows included), if it has one."""
    for node in flow.nodes.values():
        if isinstance(node, Hours):
            return node.timezone
    for node in flow.nodes.values():
        if isinstance(node, Subflow):
            zone = flow_timezone(node.flow)
            if zone:
                return zone
    return None


def describe_when(when: dt.datetime) -> str:
    zone = getattr(when.tzinfo, "key", None) or when.strftime("%Z") or when.strftime("%z")
    return f"{when:%a %Y-%m-%d %H:%M} {zone}"


def prompt_seconds(play: PlayPrompt, seconds_per_char: float = SECONDS_PER_CHAR) -> float:
    total = 0.0
    for run in _prompt_runs(play.pieces):
        if run[0].kind == "file":
            total += _wav_seconds(run[0].value)
        else:  # the length of the whole text, as fill() writes it
            total += len(spoken_text(run)) * seconds_per_char
    return round(max(total, 0.1), 3)


def _prompt_runs(pieces: Iterable[PromptPiece]) -> list[list[PromptPiece]]:
    """The pieces grouped by the prompt they came from (a Say split at its variables)."""
    runs: list[list[PromptPiece]] = []
    for piece in pieces:
        if runs and piece.follows and piece.kind != "file" and runs[-1][0].kind != "file":
            runs[-1].append(piece)
        else:
            runs.append([piece])
    return runs


def _wav_seconds(path: str) -> float:
    try:
        with wave.open(path, "rb") as w:
            return w.getnframes() / float(w.getframerate() or 8000)
    except (OSError, EOFError, wave.Error):
        return FILE_SECONDS


def _prompt_text(play: PlayPrompt) -> str:
    says = [p for p in play.pieces if p.kind != "file"]
    parts = [f"[{run[0].value.rsplit('/', 1)[-1]}]" if run[0].kind == "file"
             else spoken_text(run) for run in _prompt_runs(play.pieces)]
    if says:
        return f"say ({says[0].language or '?'}): " + " ".join(parts)
    return "play: " + " ".join(parts)


# -- the simulation -----------------------------------------------------------------------------
@dataclass
class _Playing:
    play_id: int
    ends_at: float
    barge_in: bool


@dataclass(order=True)
class _Scheduled:
    at: float
    seq: int
    event: Event = field(compare=False)
    text: str = field(compare=False)


class Simulation:
    """One call through a flow on a virtual clock. See the module doc."""

    def __init__(self, flow: Flow, caller: str = "", called: str = "",
                 started_at: dt.datetime | None = None, language: str | None = None,
                 lookups: Mapping[str, Any] | None = None, failing_transfers: Iterable[str] = (),
                 overrides: Mapping[str, str] | None = None, barge_in: bool = False,
                 seconds_per_char: float = SECONDS_PER_CHAR,
                 recording_seconds: float = RECORDING_SECONDS,
                 variables: Mapping[str, str] | None = None):
        """*lookups*: node name (or full URL) -> the JSON answer; None makes the lookup fail,
        'timeout' lets it time out; a lookup with no entry fails. *failing_transfers*: transfer
        destinations that do not answer ('*' for all). *overrides*: hours switch -> 'open' or
        'closed' at the start of the call. *variables*: call variables set at the start, as
        the switchboard sets those of the caller's open ticket."""
        if language is not None and language not in flow.languages:
            raise ValueError(f"language '{language}' is not one of the flow's languages "
                             f"({', '.join(flow.languages)})")
        self.flow = flow
        self.started_at = started_at or dt.datetime.now(dt.UTC)
        self.overrides: dict[str, str] = dict(overrides or {})
        self.session = CallSession(flow, "sim", caller=caller, called=called,
                                   started_at=self.started_at, overrides=self.overrides)
        self.session.variables.update(variables or {})
        if language is not None:
            self.session.language = language
            self.session.variables["language"] = language
        self.lookups = dict(lookups or {})
        self.failing_transfers = set(failing_transfers)
        self.barge_in = barge_in
        self.seconds_per_char = seconds_per_char
        self.recording_seconds = recording_seconds
        self.now = 0.0
        self.transcript: list[Line] = []
        self.unused: list[str] = []
        self._playing: _Playing | None = None
        self._scheduled: list[_Scheduled] = []
        self._seq = 0
        self._waiting_for: str | None = None
        """'lookup', 'recording' or 'transfer' while the simulation owes the session an answer
        or a timeout."""
        self._hung_up = False
        self._started = False
        self._steps = 0

    # -- what a caller does ------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while the call is in the IVR (not queued, transferred or ended)."""
        return self._started and self.session.state == "ivr" and not self._hung_up

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        caller = self.session.caller or "a withheld number"
        called = self.session.called or "?"
        self._say(f"call from {caller} to {called}, {describe_when(self.started_at)}")
        self._apply(self.session.start(self.now))

    def until_input(self, barge_in: bool | None = None) -> bool:
        """Let the call run until it waits for keys (True) or leaves the IVR (False).

        Waiting for keys: a prompt that keys interrupt is playing (only with *barge_in*), or
        nothing plays and a key timeout runs."""
        self.start()
        barge = self.barge_in if barge_in is None else barge_in
        while self.active:
            if self._ready(barge):
                return True
            if not self._step():
                break
        return False

    def press(self, keys: str) -> None:
        """The caller types *keys* together, when the flow next waits for keys."""
        if not self.until_input():
            self.unused.append(keys)
            return
        if not set(keys) <= KEYS:
            raise ValueError(f"'{keys}' holds something other than phone keys (0-9, * and #)")
        typed, during, mark = "", "", -1
        for i, key in enumerate(keys):
            if not self.active:
                self.unused.append(keys[i:])
                return
            if typed and len(self.transcript) == mark:  # nothing happened since: one line
                typed += key
                self.transcript[-1] = Line(self.transcript[-1].at, f"keys {typed}{during}")
            else:
                typed = key
                during = " (interrupts the prompt)" if self._playing and \
                    self._playing.barge_in else ""
                self._say(f"key {key}{during}")
            mark = len(self.transcript)
            self._deliver(DigitPressed(key), "")

    def wait(self) -> None:
        """The caller stays silent until the flow's key timeout passes once."""
        if not self.until_input(barge_in=False):
            self.unused.append(WAIT)
            return
        self._step()

    def hang_up(self) -> None:
        if self.active:
            self._hung_up = True
            self._say("caller hangs up")

    def finish(self) -> None:
        """The caller stays on the line, silent, until the call leaves the IVR."""
        self.start()
        while self.active and self._step():
            pass

    def run(self, tokens: Iterable[str]) -> Result:
        """Play a script of tokens (see :func:`parse_digits`), then stay silent to the end."""
        self.start()
        for token in tokens:
            if token == WAIT:
                self.wait()
            else:
                self.press(token)
        self.finish()
        return self.result()

    def result(self) -> Result:
        exit_ = dict(self.session.exit)
        if not exit_ and self._hung_up:
            exit_ = {"hangup": "caller"}
        return Result(
            transcript=list(self.transcript), path=self.session.path_text(),
            nodes=[step.node for step in self.session.path], exit=exit_,
            state="ended" if self._hung_up else self.session.state,
            variables=dict(self.session.variables), unused=list(self.unused),
            seconds=self.now)

    # -- the clock ---------------------------------------------------------------------------
    def _ready(self, barge_in: bool) -> bool:
        if self._waiting_for is not None or self._scheduled:
            return False
        if self._playing is not None:
            return barge_in and self._playing.barge_in
        return self.session.next_deadline() is not None

    def _step(self) -> bool:
        """Move the clock to the next thing that happens and let it happen; False if nothing
        ever will (or the call has gone on too long, and the caller hangs up)."""
        if not self.active:
            return False
        self._steps += 1
        candidates: list[tuple[float, int, str]] = []
        if self._playing is not None:
            candidates.append((self._playing.ends_at, 0, "play"))
        if self._scheduled:
            candidates.append((self._scheduled[0].at, 1, "scheduled"))
        deadline = self.session.next_deadline()
        if deadline is not None:
            candidates.append((deadline, 2, "timer"))
        if not candidates:
            self._say("the flow waits for nothing more; the caller hangs up")
            self._hung_up = True
            return False
        at, _, kind = min(candidates)
        if at > MAX_CALL_SECONDS or self._steps > MAX_STEPS:
            self._say(f"still in the IVR after {self.now:.0f} s; the caller hangs up")
            self._hung_up = True
            return False
        self.now = max(self.now, at)
        if kind == "play":
            assert self._playing is not None
            play_id, self._playing = self._playing.play_id, None
            self._deliver(PlaybackFinished(play_id), "")
        elif kind == "scheduled":
            item = heapq.heappop(self._scheduled)
            self._waiting_for = None
            self._deliver(item.event, item.text)
        else:
            what = {"lookup": "lookup timed out", "recording": "recording stopped",
                    }.get(self._waiting_for or "", "timeout")
            self._waiting_for = None
            self._deliver(TimerFired(), what)
        return True

    def _schedule(self, after: float, event: Event, text: str) -> None:
        self._seq += 1
        heapq.heappush(self._scheduled, _Scheduled(self.now + after, self._seq, event, text))

    def _say(self, text: str) -> None:
        self.transcript.append(Line(round(self.now, 3), text))

    def _deliver(self, event: Event, text: str) -> None:
        if text:
            self._say(text)
        self._apply(self.session.handle(event, self.now))

    # -- what the session asks for -----------------------------------------------------------
    def _apply(self, actions: list[Action]) -> None:  # noqa: C901 - one arm per action kind
        for action in actions:
            if isinstance(action, Answer):
                continue
            if isinstance(action, PlayPrompt):
                self._say(_prompt_text(action))
                self._playing = _Playing(action.play_id, self.now + prompt_seconds(
                    action, self.seconds_per_char), action.barge_in)
            elif isinstance(action, StopPlayback):
                if self._playing is not None and self._playing.play_id == action.play_id:
                    self._playing = None
            elif isinstance(action, Enqueue):
                priority = f" (priority {action.priority})" if action.priority else ""
                self._say(f"-> queue {action.queue}{priority}")
            elif isinstance(action, HangupCall):
                self._say(f"-> hangup ({action.reason})")
            elif isinstance(action, HttpLookup):
                self._lookup(action)
            elif isinstance(action, StartRecording):
                seconds = min(self.recording_seconds, action.max_seconds)
                self._say(f"record a message (at most {action.max_seconds:g} s"
                          f"{', after a beep' if action.beep else ''})")
                self._waiting_for = "recording"
                self._schedule(seconds, RecordingFinished(
                    action.recording_id, f"voicemail-{action.recording_id}.wav", seconds,
                    "silence"), f"message recorded ({seconds:g} s)")
            elif isinstance(action, TransferCall):
                self._transfer(action)
            elif isinstance(action, SetOverrideState):
                if action.state == "auto":
                    self.overrides.pop(action.override, None)
                else:
                    self.overrides[action.override] = action.state
                self._say(f"override {action.override}: {action.state}")
            elif isinstance(action, SendSms):
                self._say(f"-> text to the caller: {action.text}")
        if self.session.state != "ivr":
            self._playing = None
            self._scheduled.clear()
            self._waiting_for = None

    def _lookup(self, action: HttpLookup) -> None:
        self._say(f"lookup {action.url}")
        self._waiting_for = "lookup"
        step = self.session.path[-1].node if self.session.path else ""
        for key in (step, self.session.node or "", action.url):
            if key and key in self.lookups:
                answer = self.lookups[key]
                break
        else:
            self._schedule(LOOKUP_SECONDS, LookupFinished(action.request_id, None,
                                                          "no answer given"),
                           "lookup failed: no answer given")
            return
        if answer == TIMEOUT_ANSWER:
            return
        if answer is None:
            self._schedule(LOOKUP_SECONDS, LookupFinished(action.request_id, None, "error"),
                           "lookup failed")
            return
        self._schedule(LOOKUP_SECONDS, LookupFinished(action.request_id, answer),
                       f"lookup answer: {_short(answer)}")

    def _transfer(self, action: TransferCall) -> None:
        to = action.destination
        self._say(f"transfer to {to}")
        self._waiting_for = "transfer"
        fails = to in self.failing_transfers or "*" in self.failing_transfers
        self._schedule(TRANSFER_SECONDS, TransferFinished(not fails, "no answer" if fails else ""),
                       f"transfer to {to} failed: no answer" if fails else f"-> transfer {to}")


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- an interactive call ------------------------------------------------------------------------
HELP = ("Type keys (0-9, * and #) and Enter; Enter alone waits for the timeout; q hangs up.")


def interactive(sim: Simulation, read: Callable[[str], str | None],
                write: Callable[[str], None]) -> Result:
    """A call typed at a terminal: *read(prompt)* gives a line (None at end of input), *write*
    shows the transcript as it happens."""
    shown = 0

    def show() -> None:
        nonlocal shown
        for line in sim.transcript[shown:]:
            write(str(line))
        shown = len(sim.transcript)

    write(HELP)
    sim.start()
    while sim.until_input():
        show()
        line = read("keys> ")
        if line is None or line.strip().lower() in ("q", "quit"):
            sim.hang_up()
            break
        keys = "".join(line.split()).replace(",", "")
        if not keys:
            sim.wait()
        elif set(keys) <= KEYS:
            sim.press(keys)
        else:
            write(HELP)
    show()
    return sim.result()


# -- the command --------------------------------------------------------------------------------
def main(flow: Flow, args: Any, read: Callable[[str], str | None] | None = None) -> int:
    """``ivr simulate`` once the flow has loaded: *args* holds digits, at, timezone, caller,
    called, language, lookup_json, failing_transfer, override and barge_in."""
    try:
        sim = _from_args(flow, args)
        tokens = parse_digits(args.digits) if args.digits is not None else None
    except ValueError as exc:
        print(f"ivr simulate: {exc}", file=sys.stderr)
        return 2
    if tokens is None:
        result = interactive(sim, read or _read_line, print)
    else:
        result = sim.run(tokens)
        for line in result.transcript:
            print(line)
        if result.unused:
            print(f"(not used, the call had left the IVR: {', '.join(result.unused)})")
    print(f"path: {result.path}")
    print(f"exit: {result.exit_text()}")
    return 0


def _from_args(flow: Flow, args: Any) -> Simulation:
    when = parse_when(args.at, args.timezone, flow_timezone(flow)) if args.at else None
    if when is None and args.timezone:
        try:
            when = dt.datetime.now(zoneinfo.ZoneInfo(args.timezone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{args.timezone}'") from None
    lookups: dict[str, Any] = {}
    if args.lookup_json is not None:
        try:
            lookups = json.loads(Path(args.lookup_json).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"{args.lookup_json}: cannot read: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{args.lookup_json}: not JSON: {exc}") from None
        if not isinstance(lookups, dict):
            raise ValueError(f"{args.lookup_json}: give a JSON object: node name or URL -> "
                             "answer")
    overrides = {}
    for item in args.override or ():
        name, _, state = item.partition("=")
        if not name or state not in ("open", "closed"):
            raise ValueError(f"--override '{item}': give NAME=open or NAME=closed")
        overrides[name] = state
    return Simulation(flow, caller=args.caller, called=args.called, started_at=when,
                      language=args.language, lookups=lookups,
                      failing_transfers=args.failing_transfer or (), overrides=overrides,
                      barge_in=args.barge_in)


def _read_line(prompt: str) -> str | None:
    print(prompt, end="", flush=True)
    line = sys.stdin.readline()
    if line and not sys.stdin.isatty():
        print(line.rstrip("\n"))  # keys from a pipe are not echoed by a terminal
    return line if line else None


__all__ = ["Line", "Result", "Simulation", "describe_when", "flow_timezone", "interactive",
           "main", "parse_digits", "parse_when", "prompt_seconds"]

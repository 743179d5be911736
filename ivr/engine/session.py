"""CallSession: one caller's walk through a flow, as a pure state machine.

The driver feeds events with the current time and executes the actions returned; it asks
:meth:`CallSession.next_deadline` when to deliver :class:`TimerFired`. Nothing here reads a
clock, touches a socket or knows about SIP.

    >>> session = CallSession(flow, "c1", caller="+39021234", called="800123456")
    >>> actions = session.start(now=0.0)          # [Answer(), Play(...)]
    >>> actions = session.handle(PlaybackFinished(play_id=1), now=4.2)
    >>> actions = session.handle(DigitPressed("1"), now=5.0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ivr.flow.model import File, Flow, Hangup, Menu, MenuOption, Node, Play, Prompt, Queue, Say

log = logging.getLogger("ivr.engine")

MAX_STEPS_PER_EVENT = 64


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


Event = DigitPressed | PlaybackFinished | TimerFired


# -- actions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """Answer the caller's leg (200 OK)."""


@dataclass(frozen=True)
class PromptPiece:
    """One resolved piece of audio: text in a language, or a WAV file."""

    kind: str
    """'say' or 'file'."""
    value: str
    """The text to speak, or the file path."""
    language: str = ""


@dataclass(frozen=True)
class PlayPrompt:
    play_id: int
    pieces: tuple[PromptPiece, ...]
    barge_in: bool
    """A key pressed during playback stops it (menus)."""


@dataclass(frozen=True)
class StopPlayback:
    play_id: int


@dataclass(frozen=True)
class Enqueue:
    queue: str
    priority: int


@dataclass(frozen=True)
class HangupCall:
    reason: str
    """Why the IVR ends the call: 'flow_end', 'menu_failures' or 'flow_error'."""


Action = Answer | PlayPrompt | StopPlayback | Enqueue | HangupCall


@dataclass
class PathStep:
    """One node visited, and the keys that left it."""

    node: str
    digits: str = ""

    def __str__(self) -> str:
        return f"{self.node}[{self.digits}]" if self.digits else self.node


def resolve(prompts: tuple[Prompt, ...], language: str) -> tuple[PromptPiece, ...]:
    pieces: list[PromptPiece] = []
    for prompt in prompts:
        if isinstance(prompt, Say):
            pieces.append(PromptPiece("say", prompt.text_for(language), language))
        elif isinstance(prompt, File):
            pieces.append(PromptPiece("file", prompt.path))
    return tuple(pieces)


@dataclass
class _MenuState:
    buffer: str = ""
    invalid: int = 0
    timeouts: int = 0
    phase: str = "prompt"
    """'prompt' (menu prompt playing), 'notice' (invalid/timeout prompt playing) or 'wait'."""


class CallSession:
    """One call in the IVR. See the module doc for the protocol."""

    def __init__(self, flow: Flow, call_id: str, caller: str = "", called: str = ""):
        self.flow = flow
        self.call_id = call_id
        self.caller = caller
        self.called = called
        self.language = flow.default_language
        self.path: list[PathStep] = []
        self.state = "new"
        """'new', 'ivr', 'queued' or 'ended'."""
        self.end_reason = ""
        self.queue: str | None = None
        self._node: Node | None = None
        self._menu = _MenuState()
        self._play_id = 0
        self._playing: int | None = None
        self._deadline: float | None = None
        self._pending_enqueue: Enqueue | None = None

    # -- public protocol ---------------------------------------------------------------------
    def start(self, now: float) -> list[Action]:
        self.state = "ivr"
        actions: list[Action] = [Answer()]
        actions += self._enter(self.flow.start, now)
        return actions

    def handle(self, event: Event, now: float) -> list[Action]:
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
        raise TypeError(f"unknown event {event!r}")

    def next_deadline(self) -> float | None:
        return self._deadline if self.state == "ivr" else None

    @property
    def node(self) -> str | None:
        return self._node.name if self._node else None

    def path_text(self) -> str:
        return " > ".join(str(step) for step in self.path)

    # -- moving through the tree ---------------------------------------------------------------
    def _enter(self, name: str | None, now: float, steps: int = 0) -> list[Action]:
        if name is None:
            return self._end("flow_end")
        if steps > MAX_STEPS_PER_EVENT:
            log.error("call %s: flow %s loops without pausing at node %s", self.call_id,
                      self.flow.name, name)
            return self._end("flow_error")
        node = self.flow.nodes[name]
        self._node = node
        self._deadline = None
        self.path.append(PathStep(name))
        if isinstance(node, Menu):
            self._menu = _MenuState()
            return self._play(node.prompt, barge_in=True)
        if isinstance(node, Play):
            return self._play(node.prompt, barge_in=False)
        if isinstance(node, Queue):
            enqueue = Enqueue(node.queue, node.priority)
            if node.prompt:
                self._pending_enqueue = enqueue
                return self._play(node.prompt, barge_in=False)
            return self._join(enqueue)
        if isinstance(node, Hangup):
            if node.prompt:
                return self._play(node.prompt, barge_in=False)
            return self._end("flow_end")
        raise TypeError(f"unknown node {node!r}")

    def _play(self, prompts: tuple[Prompt, ...], barge_in: bool) -> list[Action]:
        self._play_id += 1
        self._playing = self._play_id
        return [PlayPrompt(self._play_id, resolve(prompts, self.language), barge_in)]

    def _stop_playing(self) -> list[Action]:
        if self._playing is None:
            return []
        play_id, self._playing = self._playing, None
        return [StopPlayback(play_id)]

    def _join(self, enqueue: Enqueue) -> list[Action]:
        self.state = "queued"
        self.queue = enqueue.queue
        return [enqueue]

    def _end(self, reason: str) -> list[Action]:
        self.state = "ended"
        self.end_reason = reason
        self._deadline = None
        return [HangupCall(reason)]

    def _playback_done(self, now: float) -> list[Action]:
        node = self._node
        if isinstance(node, Menu):
            if self._menu.phase == "notice":
                self._menu.phase = "prompt"
                return self._play(node.prompt, barge_in=True)
            self._menu.phase = "wait"
            self._deadline = now + node.timeout
            return []
        if isinstance(node, Play):
            return self._enter(node.next, now)
        if isinstance(node, Queue) and self._pending_enqueue:
            enqueue, self._pending_enqueue = self._pending_enqueue, None
            return self._join(enqueue)
        if isinstance(node, Hangup):
            return self._end("flow_end")
        return []

    # -- menus -----------------------------------------------------------------------------
    def _digit(self, digit: str, now: float) -> list[Action]:
        node = self._node
        if not isinstance(node, Menu):
            return []  # keys outside menus (during a play or a goodbye) are ignored
        actions = self._stop_playing()
        state = self._menu
        state.phase = "wait"
        state.buffer += digit
        exact = node.options.get(state.buffer)
        longer = any(k != state.buffer and k.startswith(state.buffer) for k in node.options)
        if exact is not None and not longer:
            return actions + self._select(node, exact, now)
        if longer:
            self._deadline = now + node.inter_digit_timeout
            return actions
        return actions + self._failure(node, "invalid", now)

    def _timer(self, now: float) -> list[Action]:
        node = self._node
        if not isinstance(node, Menu):
            return []
        state = self._menu
        if state.buffer:
            exact = node.options.get(state.buffer)
            if exact is not None:
                return self._select(node, exact, now)
            return self._failure(node, "invalid", now)
        return self._failure(node, "timeout", now)

    def _select(self, node: Menu, option: MenuOption, now: float) -> list[Action]:
        self.path[-1].digits += self._menu.buffer
        self._menu.buffer = ""
        if option.language:
            self.language = option.language
        if option.repeat:
            self._menu.phase = "prompt"
            return self._play(node.prompt, barge_in=True)
        return self._enter(option.next, now)

    def _failure(self, node: Menu, kind: str, now: float) -> list[Action]:
        state = self._menu
        if kind == "invalid":
            state.invalid += 1
            self.path[-1].digits += state.buffer + "!"
        else:
            state.timeouts += 1
        state.buffer = ""
        if state.invalid + state.timeouts > node.retries:
            if node.on_failure is None:
                return self._end("menu_failures")
            return self._enter(node.on_failure, now)
        notice = node.invalid_prompt if kind == "invalid" else node.timeout_prompt
        if notice:
            state.phase = "notice"
            return self._play(notice, barge_in=True)
        state.phase = "prompt"
        return self._play(node.prompt, barge_in=True)


__all__ = [
    "Action", "Answer", "CallSession", "DigitPressed", "Enqueue", "Event", "HangupCall",
    "PathStep", "PlayPrompt", "PlaybackFinished", "PromptPiece", "StopPlayback", "TimerFired",
]

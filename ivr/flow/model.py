"""The typed, immutable form of an IVR flow.

A :class:`Flow` is built once by :mod:`ivr.flow.loader` and never changed: a reload builds a new
one, and calls in progress keep the version they started with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ANY_LANGUAGE = "*"


@dataclass(frozen=True)
class Say:
    """Text spoken by the synthesiser, one text per language (``*`` for any language)."""

    texts: Mapping[str, str]

    def text_for(self, language: str) -> str:
        if language in self.texts:
            return self.texts[language]
        if ANY_LANGUAGE in self.texts:
            return self.texts[ANY_LANGUAGE]
        return next(iter(self.texts.values()))


@dataclass(frozen=True)
class File:
    """A recorded WAV file (8 or 16 kHz mono 16-bit PCM), path resolved at load time."""

    path: str


Prompt = Say | File


@dataclass(frozen=True)
class MenuOption:
    """What one key (or key string) of a menu does."""

    next: str | None
    """Node to go to; None with ``repeat``."""
    language: str | None = None
    """Language to use from here on, if the option sets one."""
    repeat: bool = False
    """Play the menu again instead of leaving it."""


@dataclass(frozen=True)
class Node:
    name: str
    line: int
    """Line of the node in its file, for messages and graphs."""


@dataclass(frozen=True)
class Menu(Node):
    prompt: tuple[Prompt, ...]
    options: Mapping[str, MenuOption]
    timeout: float = 5.0
    """Seconds to wait for the first key after the prompt ends."""
    inter_digit_timeout: float = 2.0
    """Seconds to wait for the next key of a multi-key option."""
    retries: int = 3
    """Failures (invalid keys plus timeouts) allowed before ``on_failure``."""
    invalid_prompt: tuple[Prompt, ...] = ()
    timeout_prompt: tuple[Prompt, ...] = ()
    on_failure: str | None = None
    """Node reached when failures run out; None hangs up."""


@dataclass(frozen=True)
class Play(Node):
    prompt: tuple[Prompt, ...]
    next: str | None = None
    """Node after the prompt; None hangs up."""


@dataclass(frozen=True)
class Queue(Node):
    queue: str
    prompt: tuple[Prompt, ...] = ()
    """Played once before the caller joins the queue."""
    priority: int = 0


@dataclass(frozen=True)
class Hangup(Node):
    prompt: tuple[Prompt, ...] = ()
    """A goodbye played before the line is closed."""


@dataclass(frozen=True)
class Flow:
    """One immutable version of an IVR tree."""

    name: str
    version: str
    """Short hash of the file's bytes: two loads of the same text have the same version."""
    source: str
    start: str
    languages: tuple[str, ...]
    nodes: Mapping[str, Node] = field(default_factory=dict)

    @property
    def default_language(self) -> str:
        return self.languages[0]

    def prompts(self) -> list[tuple[Prompt, ...]]:
        """Every prompt sequence of the flow, for rendering ahead of calls."""
        out: list[tuple[Prompt, ...]] = []
        for node in self.nodes.values():
            for name in ("prompt", "invalid_prompt", "timeout_prompt"):
                seq = getattr(node, name, ())
                if seq:
                    out.append(seq)
        return out

    def queues(self) -> set[str]:
        return {n.queue for n in self.nodes.values() if isinstance(n, Queue)}

"""The typed, immutable form of an IVR flow.

A :class:`Flow` is built once by :mod:`ivr.flow.loader` and never changed: a reload builds a new
one, and calls in progress keep the version they started with.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

ANY_LANGUAGE = "*"


@dataclass(frozen=True)
class Say:
    """Text spoken by the synthesiser, one text per language (``*`` for any language).

    Texts may name variables: ``"you are caller number {position}"``; ``{name:digits}`` reads a
    value key by key ("1 2 3").
    """

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
Prompts = tuple[Prompt, ...]


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

    kind = "node"

    def exits(self) -> Iterator[tuple[str, str]]:
        """(label, target node) for every way out of this node, for checks and graphs."""
        return iter(())

    def prompt_sequences(self) -> Iterator[Prompts]:
        return iter(())


@dataclass(frozen=True)
class Menu(Node):
    prompt: Prompts
    """Long greeting, played on first entry."""
    options: Mapping[str, MenuOption]
    short_prompt: Prompts = ()
    """Short greeting, played on re-entry (repeat, after an error); the long one if empty."""
    timeout: float = 5.0
    """Seconds to wait for the first key after the prompt ends."""
    inter_digit_timeout: float = 2.0
    """Seconds to wait for the next key of a multi-key option or extension."""
    max_digits: int = 0
    """Keys to collect at most (0: the longest option or extension)."""
    terminator: str = "#"
    """Key that ends entry early."""
    max_invalid: int = 3
    max_timeouts: int = 3
    invalid_prompt: Prompts = ()
    timeout_prompt: Prompts = ()
    on_failure: str | None = None
    """Node reached when invalid keys or timeouts run out; None hangs up."""
    extension_patterns: tuple[str, ...] = ()
    """Extensions callers may dial directly from this menu, as digit patterns: a digit stands
    for itself, X for any digit, Z for 1-9, N for 2-9 (e.g. '2XX')."""
    extension_next: str | None = None
    """Node reached with the dialled extension in the variable ``extension``."""

    kind = "menu"

    def exits(self) -> Iterator[tuple[str, str]]:
        for key, option in self.options.items():
            if option.next:
                yield key, option.next
        if self.extension_next:
            yield f"ext {'|'.join(self.extension_patterns)}", self.extension_next
        if self.on_failure:
            yield "failure", self.on_failure

    def prompt_sequences(self) -> Iterator[Prompts]:
        yield from (p for p in (self.prompt, self.short_prompt, self.invalid_prompt,
                                self.timeout_prompt) if p)

    def matches_extension(self, digits: str) -> bool:
        return any(len(p) == len(digits) and _fits(p, digits) for p in self.extension_patterns)

    def could_be_extension(self, digits: str) -> bool:
        """True if more keys could still make *digits* an extension."""
        return any(len(p) > len(digits) and _fits(p[:len(digits)], digits)
                   for p in self.extension_patterns)

    def longest_entry(self) -> int:
        lengths = [len(k) for k in self.options] + [len(p) for p in self.extension_patterns]
        return self.max_digits or max(lengths or [1])


_PATTERN_CLASSES = {"X": "0123456789", "Z": "123456789", "N": "23456789"}


def _fits(pattern: str, digits: str) -> bool:
    return all(d in _PATTERN_CLASSES.get(p, p) for p, d in zip(pattern, digits, strict=True))


@dataclass(frozen=True)
class Play(Node):
    prompt: Prompts
    next: str
    barge_in: bool = False
    """A key stops the prompt; the key is kept for the next menu or collect."""

    kind = "play"

    def exits(self) -> Iterator[tuple[str, str]]:
        yield "", self.next

    def prompt_sequences(self) -> Iterator[Prompts]:
        yield self.prompt


@dataclass(frozen=True)
class Collect(Node):
    prompt: Prompts
    variable: str
    next: str
    min_length: int = 1
    max_length: int = 20
    pattern: str | None = None
    """Regular expression the whole entry must match."""
    terminator: str = "#"
    timeout: float = 8.0
    inter_digit_timeout: float = 4.0
    max_attempts: int = 3
    invalid_prompt: Prompts = ()
    confirm: bool = False
    """Read the entry back and ask 1 to confirm, 2 to enter again."""
    confirm_prompt: Prompts = ()
    on_failure: str | None = None

    kind = "collect"

    def exits(self) -> Iterator[tuple[str, str]]:
        yield "", self.next
        if self.on_failure:
            yield "failure", self.on_failure

    def prompt_sequences(self) -> Iterator[Prompts]:
        yield from (p for p in (self.prompt, self.invalid_prompt, self.confirm_prompt) if p)

    def valid(self, digits: str) -> bool:
        if not self.min_length <= len(digits) <= self.max_length:
            return False
        return self.pattern is None or re.fullmatch(self.pattern, digits) is not None


@dataclass(frozen=True)
class Condition:
    """One test of a branch case; every given field must hold."""

    variable: str | None = None
    equals: str | None = None
    matches: str | None = None
    one_of: tuple[str, ...] | None = None
    caller: str | None = None
    """Regular expression for the caller's number, or 'withheld'."""
    called: tuple[str, ...] | None = None
    """Dialled numbers (which toll-free line)."""
    language: str | None = None
    ticket: str | None = None
    """'open': the caller has an open ticket; 'none': they have none."""
    ticket_level: int | None = None
    """The caller's open ticket is at this support level."""


@dataclass(frozen=True)
class Case:
    when: Condition
    next: str


@dataclass(frozen=True)
class Branch(Node):
    cases: tuple[Case, ...]
    default: str

    kind = "branch"

    def exits(self) -> Iterator[tuple[str, str]]:
        for i, case in enumerate(self.cases):
            yield f"case {i + 1}", case.next
        yield "default", self.default


@dataclass(frozen=True)
class Hours(Node):
    timezone: str
    schedule: Mapping[int, tuple[tuple[int, int], ...]]
    """Weekday (0 = Monday) -> open intervals in minutes since midnight."""
    open: str
    closed: str
    holiday: str
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    holiday_dates: tuple[str, ...] = ()
    """Extra closed dates, ISO 'YYYY-MM-DD'."""
    override: str | None = None
    """Name of a switch that forces 'open' or 'closed' (set by a set_override node)."""

    kind = "hours"

    def exits(self) -> Iterator[tuple[str, str]]:
        yield "open", self.open
        yield "closed", self.closed
        if self.holiday != self.closed:
            yield "holiday", self.holiday


@dataclass(frozen=True)
class SetOverride(Node):
    """Switches an hours override: the feature code's target (behind a PIN collect)."""

    override: str
    state: str
    """'open', 'closed' or 'auto'."""
    next: str

    kind = "set_override"

    def exits(self) -> Iterator[tuple[str, str]]:
        yield "", self.next


@dataclass(frozen=True)
class Sms(Node):
    """Texts the number that called (nobody else), then goes on at once."""

    text: str
    """May name variables: ``"Your ticket is {ticket}"``."""
    next: str

    kind = "sms"

    def exits(self) -> Iterator[tuple[str, str]]:
        yield "", self.next


@dataclass(frozen=True)
class Language(Node):
    language: str
    next: str

    kind = "language"

    def exits(self) -> Iterator[tuple[str, str]]:
        yield "", self.next


@dataclass(frozen=True)
class Lookup(Node):
    url: str
    """May name variables: ``https://crm.example/api/callers?number={caller}``."""
    fields: Mapping[str, str]
    """Variable -> dotted path in the JSON answer."""
    next: str
    on_failure: str
    timeout: float = 3.0

    kind = "lookup"

    def exits(self) -> Iterator[tuple[str, str]]:
        yield "", self.next
        yield "failure", self.on_failure


@dataclass(frozen=True)
class Queue(Node):
    queue: str
    prompt: Prompts = ()
    """Played once before the caller joins the queue."""
    priority: int = 0
    announce_prompt: Prompts = ()
    exit_keys: Mapping[str, str] = field(default_factory=dict)
    """Key -> node for a waiting caller who wants out."""
    on_exit: str | None = None
    """Node when the caller leaves the queue unserved; None hangs up."""

    kind = "queue"

    def exits(self) -> Iterator[tuple[str, str]]:
        yield from ((k, t) for k, t in self.exit_keys.items() if t != "callback")
        if self.on_exit:
            yield "unserved", self.on_exit

    def prompt_sequences(self) -> Iterator[Prompts]:
        yield from (p for p in (self.prompt, self.announce_prompt) if p)


@dataclass(frozen=True)
class Voicemail(Node):
    prompt: Prompts
    max_seconds: float = 120.0
    silence_seconds: float = 5.0
    """The recording ends after this long without speech."""
    beep: bool = True
    next: str | None = None
    """Node after the recording (e.g. a thank-you); None hangs up."""

    kind = "voicemail"

    def exits(self) -> Iterator[tuple[str, str]]:
        if self.next:
            yield "", self.next

    def prompt_sequences(self) -> Iterator[Prompts]:
        yield self.prompt


@dataclass(frozen=True)
class Transfer(Node):
    to: str
    """Extension (named in ivr.yaml) or number; may name a variable such as ``{extension}``."""
    prompt: Prompts = ()
    on_failure: str | None = None

    kind = "transfer"

    def exits(self) -> Iterator[tuple[str, str]]:
        if self.on_failure:
            yield "failure", self.on_failure

    def prompt_sequences(self) -> Iterator[Prompts]:
        if self.prompt:
            yield self.prompt


@dataclass(frozen=True)
class Goto(Node):
    next: str

    kind = "goto"

    def exits(self) -> Iterator[tuple[str, str]]:
        yield "", self.next


@dataclass(frozen=True)
class Subflow(Node):
    flow: Flow
    """The reused piece of tree, loaded from its own file."""
    next: str
    """Where the call goes when the subflow reaches a ``return`` node."""

    kind = "subflow"

    def exits(self) -> Iterator[tuple[str, str]]:
        yield "", self.next


@dataclass(frozen=True)
class Return(Node):
    """Ends a subflow: the call continues at the subflow node's ``next``."""

    kind = "return"


@dataclass(frozen=True)
class Hangup(Node):
    prompt: Prompts = ()
    """A goodbye played before the line is closed."""

    kind = "hangup"

    def prompt_sequences(self) -> Iterator[Prompts]:
        if self.prompt:
            yield self.prompt


@dataclass(frozen=True)
class Flow:
    """One immutable version of an IVR tree."""

    name: str
    version: str
    """Short hash of the file's bytes (and its subflows'): same text, same version."""
    source: str
    start: str
    languages: tuple[str, ...]
    nodes: Mapping[str, Node] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    """Initial values of the call's variables."""

    @property
    def default_language(self) -> str:
        return self.languages[0]

    def prompts(self) -> list[Prompts]:
        """Every prompt sequence of the flow and its subflows, for rendering ahead of calls."""
        out: list[Prompts] = []
        for node in self.nodes.values():
            out.extend(node.prompt_sequences())
            if isinstance(node, Subflow):
                out.extend(node.flow.prompts())
        return out

    def queues(self) -> set[str]:
        found = {n.queue for n in self.nodes.values() if isinstance(n, Queue)}
        for node in self.nodes.values():
            if isinstance(node, Subflow):
                found |= node.flow.queues()
        return found

"""What a prompt says, as pieces: fixed text of the flow, files, and values from variables.

A ``say:`` text with variables is split at them, so the fixed parts can be rendered when the
flow is loaded and the values spoken by joining pre-rendered words (numbers, keys) while a call
waits for nothing:

    resolve((Say({"en": "You are number {position} in the queue"}),), "en", {"position": "3"})
    -> say 'You are number', number '3', say 'in the queue' (the last two with follows=True)

Pure: no audio, no files, no clock. :mod:`ivr.prompts` turns pieces into sound.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ivr.flow.model import File, Prompts, Say

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
_NUMBER = re.compile(r"0|[1-9][0-9]{0,5}")
"""A value spoken as a number: at most 6 digits, no leading zero (0..999,999)."""
_KEYS = re.compile(r"[0-9*#+]+")
"""A value spelt key by key: digits, star, hash, and the plus of an international number."""
_NO_SPACE_BEFORE = ".,;:!?)]}»"
_NO_SPACE_AFTER = "([{«'\u2019"  # \u2019: the typographic apostrophe

ANNOUNCE_PROMPT: Prompts = (Say({
    "it": "Lei è il chiamante numero {position}. L'attesa prevista è di circa {expected_wait} "
          "minuti.",
    "en": "You are caller number {position}. The expected wait is about {expected_wait} "
          "minutes.",
    "*": "You are caller number {position}. The expected wait is about {expected_wait} "
         "minutes.",
}),)

CALLBACK_PROMPT: Prompts = (Say({
    "it": "La richiameremo al numero {caller:digits} appena un operatore sarà libero. "
          "Arrivederci.",
    "en": "We will call you back on {caller:digits} as soon as an agent is free. Goodbye.",
    "*": "We will call you back on {caller:digits} as soon as an agent is free. Goodbye.",
}),)

KINDS = ("say", "file", "number", "digits", "text")


@dataclass(frozen=True)
class PromptPiece:
    """One resolved piece of audio.

        >>> PromptPiece("say", "Hello", "en")            # fixed text of the flow
        >>> PromptPiece("number", "21", "it", follows=True)
    """

    kind: str
    """'say' (fixed text of the flow), 'file' (a WAV), 'number' (an integer 0..999,999 spoken
    as a number), 'digits' (0-9 * # + spelt key by key) or 'text' (free text from a variable,
    such as a customer's name from a lookup: the only kind that always needs the synthesiser)."""
    value: str
    """The text, the file path, the number in decimal, or the keys."""
    language: str = ""
    follows: bool = False
    """True when the piece continues the prompt of the piece before it (a Say text split at a
    variable): no pause between them. False on the first piece of every prompt."""

    def spoken(self) -> str:
        """The piece as text, as :func:`fill` writes it ('' for a file)."""
        if self.kind == "digits":
            return " ".join(self.value)
        return "" if self.kind == "file" else self.value


def fill(text: str, variables: Mapping[str, str]) -> str:
    """Put variables into text: ``{name}``, or ``{name:digits}`` spelt key by key."""
    def sub(m: re.Match[str]) -> str:
        value = str(variables.get(m.group(1), ""))
        return " ".join(value) if m.group(2) == "digits" else value
    return _VAR.sub(sub, text)


def has_variables(text: str) -> bool:
    return _VAR.search(text) is not None


def fixed_fragments(text: str) -> list[str]:
    """The fixed parts of a text between its variables, as :func:`resolve` gives them (whole
    text when it has no variables; empty parts left out)."""
    if not has_variables(text):
        return [text] if text else []
    return [value for kind, value, _ in _split(text) if kind == "fixed" and value]


def _split(text: str) -> Iterator[tuple[str, str, str | None]]:
    """('fixed', text, None) and ('var', name, format) in order of the text."""
    pos = 0
    for m in _VAR.finditer(text):
        yield "fixed", text[pos:m.start()].strip(), None
        yield "var", m.group(1), m.group(2)
        pos = m.end()
    yield "fixed", text[pos:].strip(), None


def value_piece(value: str, form: str | None, language: str) -> PromptPiece | None:
    """The piece that speaks a variable's value, or None for an empty value."""
    value = str(value)
    if form == "digits":
        keys = "".join(value.split())
        if not keys:
            return None
        if _KEYS.fullmatch(keys):
            return PromptPiece("digits", keys, language)
        return PromptPiece("text", " ".join(" ".join(word) for word in value.split()), language)
    if not value.strip():
        return None
    if _NUMBER.fullmatch(value):
        return PromptPiece("number", value, language)
    if _KEYS.fullmatch(value):
        return PromptPiece("digits", value, language)
    return PromptPiece("text", value, language)


def resolve(prompts: Prompts, language: str,
            variables: Mapping[str, str] | None = None) -> tuple[PromptPiece, ...]:
    """The pieces that speak *prompts* in *language* with the call's *variables*."""
    values = variables or {}
    pieces: list[PromptPiece] = []
    for prompt in prompts:
        if isinstance(prompt, File):
            pieces.append(PromptPiece("file", prompt.path))
            continue
        if not isinstance(prompt, Say):
            continue
        text = prompt.text_for(language)
        if not has_variables(text):
            if text:  # unchanged whole text: the name of its cached file stays the same
                pieces.append(PromptPiece("say", text, language))
            continue
        first = len(pieces)
        for kind, value, form in _split(text):
            piece: PromptPiece | None
            if kind == "fixed":
                piece = PromptPiece("say", value, language) if value else None
            else:
                piece = value_piece(values.get(value, ""), form, language)
            if piece is not None:
                follows = len(pieces) > first
                pieces.append(PromptPiece(piece.kind, piece.value, piece.language, follows))
    return tuple(pieces)


def spoken_text(pieces: Iterable[PromptPiece]) -> str:
    """The pieces as one text, as :func:`fill` writes the prompts (files left out): what
    simulations print and flow tests compare."""
    out = ""
    for piece in pieces:
        part = piece.spoken()
        if not part:
            continue
        if out and part[0] not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
            out += " "
        out += part
    return out


def speakable(text: str) -> bool:
    """True when a text has something to say (a fragment left between a variable and the end
    of a sentence may be only a full stop)."""
    return any(ch.isalnum() for ch in text)


# -- numbers and keys as words ------------------------------------------------------------------
_EN_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_EN_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_IT_ONES = (
    "zero", "uno", "due", "tre", "quattro", "cinque", "sei", "sette", "otto", "nove", "dieci",
    "undici", "dodici", "tredici", "quattordici", "quindici", "sedici", "diciassette", "diciotto",
    "diciannove",
)
_IT_TENS = ("venti", "trenta", "quaranta", "cinquanta", "sessanta", "settanta", "ottanta",
            "novanta")

_KEY_WORDS: dict[str, dict[str, str]] = {
    "en": {**{str(d): _EN_ONES[d] for d in range(10)}, "*": "star", "#": "hash", "+": "plus"},
    "it": {**{str(d): _IT_ONES[d] for d in range(10)}, "*": "asterisco", "#": "cancelletto",
           "+": "più"},
}
WORD_LANGUAGES = frozenset(_KEY_WORDS)
"""Languages whose numbers and keys are spoken by joining pre-rendered words."""


def word_language(language: str) -> str | None:
    """The word set for *language* ('en-GB' uses 'en'), or None when it has none."""
    base = language.split("-")[0].split("_")[0].lower()
    return base if base in WORD_LANGUAGES else None


def _en_below_1000(n: int) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [_EN_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, unit = divmod(rest, 10)
        words.append(_EN_TENS[tens - 2])
        if unit:
            words.append(_EN_ONES[unit])
    elif rest:
        words.append(_EN_ONES[rest])
    return words


def _it_below_1000(n: int) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        # 'cento', 'duecento'...'novecento': whole words, as they are written and said
        words.append("cento" if hundreds == 1 else _IT_ONES[hundreds] + "cento")
    if rest >= 20:
        tens, unit = divmod(rest, 10)
        ten = _IT_TENS[tens - 2]
        if unit in (1, 8):  # elision: ventuno, ventotto, trentuno, trentotto...
            words.append(ten[:-1] + _IT_ONES[unit])
        elif unit:
            words += [ten, _IT_ONES[unit]]
        else:
            words.append(ten)
    elif rest:
        words.append(_IT_ONES[rest])
    return words


def number_words(n: int, language: str) -> list[str]:
    """The words that say *n* (0..999,999), joined as SayNumber does.

        >>> number_words(1_234, "en")
        ['one', 'thousand', 'two', 'hundred', 'thirty', 'four']
        >>> number_words(21_000, "it")
        ['ventuno', 'mila']
    """
    lang = word_language(language)
    if lang is None:
        raise ValueError(f"no number words for language '{language}'")
    if not 0 <= n <= 999_999:
        raise ValueError(f"{n} is out of range 0..999999")
    if n == 0:
        return [_KEY_WORDS[lang]["0"]]
    thousands, rest = divmod(n, 1000)
    if lang == "en":
        words = [*_en_below_1000(thousands), "thousand"] if thousands else []
        return words + _en_below_1000(rest)
    if thousands == 1:
        words = ["mille"]
    elif thousands:
        words = [*_it_below_1000(thousands), "mila"]
    else:
        words = []
    return words + _it_below_1000(rest)


def digit_words(keys: str, language: str) -> list[str]:
    """The words that spell *keys* (0-9 * # +) one by one."""
    lang = word_language(language)
    if lang is None:
        raise ValueError(f"no key words for language '{language}'")
    table = _KEY_WORDS[lang]
    try:
        return [table[k] for k in keys]
    except KeyError as exc:
        raise ValueError(f"'{exc.args[0]}' is not a key") from exc


def piece_words(piece: PromptPiece) -> list[str] | None:
    """The words of a number or digits piece, or None when it has no word set (its language
    has none, or the value is not what its kind says)."""
    if piece.kind not in ("number", "digits") or word_language(piece.language) is None:
        return None
    try:
        if piece.kind == "number":
            return number_words(int(piece.value), piece.language)
        return digit_words(piece.value, piece.language)
    except ValueError:
        return None


def word_set(language: str) -> tuple[str, ...]:
    """Every word needed to say any number 0..999,999 and any key in *language*."""
    lang = word_language(language)
    if lang is None:
        return ()
    words: set[str] = set(_KEY_WORDS[lang].values())
    for n in range(1000):
        words.update(number_words(n, lang))
    words.update(("thousand",) if lang == "en" else ("mille", "mila"))
    return tuple(sorted(words))


__all__ = ["ANNOUNCE_PROMPT", "CALLBACK_PROMPT", "KINDS", "WORD_LANGUAGES", "PromptPiece",
           "digit_words", "fill", "fixed_fragments", "has_variables", "number_words",
           "piece_words", "resolve", "speakable", "spoken_text", "value_piece", "word_language",
           "word_set"]

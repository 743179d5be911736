"""Telephone numbers as the switchboard stores and tests them: digits, ``+``, ``*`` and ``#``.

A called or calling number arrives as a SIP or tel URI, a name-addr, or the bare user part of
one, in whatever spelling the gateway (or an attacker) chose. :func:`normalise` turns each into
one canonical text or refuses it, so a flow, a route, a record and a log line all see the same
thing, and nothing else (letters, control bytes, ``%00``, quotes) gets past the SIP adapter::

    >>> normalise("tel:+39-06-1234;phone-context=example.com")
    '+39061234'
    >>> normalise('"Anna" <sip:+39%2002%201234@gw;user=phone>')
    '+39021234'
    >>> normalise("anonymous")
    ''
    >>> normalise("ivr%00evil") is None
    True

Pure: no I/O, no state.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MAX_DIGITS = 32
"""Longest number kept (E.164 has at most 15 digits; room for prefixes and service codes)."""
MAX_RAW = 512
"""Longest text looked at: a longer header is refused before any work is done on it."""
WITHHELD = frozenset({"anonymous", "restricted", "unknown"})
"""User parts that say the number is withheld; they normalise to ``""``."""

_NUMBER = re.compile(r"\+?[0-9*#]+")
_SEPARATORS = str.maketrans("", "", " -.()")
"""Visual separators a person or a gateway may put in a number (RFC 3966 visual-separator)."""
_SCHEMES = ("sip:", "sips:", "tel:")


def normalise(raw: str) -> str | None:
    """The number in *raw*, canonical; ``""`` when withheld; None when refused.

    *raw* is a bare number (``+39 06 1234``), the user part of a URI as received (still
    percent-encoded), a ``sip:``/``sips:``/``tel:`` URI or a name-addr. The user part is
    percent-decoded once, cut at its parameters (``;phone-context=...``) and cleared of visual
    separators (space, ``-``, ``.``, ``(``, ``)``); what is left must be at most
    :data:`MAX_DIGITS` keys of a phone: digits, ``*``, ``#``, and ``+`` only in front.
    ``anonymous``, ``restricted``, ``unknown`` (any case) and an empty user are withheld.
    Idempotent: ``normalise(normalise(x)) == normalise(x)`` whenever the first is not None.
    """
    if len(raw) > MAX_RAW:
        return None
    if ":" in raw or "<" in raw:
        return number_from_uri(raw)
    return _user_number(raw)


def number_from_uri(uri: str) -> str | None:
    """The normalised number of a ``sip:``, ``sips:`` or ``tel:`` URI, or of a name-addr
    (``"Anna" <sip:+3902123@gw;user=phone>``); None for anything else (other schemes, a bare
    number, a broken name-addr) and for a user part :func:`normalise` refuses.

    A SIP URI without a user part (``sip:192.0.2.1``) names no number: ``""``.
    """
    if len(uri) > MAX_RAW:
        return None
    address = _addr_spec(uri.strip(" "))
    if address is None:
        return None
    lowered = address[:5].lower()
    scheme = next((s for s in _SCHEMES if lowered.startswith(s)), None)
    if scheme is None:
        return None
    rest = address[len(scheme):]
    if scheme == "tel:":
        user = rest
    else:
        userinfo, at, _host = rest.partition("@")
        if not at:
            return ""  # sip:host names a machine, not a number
        user = userinfo.partition(":")[0]  # user:password@ (obsolete) keeps only the user
    return _user_number(user)


def _addr_spec(text: str) -> str | None:
    """The URI inside a name-addr (``Name <uri>``, the name maybe quoted), or *text* itself."""
    if text.startswith('"'):
        end = _quoted_end(text)
        if end is None:
            return None
        name_end = text.find("<", end)
        if name_end < 0:
            return None
        text = text[name_end:]
    start = text.find("<")
    if start < 0:
        return text
    end = text.find(">", start)
    if end < 0:
        return None
    return text[start + 1:end]


def _quoted_end(text: str) -> int | None:
    """Index after the quoted string that opens *text* (backslash escapes honoured)."""
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    return None


def _user_number(user: str) -> str | None:
    """A user part (or a bare number) as received -> the number, '' (withheld) or None."""
    user = user.partition(";")[0]  # user parameters: ;phone-context=..., ;isub=...
    decoded = unquote(user, errors="replace").strip(" ")
    if not decoded or decoded.lower() in WITHHELD:
        return ""
    number = decoded.translate(_SEPARATORS)
    if len(number) > MAX_DIGITS or not _NUMBER.fullmatch(number):
        return None
    return number


def is_number(text: str) -> bool:
    """Whether *text* is already a canonical, non-empty number."""
    return len(text) <= MAX_DIGITS and _NUMBER.fullmatch(text) is not None


def to_e164_it(number: str) -> str:
    """A normalised number as an Italian gateway (FXO on a PSTN line) sends it, in E.164.

    National numbers (``0...``: geographic, the 0 kept as Italy dials it) and mobile ones
    (``3...``) get ``+39``; ``00...`` (international prefix) becomes ``+...``. A number already
    in ``+`` form, a withheld one (``""``), and anything else (service numbers ``1...``, toll
    free ``8...``, codes with ``*`` or ``#``) are kept as they are::

        >>> to_e164_it("0612345678"), to_e164_it("3471234567"), to_e164_it("0041441234567")
        ('+390612345678', '+393471234567', '+41441234567')
        >>> to_e164_it(""), to_e164_it("112"), to_e164_it("+390612345678")
        ('', '112', '+390612345678')

    Idempotent, like :func:`normalise`.
    """
    if not number.isdigit():
        return number  # withheld, +..., * and # codes
    if number.startswith("00"):
        return "+" + number[2:] if len(number) > 4 else number
    if number[0] in "03" and len(number) >= 6:  # shorter: a service or internal code
        return "+39" + number
    return number


__all__ = ["MAX_DIGITS", "WITHHELD", "is_number", "normalise", "number_from_uri", "to_e164_it"]

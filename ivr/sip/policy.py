"""What the switchboard does with each SIP request that is not part of a call.

Pure functions, no pjsua2: the SIP adapter (:mod:`ivr.sip.stack`) asks :func:`decide` for every
incoming request other than INVITE, ACK, BYE, CANCEL, PRACK and UPDATE (our pjproject build
hands them over before pjsua would answer them itself), and :func:`check_invite` for every
INVITE before it is admitted.

The rules, and why:

- A source we know is a trunk (a gateway, or an agent's phone) or the far end of a call of ours
  (the request names one of our dialogs). Only those get answers; a stranger's request gets
  none (``DROP``), or ``403`` with :attr:`SipSettings.refuse_strangers`, in the spirit of
  Asterisk's ``alwaysauthreject``: a scanner learns nothing, not even that a SIP stack is here.
- ``OPTIONS`` (a gateway's health check) is answered ``200`` with an ``Allow`` naming only what
  we handle, and no product name or version.
- ``MESSAGE``, ``SUBSCRIBE``, ``PUBLISH``, ``NOTIFY`` outside a dialog, ``REFER`` outside a
  dialog and ``REGISTER`` (we are no registrar): ``403``.
- ``INFO`` in a call carries DTMF (``application/dtmf-relay`` or ``application/dtmf``) and goes
  to pjsua, which reports the digit; any other INFO body: ``415``.
- ``REFER`` and ``NOTIFY`` inside a call go to pjsua: a REFER reaches the call's own policy
  (``onCallTransferRequest``), a NOTIFY a subscription of ours if there is one (else pjsua
  answers ``481``).
- Any other method: ``405`` with our ``Allow``.

>>> decide("OPTIONS", known=True, in_dialog=False, content_type="").status
200
>>> decide("MESSAGE", known=False, in_dialog=False, content_type="").status
-1
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["ALLOW", "DROP", "DTMF_TYPES", "MAX_BODY", "PASS", "Decision", "InviteCheck",
           "check_invite", "decide", "kind_of"]

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
"""The methods we handle: the ``Allow`` of our answers to OPTIONS and of a 405."""

DTMF_TYPES = frozenset({"application/dtmf-relay", "application/dtmf"})
"""Content types of an INFO that carries a key press."""

PASS = 0
"""Status meaning: pjsua handles the request as usual."""
DROP = -1
"""Status meaning: no answer at all."""

MAX_BODY = 64 * 1024
"""The largest Content-Length believed: a bigger one is absurd for a SIP datagram (400)."""

_NAMED_KINDS = frozenset({"options", "message", "subscribe", "publish", "notify", "refer",
                          "register", "info"})


@dataclass(frozen=True)
class Decision:
    """What to do with one request, and why (for the counter and the log)."""

    status: int
    """``PASS`` (0), ``DROP`` (-1) or the status to answer with (200-699)."""
    kind: str
    """The request kind: a lower-case method we know, or ``other`` (bounded: a metric label)."""
    reason: str
    """A fixed label of the rule that decided: ``answered``, ``stranger``, ``not handled``,
    ``not dtmf``, ``not allowed``, ``in call``."""
    headers: tuple[tuple[str, str], ...] = ()
    """Headers of the answer."""

    @property
    def refused(self) -> bool:
        return self.status == DROP or self.status >= 300


def kind_of(method: str) -> str:
    """The method as a counter label: ``OPTIONS`` -> ``options``; an unknown one -> ``other``."""
    kind = method.lower()
    return kind if kind in _NAMED_KINDS else "other"


def decide(method: str, *, known: bool, in_dialog: bool, content_type: str,
           refuse_strangers: bool = False) -> Decision:
    """The decision for one request that is not INVITE/ACK/BYE/CANCEL/PRACK/UPDATE.

    *known*: the source is a trunk's (or an agent phone's); *in_dialog*: the request names a
    dialog of ours (Call-ID and tags); *content_type*: ``type/subtype`` of its body or ``''``.
    """
    kind = kind_of(method)
    if not known and not in_dialog:
        return Decision(403 if refuse_strangers else DROP, kind, "stranger")
    if kind == "options":
        return Decision(200, kind, "answered", (("Allow", ALLOW),))
    if kind == "info":
        if in_dialog and content_type.strip().lower() in DTMF_TYPES:
            return Decision(PASS, kind, "dtmf")
        if in_dialog:
            return Decision(415, kind, "not dtmf",
                            (("Accept", ", ".join(sorted(DTMF_TYPES))),))
        return Decision(403, kind, "not handled")
    if kind in ("refer", "notify") and in_dialog:
        return Decision(PASS, kind, "in call")
    if kind in ("message", "subscribe", "publish", "notify", "refer", "register"):
        return Decision(403, kind, "not handled")
    return Decision(405, kind, "not allowed", (("Allow", ALLOW),))


# -- INVITE: the message as it arrived ----------------------------------------------------------
@dataclass(frozen=True)
class InviteCheck:
    """The verdict on an INVITE's framing and media addresses: ``status`` 0 means fine."""

    status: int = 0
    reason: str = ""
    """A fixed label: ``bad content-length``, ``truncated body``, ``media address``."""
    detail: str = ""
    """What was wrong, for the log (may quote the network: escape it)."""


_CONTENT_LENGTH = re.compile(r"^(?:content-length|l)[ \t]*:[ \t]*(.*?)[ \t\r]*$",
                             re.IGNORECASE | re.MULTILINE)
_CONNECTION = re.compile(r"^c=IN[ \t]+IP[46][ \t]+([^ \t/\r\n]+)", re.MULTILINE)


def _split(message: str) -> tuple[str, str] | None:
    for separator in ("\r\n\r\n", "\n\n"):
        head, found, body = message.partition(separator)
        if found:
            return head, body
    return None


def check_invite(message: str, *, trunk_source: Callable[[str], bool],
                 media_networks: Iterable[str] = ()) -> InviteCheck:
    """Check an INVITE as received (*message*: the whole datagram, decoded as Latin-1 or UTF-8).

    - ``400`` when the Content-Length is not a number, is above :data:`MAX_BODY`, or is larger
      than the body that arrived (RFC 3261 section 18.3: a truncated or forged datagram). A
      smaller one is legal (pjsip reads that many bytes and ignores the rest).
    - ``488`` when an SDP connection address (``c=`` of the session or of a media line) is
      neither a source of the trunk (``trunk_source(address)``) nor inside one of
      *media_networks* (CIDR), so RTP is never sent to a third party. ``0.0.0.0`` (hold) is
      accepted: nothing is sent there.
    """
    parts = _split(message)
    if parts is None:
        return InviteCheck(400, "truncated body", "no end of headers")
    head, body = parts
    raw = body.encode("utf-8", "surrogateescape")
    values = _CONTENT_LENGTH.findall(head)
    if len(values) > 1 and len(set(values)) > 1:
        return InviteCheck(400, "bad content-length", "several different Content-Length")
    if values:
        value = values[0]
        if not value.isdigit() or not value.isascii():
            return InviteCheck(400, "bad content-length", f"Content-Length {value!r}")
        length = int(value) if len(value) <= 12 else MAX_BODY + 1
        if length > MAX_BODY:
            return InviteCheck(400, "bad content-length", f"Content-Length {value}")
        if length > len(raw):
            return InviteCheck(400, "truncated body",
                               f"Content-Length {length}, {len(raw)} bytes arrived")
        body = raw[:length].decode("utf-8", "surrogateescape")
    networks = []
    for text in media_networks:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    for address in _CONNECTION.findall(body):
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return InviteCheck(488, "media address", f"c= {address!r} is not an address")
        if ip.is_unspecified or any(ip in net for net in networks if net.version == ip.version) \
                or trunk_source(str(ip)):
            continue
        return InviteCheck(488, "media address", f"c= {address} is not the trunk's")
    return InviteCheck()

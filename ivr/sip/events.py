"""Events the SIP layer reports to the driver. Plain data: no pjsua2 in here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IncomingCall:
    """A trunk's INVITE was accepted for handling (not yet answered)."""

    leg: str
    source: str
    """IP address the INVITE came from."""
    trunk: str
    caller: str
    """User part of the From URI (the caller's number), '' when withheld."""
    called: str
    """User part of the To URI (the number dialled)."""


@dataclass(frozen=True)
class CallRefused:
    """An INVITE the SIP layer answered with an error on its own: unknown source (403), line
    limit (486), a Content-Length larger than the body or absurd (400), media outside the
    trunk's addresses (488). ``reason`` is the SIP reason phrase, and for the last two a fixed
    label after it (``Bad Request: truncated body``, ``Not Acceptable Here: media address``)."""

    source: str
    caller: str
    called: str
    status: int
    reason: str
    trunk: str = ""


@dataclass(frozen=True)
class LegAnswered:
    """An outgoing leg (an agent's phone) was answered."""

    leg: str


@dataclass(frozen=True)
class CallConfirmed:
    """An incoming leg is confirmed: the ACK of our 200 OK arrived.

    A leg answered whose ACK never comes is ended by pjsip (after 64*T1, 32 s) with LegEnded
    and no CallConfirmed before it: the caller never heard us, the call failed.
    """

    leg: str


@dataclass(frozen=True)
class LegEnded:
    leg: str
    status: int
    """Last SIP status of the leg (e.g. 200 after a BYE, 486 busy, 408 no answer)."""
    reason: str


@dataclass(frozen=True)
class TransferRequested:
    """An agent's phone asked to transfer its call (REFER), and the stack took the transfer:
    it answered 202 and a final NOTIFY 200 and dials nothing itself. The driver moves the
    caller to the destination *refer_to* names in ivr.yaml (the stack asked it first, see
    :attr:`ivr.sip.stack.SipStack.take_transfer`)."""

    leg: str
    """The agent's leg the REFER came in."""
    refer_to: str
    """The Refer-To URI as the phone wrote it (never dialled as such)."""
    replaces: str = ""
    """The ``Replaces`` header of the Refer-To (still URI-escaped) in an attended transfer:
    the phone's consultation call with the target; '' in a blind transfer."""


@dataclass(frozen=True)
class DigitReceived:
    leg: str
    digit: str
    method: str
    """'rfc2833' or 'info'."""


@dataclass(frozen=True)
class PlaybackEnded:
    leg: str
    token: int
    """The token given to :meth:`SipStack.play`."""


@dataclass(frozen=True)
class RecordingEnded:
    """A recording started by :meth:`SipStack.start_recording` is over and its file closed."""

    leg: str
    token: int
    path: str
    """The WAV file, or '' if nothing was recorded (the recorder could not start)."""
    seconds: float
    reason: str
    """'silence', 'max_length', 'key' (the driver stopped it), 'hangup' or 'error'."""


@dataclass(frozen=True)
class CallRecordingEnded:
    """A bridged call's recording (:meth:`SipStack.record_call`) is over, its parts closed."""

    key: str
    parts: tuple[str, str]
    """The mono WAV files: what the caller sent, what the agent sent."""
    seconds: float
    reason: str
    """'hangup' (a leg ended) or the reason given to :meth:`SipStack.stop_call_recording`."""


SipEvent = (IncomingCall | CallRefused | LegAnswered | CallConfirmed | LegEnded | DigitReceived
            | PlaybackEnded | RecordingEnded | TransferRequested | CallRecordingEnded)

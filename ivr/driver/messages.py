"""What flows through the driver: messages into its inbox, effects out of it. Plain data.

Messages come from the SIP layer (its events, :mod:`ivr.sip.events`), from workers (lookups,
prompt rendering, flow reloads, the store's agent-command poller, the registrations poller,
gateway monitors) and from the executor, which reports what a command it carried out gave back
(the leg a dial created, whether a bridge held). Effects are what the driver asks the executor to
do: the only way anything leaves the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ivr.flow import Flow
from ivr.lookup import LookupResult
from ivr.outbound.plan import Contact
from ivr.recording import RecordingDisk, RecordingDone
from ivr.sip.events import SipEvent
from ivr.store import CallRecord, QueueEventRow
from ivr.tickets import Ticket


# -- messages: into the inbox -------------------------------------------------------------------
@dataclass(frozen=True)
class Dialled:
    """The executor placed (or failed to place) an outgoing call asked for by :class:`Dial`."""

    ref: str
    """The driver's name for the dial."""
    leg: str | None
    """The SIP leg, or None if the call could not be started."""


@dataclass(frozen=True)
class Bridged:
    """The executor joined (or failed to join) two legs' audio."""

    a: str
    b: str
    ok: bool


@dataclass(frozen=True)
class PromptReady:
    """A prompt that needed rendering (free text) is ready, or could not be made in time."""

    call_id: str
    play_id: int
    files: tuple[str, ...] | None
    error: str = ""


@dataclass(frozen=True)
class Registrations:
    """The agents whose phones are registered with the SIP edge now."""

    names: frozenset[str]


@dataclass(frozen=True)
class TrunkReachability:
    """A gateway answered OPTIONS again, or stopped answering."""

    trunk: str
    up: bool


@dataclass(frozen=True)
class DeviceState:
    """A serial device's port opened (again), or failed (unplugged, missing)."""

    device: str
    up: bool


@dataclass(frozen=True)
class NightSwitchChanged:
    """A night switch's key, debounced: on (its ``when_on`` override) or off (``when_off``)."""

    device: str
    on: bool


@dataclass(frozen=True)
class AgentCommand:
    """Log in, log out, pause or unpause an agent (from `ivr agent`, a phone, the console)."""

    agent: str
    command: str
    """'login', 'logout', 'pause' or 'unpause'."""
    reason: str = ""
    source: str = ""


@dataclass(frozen=True)
class ConsoleWrapUp:
    """An agent saves their call from the console: the disposition ('' none chosen), a note
    ('' none), what becomes of the caller's ticket ('' leave it, 'resolve', 'escalate').
    Saved during wrap-up it ends the wrap-up; during the call it only records."""

    agent: str
    call_id: str
    disposition: str = ""
    note: str = ""
    ticket: str = ""
    source: str = ""


@dataclass(frozen=True)
class ConsoleTransfer:
    """An agent sends their connected caller to *target* from the console: an extension, a
    queue (name or number) or a number a ``dial_out`` rule with ``agent_transfers`` allows."""

    agent: str
    target: str
    source: str = ""


@dataclass(frozen=True)
class Supervise:
    """The box calls the supervisor's phone and joins it to the agent's call in *mode*
    ('listen', 'whisper', 'barge'); a supervisor already on a session has its mode changed."""

    supervisor: str
    agent: str
    mode: str
    source: str = ""


@dataclass(frozen=True)
class CallNote:
    """A note for a live call (or one in its agent's wrap-up), e.g. from a CRM."""

    call_id: str
    text: str
    source: str = ""
    author: str = ""
    """Who the note is signed by ('' : the first word of *source*)."""


@dataclass(frozen=True)
class FlowReady:
    """A reloaded flow passed its checks and its prompts are rendered: new calls get it."""

    flow: Flow
    trigger: str
    prompts: int = 0
    seconds: float = 0.0
    path: str = ""
    """The flow file (a route's flow); '' for the default flow."""


@dataclass(frozen=True)
class PreviewDial:
    """A preview agent clicks to call *contact_id* of *campaign* (the contact the view offers
    them under ``agents[name]["preview"]``): the box calls the agent's phone first, then the
    contact, and bridges them on answer. What came of it is a notice to the agent."""

    agent: str
    campaign: str
    contact_id: int
    source: str = ""


@dataclass(frozen=True)
class HopperFill:
    """The hopper filler's due contacts of *campaign* (its window open), the longest-due
    first: they replace the campaign's hopper. *applied*: the last :class:`SaveAttempt`'s
    ``seq`` the store had written before it looked, so a contact decided since is not put
    back by an older picture."""

    campaign: str
    contacts: tuple[Contact, ...]
    applied: int = 0


@dataclass(frozen=True)
class DncAdded:
    """Numbers that joined the do-not-call list (another process, a disposition, a key)."""

    numbers: frozenset[str]


@dataclass(frozen=True)
class ServiceLevels:
    """Each queue's service level now (0 to 1; None: no call to tell yet), from the metrics'
    window: a campaign pauses while its queue's is under ``pause_when``."""

    levels: tuple[tuple[str, float | None], ...]


@dataclass(frozen=True)
class Tick:
    """Time passed: fire what is due. The loop sends one every turn."""


Message = (RecordingDone | RecordingDisk
           | SipEvent | Dialled | Bridged | PromptReady | LookupResult | Registrations
           | TrunkReachability | AgentCommand | FlowReady | Tick | DeviceState
           | NightSwitchChanged | ConsoleWrapUp | ConsoleTransfer | Supervise | CallNote
           | PreviewDial | HopperFill | DncAdded | ServiceLevels)


# -- effects: out of the driver -----------------------------------------------------------------
@dataclass(frozen=True)
class AnswerLeg:
    leg: str


@dataclass(frozen=True)
class HangupLeg:
    leg: str
    status: int = 0
    """0: BYE or CANCEL as the state needs; a 4xx-6xx refuses a call not yet answered."""


@dataclass(frozen=True)
class Dial:
    ref: str
    uri: str
    caller_id: str = ""
    """The number to present ('' : the trunk's own); a campaign's calls out."""


@dataclass(frozen=True)
class Play:
    leg: str
    files: tuple[str, ...]
    token: int
    loop: bool = False


@dataclass(frozen=True)
class StopPlay:
    leg: str


@dataclass(frozen=True)
class Bridge:
    a: str
    b: str


@dataclass(frozen=True)
class Connect:
    """Send leg *src*'s audio to leg *dst*, one direction only (a supervisor's session)."""

    src: str
    dst: str


@dataclass(frozen=True)
class Disconnect:
    """Stop what :class:`Connect` started."""

    src: str
    dst: str


@dataclass(frozen=True)
class Record:
    leg: str
    path: str
    token: int
    max_seconds: float
    silence_seconds: float
    beep: str | None


@dataclass(frozen=True)
class StopRecord:
    leg: str
    reason: str = "key"


@dataclass(frozen=True)
class RenderPrompt:
    call_id: str
    play_id: int
    pieces: tuple[Any, ...]
    deadline: float
    """Seconds the renderer may take before the driver goes on without the prompt."""


@dataclass(frozen=True)
class StartLookup:
    call_id: str
    request_id: int
    url: str
    timeout: float


@dataclass(frozen=True)
class CancelLookups:
    call_id: str


@dataclass(frozen=True)
class SaveRecord:
    record: CallRecord
    """A copy: the driver keeps changing its own."""


@dataclass(frozen=True)
class SaveQueueEvents:
    rows: tuple[QueueEventRow, ...]


@dataclass(frozen=True)
class SaveAgentState:
    agent: str
    state: str
    reason: str
    at: float


@dataclass(frozen=True)
class SaveTicket:
    ticket: Ticket
    """A copy: the driver's ticket book keeps changing its own."""


@dataclass(frozen=True)
class TextCaller:
    """A flow's sms node: text the number that called (the executor's outbox applies the
    rate limits and queues it for the modem)."""

    call_id: str
    number: str
    text: str


@dataclass(frozen=True)
class SaveOverride:
    name: str
    state: str
    at: float


@dataclass(frozen=True)
class CountCallEnded:
    trunk: str
    outcome: str


@dataclass(frozen=True)
class CountIvrPath:
    flow: str
    steps: tuple[tuple[str, str], ...]
    gave_up_at: str | None


@dataclass(frozen=True)
class CountTransition:
    machine: str
    """'caller', 'agent_leg', 'callback'."""
    old: str
    new: str


@dataclass(frozen=True)
class FlowInService:
    name: str
    version: str
    reloaded: bool = field(default=False)


@dataclass(frozen=True)
class RecordCall:
    """Record the bridged call *call_id*: each of *legs* (caller, agent) into the mono part of
    *parts* at the same index; *path* is the stereo file they will make."""

    call_id: str
    legs: tuple[str, str]
    parts: tuple[str, str]
    path: str


@dataclass(frozen=True)
class StopCallRecording:
    call_id: str
    reason: str


@dataclass(frozen=True)
class JoinRecording:
    """Hand a finished recording's parts to the worker that makes the stereo file."""

    call_id: str
    parts: tuple[str, str]
    path: str


@dataclass(frozen=True)
class CountRecording:
    result: str
    """'saved', 'failed', 'not_started', 'skipped_low_disk', 'stopped_low_disk'."""


@dataclass(frozen=True)
class RecordingsSuspended:
    suspended: bool


@dataclass(frozen=True)
class SaveAttempt:
    """A dial decision of a campaign's contact, dialled or not, for the contact book: the
    attempt row and the contact's next state (:meth:`ContactBook.record_attempt`)."""

    seq: int
    campaign: str
    contact_id: int
    outcome: str
    call_id: str | None
    reason: str
    next_at: float | None
    state: str
    """'pending' (retried at *next_at*), 'done', 'dnc', 'failed'."""
    tries: tuple[tuple[str, int], ...] = ()
    disposition: str | None = None
    dnc_checked: bool = True


@dataclass(frozen=True)
class SaveContact:
    """What an agent or a flow learnt of a contact: *answers* (a survey's keys) and/or
    the agent's *disposition*, which closes it when *ends*, and lists its number when
    *dnc*."""

    contact_id: int
    answers: tuple[tuple[str, str], ...] = ()
    disposition: str = ""
    ends: bool = False
    dnc: bool = False


@dataclass(frozen=True)
class AddDnc:
    number: str
    source: str
    note: str = ""


@dataclass(frozen=True)
class FillHoppers:
    """Ask the hopper filler for due contacts now (a campaign's hopper ran dry)."""


@dataclass(frozen=True)
class CountCampaign:
    campaign: str
    event: str
    """'attempt' (with *outcome*), 'connect', 'abandoned'."""
    outcome: str = ""


Effect = (RecordCall | StopCallRecording | JoinRecording | CountRecording | RecordingsSuspended
          | AnswerLeg | HangupLeg | Dial | Play | StopPlay | Bridge | Record | StopRecord
          | RenderPrompt | StartLookup | CancelLookups | SaveRecord | SaveQueueEvents
          | SaveAgentState | SaveOverride | CountCallEnded | CountIvrPath | CountTransition
          | FlowInService | Connect | Disconnect | SaveTicket | TextCaller | SaveAttempt
          | SaveContact | AddDnc | FillHoppers | CountCampaign)

"""The state of the driver's calls: one machine per call, as plain data.

- a caller (:class:`CallerCall`): ``ivr -> queued -> connected``, ``ivr -> transferring ->
  transferred``, any -> ``ended``;
- an outgoing leg (:class:`Leg`): ``dialling -> ringing -> bridging -> connected``, or
  ``cancelled`` when the switchboard no longer wants it, ``ended`` when SIP says so;
- a callback (:class:`Callback`): ``waiting -> calling_back -> connected -> ended``;
- a supervisor's session (:class:`Supervision`): ``joined -> ended``, its mode (listen,
  whisper, barge) changed by the supervisor's keys.

Phases change only in :class:`ivr.driver.base.CoreBase`'s ``_to``, ``_leg_to``, ``_cb_to``
and ``_sup_to``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr.engine import CallSession
from ivr.outbound.campaigns import Campaign
from ivr.outbound.plan import Contact, Hopper
from ivr.store import CallRecord

AGENTS_TRUNK = "agents"
"""Trunk name given to calls from agents' phones (feature codes only)."""
MOH_TOKEN = 0
"""Token of the music-on-hold player (looped, never reports an end)."""
NOTICE_TOKEN = -1
"""Token of a switchboard notice to a waiting caller (announcement, escalation message)."""
FEATURE_TOKEN = 1
RENDER_DEADLINE = 3.0
"""Seconds a prompt with free text (a lookup's answer) may take to render before the call goes
on without it."""
TRANSFER_TIMEOUT = 30.0

FilesFor = Callable[[tuple[Any, ...]], "tuple[str, ...] | None"]
"""Prompt pieces -> the audio files that speak them, if they are ready (no rendering)."""


class CallPhase(enum.Enum):
    IVR = "ivr"
    QUEUED = "queued"
    CONNECTED = "connected"
    TRANSFERRING = "transferring"
    TRANSFERRED = "transferred"
    CLOSING = "closing"
    """The switchboard hung the caller up (their agent did): waiting for SIP to confirm."""
    ENDED = "ended"


class LegPhase(enum.Enum):
    DIALLING = "dialling"
    RINGING = "ringing"
    BRIDGING = "bridging"
    CONNECTED = "connected"
    CANCELLED = "cancelled"
    ENDED = "ended"


class LegRole(enum.Enum):
    AGENT = "agent"
    TRANSFER = "transfer"
    CUSTOMER = "customer"
    """The call out to a caller who asked to be called back."""
    SUPERVISOR = "supervisor"
    """The call out to a supervisor's phone asked for from the console (Supervise)."""
    CONTACT = "contact"
    """The call out to a campaign's contact (:mod:`ivr.driver.outbound`)."""
    CAMPAIGN_AGENT = "campaign_agent"
    """The call out to an agent's phone for a campaign's contact."""


class CallbackPhase(enum.Enum):
    WAITING = "waiting"
    CALLING_BACK = "calling_back"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass
class Leg:
    """An outgoing leg: an agent's phone, a transfer destination, a caller called back."""

    ref: str
    role: LegRole
    call_id: str
    agent: str = ""
    phase: LegPhase = LegPhase.DIALLING
    sip: str | None = None
    """The SIP layer's leg, once the dial is placed."""
    supervisor: str = ""
    """A supervisor's leg: whose phone it calls..."""
    mode: str = ""
    """...and the mode of the session it joins on answer."""

    @property
    def live(self) -> bool:
        return self.phase not in (LegPhase.CANCELLED, LegPhase.ENDED)


@dataclass
class CallerCall:
    """A caller's call, from the INVITE to the record."""

    call_id: str
    leg: str
    trunk: str
    session: CallSession
    record: CallRecord
    phase: CallPhase = CallPhase.IVR
    confirmed: bool = False
    """The caller's side acknowledged our answer (ACK)."""
    ringing: dict[str, str] = field(default_factory=dict)
    """Agent -> leg ref, for every agent phone ringing for this caller (ring-all: several)."""
    agent_ref: str | None = None
    """The agent leg being bridged or connected."""
    agent_keys: str = ""
    agent_hung_up: bool = False
    callback_requested: bool = False
    recording: int | None = None
    recordings_made: int = 0
    voicemail_left: bool = False
    transfer_ref: str | None = None
    transfer_to: str = ""
    transfer_deadline: float | None = None
    transfer_by: str = ""
    """The agent whose phone asked for the transfer in progress ('' for a flow's transfer)."""
    awaiting_render: int | None = None
    """Play id of a prompt being rendered for this call."""
    hangup_reason: str = ""


@dataclass
class Callback:
    """A caller who asked to be called back: their place in the queue, then the call out."""

    call_id: str
    """The router's id: the original call's."""
    number: str
    trunk: str
    record: CallRecord
    phase: CallbackPhase = CallbackPhase.WAITING
    ringing: dict[str, str] = field(default_factory=dict)
    agent: str | None = None
    agent_ref: str | None = None
    customer_ref: str | None = None


class SupervisionPhase(enum.Enum):
    JOINED = "joined"
    """The supervisor's leg is answered and joined to the agent's call in its mode."""
    ENDED = "ended"


@dataclass
class Supervision:
    """A supervisor on an agent's call: their leg (the call they placed) and what it hears."""

    leg: str
    """The supervisor's SIP leg (an incoming call from their phone)."""
    supervisor: str
    agent: str
    call_id: str
    """The caller's call the agent is on."""
    mode: str
    """'listen', 'whisper' or 'barge'."""
    queue: str = ""
    """The queue of the agent's call."""
    phase: SupervisionPhase = SupervisionPhase.JOINED
    links: frozenset[tuple[str, str]] = frozenset()
    """(source leg, destination leg) audio connections made for this session."""


ANNOUNCE_TOKEN = -2
"""Token of the tone an agent hears when a supervisor joins their call."""


GAVE_UP_REASONS = frozenset({"menu_failures", "collect_failures"})
"""Ends where the IVR gave up on the caller (too many invalid keys or timeouts)."""

def uri_host(uri: str) -> str:
    host = uri.split("@", 1)[-1]
    return host.split(";", 1)[0].rsplit(":", 1)[0].strip("[]<>")


def dial_failure(status: int, reason: str) -> str:
    """A short reason for an outgoing leg that ended unanswered."""
    if status in (486, 600):
        return "busy"
    if status in (408, 480, 487):
        return "no answer"
    if status in (403, 603):
        return "declined"
    if status in (404, 604):
        return "not found"
    return f"{status} {reason}".strip()


class OutPhase(enum.Enum):
    AGENT_FIRST = "agent_first"
    """Preview: the agent's phone is called before the contact."""
    DIALLING = "dialling"
    """The contact's phone is being called."""
    AGENT_RINGING = "agent_ringing"
    """The contact answered; the held agent's phone rings (progressive)."""
    CONNECTED = "connected"
    """The contact talks with the agent."""
    FLOW = "flow"
    """Automated: the campaign's flow runs on the contact's leg."""
    SORRY = "sorry"
    """Answered with no agent to take it: the message plays, then the box hangs up."""
    ENDED = "ended"


@dataclass
class OutCall:
    """A call to a campaign's contact, from the dial decision to the record."""

    ref: str
    """The contact leg's ref (the driver's name for its dial)."""
    campaign: str
    contact: Contact
    record: CallRecord
    phase: OutPhase = OutPhase.DIALLING
    agent: str = ""
    """The agent held for this contact (progressive) or who asked for it (preview)."""
    agent_ref: str | None = None
    dial_deadline: float | None = None
    """No answer by then: the contact leg is cancelled (outcome no_answer)."""
    agent_deadline: float | None = None
    """Progressive: the agent has not answered by then: the contact hears the message."""
    answered_at: float | None = None
    outcome: str = ""
    disposition: str = ""
    caller_call: str = ""
    """Automated: the caller call (the campaign's flow) running on the contact's leg."""
    why: str = ""
    """Why it was dialled (the pacer's reason), for the attempt's history."""


@dataclass
class CampaignState:
    """A campaign as the dialler runs it: its hopper and today's counts."""

    campaign: Campaign
    hopper: Hopper = field(default_factory=Hopper)
    day: str = ""
    """The campaign's local date the counts are for."""
    attempts_today: int = 0
    connects_today: int = 0
    answered_today: int = 0
    abandoned_today: int = 0
    overdial_stopped: bool = False
    window_open: bool = False
    paused_reason: str = ""
    """Why it dials nothing now ('' : it may dial)."""


class OutboundState:
    """Every campaign's dialling state (no campaign: nothing happens)."""

    def __init__(self, campaigns: Mapping[str, Campaign]) -> None:
        self.campaigns = {name: CampaignState(c) for name, c in campaigns.items()}
        self.calls: dict[str, OutCall] = {}
        """Calls to contacts by their contact leg's ref."""
        self.held: dict[str, str] = {}
        """Agent -> the ref of the contact call they are held for (router pause 'outbound')."""
        self.previews: dict[str, tuple[str, Contact]] = {}
        """Preview agent -> (campaign, the contact offered to them)."""
        self.dnc: set[str] = set()
        """Numbers put on the do-not-call list since the start."""
        self.decided: dict[int, int] = {}
        """Contact id -> the seq of the attempt that decided its fate, until a hopper fill
        that saw it written (an older fill must not put the contact back)."""
        self.write_seq = 0
        """The seq of the last attempt sent to the hopper filler."""
        self.last_fill_ask = -1e9
        self.next_look: float | None = None
        """When the campaigns are looked at again without a message (a window opening or
        closing, a contact coming due)."""
        self.pause_after: dict[str, str] = {}
        """Held agent -> the pause reason they asked for during the campaign's call."""
        self.service_levels: dict[str, float | None] = {}
        """Queue -> its service level now (the loop sends them every second)."""

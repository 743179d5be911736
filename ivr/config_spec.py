"""Every key of ``ivr.yaml`` in one place: its type, whether it is required, its default,
range, choices and what it means.

:func:`validate` checks a document against :data:`IVR_YAML` and collects every problem with
its place (``ivr.yaml:12:5: queues.support.ring_timout: unknown key 'ring_timout'. Did you
mean 'ring_timeout'?``); :func:`config_schema` turns the same spec into the JSON Schema
(draft-07) that editors use, so the loader and the schema cannot disagree. :mod:`ivr.config`
builds the typed :class:`~ivr.config.Config` from what :func:`validate` returns.

A spec is a tree of four shapes::

    Section("The SIP side.", (Key("listen", Value("address", "...") , required=True), ...))
    MapOf("Agents by name.", Section(...))     # keys chosen by the technician
    ListOf("Dial-out rules.", Section(...))
    Value("integer", "Seconds ...", default=15, minimum=1, maximum=600)

plus :class:`Either` for a key that takes a short form or a section (``metrics``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivr.numbers import normalise
from ivr.yamlsrc import Cursor, did_you_mean
from routing.acd import STRATEGIES

DRAFT = "http://json-schema.org/draft-07/schema#"
Schema = dict[str, Any]

SIP_URI = r"^sips?:[^@\s]+@[^\s]+$"
LANGUAGE_CODE = r"^[a-z]{2,3}(-[a-z0-9]+)?$"
"""A language code as flows name them (it, en, en-us)."""
DIALLED = r"^[0-9*#+]{1,32}$"
"""What a caller can key: the names of extensions, the numbers a dial_out rule may dial."""
_SAMPLE_NUMBER = "0212345678"
_ADDRESS = r"^(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+):[0-9]{1,5}$"
_NETWORK = r"^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$"
DEFAULT_ROUTE = "default"
"""The ``routes`` entry for called numbers no other route names."""
OFF = "off"
"""What an address key that can be switched off (``metrics: off``) validates to."""


# -- the shapes of a spec ------------------------------------------------------------------------

@dataclass(frozen=True)
class Value:
    """A scalar.

    *kind*: 'text', 'integer', 'number', 'boolean', 'choice' (one of *choices*), 'address'
    (IP:port), 'network' (IP or CIDR), 'uri_template' (SIP URI with ``{number}``), 'regex',
    'path' (relative to the file's folder) or 'ref' (the name of an entry of the top-level
    section *ref*, e.g. an agent).
    """

    kind: str
    doc: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    what: str = ""
    """'choice': what the choices are ('queue strategy'), for 'is not a ...' messages."""
    pattern: str | None = None
    """'text': a regular expression the whole text must match (also the schema's pattern)."""
    message: str = ""
    """'text' with a pattern: the problem when it does not match; {value} is the text."""
    example: str = ""
    """Shown in the schema's ``examples``."""
    allows_off: bool = False
    """'address': ``off`` (or false) is accepted and validates to :data:`OFF`."""
    needs_number: bool = False
    """'uri_template': the template must contain ``{number}``."""
    must_exist: str = ""
    """'path': the problem when no such file exists; {name} is the file name."""
    ref: str = ""
    """'ref': the top-level key whose entries are the valid names ('agents', 'queues')."""
    not_self: bool = False
    """'ref': naming the entry that holds this key is a problem too."""


@dataclass(frozen=True)
class Key:
    name: str
    spec: Spec
    required: bool = False


@dataclass(frozen=True)
class Section:
    """A mapping with fixed keys; any other key is a problem with a near-match hint."""

    doc: str
    keys: tuple[Key, ...]
    require_any: tuple[str, ...] = ()
    """At least one of these keys must be given..."""
    require_any_message: str = ""
    """...else this is the problem."""
    removed: Mapping[str, str] = field(default_factory=dict)
    """Keys that were removed: name -> what to use instead (a problem, and flagged by editors)."""
    rule: Callable[[dict[str, Any], Cursor], None] | None = None
    """A check across the keys of the section, given the checked values."""
    delegated: str = ""
    """Checked by another module (named here), which reads the file itself: :func:`validate`
    does not walk it, the schema still describes it."""

    def key(self, name: str) -> Key:
        return next(k for k in self.keys if k.name == name)


@dataclass(frozen=True)
class MapOf:
    """A mapping whose keys the technician chooses (names of agents, queues...)."""

    doc: str
    value: Spec
    key_pattern: str | None = None
    key_message: str = ""
    """The problem for a key that does not match *key_pattern*; {key} is the key."""
    min_entries: int = 0
    empty_message: str = ""
    default: Mapping[str, Any] | None = None
    """Entries a missing key takes; entries given are added to these (or replace them)."""
    key_normalise: Callable[[str], str | None] | None = None
    """Keys are stored as this gives them (phone numbers in one spelling); None refuses the key
    with *key_message*."""
    duplicate_message: str = ""
    """The problem for a key that normalises like an earlier one; {key}, {other}, {normal}."""


@dataclass(frozen=True)
class ListOf:
    doc: str
    item: Spec


@dataclass(frozen=True)
class Either:
    """A short scalar form or a section (a mapping): ``metrics: 127.0.0.1:9480`` or
    ``metrics: {listen: 127.0.0.1:9480, ...}``."""

    doc: str
    scalar: Value
    section: Section


Spec = Value | Section | MapOf | ListOf | Either


# -- the rules that look across keys ---------------------------------------------------------------

def _feature_codes_differ(values: dict[str, Any], cursor: Cursor) -> None:
    codes = [values.get(k) for k in ("login", "logout", "pause", "unpause", "listen",
                                     "whisper", "barge")]
    if None not in codes and len(set(codes)) != len(codes):
        cursor.error("feature codes must differ from each other")
        return
    for key in ("login", "logout", "pause", "unpause"):
        code = values.get(key) or ""
        for prefix in ("listen", "whisper", "barge"):
            if code.startswith(values.get(prefix) or "\0"):
                cursor.error(f"{key} code {code} starts with the {prefix} code: it would "
                             f"name an agent after it")


def _route_key(key: str) -> str | None:
    """A route's number in the spelling calls are matched in; None for a key that is no
    number (a withheld number, ``anonymous``, is not one either)."""
    if key == DEFAULT_ROUTE:
        return key
    return normalise(key) or None


def _top_rules(values: dict[str, Any], cursor: Cursor) -> None:
    _flow_or_routes(values, cursor)
    _dispositions_not_codes(values, cursor)
    _one_team_each(values, cursor)
    _campaigns_folder(values, cursor)


def _campaigns_folder(values: dict[str, Any], cursor: Cursor) -> None:
    folder = values.get("campaigns")
    if isinstance(folder, Path) and not folder.is_dir():
        (_child(cursor, "campaigns") or cursor).error(
            f"campaigns folder '{folder.name}' does not exist")


def _one_team_each(values: dict[str, Any], cursor: Cursor) -> None:
    """An agent (a member, or a leader who is an agent) is in one team at most: in two, their
    calls would count twice and the teams of ``ivr report --by team`` would not add up to the
    total. A leader who is not an agent may lead several teams."""
    agents = values.get("agents") or {}
    seen: dict[str, str] = {}
    for team, spec in (values.get("teams") or {}).items():
        if not isinstance(spec, dict):
            continue
        leader = spec.get("leader")
        people = [*(spec.get("members") or ()), *([leader] if leader in agents else [])]
        for agent in dict.fromkeys(people):
            if agent in seen and seen[agent] != team:
                section = _child(cursor, "teams")
                where = (_child(section, str(team)) if section else None) or section or cursor
                where.error(f"agent '{agent}' is already in team '{seen[agent]}': an agent "
                            "belongs to one team (their calls would count in both)")
            seen.setdefault(agent, team)


def _dispositions_not_codes(values: dict[str, Any], cursor: Cursor) -> None:
    """``*`` and a disposition's code must not be a feature code: the phone keys would mean
    two things."""
    codes = values.get("feature_codes")
    if not isinstance(codes, dict):
        return
    for code in values.get("dispositions") or {}:
        clash = next((name for name, key in codes.items() if key == f"*{code}"), None)
        if clash is not None:
            section = _child(cursor, "dispositions")
            where = (_child(section, str(code)) if section else None) or section or cursor
            where.error(f"disposition '{code}' is keyed as *{code}, the {clash} feature code: "
                        "use another digit or change feature_codes")


def _flow_or_routes(values: dict[str, Any], cursor: Cursor) -> None:
    if "flow" in values and "routes" in values:
        (_child(cursor, "flow") or cursor).error(
            "'flow' is not used when 'routes' is given (a number no route names is refused "
            "with 404): move it into routes as 'default: {flow: ...}', or remove it")


def _child(cursor: Cursor, key: str) -> Cursor | None:
    """The value of *key* in the mapping at *cursor*, without reporting anything."""
    if not isinstance(cursor.node, yaml.MappingNode):
        return None
    for key_node, value_node in cursor.node.value:
        if getattr(key_node, "value", None) == key:
            return Cursor(value_node, cursor.child_path(key), cursor.problems)
    return None


# -- ivr.yaml --------------------------------------------------------------------------------------

def _seconds(doc: str, default: float, minimum: float, maximum: float) -> Value:
    return Value("number", doc, default=default, minimum=minimum, maximum=maximum)


_SIP = Section("The switchboard's SIP side.", (
    Key("listen", Value("address", "UDP address:port the gateway (and the edge) send INVITEs to.",
                        example="127.0.0.1:5080"), required=True),
    Key("user", Value("text", "User part of the switchboard's SIP URI: sip:USER@listen.",
                      default="ivr")),
    Key("rtp_port", Value("integer", "First UDP port for call audio (RTP).", default=20000,
                          minimum=1024, maximum=65000)),
    Key("rtp_port_range", Value("integer", "How many RTP ports from rtp_port may be used.",
                                default=1000, minimum=2, maximum=20000)),
    Key("max_calls", Value("integer", "Calls at once, caller and agent legs together.",
                           default=128, minimum=1, maximum=10000)),
    Key("log_level", Value("integer", "Detail of the SIP stack's own log, 0 (none) to 6.",
                           default=1, minimum=0, maximum=6)),
    Key("refuse_strangers", Value("boolean", "Answer 403 to requests from sources that are not "
                                             "trunks (default: no answer at all, which tells a "
                                             "scanner nothing).", default=False)),
))

_NETWORK_VALUE = Value("network", "An IP address or network, e.g. 192.0.2.10 or 192.0.2.0/28.")

_TRUNK = Section("A gateway (SIP/FXO) allowed to send calls in.", (
    Key("sources", ListOf("Addresses or networks the gateway's INVITEs come from; any other "
                          "source is answered 403 Forbidden.", _NETWORK_VALUE), required=True),
    Key("lines", Value("integer", "Calls at once; one more is answered 486 Busy Here.",
                       default=30, minimum=1, maximum=1000)),
    Key("description", Value("text", "A note for technicians.")),
    Key("ping", Value("address", "Where to send SIP OPTIONS to check that the gateway is alive "
                                 "(not checked without it).", example="192.0.2.1:5060")),
    Key("ping_interval", _seconds("Seconds between two OPTIONS checks.", 30.0, 1, 3600)),
    Key("media_networks", ListOf("Networks besides the sources where the gateway's audio may "
                                 "come from and go to (a call whose SDP names any other "
                                 "address is answered 488, so RTP is never sent to a third "
                                 "party).", _NETWORK_VALUE)),
    Key("caller_id", Value("choice", "How the caller's number the gateway sends is stored and "
                                     "shown: as_sent (as it came, the default), or e164_it "
                                     "(Italian national 0... and mobile 3... numbers, and "
                                     "00... international ones, written +...; withheld stays "
                                     "withheld).", choices=("as_sent", "e164_it"),
                           what="caller ID format", default="as_sent")),
    Key("called_strip", Value("text", "A prefix the gateway puts before the called number "
                                      "(a trunk code, 0039...), removed before routing.",
                              pattern=r"^[0-9*#+]{1,16}$",
                              message="'{value}' is not a number prefix", example="0039")),
    Key("called_number", Value("text", "The called number of every call from this gateway "
                                       "(an FXO line that sends none, or sends its port), used "
                                       "for routing and records instead of what it sends.",
                               pattern=r"^\+?[0-9*#]{1,32}$",
                               message="'{value}' is not a number", example="+39061234567")),
))

_AGENT = Section("An agent and the phone the switchboard rings.", (
    Key("uri", Value("text", "SIP URI of the agent's phone.", pattern=SIP_URI,
                     message="'{value}' is not a SIP URI such as sip:anna@192.0.2.20:5060",
                     example="sip:anna@192.0.2.20:5060"), required=True),
    Key("name", Value("text", "Full name, for reports and the console.")),
    Key("skills", MapOf("Skill -> level 0 to 10, for queues that need a skill.",
                        Value("integer", "Level of the skill.", minimum=0, maximum=10))),
    Key("max_no_answer", Value("integer", "Unanswered offers in a row after which the agent is "
                                          "paused ('no answer'); 0: never.", default=3,
                               minimum=0, maximum=100)),
    Key("password", Value("text", "Password the agent's phone registers with at the SIP edge "
                                  "(with an 'edge' section).")),
))

_AGENT_REF = Value("ref", "An agent name from 'agents'.", ref="agents")
_QUEUE_REF = Value("ref", "A queue name from 'queues'.", ref="queues", not_self=True)

_QUEUE = Section("A queue of callers waiting for agents.", (
    Key("agents", ListOf("Agents of level 1, in the order used to break ties.", _AGENT_REF)),
    Key("tiers", MapOf("Support level 1 to 5 -> agents: higher levels are added after "
                       "tier_wait, or when a call is escalated.", ListOf("Agents of this level.",
                                                                         _AGENT_REF),
                       key_pattern=r"^[1-5]$",
                       key_message="tier '{key}' is not a support level 1 to 5")),
    Key("strategy", Value("choice", "Which free agent is rung first.", default="longest_idle",
                          choices=STRATEGIES, what="queue strategy")),
    Key("ring_timeout", _seconds("Seconds an agent's phone rings before the next agent is "
                                 "tried.", 15.0, 1, 600)),
    Key("retry_delay", _seconds("Pause, seconds, before a new round once every free agent was "
                                "tried.", 2.0, 0, 600)),
    Key("wrap_up", _seconds("Seconds an agent stays unavailable after a call of this queue.",
                            0.0, 0, 3600)),
    Key("require_disposition", Value("boolean", "Wrap-up lasts until the agent keys a "
                                                "disposition (* and its code), up to "
                                                "disposition_wait.", default=False)),
    Key("disposition_wait", _seconds("Seconds wrap-up may last at most while waiting for a "
                                     "disposition (require_disposition).", 120.0, 1, 3600)),
    Key("max_callers", Value("integer", "Callers waiting at most (0: no limit); one more is "
                                        "refused.", default=0, minimum=0, maximum=10000)),
    Key("join_empty", Value("boolean", "Accept callers when no agent is logged in (else refuse "
                                       "them, or overflow).", default=True)),
    Key("leave_empty_after", _seconds("Seconds a caller may wait with no agent logged in before "
                                      "leaving (0: no limit).", 0.0, 0, 86400)),
    Key("max_wait", _seconds("Seconds a caller may wait (0: no limit); then overflow, or back "
                             "to the flow.", 0.0, 0, 86400)),
    Key("overflow", Value("ref", "Queue a caller moves to on max_wait or when no agent is "
                                 "logged in.", ref="queues", not_self=True)),
    Key("tier_wait", _seconds("Seconds before the next level of members is added (0: all "
                              "levels at once).", 0.0, 0, 3600)),
    Key("tier_wait_multiply", Value("boolean", "Wait tier_wait times the level for each level.",
                                    default=False)),
    Key("skill", Value("text", "Skill an agent needs (at skill_level) to be offered this "
                               "queue's calls.")),
    Key("skill_level", Value("integer", "Level of 'skill' needed.", default=1, minimum=0,
                             maximum=10)),
    Key("skill_fallback_after", _seconds("Seconds after which anyone of the queue is offered "
                                         "the call (0: never).", 0.0, 0, 86400)),
    Key("escalate_to", Value("ref", "Queue for calls an agent escalates (default: the next "
                                    "level of this queue).", ref="queues", not_self=True)),
    Key("announce_every", _seconds("Seconds between position and expected-wait announcements "
                                   "(0: none).", 0.0, 0, 3600)),
    Key("number", Value("text", "A number agents' phones may transfer callers to this queue by "
                                "(besides its name); an extension of the same number wins.",
                        pattern=DIALLED, message="'{value}' is not a number a phone can dial "
                                                 "(digits, * # +)", example="700")),
    Key("record", Value("boolean", "Record this queue's calls with agents (stereo WAV under "
                                   "'recordings'/calls: caller left, agent right); the flow's "
                                   "own prompt should say so.", default=False)),
    Key("script", Value("text", "What the agent's screen shows when a call of this queue is "
                                "offered (several lines): {caller}, {queue}, {agent}, {ticket} "
                                "and the call's flow variables such as {customer_name} are "
                                "filled in.", default="")),
    Key("description", Value("text", "A note for technicians.")),
), require_any=("agents", "tiers"), require_any_message="a queue needs 'agents' (level 1) or "
                                                        "'tiers'")

_PROMPTS = Section("Spoken prompts, made by the speech synthesiser and cached as WAV files.", (
    Key("cache", Value("path", "Folder of the rendered prompts.", default="var/prompts")),
    Key("voices", MapOf("Language of the flows -> espeak-ng voice.",
                        Value("text", "An espeak-ng voice, e.g. it, en-us."),
                        default={"it": "it", "en": "en-us"})),
    Key("rate", Value("integer", "Speaking rate, words per minute.", default=150, minimum=80,
                      maximum=400)),
))

_METRICS = Either(
    "Prometheus metrics over HTTP: an address:port, off, or a section.",
    Value("address", "Address:port of the /metrics page, or off.", allows_off=True,
          example="127.0.0.1:9480"),
    Section("Prometheus metrics over HTTP.", (
        Key("listen", Value("address", "Address:port of the /metrics page.",
                            example="127.0.0.1:9480"), required=True),
        Key("service_level_threshold", _seconds("Seconds within which an answered call counts "
                                                "for the service level.", 20.0, 1, 3600)),
        Key("service_level_window", _seconds("Sliding window of the service level metrics, "
                                             "seconds.", 3600.0, 60, 7 * 86400)),
    )))

_CONSOLE_LISTEN = "127.0.0.1:9481"
"""Where the web console listens when ivr.yaml says nothing of it (loopback: the demo's)."""
CONSOLE_LANGUAGES = ("it", "en")

_CONSOLE = Either(
    "The web console (agent desktop, wallboard, reports) served by the switchboard: an "
    "address:port, off, or a section. On by default, on " + _CONSOLE_LISTEN + ".",
    Value("address", "Address:port of the web console, or off.", allows_off=True,
          example=_CONSOLE_LISTEN),
    Section("The web console served by the switchboard.", (
        Key("listen", Value("address", "Address:port of the web console.",
                            example=_CONSOLE_LISTEN), required=True),
        Key("tls", Section("HTTPS for the console: a certificate and its key (PEM files).", (
            Key("cert", Value("path", "The certificate chain (PEM).",
                              must_exist="certificate file '{name}' does not exist"),
                required=True),
            Key("key", Value("path", "The certificate's private key (PEM).",
                             must_exist="key file '{name}' does not exist"), required=True),
        ))),
        Key("lang", Value("choice", "Language of the pages: it or en.", default="it",
                          choices=CONSOLE_LANGUAGES, what="console language")),
        Key("session_hours", Value("number", "Hours a login lasts.", default=12.0,
                                   minimum=0.25, maximum=24 * 30)),
    )))

_EXTENSION = Section("A fixed transfer destination.", (
    Key("uri", Value("text", "SIP URI dialled for this extension.", pattern=SIP_URI,
                     message="'{value}' is not a SIP URI such as sip:reception@192.0.2.20:5060",
                     example="sip:reception@192.0.2.20:5060"), required=True),
    Key("name", Value("text", "Who answers there.")),
    Key("description", Value("text", "A note for technicians.")),
))

_DIAL_RULE = Section("Numbers a transfer (or a callback) may dial out to.", (
    Key("pattern", Value("regex", "Regular expression the whole number (digits, * # +) must "
                                  "match; keep it narrow: every number it allows can cost "
                                  "money.", example="^0[1-9][0-9]{5,9}$"), required=True),
    Key("uri", Value("uri_template", "SIP URI to dial; {number} is the number.",
                     example="sip:{number}@192.0.2.1"), required=True),
    Key("agent_transfers", Value("boolean", "Agents' phones may transfer callers (REFER) to "
                                            "these numbers too (default: only flows' "
                                            "transfer nodes may).", default=False)),
    Key("callbacks", Value("boolean", "Waiting callers whose number this rule matches may be "
                                      "called back (a queue's callback key) at its uri; a "
                                      "caller ID can be forged, so keep the pattern to the "
                                      "numbers you would call (default: no callbacks).",
                           default=False)),
    Key("flows", Value("boolean", "Flows' transfer nodes may dial these numbers (default); "
                                  "false for a rule meant only for callbacks or agents' "
                                  "transfers.", default=True)),
    Key("campaigns", Value("boolean", "Outbound campaigns may dial these numbers (the "
                                      "contacts of their lists); without any such rule no "
                                      "campaign dials anything (default: false).",
                           default=False)),
    Key("description", Value("text", "A note for technicians.")),
))

_FEATURE_CODE = r"^[0-9*#]{1,8}$"
_FEATURE_MESSAGE = "'{value}' is not a feature code of phone keys such as *41"


def _code(doc: str, default: str) -> Value:
    return Value("text", doc, default=default, pattern=_FEATURE_CODE, message=_FEATURE_MESSAGE)


_FEATURE_CODES = Section("Codes agents dial from their phone, or press during a call.", (
    Key("login", _code("Log in.", "*41")),
    Key("logout", _code("Log out.", "*42")),
    Key("pause", _code("Pause (no calls offered).", "*43")),
    Key("unpause", _code("Back from a pause.", "*44")),
    Key("escalate", _code("Pressed during a call: hand the caller to the next level.", "*9")),
    Key("listen", _code("A supervisor dials it and an agent's name or number: listen to the "
                        "agent's call.", "*51")),
    Key("whisper", _code("A supervisor dials it and an agent's name or number: speak to the "
                         "agent only.", "*52")),
    Key("barge", _code("A supervisor dials it and an agent's name or number: join the call.",
                       "*53")),
), rule=_feature_codes_differ)

_SUPERVISOR = Section("A supervisor, who may listen to, whisper in or join the calls of agents "
                      "of their queues, from their own phone.", (
    Key("uri", Value("text", "SIP URI of the supervisor's phone: calls from its user and host "
                             "may use the supervision codes.", pattern=SIP_URI,
                     message="'{value}' is not a SIP URI such as sip:laura@192.0.2.20:5060",
                     example="sip:laura@192.0.2.20:5060"), required=True),
    Key("name", Value("text", "Full name, for the log.")),
    Key("queues", ListOf("Queues whose agents' calls this supervisor may join.",
                         Value("ref", "A queue name from 'queues'.", ref="queues")),
        required=True),
    Key("announce", Value("boolean", "The agent hears a short tone when this supervisor "
                                     "joins (labour rules in several countries).",
                          default=False)),
    Key("password", Value("text", "Password the supervisor's phone registers with at the SIP "
                                  "edge (with an 'edge' section; uri: sip:NAME@the edge), as "
                                  "an agent's does; or in the file of edge.secrets.")),
    Key("sms", Value("text", "Mobile number the modem texts alerts to (when an alert "
                             "condition starts and ends), in E.164.", pattern=r"^\+[0-9]{6,15}$",
                     message="'{value}' is not a mobile number in E.164 such as +393331234567",
                     example="+393331234567")),
))

_DISPOSITION = Section("An outcome of a call, keyed by the agent.", (
    Key("label", Value("text", "What it means, for reports.", example="resolved"),
        required=True),
    Key("resolves", Value("boolean", "The caller's ticket is resolved by it.", default=False)),
))

_TEAM = Section("A team of agents under a team leader, for reports (ivr report --by team).", (
    Key("leader", Value("text", "The team leader: an agent's name (their calls count with the "
                                "team) or just a name.", example="laura"), required=True),
    Key("members", ListOf("The team's agents; each agent is in one team at most.",
                          Value("ref", "An agent name from 'agents'.", ref="agents")),
        required=True),
))

_TICKETS = Section("Tickets: a caller's problem followed across calls and support levels.", (
    Key("customer_variable", Value("text", "Flow variable (set by a collect node, e.g. an "
                                           "account number) that names the customer when it "
                                           "is set; otherwise the calling number does.",
                                   pattern=r"^[a-z_][a-z0-9_]*$",
                                   message="'{value}' is not a flow variable name",
                                   example="account")),
))

_EDGE = Section("The SIP edge (Kamailio) in front, when agents' phones register.", (
    Key("listen", Value("address", "Address:port Kamailio listens on for phones and trunks.",
                        default="127.0.0.1:5060")),
    Key("rpc_port", Value("integer", "Port of Kamailio's JSON-RPC (registrations).",
                          default=5071, minimum=1024, maximum=65535)),
    Key("realm", Value("text", "Digest authentication realm.", default="centralino",
                       pattern=r"^[A-Za-z0-9._-]+$",
                       message="'{value}' is not a realm: letters, digits, '.', '_', '-'")),
    Key("trunk_sources", ListOf("Sources whose INVITEs go to the switchboard (default: every "
                                "trunk's sources).", _NETWORK_VALUE)),
    Key("agent_sources", ListOf("Sources phones may register from (default: any).",
                                _NETWORK_VALUE)),
    Key("secrets", Value("path", "File of agents' and supervisors' passwords (name: "
                                 "password lines, mode 0600), instead of passwords in this "
                                 "file.",
                         example="secrets.yaml")),
), delegated="ivr.edge")

_ROUTE = Section("Where calls to one called number go.", (
    Key("flow", Value("path", "The flow file (IVR tree) calls to this number start in.",
                      example="flows/demo.yaml",
                      must_exist="flow file '{name}' does not exist"), required=True),
    Key("language", Value("text", "Language callers of this number hear first (default: the "
                                  "flow's first language).", pattern=LANGUAGE_CODE,
                          message="'{value}' is not a language code such as it or en",
                          example="it")),
    Key("description", Value("text", "A note for technicians.")),
))

_ROUTE_KEY = r"^(default|[0-9*#+() .-]{1,64})$"

_DEVICE_KEYS = {
    "night_switch": ("line", "override", "when_on", "when_off", "debounce"),
    "lamp": ("line", "callers_waiting", "longest_wait", "no_agents", "gateway_down", "queues"),
    "modem": ("pin", "pin_file", "texts_per_number", "texts_per_day"),
}
"""Keys of a device that only some kinds take (the others every kind takes)."""
_DEVICE_LINES = {"night_switch": ("cts", "dsr", "dcd"), "lamp": ("rts", "dtr")}


def _device_keys(values: dict[str, Any], cursor: Cursor) -> None:
    """A device takes the keys of its kind only, and a control line its kind can use: a
    switch is read on an input line (CTS, DSR, DCD), a lamp driven on an output (RTS, DTR)."""
    kind = values.get("kind")
    if kind not in _DEVICE_KEYS:
        return
    own = {k for keys in _DEVICE_KEYS.values() for k in keys}
    for key in sorted(own - set(_DEVICE_KEYS[kind])):
        if key in values:
            (_child(cursor, key) or cursor).error(f"'{key}' is not a key of a {kind} device")
    lines = _DEVICE_LINES.get(kind)
    if lines and values.get("line") is None:
        cursor.error(f"a {kind} needs 'line': one of {', '.join(lines)}")
    elif lines and values["line"] not in lines:
        (_child(cursor, "line") or cursor).error(
            f"a {kind} uses line {', '.join(lines)}, not {values['line']}")


_HOURS_STATE = ("closed", "open", "auto")
_DEVICE = Section("A serial device, on a port given as a pyserial URL.", (
    Key("kind", Value("choice", "What the device is.", choices=("night_switch", "lamp", "modem"),
                      what="device kind"), required=True),
    Key("url", Value("text", "The port: /dev/ttyUSB0, /dev/serial/by-id/..., "
                             "rfc2217://host:port, spy:///dev/ttyUSB0 or loop:// (tests).",
                     example="/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K1ABC-if00-port0"),
        required=True),
    Key("line", Value("choice", "Control line: a night switch reads cts, dsr or dcd; a lamp "
                                "drives rts or dtr.", choices=("cts", "dsr", "dcd", "rts", "dtr"),
                      what="control line")),
    Key("override", Value("text", "night_switch: the hours switch it sets, as named by the flows' "
                                  "hours nodes (default: night).", pattern=r"^[A-Za-z0-9_.-]+$",
                          message="'{value}' is not a switch name", example="night")),
    Key("when_on", Value("choice", "night_switch: the override while the key is on (default: "
                                   "closed).", choices=_HOURS_STATE, what="hours state")),
    Key("when_off", Value("choice", "night_switch: the override while the key is off (default: "
                                    "auto, the opening hours).", choices=_HOURS_STATE,
                          what="hours state")),
    Key("debounce", Value("number", "night_switch: seconds the line must hold still before a "
                                    "change counts (default: 0.3).", minimum=0, maximum=10)),
    Key("callers_waiting", Value("integer", "lamp: on while more than this many callers wait "
                                            "(0: not a reason).", minimum=0, maximum=10000)),
    Key("longest_wait", Value("number", "lamp: on while a caller has waited more than these "
                                        "seconds (0: not a reason).", minimum=0,
                              maximum=86400)),
    Key("no_agents", Value("boolean", "lamp: on while no agent is logged in.")),
    Key("gateway_down", Value("boolean", "lamp: on while a gateway does not answer OPTIONS.")),
    Key("queues", ListOf("lamp: the queues its rules look at (default: all).",
                         Value("ref", "A queue name from 'queues'.", ref="queues"))),
    Key("pin", Value("text", "modem: the SIM's PIN, if it asks for one (better: pin_file).",
                     pattern=r"^[0-9]{4,8}$", message="a PIN is 4 to 8 digits")),
    Key("pin_file", Value("path", "modem: a file holding the SIM's PIN (readable by the "
                                  "switchboard only), e.g. /etc/centralino/sim.pin.",
                          must_exist="PIN file '{name}' does not exist")),
    Key("texts_per_number", Value("integer", "modem: texts a flow's sms nodes send one caller "
                                             "in 24 hours at most (default: 3).", minimum=1,
                                  maximum=100)),
    Key("texts_per_day", Value("integer", "modem: texts the flows' sms nodes send in all in 24 "
                                          "hours at most (default: 100); alerts to supervisors "
                                          "are not counted.", minimum=1, maximum=100000)),
    Key("description", Value("text", "A note for technicians.")),
), rule=_device_keys)

CALLBACK_REMOVED = (
    "a callback dials only a number a dial_out rule allows: add 'callbacks: true' to a rule "
    "whose pattern matches the callers you will call back, e.g. dial_out: [{pattern: "
    "'^3[0-9]{8,9}$', uri: 'sip:{number}@192.0.2.1', callbacks: true}] (Italian mobiles "
    "through the gateway)")
"""Why the top-level ``callback`` URI is refused: it dialled any caller ID, forged ones too."""

IVR_YAML = Section("Centralino appliance configuration (ivr.yaml). Paths are relative to the "
                   "file's folder.", (
    Key("sip", _SIP, required=True),
    Key("trunks", MapOf("Gateways allowed to place calls, by name: only their sources may call "
                        "in.", _TRUNK, min_entries=1,
                        empty_message="configure at least one trunk: only trunk sources may "
                                      "place calls"), required=True),
    Key("agents", MapOf("Agents by name.", _AGENT)),
    Key("queues", MapOf("Queues by name; flows send callers to them.", _QUEUE)),
    Key("flow", Value("path", "The flow file (IVR tree) every call starts in, whatever number "
                              "it called (use 'routes' for a flow per number).",
                      example="flows/demo.yaml")),
    Key("routes", MapOf("Called numbers (DIDs) -> the flow calls to them start in; 'default' "
                        "takes any other number (without it, other numbers get 404).",
                        _ROUTE, key_pattern=_ROUTE_KEY,
                        key_message="route '{key}' is not a called number (digits, * # +, "
                                    "spaces, '-', '.', brackets) or 'default'",
                        min_entries=1, empty_message="list at least one called number, or "
                                                     "use 'flow' for every call",
                        key_normalise=_route_key,
                        duplicate_message="'{key}' is the same number as '{other}' ({normal})"
                        )),
    Key("store", Value("path", "The call record database (SQLite).",
                       default="var/centralino.db")),
    Key("recordings", Value("path", "Folder of voicemail messages, one WAV file per message, "
                                    "and of recorded calls (in calls/).",
                            default="var/recordings")),
    Key("recording_min_free_mb", Value("integer", "Free disk space (MB) under 'recordings' below "
                                                  "which calls are not recorded; calls go on.",
                                       default=200, minimum=0, maximum=1000000)),
    Key("prompts", _PROMPTS),
    Key("music_on_hold", Value("path", "WAV file played to waiting callers (default: a tone "
                                       "made in the prompt cache).",
                               must_exist="music on hold file '{name}' does not exist")),
    Key("metrics", _METRICS),
    Key("console", _CONSOLE),
    Key("log_level", Value("choice", "Detail of the log.", default="info",
                           choices=("debug", "info", "warning", "error"))),
    Key("extensions", MapOf("Transfer destinations by the number a caller keys.", _EXTENSION,
                            key_pattern=DIALLED,
                            key_message="extension '{key}' must be a number a caller can key "
                                        "(digits, * # +)")),
    Key("dial_out", ListOf("Rules for numbers a transfer or a callback may dial; nothing else "
                           "is dialled.", _DIAL_RULE)),
    Key("feature_codes", _FEATURE_CODES),
    Key("supervisors", MapOf("Supervisors by name, and the queues they may watch.",
                             _SUPERVISOR)),
    Key("edge", _EDGE),
    Key("drain_seconds", _seconds("On SIGTERM (a stop or an upgrade), seconds calls in progress "
                                  "may go on while new calls get 503; then they end "
                                  "interrupted.", 30.0, 0, 3600)),
    Key("retention_days", Value("integer", "Days call records, queue events and voicemails are "
                                           "kept (0: forever).", default=0, minimum=0,
                                maximum=36500)),
    Key("dispositions", MapOf("Outcomes agents key on the phone during a call or wrap-up: * "
                              "and the code (one digit).", _DISPOSITION,
                              key_pattern=r"^[0-9]$",
                              key_message="disposition '{key}' must be one digit 0 to 9")),
    Key("tickets", _TICKETS),
    Key("teams", MapOf("Teams of agents by name, each under a team leader (reports by team).",
                       _TEAM)),
    Key("devices", MapOf("Serial devices by name: a night switch, a lamp or buzzer, a modem.",
                         _DEVICE)),
    Key("campaigns", Value("path", "Folder of outbound campaign files, one YAML file per "
                                   "campaign (checked by ivr.outbound.campaigns).",
                           example="campaigns/")),
), require_any=("flow", "routes"),
    require_any_message="missing required key 'flow' (the flow of every call) or 'routes' (a "
                        "flow per called number)", rule=_top_rules,
    removed={"callback": CALLBACK_REMOVED})
"""The spec of ivr.yaml."""


# -- checking a document ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
    base: Path
    """Folder that relative paths start from."""
    names: Mapping[str, Collection[str]]
    """Top-level key -> the names of its entries, for 'ref' values."""


def declared_names(root: Cursor, keys: Collection[str]) -> dict[str, list[str]]:
    """The entry names of the top-level mappings *keys* (e.g. agents), read without reporting
    anything: their own checks report their problems."""
    out: dict[str, list[str]] = {k: [] for k in keys}
    if not isinstance(root.node, yaml.MappingNode):
        return out
    for key_node, value_node in root.node.value:
        if getattr(key_node, "value", None) in out and isinstance(value_node, yaml.MappingNode):
            out[key_node.value] = [str(k.value) for k, _ in value_node.value
                                   if isinstance(k, yaml.ScalarNode)]
    return out


def validate(cursor: Cursor, spec: Spec, context: Context, owner: str | None = None) -> Any:
    """Check the node at *cursor* against *spec*, filing every problem with its place.

    Returns the value as Python data: a dict for a section (defaults filled in, delegated keys
    as their :class:`Cursor`), dict or list for MapOf and ListOf, and for scalars: str, int,
    float, bool, ``(host, port)``, an ``ip_network``, a compiled regex, a :class:`Path`.
    None stands for a value with a problem; a section keeps its dict when only some of its
    keys have problems. *owner* is the name of the nearest MapOf entry ('ref' with not_self).
    """
    if isinstance(spec, Section):
        return _section(cursor, spec, context, owner)
    if isinstance(spec, MapOf):
        return _map_of(cursor, spec, context)
    if isinstance(spec, ListOf):
        items = cursor.sequence()
        if items is None:
            return None
        return [validate(item, spec.item, context, owner) for item in items]
    if isinstance(spec, Either):
        if cursor.is_mapping():
            return _section(cursor, spec.section, context, owner)
        return _value(cursor, spec.scalar, context, owner)
    return _value(cursor, spec, context, owner)


def _map_of(cursor: Cursor, spec: MapOf, context: Context) -> Any:
    entries = cursor.mapping()
    if entries is None:
        return None
    if len(entries) < spec.min_entries:
        cursor.error(spec.empty_message)
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in entries.items():
        if spec.key_pattern is not None and not re.fullmatch(spec.key_pattern, key):
            value.error(spec.key_message.replace("{key}", key))
            continue
        name = key if spec.key_normalise is None else spec.key_normalise(key)
        if name is None:
            value.error(spec.key_message.replace("{key}", key))
            continue
        if name in spelled:
            value.error(spec.duplicate_message.replace("{key}", key).replace(
                "{other}", spelled[name]).replace("{normal}", name))
            continue
        spelled[name] = key
        out[name] = validate(value, spec.value, context, key)
    return {**spec.default, **out} if spec.default is not None else out


def default_of(spec: Spec, context: Context) -> Any:
    """The value a missing key takes (None: none); a missing section takes its keys'
    defaults, so ``prompts:`` left out reads as every default of prompts."""
    if isinstance(spec, Section) and not spec.delegated:
        defaults = {k.name: default_of(k.spec, context) for k in spec.keys}
        return {name: value for name, value in defaults.items() if value is not None}
    if isinstance(spec, MapOf):
        return dict(spec.default) if spec.default is not None else None
    if isinstance(spec, Value) and spec.default is not None:
        if spec.kind == "path":
            return context.base / str(spec.default)
        if spec.kind == "address":
            host, _, port = str(spec.default).rpartition(":")
            return host.strip("[]"), int(port)
        return spec.default
    return None


def _section(cursor: Cursor, spec: Section, context: Context, owner: str | None) -> Any:
    if spec.delegated:
        return cursor  # the named module reads and checks it
    entries = cursor.mapping(allowed=[k.name for k in spec.keys] + list(spec.removed),
                             required=[k.name for k in spec.keys if k.required])
    if entries is None:
        return None
    for name, message in spec.removed.items():
        if name in entries:
            entries[name].error(f"'{name}' was removed: {message}")
    if spec.require_any and not any(k in entries for k in spec.require_any):
        cursor.error(spec.require_any_message)
    out: dict[str, Any] = {}
    for key in spec.keys:
        if key.name in entries:
            out[key.name] = validate(entries[key.name], key.spec, context, owner)
        else:
            default = default_of(key.spec, context)
            if default is not None:
                out[key.name] = default
    if spec.rule is not None:
        spec.rule(out, cursor)
    return out


def _is_off(cursor: Cursor) -> bool:
    node = cursor.node
    if not isinstance(node, yaml.ScalarNode):
        return False
    if node.tag == "tag:yaml.org,2002:bool":  # YAML 1.1 reads a bare off as false
        return str(node.value).lower() in ("off", "false", "no", "n")
    return str(node.value) == OFF


def _value(  # noqa: C901 - one arm per value kind
    cursor: Cursor, spec: Value, context: Context, owner: str | None
) -> Any:
    kind = spec.kind
    if kind == "integer":
        return cursor.integer(_int(spec.minimum), _int(spec.maximum))
    if kind == "number":
        return cursor.number(spec.minimum, spec.maximum)
    if kind == "boolean":
        return cursor.boolean()
    if kind == "choice":
        return cursor.choice(spec.choices, spec.what)
    if kind == "address" and spec.allows_off and _is_off(cursor):
        return OFF
    text = cursor.text()
    if text is None:
        return None
    if kind == "text":
        if spec.pattern is not None and not re.fullmatch(spec.pattern, text):
            cursor.error(spec.message.replace("{value}", text))
            return None
        return text
    if kind == "address":
        return _address(cursor, text)
    if kind == "network":
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            cursor.error(f"'{text}' is not an IP address or network such as 192.0.2.10 or "
                         "192.0.2.0/28")
            return None
    if kind == "uri_template":
        return _uri_template(cursor, text, spec.needs_number)
    if kind == "regex":
        try:
            return re.compile(text)
        except re.error as exc:
            cursor.error(f"'{text}' is not a valid regular expression: {exc}")
            return None
    if kind == "path":
        path = context.base / text
        if spec.must_exist and not path.is_file():
            cursor.error(spec.must_exist.replace("{name}", path.name))
            return None
        return path
    if kind == "ref":
        names = context.names.get(spec.ref, ())
        noun = spec.ref.removesuffix("s")
        if text not in names:
            cursor.error(f"unknown {noun} '{text}'.{did_you_mean(text, names)}".rstrip("."))
            return None
        if spec.not_self and text == owner:
            cursor.error(f"a {noun} cannot send callers to itself ('{text}')")
            return None
        return text
    raise ValueError(f"ivr.yaml spec: unknown kind '{kind}'")


def _int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def _address(cursor: Cursor, text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not (0 < int(port) < 65536):
        cursor.error(f"'{text}' is not an address:port such as 127.0.0.1:5080")
        return None
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        cursor.error(f"'{host}' is not an IP address (give the address to listen on)")
        return None
    return host.strip("[]"), int(port)


def _uri_template(cursor: Cursor, text: str, needs_number: bool) -> str | None:
    placeholders = set(re.findall(r"\{([^{}]*)\}", text)) - {"number"}
    if placeholders:
        cursor.error(f"unknown placeholder '{{{sorted(placeholders)[0]}}}' in '{text}'; only "
                     "{number} (the number dialled) can be used")
        return None
    if (needs_number and "{number}" not in text) \
            or not re.fullmatch(SIP_URI, text.replace("{number}", _SAMPLE_NUMBER)):
        with_number = " with {number}," if needs_number else ""
        cursor.error(f"'{text}' is not a SIP URI template{with_number} such as "
                     "sip:{number}@192.0.2.1")
        return None
    return text


# -- the JSON Schema -------------------------------------------------------------------------------

def _value_schema(spec: Value) -> Schema:  # noqa: C901 - one arm per value kind
    out: Schema
    kind = spec.kind
    if kind == "integer":
        out = {"type": "integer"}
    elif kind == "number":
        out = {"type": "number"}
    elif kind == "boolean":
        out = {"type": "boolean"}
    elif kind == "choice":
        out = {"enum": list(spec.choices)}
    elif kind == "address":
        out = {"type": "string", "pattern": _ADDRESS}
    elif kind == "network":
        out = {"type": "string", "pattern": _NETWORK}
    elif kind == "uri_template":
        out = {"type": "string", "pattern": SIP_URI}
        if spec.needs_number:
            out["allOf"] = [{"pattern": r"\{number\}"}]
    elif kind == "regex":
        out = {"type": "string", "format": "regex"}
    elif kind == "path" or kind == "ref":
        out = {"type": "string", "minLength": 1}
    elif kind == "text" and spec.pattern is not None:
        # numbers are read as their spelling; a pattern applies to strings only
        out = {"type": ["string", "integer"], "pattern": spec.pattern}
    elif kind == "text":
        out = {"type": ["string", "number"]}
    else:
        raise ValueError(f"ivr.yaml spec: unknown kind '{kind}'")
    if spec.minimum is not None:
        out["minimum"] = spec.minimum
    if spec.maximum is not None:
        out["maximum"] = spec.maximum
    out["description"] = spec.doc
    if spec.default is not None:
        out["default"] = spec.default
    if spec.example:
        out["examples"] = [spec.example]
    if spec.allows_off:
        return {"description": spec.doc, "anyOf": [{"enum": [OFF, False]}, out]}
    return out


def spec_schema(spec: Spec) -> Schema:
    """The draft-07 schema of one spec node."""
    if isinstance(spec, Value):
        return _value_schema(spec)
    if isinstance(spec, ListOf):
        return {"type": "array", "description": spec.doc, "items": spec_schema(spec.item)}
    if isinstance(spec, MapOf):
        out: Schema = {"type": "object", "description": spec.doc,
                       "additionalProperties": spec_schema(spec.value)}
        if spec.key_pattern is not None:
            out["propertyNames"] = {"pattern": spec.key_pattern}
        if spec.min_entries:
            out["minProperties"] = spec.min_entries
        if spec.default is not None:
            out["default"] = dict(spec.default)
        return out
    if isinstance(spec, Either):
        return {"description": spec.doc,
                "anyOf": [spec_schema(spec.scalar), spec_schema(spec.section)]}
    properties: Schema = {k.name: spec_schema(k.spec) for k in spec.keys}
    for name, message in spec.removed.items():
        properties[name] = {"description": f"Removed: {message}.", "deprecated": True,
                            "deprecationMessage": message, "doNotSuggest": True, "not": {}}
    section: Schema = {"type": "object", "description": spec.doc, "properties": properties,
                       "additionalProperties": False}
    required = [k.name for k in spec.keys if k.required]
    if required:
        section["required"] = required
    if spec.require_any:
        section["anyOf"] = [{"required": [k]} for k in spec.require_any]
    return section


def config_schema() -> Schema:
    """The JSON Schema (draft-07) of ivr.yaml, built from :data:`IVR_YAML`.

    The loader remains the authority: the schema does not see across the file (agent and
    queue names, distinct feature codes), the file system, or the edge's own rules.
    """
    return {
        "$schema": DRAFT,
        "$comment": "Generated from ivr/config_spec.py by 'ivr schema --config'; do not edit by "
                    "hand: run 'ivr schema --config --output ivr.schema.json'.",
        "title": "Centralino appliance configuration",
        **spec_schema(IVR_YAML),
    }


def schema_text() -> str:
    """The schema as the text of ivr.schema.json (stable: same spec, same bytes)."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


__all__ = ["DEFAULT_ROUTE", "DRAFT", "IVR_YAML", "LANGUAGE_CODE", "OFF", "Context", "Either",
           "Key", "ListOf", "MapOf", "Section", "Value", "config_schema", "declared_names",
           "default_of", "schema_text", "validate"]

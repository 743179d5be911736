"""`ivr.yaml`: the appliance's configuration, checked like a flow (every error, with its place).

What each key means, its type, default and range are declared once in :mod:`ivr.config_spec`,
which both checks the file and gives its JSON Schema (``ivr schema --config``); this module
turns the checked values into the typed :class:`Config` the switchboard uses.

Every external thing is given by address or path, relative paths being taken from the folder of
the configuration file, so tests run the same code on loopback addresses and temporary folders.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivr.config_spec import DEFAULT_ROUTE, IVR_YAML, Context, declared_names, validate
from ivr.numbers import normalise, to_e164_it
from ivr.yamlsrc import DocumentError, load_document
from routing.acd import Member, QueueSpec

if TYPE_CHECKING:
    from ivr.edge import EdgeSettings

_DIALLED = re.compile(r"[0-9*#+]{1,32}")
"""What a dial_out rule may put into a URI: keys of a phone, nothing that could change the host."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Trunk:
    """A gateway allowed to send calls in."""

    name: str
    sources: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    lines: int
    """Calls at once; one more is answered 486 Busy Here."""
    ping: HostPort | None = None
    """Where to send SIP OPTIONS to check that the gateway is alive (None: not checked)."""
    ping_interval: float = 30.0
    media_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Where the gateway's audio may be besides its sources (SDP connection addresses)."""
    caller_id: str = "as_sent"
    """``as_sent`` or ``e164_it``: see :meth:`caller`."""
    called_strip: str = ""
    """A prefix removed from the called number the gateway sends."""
    called_number: str = ""
    """The called number of every call from this gateway, whatever it sends ("" : as sent)."""

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.sources)

    def caller(self, number: str) -> str:
        """A caller's number (normalised; "" withheld) as this trunk's profile stores it."""
        return to_e164_it(number) if self.caller_id == "e164_it" else number

    def called(self, sent: str) -> str:
        """The called number (or URI) as routing should see it: the fixed one, or what the
        gateway sent without its prefix (the number is normalised first, then cut)."""
        if self.called_number:
            return self.called_number
        if not self.called_strip:
            return sent
        number = normalise(sent)
        if number and number.startswith(self.called_strip):
            return number[len(self.called_strip):]
        return sent


@dataclass(frozen=True)
class Agent:
    name: str
    uri: str
    skills: dict[str, int] = field(default_factory=dict)
    max_no_answer: int = 3
    """Unanswered offers in a row after which the agent is paused ('no answer')."""


QueueConfig = QueueSpec
"""A queue of ivr.yaml is the routing layer's QueueSpec (same fields, checked here)."""


@dataclass(frozen=True)
class FeatureCodes:
    """Codes agents dial from their phone (login...) or press during a call (escalate)."""

    login: str = "*41"
    logout: str = "*42"
    pause: str = "*43"
    unpause: str = "*44"
    escalate: str = "*9"
    listen: str = "*51"
    whisper: str = "*52"
    barge: str = "*53"

    def action_for(self, dialled: str) -> str | None:
        for action in ("login", "logout", "pause", "unpause"):
            if getattr(self, action) == dialled:
                return action
        return None

    def supervision_for(self, dialled: str) -> tuple[str, str] | None:
        """(mode, agent's name or number) for a supervision code followed by what names the
        agent ('*51anna' -> ('listen', 'anna')), or None. The longest code that fits wins."""
        codes = sorted(((getattr(self, mode), mode) for mode in SUPERVISION_MODES),
                       key=lambda item: -len(item[0]))
        for code, mode in codes:
            if dialled.startswith(code) and len(dialled) > len(code):
                return mode, dialled[len(code):]
        return None


SUPERVISION_MODES = ("listen", "whisper", "barge")
"""What a supervisor does on an agent's call: hear both; be heard by the agent; by both."""


@dataclass(frozen=True)
class Supervisor:
    """``supervisors: {laura: {uri: sip:laura@..., queues: [support]}}``."""

    name: str
    uri: str
    queues: tuple[str, ...]
    announce: bool = False
    """The agent hears a short tone when this supervisor joins."""
    sms: str = ""
    """Mobile number the modem texts alerts to ('' none)."""


@dataclass(frozen=True)
class Disposition:
    """``dispositions: {"1": {label: resolved, resolves: true}}``: an outcome the agent keys
    (* and the code) during the call or its wrap-up."""

    code: str
    label: str
    resolves: bool = False
    """Keying it resolves the caller's ticket."""


@dataclass(frozen=True)
class Team:
    """``teams: {front: {leader: laura, members: [anna, marco]}}``: agents grouped for reports."""

    name: str
    leader: str
    """An agent's name or just a person's name."""
    members: tuple[str, ...]
    """The agents whose calls count for the team: those listed, and the leader if an agent."""


@dataclass(frozen=True)
class Extension:
    """A fixed transfer destination: ``extensions: {"201": {uri: sip:reception@...}}``."""

    name: str
    uri: str


@dataclass(frozen=True)
class DialRule:
    """``dial_out`` entry: a number matching ``pattern`` (whole number) is dialled at ``uri``."""

    pattern: re.Pattern[str]
    uri: str
    """A SIP URI; ``{number}`` is replaced by the number dialled."""
    agent_transfers: bool = False
    """Agents' phones may transfer callers (REFER) to this rule's numbers too; without it
    only a flow's transfer node may dial them."""
    callbacks: bool = False
    """Waiting callers whose number matches may be called back at this rule's URI; without
    any such rule no caller is ever called back."""
    flows: bool = True
    """A flow's transfer node may dial this rule's numbers; false for a rule meant only for
    callbacks or agents' transfers (a mobile-number callback rule must not let a flow's
    ``{digits}`` transfer dial mobiles)."""
    campaigns: bool = False
    """Outbound campaigns may dial this rule's numbers; without any such rule no campaign
    dials anything."""

    def target(self, number: str) -> str | None:
        if not _DIALLED.fullmatch(number) or not self.pattern.fullmatch(number):
            return None
        return self.uri.replace("{number}", number)


@dataclass(frozen=True)
class TransferTarget:
    """Where an agent's transfer (REFER) sends the caller, as ivr.yaml configures it."""

    kind: str
    """'extension', 'queue' or 'number' (a number a dial_out rule allows agents)."""
    name: str
    """The extension's number, the queue's name or the number: what the record shows."""
    uri: str = ""
    """The SIP URI dialled ('' for a queue)."""


_REFER_USER = re.compile(r"sips?:([^@;?>\s]{1,64})@", re.IGNORECASE)


@dataclass(frozen=True)
class Route:
    """Where calls to one called number go::

        routes:
          "800 123 456": {flow: flows/demo.yaml, language: it}
          default: {flow: flows/office.yaml}
    """

    number: str
    """The called number in the spelling of :func:`ivr.numbers.normalise` (``800123456``), or
    ``default`` for calls no other route takes (also the top-level ``flow`` of a
    configuration without routes)."""
    flow: Path
    language: str | None = None
    """Language callers hear first; None: the flow's first language."""


@dataclass(frozen=True)
class Device:
    """``devices: {night: {kind: night_switch, url: /dev/ttyUSB0, line: cts}}``: a serial
    device on a port given as a pyserial URL (see hw/serialdev.py)."""

    name: str
    kind: str
    """'night_switch', 'lamp' or 'modem'."""
    url: str
    line: str = ""
    """The control line: cts, dsr or dcd (night switch), rts or dtr (lamp)."""
    override: str = "night"
    """Night switch: the hours switch it sets."""
    when_on: str = "closed"
    """Night switch: the override while the key is on ('closed', 'open' or 'auto')."""
    when_off: str = "auto"
    """Night switch: the override while the key is off."""
    debounce: float = 0.3
    """Night switch: seconds the line must hold still before a change counts."""
    callers_waiting: int = 0
    """Lamp: on while more callers than this wait (0: not a reason)."""
    longest_wait: float = 0.0
    """Lamp: on while a caller has waited longer than this, seconds (0: not a reason)."""
    no_agents: bool = False
    """Lamp: on while no agent is logged in."""
    gateway_down: bool = False
    """Lamp: on while a gateway does not answer OPTIONS."""
    queues: tuple[str, ...] = ()
    """Lamp: the queues its rules look at; empty: all."""
    pin: str = field(default="", repr=False)
    """Modem: the SIM's PIN ('' if it asks none), from ``pin`` or ``pin_file``; never logged."""
    texts_per_number: int = 3
    """Modem: a flow's texts to one caller in 24 hours at most."""
    texts_per_day: int = 100
    """Modem: a flow's texts in all in 24 hours at most."""


def _device(name: str, d: dict[str, Any]) -> Device:
    given = {k: d[k] for k in ("line", "override", "when_on", "when_off", "callers_waiting",
                               "no_agents", "gateway_down") if d.get(k) is not None}
    return Device(name, d["kind"], d["url"], **given,
                  debounce=float(d.get("debounce", 0.3)),
                  longest_wait=float(d.get("longest_wait", 0.0)),
                  queues=tuple(d.get("queues") or ()), pin=_device_pin(d),
                  texts_per_number=int(d.get("texts_per_number", 3)),
                  texts_per_day=int(d.get("texts_per_day", 100)))


def _device_pin(d: dict[str, Any]) -> str:
    """A modem's PIN: ``pin``, or the first line of ``pin_file`` (a path resolved already)."""
    if d.get("pin"):
        return str(d["pin"])
    if d.get("pin_file"):
        try:
            return Path(d["pin_file"]).read_text(encoding="utf-8").strip()
        except OSError:
            return ""  # the check of the file names the problem
    return ""


CONSOLE_DEFAULT = HostPort("127.0.0.1", 9481)
"""Where the web console listens when ivr.yaml does not say (on by default, loopback)."""


@dataclass(frozen=True)
class ConsoleSettings:
    """``console: {listen: 127.0.0.1:9481, tls: {cert: PATH, key: PATH}, lang: it,
    session_hours: 12}``, or ``console: ADDRESS``; ``console: off`` leaves it None."""

    listen: HostPort = CONSOLE_DEFAULT
    tls_cert: Path | None = None
    tls_key: Path | None = None
    lang: str = "it"
    """Language of the pages: 'it' or 'en'."""
    session_hours: float = 12.0
    """Hours a login lasts."""


@dataclass(frozen=True)
class Config:
    source: Path
    sip_listen: HostPort
    sip_user: str
    rtp_port: int
    rtp_port_range: int
    max_calls: int
    trunks: tuple[Trunk, ...]
    agents: dict[str, Agent]
    queues: dict[str, QueueSpec]
    flow: Path
    """The flow of every call when there are no ``routes``; with routes, the default route's
    flow (else the first route's), for tools that look at one flow. Calls are routed by
    :meth:`route_for`; :meth:`flow_paths` lists every flow to load."""
    store: Path
    prompt_cache: Path
    voices: dict[str, str]
    speech_rate: int
    music_on_hold: Path | None
    metrics: HostPort | None
    sl_threshold: float = 20.0
    """Service level threshold of the metrics, seconds."""
    sl_window: float = 3600.0
    """Sliding window of the service level metrics, seconds."""
    log_level: str = "info"
    sip_log_level: int = 1
    sip_refuse_strangers: bool = False
    """Answer 403 to strangers' requests instead of nothing."""
    extensions: dict[str, Extension] = field(default_factory=dict)
    dial_out: tuple[DialRule, ...] = ()
    recordings: Path = Path("var/recordings")
    """Folder of voicemail recordings (WAV, one per message, named by call id)."""
    feature_codes: FeatureCodes = field(default_factory=lambda: FeatureCodes())
    edge: EdgeSettings | None = None
    """The SIP edge (Kamailio) in front, when agents' phones register; see ivr/edge.py."""
    retention_days: int = 0
    """Days call records, queue events and voicemails are kept by ``ivr purge``; 0: forever."""
    drain_seconds: float = 30.0
    """On SIGTERM: seconds calls in progress may go on (new ones get 503) before the stop."""
    recorded_queues: frozenset[str] = frozenset()
    """Queues with ``record: true``: their bridged calls are recorded (stereo WAV under
    ``recordings``/calls, caller left, agent right)."""
    recording_min_free_mb: int = 200
    """Free disk, MB, under which no call recording starts (and those running stop)."""
    routes: dict[str, Route] = field(default_factory=dict)
    """Called number (normalised) or ``default`` -> its route; empty: every call goes to
    ``flow``."""
    queue_numbers: dict[str, str] = field(default_factory=dict)
    """A queue's ``number`` (normalised) -> the queue: what phones that dial only digits
    transfer to."""
    dispositions: dict[str, Disposition] = field(default_factory=dict)
    """Outcomes agents key, by code."""
    ticket_customer_variable: str | None = None
    """Flow variable naming the customer of a ticket when set (else the calling number)."""
    supervisors: dict[str, Supervisor] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    """Teams of agents for reports; an agent is in one team at most."""
    devices: dict[str, Device] = field(default_factory=dict)
    """Serial devices by name (night switch, lamp, modem)."""
    console: ConsoleSettings | None = field(default_factory=ConsoleSettings)
    """The web console; None: ``console: off``."""
    campaigns_dir: Path | None = None
    """``campaigns:``: the folder of outbound campaign files (see ivr.outbound.campaigns);
    None: no campaigns."""

    def team_of(self) -> dict[str, str]:
        """Agent -> the name of their team, for agents in one."""
        return {agent: team.name for team in self.teams.values() for agent in team.members}

    def route_for(self, called: str) -> Route | None:
        """The route of a call to *called* (a number, or the user part or URI it came in),
        or None: refuse the call (404).

        The number is normalised first; a number that cannot be one (letters, control bytes)
        has no route. The switchboard's own user (``sip:ivr@...``) and an empty user name no
        number, so they take the default. Then: the route of that number, else ``default``,
        else, with no ``routes`` at all, the top-level ``flow``.
        """
        number = "" if called == self.sip_user else normalise(called)
        if number is None:
            return None
        if not self.routes:
            return Route(DEFAULT_ROUTE, self.flow)
        route = self.routes.get(number) if number else None
        return route if route is not None else self.routes.get(DEFAULT_ROUTE)

    def flow_paths(self) -> tuple[Path, ...]:
        """Every distinct flow file the switchboard must load, routes in file order."""
        if not self.routes:
            return (self.flow,)
        return tuple(dict.fromkeys(route.flow for route in self.routes.values()))

    def agent_for(self, address: str, user: str) -> Agent | None:
        """The agent whose phone this is: the URI's user and host must both match."""
        for agent in self.agents.values():
            m = re.match(r"sips?:([^@]+)@\[?([^\]:;>]+)", agent.uri)
            if m and m.group(1) == user and m.group(2) == address:
                return agent
        return None

    def supervisor_for(self, address: str, user: str) -> Supervisor | None:
        """The supervisor whose phone this is: the URI's user and host must both match."""
        for sup in self.supervisors.values():
            m = re.match(r"sips?:([^@]+)@\[?([^\]:;>]+)", sup.uri)
            if m and m.group(1) == user and m.group(2) == address:
                return sup
        return None

    def agent_named(self, text: str) -> Agent | None:
        """The agent a supervisor names: by name, or by the user of the agent's URI."""
        if text in self.agents:
            return self.agents[text]
        for agent in self.agents.values():
            m = re.match(r"sips?:([^@]+)@", agent.uri)
            if m and m.group(1) == text:
                return agent
        return None

    @property
    def sip_uri(self) -> str:
        return f"sip:{self.sip_user}@{self.sip_listen}"

    def trunk_for(self, address: str) -> Trunk | None:
        return next((t for t in self.trunks if t.allows(address)), None)

    def callback_target(self, number: str) -> str | None:
        """The SIP URI that calls *number* (a caller who called in) back, or None: refused.

        The first ``dial_out`` rule with ``callbacks: true`` whose pattern matches the whole
        number. The number is the caller ID the gateway presented, which anyone can forge:
        only a rule decides whether it costs us a call.
        """
        for rule in self.dial_out:
            uri = rule.target(number) if rule.callbacks else None
            if uri is not None:
                return uri
        return None

    def campaign_dial_target(self, number: str) -> str | None:
        """The SIP URI an outbound campaign dials *number* (a contact's) at, or None: refused.

        The first ``dial_out`` rule with ``campaigns: true`` whose pattern matches the whole
        number (digits, ``*``, ``#``, ``+`` only): a contact list is data someone imported, so
        only a rule decides which numbers may cost us calls.
        """
        for rule in self.dial_out:
            uri = rule.target(number) if rule.campaigns else None
            if uri is not None:
                return uri
        return None

    def transfer_target(self, destination: str) -> str | None:
        """The SIP URI a transfer to *destination* dials, or None: not allowed.

        An extension by its name first, then the first ``dial_out`` rule whose pattern matches
        the whole number (digits, ``*``, ``#``, ``+`` only). Nothing else is ever dialled.
        """
        extension = self.extensions.get(destination)
        if extension is not None:
            return extension.uri
        for rule in self.dial_out:
            uri = rule.target(destination) if rule.flows else None
            if uri is not None:
                return uri
        return None

    def agent_transfer_target(self, refer_to: str) -> TransferTarget | None:
        """Where an agent's transfer to the Refer-To URI *refer_to* goes, or None: refused.

        Only the URI's user part counts (its host, parameters and headers never): an
        extension by its number, then a queue by its name or its ``number``, then a number
        that a ``dial_out`` rule with ``agent_transfers: true`` allows. The number is
        normalised as called numbers are (:func:`ivr.numbers.normalise`).
        """
        match = _REFER_USER.search(refer_to)
        if match is None:
            return None
        return self.agent_transfer_named(match.group(1))

    def agent_transfer_named(self, user: str) -> TransferTarget | None:
        """Where an agent's transfer to *user* (an extension, a queue's name or number, a
        number; what the console's transfer names) goes, or None: refused. The rules of
        :meth:`agent_transfer_target`."""
        if not user or len(user) > 64:
            return None
        number = normalise(user)
        extension = self.extensions.get(number) if number else None
        if extension is not None and number:
            return TransferTarget("extension", number, extension.uri)
        if user in self.queues:
            return TransferTarget("queue", user)
        if not number:
            return None
        queue = self.queue_numbers.get(number)
        if queue is not None:
            return TransferTarget("queue", queue)
        for rule in self.dial_out:
            uri = rule.target(number) if rule.agent_transfers else None
            if uri is not None:
                return TransferTarget("number", number, uri)
        return None


def load_config(path: str | Path) -> Config:
    """Load and check *path*; raise :class:`~ivr.yamlsrc.DocumentError` listing every problem.

    The file is read once and checked against :data:`ivr.config_spec.IVR_YAML` (types, ranges,
    choices, unknown keys with a hint, names of agents and queues); the ``edge`` section by
    :mod:`ivr.edge`, whose problems join the same list.
    """
    path = Path(path)
    root = load_document(path)
    base = path.resolve().parent
    context = Context(base, declared_names(root, ("agents", "queues")))
    values = validate(root, IVR_YAML, context)
    if isinstance(values, dict) and "edge" in values:
        from ivr.edge import settings_from_yaml

        try:
            edge = settings_from_yaml(path).settings
        except DocumentError as exc:  # the edge's own checks, located in the same file
            seen = {str(p) for p in root.problems.items}
            root.problems.items.extend(p for p in exc.problems if str(p) not in seen)
    else:
        edge = None
    root.problems.raise_if_any()
    assert isinstance(values, dict)
    return _build(path, values, edge)


def _host_port(value: tuple[str, int] | str | None) -> HostPort | None:
    return HostPort(*value) if isinstance(value, tuple) else None


def _build(path: Path, top: dict[str, Any], edge: EdgeSettings | None) -> Config:
    """The typed configuration from values :func:`validate` passed (defaults filled in)."""
    sip = top["sip"]
    trunks = tuple(
        Trunk(name, tuple(t["sources"]), t["lines"], _host_port(t.get("ping")),
              t["ping_interval"], tuple(t.get("media_networks") or ()), t["caller_id"],
              t.get("called_strip") or "", t.get("called_number") or "")
        for name, t in top["trunks"].items())
    agents = {name: Agent(name, a["uri"], dict(a.get("skills") or {}), a["max_no_answer"])
              for name, a in (top.get("agents") or {}).items()}
    queues = {name: _queue(name, q) for name, q in (top.get("queues") or {}).items()}
    metrics = top.get("metrics")
    sl_threshold, sl_window = 20.0, 3600.0
    if isinstance(metrics, dict):
        sl_threshold = metrics["service_level_threshold"]
        sl_window = metrics["service_level_window"]
        metrics = metrics["listen"]
    prompts, codes = top["prompts"], top["feature_codes"]
    routes = {number: Route(number, r["flow"], r.get("language"))
              for number, r in (top.get("routes") or {}).items()}
    main_route = routes.get(DEFAULT_ROUTE) or next(iter(routes.values()), None)
    flow = top.get("flow", main_route.flow if main_route else None)
    assert isinstance(flow, Path), "validate() asks for 'flow' or 'routes'"
    return Config(
        source=path, sip_listen=HostPort(*sip["listen"]), sip_user=sip["user"],
        rtp_port=sip["rtp_port"], rtp_port_range=sip["rtp_port_range"],
        max_calls=sip["max_calls"], trunks=trunks, agents=agents, queues=queues,
        flow=flow, store=top["store"], prompt_cache=prompts["cache"],
        voices=dict(prompts["voices"]), speech_rate=prompts["rate"],
        music_on_hold=top.get("music_on_hold"), metrics=_host_port(metrics),
        sl_threshold=float(sl_threshold), sl_window=float(sl_window),
        log_level=top["log_level"], sip_log_level=sip["log_level"],
        sip_refuse_strangers=sip["refuse_strangers"],
        extensions={name: Extension(name, e["uri"])
                    for name, e in (top.get("extensions") or {}).items()},
        dial_out=tuple(DialRule(r["pattern"], r["uri"], r["agent_transfers"], r["callbacks"],
                                r["flows"], r["campaigns"])
                       for r in top.get("dial_out") or ()),
        recordings=top["recordings"], feature_codes=FeatureCodes(**codes), edge=edge,
        **_ticket_settings(top),
        retention_days=top["retention_days"], routes=routes,
        drain_seconds=float(top["drain_seconds"]),
        recorded_queues=frozenset(name for name, q in (top.get("queues") or {}).items()
                                  if q["record"]),
        recording_min_free_mb=top["recording_min_free_mb"],
        queue_numbers={number: name for name, q in (top.get("queues") or {}).items()
                       if (number := normalise(q.get("number") or ""))},
        supervisors={name: Supervisor(name, v["uri"], tuple(v["queues"]), v["announce"],
                                      v.get("sms") or "")
                     for name, v in (top.get("supervisors") or {}).items()},
        devices={name: _device(name, d) for name, d in (top.get("devices") or {}).items()},
        console=_console(top.get("console", _NO_KEY)), campaigns_dir=top.get("campaigns"))


_NO_KEY = object()


def _console(value: object) -> ConsoleSettings | None:
    """The console's settings from the checked ``console`` value: absent is on, on loopback."""
    if value is _NO_KEY:
        return ConsoleSettings()
    if isinstance(value, tuple):
        return ConsoleSettings(HostPort(*value))
    if not isinstance(value, dict):
        return None  # off
    tls = value.get("tls") or {}
    return ConsoleSettings(HostPort(*value["listen"]), tls.get("cert"), tls.get("key"),
                           str(value["lang"]), float(value["session_hours"]))


def _ticket_settings(top: dict[str, Any]) -> dict[str, Any]:
    """The Config fields of tickets, dispositions and teams."""
    return {
        "dispositions": {code: Disposition(code, d["label"], d["resolves"])
                         for code, d in (top.get("dispositions") or {}).items()},
        "ticket_customer_variable": (top.get("tickets") or {}).get("customer_variable"),
        "teams": {name: _team(name, t, top.get("agents") or {})
                  for name, t in (top.get("teams") or {}).items()},
    }


def _team(name: str, t: dict[str, Any], agents: dict[str, Any]) -> Team:
    leader = str(t["leader"])
    lead = [leader] if leader in agents else []
    return Team(name, leader, tuple(dict.fromkeys([*t["members"], *lead])))


def _queue(name: str, q: dict[str, Any]) -> QueueSpec:
    members = tuple(Member(agent, int(level))
                    for level, names in (q.get("tiers") or {}).items() for agent in names)
    return QueueSpec(
        name, tuple(q.get("agents") or ()), members, q["strategy"],
        ring_timeout=float(q["ring_timeout"]), retry_delay=float(q["retry_delay"]),
        wrap_up=float(q["wrap_up"]), max_callers=q["max_callers"],
        join_empty=q["join_empty"], leave_empty_after=float(q["leave_empty_after"]),
        max_wait=float(q["max_wait"]), overflow=q.get("overflow"),
        tier_wait=float(q["tier_wait"]), tier_wait_multiply=q["tier_wait_multiply"],
        skill=q.get("skill"), skill_level=q["skill_level"],
        skill_fallback_after=float(q["skill_fallback_after"]),
        escalate_to=q.get("escalate_to"), announce_every=float(q["announce_every"]),
        disposition_hold=float(q["disposition_wait"]) if q["require_disposition"] else 0.0,
        script=str(q.get("script") or ""))

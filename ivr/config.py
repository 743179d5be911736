"""`ivr.yaml`: the appliance's configuration, checked like a flow (every error, with its place).

Every external thing is given by address or path, relative paths being taken from the folder of
the configuration file, so tests run the same code on loopback addresses and temporary folders.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.yamlsrc import Cursor, DocumentError, did_you_mean, load_document
from routing.acd import STRATEGIES, Member, QueueSpec

if TYPE_CHECKING:
    from ivr.edge import EdgeSettings

_SIP_URI = re.compile(r"^sips?:[^@\s]+@[^\s]+$")
_DIALLED = re.compile(r"[0-9*#+]{1,32}")
"""What a dial_out rule may put into a URI: keys of a phone, nothing that could change the host."""
_SAMPLE_NUMBER = "0212345678"


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

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.sources)


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

    def action_for(self, dialled: str) -> str | None:
        for action in ("login", "logout", "pause", "unpause"):
            if getattr(self, action) == dialled:
                return action
        return None


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

    def target(self, number: str) -> str | None:
        if not _DIALLED.fullmatch(number) or not self.pattern.fullmatch(number):
            return None
        return self.uri.replace("{number}", number)


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
    extensions: dict[str, Extension] = field(default_factory=dict)
    dial_out: tuple[DialRule, ...] = ()
    recordings: Path = Path("var/recordings")
    """Folder of voicemail recordings (WAV, one per message, named by call id)."""
    feature_codes: FeatureCodes = field(default_factory=lambda: FeatureCodes())
    callback: str | None = None
    """URI template that calls a caller back through the gateway: 'sip:{number}@gw'."""
    edge: EdgeSettings | None = None
    """The SIP edge (Kamailio) in front, when agents' phones register; see ivr/edge.py."""
    retention_days: int = 0
    """Days call records, queue events and voicemails are kept by ``ivr purge``; 0: forever."""

    def agent_for(self, address: str, user: str) -> Agent | None:
        """The agent whose phone this is: the URI's user and host must both match."""
        for agent in self.agents.values():
            m = re.match(r"sips?:([^@]+)@\[?([^\]:;>]+)", agent.uri)
            if m and m.group(1) == user and m.group(2) == address:
                return agent
        return None

    @property
    def sip_uri(self) -> str:
        return f"sip:{self.sip_user}@{self.sip_listen}"

    def trunk_for(self, address: str) -> Trunk | None:
        return next((t for t in self.trunks if t.allows(address)), None)

    def callback_target(self, number: str) -> str | None:
        """Where a callback to *number* (a caller who called in) goes, or None."""
        if self.callback is None or not _DIALLED.fullmatch(number):
            return None
        return self.callback.replace("{number}", number)

    def transfer_target(self, destination: str) -> str | None:
        """The SIP URI a transfer to *destination* dials, or None: not allowed.

        An extension by its name first, then the first ``dial_out`` rule whose pattern matches
        the whole number (digits, ``*``, ``#``, ``+`` only). Nothing else is ever dialled.
        """
        extension = self.extensions.get(destination)
        if extension is not None:
            return extension.uri
        for rule in self.dial_out:
            uri = rule.target(destination)
            if uri is not None:
                return uri
        return None


_TOP = ("sip", "trunks", "agents", "queues", "flow", "store", "prompts", "music_on_hold",
        "metrics", "log_level", "extensions", "dial_out", "recordings", "feature_codes",
        "edge", "callback", "retention_days")


def load_config(path: str | Path) -> Config:
    """Load and check *path*; raise :class:`~ivr.yamlsrc.DocumentError` listing every problem."""
    path = Path(path)
    root = load_document(path)
    base = path.resolve().parent
    top = root.mapping(allowed=_TOP, required=("sip", "trunks", "flow"))
    if top is None:
        root.problems.raise_if_any()
        raise AssertionError("unreachable")

    sip = _sip(top.get("sip"))
    trunks = _trunks(top["trunks"]) if "trunks" in top else ()
    agents = _agents(top["agents"]) if "agents" in top else {}
    queues = _queues(top["queues"], agents) if "queues" in top else {}
    flow = _path(top.get("flow"), base)
    store = _path(top.get("store"), base) or base / "var" / "centralino.db"
    prompts_dir, voices, rate = _prompts(top.get("prompts"), base)
    moh = _path(top.get("music_on_hold"), base)
    if moh is not None and not moh.is_file():
        top["music_on_hold"].error(f"music on hold file '{moh.name}' does not exist")
    metrics = None
    sl_threshold, sl_window = 20.0, 3600.0
    if "metrics" in top and top["metrics"].is_mapping():
        mf = top["metrics"].mapping(allowed=("listen", "service_level_threshold",
                                             "service_level_window"), required=("listen",))
        if mf is not None and "listen" in mf:
            metrics = _host_port(mf["listen"])
            sl_threshold = _num(mf, "service_level_threshold", 20.0, 1, 3600)
            sl_window = _num(mf, "service_level_window", 3600.0, 60, 7 * 86400)
    elif "metrics" in top and top["metrics"].text() not in (None, "off"):
        metrics = _host_port(top["metrics"])
    log_level = top["log_level"].choice(("debug", "info", "warning", "error")) \
        if "log_level" in top else "info"
    extensions = _extensions(top["extensions"]) if "extensions" in top else {}
    dial_out = _dial_out(top["dial_out"]) if "dial_out" in top else ()
    recordings = _path(top.get("recordings"), base) or base / "var" / "recordings"
    features = _feature_codes(top.get("feature_codes"))
    callback = None
    if "callback" in top:
        callback = top["callback"].text()
        if callback is not None and ("{number}" not in callback
                                     or not _SIP_URI.match(callback.replace("{number}", "1"))):
            top["callback"].error(f"'{callback}' is not a SIP URI template with {{number}}, such "
                                  "as sip:{number}@192.0.2.1")
            callback = None
    edge = None
    if "edge" in top:
        from ivr.edge import settings_from_yaml

        try:
            edge = settings_from_yaml(path).settings
        except DocumentError as exc:  # the edge's own checks, located in the same file
            seen = {str(p) for p in root.problems.items}
            root.problems.items.extend(p for p in exc.problems if str(p) not in seen)
    retention_days = 0
    if "retention_days" in top:
        retention_days = top["retention_days"].integer(0, 36500) or 0
    root.problems.raise_if_any()
    assert sip is not None and flow is not None
    listen, user, rtp, rtp_range, max_calls, sip_log = sip
    return Config(source=path, sip_listen=listen, sip_user=user, rtp_port=rtp,
                  rtp_port_range=rtp_range, max_calls=max_calls, trunks=trunks, agents=agents,
                  queues=queues, flow=flow, store=store, prompt_cache=prompts_dir, voices=voices,
                  speech_rate=rate, music_on_hold=moh, metrics=metrics,
                  sl_threshold=sl_threshold, sl_window=sl_window,
                  log_level=log_level or "info", sip_log_level=sip_log, extensions=extensions,
                  dial_out=dial_out, recordings=recordings, feature_codes=features, edge=edge,
                  callback=callback, retention_days=retention_days)


def _host_port(cursor: Cursor) -> HostPort | None:
    text = cursor.text()
    if text is None:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not (0 < int(port) < 65536):
        cursor.error(f"'{text}' is not an address:port such as 127.0.0.1:5080")
        return None
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        cursor.error(f"'{host}' is not an IP address (give the address to listen on)")
        return None
    return HostPort(host.strip("[]"), int(port))


def _sip(cursor: Cursor | None) -> tuple[HostPort, str, int, int, int, int] | None:
    if cursor is None:
        return None
    f = cursor.mapping(allowed=("listen", "user", "rtp_port", "rtp_port_range", "max_calls",
                                "log_level"), required=("listen",))
    if f is None or "listen" not in f:
        return None
    listen = _host_port(f["listen"])
    user = f["user"].text() if "user" in f else "ivr"
    rtp = f["rtp_port"].integer(1024, 65000) if "rtp_port" in f else 20000
    rtp_range = f["rtp_port_range"].integer(2, 20000) if "rtp_port_range" in f else 1000
    max_calls = f["max_calls"].integer(1, 10000) if "max_calls" in f else 128
    sip_log = f["log_level"].integer(0, 6) if "log_level" in f else 1
    if None in (listen, user, rtp, rtp_range, max_calls, sip_log):
        return None
    assert listen and user and rtp and rtp_range and max_calls is not None and sip_log is not None
    return listen, user, rtp, rtp_range, max_calls, sip_log


def _trunks(cursor: Cursor) -> tuple[Trunk, ...]:
    out = []
    entries = cursor.mapping()
    if entries is not None and not entries:
        cursor.error("configure at least one trunk: only trunk sources may place calls")
    for name, tc in (entries or {}).items():
        f = tc.mapping(allowed=("sources", "lines", "description", "ping", "ping_interval"),
                       required=("sources",))
        if f is None or "sources" not in f:
            continue
        nets = []
        for item in f["sources"].sequence() or ():
            text = item.text()
            if text is None:
                continue
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                item.error(f"'{text}' is not an IP address or network such as 192.0.2.10 or "
                           "192.0.2.0/28")
        lines = f["lines"].integer(1, 1000) if "lines" in f else 30
        ping = _host_port(f["ping"]) if "ping" in f else None
        interval = _num(f, "ping_interval", 30.0, 1, 3600)
        if lines is not None:
            out.append(Trunk(name, tuple(nets), lines, ping, interval))
    return tuple(out)


def _agents(cursor: Cursor) -> dict[str, Agent]:
    out = {}
    for name, ac in cursor.items():
        f = ac.mapping(allowed=("uri", "name", "skills", "max_no_answer", "password"),
                       required=("uri",))
        if f is None or "uri" not in f:
            continue
        uri = f["uri"].text()
        if uri is not None and not _SIP_URI.match(uri):
            f["uri"].error(f"'{uri}' is not a SIP URI such as sip:anna@192.0.2.20:5060")
            continue
        skills: dict[str, int] = {}
        for skill, level in (f["skills"].items() if "skills" in f else ()):
            value = level.integer(0, 10)
            if value is not None:
                skills[skill] = value
        max_no_answer = f["max_no_answer"].integer(0, 100) if "max_no_answer" in f else 3
        if uri is not None:
            out[name] = Agent(name, uri, skills, 3 if max_no_answer is None else max_no_answer)
    return out


_QUEUE_KEYS = ("agents", "tiers", "strategy", "ring_timeout", "retry_delay", "wrap_up",
               "max_callers", "join_empty", "leave_empty_after", "max_wait", "overflow",
               "tier_wait", "tier_wait_multiply", "skill", "skill_level", "skill_fallback_after",
               "escalate_to", "announce_every", "description")


def _extensions(cursor: Cursor) -> dict[str, Extension]:
    out = {}
    for name, ec in cursor.items():
        if not _DIALLED.fullmatch(name):
            ec.error(f"extension '{name}' must be a number a caller can key (digits, * # +)")
            continue
        f = ec.mapping(allowed=("uri", "name", "description"), required=("uri",))
        if f is None or "uri" not in f:
            continue
        uri = f["uri"].text()
        if uri is not None and not _SIP_URI.match(uri):
            f["uri"].error(f"'{uri}' is not a SIP URI such as sip:reception@192.0.2.20:5060")
        elif uri is not None:
            out[name] = Extension(name, uri)
    return out


def _dial_out(cursor: Cursor) -> tuple[DialRule, ...]:
    out = []
    for item in cursor.sequence() or ():
        f = item.mapping(allowed=("pattern", "uri", "description"), required=("pattern", "uri"))
        if f is None or "pattern" not in f or "uri" not in f:
            continue
        text, uri = f["pattern"].text(), f["uri"].text()
        pattern = None
        if text is not None:
            try:
                pattern = re.compile(text)
            except re.error as exc:
                f["pattern"].error(f"'{text}' is not a valid regular expression: {exc}")
        if uri is not None:
            placeholders = set(re.findall(r"\{([^{}]*)\}", uri)) - {"number"}
            if placeholders:
                f["uri"].error(f"unknown placeholder '{{{sorted(placeholders)[0]}}}' in '{uri}'; "
                               "only {number} (the number dialled) can be used")
                uri = None
            elif not _SIP_URI.match(uri.replace("{number}", _SAMPLE_NUMBER)):
                f["uri"].error(f"'{uri}' is not a SIP URI template such as "
                               "sip:{number}@192.0.2.1")
                uri = None
        if pattern is not None and uri is not None:
            out.append(DialRule(pattern, uri))
    return tuple(out)


def _queues(cursor: Cursor, agents: dict[str, Agent]) -> dict[str, QueueSpec]:
    out: dict[str, QueueSpec] = {}
    entries = cursor.mapping() or {}
    for name, qc in entries.items():
        f = qc.mapping(allowed=_QUEUE_KEYS)
        if f is None:
            continue
        if "agents" not in f and "tiers" not in f:
            qc.error("a queue needs 'agents' (level 1) or 'tiers'")
            continue

        def names(c: Cursor) -> list[str]:
            found = []
            for item in c.sequence() or ():
                agent = item.text()
                if agent is not None and agent not in agents:
                    item.error(f"unknown agent '{agent}'.{did_you_mean(agent, agents)}"
                               .rstrip("."))
                elif agent is not None:
                    found.append(agent)
            return found

        level1 = names(f["agents"]) if "agents" in f else []
        members: list[Member] = []
        for level_text, tc in (f["tiers"].items() if "tiers" in f else ()):
            if level_text not in ("1", "2", "3", "4", "5"):
                tc.error(f"tier '{level_text}' is not a support level 1 to 5")
                continue
            members += [Member(a, int(level_text)) for a in names(tc)]

        strategy = f["strategy"].choice(STRATEGIES, "queue strategy") if "strategy" in f \
            else "longest_idle"
        num = functools.partial(_num, f)
        flag = functools.partial(_flag, f)
        out[name] = QueueSpec(
            name, tuple(level1), tuple(members), strategy or "longest_idle",
            ring_timeout=num("ring_timeout", 15.0, 1, 600),
            retry_delay=num("retry_delay", 2.0, 0, 600),
            wrap_up=num("wrap_up", 0.0, 0, 3600),
            max_callers=int(num("max_callers", 0, 0, 10000)),
            join_empty=flag("join_empty", True),
            leave_empty_after=num("leave_empty_after", 0.0, 0, 86400),
            max_wait=num("max_wait", 0.0, 0, 86400),
            overflow=f["overflow"].text() if "overflow" in f else None,
            tier_wait=num("tier_wait", 0.0, 0, 3600),
            tier_wait_multiply=flag("tier_wait_multiply", False),
            skill=f["skill"].text() if "skill" in f else None,
            skill_level=int(num("skill_level", 1, 0, 10)),
            skill_fallback_after=num("skill_fallback_after", 0.0, 0, 86400),
            escalate_to=f["escalate_to"].text() if "escalate_to" in f else None,
            announce_every=num("announce_every", 0.0, 0, 3600))
    for name, spec in out.items():
        for key in ("overflow", "escalate_to"):
            target = getattr(spec, key)
            if target is not None and target not in entries:
                where = entries[name].mapping() or {}
                where[key].error(f"unknown queue '{target}'.{did_you_mean(target, entries)}"
                                 .rstrip("."))
            elif target == name:
                where = entries[name].mapping() or {}
                where[key].error(f"a queue cannot send callers to itself ('{target}')")
    return out


def _num(f: dict[str, Cursor], key: str, default: float, lo: float, hi: float) -> float:
    value = f[key].number(lo, hi) if key in f else None
    return default if value is None else value


def _flag(f: dict[str, Cursor], key: str, default: bool) -> bool:
    value = f[key].boolean() if key in f else None
    return default if value is None else value


def _feature_codes(cursor: Cursor | None) -> FeatureCodes:
    if cursor is None:
        return FeatureCodes()
    f = cursor.mapping(allowed=("login", "logout", "pause", "unpause", "escalate"))
    codes = {}
    for key, c in (f or {}).items():
        text = c.text()
        if text is not None and not re.fullmatch(r"[0-9*#]{1,8}", text):
            c.error(f"'{text}' is not a feature code of phone keys such as *41")
        elif text is not None:
            codes[key] = text
    result = FeatureCodes(**codes)
    values = [result.login, result.logout, result.pause, result.unpause]
    if len(set(values)) != len(values):
        cursor.error("feature codes must differ from each other")
    return result


def _path(cursor: Cursor | None, base: Path) -> Path | None:
    if cursor is None:
        return None
    text = cursor.text()
    return None if text is None else (base / text)


def _prompts(cursor: Cursor | None, base: Path) -> tuple[Path, dict[str, str], int]:
    voices = {"it": "it", "en": "en-us"}
    cache = base / "var" / "prompts"
    rate = 150
    if cursor is None:
        return cache, voices, rate
    f = cursor.mapping(allowed=("cache", "voices", "rate"))
    if f is None:
        return cache, voices, rate
    cache = _path(f.get("cache"), base) or cache
    if "voices" in f:
        for lang, vc in f["voices"].items():
            voice = vc.text()
            if voice is not None:
                voices[lang] = voice
    if "rate" in f:
        rate = f["rate"].integer(80, 400) or rate
    return cache, voices, rate

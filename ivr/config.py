"""`ivr.yaml`: the appliance's configuration, checked like a flow (every error, with its place).

Every external thing is given by address or path, relative paths being taken from the folder of
the configuration file, so tests run the same code on loopback addresses and temporary folders.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from ivr.yamlsrc import Cursor, did_you_mean, load_document

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


@dataclass(frozen=True)
class QueueConfig:
    name: str
    agents: tuple[str, ...]
    ring_timeout: float = 15.0
    retry_delay: float = 2.0
    wrap_up: float = 0.0


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
    queues: dict[str, QueueConfig]
    flow: Path
    store: Path
    prompt_cache: Path
    voices: dict[str, str]
    speech_rate: int
    music_on_hold: Path | None
    metrics: HostPort | None
    log_level: str = "info"
    sip_log_level: int = 1
    extensions: dict[str, Extension] = field(default_factory=dict)
    dial_out: tuple[DialRule, ...] = ()
    recordings: Path = Path("var/recordings")
    """Folder of voicemail recordings (WAV, one per message, named by call id)."""

    @property
    def sip_uri(self) -> str:
        return f"sip:{self.sip_user}@{self.sip_listen}"

    def trunk_for(self, address: str) -> Trunk | None:
        return next((t for t in self.trunks if t.allows(address)), None)

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
        "metrics", "log_level", "extensions", "dial_out", "recordings")


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
    if "metrics" in top and top["metrics"].text() not in (None, "off"):
        metrics = _host_port(top["metrics"])
    log_level = top["log_level"].choice(("debug", "info", "warning", "error")) \
        if "log_level" in top else "info"
    extensions = _extensions(top["extensions"]) if "extensions" in top else {}
    dial_out = _dial_out(top["dial_out"]) if "dial_out" in top else ()
    recordings = _path(top.get("recordings"), base) or base / "var" / "recordings"
    root.problems.raise_if_any()
    assert sip is not None and flow is not None
    listen, user, rtp, rtp_range, max_calls, sip_log = sip
    return Config(source=path, sip_listen=listen, sip_user=user, rtp_port=rtp,
                  rtp_port_range=rtp_range, max_calls=max_calls, trunks=trunks, agents=agents,
                  queues=queues, flow=flow, store=store, prompt_cache=prompts_dir, voices=voices,
                  speech_rate=rate, music_on_hold=moh, metrics=metrics,
                  log_level=log_level or "info", sip_log_level=sip_log, extensions=extensions,
                  dial_out=dial_out, recordings=recordings)


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
        f = tc.mapping(allowed=("sources", "lines", "description"), required=("sources",))
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
        if lines is not None:
            out.append(Trunk(name, tuple(nets), lines))
    return tuple(out)


def _agents(cursor: Cursor) -> dict[str, Agent]:
    out = {}
    for name, ac in cursor.items():
        f = ac.mapping(allowed=("uri", "name"), required=("uri",))
        if f is None or "uri" not in f:
            continue
        uri = f["uri"].text()
        if uri is not None and not _SIP_URI.match(uri):
            f["uri"].error(f"'{uri}' is not a SIP URI such as sip:anna@192.0.2.20:5060")
            continue
        if uri is not None:
            out[name] = Agent(name, uri)
    return out


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


def _queues(cursor: Cursor, agents: dict[str, Agent]) -> dict[str, QueueConfig]:
    out = {}
    for name, qc in cursor.items():
        f = qc.mapping(allowed=("agents", "ring_timeout", "retry_delay", "wrap_up",
                                "description"), required=("agents",))
        if f is None or "agents" not in f:
            continue
        members = []
        for item in f["agents"].sequence() or ():
            agent = item.text()
            if agent is not None and agent not in agents:
                item.error(f"unknown agent '{agent}'.{did_you_mean(agent, agents)}".rstrip("."))
            elif agent is not None:
                members.append(agent)
        ring = f["ring_timeout"].number(1, 600) if "ring_timeout" in f else 15.0
        retry = f["retry_delay"].number(0, 600) if "retry_delay" in f else 2.0
        wrap = f["wrap_up"].number(0, 3600) if "wrap_up" in f else 0.0
        if ring is not None and retry is not None and wrap is not None:
            out[name] = QueueConfig(name, tuple(members), ring, retry, wrap)
    return out


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

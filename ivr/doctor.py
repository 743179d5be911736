"""``ivr doctor --security``: the attack surface as ``ivr.yaml`` configures it.

Who may call in (trunk sources, line caps), what may be dialled and by whom (extensions,
``dial_out`` rules, callbacks, agents' phones), who may register at the edge, which ports are
open, and whether the configuration file gives its secrets away. Each fact is a
:class:`Finding` (``ok``, ``warning`` or ``danger``); :func:`format_report` prints them::

    findings = security_report(load_config("ivr.yaml"), Path("ivr.yaml"))
    print(format_report(findings))

A ``dial_out`` pattern is checked by what it accepts, not by how it looks: the regular
expression is read into an automaton over the keys of a phone, which is searched for the
shortest number of each costly kind (international, satellite, premium) it lets through; that
number is shown as the example. Nothing is dialled, nothing is sent: the report reads the
configuration and the file modes only.
"""

from __future__ import annotations

import ipaddress
import re
import re._parser as _sre  # the stdlib's own reader of regular expressions
import stat
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ivr.config import Config, DialRule, Trunk
from ivr.config_spec import DEFAULT_ROUTE
from ivr.numbers import normalise

Level = Literal["ok", "warning", "danger"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "danger")
AREAS = {
    "trunks": "Trunks: who may call in",
    "dialling": "Dialling: what may be dialled, and by whom",
    "registration": "Registration: who may register",
    "supervision": "Supervision: who may listen to calls",
    "ports": "Open ports",
    "files": "Files",
}
"""Areas of the report, in the order printed, with their headings."""


@dataclass(frozen=True)
class Finding:
    """One fact of the report."""

    level: Level
    """ok: as it should be; warning: worth a look; danger: open to abuse (toll fraud...)."""
    area: str
    """A key of :data:`AREAS`."""
    text: str


def security_report(config: Config, config_path: Path) -> list[Finding]:
    """Every finding about *config*, loaded from *config_path*, in the order of :data:`AREAS`."""
    return [*_trunks(config), *_dialling(config), *_registration(config),
            *_supervision(config), *_ports(config), *_files(config, config_path)]


def format_report(findings: Sequence[Finding]) -> str:
    """The findings under their areas' headings, then a count by level."""
    lines: list[str] = []
    labels = {"ok": "ok", "warning": "WARNING", "danger": "DANGER"}
    for area, heading in AREAS.items():
        mine = [f for f in findings if f.area == area]
        if mine:
            lines.append(heading)
            lines.extend(f"  {labels[f.level]:<8} {f.text}" for f in mine)
            lines.append("")
    counts = {level: sum(1 for f in findings if f.level == level) for level in LEVELS}
    lines.append(f"{_plural(counts['danger'], 'danger')}, "
                 f"{_plural(counts['warning'], 'warning')}, {counts['ok']} ok")
    return "\n".join(lines) + "\n"


def worst_level(findings: Iterable[Finding]) -> Level:
    """The most serious level among *findings* (``ok`` for none), for an exit status."""
    return max((f.level for f in findings), key=LEVELS.index, default="ok")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- trunks ------------------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _net(net: Network) -> str:
    return str(net.network_address) if net.num_addresses == 1 else net.with_prefixlen


def _is_open(net: Network) -> bool:
    """A source that is no restriction: the whole address space (or nearly)."""
    return net.prefixlen < (8 if net.version == 4 else 16)


def _is_wide(net: Network) -> bool:
    """A source much larger than a gateway's address: more than a /24 (IPv4) or a /64."""
    return net.prefixlen < (24 if net.version == 4 else 64)


def _trunks(config: Config) -> list[Finding]:
    out: list[Finding] = []
    for trunk in config.trunks:
        sources = ", ".join(_net(n) for n in trunk.sources)
        out.append(Finding("ok", "trunks", f"trunk '{trunk.name}': calls from {sources}; at most "
                                           f"{trunk.lines} at once"))
        for net in trunk.sources:
            if _is_open(net):
                out.append(Finding("danger", "trunks", f"trunk '{trunk.name}' takes calls from "
                                   f"{_net(net)}: anyone who reaches the switchboard can call in "
                                   "and use its transfers and callbacks"))
            elif _is_wide(net):
                out.append(Finding("warning", "trunks", f"trunk '{trunk.name}' takes calls from "
                                   f"{_net(net)} ({net.num_addresses:,} addresses): give the "
                                   "gateway's own address"))
    out.append(Finding("ok", "trunks", _routes(config)))
    return out


def _routes(config: Config) -> str:
    if not config.routes:
        return f"every called number plays flow {config.flow.name}"
    named = [f"{r.number} -> {r.flow.name}" + (f" ({r.language})" if r.language else "")
             for r in config.routes.values() if r.number != DEFAULT_ROUTE]
    default = config.routes.get(DEFAULT_ROUTE)
    other = (f"any other number -> {default.flow.name}" if default is not None
             else "any other number is refused (404)")
    return f"called numbers: {', '.join([*named, other])}"


def _open_trunk(config: Config) -> bool:
    return any(_is_open(net) for trunk in config.trunks for net in trunk.sources)


# -- dialling ----------------------------------------------------------------------------------

def _number_through_trunk(uri: str, trunks: Sequence[Trunk]) -> Trunk | None:
    """The trunk a URI reaches when it is a number at a trunk's address (a call out through
    the gateway, which may cost money); None for anything else."""
    m = re.match(r"sips?:([^@]*)@(\[[^\]]+\]|[^:;>]+)", uri)
    if m is None or not normalise(m.group(1)):
        return None
    return next((t for t in trunks if t.allows(m.group(2).strip("[]"))), None)


def _dialling(config: Config) -> list[Finding]:
    out: list[Finding] = []
    if not config.extensions and not config.dial_out:
        out.append(Finding("ok", "dialling", "transfers dial nothing: no extensions, no dial_out "
                                             "rules"))
    for name, extension in config.extensions.items():
        trunk = _number_through_trunk(extension.uri, config.trunks)
        through = f" (a number through trunk '{trunk.name}')" if trunk else ""
        out.append(Finding("ok", "dialling", f"transfers may dial extension '{name}': "
                                             f"{extension.uri}{through}"))
    out.extend(_dial_rule(i, rule) for i, rule in enumerate(config.dial_out))
    out.append(_agent_transfers(config))
    out.append(_callbacks(config))
    for agent in config.agents.values():
        trunk = _number_through_trunk(agent.uri, config.trunks)
        if trunk is not None:
            out.append(Finding("warning", "dialling", f"agent '{agent.name}' is rung at "
                               f"{agent.uri}, a number through trunk '{trunk.name}': its calls "
                               "go out through the gateway and may cost money"))
    if config.agents:
        rung = ", ".join(f"{a.name} ({a.uri})" for a in config.agents.values())
        out.append(Finding("ok", "dialling", f"agents' phones rung: {rung}"))
    return out


def _agent_transfers(config: Config) -> Finding:
    """What an agent's phone may transfer its caller to (REFER): nothing else is taken."""
    numbers = {queue: number for number, queue in config.queue_numbers.items()}
    targets = [f"extension{'s' if len(config.extensions) > 1 else ''} "
               f"{', '.join(config.extensions)}"] if config.extensions else []
    if config.queues:
        targets.append("queue" + ("s " if len(config.queues) > 1 else " ") + ", ".join(
            f"{q} (number {numbers[q]})" if q in numbers else q for q in config.queues))
    rules = [f"dial_out[{i}]" for i, rule in enumerate(config.dial_out) if rule.agent_transfers]
    if rules:
        targets.append(f"the numbers of {', '.join(rules)}")
    if not targets:
        return Finding("ok", "dialling", "agents' phones may transfer callers to nothing "
                                         "(every REFER is refused)")
    return Finding("ok", "dialling", f"agents' phones may transfer callers (REFER) to "
                                     f"{'; '.join(targets)}; nothing else")


def _callbacks(config: Config) -> Finding:
    """What a callback may dial: a caller's number (a caller ID anyone can forge) that a
    ``dial_out`` rule with ``callbacks: true`` allows; each such rule is judged with the rest."""
    rules = [f"dial_out[{i}]" for i, rule in enumerate(config.dial_out) if rule.callbacks]
    if not rules:
        return Finding("ok", "dialling", "callbacks dial nothing: no dial_out rule has "
                                         "'callbacks: true'")
    return Finding("ok", "dialling", f"callbacks may dial a waiting caller's number (its caller "
                                     f"ID, which can be forged) only if {' or '.join(rules)} "
                                     "allows it; nothing else")


def _dial_rule(index: int, rule: DialRule) -> Finding:
    head = f"dial_out[{index}] '{rule.pattern.pattern}' -> {rule.uri}"
    users = [what for what, on in (("flows' transfers", rule.flows),
                                   ("agents' transfers", rule.agent_transfers),
                                   ("callbacks", rule.callbacks)) if on]
    head += f" (for {', '.join(users) or 'nothing: no use enabled'})"
    try:
        nfa = Automaton.of(rule.pattern)
        costly = _costly(nfa)
        broad = _broad(nfa)
        example = nfa.search("")
    except CannotCheck as exc:
        return Finding("warning", "dialling", f"{head}: cannot be checked ({exc}); keep patterns "
                                              "to digits, classes, groups and counts")
    if costly:
        return Finding("danger", "dialling", f"{head} allows {'; '.join(costly + broad)}")
    if broad:
        return Finding("warning", "dialling", f"{head} is broader than it looks: "
                                              f"{'; '.join(broad)}")
    if example is None:
        return Finding("warning", "dialling", f"{head} allows no number at all")
    return Finding("ok", "dialling", f"{head}: numbers such as {example}; no international, "
                                     "satellite or premium number")


_DIGITS = "0123456789"
_INTERNATIONAL = tuple([f"{p}{d}" for p in ("00", "+") for d in "12456789"]
                       + [f"{p}3{d}" for p in ("00", "+") for d in "012345678"])
"""Prefixes of international numbers other than Italy's (+39 / 0039)."""
_SATELLITE = tuple(f"{p}{c}" for p in ("00", "+") for c in ("870", "881", "882"))
_PREMIUM = tuple((f"{p}{code}", len(p) + length)
                 for p in ("", "0039", "+39")
                 for code, length in (("89", 6), ("166", 6), ("144", 6), ("12", 4)))
"""Italian premium-rate and directory numbers (89x, 166, 144, 12xx), also dialled as +39:
(prefix, shortest number)."""
_LONG = 18
"""No real number needs this many keys (E.164: 15 digits, plus 00 and a service code)."""


def _costly(nfa: Automaton) -> list[str]:
    out = []
    for what, probes in (("international numbers", [(p, 0) for p in _INTERNATIONAL]),
                         ("satellite numbers", [(p, 0) for p in _SATELLITE]),
                         ("premium numbers", list(_PREMIUM))):
        example = next((found for prefix, length in probes
                        if (found := nfa.search(prefix, length)) is not None), None)
        if example is not None:
            out.append(f"{what} (e.g. {example})")
    return out


def _broad(nfa: Automaton) -> list[str]:
    out = []
    if all(nfa.search(d) is not None for d in _DIGITS):
        out.append("numbers starting with any digit")
    long = nfa.search("", _LONG)
    if long is not None:
        out.append(f"numbers of {_LONG} keys or more (e.g. {long})")
    service = nfa.search("", 0, service=True)
    if service is not None:
        out.append(f"the keys * and # of service codes, such as call forwarding (e.g. {service})")
    return out


# -- what a regular expression accepts, over the keys of a phone -------------------------------

ALPHABET = "0123456789*#+"
MAX_KEYS = 32
"""A dialled number has at most this many keys (see ivr.config)."""
_MAX_STATES = 20_000
_MAX_SEARCH = 50_000


_UNSUPPORTED = {"ASSERT": "a look-ahead or look-behind",
                "ASSERT_NOT": "a look-ahead or look-behind",
                "GROUPREF": "a back-reference", "GROUPREF_EXISTS": "a conditional group",
                "AT_BOUNDARY": "a word boundary", "AT_NON_BOUNDARY": "a word boundary"}


class CannotCheck(Exception):
    """A pattern the automaton cannot follow (look-arounds, back-references...)."""


class Automaton:
    """A non-deterministic automaton over :data:`ALPHABET` accepting what ``fullmatch`` of a
    pattern accepts (within :data:`MAX_KEYS` keys), read from the stdlib's parse of it.

    Edges are ``(kind, keys, target)``: kind ``eps`` (free), ``begin`` (only before the first
    key: ``^``), ``end`` (only after the last key: ``$``) or ``keys`` (consumes one of *keys*).
    Atomic groups and possessive repeats are read as ordinary ones, so the automaton may accept
    more than the pattern, never less: a warning too many, never one too few.
    """

    def __init__(self) -> None:
        self.edges: list[list[tuple[str, frozenset[str], int]]] = []
        self.start = self._state()
        self.final = self._state()

    @classmethod
    def of(cls, pattern: re.Pattern[str]) -> Automaton:
        nfa = cls()
        try:
            parsed = _sre.parse(pattern.pattern, pattern.flags)
        except Exception as exc:  # noqa: BLE001 - the stdlib's parser may change with Python
            raise CannotCheck(f"unreadable: {exc}") from None
        end = nfa._sequence(list(parsed), nfa.start)
        nfa._edge(end, "eps", nfa.final)
        return nfa

    # -- building ----------------------------------------------------------------------------
    def _state(self) -> int:
        if len(self.edges) >= _MAX_STATES:
            raise CannotCheck("too many repetitions")
        self.edges.append([])
        return len(self.edges) - 1

    def _edge(self, a: int, kind: str, b: int, keys: Iterable[str] = ()) -> None:
        self.edges[a].append((kind, frozenset(keys), b))

    def _sequence(self, items: Sequence[tuple[Any, Any]], state: int) -> int:
        for op, av in items:
            state = self._item(str(op), av, state)
        return state

    def _item(self, op: str, av: Any, state: int) -> int:
        if op in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            nxt = self._state()
            self._edge(state, "keys", nxt, _keys(op, av))
            return nxt
        if op == "SUBPATTERN":
            return self._sequence(list(av[3]), state)
        if op == "ATOMIC_GROUP":
            return self._sequence(list(av), state)
        if op == "BRANCH":
            end = self._state()
            for branch in av[1]:
                self._edge(self._sequence(list(branch), state), "eps", end)
            return end
        if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            return self._repeat(av[0], av[1], list(av[2]), state)
        if op == "AT":
            kind = {"AT_BEGINNING": "begin", "AT_BEGINNING_STRING": "begin",
                    "AT_END": "end", "AT_END_STRING": "end"}.get(str(av))
            if kind is None:
                raise CannotCheck(_UNSUPPORTED.get(str(av), str(av).lower()))
            nxt = self._state()
            self._edge(state, kind, nxt)
            return nxt
        raise CannotCheck(_UNSUPPORTED.get(op, op.lower()))

    def _repeat(self, low: int, high: int, body: list[tuple[Any, Any]], state: int) -> int:
        # more copies than keys in a number change nothing that can be dialled
        low = min(low, MAX_KEYS + 1)
        for _ in range(low):
            state = self._sequence(body, state)
        if high > MAX_KEYS + 1:
            # a fresh head: looping back into a state shared with a branch would let the
            # other branches follow the loop
            head = self._state()
            self._edge(state, "eps", head)
            self._edge(self._sequence(body, head), "eps", head)
            return head
        end = self._state()
        self._edge(state, "eps", end)
        for _ in range(high - low):
            state = self._sequence(body, state)
            self._edge(state, "eps", end)
        return end

    # -- searching ---------------------------------------------------------------------------
    def _closure(self, states: Iterable[int], first: bool, last: bool) -> frozenset[int]:
        seen = set(states)
        todo = list(seen)
        while todo:
            for kind, _, b in self.edges[todo.pop()]:
                if b not in seen and (kind == "eps" or (kind == "begin" and first)
                                      or (kind == "end" and last)):
                    seen.add(b)
                    todo.append(b)
        return frozenset(seen)

    def _step(self, states: frozenset[int], key: str) -> frozenset[int]:
        return self._closure((b for a in states for kind, keys, b in self.edges[a]
                              if kind == "keys" and key in keys), False, False)

    def _accepts(self, states: frozenset[int]) -> bool:
        return self.final in self._closure(states, False, True)

    def search(self, prefix: str, min_keys: int = 0, *, service: bool = False) -> str | None:
        """The shortest number starting with *prefix*, of at least *min_keys* keys (and
        holding ``*`` or ``#`` if *service*), that the pattern accepts; None if there is none.
        """
        states = self._closure([self.start], True, False)
        for key in prefix:
            states = self._step(states, key)
        if not states:
            return None
        need = max(1, min_keys)
        queue = deque([(states, prefix)])
        seen = {(states, min(len(prefix), need), service and _has_service(prefix))}
        while queue:
            states, text = queue.popleft()
            if (len(text) >= need and (not service or _has_service(text))
                    and self._accepts(states)):
                return text
            if len(text) >= MAX_KEYS:
                continue
            for key in ALPHABET:
                nxt = self._step(states, key)
                grown = text + key
                mark = (nxt, min(len(grown), need), service and _has_service(grown))
                if nxt and mark not in seen:
                    if len(seen) >= _MAX_SEARCH:
                        raise CannotCheck("too many alternatives")
                    seen.add(mark)
                    queue.append((nxt, grown))
        return None


def _has_service(text: str) -> bool:
    return "*" in text or "#" in text


def _keys(op: str, av: Any) -> frozenset[str]:
    """The keys of a phone one character of the pattern matches."""
    if op == "ANY":
        return frozenset(ALPHABET)
    if op == "LITERAL":
        return frozenset(ALPHABET) & {chr(av)}
    if op == "NOT_LITERAL":
        return frozenset(ALPHABET) - {chr(av)}
    keys: set[str] = set()
    negate = False
    for kind, value in av:
        kind = str(kind)
        if kind == "NEGATE":
            negate = True
        elif kind == "LITERAL":
            keys |= {chr(value)}
        elif kind == "RANGE":
            keys |= {k for k in ALPHABET if value[0] <= ord(k) <= value[1]}
        elif kind == "CATEGORY":
            keys |= _category(str(value))
        else:
            raise CannotCheck(f"class item {kind.lower()}")
    chosen = frozenset(ALPHABET) - keys if negate else frozenset(keys)
    return chosen & frozenset(ALPHABET)


def _category(name: str) -> set[str]:
    digits, others = set(_DIGITS), set("*#+")
    table = {"CATEGORY_DIGIT": digits, "CATEGORY_NOT_DIGIT": others,
             "CATEGORY_WORD": digits, "CATEGORY_NOT_WORD": others,
             "CATEGORY_SPACE": set(), "CATEGORY_NOT_SPACE": digits | others}
    if name not in table:
        raise CannotCheck(f"class {name.lower()}")
    return table[name]


# -- registration ------------------------------------------------------------------------------

_MIN_PASSWORD = 12


def _registration(config: Config) -> list[Finding]:
    edge = config.edge
    if edge is None:
        return [Finding("ok", "registration", "no SIP edge: no phone registers; agents are rung "
                                              "at the addresses in the configuration")]
    names = ", ".join(sorted(edge.agents)) or "nobody"
    out = [Finding("ok", "registration", f"phones register at the edge {edge.listen} (realm "
                                         f"{edge.realm}) with a password: {names}")]
    if edge.agent_sources:
        out.append(Finding("ok", "registration", "phones may register only from "
                                                 f"{', '.join(edge.agent_sources)}"))
    else:
        out.append(Finding("warning", "registration", "phones may register from any address: "
                           f"anyone who reaches {edge.listen} can try agents' passwords (set "
                           "edge.agent_sources)"))
    for name, password in sorted(edge.agents.items()):
        if len(password) < _MIN_PASSWORD:
            out.append(Finding("warning", "registration", f"agent '{name}' has a weak password "
                               f"(shorter than {_MIN_PASSWORD} characters)"))
        elif name.lower() in password.lower():
            out.append(Finding("warning", "registration", f"agent '{name}' has a weak password "
                               "(it contains the agent's name)"))
    for agent in config.agents.values():
        if agent.name not in edge.agents:
            out.append(Finding("warning", "registration", f"agent '{agent.name}' has no password "
                               "behind the edge: its phone cannot register, and its calls go "
                               f"straight to {agent.uri}"))
    return out


def _supervision(config: Config) -> list[Finding]:
    """Who may listen to calls, and a supervisor's phone that shares a trunk's address (a
    caller through that trunk could give the supervisor's user name as theirs) unless it
    registers with the edge, which lets only the supervisor call From that name."""
    out: list[Finding] = []
    edge = config.edge
    for sup in config.supervisors.values():
        told = "the agent hears a tone" if sup.announce else "unannounced"
        out.append(Finding("ok", "supervision", f"supervisor '{sup.name}' ({sup.uri}) may "
                           f"listen to, whisper in and join calls of {', '.join(sup.queues)} "
                           f"({told})"))
        host = re.sub(r"^sips?:[^@]*@\[?([^\]:;>]+).*$", r"\1", sup.uri)
        trunk = config.trunk_for(host)
        if edge is not None and sup.name in edge.supervisors:
            out.extend(_edge_supervisor(sup.name, edge.supervisors[sup.name], str(edge.listen)))
        elif trunk is not None:
            out.append(Finding("warning", "supervision", f"supervisor '{sup.name}''s phone is "
                               f"at {host}, a source of trunk '{trunk.name}': a call through "
                               "that trunk giving the supervisor's user name could listen in; "
                               "give the phone an address of its own"))
    return out


def _edge_supervisor(name: str, password: str, listen: str) -> list[Finding]:
    """A supervisor whose phone registers with the edge: who their calls are taken from."""
    out = [Finding("ok", "supervision", f"supervisor '{name}' registers at the edge {listen} "
                   "with a password: only a call the edge authenticated as theirs may use the "
                   "supervision codes (the edge refuses a trunk's call From their name)")]
    if len(password) < _MIN_PASSWORD:
        out.append(Finding("warning", "supervision", f"supervisor '{name}' has a weak "
                           f"password (shorter than {_MIN_PASSWORD} characters)"))
    elif name.lower() in password.lower():
        out.append(Finding("warning", "supervision", f"supervisor '{name}' has a weak "
                           "password (it contains the supervisor's name)"))
    if normalise(name) is not None:
        out.append(Finding("warning", "supervision", f"supervisor '{name}''s name is a number: "
                           "the edge refuses a trunk's calls From it, a caller's with that "
                           "number too; give the supervisor a name"))
    return out


# -- ports -------------------------------------------------------------------------------------

def _ports(config: Config) -> list[Finding]:
    sip = config.sip_listen
    last_rtp = config.rtp_port + config.rtp_port_range - 1
    out = [_bound(config, f"SIP (UDP) on {sip}", sip.host, "calls only from trunk sources"),
           _bound(config, f"RTP (UDP) ports {config.rtp_port}-{last_rtp} on {sip.host}",
                  sip.host, "media of calls from trunk sources")]
    if config.metrics is None:
        out.append(Finding("ok", "ports", "metrics are off"))
    else:
        out.append(_bound(config, f"metrics (HTTP, no password) on {config.metrics}",
                          config.metrics.host, None))
    if config.console is None:
        out.append(Finding("ok", "ports", "the web console is off"))
    else:
        console = config.console
        what = f"web console ({'HTTPS' if console.tls_cert else 'HTTP'}) on {console.listen}"
        if console.tls_cert is None and not ipaddress.ip_address(console.listen.host).is_loopback:
            out.append(Finding("warning", "ports", f"{what}: reachable from the network without "
                                                   "TLS, passwords travel in clear; set "
                                                   "console.tls"))
        else:
            out.append(_bound(config, what, console.listen.host, "users who log in"))
    if config.edge is not None:
        out.append(_bound(config, f"edge SIP (UDP) on {config.edge.listen}",
                          config.edge.listen.host, "calls only from trunk sources, phones "
                                                   "register with a password"))
        out.append(Finding("ok", "ports", f"edge JSON-RPC (HTTP) on 127.0.0.1:"
                                          f"{config.edge.rpc_port}: loopback only"))
    return out


def _bound(config: Config, what: str, host: str, guarded: str | None) -> Finding:
    """A listening address; *guarded* says who it answers when reachable from the network
    (None: anyone, e.g. the metrics page)."""
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        return Finding("warning", "ports", f"{what}: listens on every interface; give the "
                                           "address it must be reached at")
    if address.is_loopback:
        return Finding("ok", "ports", f"{what}: loopback only")
    if guarded is None:
        return Finding("warning", "ports", f"{what}: readable by anyone who reaches that "
                                           "address; keep it on loopback or a management network")
    if _open_trunk(config):
        return Finding("warning", "ports", f"{what}: reachable from the network, and a trunk "
                                           "takes calls from any address")
    return Finding("ok", "ports", f"{what}: {guarded}")


# -- files -------------------------------------------------------------------------------------

def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def _holds_passwords(path: Path) -> bool:
    try:
        top = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    agents = top.get("agents") if isinstance(top, dict) else None
    return isinstance(agents, dict) and any(
        isinstance(a, dict) and a.get("password") for a in agents.values())


def _files(config: Config, config_path: Path) -> list[Finding]:
    out: list[Finding] = []
    name = config_path.name
    mode = _mode(config_path)
    passwords = _holds_passwords(config_path)
    if mode is None:
        out.append(Finding("warning", "files", f"{name}: cannot read its mode"))
    elif mode & stat.S_IWOTH:
        out.append(Finding("danger", "files", f"{name} can be changed by every user (mode "
                                              f"{mode:04o}): chmod 600"))
    elif mode & stat.S_IROTH and passwords:
        out.append(Finding("warning", "files", f"{name} is readable by every user (mode "
                           f"{mode:04o}) and holds agents' passwords: chmod 600, or 640 with "
                           "the service's group"))
    elif passwords:
        out.append(Finding("ok", "files", f"{name} holds agents' passwords and other users "
                                          f"cannot read it (mode {mode:04o})"))
    else:
        out.append(Finding("ok", "files", f"{name} holds no password (mode {mode:04o})"))
    for flow in config.flow_paths():
        flow_mode = _mode(flow)
        if flow_mode is not None and flow_mode & stat.S_IWOTH:
            out.append(Finding("danger", "files", f"flow {flow.name} can be changed by every "
                               f"user (mode {flow_mode:04o}): a flow decides what callers may "
                               "dial"))
    store_mode = _mode(config.store)
    if store_mode is not None and store_mode & stat.S_IROTH:
        out.append(Finding("warning", "files", f"call records {config.store.name} are readable "
                           f"by every user (mode {store_mode:04o}): they hold callers' numbers"))
    return out


__all__ = ["AREAS", "LEVELS", "Automaton", "CannotCheck", "Finding", "Level", "format_report",
           "security_report", "worst_level"]

"""The edge's settings: what the generated configurations depend on, and how ``ivr.yaml``
gives them.

:class:`EdgeSettings` refuses, with :class:`EdgeError`, anything that cannot make a working
edge; :func:`settings_from_yaml` reads them from ``ivr.yaml`` and reports every problem located
(``file:line:col: yaml.path: message``), as the rest of the configuration does.

    >>> s = EdgeSettings(listen=Address("192.0.2.5", 5060), ivr=Address("127.0.0.1", 5080),
    ...                  trunk_sources=("198.51.100.7",), agents={"anna": "secret"})
    >>> s.agent_uri("anna"), s.rpc_url
    ('sip:anna@192.0.2.5:5060', 'http://127.0.0.1:5071/RPC')
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ivr.edge.passwords import MIN_LENGTH, password_problem
from ivr.yamlsrc import (
    Cursor,
    DocumentError,
    Problem,
    Problems,
    did_you_mean,
    load_document,
)

AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""What an agent's name may be to register: it is the SIP user part and an htable key."""
REALM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

DEFAULT_LISTEN = "127.0.0.1:5060"
DEFAULT_RPC_PORT = 5071
EDGE_KEYS = ("listen", "rpc_port", "realm", "trunk_sources", "agent_sources", "secrets")
"""The keys of the ``edge`` section of ``ivr.yaml``."""
PRIVATE_MODE_MASK = 0o077
"""Permission bits a file holding passwords must not have (group and others: no access)."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EdgeError(ValueError):
    """Settings that cannot make a working edge."""


@dataclass(frozen=True)
class Address:
    """An IP address and a port."""

    host: str
    port: int

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise EdgeError(f"'{self.host}' is not an IP address") from None
        if not 0 < self.port < 65536:
            raise EdgeError(f"port {self.port} is out of range")

    @property
    def is_ipv6(self) -> bool:
        return ipaddress.ip_address(self.host).version == 6

    @property
    def sip_host(self) -> str:
        """The host as written in a SIP URI or a Kamailio listen line (IPv6 in brackets)."""
        return f"[{self.host}]" if self.is_ipv6 else self.host

    def __str__(self) -> str:
        return f"{self.sip_host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Address:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise EdgeError(f"'{text}' is not an address:port such as 127.0.0.1:5060")
        return cls(host.strip("[]"), int(port))


@dataclass(frozen=True)
class EdgeSettings:
    """Everything the generated Kamailio configuration depends on."""

    listen: Address
    """Where Kamailio takes SIP over UDP: the address phones register with and trunks call."""
    ivr: Address
    """The switchboard's SIP address (``sip.listen`` of ``ivr.yaml``)."""
    trunk_sources: tuple[str, ...]
    """IP addresses or networks whose INVITEs (to any user) go to the switchboard."""
    agents: Mapping[str, str]
    """Agent name -> password for digest authentication."""
    supervisors: Mapping[str, str] = field(default_factory=dict)
    """Supervisor name -> password: supervisors whose phones register here too. Agents and
    supervisors are the edge's users (:attr:`users`): one SIP user name each."""
    rpc_port: int = DEFAULT_RPC_PORT
    """TCP port on 127.0.0.1 of the JSON-RPC (HTTP) interface."""
    realm: str = "centralino"
    agent_sources: tuple[str, ...] = ()
    """If given, only these addresses or networks may register; otherwise any source may
    (digest authentication is required either way)."""
    max_contacts: int = 4
    """Phones one agent may register at once (a call rings all of them)."""
    trunk_networks: tuple[Network, ...] = field(init=False, repr=False)
    agent_networks: tuple[Network, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trunk_networks", _networks(self.trunk_sources, "trunk source"))
        object.__setattr__(self, "agent_networks",
                           _networks(self.agent_sources, "agent source"))
        if ipaddress.ip_address(self.listen.host).is_unspecified:
            raise EdgeError(f"listen address {self.listen.host} is a wildcard; give the "
                            "address phones and trunks reach (Kamailio record-routes it)")
        if not 1024 <= self.rpc_port < 65536:
            raise EdgeError(f"rpc_port {self.rpc_port} must be in 1024-65535")
        if self.listen == self.ivr:
            raise EdgeError(f"the edge and the switchboard cannot both listen on {self.ivr}")
        if not REALM.fullmatch(self.realm):
            raise EdgeError(f"realm '{self.realm}' must be letters, digits, '.', '_' or '-'")
        both = sorted(self.agents.keys() & self.supervisors.keys())
        if both:
            raise EdgeError(f"'{both[0]}' is both an agent and a supervisor: one SIP user name "
                            "registers one person")
        for name, password in self.users.items():
            kind = "supervisor" if name in self.supervisors else "agent"
            if not AGENT_NAME.fullmatch(name):
                raise EdgeError(f"{kind} name '{name}' cannot register: use letters, digits, "
                                "'.', '_' or '-' (it is the SIP user name)")
            if not password:
                raise EdgeError(f"{kind} '{name}' has an empty password")
        if not 1 <= self.max_contacts <= 32:
            raise EdgeError("max_contacts must be in 1-32")

    @property
    def users(self) -> dict[str, str]:
        """Everyone who registers: agents and supervisors, name -> password."""
        return {**self.agents, **self.supervisors}

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}/RPC"

    def agent_uri(self, name: str) -> str:
        """The URI the switchboard dials to reach *name*'s registered phone."""
        return f"sip:{name}@{self.listen}"

    def ha1(self, name: str) -> str:
        """Digest HA1 of a user: MD5 of ``name:realm:password`` (RFC 2617)."""
        return hashlib.md5(f"{name}:{self.realm}:{self.users[name]}".encode(),
                           usedforsecurity=False).hexdigest()


def _networks(items: Sequence[str], what: str) -> tuple[Network, ...]:
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise EdgeError(f"{what} '{item}' is not an IP address or network such as "
                            "192.0.2.10 or 192.0.2.0/28") from None
    return tuple(out)


# -- from ivr.yaml ---------------------------------------------------------------------------

@dataclass(frozen=True)
class EdgePlan:
    """What ``ivr.yaml`` asks of the edge, with what an operator should know about it."""

    settings: EdgeSettings
    notes: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()
    """Why ``python -m ivr.edge`` will not put these passwords into service, one line each saying
    what to do: a password a cracking word list would find, or passwords in a file that group
    or others may read. (``ivr run`` reads the same settings and does not refuse them: it never
    sends the passwords anywhere.)"""


def _switchboard_address(root: Cursor, sip: Cursor | None) -> Address | None:
    """``sip.listen``: where Kamailio forwards calls to the switchboard."""
    if sip is None:
        root.error("missing required key 'sip'")
        return None
    sip_keys = sip.mapping() or {}
    if "listen" not in sip_keys:
        sip.error("missing required key 'listen'")
        return None
    return _address(sip_keys["listen"])


def _user_passwords(top: dict[str, Cursor], listen: Address | None, secrets: dict[str, Cursor]
                    ) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Passwords of the agents and of the supervisors who register with the edge, from
    ``ivr.yaml`` or from *secrets* (the secrets file's entries), and the located refusals of
    weak passwords. Both are declared alike: the name is the SIP user name, ``uri`` must be
    ``sip:NAME@`` the edge, the password is in ``ivr.yaml`` or in the secrets file."""
    agents = dict(top["agents"].items()) if "agents" in top else {}
    supervisors = dict(top["supervisors"].items()) if "supervisors" in top else {}
    for name, entry in secrets.items():
        if name not in agents and name not in supervisors:
            entry.error(f"'{name}' is not an agent or supervisor of ivr.yaml"
                        f"{did_you_mean(name, {**agents, **supervisors})}")
    weak: list[str] = []
    agent_pw = _passwords("agent", agents, listen, secrets, weak)
    sup_pw = _passwords("supervisor", supervisors, listen, secrets, weak)
    for name in sorted(agent_pw.keys() & sup_pw.keys()):
        supervisors[name].error(f"'{name}' is also an agent who registers: one SIP user name "
                                "registers one person, give the supervisor a name of their own")
    return agent_pw, sup_pw, weak


def _passwords(kind: str, declared: dict[str, Cursor], listen: Address | None,
               secrets: dict[str, Cursor], weak: list[str]) -> dict[str, str]:
    """Password per *kind* (agent or supervisor) that registers; weak ones are added to
    *weak*, other problems are filed at their place."""
    passwords: dict[str, str] = {}
    for name, person in declared.items():
        fields = person.mapping() or {}
        if "password" in fields and name in secrets:
            fields["password"].error(f"{kind} '{name}' also has a password in the secrets "
                                     "file: keep it in one place (the secrets file)")
            continue
        where = fields["password"] if "password" in fields else secrets.get(name)
        if where is None:
            continue
        password = where.text()
        if not AGENT_NAME.fullmatch(name):
            person.error(f"{kind} '{name}' cannot register: its name is the SIP user name, use "
                         "letters, digits, '.', '_' or '-'")
            continue
        if password is not None and not password:
            where.error("the password is empty")
            continue
        if password is not None:
            passwords[name] = password
            problem = password_problem(name, password)
            if problem is not None:
                weak.append(_located(where, f"{kind} '{name}': the password {problem}; a "
                                            f"cracking word list would find it: choose at least "
                                            f"{MIN_LENGTH} characters, not a common password "
                                            "nor the name (e.g. four random words)"))
        uri = fields["uri"].text() if "uri" in fields else None
        if listen is not None and uri is not None and not _uri_reaches(uri, name, listen):
            how = "dial it" if kind == "agent" else "know its calls"
            fields["uri"].error(f"{kind} '{name}' registers with the edge, so the switchboard "
                                f"must {how} there: uri: sip:{name}@{listen}")
    return passwords


def _located(cursor: Cursor, message: str) -> str:
    """*message* as a located problem line (``file:line:col: path: message``), not filed."""
    return str(Problem(cursor.file, cursor.line, int(cursor.node.start_mark.column) + 1,
                       cursor.path, message))


def _secrets(cursor: Cursor | None, base: Path) -> tuple[Path | None, dict[str, Cursor],
                                                        Problems]:
    """``edge.secrets``: the file (relative to ``ivr.yaml``) of agent name -> password, its
    entries, and its located problems (more are filed as its entries are checked)."""
    problems = Problems("")
    if cursor is None:
        return None, {}, problems
    text = cursor.text()
    if text is None:
        return None, {}, problems
    path = (base / text) if not Path(text).is_absolute() else Path(text)
    try:
        doc = load_document(path, display_name=text)
    except DocumentError as exc:
        problems.items.extend(exc.problems)
        return path, {}, problems
    entries: dict[str, Cursor] = {}
    for name, value in (doc.items() if doc.is_mapping() else ()):
        if not value.is_scalar():
            value.error("expected the agent's password as text")
            continue
        entries[name] = value
    if not doc.is_mapping():
        doc.error("expected name: password lines, e.g. 'anna: \"four random words here\"'")
    return path, entries, doc.problems


def _readable_password_files(config: Path, in_config: Sequence[str],
                             secrets: Path | None) -> list[str]:
    """Refusals of files holding passwords that group or others may read."""
    refusals = []
    mode = _readable_by_others(config)
    if in_config and mode is not None:
        refusals.append(f"{config.name}: holds passwords ({', '.join(sorted(in_config))}) and "
                        f"others may read it (mode {mode:04o}): run 'chmod 600 {config.name}', "
                        "or move the passwords to a file of mode 0600 named by edge.secrets")
    mode = _readable_by_others(secrets) if secrets is not None else None
    if secrets is not None and mode is not None:
        refusals.append(f"{secrets.name}: others may read this secrets file (mode {mode:04o}): "
                        f"run 'chmod 600 {secrets}'")
    return refusals


def _readable_by_others(path: Path) -> int | None:
    """The file's permission bits if group or others may read or write it, else None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & PRIVATE_MODE_MASK else None


def settings_from_yaml(path: Path) -> EdgePlan:
    """Read the edge's settings from *path* (``ivr.yaml``).

    Only the keys the edge needs are read (``ivr.config`` checks the rest): ``sip.listen``,
    the ``sources`` of ``trunks``, ``password`` and ``uri`` of ``agents`` and of
    ``supervisors``, and the optional ``edge`` section (``listen``, ``rpc_port``, ``realm``,
    ``trunk_sources``, ``agent_sources``, ``secrets``). Raises
    :class:`~ivr.yamlsrc.DocumentError` with every problem located.

    ``edge.secrets`` names a YAML file (relative to *path*) of ``name: password`` lines (agents
    and supervisors), for passwords kept out of ``ivr.yaml``. Weak passwords and password files
    others may read do not stop this function: they are :attr:`EdgePlan.refusals`, which
    ``python -m ivr.edge`` enforces.
    """
    root = load_document(path)
    top = root.mapping() or {}
    notes: list[str] = []

    ivr = _switchboard_address(root, top.get("sip"))
    edge = (top["edge"].mapping(allowed=EDGE_KEYS) or {}) if "edge" in top else {}
    listen = _address(edge["listen"]) if "listen" in edge else Address.parse(DEFAULT_LISTEN)
    if listen is not None and ipaddress.ip_address(listen.host).is_unspecified:
        edge["listen"].error(f"'{listen.host}' listens everywhere; give the address phones and "
                             "trunks reach (Kamailio record-routes it)")
        listen = None
    rpc_port = edge["rpc_port"].integer(1024, 65535) if "rpc_port" in edge else DEFAULT_RPC_PORT
    realm = edge["realm"].text() if "realm" in edge else "centralino"
    if realm is not None and not REALM.fullmatch(realm):
        edge["realm"].error(f"'{realm}' is not a realm: letters, digits, '.', '_', '-'")
        realm = None

    trunk_cursors: list[Cursor] = []
    trunks = top.get("trunks")
    if trunks is not None:
        for _, trunk in trunks.items():
            fields = trunk.mapping() or {}
            if "sources" in fields:
                trunk_cursors.extend(fields["sources"].sequence() or ())
    ivr_trunks = _network_list(trunk_cursors)
    if "trunk_sources" in edge:
        trunk_sources = _network_list(edge["trunk_sources"].sequence() or [])
    else:
        trunk_sources = ivr_trunks
        notes.append("edge.trunk_sources not given: INVITEs from every trunk source of "
                     "'trunks' go to the switchboard")
    agent_sources = (_network_list(edge["agent_sources"].sequence() or [])
                     if "agent_sources" in edge else [])

    if listen is not None and ivr_trunks and not any(
            ipaddress.ip_address(listen.host) in net for _, net in ivr_trunks):
        (edge.get("listen") or trunks or root).error(
            f"the switchboard takes calls only from trunk sources, and Kamailio forwards them "
            f"from {listen.host}: add {listen.host} to a trunk's sources")

    secrets_path, secrets, secret_problems = _secrets(edge.get("secrets"), path.parent)
    passwords, sup_passwords, refusals = _user_passwords(top, listen, secrets)
    root.problems.items.extend(secret_problems.items)  # the secrets file's, found so far
    if not passwords and not sup_passwords and not root.problems.items:
        notes.append("no agent has a password: no phone can register")
    refusals += _readable_password_files(
        path, [name for name in {**passwords, **sup_passwords} if name not in secrets],
        secrets_path if secrets else None)

    if ivr is not None and listen is not None and ivr == listen:
        (edge.get("listen") or root).error(f"the edge and the switchboard (sip.listen) cannot "
                                           f"both listen on {listen}")
    root.problems.raise_if_any()
    assert ivr is not None
    assert listen is not None
    assert rpc_port is not None
    assert realm
    try:
        settings = EdgeSettings(listen=listen, ivr=ivr,
                                trunk_sources=tuple(str(net) for _, net in trunk_sources),
                                agents=passwords, supervisors=sup_passwords,
                                rpc_port=rpc_port, realm=realm,
                                agent_sources=tuple(str(net) for _, net in agent_sources))
    except EdgeError as exc:
        (top.get("edge") or root).error(str(exc))
        root.problems.raise_if_any()
        raise
    return EdgePlan(settings, tuple(notes), tuple(refusals))


def _address(cursor: Cursor) -> Address | None:
    text = cursor.text()
    if text is None:
        return None
    try:
        return Address.parse(text)
    except EdgeError as exc:
        cursor.error(str(exc))
        return None


def _network_list(cursors: Sequence[Cursor]) -> list[tuple[Cursor, Network]]:
    out = []
    for item in cursors:
        text = item.text()
        if text is None:
            continue
        try:
            out.append((item, ipaddress.ip_network(text, strict=False)))
        except ValueError:
            item.error(f"'{text}' is not an IP address or network such as 192.0.2.10 or "
                       "192.0.2.0/28")
    return out


def _uri_reaches(uri: str, name: str, listen: Address) -> bool:
    """Whether *uri* is ``sip:NAME@`` the edge (port 5060 may be left out)."""
    m = re.fullmatch(r"sip:([^@;]+)@(\[[^\]]+\]|[^:;>]+)(?::(\d+))?(;.*)?", uri)
    if not m or m[1] != name:
        return False
    try:
        same_host = ipaddress.ip_address(m[2].strip("[]")) == ipaddress.ip_address(listen.host)
    except ValueError:
        return False
    return same_host and int(m[3] or 5060) == listen.port

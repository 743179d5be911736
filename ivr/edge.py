"""The edge: Kamailio in front of the switchboard, as the registrar of agents' phones.

pjsua2 cannot be a registrar, so agents whose phones register (instead of sitting at a fixed
address) register with a Kamailio 5.6 process that this module configures:

- REGISTER: only configured agents, digest authentication (401 challenge; 403 for a wrong user
  or password), contacts kept in memory (usrloc ``db_mode`` 0).
- INVITE from a trunk source: forwarded to the switchboard (record-routed).
- INVITE from the switchboard's own address to ``sip:AGENT@edge``: to the agent's registered
  phone(s); 404 for a name that is not an agent, 480 when the agent is not registered.
- In-dialog requests follow their Route set; from a source that is neither a trunk nor the
  switchboard they may only go to the switchboard.
- Anything else (scanners, phones trying to call out): 403.

The registered contacts are read over JSON-RPC on 127.0.0.1 (``jsonrpcs`` + ``xhttp``; only the
read-only methods ``ul.dump`` and ``ul.lookup`` are let through) by :class:`Registrations`, and
:class:`RegistrationsPoller` reports which agents are reachable.

The configuration holds no password: each agent's digest HA1 (MD5 of ``user:realm:password``)
is put in an ``htable`` at start-up, and no log line carries credentials.

``python -m ivr.edge --config ivr.yaml --out var/edge`` writes ``kamailio.cfg`` and
``supervisord.conf`` (``make run-edge`` then runs both processes under supervisord).
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.yamlsrc import Cursor, DocumentError, load_document

log = logging.getLogger("ivr.edge")

AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""What an agent's name may be to register: it is the SIP user part and an htable key."""
REALM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SOURCE_HEADER = "X-Centralino-Source"
"""Header the edge adds to INVITEs it forwards from a trunk: the gateway's IP address."""
RPC_METHODS = ("ul.dump", "ul.lookup")
"""The only JSON-RPC methods the generated configuration lets through (both read-only)."""
KAMAILIO_SEARCH_PATH = os.pathsep.join(("/usr/sbin", "/usr/local/sbin", "/usr/bin",
                                        "/usr/local/bin"))

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
    rpc_port: int = 5071
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
        for name, password in self.agents.items():
            if not AGENT_NAME.fullmatch(name):
                raise EdgeError(f"agent name '{name}' cannot register: use letters, digits, "
                                "'.', '_' or '-' (it is the SIP user name)")
            if not password:
                raise EdgeError(f"agent '{name}' has an empty password")
        if not 1 <= self.max_contacts <= 32:
            raise EdgeError("max_contacts must be in 1-32")

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}/RPC"

    def agent_uri(self, name: str) -> str:
        """The URI the switchboard dials to reach *name*'s registered phone."""
        return f"sip:{name}@{self.listen}"

    def ha1(self, name: str) -> str:
        """Digest HA1 of an agent: MD5 of ``name:realm:password`` (RFC 2617)."""
        return hashlib.md5(f"{name}:{self.realm}:{self.agents[name]}".encode(),
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


def _quote(text: str) -> str:
    """A Kamailio double-quoted string literal (only values checked by EdgeSettings reach
    here, so this is belt and braces)."""
    if any(c in text for c in '"\\\n\r'):
        raise EdgeError(f"cannot put {text!r} into the Kamailio configuration")
    return f'"{text}"'


def _subnet_list(networks: Sequence[Network]) -> str:
    return ",".join(str(n) for n in networks)


def kamailio_config(settings: EdgeSettings, source: str = "") -> str:
    """A complete ``kamailio.cfg`` (Kamailio 5.6) for *settings*.

    *source* names what it was generated from, for the header comment.
    """
    s = settings
    ivr_check = (f'(compare_ips("$si", {_quote(s.ivr.host)}) && $sp == {s.ivr.port})')
    trunk_check = (f'is_in_subnet("$si", {_quote(_subnet_list(s.trunk_networks))})'
                   if s.trunk_networks else "0")
    agent_source_check = (
        f'if (!is_in_subnet("$si", {_quote(_subnet_list(s.agent_networks))})) {{\n'
        f'        xlog("L_NOTICE", "REGISTER from $si:$sp refused: not in agent_sources\\n");\n'
        f'        sl_send_reply("403", "Forbidden");\n'
        f'        exit;\n'
        f'    }}\n    ' if s.agent_networks else "")
    realm = _quote(s.realm)
    # $nh(p) is the port of the next hop's URI: empty when the URI leaves out 5060
    next_hop_port = (f'($nh(p) == "{s.ivr.port}" || $nh(p) == "")' if s.ivr.port == 5060
                     else f'$nh(p) == "{s.ivr.port}"')
    agents_init = "".join(f"    $sht(agents=>{name}) = {_quote(s.ha1(name))};\n"
                          for name in sorted(s.agents))
    if agents_init:  # an empty route is a syntax error
        agents_init = ("\n# The agents' digest HA1, loaded as the htable module starts.\n"
                       f"event_route[htable:mod-init] {{\n{agents_init}}}\n")
    # What the registrations client sends: {"jsonrpc": "2.0", "method": "ul.dump", ...}
    space = "[[:space:]]*"
    methods = "|".join(m.replace(".", "[.]") for m in RPC_METHODS)
    rpc_request = (f'^[{{]{space}"jsonrpc"{space}:{space}"2[.]0"{space},{space}"method"{space}'
                   f':{space}"({methods})"')
    header = f" from {source}" if source else ""
    return f"""\
#!KAMAILIO
# Centralino edge: the registrar of agents' phones in front of the switchboard.
# Generated by ivr.edge{header}; do not edit, generate it again.
#   trunk sources -> INVITE -> the switchboard at {s.ivr}
#   the switchboard -> INVITE sip:AGENT@{s.listen} -> the agent's registered phone(s)
#   agents' phones -> REGISTER with digest authentication (realm {s.realm})
#   JSON-RPC {', '.join(RPC_METHODS)} on {s.rpc_url}
# The configuration holds digest HA1 hashes of the agents' passwords, never the passwords.

####### Global parameters #########
debug=2
log_facility=LOG_LOCAL0
log_name="centralino-edge"
children=2
tcp_children=1
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
server_signature=no
sip_warning=0
server_header="Server: Centralino edge"
user_agent_header="User-Agent: Centralino edge"

# SIP over UDP for phones, trunks and the switchboard; HTTP (JSON-RPC) on loopback only.
listen=udp:{s.listen}
listen=tcp:127.0.0.1:{s.rpc_port}
tcp_accept_no_cl=yes
tcp_connection_lifetime=30
tcp_max_connections=32

####### Modules #########
loadmodule "jsonrpcs.so"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "ipops.so"
loadmodule "htable.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "xhttp.so"

# JSON-RPC over HTTP only: no FIFO, no datagram socket in the file system.
modparam("jsonrpcs", "transport", 1)
modparam("jsonrpcs", "pretty_format", 0)

# A phone that does not answer within 5 s (no provisional reply) fails over quickly.
modparam("tm", "fr_timer", 5000)
modparam("tm", "fr_inv_timer", 120000)

modparam("rr", "enable_full_lr", 1)

# Registrations in memory only.
modparam("usrloc", "db_mode", 0)
modparam("usrloc", "use_domain", 0)
modparam("usrloc", "timer_interval", 10)
modparam("registrar", "max_contacts", {s.max_contacts})
modparam("registrar", "min_expires", 30)
modparam("registrar", "default_expires", 600)
modparam("registrar", "max_expires", 3600)

modparam("auth", "nonce_expire", 300)

# agents: name -> digest HA1; authfail: failed attempts per source address (5 minutes).
modparam("htable", "htable", "agents=>size=6;")
modparam("htable", "htable", "authfail=>size=8;autoexpire=300;")

####### Routing #########

request_route {{
    # SIP only on the SIP socket (the TCP socket is for JSON-RPC over HTTP).
    if ($Rp != {s.listen.port} || $proto != "udp") {{
        drop;
    }}
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (!sanity_check()) {{
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            route(RELAY);
        }}
        exit;
    }}
    if (!is_method("ACK")) {{
        if (t_precheck_trans()) {{
            t_check_trans();
            exit;
        }}
        t_check_trans();
    }}
    if (has_totag()) {{
        route(WITHINDLG);
        exit;
    }}
    remove_hf("Route");
    if (is_method("REGISTER")) {{
        route(REGISTRAR);
        exit;
    }}
    if (is_method("INVITE")) {{
        if {ivr_check} {{
            route(TO_AGENT);
            exit;
        }}
        if ({trunk_check}) {{
            route(TO_IVR);
            exit;
        }}
    }}
    if (is_method("ACK")) {{
        exit;
    }}
    xlog("L_NOTICE", "refused $rm from $si:$sp: not a trunk, not the switchboard\\n");
    sl_send_reply("403", "Forbidden");
    exit;
}}

route[RELAY] {{
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}

route[WITHINDLG] {{
    if (loose_route()) {{
        if (!({ivr_check} || {trunk_check})
                && !(compare_ips("$nh(d)", {_quote(s.ivr.host)}) && {next_hop_port})) {{
            xlog("L_NOTICE", "refused in-dialog $rm from $si:$sp: not towards the switchboard\\n");
            sl_send_reply("403", "Forbidden");
            exit;
        }}
        route(RELAY);
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) {{
            route(RELAY);
        }}
        exit;
    }}
    sl_send_reply("404", "Not Here");
    exit;
}}

# A call from a trunk: to the switchboard, whatever the number called. The switchboard sees
# the edge as the source; X-Centralino-Source carries the gateway's address (never the caller's
# own copy of the header).
route[TO_IVR] {{
    remove_hf("{SOURCE_HEADER}");
    append_hf("{SOURCE_HEADER}: $si\\r\\n");
    record_route();
    $rd = {_quote(s.ivr.host)};
    $rp = {s.ivr.port};
    xlog("L_INFO", "call $ci from trunk $si to $rU: to the switchboard\\n");
    route(RELAY);
}}

# A call from the switchboard to an agent: to the agent's registered phone(s).
route[TO_AGENT] {{
    if (!(uri == myself) || $rU == $null || $sht(agents=>$rU) == $null) {{
        xlog("L_NOTICE", "call $ci from the switchboard to $ru: not an agent here\\n");
        sl_send_reply("404", "Not Found");
        exit;
    }}
    lookup("location");
    $var(found) = $rc;
    if ($var(found) == -2) {{
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }}
    if ($var(found) < 0) {{
        xlog("L_INFO", "call $ci to agent $tU: not registered\\n");
        sl_send_reply("480", "Temporarily Unavailable");
        exit;
    }}
    record_route();
    xlog("L_INFO", "call $ci to agent $tU: to $ru\\n");
    route(RELAY);
}}

# REGISTER: configured agents only, digest authentication against the HA1 in htable agents.
route[REGISTRAR] {{
    {agent_source_check}if ($sht(authfail=>$si) != $null && $sht(authfail=>$si) >= 10) {{
        xlog("L_NOTICE", "REGISTER from $si:$sp refused: too many failed attempts\\n");
        sl_send_reply("403", "Forbidden");
        exit;
    }}
    if ($tU == $null || $sht(agents=>$tU) == $null) {{
        route(AUTHFAIL);
        xlog("L_NOTICE", "REGISTER from $si:$sp refused: '$tU' is not an agent\\n");
        sl_send_reply("403", "Forbidden");
        exit;
    }}
    if (!has_credentials({realm})) {{
        auth_challenge({realm}, "1");
        exit;
    }}
    pv_auth_check({realm}, "$sht(agents=>$tU)", "1", "1");
    $var(auth) = $rc;
    if ($var(auth) == -4 || $var(auth) == -6) {{
        auth_challenge({realm}, "17");
        exit;
    }}
    if ($var(auth) < 0) {{
        route(AUTHFAIL);
        xlog("L_NOTICE", "REGISTER of agent $tU from $si:$sp refused: wrong user or password\\n");
        sl_send_reply("403", "Forbidden");
        exit;
    }}
    consume_credentials();
    $sht(authfail=>$si) = $null;
    save("location");
    $var(saved) = $rc;
    if ($var(saved) == 1 || $var(saved) == 2) {{
        xlog("L_INFO", "agent $tU registered from $si:$sp\\n");
    }} else if ($var(saved) == 3) {{
        xlog("L_INFO", "agent $tU unregistered from $si:$sp\\n");
    }} else if ($var(saved) < 0) {{
        xlog("L_NOTICE", "REGISTER of agent $tU from $si:$sp not saved ($var(saved))\\n");
    }}
    exit;
}}

# One more failed attempt from this source address (kept 5 minutes; 10 lock it out).
route[AUTHFAIL] {{
    if ($sht(authfail=>$si) == $null) {{
        $sht(authfail=>$si) = 1;
    }} else {{
        $sht(authfail=>$si) = $sht(authfail=>$si) + 1;
    }}
}}

####### JSON-RPC over HTTP (registrations for the switchboard) #########
event_route[xhttp:request] {{
    if ($Rp != {s.rpc_port} || !compare_ips("$si", "127.0.0.1")) {{
        xhttp_reply("403", "Forbidden", "text/plain", "forbidden\\n");
        exit;
    }}
    if (!($hu =~ "^/RPC/?$")) {{
        xhttp_reply("404", "Not Found", "text/plain", "POST JSON-RPC to /RPC\\n");
        exit;
    }}
    if (!($rb =~ '{rpc_request}') || $rb =~ '"method".*"method"') {{
        xhttp_reply("403", "Forbidden", "text/plain", "only {' and '.join(RPC_METHODS)}\\n");
        exit;
    }}
    jsonrpc_dispatch();
    exit;
}}
{agents_init}"""


# -- supervisord ----------------------------------------------------------------------------

def find_kamailio() -> str | None:
    """The kamailio binary on PATH or in the sbin folders (Debian puts it in /usr/sbin)."""
    return shutil.which("kamailio", path=os.environ.get("PATH", "") + os.pathsep
                        + KAMAILIO_SEARCH_PATH)


def kamailio_command(config: Path, workdir: Path, binary: str | None = None) -> list[str]:
    """Kamailio in the foreground (``-DD``: the main process stays, workers are forked), logging
    to stderr, its pid file and runtime files in *workdir*."""
    exe = binary or find_kamailio() or "kamailio"
    return [exe, "-DD", "-E", "-m", "32", "-M", "4", "-f", str(config),
            "-P", str(workdir / "kamailio.pid"), "-Y", str(workdir), "-w", str(workdir)]


def _ini_value(text: str) -> str:
    if "\n" in text or "\r" in text:
        raise EdgeError(f"cannot put {text!r} into supervisord.conf")
    return text.replace("%", "%%")


def _command(command: str | Sequence[str]) -> str:
    return _ini_value(command if isinstance(command, str) else shlex.join(command))


def supervisord_config(ivr_command: str | Sequence[str], kamailio_command: str | Sequence[str],
                       workdir: Path, directory: Path | None = None) -> str:
    """A ``supervisord.conf`` running Kamailio and the switchboard in the foreground.

    Logs, pid files and the control socket (``supervisorctl -c WORKDIR/supervisord.conf``) are
    in *workdir*; there is no HTTP server. Kamailio starts first; both are stopped with
    SIGTERM (the switchboard finishes its calls' records and exits; Kamailio stops its workers)
    and killed, with their children, if they take longer than ``stopwaitsecs``.
    """
    work = _ini_value(str(Path(workdir).resolve()))
    cwd = _ini_value(str((directory or Path.cwd()).resolve()))
    return f"""\
; Centralino: the edge (Kamailio) and the switchboard under supervisord.
; Generated by ivr.edge; do not edit, generate it again.
;   supervisord -c {work}/supervisord.conf
;   supervisorctl -c {work}/supervisord.conf status

[supervisord]
nodaemon=true
logfile={work}/supervisord.log
logfile_maxbytes=10MB
logfile_backups=3
pidfile={work}/supervisord.pid
childlogdir={work}
directory={cwd}

[unix_http_server]
file={work}/supervisor.sock
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{work}/supervisor.sock

[program:kamailio]
command={_command(kamailio_command)}
directory={work}
priority=10
autostart=true
autorestart=true
startsecs=2
startretries=3
stopsignal=TERM
stopwaitsecs=10
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={work}/kamailio.log
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=3

[program:ivr]
command={_command(ivr_command)}
directory={cwd}
priority=20
autostart=true
autorestart=true
startsecs=5
startretries=3
stopsignal=TERM
stopwaitsecs=20
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={work}/ivr.log
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=3
"""


# -- registrations ---------------------------------------------------------------------------

class RegistrationsError(RuntimeError):
    """Kamailio's JSON-RPC could not be reached or gave an answer we cannot read."""


@dataclass(frozen=True)
class Contact:
    """One registered phone of an agent."""

    address: str
    """The Contact URI calls are sent to, e.g. ``sip:anna@192.0.2.31:5060``."""
    expires: int | None
    """Seconds left; None for a permanent contact."""
    user_agent: str = ""


class Registrations:
    """Reads the registered contacts from Kamailio's JSON-RPC (``ul.dump``) over HTTP."""

    def __init__(self, timeout: float = 2.0, table: str = "location"):
        self.timeout = timeout
        self.table = table

    def fetch(self, url: str) -> dict[str, list[Contact]]:
        """Agent name -> live contacts (expired ones left out); agents with none are absent.

        Raises :class:`RegistrationsError` when Kamailio does not answer in ``timeout``
        seconds or answers with an error or an unexpected shape.
        """
        return parse_ul_dump(self.call(url, "ul.dump"), self.table)

    def call(self, url: str, method: str, params: Sequence[object] = ()) -> object:
        """One JSON-RPC call; the ``result`` member of the answer."""
        body: dict[str, object] = {"jsonrpc": "2.0", "method": method}
        if params:
            body["params"] = list(params)
        body["id"] = 1
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                raw = resp.read(16 * 1024 * 1024)
        except urllib.error.HTTPError as exc:
            detail = exc.read(200).decode(errors="replace").strip()
            raise RegistrationsError(f"{method} at {url}: HTTP {exc.code} {exc.reason}"
                                     f"{': ' + detail if detail else ''}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistrationsError(f"cannot reach Kamailio's JSON-RPC at {url}: "
                                     f"{reason}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise RegistrationsError(f"{method} at {url}: the answer is not JSON: "
                                     f"{raw[:120]!r}") from None
        if not isinstance(answer, dict):
            raise RegistrationsError(f"{method} at {url}: unexpected answer {answer!r:.120}")
        if "error" in answer:
            error = answer["error"]
            if isinstance(error, dict):
                error = f"{error.get('code')} {error.get('message')}"
            raise RegistrationsError(f"{method} at {url} failed: {error}")
        if "result" not in answer:
            raise RegistrationsError(f"{method} at {url}: no result in {answer!r:.120}")
        return answer["result"]


def parse_ul_dump(result: object, table: str = "location") -> dict[str, list[Contact]]:
    """The contacts in a Kamailio 5.6 ``ul.dump`` result, by AoR (the agent's name).

    The shape (one object per domain, AoR and contact, each wrapped in a one-key object)::

        {"Domains": [{"Domain": {"Domain": "location", "Size": 1024, "AoRs": [
            {"Info": {"AoR": "anna", "HashID": 1834268440, "Contacts": [
                {"Contact": {"Address": "sip:anna@127.0.0.1:40231", "Expires": 60, ...}}]}}],
          "Stats": {"Records": 1, "Max-Slots": 1}}}]}

    ``Expires`` is the seconds left, or ``"permanent"``, ``"expired"`` or ``"deleted"``.
    """
    try:
        domains = _member(result, "Domains", list)
        out: dict[str, list[Contact]] = {}
        for entry in domains:
            domain = _member(entry, "Domain", dict)
            if domain.get("Domain") != table:
                continue
            for aor_entry in domain.get("AoRs") or []:
                info = _member(aor_entry, "Info", dict)
                aor = _member(info, "AoR", str)
                contacts = []
                for contact_entry in info.get("Contacts") or []:
                    contact = _member(contact_entry, "Contact", dict)
                    expires = contact.get("Expires")
                    if expires == "permanent":
                        left: int | None = None
                    elif isinstance(expires, int) and not isinstance(expires, bool):
                        if expires <= 0:
                            continue
                        left = expires
                    else:  # "expired", "deleted"
                        continue
                    contacts.append(Contact(_member(contact, "Address", str), left,
                                            str(contact.get("User-Agent", ""))))
                if contacts:
                    out.setdefault(aor.partition("@")[0], []).extend(contacts)
        return out
    except (TypeError, KeyError) as exc:
        raise RegistrationsError(f"unexpected ul.dump answer ({exc}): {result!r:.200}") from None


def _member(obj: object, key: str, kind: type) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise KeyError(f"no '{key}'")
    value = obj[key]
    if not isinstance(value, kind):
        raise TypeError(f"'{key}' is {type(value).__name__}, not {kind.__name__}")
    return value


class RegistrationsPoller:
    """Polls the registrations and reports the set of registered agents when it changes.

    :meth:`check` does one poll: it calls ``on_change`` (with the names of the agents that
    have at least one live contact) the first time and whenever that set differs from the last
    one reported. While Kamailio cannot be read, nobody counts as registered (a call through
    a Kamailio that is down cannot reach a phone anyway); the outage is logged once.
    :meth:`start` runs :meth:`check` every ``interval`` seconds on a daemon thread.
    """

    def __init__(self, url: str, interval: float,
                 on_change: Callable[[frozenset[str]], None],
                 client: Registrations | None = None):
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.url = url
        self.interval = interval
        self.on_change = on_change
        self.client = client or Registrations(timeout=min(2.0, interval))
        self.registered: frozenset[str] | None = None
        """The last set reported; None before the first poll."""
        self.failing = False
        """True while the last poll could not read the registrations."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> frozenset[str]:
        """One poll; returns the registered agents (empty while Kamailio cannot be read)."""
        try:
            registrations = self.client.fetch(self.url)
        except RegistrationsError as exc:
            if not self.failing:
                log.warning("agents' registrations unavailable (%s): no agent counts as "
                            "registered until they are", exc)
            self.failing = True
            names: frozenset[str] = frozenset()
        else:
            if self.failing:
                log.info("agents' registrations available again")
            self.failing = False
            names = frozenset(name for name, contacts in registrations.items() if contacts)
        if names != self.registered:
            self.registered = names
            self.on_change(names)
        return names

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the poller is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="registrations", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # an on_change that fails must not end the polling
                log.exception("registrations: on_change failed")
            self._stop.wait(self.interval)


# -- from ivr.yaml ---------------------------------------------------------------------------

DEFAULT_LISTEN = "127.0.0.1:5060"
DEFAULT_RPC_PORT = 5071
EDGE_KEYS = ("listen", "rpc_port", "realm", "trunk_sources", "agent_sources")


@dataclass(frozen=True)
class EdgePlan:
    """What ``ivr.yaml`` asks of the edge, with what an operator should know about it."""

    settings: EdgeSettings
    notes: tuple[str, ...] = ()


def settings_from_yaml(path: Path) -> EdgePlan:
    """Read the edge's settings from *path* (``ivr.yaml``).

    Only the keys the edge needs are read (``ivr.config`` checks the rest): ``sip.listen``,
    the ``sources`` of ``trunks``, ``agents.NAME.password`` and ``agents.NAME.uri``, and the
    optional ``edge`` section (``listen``, ``rpc_port``, ``realm``, ``trunk_sources``,
    ``agent_sources``). Raises :class:`~ivr.yamlsrc.DocumentError` with every problem located.
    """
    root = load_document(path)
    top = root.mapping() or {}
    notes: list[str] = []

    ivr = None
    sip = top.get("sip")
    if sip is None:
        root.error("missing required key 'sip'")
    else:
        sip_keys = sip.mapping() or {}
        if "listen" not in sip_keys:
            sip.error("missing required key 'listen'")
        else:
            ivr = _address(sip_keys["listen"])

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

    passwords: dict[str, str] = {}
    agents = top.get("agents")
    for name, agent in agents.items() if agents is not None else ():
        fields = agent.mapping() or {}
        if "password" not in fields:
            continue
        password = fields["password"].text()
        if not AGENT_NAME.fullmatch(name):
            agent.error(f"agent '{name}' cannot register: its name is the SIP user name, use "
                        "letters, digits, '.', '_' or '-'")
            continue
        if password is not None and not password:
            fields["password"].error("the password is empty")
            continue
        if password is not None:
            passwords[name] = password
        uri = fields["uri"].text() if "uri" in fields else None
        if listen is not None and uri is not None and not _uri_reaches(uri, name, listen):
            fields["uri"].error(f"agent '{name}' registers with the edge, so the switchboard "
                                f"must dial it there: uri: sip:{name}@{listen}")
    if not passwords and not root.problems.items:
        notes.append("no agent has a password: no phone can register")

    if ivr is not None and listen is not None and ivr == listen:
        (edge.get("listen") or root).error(f"the edge and the switchboard (sip.listen) cannot "
                                           f"both listen on {listen}")
    root.problems.raise_if_any()
    assert ivr is not None and listen is not None and rpc_port is not None and realm
    try:
        settings = EdgeSettings(listen=listen, ivr=ivr,
                                trunk_sources=tuple(str(net) for _, net in trunk_sources),
                                agents=passwords, rpc_port=rpc_port, realm=realm,
                                agent_sources=tuple(str(net) for _, net in agent_sources))
    except EdgeError as exc:
        (top.get("edge") or root).error(str(exc))
        root.problems.raise_if_any()
        raise
    return EdgePlan(settings, tuple(notes))


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


# -- command line ----------------------------------------------------------------------------

def write_edge(config: Path, out: Path, kamailio: str | None = None,
               ivr_command: Sequence[str] | None = None) -> EdgePlan:
    """Write ``kamailio.cfg`` (mode 0600: it holds the agents' HA1 hashes) and
    ``supervisord.conf`` into *out* for the ``ivr.yaml`` at *config*."""
    plan = settings_from_yaml(config)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    cfg = out / "kamailio.cfg"
    fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(kamailio_config(plan.settings, source=config.name))
    command = list(ivr_command) if ivr_command is not None else [
        sys.executable, "-m", "ivr.cli", "run", "--config", str(config.resolve())]
    (out / "supervisord.conf").write_text(
        supervisord_config(command, kamailio_command(cfg, out, kamailio), out))
    return plan


def check_kamailio_config(path: Path, binary: str | None = None) -> tuple[bool, str]:
    """``kamailio -c -f PATH``: whether Kamailio accepts the file, and what it said."""
    import subprocess

    exe = kamailio_command(path, path.parent, binary)[0]
    try:
        done = subprocess.run([exe, "-c", "-f", str(path)], capture_output=True, text=True,
                              timeout=30)
    except OSError as exc:
        return False, f"cannot run {exe}: {exc}"
    return done.returncode == 0, done.stdout + done.stderr


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ivr.edge",
        description="Generate the Kamailio and supervisord configurations of the edge (the "
                    "registrar of agents' phones) from ivr.yaml.")
    parser.add_argument("--config", type=Path, default=Path("ivr.yaml"))
    parser.add_argument("--out", type=Path, default=Path("var/edge"))
    parser.add_argument("--kamailio", help="the kamailio binary (default: found on PATH)")
    parser.add_argument("--no-check", action="store_true",
                        help="do not run 'kamailio -c' on the generated configuration")
    args = parser.parse_args(argv)
    try:
        plan = write_edge(args.config, args.out, args.kamailio)
    except DocumentError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except (EdgeError, OSError) as exc:
        print(f"ivr.edge: {exc}", file=sys.stderr)
        return 2
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    cfg = args.out / "kamailio.cfg"
    if not args.no_check:
        ok, output = check_kamailio_config(cfg, args.kamailio)
        if not ok:
            print(output.strip(), file=sys.stderr)
            print(f"ivr.edge: Kamailio refuses {cfg}", file=sys.stderr)
            return 1
    s = plan.settings
    print(f"wrote {cfg} and {args.out / 'supervisord.conf'}: edge on udp {s.listen}, "
          f"switchboard {s.ivr}, {len(s.agents)} agent(s) may register, "
          f"registrations at {s.rpc_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

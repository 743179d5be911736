"""Kamailio: the configuration rendered from ``kamailio.cfg.tmpl``, and how to run and check it.

The script itself lives in the template beside this module, so it reads as Kamailio code;
this module only computes the values of its ``{{name}}`` placeholders from
:class:`~ivr.edge.settings.EdgeSettings` (addresses, the checks of who sends a request, the
users' HA1) and quotes them for Kamailio.

    >>> from ivr.edge.settings import Address, EdgeSettings
    >>> cfg = kamailio_config(EdgeSettings(listen=Address("192.0.2.5", 5060),
    ...                                    ivr=Address("127.0.0.1", 5080),
    ...                                    trunk_sources=("198.51.100.7",), agents={}))
    >>> "listen=udp:192.0.2.5:5060" in cfg
    True
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import string
import subprocess
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from ivr.edge.settings import EdgeError, EdgeSettings, Network

SOURCE_HEADER = "X-Centralino-Source"
"""Header the edge adds to INVITEs it forwards to the switchboard: the IP address of the
gateway, or of the registered phone, that sent it."""
RPC_METHODS = ("ul.dump", "ul.lookup")
"""The only JSON-RPC methods the generated configuration lets through (both read-only)."""
KAMAILIO_SEARCH_PATH = os.pathsep.join(("/usr/sbin", "/usr/local/sbin", "/usr/bin",
                                        "/usr/local/bin"))
SCANNER_AGENTS = ("friendly-scanner", "sipvicious", "sipcli", "sundayddr", "vaxsipuseragent",
                  "sip-scan", "sipscan", "iwar", "sivus", "smap", "pplsip", "siparmyknife",
                  "voip-scan")
"""User-Agent words of well-known SIP scanners (matched case-insensitively anywhere in the
header): their requests are dropped without an answer."""
FLOOD_SECONDS = 2
FLOOD_REQUESTS = 40
"""More than FLOOD_REQUESTS requests in FLOOD_SECONDS from one source address (not a trunk, not
the switchboard) block that address (``pike``) until it sends less."""
MAX_FAILURES = 10
"""Failed logins (REGISTERs and calls from phones), per user (agent or supervisor) and per
source address, that lock the user or the address out."""
SANITY_CHECKS = 8191
"""Every message check of Kamailio 5.6's ``sanity`` module (bits 1 to 4096)."""
TEMPLATE = "kamailio.cfg.tmpl"
"""The Kamailio script, shipped as package data of ``ivr.edge``."""


_PLACEHOLDER = r"""
    \{\{(?:
      (?P<escaped>(?!))                 |  # no escape: Kamailio never writes '{{'
      (?P<named>(?!))                   |  # only the braced form
      (?P<braced>[a-z_][a-z0-9_]*)\}\}  |
      (?P<invalid>)
    )
"""


class _ConfigTemplate(string.Template):
    """``{{name}}`` placeholders: Kamailio's own ``$var`` and single braces stay as they are.

    A ``{{`` that does not start a well-formed placeholder is an error (``ValueError``), so a
    typo in the template cannot slip into the configuration.
    """

    # string.Template compiles a str pattern itself; typeshed types the compiled attribute
    pattern = _PLACEHOLDER  # type: ignore[assignment]
    flags = re.VERBOSE  # placeholder names are lower case, as written


@functools.cache
def _template() -> _ConfigTemplate:
    text = resources.files("ivr.edge").joinpath(TEMPLATE).read_text(encoding="utf-8")
    lines = text.removesuffix("\n").split("\n")
    return _ConfigTemplate("\n".join(line for line in lines if not line.startswith("#%")))


@functools.cache
def template_placeholders() -> frozenset[str]:
    """The placeholder names in the template (``ValueError`` if one is malformed)."""
    return frozenset(_template().get_identifiers())


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
    ivr_check = f'(compare_ips("$si", {_quote(s.ivr.host)}) && $sp == {s.ivr.port})'
    def trunk_check_of(variable: str) -> str:
        return (f'is_in_subnet("{variable}", {_quote(_subnet_list(s.trunk_networks))})'
                if s.trunk_networks else "0")

    # an unknown user name is checked against this HA1 (no password has it: the name is
    # refused whatever the answer), so that it meets the same nonce checks as an agent's
    decoy_ha1 = hashlib.md5(f"decoy:{s.realm}:{s.listen}".encode(),
                            usedforsecurity=False).hexdigest()
    # Put before the route's first statement, so it ends with the indentation of that line.
    agent_source_check = (
        f'if (!is_in_subnet("$si", {_quote(_subnet_list(s.agent_networks))})) {{\n'
        f'        $var(code) = "source";\n'
        f'        $var(why) = "a phone outside agent_sources";\n'
        f'        route(REFUSE);\n'
        f'    }}\n    ' if s.agent_networks else "")
    agents_init = "".join(f"    $sht(agents=>{name}) = {_quote(s.ha1(name))};\n"
                          for name in sorted(s.users))
    agents_init += "".join(f"    $sht(supervisors=>{name}) = 1;\n"
                           for name in sorted(s.supervisors))
    if agents_init:  # an empty route is a syntax error
        agents_init = ("\n# The users' digest HA1 (agents and supervisors), loaded as the "
                       "htable module starts.\n"
                       f"event_route[htable:mod-init] {{\n{agents_init}}}\n")
    # What the registrations client sends: {"jsonrpc": "2.0", "method": "ul.dump", ...}
    space = "[[:space:]]*"
    methods = "|".join(m.replace(".", "[.]") for m in RPC_METHODS)
    rpc_request = (f'^[{{]{space}"jsonrpc"{space}:{space}"2[.]0"{space},{space}"method"{space}'
                   f':{space}"({methods})"')
    values = {
        # the header comment
        "generated_from": f" from {source}" if source else "",
        "ivr": str(s.ivr),
        "listen": str(s.listen),
        "realm": s.realm,
        "rpc_methods": ", ".join(RPC_METHODS),
        "rpc_url": s.rpc_url,
        # sockets and limits
        "listen_port": str(s.listen.port),
        "rpc_port": str(s.rpc_port),
        "max_contacts": str(s.max_contacts),
        # who sent a request, and where it goes
        "ivr_check": ivr_check,
        "trunk_check": trunk_check_of("$si"),
        "trunk_check_next_hop": trunk_check_of("$nh(d)"),
        "trunk_check_contact": trunk_check_of("$var(chost)"),
        "listen_host_literal": _quote(s.listen.host),
        "ivr_host_literal": _quote(s.ivr.host),
        "ivr_port": str(s.ivr.port),
        "source_header": SOURCE_HEADER,
        # registrations
        "agent_source_check": agent_source_check,
        "decoy_ha1_literal": _quote(decoy_ha1),
        "max_failures": str(MAX_FAILURES),
        # what is dropped or limited
        "scanner_agents": "|".join(SCANNER_AGENTS),
        "flood_seconds": str(FLOOD_SECONDS),
        "flood_requests": str(FLOOD_REQUESTS),
        "sanity_checks": str(SANITY_CHECKS),
        "realm_literal": _quote(s.realm),
        "agents_init": agents_init,
        # JSON-RPC
        "rpc_request": rpc_request,
        "rpc_methods_and": " and ".join(RPC_METHODS),
    }
    if values.keys() != template_placeholders():  # the template and this code disagree
        raise RuntimeError(f"{TEMPLATE} and kamailio_config disagree: placeholders with no "
                           f"value {sorted(template_placeholders() - values.keys())}, values "
                           f"with no placeholder {sorted(values.keys() - template_placeholders())}")
    return _template().substitute(values)


# -- running it ------------------------------------------------------------------------------

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


def check_kamailio_config(path: Path, binary: str | None = None) -> tuple[bool, str]:
    """``kamailio -c -f PATH``: whether Kamailio accepts the file, and what it said."""
    exe = kamailio_command(path, path.parent, binary)[0]
    try:
        done = subprocess.run([exe, "-c", "-f", str(path)], capture_output=True, text=True,
                              timeout=30)
    except OSError as exc:
        return False, f"cannot run {exe}: {exc}"
    except subprocess.TimeoutExpired:
        return False, f"{exe} -c did not finish in 30 s"
    return done.returncode == 0, done.stdout + done.stderr

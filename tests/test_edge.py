"""The edge's generated configurations, the registrations client and poller, `python -m
ivr.edge` (no SIP traffic here; tests/test_e2e_kamailio.py runs the real Kamailio)."""

from __future__ import annotations

import configparser
import fnmatch
import hashlib
import http.server
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import ClassVar

import pytest

from ivr.edge import (
    Address,
    Contact,
    EdgeError,
    EdgeSettings,
    Registrations,
    RegistrationsError,
    RegistrationsPoller,
    check_kamailio_config,
    find_kamailio,
    kamailio_command,
    kamailio_config,
    main,
    parse_ul_dump,
    settings_from_yaml,
    supervisord_config,
    write_edge,
)
from ivr.edge.kamailio import FLOOD_REQUESTS, SCANNER_AGENTS, TEMPLATE, template_placeholders
from ivr.edge.passwords import MIN_LENGTH, password_problem
from ivr.yamlsrc import DocumentError

ROOT = Path(__file__).resolve().parent.parent

PASSWORDS = {"anna": "Secret-anna-1", "marco": "p@ss w0rd\"marco"}


def settings(**changes: object) -> EdgeSettings:
    values: dict[str, object] = dict(
        listen=Address("192.0.2.5", 5060), ivr=Address("127.0.0.1", 5080),
        trunk_sources=("198.51.100.7", "203.0.113.0/28"), agents=PASSWORDS, rpc_port=5071)
    values.update(changes)
    return EdgeSettings(**values)  # type: ignore[arg-type]


def require_kamailio() -> str:
    exe = find_kamailio()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("kamailio is not installed (scripts/system-deps.sh installs it)")
        pytest.skip("kamailio is not installed")
    return exe


# -- kamailio.cfg ---------------------------------------------------------------------------

def test_config_holds_each_agents_ha1_and_never_a_password() -> None:
    s = settings()
    cfg = kamailio_config(s)
    for name, password in PASSWORDS.items():
        ha1 = hashlib.md5(f"{name}:centralino:{password}".encode()).hexdigest()
        assert s.ha1(name) == ha1
        assert f'$sht(agents=>{name}) = "{ha1}";' in cfg
        assert password not in cfg
    assert '$var(ha1) = $sht(agents=>$var(user));' in cfg
    assert 'pv_auth_check("centralino", "$var(ha1)", "1", "1")' in cfg
    assert 'auth_challenge("centralino", "1")' in cfg


def test_log_lines_carry_no_credentials() -> None:
    cfg = kamailio_config(settings(agent_sources=("192.0.2.0/24",)))
    xlogs = [line for line in cfg.splitlines() if "xlog(" in line]
    assert len(xlogs) >= 8
    allowed = {"$rm", "$si", "$sp", "$ci", "$rU", "$ru", "$tU", "$var(who)", "$var(saved)",
               "$var(why)", "$var(bad)", "$var(more)", "$shtrecord(key)"}
    for line in xlogs:
        # only these: never $au, $adu, $hdr(Authorization), $mb, $sht(agents=>...)
        assert set(re.findall(r"\$[A-Za-z]+(?:\([^)]*\))?", line)) <= allowed, line
    assert "debug=2" in cfg  # no SIP message dumps at debug level


def test_config_routes_trunks_to_the_switchboard_and_the_switchboard_to_agents() -> None:
    cfg = kamailio_config(settings())
    assert "listen=udp:192.0.2.5:5060" in cfg
    assert "listen=tcp:127.0.0.1:5071" in cfg
    assert 'is_in_subnet("$si", "198.51.100.7/32,203.0.113.0/28")' in cfg
    assert '(compare_ips("$si", "127.0.0.1") && $sp == 5080)' in cfg
    assert '$rd = "127.0.0.1";\n    $rp = 5080;' in cfg
    assert 'remove_hf("X-Centralino-Source");\n    append_hf("X-Centralino-Source: $si\\r\\n");' \
        in cfg
    # in-dialog requests: only towards the other party of a dialog this edge routed
    assert 'compare_ips("$nh(d)", "127.0.0.1") && $var(nhport) == 5080' in cfg
    assert "is_known_dlg()" in cfg
    assert 'lookup("location");' in cfg
    assert 'sl_send_reply("480"' in cfg
    assert 'save("location");' in cfg
    assert 'modparam("usrloc", "db_mode", 0)' in cfg
    assert 'sl_send_reply("403", "Forbidden")' in cfg
    assert "not in agent_sources" not in cfg  # no agent_sources: any source may register
    assert "\r" not in cfg


def test_config_refuses_refer_and_limits_strangers() -> None:
    cfg = kamailio_config(settings())
    refer = cfg.index('if (is_method("REFER")) {')
    assert refer < cfg.index("if (has_totag()) {")  # in and out of dialogs alike
    assert "route(REFUSE);" in cfg[refer:refer + 200]
    assert 'if (!is_method("ACK|BYE|INVITE|UPDATE|INFO|PRACK")) {' in cfg
    assert cfg.index("route(SENDER);") < cfg.index("if (!loose_route()) {")
    assert f'modparam("pike", "reqs_density_per_unit", {FLOOD_REQUESTS})' in cfg
    assert "if (!pike_check_req()) {" in cfg
    assert "if (!sanity_check()) {" in cfg
    assert 'if ($ua =~ "' + "|".join(SCANNER_AGENTS) + '") {' in cfg
    assert "server_signature=no" in cfg
    assert 'user_agent_header="User-Agent: edge"' in cfg
    assert "server_header" not in cfg


def test_config_challenges_every_name_and_checks_contacts() -> None:
    cfg = kamailio_config(settings())
    registrar = cfg[cfg.index("route[REGISTRAR] {"):cfg.index("route[CONTACT] {")]
    auth = cfg[cfg.index("route[AUTH] {"):cfg.index("route[AUTHOK] {")]
    # the challenge comes before any look at the name
    assert auth.index("auth_challenge(") < auth.index("$sht(agents=>$var(user))")
    assert registrar.count('sl_send_reply("4') == 0  # every refusal is route(REFUSE): one 403
    assert "$var(user) = $tU;\n    route(AUTH);" in registrar
    assert "$sht(authfail=>u:$var(user))" in auth
    assert "$sht(authfail=>a:$si)" in auth
    assert "$sht(authok=>$var(user)|$si) == $null" in auth
    assert '$var(bad) = "not the address the request came from";' in cfg
    assert 'is_in_subnet("$var(chost)", "198.51.100.7/32,203.0.113.0/28")' in cfg
    assert 't_on_branch("AGENT_BRANCH");' in cfg


@pytest.mark.parametrize(("name", "password", "problem"), [
    ("marco", "marco123", f"is shorter than {MIN_LENGTH} characters"),
    ("marco", "marco1234567", "is the user name with digits or symbols"),
    ("marco", "Marco-2024-!!", "is the user name with digits or symbols"),
    ("anna", "123456789012", "is only digits"),
    ("anna", "aaaaaabbbbbb", "repeats too few different characters"),
    ("anna", "passwordpassword", "is a common password"),
    ("anna", "P@ssw0rd2024!", "is a common password"),
    ("anna", "Centralino2024", "is a common password"),
    ("anna", "qwertyuiopas", "is a run of keys on a keyboard"),
    ("anna", "tulip orbit canyon", None),
    ("anna", "Secret-anna-1", None),
])
def test_weak_passwords(name: str, password: str, problem: str | None) -> None:
    assert password_problem(name, password) == problem


def test_agent_sources_restrict_registrations() -> None:
    cfg = kamailio_config(settings(agent_sources=("192.0.2.0/24", "2001:db8::/64")))
    assert 'if (!is_in_subnet("$si", "192.0.2.0/24,2001:db8::/64"))' in cfg


def test_no_trunks_and_no_agents_still_make_a_valid_config() -> None:
    cfg = kamailio_config(settings(trunk_sources=(), agents={}))
    assert "if (0) {" in cfg
    assert "htable:mod-init" not in cfg


def test_rpc_lets_only_read_only_methods_through() -> None:
    cfg = kamailio_config(settings())
    assert 'modparam("jsonrpcs", "transport", 1)' in cfg
    (line,) = [x for x in cfg.splitlines() if "$rb =~" in x]
    assert '"(ul[.]dump|ul[.]lookup)"' in line


def test_template_placeholders_are_all_filled() -> None:
    assert template_placeholders() == {
        "generated_from", "ivr", "listen", "realm", "rpc_methods", "rpc_url", "listen_port",
        "rpc_port", "max_contacts", "ivr_check", "trunk_check", "ivr_host_literal", "ivr_port",
        "source_header", "agent_source_check", "realm_literal", "agents_init",
        "rpc_request", "rpc_methods_and", "trunk_check_next_hop", "trunk_check_contact",
        "listen_host_literal", "decoy_ha1_literal", "max_failures", "scanner_agents",
        "flood_seconds", "flood_requests", "sanity_checks"}
    variants: list[dict[str, object]] = [
        {}, {"agent_sources": ("192.0.2.0/24",)}, {"trunk_sources": (), "agents": {}}]
    for variant in variants:
        cfg = kamailio_config(settings(**variant), "ivr.yaml")
        assert "{{" not in cfg  # no placeholder left
        assert "#%" not in cfg  # no template note
        assert cfg.startswith("#!KAMAILIO\n# Centralino edge")
        assert cfg.endswith("}\n")
        assert "# Generated by ivr.edge from ivr.yaml; do not edit" in cfg
    assert "realm office.example)" in kamailio_config(settings(realm="office.example"))


def test_template_ships_with_the_package() -> None:
    assert resources.files("ivr.edge").joinpath(TEMPLATE).is_file()
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    patterns = setup["options.package_data"]["ivr.edge"].split()
    assert any(fnmatch.fnmatch(TEMPLATE, pattern) for pattern in patterns)


@pytest.mark.parametrize("variant", [
    {},
    {"agent_sources": ("192.0.2.0/24",)},
    {"trunk_sources": (), "agents": {}},
    {"supervisors": {"laura": "velvet harbor lamp"}, "agent_sources": ("192.0.2.0/24",)},
    {"listen": Address("127.0.0.1", 5062), "realm": "office.example"},
    {"ivr": Address("192.0.2.6", 5060)},
    {"listen": Address("::1", 5060), "ivr": Address("::1", 5080),
     "trunk_sources": ("2001:db8::10",)},
])
def test_kamailio_accepts_the_generated_config(tmp_path: Path, variant: dict[str, object]) -> None:
    binary = require_kamailio()
    path = tmp_path / "kamailio.cfg"
    path.write_text(kamailio_config(settings(**variant)))
    ok, output = check_kamailio_config(path, binary)
    assert ok, output
    assert "config file ok" in output


@pytest.mark.parametrize(("change", "message"), [
    ({"listen": Address("0.0.0.0", 5060)}, "wildcard"),
    ({"ivr": Address("192.0.2.5", 5060)}, "cannot both listen"),
    ({"agents": {"anna smith": "x"}}, "cannot register"),
    ({"agents": {"anna": ""}}, "empty password"),
    ({"supervisors": {"laura": ""}}, "supervisor 'laura' has an empty password"),
    ({"supervisors": {"anna": "velvet harbor lamp"}}, "both an agent and a supervisor"),
    ({"trunk_sources": ("gateway.example",)}, "not an IP address"),
    ({"agent_sources": ("10.0.0.0/33",)}, "not an IP address"),
    ({"rpc_port": 80}, "rpc_port"),
    ({"realm": 'a"b'}, "realm"),
])
def test_settings_that_cannot_work_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(EdgeError, match=message):
        settings(**change)


def test_address_parsing() -> None:
    assert Address.parse("[::1]:5060") == Address("::1", 5060)
    assert str(Address("::1", 5060)) == "[::1]:5060"
    with pytest.raises(EdgeError):
        Address.parse("pbx.local:5060")
    with pytest.raises(EdgeError):
        Address.parse("127.0.0.1")


# -- supervisord.conf -----------------------------------------------------------------------

def test_supervisord_config_runs_both_programs(tmp_path: Path) -> None:
    work = tmp_path / "100% edge"
    ivr = ["/opt/centralino/.venv/bin/ivr", "run", "--config", "/etc/my ivr.yaml"]
    kam = kamailio_command(work / "kamailio.cfg", work, "/usr/sbin/kamailio")
    text = supervisord_config(ivr, kam, work, directory=tmp_path)
    parser = configparser.ConfigParser()  # supervisord's own %-interpolation
    parser.read_string(text)
    assert {"program:kamailio", "program:ivr", "supervisord", "supervisorctl"} <= set(
        parser.sections())
    assert "inet_http_server" not in parser.sections()
    assert shlex.split(parser["program:ivr"]["command"]) == ivr
    kam_args = shlex.split(parser["program:kamailio"]["command"])
    assert kam_args == kam
    assert "-DD" in kam_args
    assert "-E" in kam_args
    assert kam_args[kam_args.index("-f") + 1] == str(work / "kamailio.cfg")
    for program in ("program:kamailio", "program:ivr"):
        assert parser[program]["stopsignal"] == "TERM"
        assert int(parser[program]["stopwaitsecs"]) >= 10
        assert parser[program]["stdout_logfile"].startswith(str(work.resolve()))
    assert parser["supervisorctl"]["serverurl"] == f"unix://{work.resolve()}/supervisor.sock"
    assert int(parser["program:kamailio"]["priority"]) < int(parser["program:ivr"]["priority"])


def test_supervisor_itself_reads_the_config(tmp_path: Path) -> None:
    options_module = pytest.importorskip("supervisor.options")
    conf = tmp_path / "supervisord.conf"
    conf.write_text(supervisord_config(["/bin/sleep", "60"], ["/bin/sleep", "61"], tmp_path))
    options = options_module.ServerOptions()
    options.realize(args=["-c", str(conf)])
    names = {group.name for group in options.process_group_configs}
    assert names == {"kamailio", "ivr"}


# -- registrations --------------------------------------------------------------------------

# What Kamailio 5.6.3 answered to ul.dump with one registered baresip (recorded).
UL_DUMP = json.loads("""{"jsonrpc":"2.0","result":{"Domains":[{"Domain":{"Domain":"location",
"Size":1024,"AoRs":[{"Info":{"AoR":"anna","HashID":1834268440,"Contacts":[{"Contact":{
"Address":"sip:anna-0x5572c3c0f580@127.0.0.1:40231","Expires":60,"Q":-1,
"Call-ID":"6ef9ef884acc5415","CSeq":57649,"User-Agent":"baresip v1.0.0 (x86_64/linux)",
"Received":"[not set]","Path":"[not set]","State":"CS_NEW","Flags":0,"CFlags":0,
"Socket":"udp:127.0.0.1:5060","Methods":5087,"Ruid":"uloc-6b08f932-7a53-7",
"Instance":"[not set]","Reg-Id":0,"Server-Id":0,"Tcpconn-Id":-1,"Keepalive":0,
"Last-Keepalive":1795750230,"KA-Roundtrip":0,"Last-Modified":1795750230}}]}}],
"Stats":{"Records":1,"Max-Slots":1}}}]},"id":1}""")
EMPTY = {"Domains": [{"Domain": {"Domain": "location", "Size": 1024, "AoRs": [],
                                 "Stats": {"Records": 0, "Max-Slots": 0}}}]}


def _aor(name: str, *expires: object) -> dict[str, object]:
    return {"Info": {"AoR": name, "Contacts": [
        {"Contact": {"Address": f"sip:{name}@192.0.2.{i}:5060", "Expires": e}}
        for i, e in enumerate(expires)]}}


def test_parse_ul_dump_of_kamailio_5_6() -> None:
    assert parse_ul_dump(UL_DUMP["result"]) == {"anna": [Contact(
        "sip:anna-0x5572c3c0f580@127.0.0.1:40231", 60, "baresip v1.0.0 (x86_64/linux)")]}
    assert parse_ul_dump(EMPTY) == {}


def test_parse_ul_dump_leaves_out_expired_contacts() -> None:
    result = {"Domains": [{"Domain": {"Domain": "location", "AoRs": [
        _aor("anna", "expired", 30), _aor("marco", "deleted"), _aor("zoe", "permanent"),
        _aor("old", 0)]}}, {"Domain": {"Domain": "other", "AoRs": [_aor("x", 10)]}}]}
    parsed = parse_ul_dump(result)
    assert set(parsed) == {"anna", "zoe"}
    assert [c.expires for c in parsed["anna"]] == [30]
    assert parsed["zoe"][0].expires is None


@pytest.mark.parametrize("bad", [None, [], {"Domains": {}}, {"Domains": [{"Domain": 3}]},
                                 {"Domains": [{"Domain": {"Domain": "location",
                                                          "AoRs": [{"Info": {}}]}}]}])
def test_parse_ul_dump_refuses_other_shapes(bad: object) -> None:
    with pytest.raises(RegistrationsError, match=r"unexpected ul\.dump answer"):
        parse_ul_dump(bad)


class _Handler(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, bytes, float]]] = []
    bodies: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        status, body, delay = type(self).answers.pop(0)
        time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (the timeout case)
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rpc() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"answers": [], "bodies": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/RPC", handler
    server.shutdown()
    server.server_close()


def test_fetch_posts_ul_dump_and_reads_the_answer(rpc: tuple[str, type[_Handler]]) -> None:
    url, handler = rpc
    handler.answers.append((200, json.dumps(UL_DUMP).encode(), 0))
    assert list(Registrations().fetch(url)) == ["anna"]
    assert handler.bodies == [{"jsonrpc": "2.0", "method": "ul.dump", "id": 1}]


@pytest.mark.parametrize(("status", "body", "delay", "message"), [
    (200, b'{"jsonrpc":"2.0","error":{"code":500,"message":"boom"},"id":1}', 0, "failed: 500 boom"),
    (403, b"only ul.dump and ul.lookup\n", 0, "HTTP 403"),
    (200, b"<html>", 0, "not JSON"),
    (200, b'{"jsonrpc":"2.0","id":1}', 0, "no result"),
    (200, json.dumps(EMPTY).encode(), 1.0, "cannot reach"),
])
def test_fetch_failures_are_clear(rpc: tuple[str, type[_Handler]], status: int, body: bytes,
                                  delay: float, message: str) -> None:
    url, handler = rpc
    handler.answers.append((status, body, delay))
    with pytest.raises(RegistrationsError, match=message):
        Registrations(timeout=0.3).fetch(url)


def test_fetch_from_nothing_listening() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistrationsError, match="cannot reach Kamailio's JSON-RPC"):
        Registrations(timeout=0.5).fetch(f"http://127.0.0.1:{port}/RPC")


class FakeClient(Registrations):
    def __init__(self, answers: list[dict[str, list[Contact]] | Exception]):
        super().__init__()
        self.answers = answers

    def fetch(self, url: str) -> dict[str, list[Contact]]:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def _regs(*names: str) -> dict[str, list[Contact]]:
    return {n: [Contact(f"sip:{n}@192.0.2.1", 60)] for n in names}


def test_poller_reports_only_changes(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[frozenset[str]] = []
    down = RegistrationsError("cannot reach Kamailio's JSON-RPC at x: refused")
    client = FakeClient([_regs(), _regs("anna"), _regs("anna"), _regs("marco", "anna"),
                         down, down, _regs("anna"), _regs("anna")])
    poller = RegistrationsPoller("http://x/RPC", 2.0, seen.append, client)
    assert poller.registered is None
    results = [poller.check() for _ in range(8)]
    assert results[3] == frozenset({"anna", "marco"})
    assert results[4] == frozenset()
    assert seen == [frozenset(), frozenset({"anna"}), frozenset({"anna", "marco"}),
                    frozenset(), frozenset({"anna"})]
    warnings = [r for r in caplog.records if "registrations unavailable" in r.getMessage()]
    assert len(warnings) == 1  # an outage is logged once
    assert not poller.failing


def test_poller_thread_starts_and_stops() -> None:
    seen: list[frozenset[str]] = []
    changed = threading.Event()

    def on_change(names: frozenset[str]) -> None:
        seen.append(names)
        if names:
            changed.set()
        raise RuntimeError("a failing callback does not stop the polling")

    client = FakeClient([_regs(), _regs("anna")])
    poller = RegistrationsPoller("http://x/RPC", 0.01, on_change, client)
    poller.start()
    with pytest.raises(RuntimeError):
        poller.start()
    assert changed.wait(2.0)
    poller.stop()
    assert seen == [frozenset(), frozenset({"anna"})]


class BlockedClient(Registrations):
    """Answers anna at once, then blocks its second fetch until released (as a Kamailio that
    stopped answering would, up to the HTTP timeout), then answers marco."""

    def __init__(self, timeout: float):
        super().__init__(timeout=timeout)
        self.calls = 0
        self.in_flight = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()
        self.threads: list[threading.Thread] = []

    def fetch(self, url: str) -> dict[str, list[Contact]]:
        self.calls += 1
        self.threads.append(threading.current_thread())
        if self.calls == 1:
            return _regs("anna")
        self.in_flight.set()
        assert self.release.wait(30)
        self.returned.set()
        return _regs("marco")


def test_poller_stop_does_not_wait_for_a_request_in_flight() -> None:
    seen: list[frozenset[str]] = []
    first = threading.Event()

    def on_change(names: frozenset[str]) -> None:
        seen.append(names)
        first.set()

    client = BlockedClient(timeout=0.2)
    poller = RegistrationsPoller("http://x/RPC", 0.01, on_change, client)
    poller.start()
    assert first.wait(5)
    assert client.in_flight.wait(5)
    (thread,) = set(client.threads)
    assert thread.daemon  # never keeps the process alive
    poller.stop()  # returns after at most the HTTP timeout, the request still blocked
    assert not client.returned.is_set()
    assert thread.is_alive()
    client.release.set()
    assert client.returned.wait(5)
    thread.join(5)
    assert not thread.is_alive()
    assert seen == [frozenset({"anna"})]  # marco came back after stop(): never posted
    assert poller.registered == frozenset({"anna"})


def test_poller_can_be_stopped_by_its_own_callback() -> None:
    threads: list[threading.Thread] = []
    stopped = threading.Event()
    poller: RegistrationsPoller

    def on_change(names: frozenset[str]) -> None:
        threads.append(threading.current_thread())
        poller.stop()
        stopped.set()

    poller = RegistrationsPoller("http://x/RPC", 0.01, on_change,
                                 FakeClient([_regs(), _regs("anna")]))
    poller.start()
    assert stopped.wait(5)
    (thread,) = threads
    thread.join(5)
    assert not thread.is_alive()
    assert len(threads) == 1
    poller.stop()  # already stopped: nothing to do


# -- from ivr.yaml --------------------------------------------------------------------------

IVR_YAML = """\
sip:
  listen: 127.0.0.1:5080
trunks:
  gateway:
    sources: [192.0.2.1, 127.0.0.1]
agents:
  anna:
    uri: sip:anna@127.0.0.1:5060
    password: tulip-orbit-canyon
  marco:
    uri: sip:marco@127.0.0.1
    password: "marco secret"
  desk:
    uri: sip:desk@192.0.2.40:5060
edge:
  listen: 127.0.0.1:5060
  rpc_port: 5071
  trunk_sources: [192.0.2.1]
  agent_sources: [127.0.0.0/8, 192.0.2.0/24]
flow: flows/demo.yaml
"""


def test_settings_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(IVR_YAML)
    plan = settings_from_yaml(path)
    s = plan.settings
    assert s.listen == Address("127.0.0.1", 5060)
    assert s.ivr == Address("127.0.0.1", 5080)
    assert dict(s.agents) == {"anna": "tulip-orbit-canyon", "marco": "marco secret"}
    assert s.trunk_sources == ("192.0.2.1/32",)
    assert s.agent_sources == ("127.0.0.0/8", "192.0.2.0/24")
    assert s.rpc_url == "http://127.0.0.1:5071/RPC"
    assert plan.notes == ()


def test_settings_from_yaml_without_an_edge_section(tmp_path: Path) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(IVR_YAML.split("edge:")[0] + "flow: flows/demo.yaml\n")
    plan = settings_from_yaml(path)
    assert plan.settings.listen == Address("127.0.0.1", 5060)
    assert plan.settings.rpc_port == 5071
    assert plan.settings.trunk_sources == ("192.0.2.1/32", "127.0.0.1/32")
    assert any("trunk_sources not given" in n for n in plan.notes)


@pytest.mark.parametrize(("old", "new", "where", "message"), [
    ("uri: sip:anna@127.0.0.1:5060", "uri: sip:anna@192.0.2.40:5060", "agents.anna.uri",
     "must dial it there: uri: sip:anna@127.0.0.1:5060"),
    ("rpc_port: 5071", "rpc_prot: 5071", "edge.rpc_prot", "Did you mean 'rpc_port'?"),
    ("[192.0.2.1]\n  agent", "[192.0.2.999]\n  agent", "edge.trunk_sources[0]",
     "not an IP address"),
    ("password: tulip-orbit-canyon", "password: ''", "agents.anna.password", "empty"),
    ("listen: 127.0.0.1:5060\n  rpc", "listen: 192.0.2.77:5060\n  rpc", "edge.listen",
     "add 192.0.2.77 to a trunk's sources"),
    ("listen: 127.0.0.1:5060\n  rpc", "listen: 127.0.0.1:5080\n  rpc", "edge.listen",
     "cannot both listen"),
    ("listen: 127.0.0.1:5060\n  rpc", "listen: 0.0.0.0:5060\n  rpc", "edge.listen",
     "listens everywhere"),
])
def test_yaml_errors_are_located(tmp_path: Path, old: str, new: str, where: str,
                                 message: str) -> None:
    assert old in IVR_YAML
    path = tmp_path / "ivr.yaml"
    path.write_text(IVR_YAML.replace(old, new, 1))
    with pytest.raises(DocumentError) as caught:
        settings_from_yaml(path)
    text = str(caught.value)
    assert re.search(rf"ivr\.yaml:\d+:\d+: {re.escape(where)}: .*{re.escape(message)}", text), text


def test_command_line_writes_both_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(IVR_YAML)
    path.chmod(0o600)
    out = tmp_path / "var" / "edge"
    args = ["--config", str(path), "--out", str(out)]
    binary = find_kamailio()
    assert main([*args, "--no-check"] if binary is None else args) == 0
    cfg = out / "kamailio.cfg"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert "tulip-orbit-canyon" not in cfg.read_text()
    parser = configparser.ConfigParser()
    parser.read_string((out / "supervisord.conf").read_text())
    assert str(path.resolve()) in parser["program:ivr"]["command"]
    assert "2 agent(s) and 0 supervisor(s) may register" in capsys.readouterr().out


def test_python_dash_m_ivr_edge(tmp_path: Path) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(IVR_YAML)
    path.chmod(0o600)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "ivr.edge", "--config", str(path), "--out",
                           str(out), "--no-check"], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out / 'kamailio.cfg'}" in done.stdout
    assert (out / "kamailio.cfg").read_text() == kamailio_config(
        settings_from_yaml(path).settings, source="ivr.yaml")


def test_command_line_reports_located_errors(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(IVR_YAML.replace("rpc_port: 5071", "rpc_port: many"))
    assert main(["--config", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "ivr.yaml:17:13: edge.rpc_port: expected a whole number" in capsys.readouterr().err


# -- passwords: weak ones, files others can read, the secrets file --------------------------

def test_weak_password_or_readable_file_is_a_refusal_of_ivr_edge(tmp_path: Path) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(IVR_YAML.replace("tulip-orbit-canyon", "anna2024"))
    path.chmod(0o644)
    plan = settings_from_yaml(path)  # the settings themselves are fine (ivr run reads them)
    assert plan.settings.agents["anna"] == "anna2024"
    weak, readable = plan.refusals
    assert re.fullmatch(r".*ivr\.yaml:9:15: agents\.anna\.password: agent 'anna': the password "
                        r"is shorter than 12 characters; .*", weak), weak
    assert readable == ("ivr.yaml: holds passwords (anna, marco) and others may read it (mode "
                        "0644): run 'chmod 600 ivr.yaml', or move the passwords to a file of "
                        "mode 0600 named by edge.secrets")
    with pytest.raises(EdgeError, match="agent 'anna': the password is shorter"):
        write_edge(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


SECRETS_YAML = IVR_YAML.replace("    password: tulip-orbit-canyon\n", "").replace(
    '    password: "marco secret"\n', "").replace(
    "  agent_sources:", "  secrets: secrets.yaml\n  agent_sources:")


def test_passwords_from_a_secrets_file(tmp_path: Path) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(SECRETS_YAML)
    path.chmod(0o644)  # it holds no password: anyone may read it
    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text('anna: "tulip orbit canyon"\nmarco: "velvet harbor 93 lamp"\n')
    secrets_file.chmod(0o600)
    plan = settings_from_yaml(path)
    assert dict(plan.settings.agents) == {"anna": "tulip orbit canyon",
                                          "marco": "velvet harbor 93 lamp"}
    assert plan.refusals == ()
    secrets_file.chmod(0o640)
    (refusal,) = settings_from_yaml(path).refusals
    assert refusal == (f"secrets.yaml: others may read this secrets file (mode 0640): run "
                       f"'chmod 600 {secrets_file}'")


@pytest.mark.parametrize(("secrets_text", "where", "message"), [
    ('anna: "tulip orbit canyon"\nbob: "velvet harbor 93 lamp"\n', "secrets.yaml:2:6: bob",
     "'bob' is not an agent or supervisor of ivr.yaml"),
    ("- anna\n", "secrets.yaml:1:1", "expected name: password lines"),
    ('anna: ""\n', "secrets.yaml:1:7: anna", "the password is empty"),
])
def test_secrets_file_problems_are_located(tmp_path: Path, secrets_text: str, where: str,
                                           message: str) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(SECRETS_YAML)
    (tmp_path / "secrets.yaml").write_text(secrets_text)
    with pytest.raises(DocumentError) as caught:
        settings_from_yaml(path)
    assert any(str(p).startswith(where) and message in str(p) for p in caught.value.problems), \
        str(caught.value)


def test_a_password_in_both_places_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(IVR_YAML.replace("  agent_sources:",
                                     "  secrets: secrets.yaml\n  agent_sources:"))
    (tmp_path / "secrets.yaml").write_text('anna: "tulip orbit canyon"\n')
    with pytest.raises(DocumentError, match=r"agents\.anna\.password: agent 'anna' also has a "
                                            "password in the secrets file"):
        settings_from_yaml(path)

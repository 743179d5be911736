"""ivr doctor (the checks, not --security): each check against the real thing it looks at."""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from ivr.checkup import (
    check_clock,
    check_console,
    check_database,
    check_devices,
    check_gateways,
    check_ports,
    check_prompts,
    check_sip_stack,
    exit_status,
    format_checks,
    run_checks,
    switchboard_pid,
)
from ivr.cli import main
from ivr.config import Config, load_config
from ivr.prompts import check_tools
from ivr.store import CallStore
from tests.e2e import free_tcp_port, free_udp_port
from tests.support.sip_stub import GatewayStub


def write_config(tmp: Path, extra: str = "", sip_port: int | None = None,
                 trunk: str = "") -> Path:
    (tmp / "f.yaml").write_text("x")
    port = sip_port or free_udp_port()
    rtp = free_udp_port()
    (tmp / "ivr.yaml").write_text(
        f"sip: {{listen: 127.0.0.1:{port}, rtp_port: {rtp}, rtp_port_range: 2}}\n"
        f"trunks:\n  gw: {{sources: [127.0.0.1]{trunk}}}\n"
        f"metrics: 127.0.0.1:{free_tcp_port()}\n"
        f"flow: f.yaml\nstore: calls.db\n{extra}")
    return tmp / "ivr.yaml"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


# -- ports -----------------------------------------------------------------------------------


def test_free_ports_are_ok(config: Config) -> None:
    [check] = check_ports(config, None)
    assert check.status == "ok"
    assert f"SIP {config.sip_listen.port}/udp" in check.text
    assert "metrics" in check.text


def test_a_busy_sip_port_fails_and_says_how_to_find_the_holder(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        config = load_config(write_config(tmp_path, sip_port=port))
        [check] = check_ports(config, None)
        assert check.status == "fail"
        assert f"SIP port 127.0.0.1:{port}/udp: in use" in check.text
        assert f"ss -lnpu 'sport = :{port}'" in check.fix
        # the same port held by the running switchboard (its store lock held) is fine
        store = CallStore.open_for_service(config.store)
        try:
            assert switchboard_pid(config.store) == os.getpid()
            [check] = check_ports(config, switchboard_pid(config.store))
            assert check.status == "ok"
            assert f"pid {os.getpid()}" in check.text
        finally:
            store.close()
    assert switchboard_pid(config.store) is None


def test_a_busy_metrics_port_fails(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert config.metrics is not None
    with socket.socket() as busy:
        busy.bind((config.metrics.host, config.metrics.port))
        busy.listen()
        checks = check_ports(config, None)
    assert [c.status for c in checks] == ["fail"]
    assert "metrics port" in checks[0].text


# -- gateways --------------------------------------------------------------------------------


@pytest.fixture
def stubs() -> Iterator[list[GatewayStub]]:
    made: list[GatewayStub] = []
    yield made
    for stub in made:
        stub.close()


def test_gateways_answering_503_or_silent_fail(tmp_path: Path, stubs: list[GatewayStub]) -> None:
    stubs += [GatewayStub("200 OK"), GatewayStub("503 Service Unavailable"), GatewayStub(None)]
    ok, busy, silent = stubs
    (tmp_path / "f.yaml").write_text("x")
    (tmp_path / "ivr.yaml").write_text(
        "sip: {listen: 127.0.0.1:5999}\ntrunks:\n"
        f"  a: {{sources: [127.0.0.1], ping: 127.0.0.1:{ok.port}}}\n"
        f"  b: {{sources: [127.0.0.2], ping: 127.0.0.1:{busy.port}}}\n"
        f"  c: {{sources: [127.0.0.3], ping: 127.0.0.1:{silent.port}}}\n"
        "  d: {sources: [127.0.0.4]}\n"
        "flow: f.yaml\nstore: calls.db\n")
    checks = check_gateways(load_config(tmp_path / "ivr.yaml"), 0.5)
    assert [(c.status, c.text.split(":")[0]) for c in checks] == [
        ("ok", "trunk a (127.0.0.1"), ("fail", "trunk b (127.0.0.1"),
        ("fail", "trunk c (127.0.0.1")]
    assert "SIP 200 OK" in checks[0].text
    assert "SIP 503 Service Unavailable" in checks[1].text
    assert "no answer to OPTIONS in 0.5 s" in checks[2].text
    assert silent.received.is_set()  # asked, all three in the same round


def test_no_pinged_trunk_skips(config: Config) -> None:
    assert [c.status for c in check_gateways(config, 0.1)] == ["skip"]


# -- clock -----------------------------------------------------------------------------------


def runner(answers: dict[str, str]) -> object:
    def run(argv: Sequence[str]) -> str | None:
        return answers.get(argv[0])
    return run


@pytest.mark.parametrize(("answers", "kernel", "status", "source"), [
    ({"timedatectl": "yes\n"}, None, "ok", "timedatectl"),
    ({"timedatectl": "no\n"}, True, "fail", "timedatectl"),
    ({"chronyc": "Reference ID : 0\nLeap status     : Normal\n"}, None, "ok", "chronyc"),
    ({"chronyc": "Leap status     : Not synchronised\n"}, None, "fail", "chronyc"),
    ({}, True, "ok", "adjtimex"),
    ({}, False, "warning", "adjtimex"),
    ({}, None, "warning", "unknown"),
])
def test_clock_sources_in_order(answers: dict[str, str], kernel: bool | None, status: str,
                                source: str) -> None:
    check = check_clock(runner(answers), lambda: kernel)  # type: ignore[arg-type]
    assert check.status == status
    assert source in check.text


def test_clock_on_this_machine_names_its_source() -> None:
    check = check_clock()
    assert check.status in ("ok", "warning", "fail")
    assert any(s in check.text for s in ("timedatectl", "chronyc", "adjtimex", "unknown"))


# -- database --------------------------------------------------------------------------------


def test_healthy_database_is_ok_even_while_the_switchboard_writes(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    store = CallStore.open_for_service(path)
    try:
        check = check_database(path)
    finally:
        store.close()
    assert check.status == "ok", check
    assert "integrity ok" in check.text


def test_corrupted_database_fails_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size=1024")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    db.execute("CREATE INDEX t_v ON t(v)")
    db.executemany("INSERT INTO t(v) VALUES (?)", [(f"row {i}" * 20,) for i in range(500)])
    db.commit()
    db.close()
    size = path.stat().st_size
    with path.open("r+b") as f:  # garbage over pages in the middle of the table and index
        f.seek(size // 2)
        f.write(os.urandom(4096))
    check = check_database(path)
    assert check.status == "fail", check
    assert "restore" in check.fix


def test_a_file_that_is_not_a_database_fails(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    path.write_bytes(b"this is not sqlite" * 100)
    check = check_database(path)
    assert check.status == "fail"
    assert "not a database" in check.text


def test_missing_database_is_ok(tmp_path: Path) -> None:
    assert check_database(tmp_path / "calls.db").status == "ok"


# -- devices, prompts, SIP stack -------------------------------------------------------------


def test_devices_present_missing_and_remote(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        tty = os.ttyname(slave)
        extra = ("devices:\n"
                 f"  night: {{kind: night_switch, url: {tty}, line: cts}}\n"
                 f"  lamp: {{kind: lamp, url: {tmp_path}/ttyUSB9, line: rts}}\n"
                 "  test: {kind: lamp, url: 'loop://', line: dtr}\n")
        checks = check_devices(load_config(write_config(tmp_path, extra)))
    finally:
        os.close(master)
        os.close(slave)
    assert [c.status for c in checks] == ["ok", "fail", "skip"]
    assert "port missing" in checks[1].text
    assert "ivr hw list" in checks[1].fix


@pytest.mark.skipif(bool(check_tools()), reason="espeak-ng or sox missing")
def test_prompts_render() -> None:
    assert check_prompts().status == "ok"
    bad = check_prompts("xx-no-such-voice")
    assert bad.status == "fail"
    assert "voice" in bad.fix


def test_sip_stack_security_patches() -> None:
    good = SimpleNamespace(PJ_VERSION="2.12.1", SOURCE="debian ring",
                           PATCHES=["CVE-2023-27585_ring.patch", "0001-request-policy-hook.patch"])
    check = check_sip_stack(good)
    assert check.status == "ok"
    assert "CVE-2023-27585_ring.patch" in check.text
    assert "ours: 0001" in check.text
    bare = check_sip_stack(SimpleNamespace(PJ_VERSION="2.12.1", SOURCE="tarball", PATCHES=[]))
    assert bare.status == "fail"
    assert "missing CVE-2023-27585" in bare.text


# -- the whole report ------------------------------------------------------------------------


def test_invalid_configuration_fails_and_skips_what_needs_it(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             ) -> None:
    (tmp_path / "ivr.yaml").write_text("sip: {listen: nowhere}\n")
    assert main(["doctor", "--config", str(tmp_path / "ivr.yaml")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL  configuration")
    assert "ports" not in out
    assert "SIP stack" in out


def test_report_lists_every_area_once_and_exits_by_failures(tmp_path: Path) -> None:
    checks = run_checks(write_config(tmp_path), 0.2)
    areas = list(dict.fromkeys(c.area for c in checks))
    assert areas == ["configuration", "ports", "gateways", "clock", "disk", "prompts",
                     "database", "console", "edge", "devices", "SIP stack"]
    text = format_checks(checks)
    assert text.rstrip().splitlines()[-1].endswith("skipped")
    assert exit_status(checks) == (1 if any(c.status == "fail" for c in checks) else 0)


# -- console ---------------------------------------------------------------------------------


def test_console_accounts_are_checked_in_the_store(tmp_path: Path) -> None:
    from ivr.console.accounts import Accounts

    port = free_tcp_port()
    config = load_config(write_config(
        tmp_path, f"console: 127.0.0.1:{port}\nagents:\n"
                  "  anna: {uri: 'sip:anna@127.0.0.1:5999'}\n"
                  "  marco: {uri: 'sip:marco@127.0.0.1:5998'}\n"))
    check = check_console(config)  # no store yet: nobody can log in
    assert (check.status, check.fix) == ("warning", "ivr user add NAME --role admin")
    assert f"http://127.0.0.1:{port}/" in check.text
    accounts = Accounts(config.store)
    accounts.add_user("boss", "a long password", "admin")
    accounts.add_user("anna", "a long password", "agent", agent="anna")
    check = check_console(config)
    assert check.status == "warning"
    assert "agents without one: marco" in check.text
    assert check.fix == "ivr user add NAME --role agent --agent marco"
    accounts.add_user("marco", "a long password", "agent", agent="marco")
    check = check_console(config)
    assert (check.status, check.text) == (
        "ok", f"http://127.0.0.1:{port}/: 3 account(s), every agent has one")


def test_console_off_or_missing_tls_files(tmp_path: Path) -> None:
    off = load_config(write_config(tmp_path, "console: off\n"))
    assert check_console(off).status == "skip"
    (tmp_path / "key.pem").write_text("x")
    (tmp_path / "cert.pem").write_text("x")
    tls = load_config(write_config(
        tmp_path, f"console: {{listen: 127.0.0.1:{free_tcp_port()}, "
                  f"tls: {{cert: {tmp_path / 'cert.pem'}, key: {tmp_path / 'key.pem'}}}}}\n"))
    (tmp_path / "cert.pem").unlink()  # gone since the configuration was checked
    check = check_console(tls)
    assert check.status == "fail"
    assert "cert.pem is missing" in check.text

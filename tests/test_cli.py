"""The `ivr` command: help, version, validate."""

import subprocess
import sys
from pathlib import Path

import pytest

from ivr.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["validate", "--help"],
                                  ["version", "--help"], ["doctor", "--help"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: ivr" in capsys.readouterr().out


def test_validate_shipped_flow(capsys):
    assert main(["validate", str(ROOT / "flows" / "demo.yaml"), "--config",
                 str(ROOT / "ivr.yaml")]) == 0
    assert "ok (flow 'demo', 5 nodes" in capsys.readouterr().out


def test_validate_broken_flow_lists_problems_and_fails(capsys):
    bad = ROOT / "tests" / "flows_bad" / "typo_key.yaml"
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "typo_key.yaml:8:5: nodes.a.timout: unknown key 'timout'. Did you mean 'timeout'?" in err
    assert "1 problem found." in err


def test_run_refuses_broken_config_without_traceback(tmp_path):
    cfg = tmp_path / "ivr.yaml"
    cfg.write_text("sip: {listen: 127.0.0.1:99999}\ntrunks: {gw: {sources: [not-an-ip]}}\n"
                   "flow: flows/demo.yaml\nqueus: {}\n")
    proc = subprocess.run([sys.executable, "-m", "ivr.cli", "run", "--config", str(cfg)],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert "ivr.yaml:1:15: sip.listen: '127.0.0.1:99999' is not an address:port such as " \
        "127.0.0.1:5080" in lines[0]
    assert "trunks.gw.sources[0]: 'not-an-ip' is not an IP address or network" in lines[1]
    assert "queus: unknown key 'queus'. Did you mean 'queues'?" in lines[2]
    assert lines[3] == "3 problems found."


def test_version_names_the_sip_stack(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ivr (Centralino) ")
    assert "SIP stack:" in out


def test_validate_every_shipped_flow_and_its_tests(capsys):
    files = sorted(str(p) for p in (ROOT / "flows").glob("*.yaml"))
    assert any(f.endswith(".test.yaml") for f in files)
    assert main(["validate", *files, "--config", str(ROOT / "ivr.yaml")]) == 0
    out = capsys.readouterr().out
    assert "office.yaml: ok (flow 'office'" in out
    assert "office.test.yaml: ok (tests of flow 'office'" in out


def test_doctor_security_prints_the_attack_surface_of_the_shipped_config(tmp_path, capsys):
    # a copy, so that a database left by 'make run' in var/ does not change the report
    config = (ROOT / "ivr.yaml").read_text().replace("flow: flows/demo.yaml",
                                                     f"flow: {ROOT}/flows/demo.yaml")
    (tmp_path / "ivr.yaml").write_text(config)
    (tmp_path / "ivr.yaml").chmod(0o644)
    assert main(["doctor", "--security", "--config", str(tmp_path / "ivr.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Trunks: who may call in" in out
    assert "trunk 'loopback': calls from 127.0.0.1; at most 30 at once" in out
    assert out.rstrip().endswith("0 dangers, 0 warnings, 12 ok")


def test_doctor_security_fails_on_a_dangerous_dial_out_rule(tmp_path, capsys):
    config = (ROOT / "ivr.yaml").read_text().replace("flow: flows/demo.yaml",
                                                     f"flow: {ROOT}/flows/demo.yaml")
    config += '\ndial_out:\n  - {pattern: "^00[0-9]+$", uri: "sip:{number}@127.0.0.1"}\n'
    (tmp_path / "ivr.yaml").write_text(config)
    assert main(["doctor", "--security", "--config", str(tmp_path / "ivr.yaml")]) == 1
    assert "danger" in capsys.readouterr().out

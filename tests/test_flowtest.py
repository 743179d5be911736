"""ivr test: flow test files, their cases, and located errors in bad ones."""

import shutil
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.flow import DocumentError
from ivr.flowtest import load_tests, run_case

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "flows_sim"


@pytest.fixture
def demo_dir(tmp_path, monkeypatch):
    """A copy of the demo flow in a temporary folder, which is also the working directory."""
    shutil.copy(ROOT / "flows" / "demo.yaml", tmp_path / "demo.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(argv, capsys):
    status = main(["test", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_shipped_flow_tests_pass(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    status, out, err = run([], capsys)  # default: flows/
    assert status == 0, out + err
    lines = out.splitlines()
    assert all(line.startswith("PASS  flows/") for line in lines[:-1])
    demo = [line for line in lines if line.startswith("PASS  flows/demo.test.yaml:")]
    assert len(demo) >= 5
    passed = len(lines) - 1
    assert lines[-1] == f"{passed} passed, 0 failed"


def test_hours_and_holidays_fixture(capsys):
    status, out, _ = run([str(FIXTURES)], capsys)
    assert status == 0, out
    assert "Christmas, a national holiday" in out
    assert "Easter Monday, a holiday that moves every year" in out
    assert out.splitlines()[-1] == "9 passed, 0 failed"


def test_holiday_case_passes_and_working_day_would_not():
    tests = load_tests(FIXTURES / "hours.test.yaml")
    (christmas,) = [c for c in tests.cases if c.name.startswith("Christmas")]
    outcome = run_case(tests.flow, christmas)
    assert outcome.passed, outcome.failures
    assert outcome.result.path == "hours[holiday] > holiday"
    assert christmas.at.isoformat() == "2026-12-25T10:00:00+01:00"


def test_a_failing_case_shows_expected_and_actual(demo_dir, capsys):
    (demo_dir / "demo.test.yaml").write_text("""\
flow: demo.yaml
cases:
  - name: good
    digits: [2, 1]
    expect: {exit: {queue: support}}
  - name: wrong
    digits: [2, 1]
    expect:
      path: [welcome, main, sales]
      exit: {queue: sales}
      variables: {language: it, account: "1"}
      heard: [Ciao]
""")
    status, out, _ = run(["demo.test.yaml"], capsys)
    assert status == 1
    lines = out.splitlines()
    assert lines[0] == "PASS  demo.test.yaml:3  good"
    assert lines[1] == "FAIL  demo.test.yaml:6  wrong"
    assert lines[2:11] == [
        "      path: expected welcome > main > sales",
        "            actual   welcome > main > support   (welcome[2] > main[1] > support)",
        "      exit: expected queue sales",
        "            actual   queue support",
        "      variable language: expected 'it'",
        "                         actual   'en'",
        "      variable account: expected '1'",
        "                        actual   (not set)",
        "      heard: 'Ciao' was never said",
    ]
    assert lines[11] == "      transcript:"
    assert "        [ 0.0s] say (it): Benvenuti. Per l'italiano, premere 1." in out
    assert lines[-1] == "1 passed, 1 failed"


def test_path_text_exit_kind_and_any_value(demo_dir, capsys):
    (demo_dir / "demo.test.yaml").write_text("""\
flow: demo.yaml
defaults: {language: en}
cases:
  - name: exact path text
    digits: "1,7,2"
    barge_in: true
    expect: {path: "welcome[1] > main[7!2] > sales", exit: queue}
  - name: any hangup reason
    digits: [wait, wait, wait]
    expect: {exit: {hangup: "*"}, variables: {language: en}}
  - name: keys left over fail the case
    digits: [2, 1, 9]
    expect: {exit: {queue: support}}
""")
    status, out, _ = run(["demo.yaml"], capsys)  # a flow file stands for its test file
    assert status == 1
    assert "PASS  demo.test.yaml:4  exact path text" in out
    assert "PASS  demo.test.yaml:8  any hangup reason" in out
    assert "FAIL  demo.test.yaml:11  keys left over fail the case\n" \
           "      digits: the call had left the IVR before 9\n" in out
    assert out.splitlines()[-1] == "2 passed, 1 failed"


def test_bad_test_file_gives_located_errors(demo_dir, capsys):
    (demo_dir / "demo.test.yaml").write_text("""\
flow: demo.yaml
cases:
  - name: one
    digits: [2, x1, wait]
    languag: en
    at: "yesterday"
    expect:
      path: [welcome, mian]
      exit: {queue: suport}
  - name: two
    expect: {exit: {hungup: flow_end}}
  - name: three
    expect: {}
  - name: one
    expect: {exit: {hangup: done}, variables: {language: [en]}}
  - digits: 1
""")
    status, out, err = run(["demo.test.yaml"], capsys)
    assert status == 1
    assert err.splitlines() == [
        "demo.test.yaml:4:17: cases[0].digits[1]: 'x1' is neither phone keys (0-9, * and #) "
        "nor 'wait'; e.g. digits: [2, 1, wait, \"123#\"]",
        "demo.test.yaml:5:5: cases[0].languag: unknown key 'languag'. Did you mean 'language'?",
        "demo.test.yaml:6:9: cases[0].at: 'yesterday' is not a date and time such as "
        "'2026-12-25 10:00' (optionally followed by a time zone such as Europe/Rome)",
        "demo.test.yaml:8:23: cases[0].expect.path[1]: the flow has no node 'mian'. "
        "Did you mean 'main'?",
        "demo.test.yaml:9:21: cases[0].expect.exit.queue: the flow has no queue 'suport'. "
        "Did you mean 'support'?",
        "demo.test.yaml:11:29: cases[1].expect.exit.hungup: 'hungup' is not a way out of the "
        "IVR; use one of queue, hangup, voicemail, transfer. Did you mean 'hangup'?",
        "demo.test.yaml:13:13: cases[2].expect: give at least one of path, exit, variables, "
        "heard",
        "demo.test.yaml:14:5: cases[3]: a case named 'one' is given twice",
        "demo.test.yaml:15:29: cases[3].expect.exit.hangup: 'done' is not a hangup reason "
        "(flow_end, menu_failures, collect_failures, voicemail_done, transfer_failed, "
        "flow_error, caller)",
        "demo.test.yaml:15:58: cases[3].expect.variables.language: expected text, got a list",
        "demo.test.yaml:16:5: cases[4]: missing required key 'name'",
        "demo.test.yaml:16:5: cases[4]: missing required key 'expect'",
    ]
    assert out == "0 passed, 0 failed; 1 test file with errors\n"


def test_flow_that_does_not_load_lists_its_problems_first(tmp_path, capsys, monkeypatch):
    shutil.copy(ROOT / "tests" / "flows_bad" / "typo_key.yaml", tmp_path / "typo_key.yaml")
    (tmp_path / "typo_key.test.yaml").write_text(
        "flow: typo_key.yaml\ncases:\n  - {name: a, expect: {exit: queue}}\n")
    (tmp_path / "gone.test.yaml").write_text(
        "flow: gone.yaml\ncases:\n  - {name: a, expect: {exit: queue}}\n")
    monkeypatch.chdir(tmp_path)
    status, out, err = run(["."], capsys)
    assert status == 1
    assert err.splitlines() == [
        "gone.test.yaml:1:7: flow: flow file 'gone.yaml' does not exist (paths are relative to "
        "the test file)",
        "typo_key.yaml:8:5: nodes.a.timout: unknown key 'timout'. Did you mean 'timeout'?",
        "typo_key.test.yaml:1:7: flow: the flow 'typo_key.yaml' does not load: 1 problem, "
        "listed above",
    ]
    assert out == "0 passed, 0 failed; 2 test files with errors\n"


def test_a_flow_with_hours_needs_at(tmp_path):
    shutil.copy(FIXTURES / "hours.yaml", tmp_path / "hours.yaml")
    bad = tmp_path / "hours.test.yaml"
    bad.write_text("flow: hours.yaml\ncases:\n  - name: when?\n    expect: {exit: queue}\n")
    with pytest.raises(DocumentError) as info:
        load_tests(bad, "hours.test.yaml")
    assert [str(p) for p in info.value.problems] == [
        "hours.test.yaml:3:5: cases[0]: the flow has business hours: give 'at' (e.g. "
        "'2026-12-02 10:00') so the case does not depend on the day it runs"]


def test_paths_without_tests_are_reported(demo_dir, capsys):
    (demo_dir / "empty").mkdir()
    status, out, err = run(["demo.yaml", "empty", "missing.test.yaml"], capsys)
    assert status == 1
    assert err.splitlines() == [
        "demo.yaml: no tests for this flow (write demo.test.yaml beside it)",
        "empty: no flow tests (*.test.yaml) here",
        "missing.test.yaml: no such file or directory",
    ]
    assert out == "0 passed, 0 failed\n"


def test_lookup_answers_and_failing_transfers_in_cases(tmp_path, capsys):
    for name in ("office.yaml", "common"):
        src = ROOT / "flows" / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "office.test.yaml").write_text("""\
flow: office.yaml
defaults: {at: "2026-12-02 10:00", caller: "3331234567"}
cases:
  - name: vip
    lookup: {"http://127.0.0.1:8088/customers?number=3331234567": {customer: {tier: gold}}}
    expect: {path: [hours, withheld, crm, vip, vip_queue], variables: {tier: gold, customer: ""}}
  - name: extension busy
    caller: withheld
    digits: ["201", 2]
    failing_transfers: "201"
    expect: {path: [hours, withheld, welcome, extension, welcome, sales], exit: {queue: sales}}
""")
    status, out, _ = run([str(tmp_path)], capsys)
    assert status == 0, out
    assert out.splitlines()[-1] == "2 passed, 0 failed"


def test_makefile_test_target_runs_the_flow_tests():
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/ivr test flows/" in target

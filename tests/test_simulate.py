"""ivr simulate: a flow run on a virtual clock, scripted or typed at a terminal."""

import io
import json
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.engine import CallSession, DigitPressed, PlaybackFinished, PlayPrompt
from ivr.flow import load_flow
from ivr.simulate import Simulation, parse_digits, parse_when

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "flows" / "demo.yaml"
OFFICE = ROOT / "flows" / "office.yaml"
HOURS = Path(__file__).parent / "flows_sim" / "hours.yaml"


@pytest.fixture(scope="module")
def demo():
    return load_flow(DEMO)


@pytest.fixture(scope="module")
def office():
    return load_flow(OFFICE)


@pytest.fixture(scope="module")
def hours():
    return load_flow(HOURS)


def lines(result):
    return [str(line) for line in result.transcript]


# -- the command ----------------------------------------------------------------------------------
def test_scripted_run_of_the_demo_prints_transcript_path_and_exit(capsys):
    assert main(["simulate", str(DEMO), "--digits", "2,1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "[ 0.0s] say (it): Benvenuti. Per l'italiano, premere 1. Welcome. For English, " \
           "press 2." in out
    assert "[ 4.7s] key 2" in out  # after the greeting: 67 characters at 0.07 s
    assert any(line.endswith("say (en): Connecting you to technical support. Please hold.")
               for line in out)
    assert out[-3].endswith("] -> queue support")
    assert out[-2:] == ["path: welcome[2] > main[1] > support", "exit: queue support"]


def test_at_with_a_holiday_on_the_fixture_flow(capsys):
    assert main(["simulate", str(HOURS), "--digits", "1", "--at", "2026-12-25 10:00",
                 "--timezone", "Europe/Rome"]) == 0
    out = capsys.readouterr().out
    assert "call from 3331234567 to 800123456, Fri 2026-12-25 10:00 Europe/Rome" in out
    assert "say (it): Oggi è festa. Buone feste." in out
    assert "(not used, the call had left the IVR: 1)" in out
    assert out.endswith("path: hours[holiday] > holiday\nexit: hangup flow_end\n")


def test_at_without_zone_is_local_time_of_the_flows_hours_node(capsys):
    # 08:30 in Rome is closed; read as UTC it would be 09:30 in Rome, open
    assert main(["simulate", str(HOURS), "--digits", "", "--at", "2026-12-03 08:30"]) == 0
    assert "path: hours[closed] > closed" in capsys.readouterr().out
    assert main(["simulate", str(HOURS), "--digits", "1", "--at", "2026-12-03 08:30",
                 "--timezone", "UTC"]) == 0
    assert "path: hours[open] > welcome[1] > support" in capsys.readouterr().out


def test_interactive_call_reads_keys_from_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("2\n\n1\n"))
    assert main(["simulate", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "Enter alone waits for the timeout; q hangs up" in out
    assert "say (it): Benvenuti." in out
    assert "] timeout" in out
    assert "We did not receive your choice." in out
    assert out.endswith("path: welcome[2] > main[~1] > support\nexit: queue support\n")


def test_interactive_q_hangs_up_and_end_of_input_too(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("1\nq\n"))
    assert main(["simulate", str(DEMO), "--language", "en"]) == 0
    out = capsys.readouterr().out
    assert "caller hangs up" in out
    assert out.endswith("path: welcome[1] > main\nexit: hangup caller\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["simulate", str(DEMO)]) == 0
    assert capsys.readouterr().out.endswith("path: welcome\nexit: hangup caller\n")


def test_interactive_bad_keys_show_help_and_ask_again(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n2 1\n"))
    assert main(["simulate", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert out.count("Type keys (0-9, * and #)") == 2
    assert "exit: queue support" in out


def test_flow_errors_print_like_validate(capsys):
    bad = ROOT / "tests" / "flows_bad" / "typo_key.yaml"
    assert main(["simulate", str(bad), "--digits", "1"]) == 2
    err = capsys.readouterr().err
    assert "typo_key.yaml:8:5: nodes.a.timout: unknown key 'timout'. Did you mean 'timeout'?" in err
    assert "1 problem found." in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--digits", "1,x"], "'x' is neither phone keys (0-9, * and #) nor 'wait'"),
    (["--at", "tomorrow"], "'tomorrow' is not a date and time such as '2026-12-25 10:00'"),
    (["--at", "2026-12-25 10:00", "--timezone", "Mars/Base"], "unknown time zone 'Mars/Base'"),
    (["--language", "fr"], "language 'fr' is not one of the flow's languages (it, en)"),
    (["--override", "office"], "--override 'office': give NAME=open or NAME=closed"),
    (["--lookup-json", "/nonexistent/answers.json"], "cannot read"),
])
def test_bad_options_are_reported_without_traceback(argv, message, capsys):
    assert main(["simulate", str(DEMO), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ivr simulate: ")
    assert message in err


def test_lookup_json_answers_the_crm(tmp_path, capsys):
    answers = tmp_path / "crm.json"
    answers.write_text(json.dumps({"crm": {"customer": {"name": "Rossi", "tier": "gold"}}}))
    assert main(["simulate", str(OFFICE), "--digits", "", "--at", "2026-12-02 10:00",
                 "--lookup-json", str(answers)]) == 0
    out = capsys.readouterr().out
    assert "say (it): Bentornato Rossi." in out
    assert "-> queue support (priority 10)" in out


@pytest.mark.parametrize("argv", [["simulate", "--help"], ["test", "--help"]])
def test_commands_have_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: ivr" in capsys.readouterr().out


# -- the simulation -------------------------------------------------------------------------------
def test_timeouts_move_the_virtual_clock(demo):
    result = Simulation(demo).run(["wait", "wait", "wait"])
    timeouts = [line.at for line in result.transcript if line.text == "timeout"]
    greeting = round(67 * 0.07, 3)  # the welcome prompt, then 5 s
    assert timeouts == pytest.approx([greeting + 5, 2 * (greeting + 5), 3 * (greeting + 5)])
    assert result.path == "welcome[~~~] > goodbye"
    assert result.exit == {"hangup": "flow_end"}
    assert result.state == "ended"


def test_after_the_script_the_caller_stays_silent_to_the_end(demo):
    result = Simulation(demo).run(["2"])
    assert result.path == "welcome[2] > main[~~~~] > goodbye"
    assert result.said()[-1] == "Thank you for calling. Goodbye."


def test_keys_wait_for_the_prompt_unless_barge_in(demo):
    listening = Simulation(demo).run(["2", "1"])
    assert [str(x) for x in listening.transcript if "key" in x.text] == \
        ["[ 4.7s] key 2", "[10.6s] key 1"]
    eager = Simulation(demo, barge_in=True).run(["2", "1"])
    assert [str(x) for x in eager.transcript if "key" in x.text] == \
        ["[ 0.0s] key 2 (interrupts the prompt)", "[ 0.0s] key 1 (interrupts the prompt)"]
    assert eager.path == listening.path == "welcome[2] > main[1] > support"


def test_keys_typed_together_show_as_one_line(office):
    sim = Simulation(office, caller="", started_at=parse_when("2026-12-02 10:00", "Europe/Rome"),
                     barge_in=True)
    result = sim.run(["1", "12345#", "1"])
    assert "[ 0.0s] keys 12345# (interrupts the prompt)" in lines(result)
    assert result.variables["account"] == "12345"
    assert result.exit == {"queue": "support"}


def test_language_option_sets_the_start_language(demo):
    result = Simulation(demo, language="en").run([])
    assert result.transcript[1].text.startswith("say (en): ")
    assert result.variables["language"] == "en"


def test_keys_after_the_call_left_are_reported_unused(demo):
    result = Simulation(demo).run(["2", "1", "9", "wait"])
    assert result.exit == {"queue": "support"}
    assert result.unused == ["9", "wait"]


@pytest.mark.parametrize(("answer", "path"), [
    ({"customer": {"name": "Bianchi", "tier": "silver"}},
     "hours[open] > withheld[default] > crm > vip[default] > welcome[2] > sales"),
    (None, "hours[open] > withheld[default] > crm[error] > welcome[2] > sales"),
    ("timeout", "hours[open] > withheld[default] > crm[timeout] > welcome[2] > sales"),
])
def test_lookup_answers_failures_and_timeouts(office, answer, path):
    sim = Simulation(office, caller="3331234567",
                     started_at=parse_when("2026-12-02 10:00", "Europe/Rome"),
                     lookups={"crm": answer})
    result = sim.run(["2"])
    assert result.path == path
    assert lines(result)[1] == "[ 0.0s] lookup http://127.0.0.1:8088/customers?number=3331234567"


def test_a_lookup_with_no_answer_given_fails(office):
    sim = Simulation(office, caller="3331234567",
                     started_at=parse_when("2026-12-02 10:00", "Europe/Rome"))
    result = sim.run(["2"])
    assert "[ 0.2s] lookup failed: no answer given" in lines(result)
    assert result.nodes[:4] == ["hours", "withheld", "crm", "welcome"]


def test_transfers_answer_unless_told_otherwise(office):
    when = parse_when("2026-12-02 10:00", "Europe/Rome")
    ok = Simulation(office, started_at=when).run(["205"])
    assert ok.exit == {"transfer": "205"}
    assert ok.state == "transferred"
    failed = Simulation(office, started_at=when, failing_transfers=["*"]).run(["205", "2"])
    assert "transfer to 205 failed: no answer" in " ".join(lines(failed))
    assert failed.exit == {"queue": "sales"}


def test_voicemail_recording_is_simulated(hours):
    sim = Simulation(hours, started_at=parse_when("2026-12-02 10:00", "Europe/Rome"))
    result = sim.run(["2"])
    assert "record a message (at most 30 s, after a beep)" in " ".join(lines(result))
    assert result.exit == {"voicemail": "voicemail-1.wav"}
    assert result.state == "ended"


def test_set_override_updates_the_switches(hours):
    sim = Simulation(hours, started_at=parse_when("2026-12-02 10:00", "Europe/Rome"))
    result = sim.run(["3"])
    assert "override office: closed" in " ".join(lines(result))
    assert sim.overrides == {"office": "closed"}
    assert result.path == "hours[open] > welcome[3] > force_closed > forced"


def test_a_silent_caller_in_an_endless_loop_gives_up(tmp_path):
    loop = tmp_path / "loop.yaml"
    loop.write_text("""\
flow: loop
start: a
nodes:
  a: {type: menu, prompt: "A", options: {"1": q}, max_timeouts: 1, on_failure: b}
  b: {type: menu, prompt: "B", options: {"1": q}, max_timeouts: 1, on_failure: a}
  q: {type: queue, queue: support}
""")
    result = Simulation(load_flow(loop)).run([])
    assert result.transcript[-1].text.startswith("still in the IVR after ")
    assert result.exit == {"hangup": "caller"}
    assert result.state == "ended"
    assert result.seconds <= 3600


def test_parse_digits_and_when():
    assert parse_digits("2, 1,wait ,123#") == ["2", "1", "wait", "123#"]
    assert parse_digits([2, "WAIT", "*9"]) == ["2", "wait", "*9"]
    assert parse_digits("") == []
    with pytest.raises(ValueError, match="'2a'"):
        parse_digits(["2a"])
    rome = parse_when("2026-12-25 10:00 Europe/Rome")
    assert rome.utcoffset().total_seconds() == 3600
    assert parse_when("2026-07-01 10:00", default_timezone="Europe/Rome").utcoffset() \
        .total_seconds() == 7200
    assert parse_when("2026-07-01T10:00+00:00", "Europe/Rome").utcoffset().total_seconds() == 0
    assert parse_when("2026-07-01 10:00").tzname() == "UTC"


# -- timeouts never run while a prompt plays -----------------------------------------------------
def test_no_timeout_fires_while_a_prompt_plays_after_an_invalid_key(demo):
    s = CallSession(demo, "c1")
    play = s.start(0.0)[-1]
    s.handle(PlaybackFinished(play.play_id), 4.0)     # the greeting is over: timeout at 9.0
    actions = s.handle(DigitPressed("5"), 5.0)        # invalid: 'Scelta non valida' plays
    assert any(isinstance(a, PlayPrompt) for a in actions)
    assert s.next_deadline() is None                  # no timeout while a prompt plays


def test_the_read_back_of_a_collect_is_not_cut_by_the_inter_digit_timeout(office):
    sim = Simulation(office, caller="", started_at=parse_when("2026-12-02 10:00", "Europe/Rome"))
    result = sim.run(["1", "12345#", "1"])             # listens to each prompt, then types
    assert result.path.endswith("account[12345] > support")

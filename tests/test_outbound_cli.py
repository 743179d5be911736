"""`ivr campaign` and `ivr dnc` end to end: real store files, the exit statuses, the reports."""

import csv
import io
import subprocess
import sys

import pytest

from ivr.cli import main
from ivr.outbound.contacts import ContactBook

CONFIG = """\
sip: {listen: 127.0.0.1:5080}
trunks: {gw: {sources: [127.0.0.1]}}
flow: f.yaml
store: var/centralino.db
"""


@pytest.fixture
def store(tmp_path):
    return tmp_path / "calls.db"


def ivr(*args):
    return main([str(a) for a in args])


@pytest.mark.parametrize("argv", [
    ["campaign"], ["campaign", "import"], ["campaign", "status"], ["campaign", "export"],
    ["campaign", "list"], ["dnc"], ["dnc", "add"], ["dnc", "remove"], ["dnc", "import"],
    ["dnc", "check"], ["dnc", "count"]])
def test_help_of_every_action(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    assert f"usage: ivr {' '.join(argv)}" in capsys.readouterr().out


def test_campaign_needs_an_action(capsys):
    with pytest.raises(SystemExit) as info:
        main(["campaign"])
    assert info.value.code == 2
    assert "required: ACTION" in capsys.readouterr().err


def test_import_status_export_list(store, tmp_path, capsys):
    assert ivr("dnc", "add", "06 9999 9999", "--note", "asked", "--store", store) == 0
    assert "+390699999999: added to the do-not-call list" in capsys.readouterr().out
    contacts = tmp_path / "list.csv"
    contacts.write_text("number,name,city\n3471234567,Anna,Roma\n0699999999,Listed,Roma\n"
                        "112,Short,Roma\n0612345678,Bruno,\n3471234567,Anna twice,Roma\n")
    refused = tmp_path / "refused.csv"
    assert ivr("campaign", "import", "spring", contacts, "--store", store, "--show", "2",
               "--refused-out", refused) == 0
    out = capsys.readouterr().out
    assert "campaign spring: 5 rows read, 2 added, 3 refused" in out
    assert "1  on the do-not-call list" in out
    assert "first 2 refused rows:\n  line 3: '0699999999': on the do-not-call list\n" \
           "  line 4: '112': not an E.164 number after normalisation\n" in out
    assert "line 6" not in out
    assert f"refused rows written to {refused}" in out
    assert [r[:3] for r in csv.reader(refused.open())] == [
        ["line", "number", "reason"], ["3", "0699999999", "dnc"], ["4", "112", "not_e164"],
        ["6", "3471234567", "duplicate_in_file"]]

    with ContactBook(store) as book:  # as the dialler will: one attempt, one survey answer
        first, second = book.due("spring", now=2e9, limit=5)
        book.record_attempt(first.id, "busy", "c1", "dialled", next_at=4e9, state="pending",
                            now=2e9, dnc_checked=True)
        book.record_attempt(second.id, "answered", "c2", "dialled", None, "done", now=2e9)
        book.set_answers(second.id, {"q1": "2", "score": 9})
        book.set_disposition(second.id, "confirmed", now=2e9)

    assert ivr("campaign", "status", "spring", "--store", store) == 0
    out = capsys.readouterr().out
    assert "campaign spring: 2 contacts\n  pending 1, done 1, dnc 0, failed 0, invalid 0\n" \
           "attempts: 2\n" in out
    assert "          1  answered\n          1  busy\n" in out
    assert "due now: 0; next due after now: 2096-" in out

    exported = tmp_path / "results.csv"
    assert ivr("campaign", "export", "spring", "--out", exported, "--store", store) == 0
    assert f"2 contacts of spring written to {exported}" in capsys.readouterr().out
    rows = list(csv.DictReader(exported.open()))
    assert [(r["number"], r["name"], r["state"], r["attempts"], r["last_outcome"],
             r["disposition"], r["city"], r["answers.q1"], r["answers.score"]) for r in rows] == [
        ("+393471234567", "Anna", "pending", "1", "busy", "", "Roma", "", ""),
        ("+390612345678", "Bruno", "done", "1", "answered", "confirmed", "", "2", "9")]
    assert rows[0]["next_at"].startswith("2096-")
    assert ivr("campaign", "export", "spring", "--store", store) == 0
    assert capsys.readouterr().out.startswith("number,name,state,attempts,last_outcome,")

    assert ivr("campaign", "list", "--store", store) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["campaign", "mode", "contacts", "pending", "last",
                                           "attempt"]
    assert out.splitlines()[1].split()[:4] == ["spring", "-", "2", "1"]


def test_unknown_campaigns_and_empty_store(store, capsys):
    assert ivr("campaign", "list", "--store", store) == 0
    assert capsys.readouterr().out == "no campaign is defined or has contacts\n"
    assert ivr("campaign", "status", "nope", "--store", store) == 2
    assert "ivr: error: campaign 'nope' has no contacts (import a list with 'ivr campaign " \
           "import nope FILE.csv')" in capsys.readouterr().err
    assert ivr("campaign", "export", "nope", "--store", store) == 2
    assert "campaign 'nope' has no contacts" in capsys.readouterr().err


def test_import_refusals_are_one_line_errors(store, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("phone,name\n3471234567,Anna\n")
    assert ivr("campaign", "import", "c", bad, "--store", store) == 2
    err = capsys.readouterr().err
    assert err.startswith("ivr: error: ")
    assert "missing required column 'number' (columns: 'phone', 'name'); name another one " \
           "with --number-column" in err
    assert err.count("\n") == 1
    assert ivr("campaign", "import", "c", bad, "--number-column", "phone", "--store",
               store) == 0
    assert "1 rows read, 1 added, 0 refused" in capsys.readouterr().out
    assert ivr("campaign", "import", "bad name", bad, "--store", store) == 2
    assert "is not a campaign name" in capsys.readouterr().err
    assert ivr("campaign", "import", "c", tmp_path / "none.csv", "--store", store) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_store_from_the_config(tmp_path, capsys):
    cfg = tmp_path / "ivr.yaml"
    cfg.write_text(CONFIG)
    assert ivr("dnc", "add", "3471234567", "--config", cfg) == 0
    capsys.readouterr()
    assert (tmp_path / "var" / "centralino.db").exists()
    assert ivr("dnc", "check", "+39 347 123 4567", "--store",
               tmp_path / "var" / "centralino.db") == 0
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("hello\n" * 100)
    assert ivr("dnc", "count", "--store", not_a_store) == 2
    assert "is not a Centralino call record database" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("sip: {listen: 1}\n")
    assert ivr("dnc", "count", "--config", broken) == 2
    assert "broken.yaml" in capsys.readouterr().err


def test_dnc_actions(store, tmp_path, capsys):
    assert ivr("dnc", "check", "3471234567", "--store", store) == 1
    assert capsys.readouterr().out == "+393471234567: not on the do-not-call list\n"
    assert ivr("dnc", "add", "3471234567", "--note", "asked", "--store", store) == 0
    assert ivr("dnc", "add", "+393471234567", "--store", store) == 0
    out = capsys.readouterr().out
    assert "+393471234567: already on the do-not-call list (source internal, since " in out
    assert ivr("dnc", "check", "347 123 4567", "--store", store) == 0
    out = capsys.readouterr().out
    assert out.startswith("+393471234567: on the do-not-call list (source internal, since ")
    assert out.endswith(", note: asked)\n")
    assert ivr("dnc", "add", "112", "--store", store) == 2
    assert "ivr: error: '112': not an E.164 number after normalisation" in \
        capsys.readouterr().err

    register = tmp_path / "rpo-2026.csv"
    register.write_text("numero;data\n0612345678;x\n0611111111;x\n3471234567;x\nabc;x\n")
    assert ivr("dnc", "import", register, "--store", store) == 2
    assert "give the CSV column of the numbers with --column" in capsys.readouterr().err
    refused = tmp_path / "refused.csv"
    assert ivr("dnc", "import", register, "--column", "numero", "--register-name", "rpo",
               "--refused-out", refused, "--store", store) == 0
    out = capsys.readouterr().out
    assert "do-not-call (register:rpo): 4 rows read, 2 added, 1 refused" in out
    assert "1  already on the do-not-call list (kept as it was)" in out
    assert "line 5: 'abc': not a telephone number" in out
    assert refused.read_text().splitlines()[1] == "5,abc,invalid,not a telephone number"
    assert ivr("dnc", "count", "--store", store) == 0
    assert capsys.readouterr().out.split("\n") == [
        "        1  internal", "        2  register:rpo", "        3  in all", ""]

    assert ivr("dnc", "remove", "3471234567", "--store", store) == 0
    assert capsys.readouterr().out == "+393471234567: removed from the do-not-call list\n"
    assert ivr("dnc", "remove", "3471234567", "--store", store) == 1
    assert capsys.readouterr().out == "+393471234567: was not on the do-not-call list\n"


def test_dnc_import_internal_source_and_replace(store, tmp_path, capsys):
    numbers = tmp_path / "ours.txt"
    numbers.write_text("3470000001\n3470000002\n")
    assert ivr("dnc", "import", numbers, "--source", "internal", "--store", store) == 0
    old = tmp_path / "old.txt"
    old.write_text("0610000001\n")
    new = tmp_path / "new.txt"
    new.write_text("0620000002\n")
    assert ivr("dnc", "import", old, "--store", store) == 0
    assert ivr("dnc", "import", new, "--replace", "--store", store) == 0
    capsys.readouterr()
    assert ivr("dnc", "count", "--store", store) == 0
    assert capsys.readouterr().out.split() == ["2", "internal", "1", "register:new.txt",
                                               "3", "in", "all"]


def test_progress_on_stderr_for_big_files(store, tmp_path):
    big = tmp_path / "big.csv"
    big.write_text("number,name\n" + "".join(f"34700{i:05d},P{i}\n" for i in range(20_500)))
    result = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "campaign", "import", "big", str(big),
         "--store", str(store)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"{big}: 10,000 rows read", f"{big}: 20,000 rows read"]
    assert "20500 rows read, 20500 added, 0 refused" in result.stdout


def test_a_locked_store_is_an_error_line(store, tmp_path, capsys, monkeypatch):
    import sqlite3

    from ivr.outbound import dnc

    assert ivr("dnc", "count", "--store", store) == 0
    blocker = sqlite3.connect(store, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(dnc, "BUSY_TIMEOUT", 0.05)
    try:
        assert ivr("dnc", "add", "3471234567", "--store", store) == 2
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert "ivr: error: cannot use the contact lists in the store file: database is locked" \
        in capsys.readouterr().err


def test_module_main_runs(store):
    out = io.StringIO()
    result = subprocess.run([sys.executable, "-m", "ivr.cli", "dnc", "count", "--store",
                             str(store)], capture_output=True, text=True, timeout=60,
                            check=False)
    out.write(result.stdout)
    assert result.returncode == 0
    assert out.getvalue() == "        0  in all\n"


CAMPAIGN_CONFIG = """\
sip: {listen: 127.0.0.1:5080}
trunks:
  gateway: {sources: [127.0.0.1], lines: 8}
agents:
  anna: {uri: "sip:anna@127.0.0.1:5070"}
queues:
  sales: {agents: [anna]}
dial_out:
  - {pattern: "^\\\\+39[0-9]{6,11}$", uri: "sip:{number}@192.0.2.1", campaigns: true,
     flows: false}
flow: flow.yaml
store: var/centralino.db
campaigns: campaigns
"""

SHORT = """\
name: short
queue: sales
mode: preview
trunk: gateway
max_lines: 1
window: {timezone: Europe/Rome, hours: "10:00-12:00"}
"""


def test_with_the_config_the_campaign_must_have_a_file(tmp_path, capsys):
    cfg = tmp_path / "ivr.yaml"
    cfg.write_text(CAMPAIGN_CONFIG)
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "short.yaml").write_text(SHORT)
    contacts = tmp_path / "list.csv"
    contacts.write_text("number\n3471234567\n")
    assert ivr("campaign", "import", "shrot", contacts, "--config", cfg) == 2
    assert f"ivr: error: no campaign 'shrot' in the campaign files of {cfg} (campaigns: " \
           "short); add its file first, or give --store FILE to import the list before the " \
           "campaign exists" in capsys.readouterr().err
    assert ivr("campaign", "import", "short", contacts, "--config", cfg) == 0
    store = tmp_path / "var" / "centralino.db"
    assert ivr("campaign", "import", "later", contacts, "--store", store) == 0
    capsys.readouterr()
    assert ivr("campaign", "list", "--config", cfg) == 0
    assert [line.split()[:4] for line in capsys.readouterr().out.splitlines()[1:]] == [
        ["later", "(no", "file)", "1"], ["short", "preview", "1", "1"]]

    (tmp_path / "campaigns" / "broken.yaml").write_text("name: broken\nmode: sometimes\n")
    assert ivr("campaign", "list", "--config", cfg) == 2
    err = capsys.readouterr().err
    assert "campaigns/broken.yaml:2:" in err
    assert "sometimes" in err

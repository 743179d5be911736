"""Startup, report and purge failures end in one line `ivr: error: ...` and exit status 2.

Real sockets on 127.0.0.1, real files and SQLite databases; `ivr run` runs as a process.
"""

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.errors import StartupError
from ivr.preflight import check_store_path, check_tcp_free, check_udp_free, record_file_problem
from ivr.store import CallRecord, CallStore

ROOT = Path(__file__).resolve().parent.parent
WINDOW = ["--from", "2026-11-02", "--to", "2026-11-02"]


def held_udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def held_tcp() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def error_line(capsys, tmp_path: Path) -> str:
    """The one line on stderr, with the temporary folder cut out of paths."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0].replace(f"{tmp_path}/", "").replace(str(tmp_path), "TMP")


# -- ports -------------------------------------------------------------------------------------

def test_sip_port_in_use_names_the_address_and_the_fix():
    with held_udp() as holder:
        port = holder.getsockname()[1]
        with pytest.raises(StartupError) as err:
            check_udp_free("127.0.0.1", port, "SIP")
    assert str(err.value) == (
        f"cannot listen for SIP on udp 127.0.0.1:{port}: the address is in use (another "
        "switchboard or PBX?); stop it or set sip.listen in ivr.yaml")
    check_udp_free("127.0.0.1", port, "SIP")  # released: free again


def test_metrics_port_in_use_names_the_address_and_the_fix():
    with held_tcp() as holder:
        port = holder.getsockname()[1]
        with pytest.raises(StartupError) as err:
            check_tcp_free("127.0.0.1", port, "metrics")
    assert str(err.value) == (
        f"cannot listen for metrics on tcp 127.0.0.1:{port}: the address is in use (another "
        "switchboard or exporter?); stop it or set metrics in ivr.yaml")


def test_tcp_port_with_only_time_wait_connections_is_free():
    """A switchboard restarted right after a scrape: its old connections are in TIME_WAIT, the
    metrics server (SO_REUSEADDR) binds anyway, so the check must not refuse."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    served, _ = listener.accept()
    served.close()  # the server closes first: its side ends in TIME_WAIT
    assert client.recv(1) == b""
    client.close()
    listener.close()
    deadline = time.monotonic() + 10
    while True:  # wait until a plain bind sees the TIME_WAIT connection
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            break
        finally:
            probe.close()
        assert time.monotonic() < deadline, "the connection never reached TIME_WAIT"
        time.sleep(0.01)
    check_tcp_free("127.0.0.1", port, "metrics")


def test_address_that_is_not_this_machines():
    with pytest.raises(StartupError) as err:
        check_udp_free("192.0.2.1", 5080, "SIP")
    assert str(err.value) == (
        "cannot listen for SIP on udp 192.0.2.1:5080: 192.0.2.1 is not an address of this "
        "machine; set sip.listen in ivr.yaml to one of its addresses ('ip address' lists them)")


# -- the store path ----------------------------------------------------------------------------

def store_error(path: Path, tmp_path: Path) -> str:
    with pytest.raises(StartupError) as err:
        check_store_path(path)
    return str(err.value).replace(f"{tmp_path}/", "")


def test_store_path_that_is_a_folder(tmp_path):
    (tmp_path / "var").mkdir()
    assert store_error(tmp_path / "var", tmp_path) == (
        "the call record store var is a folder; set store in ivr.yaml to a file path such as "
        "var/centralino.db")


def test_store_path_under_a_regular_file(tmp_path):
    (tmp_path / "var").write_text("not a folder\n")
    assert store_error(tmp_path / "var" / "db" / "calls.db", tmp_path) == (
        "cannot create the call record store var/db/calls.db: var is a file, not a folder; "
        "move that file or set store in ivr.yaml to another path")


@contextlib.contextmanager
def read_only_folder(folder: Path):
    """A folder no file can be created in, even by root (who ignores permission bits): the
    immutable attribute as root, permission bits otherwise."""
    folder.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip("cannot make a folder immutable here (chattr +i)")
        try:
            yield folder
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)


def test_store_in_a_folder_that_takes_no_new_files(tmp_path):
    with read_only_folder(tmp_path / "ro") as folder:
        message = store_error(folder / "calls.db", tmp_path)
        assert not (folder / "calls.db").exists()
    assert message == (
        "cannot write the call record store ro/calls.db: it is not writable (permission denied) "
        "(folder ro); give the service's user write access to it or set store in ivr.yaml to "
        "another path")


def test_store_that_is_another_programs_file(tmp_path):
    (tmp_path / "notes.txt").write_text("shopping list\n")
    assert store_error(tmp_path / "notes.txt", tmp_path) == (
        "the call record store notes.txt is not a Centralino call record database (not an "
        "SQLite file); set store in ivr.yaml to another path")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE contacts (name TEXT)")
    other.commit()
    other.close()
    assert store_error(tmp_path / "other.db", tmp_path) == (
        "the call record store other.db is not a Centralino call record database (no 'calls' "
        "table); set store in ivr.yaml to another path")


def test_good_store_paths_pass_and_nothing_is_created(tmp_path):
    check_store_path(tmp_path / "new" / "deeper" / "calls.db")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "empty.db").touch()
    check_store_path(tmp_path / "empty.db")  # SQLite makes an empty file a database
    CallStore(tmp_path / "calls.db").close()
    check_store_path(tmp_path / "calls.db")


# -- ivr run -----------------------------------------------------------------------------------

FLOW = """\
flow: t
languages: [en]
start: bye
nodes:
  bye: {type: hangup}
"""


def run_switchboard(tmp_path: Path, sip_port: int, metrics_port: int,
                    store: str = "calls.db") -> subprocess.CompletedProcess[str]:
    (tmp_path / "flow.yaml").write_text(FLOW)
    (tmp_path / "ivr.yaml").write_text(
        f"sip: {{listen: 127.0.0.1:{sip_port}}}\ntrunks: {{gw: {{sources: [127.0.0.1]}}}}\n"
        f"flow: flow.yaml\nstore: {store}\nmetrics: 127.0.0.1:{metrics_port}\n"
        "prompts: {cache: prompts}\n")
    return subprocess.run([sys.executable, "-m", "ivr.cli", "run", "--config",
                           str(tmp_path / "ivr.yaml")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def one_error(proc: subprocess.CompletedProcess[str], tmp_path: Path) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0].replace(f"{tmp_path}/", "")


def test_run_with_the_sip_port_in_use(tmp_path):
    with held_udp() as holder:
        port = holder.getsockname()[1]
        proc = run_switchboard(tmp_path, port, free_port(socket.SOCK_STREAM))
    assert one_error(proc, tmp_path) == (
        f"ivr: error: cannot listen for SIP on udp 127.0.0.1:{port}: the address is in use "
        "(another switchboard or PBX?); stop it or set sip.listen in ivr.yaml")
    assert not (tmp_path / "calls.db").exists()


def test_run_with_the_metrics_port_in_use(tmp_path):
    with held_tcp() as holder:
        port = holder.getsockname()[1]
        proc = run_switchboard(tmp_path, free_port(socket.SOCK_DGRAM), port)
    assert one_error(proc, tmp_path) == (
        f"ivr: error: cannot listen for metrics on tcp 127.0.0.1:{port}: the address is in use "
        "(another switchboard or exporter?); stop it or set metrics in ivr.yaml")


def test_run_with_the_store_a_folder(tmp_path):
    (tmp_path / "var").mkdir()
    proc = run_switchboard(tmp_path, free_port(socket.SOCK_DGRAM),
                           free_port(socket.SOCK_STREAM), store="var")
    assert one_error(proc, tmp_path) == (
        "ivr: error: the call record store var is a folder; set store in ivr.yaml to a file "
        "path such as var/centralino.db")


def test_agent_command_with_the_store_under_a_file(tmp_path, capsys):
    (tmp_path / "var").write_text("x")
    (tmp_path / "ivr.yaml").write_text(
        "sip: {listen: 127.0.0.1:5080}\ntrunks: {gw: {sources: [127.0.0.1]}}\nflow: f.yaml\n"
        "store: var/calls.db\nagents: {anna: {uri: 'sip:anna@127.0.0.1:5070'}}\n")
    assert main(["agent", "login", "anna", "--config", str(tmp_path / "ivr.yaml")]) == 2
    assert error_line(capsys, tmp_path) == (
        "ivr: error: cannot create the call record store var/calls.db: var is a file, not a "
        "folder; move that file or set store in ivr.yaml to another path")


# -- ivr report and ivr purge on files that are not call records -------------------------------

def make_text(path: Path) -> None:
    path.write_text("date,caller\n2026-11-02,333\n")


def make_empty(path: Path) -> None:
    path.touch()


def make_other_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()


def make_calls_without_events(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE calls (call_id TEXT, caller TEXT, called TEXT, source TEXT, "
               "queue TEXT, agent TEXT, started_at REAL, connected_at REAL, ended_at REAL, "
               "wait_seconds REAL, talk_seconds REAL, outcome TEXT, voicemail_path TEXT)")
    db.commit()
    db.close()


def make_foreign_calls(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE calls (id INTEGER, duration REAL)")
    db.commit()
    db.close()


NOT_OURS = "is not a Centralino call record database"
CASES = [
    (make_text, f"{NOT_OURS} (not an SQLite file)"),
    (make_empty, f"{NOT_OURS} (the file is empty)"),
    (make_other_sqlite, f"{NOT_OURS} (no 'calls' table)"),
    (make_calls_without_events, f"{NOT_OURS} (no 'queue_events' table)"),
    (make_foreign_calls, f"{NOT_OURS} (the 'calls' table has no column 'call_id')"),
    (None, "does not exist (give the call record database with --store, or check store in "
           "ivr.yaml)"),
]


@pytest.mark.parametrize("command", [["report", *WINDOW], ["purge", "--older-than", "30"],
                                     ["purge", "--caller", "3331234567"]])
@pytest.mark.parametrize(("make", "message"), CASES)
def test_report_and_purge_refuse_a_file_that_is_not_call_records(tmp_path, capsys, command,
                                                                 make, message):
    path = tmp_path / "calls.db"
    if make is not None:
        make(path)
    before = path.read_bytes() if path.exists() else None
    assert main([*command, "--store", str(path)]) == 2
    assert error_line(capsys, tmp_path) == f"ivr: error: calls.db {message}"
    assert (path.read_bytes() if path.exists() else None) == before  # untouched, not created
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if make is None else ["calls.db"])


def test_report_on_a_folder(tmp_path, capsys):
    assert main(["report", *WINDOW, "--store", str(tmp_path)]) == 2
    assert error_line(capsys, tmp_path) == (
        "ivr: error: TMP is a folder, not a Centralino call record database")


def test_missing_store_named_by_the_config_is_not_created(tmp_path, capsys):
    (tmp_path / "ivr.yaml").write_text(
        "sip: {listen: 127.0.0.1:5080}\ntrunks: {gw: {sources: [127.0.0.1]}}\nflow: f.yaml\n"
        "store: var/calls.db\nretention_days: 30\n")
    for command in (["report", *WINDOW], ["purge"]):
        assert main([*command, "--config", str(tmp_path / "ivr.yaml")]) == 2
        assert error_line(capsys, tmp_path) == (
            "ivr: error: var/calls.db does not exist (give the call record database with "
            "--store, or check store in ivr.yaml)")
    assert not (tmp_path / "var").exists()


def test_a_file_from_an_older_version_is_named_so(tmp_path, capsys):
    path = tmp_path / "calls.db"
    make_calls_without_events(path)
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE calls DROP COLUMN voicemail_path")
    db.execute("CREATE TABLE queue_events (at REAL, kind TEXT, queue TEXT, call_id TEXT, "
               "agent TEXT, detail TEXT)")
    db.commit()
    db.close()
    assert record_file_problem(path, new_ok=True) is None  # the store would add the column
    assert main(["purge", "--store", str(path), "--older-than", "30"]) == 2
    assert error_line(capsys, tmp_path) == (
        "ivr: error: calls.db is a call record database from an older version (the 'calls' "
        "table has no column 'voicemail_path'); start the switchboard once on it to bring it "
        "up to date")


def test_a_real_call_record_file_is_accepted(tmp_path, capsys):
    store = CallStore(tmp_path / "calls.db")
    record = CallRecord("c1", started_at=1000.0, caller="333")
    record.finish(1060.0, "completed")
    store.save(record)
    store.close()
    assert record_file_problem(tmp_path / "calls.db") is None
    assert main(["purge", "--store", str(tmp_path / "calls.db"), "--older-than", "1"]) == 0
    assert capsys.readouterr().out.startswith("removed 1 call record(s)")


# -- numeric options ---------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["report", *WINDOW, "--fcr-days", "-1"],
     "ivr report: error: argument --fcr-days: must be at least 1 day, got '-1'"),
    (["report", *WINDOW, "--fcr-days", "0.5"],
     "ivr report: error: argument --fcr-days: must be at least 1 day, got '0.5'"),
    (["report", *WINDOW, "--fcr-days", "week"],
     "ivr report: error: argument --fcr-days: 'week' is not a number of days such as 7"),
    (["report", *WINDOW, "--fcr-days", "inf"],
     "ivr report: error: argument --fcr-days: 'inf' is not a number of days such as 7"),
    (["report", *WINDOW, "--threshold", "0"],
     "ivr report: error: argument --threshold: must be more than 0 seconds, got '0'"),
    (["report", *WINDOW, "--threshold=-5s"],
     "ivr report: error: argument --threshold: a duration cannot be negative"),
    (["report", *WINDOW, "--threshold", "nan"],
     "ivr report: error: argument --threshold: 'nan' is not a duration such as 240s or 4m"),
    (["purge", "--older-than", "0"],
     "ivr purge: error: argument --older-than: must be more than 0 days, got '0'"),
    (["purge", "--older-than", "-30"],
     "ivr purge: error: argument --older-than: must be more than 0 days, got '-30'"),
    (["purge", "--caller", " "],
     "ivr purge: error: argument --caller: give the caller's number, e.g. 3331234567"),
])
def test_numeric_options_are_checked_before_anything_is_read(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--store", str(tmp_path / "calls.db")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == message
    assert not (tmp_path / "calls.db").exists()


def test_fcr_days_of_one_is_accepted(tmp_path, capsys):
    CallStore(tmp_path / "calls.db").close()
    assert main(["report", *WINDOW, "--fcr-days", "1", "--store", str(tmp_path / "calls.db"),
                 "--csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("total,0,")


def test_date_errors_are_one_line_too(tmp_path, capsys):
    assert main(["report", "--from", "2026-11-03", "--to", "2026-11-02", "--store",
                 str(tmp_path / "calls.db")]) == 2
    assert error_line(capsys, tmp_path) == "ivr: error: --to must be after --from"


def test_the_call_stores_own_errors_are_one_line_errors_too():
    from ivr import store
    from ivr.cli import _operator_errors

    assert StartupError in _operator_errors()
    assert store.StoreError in _operator_errors()  # StoreInUse is one of them

"""Console accounts: users and roles, argon2id passwords, the per-address lockout, sessions, API
tokens, the audit log, and `ivr user` end to end. A real SQLite file in tmp_path each time."""

import io
import sqlite3
import threading

import pytest
from argon2 import PasswordHasher

from ivr.cli import main
from ivr.console.accounts import (
    ROLES,
    AccountError,
    Accounts,
    LockedOut,
    Session,
    User,
    token_hash,
)
from ivr.preflight import record_file_problem
from ivr.store import CallStore, StoreError

PW = "correct horse battery"
T0 = 1_790_000_000.0


@pytest.fixture
def accounts(tmp_path):
    return Accounts(tmp_path / "centralino.db")


def rows(path, sql):
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def dump(path) -> str:
    """Every value of every console table, as one text."""
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'console_%'")]
        return repr([db.execute(f"SELECT * FROM {t}").fetchall() for t in tables])
    finally:
        db.close()


# -- users ---------------------------------------------------------------------------------------

def test_add_get_list_remove(accounts):
    anna = accounts.add_user("anna", PW, "agent", agent="anna", lang="it")
    assert anna == User("anna", "agent", "anna", "", "it")
    boss = accounts.add_user("boss", PW, "admin", supervisor="laura")
    assert accounts.get("anna") == anna
    assert accounts.get("nobody") is None
    assert accounts.users() == [anna, boss]
    accounts.remove_user("anna")
    assert accounts.get("anna") is None
    assert accounts.users() == [boss]
    with pytest.raises(AccountError, match="no user 'anna'"):
        accounts.remove_user("anna")


def test_passwords_are_argon2id_hashes_in_the_store_file(accounts):
    accounts.add_user("boss", PW, "admin")
    [(stored,)] = rows(accounts.path, "SELECT password_hash FROM console_users")
    assert stored.startswith("$argon2id$")
    assert PW not in dump(accounts.path)
    assert rows(accounts.path, "PRAGMA journal_mode") == [("wal",)]


def test_the_tables_live_beside_the_call_records_and_the_file_stays_a_store(tmp_path):
    path = tmp_path / "centralino.db"
    CallStore(path).close()
    accounts = Accounts(path)
    accounts.add_user("boss", PW, "admin")
    assert record_file_problem(path) is None
    store = CallStore(path)  # opens it again as a store, tables kept
    store.close()
    assert Accounts(path).get("boss") == User("boss", "admin")


def test_a_new_file_is_made_a_call_record_store_first(tmp_path):
    path = tmp_path / "var" / "centralino.db"
    Accounts(path).add_user("boss", PW, "admin")
    assert record_file_problem(path) is None  # the switchboard starts on it
    tables = {r[0] for r in rows(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"calls", "queue_events", "console_users", "console_audit"} <= tables


def test_a_file_that_is_not_a_database_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "calls.txt"
    path.write_text("date,caller\n2026-11-02,333\n" * 100)
    with pytest.raises(StoreError, match=r"calls.txt: file is not a database; check the file"):
        Accounts(path)


def test_password_change(accounts):
    accounts.add_user("boss", PW, "admin")
    accounts.set_password("boss", "another good password")
    assert accounts.login("boss", PW, "10.0.0.1", T0) is None
    assert accounts.login("boss", "another good password", "10.0.0.1", T0) == \
        User("boss", "admin")
    with pytest.raises(AccountError, match="too short: at least 10 characters"):
        accounts.set_password("boss", "123456789")
    with pytest.raises(AccountError, match="no user 'bob'"):
        accounts.set_password("bob", "another good password")


def test_a_password_change_ends_the_users_sessions_but_not_others(accounts):
    boss = accounts.add_user("boss", PW, "admin")
    anna = accounts.add_user("anna", PW, "agent", agent="anna")
    mine = accounts.new_session(boss, "10.0.0.1", T0, 8)
    hers = accounts.new_session(anna, "10.0.0.2", T0, 8)
    accounts.set_password("boss", "another good password")
    assert accounts.session(mine.token, T0 + 1) is None
    assert accounts.session(hers.token, T0 + 1) is not None


@pytest.mark.parametrize(("name", "password", "role", "extra", "message"), [
    ("Anna", PW, "admin", {}, "invalid user name 'Anna'"),
    ("", PW, "admin", {}, "invalid user name ''"),
    ("a" * 33, PW, "admin", {}, "invalid user name"),
    ("an na", PW, "admin", {}, "invalid user name"),
    ("anna", PW, "superuser", {}, "unknown role 'superuser': the roles are agent, team_leader, "
                                  "supervisor, admin. Did you mean 'supervisor'?"),
    ("anna", PW, "agent", {}, "an agent account needs the agent it is"),
    ("anna", PW, "agent", {"agent": "anna", "supervisor": "laura"},
     "the role agent cannot have one"),
    ("anna", PW, "team_leader", {"supervisor": "laura"}, "the role team_leader cannot"),
    ("anna", PW, "admin", {"lang": "de"}, "unknown language 'de'"),
    ("anna", "123456789", "admin", {}, "too short: at least 10 characters"),
    ("anna", "x" * 1025, "admin", {}, "too long"),
])
def test_invalid_accounts_are_refused_with_the_reason(accounts, name, password, role, extra,
                                                      message):
    with pytest.raises(AccountError, match=message.replace(".", r"\.").replace("?", r"\?")):
        accounts.add_user(name, password, role, **extra)
    assert accounts.users() == []


def test_every_role_and_the_longest_name(accounts):
    for role in ROLES:
        accounts.add_user(f"u.{role}-1"[:32], "0123456789", role,
                          agent="a1" if role == "agent" else "")
    accounts.add_user("a" * 32, PW, "team_leader", agent="a2")
    assert {u.name: u.role for u in accounts.users()} == {
        "a" * 32: "team_leader", "u.agent-1": "agent", "u.team_leader-1": "team_leader",
        "u.supervisor-1": "supervisor", "u.admin-1": "admin"}


def test_names_and_agents_are_taken_once(accounts):
    accounts.add_user("anna", PW, "agent", agent="anna")
    with pytest.raises(AccountError, match="the user 'anna' already exists"):
        accounts.add_user("anna", PW, "admin")
    with pytest.raises(AccountError, match="the agent 'anna' already has the account 'anna'"):
        accounts.add_user("anna2", PW, "agent", agent="anna")


# -- login and lockout ---------------------------------------------------------------------------

def test_login_right_wrong_and_unknown(accounts):
    accounts.add_user("anna", PW, "agent", agent="anna")
    assert accounts.login("anna", PW, "10.0.0.1", T0) == User("anna", "agent", "anna")
    assert accounts.login("anna", PW + "!", "10.0.0.1", T0) is None
    assert accounts.login("nobody", PW, "10.0.0.1", T0) is None
    assert accounts.login("Not A Name", PW, "10.0.0.1", T0) is None
    assert accounts.login("anna", "x" * 5000, "10.0.0.1", T0) is None
    assert rows(accounts.path, "SELECT address, at FROM console_login_failures") == \
        [("10.0.0.1", T0)] * 4


def test_a_wrong_name_is_verified_against_a_dummy_hash(accounts, monkeypatch):
    """A wrong name costs one argon2 verification, like a wrong password."""
    accounts.add_user("anna", PW, "agent", agent="anna")
    seen = []

    class Watched(PasswordHasher):
        def verify(self, hash, password):
            seen.append(hash)
            return super().verify(hash, password)

    monkeypatch.setattr(accounts, "hasher", Watched())
    accounts.login("nobody", PW, "10.0.0.1", T0)
    accounts.login("anna", "wrong password", "10.0.0.1", T0)
    assert len(seen) == 2
    params = [h.split("$")[3] for h in seen]
    assert params[0] == params[1] == "m=65536,t=3,p=4"


def test_a_disabled_user_cannot_log_in_and_their_sessions_and_tokens_stop(accounts):
    anna = accounts.add_user("anna", PW, "agent", agent="anna")
    session = accounts.new_session(anna, "10.0.0.1", T0, 8)
    token = accounts.new_token("anna", "crm", T0)
    accounts.set_disabled("anna", True)
    assert accounts.get("anna").disabled
    assert accounts.login("anna", PW, "10.0.0.1", T0) is None
    assert accounts.session(session.token, T0) is None
    assert accounts.token_user(token, T0) is None
    with pytest.raises(AccountError):
        accounts.new_session(anna, "10.0.0.1", T0, 8)
    accounts.set_disabled("anna", False)
    assert accounts.login("anna", PW, "10.0.0.1", T0) == anna
    assert accounts.token_user(token, T0) == anna
    assert accounts.session(session.token, T0) is None  # ended, not suspended


def test_ten_failures_lock_the_address_out_even_for_the_right_password(accounts):
    accounts.add_user("anna", PW, "agent", agent="anna")
    for i in range(10):
        assert accounts.login("anna", f"wrong password {i}", "10.0.0.9", T0 + i) is None
    with pytest.raises(LockedOut) as locked:
        accounts.login("anna", PW, "10.0.0.9", T0 + 10)
    assert 0 < locked.value.retry_after <= 900
    assert locked.value.retry_after == pytest.approx(T0 + 9 + 900 - (T0 + 10))
    assert "try again in 899 s" in str(locked.value)
    # refused attempts are not failures: the lock does not grow
    assert len(rows(accounts.path, "SELECT * FROM console_login_failures")) == 10
    # another address is not locked
    assert accounts.login("anna", PW, "10.0.0.8", T0 + 10) is not None
    # still locked just before the end, open after it
    with pytest.raises(LockedOut):
        accounts.login("anna", PW, "10.0.0.9", T0 + 9 + 899)
    assert accounts.login("anna", PW, "10.0.0.9", T0 + 9 + 900) is not None


def test_parallel_attempts_cannot_pass_the_limit(accounts):
    """Twenty wrong passwords at once from one address: ten are looked at, ten refused."""
    accounts.add_user("anna", PW, "agent", agent="anna")
    results = []
    start = threading.Barrier(20)

    def attempt(i):
        start.wait()
        try:
            results.append(accounts.login("anna", f"wrong password {i}", "10.0.0.9", T0))
        except LockedOut:
            results.append("locked")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results)) == ["None"] * 10 + ["locked"] * 10


def test_a_right_password_is_not_counted_as_a_failure(tmp_path):
    accounts = Accounts(tmp_path / "c.db", max_failures=2)
    accounts.add_user("anna", PW, "agent", agent="anna")
    for _ in range(3):
        assert accounts.login("anna", PW, "a", T0) is not None
    assert rows(accounts.path, "SELECT * FROM console_login_failures") == []
    assert accounts.login("anna", "wrong password", "a", T0) is None
    assert accounts.login("anna", PW, "a", T0) is not None
    assert accounts.login("anna", "wrong password", "a", T0) is None
    with pytest.raises(LockedOut):
        accounts.login("anna", PW, "a", T0)


def test_failures_spread_over_more_than_the_window_do_not_lock(tmp_path):
    accounts = Accounts(tmp_path / "c.db", max_failures=3, window=60, lockout=300)
    accounts.add_user("anna", PW, "agent", agent="anna")
    for at in (0, 40, 80, 120):  # never 3 within 60 s
        assert accounts.login("anna", "wrong password", "a", T0 + at) is None
    assert accounts.login("anna", PW, "a", T0 + 121) is not None
    # three within the window: locked for lockout after the third, longer than the window
    for at in (200, 210, 220):
        accounts.login("anna", "wrong password", "a", T0 + at)
    with pytest.raises(LockedOut) as locked:
        accounts.login("anna", PW, "a", T0 + 400)
    assert locked.value.retry_after == pytest.approx(120)
    assert accounts.login("anna", PW, "a", T0 + 520) is not None


def test_old_failures_are_deleted(tmp_path):
    accounts = Accounts(tmp_path / "c.db", max_failures=3, window=60, lockout=60)
    accounts.login("x", "wrong password", "a", T0)
    accounts.login("x", "wrong password", "b", T0 + 121)
    assert rows(accounts.path, "SELECT address FROM console_login_failures") == [("b",)]


def test_a_hash_made_with_weaker_parameters_is_replaced_at_login(tmp_path):
    path = tmp_path / "c.db"
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    Accounts(path, hasher=weak).add_user("anna", PW, "agent", agent="anna")
    [(before,)] = rows(path, "SELECT password_hash FROM console_users")
    assert "m=8192,t=1,p=1" in before
    accounts = Accounts(path)
    assert accounts.login("anna", PW, "a", T0) is not None
    [(after,)] = rows(path, "SELECT password_hash FROM console_users")
    assert "m=65536,t=3,p=4" in after
    assert accounts.login("anna", PW, "a", T0) is not None


# -- sessions ------------------------------------------------------------------------------------

def test_sessions_expire_and_end(accounts):
    anna = accounts.add_user("anna", PW, "agent", agent="anna")
    s = accounts.new_session(anna, "10.0.0.1", T0, hours=8)
    assert s.user == anna
    assert s.expires == T0 + 8 * 3600
    assert len(s.token) >= 40
    assert len(s.csrf) >= 40
    assert s.csrf != s.token
    assert accounts.session(s.token, T0 + 60) == Session("", anna, s.csrf, s.expires)
    assert accounts.session(s.token, T0 + 8 * 3600) is None  # expired
    assert accounts.session("", T0) is None
    assert accounts.session("not a token", T0) is None
    s2 = accounts.new_session(anna, "10.0.0.1", T0, hours=1)
    assert s2.token != s.token
    assert s2.csrf != s.csrf
    accounts.end_session(s2.token)
    assert accounts.session(s2.token, T0) is None


def test_expired_sessions_are_deleted_when_a_new_one_starts(accounts):
    anna = accounts.add_user("anna", PW, "agent", agent="anna")
    accounts.new_session(anna, "a", T0, hours=1)
    accounts.new_session(anna, "a", T0 + 2 * 3600, hours=1)
    assert len(rows(accounts.path, "SELECT * FROM console_sessions")) == 1


def test_a_removed_users_sessions_and_tokens_die(accounts):
    anna = accounts.add_user("anna", PW, "agent", agent="anna")
    s = accounts.new_session(anna, "10.0.0.1", T0, hours=8)
    token = accounts.new_token("anna", "crm", T0)
    accounts.remove_user("anna")
    assert accounts.session(s.token, T0 + 1) is None
    assert accounts.token_user(token, T0 + 1) is None
    assert rows(accounts.path, "SELECT * FROM console_sessions") == []
    assert rows(accounts.path, "SELECT * FROM console_tokens") == []
    # a new account with the same name does not inherit them
    accounts.add_user("anna", PW, "admin")
    assert accounts.session(s.token, T0 + 1) is None
    assert accounts.token_user(token, T0 + 1) is None


def test_a_session_reads_the_user_as_they_are_now(accounts):
    boss = accounts.add_user("boss", PW, "admin", lang="it")
    s = accounts.new_session(boss, "a", T0, hours=8)
    db = sqlite3.connect(accounts.path)
    with db:
        db.execute("UPDATE console_users SET lang = 'en' WHERE name = 'boss'")
    db.close()
    assert accounts.session(s.token, T0).user.lang == "en"


def test_session_cookies_are_kept_hashed(accounts):
    anna = accounts.add_user("anna", PW, "agent", agent="anna")
    s = accounts.new_session(anna, "10.0.0.1", T0, hours=8)
    assert s.token not in dump(accounts.path)
    assert rows(accounts.path, "SELECT token_hash FROM console_sessions") == \
        [(token_hash(s.token),)]


# -- API tokens ----------------------------------------------------------------------------------

def test_api_tokens_are_hashed_at_rest_and_revoked(accounts):
    boss = accounts.add_user("boss", PW, "admin")
    t1 = accounts.new_token("boss", "crm", T0)
    t2 = accounts.new_token("boss", "wallboard", T0)
    assert t1 != t2
    text = dump(accounts.path)
    assert t1 not in text
    assert t2 not in text
    assert token_hash(t1) in text
    assert accounts.token_user(t1, T0 + 5) == boss
    assert accounts.token_user(t1[:-1], T0 + 5) is None
    assert accounts.token_user("", T0 + 5) is None
    assert [t["label"] for t in accounts.tokens("boss")] == ["crm", "wallboard"]
    assert accounts.revoke_tokens("boss") == 2
    assert accounts.token_user(t1, T0 + 6) is None
    assert accounts.token_user(t2, T0 + 6) is None
    assert accounts.revoke_tokens("boss") == 0
    with pytest.raises(AccountError, match="no user 'bob'"):
        accounts.new_token("bob", "crm", T0)


def test_a_tokens_last_use_is_written_at_most_once_a_minute(accounts):
    accounts.add_user("boss", PW, "admin")
    token = accounts.new_token("boss", "crm", T0)
    assert accounts.tokens("boss")[0]["last_used"] is None
    accounts.token_user(token, T0 + 10)
    accounts.token_user(token, T0 + 30)
    assert accounts.tokens("boss")[0]["last_used"] == T0 + 10
    accounts.token_user(token, T0 + 70)
    assert accounts.tokens("boss")[0]["last_used"] == T0 + 70


# -- audit ---------------------------------------------------------------------------------------

def test_audit_entries(accounts):
    boss = accounts.add_user("boss", PW, "admin")
    anna = accounts.add_user("anna", PW, "agent", agent="anna")
    accounts.audit(boss, "10.0.0.1", "agent.pause", "anna", {"reason": "lunch"}, now=T0)
    accounts.audit(anna, "10.0.0.2", "call.disposition", "c-1", {"code": "sale"}, now=T0 + 1)
    accounts.audit(None, "10.0.0.3", "login.failed", "root", now=T0 + 2)
    log = accounts.audit_log()
    assert [e["action"] for e in log] == ["login.failed", "call.disposition", "agent.pause"]
    assert log[2] == {"id": log[2]["id"], "at": T0, "user": "boss", "role": "admin",
                      "address": "10.0.0.1", "action": "agent.pause", "target": "anna",
                      "detail": {"reason": "lunch"}}
    assert log[0]["user"] == ""
    assert log[0]["detail"] is None
    assert [e["action"] for e in accounts.audit_log(user="anna")] == ["call.disposition"]
    assert [e["at"] for e in accounts.audit_log(since=T0 + 1)] == [T0 + 2, T0 + 1]
    assert len(accounts.audit_log(limit=1)) == 1


def test_audit_without_a_time_takes_the_clock(accounts):
    import time

    before = time.time()
    accounts.audit(User("(cli)", "admin"), "local", "user.add", "anna")
    [entry] = accounts.audit_log()
    assert before <= entry["at"] <= time.time()


def test_accounts_from_several_threads_at_once(accounts):
    """Each operation has its own connection: threads do not share one."""
    boss = accounts.add_user("boss", PW, "admin")
    errors = []

    def work(i):
        try:
            for j in range(20):
                accounts.audit(boss, f"t{i}", "x", str(j), now=T0 + j)
                s = accounts.new_session(boss, f"t{i}", T0, 1)
                assert accounts.session(s.token, T0) is not None
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(accounts.audit_log(limit=1000)) == 80


# -- ivr user ------------------------------------------------------------------------------------

CONFIG = """\
sip: {listen: 127.0.0.1:5080}
trunks: {gw: {sources: [127.0.0.1]}}
flow: f.yaml
store: var/centralino.db
agents:
  anna: {uri: 'sip:anna@127.0.0.1:5070'}
  marco: {uri: 'sip:marco@127.0.0.1:5072'}
supervisors:
  laura: {uri: 'sip:laura@127.0.0.1:5074', queues: []}
"""


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "ivr.yaml"
    path.write_text(CONFIG)
    return path


def ivr_user(cfg, monkeypatch, *args, password=None):
    monkeypatch.setattr("sys.stdin", io.StringIO("" if not password else password + "\n"))
    extra = ["--password-stdin"] if password is not None else []
    return main(["user", *args, "--config", str(cfg), *extra])


def err_line(capsys) -> str:
    return capsys.readouterr().err.strip()


def test_cli_add_list_passwd_remove(cfg, tmp_path, monkeypatch, capsys):
    assert ivr_user(cfg, monkeypatch, "add", "anna", "--role", "agent", "--agent", "anna",
                    "--lang", "it", password=PW) == 0
    assert capsys.readouterr().out == "user anna added (agent, agent anna)\n"
    assert ivr_user(cfg, monkeypatch, "add", "laura", "--role", "supervisor", "--supervisor",
                    "laura", password=PW) == 0
    store = tmp_path / "var" / "centralino.db"
    assert record_file_problem(store) is None  # still a call record store
    accounts = Accounts(store)
    assert accounts.get("anna") == User("anna", "agent", "anna", "", "it")
    assert accounts.get("laura") == User("laura", "supervisor", "", "laura", "")
    assert accounts.login("anna", PW, "a", T0) is not None
    capsys.readouterr()

    assert ivr_user(cfg, monkeypatch, "list") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "ROLE", "AGENT", "SUPERVISOR", "LANG", "TOKENS",
                              "CREATED"]
    assert out[1].split()[:6] == ["anna", "agent", "anna", "-", "it", "0"]
    assert out[2].split()[:6] == ["laura", "supervisor", "-", "laura", "-", "0"]

    assert ivr_user(cfg, monkeypatch, "passwd", "anna", password="a new password") == 0
    assert accounts.login("anna", PW, "b", T0) is None
    assert accounts.login("anna", "a new password", "b", T0) is not None

    assert ivr_user(cfg, monkeypatch, "remove", "anna") == 0
    assert accounts.get("anna") is None
    actions = [(e["user"], e["role"], e["address"], e["action"], e["target"])
               for e in reversed(accounts.audit_log())]
    assert actions == [("(cli)", "admin", "local", "user.add", "anna"),
                       ("(cli)", "admin", "local", "user.add", "laura"),
                       ("(cli)", "admin", "local", "user.passwd", "anna"),
                       ("(cli)", "admin", "local", "user.remove", "anna")]
    assert accounts.audit_log()[-1]["detail"] == {"role": "agent", "agent": "anna",
                                                   "supervisor": "", "lang": "it"}
    assert PW not in dump(store)


@pytest.mark.filterwarnings("ignore::getpass.GetPassWarning")  # stdin is not a terminal here
def test_cli_checks_agents_and_supervisors_against_ivr_yaml(cfg, monkeypatch, capsys):
    assert ivr_user(cfg, monkeypatch, "add", "anna", "--role", "agent", "--agent", "ana",
                    password=PW) == 2
    assert err_line(capsys) == (f"ivr: error: no agent 'ana' in {cfg}. Did you mean 'anna'? "
                                "(agents there: anna, marco)")
    assert ivr_user(cfg, monkeypatch, "add", "boss", "--role", "admin", "--supervisor",
                    "paolo", password=PW) == 2
    assert err_line(capsys) == (f"ivr: error: no supervisor 'paolo' in {cfg} (supervisors "
                                "there: laura)")
    assert ivr_user(cfg, monkeypatch, "add", "anna", "--role", "agent", password=PW) == 2
    assert err_line(capsys) == ("ivr: error: an agent account needs the agent it is (an agent "
                                "of ivr.yaml)")
    assert ivr_user(cfg, monkeypatch, "add", "anna", "--role", "agent", "--agent", "anna",
                    password="short") == 2
    assert err_line(capsys) == "ivr: error: the password is too short: at least 10 characters"
    assert ivr_user(cfg, monkeypatch, "add", "anna", "--role", "agent", "--agent", "anna",
                    password="") == 2
    assert err_line(capsys) == "ivr: error: no password on standard input (one line)"
    assert ivr_user(cfg, monkeypatch, "add", "anna", "--role", "agent", "--agent", "anna") == 2
    assert err_line(capsys).endswith("ivr: error: no password given; nothing changed")
    assert ivr_user(cfg, monkeypatch, "list") == 0
    assert capsys.readouterr().out.startswith("no users yet")


def test_cli_errors_and_usage(cfg, monkeypatch, capsys):
    assert ivr_user(cfg, monkeypatch, "add", "anna", "--role", "agent", "--agent", "anna",
                    password=PW) == 0
    assert ivr_user(cfg, monkeypatch, "add", "anna", "--role", "admin", password=PW) == 2
    assert err_line(capsys).endswith("ivr: error: the user 'anna' already exists (change the "
                                     "password with 'ivr user passwd')")
    assert ivr_user(cfg, monkeypatch, "remove", "ann") == 2
    assert err_line(capsys) == ("ivr: error: no user 'ann'. Did you mean 'anna'? (see 'ivr "
                                "user list')")
    assert ivr_user(cfg, monkeypatch, "passwd", "bob", password=PW) == 2
    assert err_line(capsys) == "ivr: error: no user 'bob' (see 'ivr user list')"
    with pytest.raises(SystemExit) as exited:
        ivr_user(cfg, monkeypatch, "add", "x", "--role", "root")
    assert exited.value.code == 2
    assert "invalid choice: 'root'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["user"])
    assert exited.value.code == 2
    for action in ("add", "passwd", "remove", "list", "token", "revoke", "audit", "disable",
                   "enable"):
        with pytest.raises(SystemExit) as exited:
            main(["user", action, "--help"])
        assert exited.value.code == 0
        assert "--config" in capsys.readouterr().out


def test_cli_a_bad_config_is_reported_like_the_other_commands(tmp_path, monkeypatch, capsys):
    (tmp_path / "ivr.yaml").write_text("sip: {listen: nowhere}\n")
    assert ivr_user(tmp_path / "ivr.yaml", monkeypatch, "list") == 2
    assert "problem" in capsys.readouterr().err


def test_cli_token_is_printed_once_and_kept_hashed(cfg, tmp_path, monkeypatch, capsys):
    assert ivr_user(cfg, monkeypatch, "add", "crm", "--role", "admin", password=PW) == 0
    capsys.readouterr()
    assert ivr_user(cfg, monkeypatch, "token", "crm", "--label", "hubspot") == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert len(out.splitlines()) == 1
    assert "will not be shown again" in err
    store = tmp_path / "var" / "centralino.db"
    accounts = Accounts(store)
    assert accounts.token_user(token, T0) == User("crm", "admin")
    assert token not in dump(store)
    assert ivr_user(cfg, monkeypatch, "list") == 0
    assert capsys.readouterr().out.splitlines()[1].split()[5] == "1"
    assert ivr_user(cfg, monkeypatch, "revoke", "crm") == 0
    assert capsys.readouterr().out == "1 API token of crm revoked\n"
    assert accounts.token_user(token, T0) is None
    assert accounts.audit_log()[0]["detail"] == {"tokens": 1}
    assert accounts.audit_log()[1]["detail"] == {"label": "hubspot"}


def test_cli_disable_enable_and_audit(cfg, tmp_path, monkeypatch, capsys):
    assert ivr_user(cfg, monkeypatch, "add", "marco", "--role", "agent", "--agent", "marco",
                    password=PW) == 0
    assert ivr_user(cfg, monkeypatch, "disable", "marco") == 0
    accounts = Accounts(tmp_path / "var" / "centralino.db")
    assert accounts.login("marco", PW, "a", T0) is None
    assert ivr_user(cfg, monkeypatch, "enable", "marco") == 0
    assert accounts.login("marco", PW, "a", T0) is not None
    accounts.audit(User("marco", "agent", "marco"), "10.0.0.5", "agent.pause", "marco",
                   {"reason": "lunch"})
    capsys.readouterr()
    assert ivr_user(cfg, monkeypatch, "audit", "--user", "marco") == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.endswith('  marco (agent) from 10.0.0.5: agent.pause marco {"reason": "lunch"}')
    assert ivr_user(cfg, monkeypatch, "audit", "--limit", "2") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [
        "(cli) (admin) from local: user.enable marco",
        'marco (agent) from 10.0.0.5: agent.pause marco {"reason": "lunch"}']


def test_cli_asks_the_password_twice(cfg, tmp_path, monkeypatch, capsys):
    answers = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: answers.pop(0))
    answers[:] = [PW, PW + "x"]
    assert ivr_user(cfg, monkeypatch, "add", "boss", "--role", "admin") == 2
    assert err_line(capsys) == "ivr: error: the two passwords differ; nothing changed"
    answers[:] = ["too short"]  # said at once, not after typing it again
    assert ivr_user(cfg, monkeypatch, "add", "boss", "--role", "admin") == 2
    assert err_line(capsys) == "ivr: error: the password is too short: at least 10 characters"
    answers[:] = [PW, PW]
    assert ivr_user(cfg, monkeypatch, "add", "boss", "--role", "admin") == 0
    assert answers == []
    accounts = Accounts(tmp_path / "var" / "centralino.db")
    assert accounts.login("boss", PW, "a", T0) == User("boss", "admin")
    assert [e["action"] for e in accounts.audit_log()] == ["user.add"]

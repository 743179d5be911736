"""Console accounts: users and roles, login with a per-address lockout, sessions, API tokens
and the audit log.

Everything lives in the switchboard's SQLite store file (``store`` in ivr.yaml), in tables
named ``console_*`` (a new file is made a call record store first). That file is shared with
the store's writer thread and with the ``ivr`` commands, so every operation opens its own
connection with a busy timeout and keeps its transaction short; nothing is cached in memory,
so a user removed by ``ivr user remove`` is gone for a running console at its next request.

Passwords are hashed with argon2id (argon2-cffi's defaults, the OWASP recommendation). Session
cookies and API tokens are random strings known only to the browser or the integration: the
tables hold their SHA-256, never the strings themselves.

Hashing and verifying a password takes a noticeable fraction of a second by design: callers on
an event loop run :meth:`Accounts.login`, :meth:`Accounts.add_user` and
:meth:`Accounts.set_password` in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("agent", "team_leader", "supervisor", "admin")
LANGS = ("", "it", "en")
NAME_PATTERN = re.compile(r"[a-z0-9_.-]{1,32}")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
"""Longer passwords are refused when set and never verified (hashing them costs the same, but
a request body that large is not a password)."""
BUSY_TIMEOUT = 5.0
TOKEN_TOUCH_EVERY = 60.0
"""An API token's last_used is written at most this often (seconds): a busy integration must
not turn every read into a write."""

_DUMMY_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$7BYnhezoCStPIxNFGVWkLw$"
               "soAZM4HMW/go3ZWNssq5gnGWqkZ37oavQPoPfvGmY7s")
"""A hash of a random string nobody kept, with argon2-cffi's default parameters: an unknown
name is verified against it so that it costs the same time as a wrong password."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    agent TEXT NOT NULL DEFAULT '',
    supervisor TEXT NOT NULL DEFAULT '',
    lang TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    created REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    csrf TEXT NOT NULL,
    address TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_user ON console_sessions(user);
CREATE TABLE IF NOT EXISTS console_tokens (
    token_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    last_used REAL
);
CREATE INDEX IF NOT EXISTS console_tokens_user ON console_tokens(user);
CREATE TABLE IF NOT EXISTS console_login_failures (
    address TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS console_login_failures_address
    ON console_login_failures(address, at);
CREATE TABLE IF NOT EXISTS console_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    address TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    detail TEXT
);
CREATE INDEX IF NOT EXISTS console_audit_at ON console_audit(at);
"""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    agent: str = ""
    """The agent of ivr.yaml this account is (required for the role agent)."""
    supervisor: str = ""
    """The supervisors: entry of ivr.yaml whose phone the box calls to listen, whisper or
    barge (roles supervisor and admin)."""
    lang: str = ""
    """'it', 'en' or '' (the browser's language)."""
    disabled: bool = False


@dataclass(frozen=True)
class Session:
    token: str
    """The cookie value: known only when the session is created, '' when read back."""
    user: User
    csrf: str
    expires: float


class LockedOut(Exception):
    """Too many wrong logins from one address: refused before the password is looked at."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed logins from this address; try again in "
                         f"{math.ceil(retry_after)} s")


class AccountError(ValueError):
    """A request the accounts refuse, with a message a technician understands."""


def token_hash(token: str) -> str:
    """What the tables keep of a session cookie or API token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise AccountError(f"invalid user name {name!r}: use 1 to 32 characters among "
                           "lowercase letters, digits, '_', '.' and '-'")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password is too long: at most {MAX_PASSWORD} characters")


def check_fields(role: str, agent: str, supervisor: str, lang: str) -> None:
    """The role and what goes with it; the names of agents and supervisors are checked
    against ivr.yaml by the caller, which has it."""
    if role not in ROLES:
        from ivr.yamlsrc import did_you_mean

        raise AccountError(f"unknown role {role!r}: the roles are {', '.join(ROLES)}."
                           f"{did_you_mean(role, ROLES)}".rstrip("."))
    if role == "agent" and not agent:
        raise AccountError("an agent account needs the agent it is (an agent of ivr.yaml)")
    if supervisor and role not in ("supervisor", "admin"):
        raise AccountError(f"only a supervisor or an admin has a supervisor's phone; the role "
                           f"{role} cannot have one")
    if lang not in LANGS:
        raise AccountError(f"unknown language {lang!r}: 'it', 'en' or none (the browser's)")


def _user(row: sqlite3.Row) -> User:
    return User(row["name"], row["role"], row["agent"], row["supervisor"], row["lang"],
                bool(row["disabled"]))


class Accounts:
    """The console's accounts in the SQLite file *db_path* (the switchboard's store).

    A login from an address that had *max_failures* wrong attempts within *window* seconds is
    refused for *lockout* seconds after the last of them. *hasher* is argon2-cffi's
    :class:`PasswordHasher` with its defaults unless given; a stored hash made with other
    parameters is replaced by one made with these at the user's next login.
    """

    def __init__(self, db_path: Path | str, *, max_failures: int = 10, window: float = 900.0,
                 lockout: float = 900.0, hasher: PasswordHasher | None = None) -> None:
        if max_failures < 1 or window <= 0 or lockout <= 0:
            raise ValueError("max_failures, window and lockout must be positive")
        self.path = Path(db_path)
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.hasher = hasher or PasswordHasher()
        self._dummy = _DUMMY_HASH
        if self.hasher.check_needs_rehash(_DUMMY_HASH):  # other parameters: other timing
            self._dummy = self.hasher.hash(secrets.token_urlsafe(24))
        self._store_first()
        try:
            with self._db() as db:
                if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise AccountError(f"cannot open the console's accounts in {self.path}: {exc}; "
                               "check the file or set 'store' in ivr.yaml") from None

    # -- the database --------------------------------------------------------------------------
    def _store_first(self) -> None:
        """A new file becomes a call record store before it gets console tables: the
        switchboard refuses to start on a file with tables but no call records."""
        try:
            with self._db() as db:
                has_calls = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                       "name = 'calls'").fetchone() is not None
        except sqlite3.Error:
            has_calls = False  # not a database: the store says so in its own words
        if not has_calls:
            from ivr.store import CallStore

            CallStore(self.path).close()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection for one operation, in autocommit mode (see :meth:`_write`)."""
        db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction, taking the write lock at once (no upgrade deadlock
        with the store's writer)."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _row(self, name: str) -> sqlite3.Row | None:
        with self._db() as db:
            row: sqlite3.Row | None = db.execute(
                "SELECT * FROM console_users WHERE name = ?", (name,)).fetchone()
            return row

    def _require(self, db: sqlite3.Connection, name: str) -> None:
        if db.execute("SELECT 1 FROM console_users WHERE name = ?", (name,)).fetchone() is None:
            raise AccountError(f"no user {name!r}")

    # -- users ---------------------------------------------------------------------------------
    def add_user(self, name: str, password: str, role: str, *, agent: str = "",
                 supervisor: str = "", lang: str = "") -> User:
        """A new account; :class:`AccountError` if a field is invalid, the name is taken or
        another account already is that agent."""
        check_name(name)
        check_fields(role, agent, supervisor, lang)
        check_password(password)
        hashed = self.hasher.hash(password)  # outside the transaction: it takes a while
        with self._write() as db:
            if db.execute("SELECT 1 FROM console_users WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"the user {name!r} already exists")
            if agent:
                other = db.execute("SELECT name FROM console_users WHERE agent = ?",
                                   (agent,)).fetchone()
                if other is not None:
                    raise AccountError(f"the agent {agent!r} already has the account "
                                       f"{other['name']!r}")
            db.execute("INSERT INTO console_users (name, role, agent, supervisor, lang, "
                       "password_hash, created, disabled) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                       (name, role, agent, supervisor, lang, hashed, time.time()))
        return User(name, role, agent, supervisor, lang)

    def set_password(self, name: str, password: str) -> None:
        """Change the password; the user's console sessions end (a stolen cookie dies with
        the old password). API tokens stay: revoke them with :meth:`revoke_tokens`."""
        check_password(password)
        hashed = self.hasher.hash(password)
        with self._write() as db:
            self._require(db, name)
            db.execute("UPDATE console_users SET password_hash = ? WHERE name = ?",
                       (hashed, name))
            db.execute("DELETE FROM console_sessions WHERE user = ?", (name,))

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable an account (it cannot log in, its sessions end, its tokens stop working
        while it is disabled) or enable it again."""
        with self._write() as db:
            self._require(db, name)
            db.execute("UPDATE console_users SET disabled = ? WHERE name = ?",
                       (int(disabled), name))
            if disabled:
                db.execute("DELETE FROM console_sessions WHERE user = ?", (name,))

    def remove_user(self, name: str) -> None:
        """Remove the account with its sessions and API tokens (its audit entries stay)."""
        with self._write() as db:
            self._require(db, name)
            db.execute("DELETE FROM console_sessions WHERE user = ?", (name,))
            db.execute("DELETE FROM console_tokens WHERE user = ?", (name,))
            db.execute("DELETE FROM console_users WHERE name = ?", (name,))

    def get(self, name: str) -> User | None:
        row = self._row(name)
        return _user(row) if row is not None else None

    def users(self) -> list[User]:
        with self._db() as db:
            return [_user(r) for r in db.execute("SELECT * FROM console_users ORDER BY name")]

    def created(self, name: str) -> float | None:
        """When the account was made (a Unix time), or None if there is no such user."""
        row = self._row(name)
        return float(row["created"]) if row is not None else None

    # -- login ---------------------------------------------------------------------------------
    def locked_until(self, address: str, now: float) -> float:
        """When *address* may try again (a time <= now: it may now). Locked when
        max_failures failures fall within window seconds; the lock lasts lockout seconds
        after the failure that completed them."""
        with self._db() as db:
            return self._locked_until(db, address, now)

    def _locked_until(self, db: sqlite3.Connection, address: str, now: float) -> float:
        n = self.max_failures
        times = [r[0] for r in db.execute(
            "SELECT at FROM console_login_failures WHERE address = ? AND at > ? ORDER BY at",
            (address, now - self.window - self.lockout))]
        until = 0.0
        for i in range(n - 1, len(times)):
            if times[i] - times[i - n + 1] <= self.window:
                until = max(until, times[i] + self.lockout)
        return until

    def login(self, name: str, password: str, address: str, now: float) -> User | None:
        """The user if *password* is theirs; None (and a failure counted against *address*)
        for a wrong name, a wrong password or a disabled account, all in the same time.

        Raises :class:`LockedOut` first, without looking at the password, while *address* is
        locked out; attempts refused so do not count as failures. Each attempt is counted as
        a failure in the same transaction that checks the lock, and uncounted if the password
        is right: parallel attempts cannot slip more than max_failures past the check."""
        valid = NAME_PATTERN.fullmatch(name) is not None
        with self._write() as db:
            until = self._locked_until(db, address, now)
            if until > now:
                raise LockedOut(until - now)
            attempt = db.execute("INSERT INTO console_login_failures (address, at) "
                                 "VALUES (?, ?)", (address, now)).lastrowid
            db.execute("DELETE FROM console_login_failures WHERE at <= ?",
                       (now - self.window - self.lockout,))
            row = db.execute("SELECT * FROM console_users WHERE name = ?",
                             (name,)).fetchone() if valid else None
        stored = row["password_hash"] if row is not None else self._dummy
        ok = False
        if len(password) <= MAX_PASSWORD:  # the verification outside any transaction
            try:
                ok = self.hasher.verify(stored, password)
            except (VerificationError, InvalidHashError):
                ok = False
        if row is None or not ok or row["disabled"]:
            return None  # the attempt stays counted
        rehashed = self.hasher.hash(password) if self.hasher.check_needs_rehash(stored) \
            else None
        with self._write() as db:
            db.execute("DELETE FROM console_login_failures WHERE rowid = ?", (attempt,))
            if rehashed is not None:  # only if nobody changed it meanwhile
                db.execute("UPDATE console_users SET password_hash = ? WHERE name = ? AND "
                           "password_hash = ?", (rehashed, name, stored))
        return _user(row)

    def new_session(self, user: User, address: str, now: float, hours: float) -> Session:
        """A session of *hours* for *user*: a random cookie value and CSRF token. Expired
        sessions of anyone are deleted on the way."""
        if hours <= 0:
            raise ValueError("a session lasts a positive number of hours")
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = now + hours * 3600.0
        with self._write() as db:
            row = db.execute("SELECT disabled FROM console_users WHERE name = ?",
                             (user.name,)).fetchone()
            if row is None or row["disabled"]:
                raise AccountError(f"no user {user.name!r} that may log in")
            db.execute("DELETE FROM console_sessions WHERE expires <= ?", (now,))
            db.execute("INSERT INTO console_sessions (token_hash, user, csrf, address, created, "
                       "expires) VALUES (?, ?, ?, ?, ?, ?)",
                       (token_hash(token), user.name, csrf, address, now, expires))
        return Session(token, user, csrf, expires)

    def session(self, token: str, now: float) -> Session | None:
        """The live session of cookie value *token*, with its user as they are now; None if
        unknown, expired, or the user was removed or disabled."""
        if not token:
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT s.csrf, s.expires, u.* FROM console_sessions s JOIN console_users u "
                "ON u.name = s.user WHERE s.token_hash = ? AND s.expires > ? AND "
                "u.disabled = 0", (token_hash(token), now)).fetchone()
        if row is None:
            return None
        return Session("", _user(row), row["csrf"], float(row["expires"]))

    def end_session(self, token: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM console_sessions WHERE token_hash = ?", (token_hash(token),))

    # -- API tokens ----------------------------------------------------------------------------
    def new_token(self, name: str, label: str, now: float) -> str:
        """A new API token for user *name*: the only time it is seen (only its hash is
        kept)."""
        token = secrets.token_urlsafe(32)
        with self._write() as db:
            self._require(db, name)
            db.execute("INSERT INTO console_tokens (token_hash, user, label, created, "
                       "last_used) VALUES (?, ?, ?, ?, NULL)",
                       (token_hash(token), name, label, now))
        return token

    def token_user(self, token: str, now: float) -> User | None:
        """The user of API token *token* (None if unknown, revoked or the user disabled);
        its last use is recorded, at most once a minute."""
        if not token:
            return None
        digest = token_hash(token)
        with self._db() as db:
            row = db.execute(
                "SELECT t.last_used, u.* FROM console_tokens t JOIN console_users u "
                "ON u.name = t.user WHERE t.token_hash = ? AND u.disabled = 0",
                (digest,)).fetchone()
            if row is None:
                return None
            if row["last_used"] is None or now - row["last_used"] >= TOKEN_TOUCH_EVERY:
                db.execute("UPDATE console_tokens SET last_used = ? WHERE token_hash = ?",
                           (now, digest))
        return _user(row)

    def tokens(self, name: str) -> list[dict[str, Any]]:
        """The API tokens of *name* (label, created, last_used; never the token)."""
        with self._db() as db:
            return [dict(r) for r in db.execute(
                "SELECT label, created, last_used FROM console_tokens WHERE user = ? "
                "ORDER BY created", (name,))]

    def revoke_tokens(self, name: str) -> int:
        """Revoke every API token of *name*; how many there were."""
        with self._write() as db:
            self._require(db, name)
            return db.execute("DELETE FROM console_tokens WHERE user = ?", (name,)).rowcount

    # -- audit ---------------------------------------------------------------------------------
    def audit(self, user: User | None, address: str, action: str, target: str = "",
              detail: Any = None, now: float | None = None) -> None:
        """Record that *user* (None: someone not logged in) did *action* on *target* from
        *address*; *detail* is anything JSON can hold (never a password or token)."""
        text = None if detail is None else json.dumps(detail, sort_keys=True, default=str)
        with self._write() as db:
            db.execute("INSERT INTO console_audit (at, user, role, address, action, target, "
                       "detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (time.time() if now is None else now, user.name if user else "",
                        user.role if user else "", address, action, target, text))

    def audit_log(self, *, limit: int = 200, user: str | None = None,
                  since: float | None = None) -> list[dict[str, Any]]:
        """The latest entries first: id, at, user, role, address, action, target, detail
        (decoded)."""
        where: list[str] = []
        params: list[Any] = []
        if user is not None:
            where.append("user = ?")
            params.append(user)
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        sql = "SELECT * FROM console_audit" + (" WHERE " + " AND ".join(where) if where else "")
        with self._db() as db:
            rows = db.execute(sql + " ORDER BY at DESC, id DESC LIMIT ?",
                              (*params, max(0, limit))).fetchall()
        return [{**dict(r), "detail": None if r["detail"] is None else json.loads(r["detail"])}
                for r in rows]

"""Checks made before the switchboard starts, so each failure is one line with its fix.

Without them a port in use surfaces as a bare ``pjsua2.Error`` or an ``OSError`` from the
metrics server, and a store path that is a folder as an SQLite traceback. Each check raises
:class:`~ivr.errors.StartupError` naming what failed and what to do::

    check_udp_free("127.0.0.1", 5080, "SIP")
    check_tcp_free("127.0.0.1", 9480, "metrics")
    check_store_path(Path("var/centralino.db"))

A check only proves the address was free a moment ago; the code that binds for real still
reports its own failure (the same message, from :func:`listen_error`).

:func:`record_file_problem` also says whether a file is a Centralino call record database,
for ``ivr report`` and ``ivr purge``, without ever creating it.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.errors import StartupError

if TYPE_CHECKING:
    from ivr.config import Config

_SQLITE_MAGIC = b"SQLite format 3\x00"

_LISTENERS: dict[str, tuple[str, str]] = {
    # what -> (the ivr.yaml key that sets the address, who else may hold it)
    "SIP": ("sip.listen", "another switchboard or PBX?"),
    "metrics": ("metrics", "another switchboard or exporter?"),
    "console": ("console", "another switchboard or web server?"),
}


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_error(exc: OSError, host: str, port: int, what: str, proto: str,
                 setting: str | None = None) -> StartupError:
    """The :class:`StartupError` for *exc*, raised when binding *what* to host:port failed."""
    key, suspect = _LISTENERS.get(what, (setting or "the address", "another program?"))
    key = setting or key
    head = f"cannot listen for {what} on {proto} {_address(host, port)}"
    if exc.errno == errno.EADDRINUSE:
        return StartupError(f"{head}: the address is in use ({suspect}); stop it or set "
                            f"{key} in ivr.yaml")
    if exc.errno == errno.EADDRNOTAVAIL:
        return StartupError(f"{head}: {host} is not an address of this machine; set {key} in "
                            "ivr.yaml to one of its addresses ('ip address' lists them)")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StartupError(f"{head}: permission denied (ports below 1024 need root or the "
                            f"CAP_NET_BIND_SERVICE capability); set {key} in ivr.yaml to a port "
                            "from 1024 up")
    reason = exc.strerror or str(exc) or type(exc).__name__
    return StartupError(f"{head}: {reason}; check {key} in ivr.yaml")


def _check_free(kind: socket.SocketKind, proto: str, host: str, port: int, what: str,
                setting: str | None) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.socket(family, kind)
    except OSError as exc:
        raise listen_error(exc, host, port, what, proto, setting) from None
    try:
        # UDP: off, so a port another process holds is found whatever options it set.
        # TCP: on, as HTTP servers (the metrics one included) set it: a listener still fails
        # the bind, but connections of a stopped switchboard left in TIME_WAIT do not.
        reuse = 1 if kind == socket.SOCK_STREAM else 0
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, reuse)
        sock.bind((host, port))
    except OSError as exc:
        raise listen_error(exc, host, port, what, proto, setting) from None
    finally:
        sock.close()


def check_udp_free(host: str, port: int, what: str, *, setting: str | None = None) -> None:
    """Raise :class:`StartupError` unless UDP *host*:*port* can be bound now.

    *what* names the listener in the message ("SIP"); *setting* is the ivr.yaml key that
    moves it (known for "SIP" and "metrics").
    """
    _check_free(socket.SOCK_DGRAM, "udp", host, port, what, setting)


def check_tcp_free(host: str, port: int, what: str, *, setting: str | None = None) -> None:
    """Raise :class:`StartupError` unless a TCP server can listen on *host*:*port* now."""
    _check_free(socket.SOCK_STREAM, "tcp", host, port, what, setting)


def _folder_problem(folder: Path) -> str | None:
    """Why no file can be created in *folder*, or None. As root os.access says yes to almost
    everything, so a file is really created (and removed): that finds read-only file systems
    and immutable folders too."""
    allowed = os.access(folder, os.W_OK | os.X_OK)
    try:
        fd, name = tempfile.mkstemp(prefix=".centralino-check-", dir=folder)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return "it is on a read-only file system"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "it is not writable (permission denied)"
        return f"no file can be created in it ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(name)
    return None if allowed else "it is not writable (permission denied)"


def check_store_path(path: Path) -> None:
    """Raise :class:`StartupError` unless the call record file *path* can be opened for
    writing: it must not be a folder or lie under a regular file, its folder must take new
    files (SQLite adds ``-wal`` and ``-shm`` beside it), and an existing file must be an
    SQLite database of ours (or empty)."""
    path = Path(path)
    fix = "set store in ivr.yaml to another path"
    if path.is_dir():
        raise StartupError(f"the call record store {path} is a folder; set store in ivr.yaml "
                           f"to a file path such as {path / 'centralino.db'}")
    existing = path.parent
    for _ in range(len(path.parts) + 1):  # the nearest folder that exists: mkdir starts there
        if existing.exists() or existing == existing.parent:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise StartupError(f"cannot create the call record store {path}: {existing} is a file, "
                           f"not a folder; move that file or {fix}")
    problem = _folder_problem(existing)
    if problem is not None:
        raise StartupError(f"cannot write the call record store {path}: {problem} (folder "
                           f"{existing}); give the service's user write access to it or {fix}")
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise StartupError(f"cannot write the call record store {path}: the file is not "
                               f"writable (permission denied); give the service's user write "
                               f"access to it or {fix}")
        problem = record_file_problem(path, new_ok=True)
        if problem is not None:
            raise StartupError(f"the call record store {problem}; {fix}")


def check_startup(config: Config) -> None:
    """Every check above for *config*: the store, the SIP address, the metrics and console
    addresses."""
    check_store_path(config.store)
    check_udp_free(config.sip_listen.host, config.sip_listen.port, "SIP")
    if config.metrics is not None:
        check_tcp_free(config.metrics.host, config.metrics.port, "metrics")
    if config.console is not None:
        check_tcp_free(config.console.listen.host, config.console.listen.port, "console")


_REQUIRED_COLUMNS = {
    "calls": ("call_id", "caller", "called", "source", "queue", "agent", "started_at",
              "connected_at", "ended_at", "wait_seconds", "talk_seconds", "outcome",
              "voicemail_path"),
    "queue_events": ("at", "kind", "queue", "call_id", "agent", "detail"),
}
_ADDED_LATER = ("voicemail_path",)
"""Columns the store adds to a file from an earlier version when it opens it."""


def record_file_problem(path: Path, *, new_ok: bool = False) -> str | None:
    """Why *path* is not a Centralino call record database, as the end of a sentence that
    starts with the path ("calls.txt is not ... (not an SQLite file)"), or None if it is one.

    With *new_ok*, a missing or empty file, or an SQLite file without tables, is fine (the
    store makes the tables). Never creates or changes the file: it is opened read-only.
    """
    path = Path(path)
    name = str(path)
    not_ours = f"{name} is not a Centralino call record database"
    try:
        info = path.stat()
    except FileNotFoundError:
        return None if new_ok else (f"{name} does not exist (give the call record database "
                                    "with --store, or check store in ivr.yaml)")
    except NotADirectoryError:
        return None if new_ok else f"{name} does not exist (a part of the path is a file)"
    except OSError as exc:
        return f"{name} cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(info.st_mode):
        return f"{name} is a folder, not a Centralino call record database"
    if not stat.S_ISREG(info.st_mode):
        return f"{not_ours} (not a regular file)"
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        return f"{name} cannot be read: {exc.strerror or exc}"
    if not head:
        wal = path.with_name(path.name + "-wal")
        if new_ok or (wal.is_file() and wal.stat().st_size):
            return None
        return f"{not_ours} (the file is empty)"
    if head != _SQLITE_MAGIC:
        return f"{not_ours} (not an SQLite file)"
    return _database_problem(path, new_ok=new_ok)


def _database_problem(path: Path, *, new_ok: bool) -> str | None:
    """The tables and columns of the SQLite file *path*, as :func:`record_file_problem`."""
    name = str(path)
    not_ours = f"{name} is not a Centralino call record database"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        return f"{name} cannot be opened: {exc}"
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if new_ok and not tables:
            return None
        columns = {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")}
                   for t in _REQUIRED_COLUMNS if t in tables}
    except sqlite3.Error as exc:
        return f"{name} cannot be read as an SQLite database ({exc})"
    finally:
        db.close()
    for table, needed in _REQUIRED_COLUMNS.items():
        if table not in tables:
            if new_ok and table != "calls":
                continue  # the store adds the tables it lacks
            return f"{not_ours} (no '{table}' table)"
        missing = [c for c in needed if c not in columns[table]]
        foreign = [c for c in missing if c not in _ADDED_LATER]
        if foreign:
            return f"{not_ours} (the '{table}' table has no column '{foreign[0]}')"
        if missing and not new_ok:  # the store adds these columns when it opens the file
            return (f"{name} is a call record database from an older version (the '{table}' "
                    f"table has no column '{missing[0]}'); start the switchboard once on it to "
                    "bring it up to date")
    return None


__all__ = ["check_startup", "check_store_path", "check_tcp_free", "check_udp_free",
           "listen_error", "record_file_problem"]

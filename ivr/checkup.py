"""``ivr doctor``: one screen of checks a technician on site runs, each with what to do.

Configuration, ports, gateways, clock, disk, prompts, database, edge, serial devices and the
SIP stack, in that order. Each check gives :class:`Check` lines (``ok``, ``warning``,
``fail`` or ``skip``); :func:`format_checks` prints them and :func:`exit_status` is 1 when
any failed::

    checks = run_checks(Path("ivr.yaml"))
    print(format_checks(checks))

Nothing is changed: ports are bound and released at once, the database is opened read-only
(a running switchboard keeps its lock and its writes), one prompt is rendered into a
temporary folder, gateways get one OPTIONS each (all at once, short timeout).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ivr.config import Config, load_config
from ivr.prompts import check_tools
from ivr.sip.build import build_info

Status = Literal["ok", "warning", "fail", "skip"]
LABELS: dict[Status, str] = {"ok": "ok", "warning": "WARN", "fail": "FAIL", "skip": "skip"}
DISK_WARN_MB = 1024
"""Free space under which the disk check warns (records and recordings keep growing)."""
SECURITY_PATCHES = ("CVE-2023-27585",)
"""Security fixes the SIP stack's build must carry (Debian's patch of pjproject 2.12.1)."""


@dataclass(frozen=True)
class Check:
    """One line of the report, and what to do when it is not ok."""

    area: str
    status: Status
    text: str
    fix: str = ""


def format_checks(checks: Sequence[Check]) -> str:
    """One line per check (the fix indented below it), then a count by status."""
    lines: list[str] = []
    for c in checks:
        lines.append(f"{LABELS[c.status]:<5} {c.area:<13} {c.text}")
        if c.fix and c.status in ("warning", "fail"):
            lines.append(f"{'':19}-> {c.fix}")
    counts = {s: sum(1 for c in checks if c.status == s) for s in LABELS}
    warnings = f"{counts['warning']} warning{'' if counts['warning'] == 1 else 's'}"
    lines.append(f"{counts['fail']} failed, {warnings}, {counts['ok']} ok, "
                 f"{counts['skip']} skipped")
    return "\n".join(lines) + "\n"


def exit_status(checks: Sequence[Check]) -> int:
    """1 if any check failed, else 0 (warnings do not fail the doctor)."""
    return 1 if any(c.status == "fail" for c in checks) else 0


def run_checks(config_path: Path, gateway_timeout: float = 1.0) -> list[Check]:
    """Every check, in the order printed. Checks that need the configuration are skipped
    when it does not load."""
    checks: list[Check] = []
    try:
        config = load_config(config_path)
    except Exception as exc:  # noqa: BLE001 - any refusal is the check's finding
        checks.append(Check("configuration", "fail", f"{config_path}: {exc}",
                            f"fix the file; 'ivr validate --config {config_path}' shows where"))
        config = None
    else:
        checks.append(Check("configuration", "ok", f"{config_path} is valid"))
    if config is not None:
        running = switchboard_pid(config.store)
        checks += check_ports(config, running)
        checks += check_gateways(config, gateway_timeout)
    checks.append(check_clock())
    if config is not None:
        checks += check_disk(config)
    checks.append(check_prompts(config.voices.get("en", "en") if config else "en"))
    if config is not None:
        checks.append(check_database(config.store))
        checks.append(check_console(config))
        checks.append(check_edge(config))
        checks += check_devices(config)
    checks.append(check_sip_stack())
    return checks


# -- ports -------------------------------------------------------------------------------------

def switchboard_pid(store: Path) -> int | None:
    """The pid of the switchboard running on *store* (it holds ``<db>.lock``), else None."""
    lock = store.with_name(store.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else 0
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def port_free(host: str, port: int, kind: int) -> str | None:
    """None if (host, port) can be bound now for *kind* (SOCK_DGRAM, SOCK_STREAM), else why."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind((host, port))
        except OSError as exc:
            return "in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
    return None


def check_ports(config: Config, running: int | None) -> list[Check]:
    """SIP (UDP), a sample of the RTP range (first, middle, last) and metrics (TCP)."""
    host = config.sip_listen.host
    last = config.rtp_port + config.rtp_port_range - 1
    wanted = [("SIP", host, config.sip_listen.port, socket.SOCK_DGRAM)]
    wanted += [("RTP", host, p, socket.SOCK_DGRAM)
               for p in dict.fromkeys((config.rtp_port, (config.rtp_port + last) // 2, last))]
    if config.metrics is not None:
        wanted.append(("metrics", config.metrics.host, config.metrics.port, socket.SOCK_STREAM))
    out: list[Check] = []
    busy: list[str] = []
    for what, h, port, kind in wanted:
        proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
        why = port_free(h, port, kind)
        if why is None:
            continue
        if why == "in use" and running is not None:
            continue  # the switchboard's own
        busy.append(f"{what} {h}:{port}/{proto} {why}")
        out.append(Check("ports", "fail", f"{what} port {h}:{port}/{proto}: {why}",
                         f"see who holds it: ss -lnp{proto[0]} 'sport = :{port}'; stop it or "
                         "change the port in ivr.yaml"))
    if not busy:
        ports = ", ".join(f"{w} {p}/{'udp' if k == socket.SOCK_DGRAM else 'tcp'}"
                          for w, _h, p, k in wanted)
        note = f" (the switchboard, pid {running}, holds them)" if running is not None else ""
        out.append(Check("ports", "ok", f"free: {ports}{note}"))
    return out


# -- gateways ----------------------------------------------------------------------------------

def check_gateways(config: Config, timeout: float) -> list[Check]:
    """One OPTIONS to every trunk with ``ping:``, all at once; 503 or silence fails."""
    from hw.gateway import UNAVAILABLE, GatewayMonitor

    pinged = [t for t in config.trunks if t.ping is not None]
    if not pinged:
        return [Check("gateways", "skip", "no trunk has 'ping:' (the gateway's address for "
                      "OPTIONS)")]
    targets = [(t.name, t.ping.host, t.ping.port) for t in pinged if t.ping is not None]
    answers = GatewayMonitor(targets, timeout=timeout).probe()
    out: list[Check] = []
    for name, host, port in targets:
        answer = answers.get(name)
        where = f"trunk {name} ({host}:{port})"
        if answer is None:
            out.append(Check("gateways", "fail", f"{where}: no answer to OPTIONS in "
                             f"{timeout:g} s", "check the gateway is on, its network cable and "
                             "address, and that it answers SIP on that port"))
        elif answer[0] == UNAVAILABLE:
            out.append(Check("gateways", "fail", f"{where}: SIP {answer[0]} {answer[1]}",
                             "the gateway takes no calls: check its phone lines (FXO ports) "
                             "and its status page"))
        else:
            out.append(Check("gateways", "ok", f"{where} answers: SIP {answer[0]} {answer[1]}"))
    return out


# -- clock -------------------------------------------------------------------------------------

Runner = Callable[[Sequence[str]], str | None]


def _run(argv: Sequence[str]) -> str | None:
    """stdout of a short command, or None if it is missing, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h): modes, then longs; only status (the 7th field) is read,
    # the rest is room enough for the kernel to fill
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("rest", ctypes.c_long * 40)]


STA_UNSYNC = 0x0040
TIME_ERROR = 5


def kernel_synchronised() -> bool | None:
    """The kernel's own view (adjtimex, read only): whether an NTP daemon keeps the clock
    disciplined; None when it cannot be asked."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        timex = _Timex()  # modes 0: read only
        state = int(libc.adjtimex(ctypes.byref(timex)))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR and not timex.status & STA_UNSYNC


def check_clock(run: Runner = _run,
                kernel: Callable[[], bool | None] = kernel_synchronised) -> Check:
    """Business hours depend on the clock: timedatectl, else chronyc, else the kernel."""
    fix = ("enable time synchronisation: timedatectl set-ntp true (systemd-timesyncd) or "
           "install chrony; the gateway's network must reach an NTP server")
    out = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if out is not None and out.strip() in ("yes", "no"):
        if out.strip() == "yes":
            return Check("clock", "ok", "synchronised (timedatectl)")
        return Check("clock", "fail", "not synchronised (timedatectl)", fix)
    out = run(["chronyc", "-n", "tracking"])
    if out is not None and "Leap status" in out:
        if "Not synchronised" in out:
            return Check("clock", "fail", "not synchronised (chronyc tracking)", fix)
        return Check("clock", "ok", "synchronised (chronyc tracking)")
    synced = kernel()
    if synced is None:
        return Check("clock", "warning", "synchronisation unknown (no timedatectl, chronyc "
                     "or adjtimex answer)", fix)
    if synced:
        return Check("clock", "ok", "synchronised (kernel adjtimex)")
    return Check("clock", "warning", "the kernel says not synchronised (adjtimex; no "
                 "timedatectl or chronyc to ask)", fix)


# -- disk --------------------------------------------------------------------------------------

def _existing(path: Path) -> Path:
    """*path* or its nearest existing parent (what the file will be created on)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(config: Config) -> list[Check]:
    """Free space where records (the database) and recordings are written."""
    floor = config.recording_min_free_mb
    out: list[Check] = []
    places = {"records": config.store.parent, "recordings": config.recordings}
    seen: dict[int, str] = {}
    for what, path in places.items():
        where = _existing(path)
        device = where.stat().st_dev
        if device in seen:
            out.append(Check("disk", "ok", f"{what}: same disk as {seen[device]}"))
            continue
        seen[device] = what
        free_mb = shutil.disk_usage(where).free // (1024 * 1024)
        text = f"{what} ({path}): {free_mb} MB free"
        if free_mb < floor:
            out.append(Check("disk", "fail", text + f", under {floor} MB (recording stops)",
                             "free space: 'ivr purge' with retention_days, move recordings "
                             "off the box, or a bigger disk"))
        elif free_mb < DISK_WARN_MB:
            out.append(Check("disk", "warning", text, "plan space: retention_days in ivr.yaml "
                             "and 'ivr purge' keep records and recordings bounded"))
        else:
            out.append(Check("disk", "ok", text))
    return out


# -- prompts -----------------------------------------------------------------------------------

def check_prompts(voice: str = "en") -> Check:
    """espeak-ng and sox present, and one short prompt rendered and converted as calls use it."""
    fix = "apt-get install espeak-ng sox"
    missing = check_tools()
    if missing:
        return Check("prompts", "fail", f"missing: {', '.join(missing)}", fix)
    with tempfile.TemporaryDirectory(prefix="ivr-doctor-") as tmp:
        raw, wav = Path(tmp, "raw.wav"), Path(tmp, "prompt.wav")
        steps = (["espeak-ng", "-v", voice, "-w", str(raw), "--", "Centralino"],
                 ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(wav)])
        for argv in steps:
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return Check("prompts", "fail", f"{argv[0]} did not run: {exc}", fix)
            if done.returncode != 0:
                said = (done.stderr.strip().splitlines() or ["no message"])[-1]
                return Check("prompts", "fail", f"{argv[0]} failed: {said}",
                             f"check the voice '{voice}' is installed (espeak-ng --voices)")
        size = wav.stat().st_size if wav.exists() else 0
    if size <= 44:
        return Check("prompts", "fail", "a test prompt rendered empty", fix)
    return Check("prompts", "ok", f"espeak-ng and sox render (voice {voice})")


# -- database ----------------------------------------------------------------------------------

def check_database(path: Path) -> Check:
    """``PRAGMA quick_check`` on a read-only connection: a running switchboard keeps its lock
    and goes on writing (WAL readers do not block it)."""
    if not path.exists():
        return Check("database", "ok", f"{path} not created yet (the first start creates it)")
    restore = (f"stop the switchboard, keep a copy of {path}, then restore the last backup or "
               f"recover it: sqlite3 {path} .recover | sqlite3 new.db")
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error as exc:
        return Check("database", "fail", f"{path}: cannot open read-only: {exc}",
                     "give the user running 'ivr doctor' read access to it")
    try:
        rows = [str(r[0]) for r in db.execute("PRAGMA quick_check(5)")]
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return Check("database", "warning", f"{path}: busy, not checked ({exc})",
                         "run 'ivr doctor' again in a quiet moment")
        return Check("database", "fail", f"{path}: {exc}", restore)
    except sqlite3.DatabaseError as exc:
        return Check("database", "fail", f"{path}: {exc}", restore)
    finally:
        db.close()
    if rows != ["ok"]:
        return Check("database", "fail", f"{path}: damaged: {'; '.join(rows)[:200]}", restore)
    return Check("database", "ok", f"{path}: integrity ok (quick_check)")


# -- console -----------------------------------------------------------------------------------

def check_console(config: Config) -> Check:
    """The web console's accounts: someone can log in as admin, and every agent of ivr.yaml
    has an account (read-only, from the store's console_users table); its TLS files exist."""
    console = config.console
    if console is None:
        return Check("console", "skip", "the web console is off ('console: off' in ivr.yaml)")
    for path in (console.tls_cert, console.tls_key):
        if path is not None and not Path(path).is_file():
            return Check("console", "fail", f"TLS file {path} is missing",
                         "set console.tls to the certificate and key files, or remove it")
    where = f"https://{console.listen}/" if console.tls_cert else f"http://{console.listen}/"
    add = "ivr user add NAME --role admin"
    users: list[tuple[str, str, str]] = []
    if config.store.exists():
        try:
            db = sqlite3.connect(f"{config.store.absolute().as_uri()}?mode=ro", uri=True,
                                 timeout=2.0)
            try:
                users = [(str(r[0]), str(r[1]), str(r[2] or "")) for r in db.execute(
                    "SELECT name, role, agent FROM console_users WHERE NOT disabled")]
            finally:
                db.close()
        except sqlite3.Error:
            users = []  # no console table yet: nobody was ever added
    if not any(role == "admin" for _, role, _ in users):
        return Check("console", "warning", f"{where}: no admin account, nobody can manage "
                     "flows or see the audit log", add)
    tied = {agent for _, _, agent in users if agent}
    without = sorted(set(config.agents) - tied)
    if without:
        return Check("console", "warning", f"{where}: {len(users)} account(s); agents without "
                     f"one: {', '.join(without)}",
                     f"ivr user add NAME --role agent --agent {without[0]}")
    return Check("console", "ok", f"{where}: {len(users)} account(s), every agent has one")


# -- edge --------------------------------------------------------------------------------------

def check_edge(config: Config) -> Check:
    """With an ``edge`` section: Kamailio installed and its configuration generated."""
    if config.edge is None:
        return Check("edge", "skip", "no 'edge' section (phones do not register)")
    from ivr.edge.kamailio import find_kamailio, kamailio_config

    if find_kamailio() is None:
        return Check("edge", "fail", "kamailio is not installed",
                     "apt-get install kamailio kamailio-extra-modules")
    try:
        text = kamailio_config(config.edge, str(config.source))
    except Exception as exc:  # noqa: BLE001 - any refusal is the finding
        return Check("edge", "fail", f"the Kamailio configuration does not generate: {exc}",
                     "'ivr-edge' shows the error in place; fix the edge section")
    return Check("edge", "ok", f"kamailio present, configuration generates "
                 f"({len(text.splitlines())} lines, listen {config.edge.listen})")


# -- devices -----------------------------------------------------------------------------------

def check_devices(config: Config) -> list[Check]:
    """Each serial device's port is present (local ports only; network URLs are not dialled)."""
    if not config.devices:
        return [Check("devices", "skip", "no serial devices configured")]
    out: list[Check] = []
    for device in config.devices.values():
        url = device.url
        where = f"{device.name} ({device.kind}, {url})"
        local = url.removeprefix("spy://")
        if "://" in local:
            out.append(Check("devices", "skip", f"{where}: not a local port, not opened"))
        elif not os.path.exists(local):
            out.append(Check("devices", "fail", f"{where}: port missing",
                             "plug the adapter in; 'ivr hw list' shows the ports present "
                             "(prefer /dev/serial/by-id/ names, which survive a replug)"))
        elif not os.access(local, os.R_OK | os.W_OK):
            out.append(Check("devices", "fail", f"{where}: no read/write access",
                             "run as a member of the group 'dialout'"))
        else:
            out.append(Check("devices", "ok", f"{where}: present"))
    return out


# -- SIP stack ---------------------------------------------------------------------------------

def check_sip_stack(info: object | None = None) -> Check:
    """The pjsua2 build in use and its security patches (Debian's CVE fix, then ours)."""
    fix = "rebuild it: make sipstack"
    if info is None:
        info = build_info()
        if info is None:
            return Check("SIP stack", "fail", "the SIP stack's build info is missing (not our "
                         "build)", fix)
    patches: list[str] = list(getattr(info, "PATCHES", ()))
    version = f"pjproject {getattr(info, 'PJ_VERSION', '?')} from {getattr(info, 'SOURCE', '?')}"
    missing = [cve for cve in SECURITY_PATCHES if not any(cve in p for p in patches)]
    ours = [p.split("-", 1)[0] for p in patches if p[:4].isdigit()]
    text = (f"{version}; security: {', '.join(p for p in patches if 'CVE' in p) or 'none'}; "
            f"ours: {', '.join(ours) or 'none'}")
    if missing:
        return Check("SIP stack", "fail", f"{text}; missing {', '.join(missing)}", fix)
    return Check("SIP stack", "ok", text)


__all__ = ["Check", "check_clock", "check_database", "check_devices", "check_disk",
           "check_edge", "check_gateways", "check_ports", "check_prompts", "check_sip_stack",
           "exit_status", "format_checks", "run_checks", "switchboard_pid"]

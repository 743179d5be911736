"""Running the real switchboard and real SIP peers as processes, for end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEER = Path(__file__).resolve().parent / "peers" / "pjsua_peer.py"

T = TypeVar("T")


def missing(what: str, hint: str) -> NoReturn:
    """A test's SIP stack or tool is absent: a failure in CI (the environment variable CI is
    set, as .ci/run does), where everything must be installed; a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI is set: every end-to-end test must run here)")
    pytest.skip(f"{what} ({hint})")


def require_sip_stack() -> None:
    """Skip where the SIP stack is absent, except in CI, where its absence is a failure."""
    try:
        import pjsua2  # noqa: F401
    except ImportError:
        missing("pjsua2 is not installed: the SIP stack build did not run",
                "make venv builds it")


def require_baresip() -> None:
    """Skip where baresip (the independent SIP client) is absent, fail in CI."""
    from tests.support.baresip import BaresipError, find_module_path

    hint = "Debian package baresip-core; scripts/system-deps.sh installs it"
    if shutil.which("baresip") is None:
        missing("baresip is not installed", hint)
    try:
        find_module_path()
    except BaresipError as exc:
        missing(str(exc), hint)


def require_kamailio() -> str:
    """The Kamailio binary; skip where it is absent, fail in CI."""
    from ivr.edge import find_kamailio

    exe = find_kamailio()
    if exe is None:
        missing("kamailio is not installed", "scripts/system-deps.sh installs it")
    return exe


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 10.0,
               interval: float = 0.05, details: Callable[[], str] | None = None) -> T:
    """Poll `check` until it returns something other than None or False; return that.

    Raises AssertionError naming `what` (and `details()`, e.g. a log tail) after `timeout`.
    """
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= end:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"not within {timeout}s: {what}{extra}")
        time.sleep(interval)


def free_udp_port() -> int:
    """A UDP port that is free on 127.0.0.1 now (with its neighbour, for RTCP-style pairs)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 60000:
            return int(port)
    raise RuntimeError("no free UDP port")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_next_rtp = [30000 + (os.getpid() % 50) * 400]


def rtp_block(size: int = 200) -> int:
    """A block of RTP ports for one process, distinct within this test run: blocks go round
    30000-60000 (below the highest RTP port ivr.yaml allows) and skip a busy first port."""
    for _ in range(200):
        start = _next_rtp[0]
        if start + size > 60000:
            start = 30000
        _next_rtp[0] = start + size
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", start))
            except OSError:
                continue
        return start
    raise RuntimeError("no free block of RTP ports")


@dataclass
class Switchboard:
    """An `ivr run` process on loopback with its own config, database and ports."""

    workdir: Path
    sip_port: int
    metrics_port: int
    agents: dict[str, int]
    trunk_sources: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    trunk_media: list[str] = field(default_factory=list)
    """The trunk's media_networks: where its audio may be besides its sources (the gateways
    behind a SIP edge that relays their INVITEs)."""
    ring_timeout: float = 15.0
    flow: Path | None = None
    """The flow file to run (default: flows/demo.yaml)."""
    extra_config: str = ""
    """More ivr.yaml text, appended as is (e.g. extensions and dial_out sections)."""
    trunk_ping: str = ""
    """Address the switchboard pings with SIP OPTIONS to check the gateway (host:port)."""
    passwords: dict[str, str] = field(default_factory=dict)
    """Agents' SIP passwords (agents that register with the edge)."""
    queues: str = ""
    """The queues section's entries as YAML lines (default: support and sales on all agents)."""
    proc: subprocess.Popen[str] | None = None

    @property
    def uri(self) -> str:
        return f"sip:ivr@127.0.0.1:{self.sip_port}"

    @property
    def db(self) -> Path:
        return self.workdir / "calls.db"

    @property
    def log_path(self) -> Path:
        return self.workdir / "ivr.log"

    def agent_uri(self, name: str) -> str:
        return f"sip:{name}@127.0.0.1:{self.agents[name]}"

    def write_config(self) -> Path:
        agents = "\n".join(
            f"  {n}: {{uri: \"{self.agent_uri(n)}\""
            + (f", password: \"{self.passwords[n]}\"" if n in self.passwords else "") + "}"
            for n in self.agents)
        names = list(self.agents)
        default_queues = (
            f"  support: {{agents: [{', '.join(names)}], ring_timeout: {self.ring_timeout}, "
            "retry_delay: 1}\n"
            f"  sales: {{agents: [{', '.join(reversed(names))}], ring_timeout: "
            f"{self.ring_timeout}}}")
        config = f"""
sip:
  listen: 127.0.0.1:{self.sip_port}
  rtp_port: {rtp_block(400)}
  rtp_port_range: 400
trunks:
  test:
    sources: [{", ".join(self.trunk_sources)}]
    lines: 30
{f"    media_networks: [{', '.join(self.trunk_media)}]{chr(10)}" if self.trunk_media else ""}\
{f"    ping: {self.trunk_ping}{chr(10)}    ping_interval: 1" if self.trunk_ping else ""}
agents:
{agents}
queues:
{self.queues or default_queues}
flow: {self.flow or ROOT / "flows" / "demo.yaml"}
store: calls.db
prompts: {{cache: {ROOT / "var" / "test-prompts"}}}
metrics: 127.0.0.1:{self.metrics_port}
log_level: info
{"" if "console:" in self.extra_config else "console: off"}
{self.extra_config}"""
        path = self.workdir / "ivr.yaml"
        path.write_text(config)
        return path

    def start(self, timeout: float = 30.0) -> Switchboard:
        config = self.write_config()
        log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ivr.cli", "run", "--config", str(config)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if "Centralino ready" in self.log_path.read_text():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"ivr did not start:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def records(self) -> list[dict[str, Any]]:
        """Rows of the calls table, oldest first (values as SQLite returns them)."""
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM calls ORDER BY started_at")]

    def queue_events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM queue_events ORDER BY id")]
        for row in rows:
            row["detail"] = json.loads(str(row["detail"]))
        return [r for r in rows if kind is None or r["kind"] == kind]

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and (labels is None or all(
                        sample.labels.get(k) == v for k, v in labels.items())):
                    return float(sample.value)
        return None

    def wait_for_metric(self, name: str, labels: dict[str, str] | None = None,
                        value: float | None = None, at_least: float | None = None,
                        timeout: float = 10.0) -> float:
        """Poll /metrics until the sample `name` (with `labels`) equals `value`, or reaches
        `at_least` (default: at least 1); returns it."""
        if value is None and at_least is None:
            at_least = 1.0
        last: list[float | None] = [None]

        def check() -> float | None:
            got = last[0] = self.metric(name, labels)
            if got is None:
                return None
            ok = got == value if value is not None else got >= (at_least or 0.0)
            return got if ok else None

        want = f"== {value:g}" if value is not None else f">= {at_least:g}"
        return wait_until(check, f"metric {name}{labels or ''} {want}", timeout,
                          details=lambda: f"last value: {last[0]}\n{self.log_tail()}")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log_path.read_text():
                return
            time.sleep(0.1)
        raise AssertionError(f"'{text}' not logged in {timeout}s:\n{self.log_tail()}")


@dataclass
class Peer:
    """A pjsua2 test peer process (tests/peers/pjsua_peer.py) and the JSON events it printed."""

    args: list[str]
    workdir: Path
    name: str
    proc: subprocess.Popen[str] | None = None

    def start(self) -> Peer:
        out = (self.workdir / f"{self.name}.jsonl").open("w")
        self.proc = subprocess.Popen([sys.executable, str(PEER), *self.args], stdout=out,
                                     stderr=subprocess.STDOUT, text=True)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if any(e["event"] == "ready" for e in self.events()):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"peer {self.name} did not start:\n{self.output()}")

    def output(self) -> str:
        return (self.workdir / f"{self.name}.jsonl").read_text()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if kind is None or event["event"] == kind:
                    out.append(event)
        return out

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return int(self.proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"peer {self.name} still running:\n{self.output()}") from None

    def stop(self) -> None:
        """Hang up and end: SIGINT makes the peer send its BYE (or CANCEL) first. A peer
        killed instead leaves the far end waiting, so it gets time even on a loaded machine."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait_event(self, kind: str, count: int = 1,
                   timeout: float = 30.0) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.events(kind)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"peer {self.name}: {count} x '{kind}' not seen:\n{self.output()}")


def peer(workdir: Path, name: str, mode: str, port: int, *extra: str) -> Peer:
    args = [mode, "--user", name, "--port", str(port), "--rtp-port", str(rtp_block()), *extra]
    return Peer(args, workdir, name)

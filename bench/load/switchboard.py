"""The switchboard under test: its bench configuration, its process, its CPU and memory.

The bench flow: a menu whose prompt is a steady 400 Hz tone long enough to outlast a round
(so a hole in it is a hole in the audio, not a pause of the prompt); key 1 sends the caller to
a queue of auto-answering agents (music on hold: the menu tone), key 2 plays the "next" prompt
(a louder 1 kHz tone) and goes back to the menu. The agents play a quieter 600 Hz tone
(``agent.wav``). All are 8 kHz WAV files, as the bridge runs.

The process is ``ivr run --config`` in a fresh folder (its own database), its prompt cache kept
under ``var/bench-load/`` so that a start does not render the fixed notices again. Ready is the
``READY=1`` the switchboard sends to systemd, received on our own ``NOTIFY_SOCKET``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.load.peer import write_tone

ROOT = Path(__file__).resolve().parent.parent.parent
IVR = (sys.executable, "-m", "ivr.cli")
"""The switchboard runs on the bench's own interpreter: run the bench with another virtualenv's
python (one holding another build of the SIP stack, say) and that build is measured."""

MENU_TONE = (400.0, 4000)
"""Menu prompt: frequency (Hz), amplitude (of 32767)."""
NEXT_TONE = (1000.0, 20000)
"""The prompt after key 2: louder, so its first frame stands out from the menu's."""
NEXT_SECONDS = 0.6
AGENT_TONE = (600.0, 1000)
"""What the agents play: quieter than the menu and the music on hold (the menu tone)."""

FLOW = """\
flow: loadbench
description: The load bench's menu (bench/load/switchboard.py).
languages: [en]
start: menu
nodes:
  menu:
    type: menu
    prompt: {file: menu.wav}
    options: {"1": agent, "2": next}
    timeout: 120
    max_timeouts: 5
    max_invalid: 20
  next:
    type: play
    prompt: {file: next.wav}
    next: menu
  agent:
    type: queue
    queue: bench
"""


def _ticks_per_s() -> int:
    return os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the command: state is field 3, utime 14 and stime 15 (1-based, man 5 proc)
    return (int(fields[11]) + int(fields[12])) / _ticks_per_s()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Switchboard:
    """One ``ivr run`` on loopback for the bench."""

    workdir: Path
    sip_port: int
    rtp_port: int
    metrics_port: int
    agent_port: int
    agents: int
    menu_seconds: float = 120.0
    max_calls: int = 254
    """Two below the SIP stack's 256, so that our own admission refuses a leg too many (a
    failed call in the figures) before pjsua does."""
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready_at: float = 0.0
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "ivr.log"

    @property
    def uri(self) -> str:
        return f"sip:ivr@127.0.0.1:{self.sip_port}"

    def agent_names(self) -> list[str]:
        return [f"agent{i + 1}" for i in range(self.agents)]

    def write(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_tone(self.workdir / "menu.wav", *MENU_TONE, self.menu_seconds)
        write_tone(self.workdir / "next.wav", *NEXT_TONE, NEXT_SECONDS)
        write_tone(self.workdir / "moh.wav", *MENU_TONE, 60.0)
        write_tone(self.workdir / "agent.wav", *AGENT_TONE, 10.0)
        (self.workdir / "flow.yaml").write_text(FLOW)
        names = self.agent_names()
        agents = "\n".join(f"  {n}: {{uri: \"sip:{n}@127.0.0.1:{self.agent_port}\", "
                           "max_no_answer: 0}" for n in names)
        cache = ROOT / "var" / "bench-load" / "prompts"
        config = f"""\
sip:
  listen: 127.0.0.1:{self.sip_port}
  rtp_port: {self.rtp_port}
  rtp_port_range: 2000
  max_calls: {self.max_calls}
trunks:
  bench:
    sources: [127.0.0.1]
    lines: 250
agents:
{agents}
queues:
  bench: {{agents: [{", ".join(names)}], ring_timeout: 10, wrap_up: 0}}
flow: flow.yaml
store: calls.db
recordings: recordings
music_on_hold: moh.wav
prompts: {{cache: {cache}}}
metrics: 127.0.0.1:{self.metrics_port}
console: off
log_level: info
"""
        path = self.workdir / "ivr.yaml"
        path.write_text(config)
        return path

    def start(self, timeout: float = 60.0) -> float:
        """Start the switchboard and wait for its READY=1; returns the seconds it took."""
        config = self.write()
        name = f"centralino-bench-{os.getpid()}-{self.sip_port}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind("\0" + name)
            env = dict(os.environ, NOTIFY_SOCKET="@" + name, PYTHONUNBUFFERED="1")
            env.pop("WATCHDOG_USEC", None)
            with self.log_path.open("wb") as log:
                self.started_at = time.monotonic()
                self.proc = subprocess.Popen(
                    [*IVR, "run", "--config", str(config)],
                    cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True)
            deadline = self.started_at + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"the switchboard was not ready in {timeout:.0f} s; "
                                       f"its log:\n{self.log_tail()}")
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the switchboard exited ({self.proc.returncode}); "
                                       f"its log:\n{self.log_tail()}")
                notify.settimeout(min(left, 0.5))
                try:
                    message = notify.recv(4096).decode(errors="replace")
                except TimeoutError:
                    continue
                if "READY=1" in message.split("\n"):
                    self.ready_at = time.monotonic()
                    return self.ready_at - self.started_at

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> float:
        return rss_mib(self.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGINT (hang up at once, close the store; SIGTERM would drain the calls first),
        then SIGKILL after *timeout*."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

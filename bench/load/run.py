"""The load bench: rounds of N real calls into a real switchboard, a table and a JSON file.

    python -m bench.load [--calls 10,30,100,250] [--label before] [--short]

Each round starts a fresh switchboard (:mod:`bench.load.switchboard`), one agents process and
up to four caller processes (so that the callers' packets are not all sent in one burst), then:

1. **ramp**: the N calls are dialled ``--rate`` per second, round robin over the processes;
2. **steady**: after a settling second, every call hears the looping menu prompt; the
   switchboard's CPU (% of one core, utime + stime from /proc over ``--window`` seconds) and
   its RSS at load are read here, with nothing but audio going on;
3. **keys**: every call presses 2 once (the next prompt, then back to the menu), spread over a
   few seconds;
4. **churn**: some calls (20 from N = 60 up) press 1, one every 0.5 s: an agent is rung,
   answers with a steady tone and hangs up after a second (or the caller 1.5 s after its
   key), the caller dials again 0.3 s later, so calls end and start while all the others keep
   listening to the menu.

Figures per round: calls up and failed; INVITE -> 200 OK; key 1 (its first RFC 4733 packet) ->
the agent's INVITE (the k-th key 1 is matched with the k-th INVITE; keys are 0.5 s apart); key
2 -> the first frame of the next prompt the caller hears; the longest run of silent frames in
the menu prompt a caller hears (and the 99th percentile of each call's longest, and the longest
that began during the churn); CPU; RSS idle (ready, no call) and at load; start -> ready.
And the peers' own health: their longest stall (a loop turn in which they could not read their
sockets) and how late their frame clocks ticked, so that a gap or a delay the peers made is
not blamed on the switchboard.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.load.switchboard import IVR, ROOT, Switchboard

SILENCE_LEVEL = 1
"""A frame at or below this level (pjsua2's 0-100 scale) is silence; the menu tone is 26."""
NEXT_LEVEL = 34
"""A frame at or above this level is the next prompt (40); the menu stays below."""
AGENT_LEVEL = 20
"""A frame at or below this level (and above silence) is the agent's tone (15); music on
hold, the menu tone, is above."""

PROCESSES = 4
KEY_GAP_1 = 0.5
"""Seconds between two key-1 presses (and so between two agent INVITEs)."""
HOLD_AFTER_1 = 1.5
"""A caller sent to an agent hangs up this long after its key (if the agent has not)."""
REDIAL_GAP = 0.3
AGENTS = 8
TALK_S = 1.0
"""The agent hangs up this long after answering: with a key 1 every 0.5 s, two or three agent
legs at once. The SIP stack takes 256 calls per process (PJSUA_MAX_CALLS): 250 callers leave
room for 6 agent legs and a caller's new call arriving before its last one is gone."""


# -- ports -------------------------------------------------------------------------------------
def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rtp_block(size: int, taken: list[int]) -> int:
    """A block of *size* free UDP ports in 10000-30000, below the kernel's ephemeral range
    (where the tests' free ports come from), away from the blocks in *taken*."""
    start = 10000 + (os.getpid() % 20) * 1000
    for _ in range(40):
        if start + size > 30000:
            start = 10000
        if not any(abs(start - other) < size for other in taken):
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("127.0.0.1", start))
            except OSError:
                pass
            else:
                taken.append(start)
                return start
        start += size
    raise RuntimeError("no free block of UDP ports for RTP")


# -- peer processes ----------------------------------------------------------------------------
@dataclass
class PeerProcess:
    """A caller or the agents process: its plan file, its JSON lines, its result."""

    name: str
    module: str
    plan: dict[str, Any]
    workdir: Path
    proc: subprocess.Popen[str] | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    latest: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        path = self.workdir / f"{self.name}.json"
        path.write_text(json.dumps(self.plan))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, str(path)], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(target=self._errors, args=(self.proc.stderr,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "ready":
                self.ready.set()
            elif kind == "progress":
                self.latest = event
            elif kind == "result":
                self.result = event
            elif kind == "error":
                self.errors.append(event.get("message", ""))

    def _errors(self, stream: IO[str]) -> None:
        for line in stream:
            # pjsip's own log lines start with a time; keep Python's complaints
            if line.strip() and not line[:2].isdigit():
                self.errors.append(line.rstrip())

    def go(self, t0: float) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{t0!r}\n")
        self.proc.stdin.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the plan of a round -----------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    rate: float = 50.0
    """Calls dialled per second during the ramp."""
    settle: float = 1.5
    window: float = 5.0
    """Seconds of the CPU window."""
    keys_per_s: float = 50.0
    tail: float = 3.0

    def schedule(self, n: int) -> dict[str, float]:
        ramp = n / self.rate
        steady = ramp + self.settle
        keys = steady + self.window
        key_span = max(2.0, n / self.keys_per_s)
        churn = keys + key_span + 1.5
        ones = churn_calls(n)
        end = churn + ones * KEY_GAP_1 + HOLD_AFTER_1 + REDIAL_GAP + self.tail
        return {"ramp": ramp, "steady": steady, "keys": keys, "key_span": key_span,
                "churn": churn, "end": end}


def churn_calls(n: int) -> int:
    return min(20, max(2, n // 3))


Share = list[dict[str, Any]]


def plan_round(n: int, procs: int, timing: Timing) -> tuple[list[Share], dict[str, float]]:
    s = timing.schedule(n)
    shares: list[Share] = [[] for _ in range(procs)]
    ones = churn_calls(n)
    step = n / ones
    churners = {int(j * step): j for j in range(ones)}
    for i in range(n):
        keys: list[tuple[float, str]] = [(s["keys"] + s["key_span"] * i / n, "2")]
        spec: dict[str, Any] = {"id": f"{i}", "at": i / timing.rate, "keys": keys}
        if i in churners:
            keys.append((s["churn"] + churners[i] * KEY_GAP_1, "1"))
            spec.update(redial=True, redial_gap=REDIAL_GAP, hold_after_1=HOLD_AFTER_1)
        shares[i % procs].append(spec)
    return shares, s


# -- figures -----------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def figures(n: int, results: list[dict[str, Any]], agents: dict[str, Any],
            s: dict[str, float], t0: float) -> dict[str, Any]:
    calls = [c for r in results for c in r["calls"]]
    first = [c for c in calls if not c["id"].endswith("r")]
    up = [c for c in calls if c["confirmed"] is not None]
    failed = [c for c in calls if c["confirmed"] is None]
    dropped = [c for c in up if c["ended_by"] == "remote"
               and not any(k["digit"] == "1" for k in c["keys"])]
    setup = [c["confirmed"] - c["invite"] for c in up if c["invite"] is not None]
    key1 = sorted(k["first_packet"] for c in calls for k in c["keys"]
                  if k["digit"] == "1" and k["first_packet"] is not None)
    invites = sorted(row["invite"] for row in agents.get("invites", []))
    to_agent = [inv - key for key, inv in zip(key1, invites, strict=False)]
    nexts = [x for c in calls for x in c["next_latency"] if x is not None]
    missing_next = sum(1 for c in calls for x in c["next_latency"] if x is None)
    churn_from = t0 + s["churn"]
    stalls = [st[1] for r in results for st in r["stalls"]]
    return {
        "calls": n, "dialled": len(calls), "up": len(up), "up_first": sum(
            1 for c in first if c["confirmed"] is not None),
        "failed": len(failed), "dropped": len(dropped),
        "invite_200_ms": {"n": len(setup), "p50": ms(percentile(setup, 50)),
                          "p99": ms(percentile(setup, 99)), "max": ms(max(setup, default=None))},
        "key_agent_ms": {"n": len(to_agent), "keys": len(key1), "invites": len(invites),
                         "p50": ms(percentile(to_agent, 50)), "p95": ms(percentile(to_agent, 95)),
                         "p99": ms(percentile(to_agent, 99)),
                         "max": ms(max(to_agent, default=None)),
                         "each": [ms(x) for x in to_agent]},
        "key_next_ms": {"n": len(nexts), "missing": missing_next,
                        "p50": ms(percentile(nexts, 50)), "p99": ms(percentile(nexts, 99)),
                        "max": ms(max(nexts, default=None))},
        "gap_ms": gap_figures(calls, "menu", churn_from),
        "agent_gap_ms": gap_figures(calls, "agent", churn_from),
        "peers": {"longest_stall_ms": ms(max(stalls, default=0.0)),
                  "stalls_over_20ms": sum(1 for x in stalls if x > 0.020),
                  "ticks_missed": sum(r["ticks_missed"] for r in results),
                  "longest_tick_ms": ms(max((r["longest_tick"][0] for r in results),
                                            default=0.0)),
                  "longest_tick_at_s": max(((round(r["longest_tick"][1] - t0, 2),
                                             r["longest_tick"][0]) for r in results),
                                           key=lambda x: x[1], default=(0.0, 0.0))[0],
                  "keys_timed_a_tick_later": sum(r["ambiguous_keys"] for r in results),
                  "callers_cpu_percent": round(100 * sum(r["cpu_s"] for r in results)
                                               / max(1.0, s["end"]), 1)},
    }


def gap_figures(calls: list[dict[str, Any]], where: str, churn_from: float) -> dict[str, Any]:
    """Gaps heard in the menu prompt or in the agent's audio: the longest, the 99th percentile
    of each call's longest, the longest that began during the churn."""
    longest = [c["max_gap"][where] for c in calls if c["listened"][where] > 0]
    churn = [g[1] for c in calls for g in c["gaps"] if g[2] == where and g[0] >= churn_from]
    return {"calls": len(longest), "longest": ms(max(longest, default=None)),
            "p99_of_call_longest": ms(percentile(longest, 99)),
            "longest_in_churn": ms(max(churn, default=0.0)) if longest else None,
            "calls_over_60ms": sum(1 for g in longest if g > 0.060 + 1e-6),
            "listened_s": round(sum(c["listened"][where] for c in calls), 1)}


# -- one round ---------------------------------------------------------------------------------
def progress(text: str) -> None:
    print(text, flush=True)


def run_round(n: int, timing: Timing, workdir: Path) -> dict[str, Any]:  # noqa: C901 - a script
    taken: list[int] = []
    procs = min(PROCESSES, n)
    shares, s = plan_round(n, procs, timing)
    agent_port = free_port()
    board = Switchboard(workdir / "switchboard", free_port(), rtp_block(2000, taken),
                        free_port(socket.SOCK_STREAM), agent_port, AGENTS)
    peers: list[PeerProcess] = []
    try:
        start_s = board.start()
        progress(f"  N={n}: switchboard ready in {start_s:.2f} s (pid {board.pid})")
        agents = PeerProcess("agents", "bench.load.agents",
                             {"sip_port": agent_port, "rtp_port": rtp_block(400, taken),
                              "talk": TALK_S, "end": s["end"] + 1.0,
                              "tone": str(board.workdir / "agent.wav")}, workdir)
        peers.append(agents)
        for k, share in enumerate(shares):
            plan = {"name": f"caller{k}", "sip_port": free_port(),
                    "rtp_port": rtp_block(1000, taken), "target": board.uri,
                    "workdir": str(workdir), "calls": share, "end": s["end"],
                    "silence_level": SILENCE_LEVEL, "next_level": NEXT_LEVEL,
                    "agent_level": AGENT_LEVEL}
            peers.append(PeerProcess(plan["name"], "bench.load.caller", plan, workdir))
        for peer in peers:
            peer.start()
        for peer in peers:
            if not peer.ready.wait(30):
                raise RuntimeError(f"{peer.name} did not start: {' | '.join(peer.errors[-5:])}")
        time.sleep(0.5)
        rss_idle = board.rss()
        t0 = time.monotonic() + 0.2
        for peer in peers:
            peer.go(t0)
        callers = peers[1:]

        def wait_until(offset: float, what: str) -> None:
            while (left := t0 + offset - time.monotonic()) > 0:
                time.sleep(min(left, 2.0))
                up = sum(p.latest.get("up", 0) for p in callers)
                dead = [p.name for p in peers if not p.alive()]
                if dead or not board.alive():
                    raise RuntimeError(f"stopped early: {dead or 'switchboard'}; "
                                       + " | ".join(e for p in peers for e in p.errors[-3:]))
                if left > 1.0:
                    progress(f"  N={n}: {what}, {up} calls up")

        wait_until(s["steady"], "ramp")
        cpu0, w0 = board.cpu(), time.monotonic()
        wait_until(s["keys"], "steady (CPU window)")
        cpu1, w1 = board.cpu(), time.monotonic()
        rss_load = board.rss()
        wait_until(s["churn"], "keys")
        wait_until(s["end"], "churn")
        deadline = time.monotonic() + 30
        for peer in peers:
            peer.proc and peer.proc.wait(max(0.1, deadline - time.monotonic()))
        time.sleep(0.2)  # the reader threads take the last lines
        missing = [p.name for p in peers if p.result is None]
        if missing:
            raise RuntimeError(f"no result from {missing}: "
                               + " | ".join(e for p in peers for e in p.errors[-3:]))
        row = figures(n, [p.result for p in callers if p.result],
                      agents.result or {}, s, t0)
        row.update(cpu_percent=round(100 * (cpu1 - cpu0) / (w1 - w0), 2),
                   cpu_window_s=round(w1 - w0, 2), rss_idle_mib=round(rss_idle, 1),
                   rss_load_mib=round(rss_load, 1), start_ready_s=round(start_s, 3),
                   processes=procs, schedule_s={k: round(v, 2) for k, v in s.items()})
        return row
    finally:
        for peer in peers:
            peer.stop()
        code = board.stop()
        if code not in (0, None):
            kept = ROOT / "var" / "bench-load" / f"ivr-n{n}-exit{code}.log"
            kept.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                kept.write_bytes(board.log_path.read_bytes())
            progress(f"  N={n}: the switchboard exited with {code} (log kept in "
                     f"{kept.relative_to(ROOT)}); its end:\n{board.log_tail()}")


# -- report ------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(),
            "kernel": platform.release(), "python": platform.python_version()}


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = subprocess.run([*IVR, "--version"], text=True,
                              capture_output=True, timeout=60, check=False).stdout
        out["ivr"] = text.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        out["ivr"] = f"unknown ({exc})"
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True, timeout=10,
                               check=False).stdout.strip()
        out["git"] = rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError) as exc:
        out["git"] = f"unknown ({exc})"
    return out


COLUMNS = [
    ("calls up/failed", lambda r: f"{r['up_first']}/{r['failed']}"),
    ("INV-200 p50/p99", lambda r: f"{_f(r['invite_200_ms']['p50'])}/"
                                  f"{_f(r['invite_200_ms']['p99'])}"),
    ("key-agent p50/p95/p99", lambda r: "/".join(_f(r["key_agent_ms"][p])
                                                 for p in ("p50", "p95", "p99"))),
    ("key-next p50/p99", lambda r: f"{_f(r['key_next_ms']['p50'])}/"
                                   f"{_f(r['key_next_ms']['p99'])}"),
    ("gap max/p99/churn", lambda r: "/".join(_f(r["gap_ms"][k]) for k in (
        "longest", "p99_of_call_longest", "longest_in_churn"))),
    ("agent gap max/p99", lambda r: "/".join(_f(r["agent_gap_ms"][k]) for k in (
        "longest", "p99_of_call_longest"))),
    ("CPU %", lambda r: f"{r['cpu_percent']:.1f}"),
    ("RSS idle/load", lambda r: f"{r['rss_idle_mib']:.0f}/{r['rss_load_mib']:.0f}"),
    ("ready s", lambda r: f"{r['start_ready_s']:.2f}"),
    ("peer stall", lambda r: _f(r["peers"]["longest_stall_ms"])),
]


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = ["N"] + [c[0] for c in COLUMNS]
    body = [[str(r["calls"])] + [c[1](r) for c in COLUMNS] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.rjust(w) for x, w in zip(line, widths, strict=True))
             for line in [head, *body]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", default="10,30,100,250",
                        help="numbers of calls, one round each (default 10,30,100,250)")
    parser.add_argument("--label", default="run", help="name in the JSON file (before, after)")
    parser.add_argument("--short", action="store_true",
                        help="a quick look: 2 s CPU window, no JSON unless --out")
    parser.add_argument("--window", type=float, help="seconds of the CPU window (default 5)")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/DATE-LABEL"
                                                 ".json; none with --short)")
    args = parser.parse_args(argv)
    try:
        counts = [int(x) for x in args.calls.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--calls takes numbers separated by commas, not {args.calls!r}")
    if any(c < 1 or c > 250 for c in counts):
        parser.error("each number of calls must be 1 to 250 (the SIP stack's 256 calls per "
                     "process take the callers and the agents' legs)")
    # Ctrl-C and SIGTERM end the bench through its clean-up (every process it started is
    # stopped), even when it was started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    check_stack()
    timing = Timing(window=args.window or (2.0 if args.short else 5.0))
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="centralino-bench-load-") as tmp:
            warm_prompt_cache(Path(tmp))
            for n in counts:
                progress(f"round N={n}: {timing.schedule(n)['end']:.0f} s of calls")
                rows.append(run_round(n, timing, Path(tmp) / f"n{n}"))
    except KeyboardInterrupt:
        progress("interrupted: every process of the bench stopped")
        return 130
    except RuntimeError as exc:
        progress(f"the load bench failed: {exc}")
        return 1
    print()
    print(table(rows))
    report = {"label": args.label, "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": machine(), **versions(), "timing": timing.__dict__,
              "elapsed_s": round(time.monotonic() - started, 1), "rounds": rows}
    out = args.out
    if out is None and not args.short:
        out = ROOT / "bench" / "results" / f"{datetime.date.today()}-{args.label}.json"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwritten {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def check_stack() -> None:
    """A clear message when the SIP stack is not installed, before any process starts."""
    probe = subprocess.run([sys.executable, "-c", "import pjsua2"], capture_output=True,
                           text=True, check=False)
    if probe.returncode != 0:
        raise SystemExit("the load bench needs the pjsua2 SIP stack in this virtualenv: run "
                         "`make sipstack` (it builds once, then installs from its cache)")


def warm_prompt_cache(tmp: Path) -> None:
    """Start a switchboard once if the bench's prompt cache is new: the first start renders
    the fixed notices with espeak-ng, which is not what start -> ready should measure."""
    if (ROOT / "var" / "bench-load" / "prompts").is_dir():
        return
    progress("first run: filling the bench's prompt cache (var/bench-load/prompts)")
    board = Switchboard(tmp / "warm", free_port(), rtp_block(2000, []),
                        free_port(socket.SOCK_STREAM), free_port(), 1)
    try:
        board.start(timeout=300)
    finally:
        board.stop()


if __name__ == "__main__":
    sys.exit(main())

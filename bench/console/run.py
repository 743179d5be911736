"""The console bench: what open pages cost the switchboard, and how late events reach them.

    python -m bench.console [--calls 100] [--pairs 1] [--label run] [--short]

The issue's figure: "50 open wallboards and 20 agent pages cost the switchboard under 5% of a
core at 100 calls, and an event reaches the pages in under 300 ms p95".

Each *pair* is two rounds of the load bench's plan (:mod:`bench.load.run`: N pjsua2 calls
ramped up, a steady window of menu audio, every caller keys 2, then the churn: callers press
1 every 0.5 s and an agent answers, talks a second and hangs up) on a fresh switchboard
(``ivr run``) with its console on, 20 agents and their 20 console accounts, and 5 supervisor
accounts:

- **A**: no page open;
- **B**: 70 pages open before the calls start (:mod:`bench.console.clients`, one process):
  50 ``/wallboard/live`` streams (10 sessions of each supervisor) and 20 ``/agent/live``
  streams (one per agent account), each signed in through the login form.

The pages' cost is the switchboard's CPU (utime + stime of the whole process, /proc) in B less
the same in A, over the same phases of the same plan, as % of one core: the steady window (the
view still changes every second: waits grow), the active part (keys and churn) and both.

Event latency: the agents process stamps each answer (``time.monotonic()``, the machine's one
clock, as it sends 200 OK); the clients stamp each Server-Sent Events message as its line is
read. For every answer, on every wallboard and on that agent's own page: the first message at
or after the stamp that shows the agent ``on_call`` (a message shows an agent's state where an
object carries its ``state`` and its ``name``/``agent``, or is keyed by the agent's name). Its
delay includes the loop's view throttle (at most one view per 50 ms), the derive, the encode
and the write; answers with no such message within :data:`MISSED_AFTER_S` are counted as
missed. p50/p95/p99 over all of them.

The machine (CPU model, cores, load average before each round) is printed and saved with the
figures in ``bench/results/DATE-console-LABEL.json`` (none with ``--short``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load.run import (
    AGENT_LEVEL,
    NEXT_LEVEL,
    PROCESSES,
    SILENCE_LEVEL,
    PeerProcess,
    Timing,
    check_stack,
    free_port,
    machine,
    ms,
    percentile,
    plan_round,
    rtp_block,
    versions,
    warm_prompt_cache,
)
from bench.load.switchboard import ROOT, Switchboard

AGENTS = 20
WALLBOARDS = 50
SUPERVISORS = 5
PASSWORD = "bench console password"
TALK_S = 1.0
MISSED_AFTER_S = 5.0
AGENT_STATES = ("logged_out", "available", "ringing", "on_call", "wrap_up", "paused")
BUDGET_CPU_PERCENT = 5.0
BUDGET_P95_MS = 300.0


def progress(text: str) -> None:
    print(text, flush=True)


@dataclass
class ConsoleBoard(Switchboard):
    """The load bench's switchboard with its console on a free port and console accounts:
    ``agent1``..``agentN`` (role agent, each tied to its agent) and ``sup1``..``supK``."""

    console_port: int = 0
    supervisors: int = SUPERVISORS

    def write(self) -> Path:
        path = super().write()
        lines = [x for x in path.read_text().splitlines() if not x.startswith("console:")]
        lines.append(f"console: 127.0.0.1:{self.console_port}")
        path.write_text("\n".join(lines) + "\n")
        from ivr.console.accounts import Accounts

        store = self.workdir / "calls.db"
        accounts = Accounts(store)
        have = {u.name for u in accounts.users()}
        for name in self.agent_names():
            if name not in have:
                accounts.add_user(name, PASSWORD, "agent", agent=name)
        for i in range(self.supervisors):
            if f"sup{i + 1}" not in have:
                accounts.add_user(f"sup{i + 1}", PASSWORD, "supervisor")
        return path

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"


# -- latency -----------------------------------------------------------------------------------
def agent_states(data: Any, out: dict[str, str] | None = None) -> dict[str, str]:
    """Agent name -> state, wherever a page's message carries one."""
    if out is None:
        out = {}
    if isinstance(data, dict):
        state = data.get("state")
        name = data.get("name") or data.get("agent")
        if state in AGENT_STATES and isinstance(name, str):
            out[name] = state
        for key, value in data.items():
            if isinstance(value, dict) and value.get("state") in AGENT_STATES \
                    and not isinstance(value.get("name") or value.get("agent"), str):
                out[str(key)] = value["state"]
            agent_states(value, out)
    elif isinstance(data, list):
        for item in data:
            agent_states(item, out)
    return out


_USER = re.compile(r"sip:([^@;>]+)@")


def answers(agents_result: dict[str, Any]) -> list[tuple[str, float]]:
    """(agent, when it answered) from the agents process's rows."""
    out = []
    for row in agents_result.get("invites", []):
        found = _USER.search(str(row.get("to", "")))
        if found and "confirmed" in row:
            out.append((found.group(1), float(row["invite"])))
    return sorted(out, key=lambda x: x[1])


def latencies(clients: dict[str, Any], answered: list[tuple[str, float]],
              agent_of: dict[str, str]) -> dict[str, Any]:
    states = [agent_states(json.loads(text)) for text in clients["messages"]]
    by_kind: dict[str, list[float]] = {"wallboard": [], "agent": []}
    missed = {"wallboard": 0, "agent": 0}
    for client in clients["clients"]:
        kind = client["kind"]
        stamps = client["stamps"]
        mine = agent_of.get(client["user"]) if kind == "agent" else None
        for agent, at in answered:
            if mine is not None and agent != mine:
                continue
            seen = next((t for t, i in stamps if t >= at and states[i].get(agent) == "on_call"),
                        None)
            if seen is None or seen - at > MISSED_AFTER_S:
                missed[kind] += 1
            else:
                by_kind[kind].append(seen - at)
    every = by_kind["wallboard"] + by_kind["agent"]

    def summary(values: list[float], lost: int) -> dict[str, Any]:
        return {"n": len(values), "missed": lost, "p50": ms(percentile(values, 50)),
                "p95": ms(percentile(values, 95)), "p99": ms(percentile(values, 99)),
                "max": ms(max(values, default=None))}

    return {"all": summary(every, missed["wallboard"] + missed["agent"]),
            "wallboard": summary(by_kind["wallboard"], missed["wallboard"]),
            "agent": summary(by_kind["agent"], missed["agent"]),
            "messages": {"distinct": len(clients["messages"]),
                         "received": sum(len(c["stamps"]) for c in clients["clients"]),
                         "bytes": sum(c["bytes"] for c in clients["clients"])}}


# -- one round ---------------------------------------------------------------------------------
def run_round(n: int, timing: Timing, workdir: Path, pages: bool) -> dict[str, Any]:  # noqa: C901
    taken: list[int] = []
    procs = min(PROCESSES, n)
    shares, s = plan_round(n, procs, timing)
    agent_port = free_port()
    board = ConsoleBoard(workdir / "switchboard", free_port(), rtp_block(2000, taken),
                         free_port(socket.SOCK_STREAM), agent_port, AGENTS,
                         console_port=free_port(socket.SOCK_STREAM))
    peers: list[PeerProcess] = []
    label = "B (70 pages)" if pages else "A (no page)"
    load_before = os.getloadavg()
    try:
        start_s = board.start()
        progress(f"  N={n} {label}: switchboard ready in {start_s:.2f} s (pid {board.pid})")
        clients: PeerProcess | None = None
        if pages:
            sups = [f"sup{i % SUPERVISORS + 1}" for i in range(WALLBOARDS)]
            clients = PeerProcess("clients", "bench.console.clients", {
                "url": board.console_url, "end": s["end"],
                "wallboards": [(u, PASSWORD) for u in sups],
                "agents": [(a, PASSWORD) for a in board.agent_names()],
                "out": str(workdir / "clients-result.json")}, workdir)
            peers.append(clients)
            clients.start()
            if not clients.ready.wait(180):
                raise RuntimeError("the pages did not connect: "
                                   + " | ".join(clients.errors[-5:]))
            progress(f"  N={n} {label}: {WALLBOARDS} wallboards and {AGENTS} agent pages "
                     "signed in, streams open")
        agents = PeerProcess("agents", "bench.load.agents",
                             {"sip_port": agent_port, "rtp_port": rtp_block(400, taken),
                              "talk": TALK_S, "end": s["end"] + 1.0,
                              "tone": str(board.workdir / "agent.wav")}, workdir)
        callers = []
        for k, share in enumerate(shares):
            plan = {"name": f"caller{k}", "sip_port": free_port(),
                    "rtp_port": rtp_block(1000, taken), "target": board.uri,
                    "workdir": str(workdir), "calls": share, "end": s["end"],
                    "silence_level": SILENCE_LEVEL, "next_level": NEXT_LEVEL,
                    "agent_level": AGENT_LEVEL}
            callers.append(PeerProcess(plan["name"], "bench.load.caller", plan, workdir))
        for peer in (agents, *callers):
            peers.append(peer)
            peer.start()
        for peer in (agents, *callers):
            if not peer.ready.wait(30):
                raise RuntimeError(f"{peer.name} did not start: {' | '.join(peer.errors[-5:])}")
        time.sleep(0.5)  # the peers' first poll turns, as the load bench does
        t0 = time.monotonic() + 0.2
        for peer in peers:
            peer.go(t0)

        def until(offset: float) -> None:
            while (left := t0 + offset - time.monotonic()) > 0:
                time.sleep(min(left, 1.0))
                dead = [p.name for p in peers if not p.alive() and p.result is None]
                if dead or not board.alive():
                    raise RuntimeError(f"stopped early: {dead or 'switchboard'}; "
                                       + " | ".join(e for p in peers for e in p.errors[-3:]))

        active_end = s["end"] - timing.tail
        until(s["steady"])
        cpu = {"steady": board.cpu()}
        until(s["keys"])
        cpu["keys"] = board.cpu()
        until(active_end)
        cpu["end"] = board.cpu()
        rss = board.rss()
        until(s["end"])
        deadline = time.monotonic() + 60
        for peer in peers:
            if peer.proc is not None:
                peer.proc.wait(max(0.1, deadline - time.monotonic()))
        time.sleep(0.2)  # the reader threads take the last lines
        missing = [p.name for p in peers if p.result is None]
        if missing:
            raise RuntimeError(f"no result from {missing}: "
                               + " | ".join(e for p in peers for e in p.errors[-3:]))
        windows = {"steady": (s["steady"], s["keys"]), "active": (s["keys"], active_end),
                   "all": (s["steady"], active_end)}
        marks = {"steady": ("steady", "keys"), "active": ("keys", "end"),
                 "all": ("steady", "end")}
        row: dict[str, Any] = {
            "calls": n, "pages": pages, "start_ready_s": round(start_s, 3),
            "load_before": [round(x, 2) for x in load_before],
            "cpu_percent": {k: round(100 * (cpu[b] - cpu[a]) / (windows[k][1] - windows[k][0]),
                                     2) for k, (a, b) in marks.items()},
            "cpu_window_s": {k: round(b - a, 2) for k, (a, b) in windows.items()},
            "rss_mib": round(rss, 1)}
        calls = [c for p in callers if p.result for c in p.result["calls"]]
        row["up"] = sum(1 for c in calls if c["confirmed"] is not None and
                        not c["id"].endswith("r"))
        row["failed"] = sum(1 for c in calls if c["confirmed"] is None)
        answered = answers(agents.result or {})
        row["answers"] = len(answered)
        if clients is not None and clients.result is not None:
            data = json.loads(Path(clients.result["path"]).read_text())
            row["latency_ms"] = latencies(data, answered,
                                          {a: a for a in board.agent_names()})
            row["clients_errors"] = [c["error"] for c in data["clients"] if c["error"]]
            # the pages' process itself: a starved client would read its messages late
            row["clients_cpu_s"] = round(float(clients.result.get("cpu_s", 0.0)), 2)
        return row
    finally:
        for peer in peers:
            peer.stop()
        board.stop()


# -- report ------------------------------------------------------------------------------------
def pair_figures(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"cost_percent_of_core": {k: round(b["cpu_percent"][k] - a["cpu_percent"][k], 2)
                                     for k in a["cpu_percent"]},
            "latency_ms": b.get("latency_ms")}


def report_lines(pairs: list[dict[str, Any]], n: int) -> list[str]:
    lines = []
    for i, pair in enumerate(pairs, 1):
        a, b, f = pair["A"], pair["B"], pair["figures"]
        lines.append(f"pair {i}: switchboard CPU (% of a core) steady/active/all: "
                     f"A {a['cpu_percent']['steady']:.1f}/{a['cpu_percent']['active']:.1f}/"
                     f"{a['cpu_percent']['all']:.1f}  B {b['cpu_percent']['steady']:.1f}/"
                     f"{b['cpu_percent']['active']:.1f}/{b['cpu_percent']['all']:.1f}  "
                     f"-> pages cost {f['cost_percent_of_core']['steady']:+.1f}/"
                     f"{f['cost_percent_of_core']['active']:+.1f}/"
                     f"{f['cost_percent_of_core']['all']:+.1f}")
        lat = f["latency_ms"] or {}
        for kind in ("wallboard", "agent", "all"):
            x = lat.get(kind)
            if x:
                lines.append(f"        event -> {kind:9} page: n={x['n']} missed={x['missed']} "
                             f"p50 {x['p50']} ms, p95 {x['p95']} ms, p99 {x['p99']} ms, "
                             f"max {x['max']} ms")
        msgs = lat.get("messages")
        if msgs:
            lines.append(f"        messages: {msgs['received']} received ({msgs['distinct']} "
                         f"distinct), {msgs['bytes'] / 1e6:.1f} MB; answers {b['answers']}; "
                         f"calls up A {a['up']}/{n}, B {b['up']}/{n}; the pages' process "
                         f"used {b.get('clients_cpu_s', 0.0):.1f} s of CPU")
    return lines


def verdict(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    costs = [p["figures"]["cost_percent_of_core"]["all"] for p in pairs]
    p95s = [p["figures"]["latency_ms"]["all"]["p95"] for p in pairs
            if p["figures"]["latency_ms"] and p["figures"]["latency_ms"]["all"]["p95"]
            is not None]
    cost = sum(costs) / len(costs) if costs else None
    worst = max(p95s, default=None)
    return {"cost_percent_of_core": None if cost is None else round(cost, 2),
            "cost_ok": cost is not None and cost < BUDGET_CPU_PERCENT,
            "p95_ms": worst, "p95_ok": worst is not None and worst < BUDGET_P95_MS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100,
                        help="calls at once (default 100, 1 to 250)")
    parser.add_argument("--pairs", type=int, default=1,
                        help="pairs of rounds without and with the pages (default 1)")
    parser.add_argument("--label", default="run", help="name in the JSON file")
    parser.add_argument("--short", action="store_true",
                        help="a quick look: 2 s steady window, no JSON unless --out")
    parser.add_argument("--window", type=float, help="seconds of the steady window (default 5)")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/DATE-"
                                                 "console-LABEL.json; none with --short)")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 250:
        parser.error("--calls must be 1 to 250")
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    check_stack()
    timing = Timing(window=args.window or (2.0 if args.short else 5.0))
    about = machine()
    progress(f"machine: {about['cpu']}, {about['cores']} cores, kernel {about['kernel']}, "
             f"Python {about['python']}; load average {os.getloadavg()[0]:.2f}")
    pairs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="centralino-bench-console-") as tmp:
            warm_prompt_cache(Path(tmp))
            for i in range(args.pairs):
                progress(f"pair {i + 1}: N={args.calls}, "
                         f"{timing.schedule(args.calls)['end']:.0f} s of calls per round")
                a = run_round(args.calls, timing, Path(tmp) / f"p{i}a", pages=False)
                b = run_round(args.calls, timing, Path(tmp) / f"p{i}b", pages=True)
                pairs.append({"A": a, "B": b, "figures": pair_figures(a, b)})
    except KeyboardInterrupt:
        progress("interrupted: every process of the bench stopped")
        return 130
    except RuntimeError as exc:
        progress(f"the console bench failed: {exc}")
        return 1
    print()
    for line in report_lines(pairs, args.calls):
        print(line)
    v = verdict(pairs)
    print(f"\n{WALLBOARDS} wallboards + {AGENTS} agent pages at {args.calls} calls: "
          f"cost {v['cost_percent_of_core']}% of a core "
          f"({'under' if v['cost_ok'] else 'NOT under'} {BUDGET_CPU_PERCENT:g}%), "
          f"event -> page p95 {v['p95_ms']} ms "
          f"({'under' if v['p95_ok'] else 'NOT under'} {BUDGET_P95_MS:g} ms)")
    report = {"label": args.label, "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": about, **versions(), "timing": timing.__dict__,
              "calls": args.calls, "wallboards": WALLBOARDS, "agent_pages": AGENTS,
              "elapsed_s": round(time.monotonic() - started, 1), "verdict": v, "pairs": pairs}
    out = args.out
    if out is None and not args.short:
        out = ROOT / "bench" / "results" / f"{datetime.date.today()}-console-{args.label}.json"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwritten {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

"""Outbound lists at size: a 1,000,000-number opt-out register loaded, then 100,000 contacts
imported into a campaign with every number checked against it (issue 14: under 30 s), then
the cost of a do-not-call check and of taking the next due contact from the store.

    .venv/bin/python bench/outbound/import_bench.py [--register 1000000] [--contacts 100000]
                                                     [--label run] [--no-json]

Prints the figures and the machine; writes them to bench/results/DATE-outbound-LABEL.json
unless --no-json (`make bench` runs it so). The files are made in a temporary folder from a
seeded random generator: Italian mobile numbers in national form (``3xxxxxxxxx``, normalised
to +39 on the way in), a tenth of the contacts on the register, a few hundred invalid,
short or repeated numbers, three extra columns per contact.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from ivr.outbound.contacts import ContactBook, import_csv  # noqa: E402
from ivr.outbound.dnc import DncList  # noqa: E402

TARGET_IMPORT_S = 30.0
TARGET_NEXT_MS = 1.0


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version}


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "ivr/outbound", "bench/outbound"], cwd=ROOT, text=True,
                               capture_output=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    return rev + ("+dirty" if dirty else "")


def make_files(folder: Path, register_size: int, contacts: int,
               seed: int) -> tuple[Path, Path, int]:
    """The register file, the contact list and how many contacts are on the register."""
    rng = random.Random(seed)
    listed = rng.sample(range(10**9), register_size)  # 3 + 9 digits: distinct mobiles
    register = folder / "register.txt"
    with register.open("w") as f:
        f.writelines(f"3{n:09d}\n" for n in listed)
    on_register = contacts // 10
    chosen = rng.sample(listed, on_register)
    listed_set = set(listed)
    fresh: list[int] = []
    while len(fresh) < contacts - on_register:
        n = rng.randrange(10**9)
        if n not in listed_set:
            fresh.append(n)
    numbers = [f"3{n:09d}" for n in chosen + fresh]
    rng.shuffle(numbers)
    for i in range(0, contacts, 500):  # a few spelled otherwise, or wrong
        numbers[i] = {0: "+39 " + numbers[i][:3] + " " + numbers[i][3:],
                      1: "abc", 2: "112", 3: numbers[i - 1] if i else numbers[i]}[i // 500 % 4]
    contact_list = folder / "contacts.csv"
    with contact_list.open("w") as f:
        f.write("number,name,city,appointment,amount\n")
        f.writelines(f"{number},Person {i},City {i % 97},2027-01-{i % 28 + 1:02d} 10:30,"
                     f"{i % 500}.00\n" for i, number in enumerate(numbers))
    return register, contact_list, on_register


def run(register_size: int, contacts: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="outbound-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        register, contact_list, on_register = make_files(folder, register_size, contacts, seed)
        made = time.perf_counter() - started
        db = folder / "calls.db"
        with DncList(db) as dnc:
            loaded = dnc.import_file(register, "register:bench")
        with ContactBook(db) as book:
            report = import_csv(book, "bench", contact_list, now=1000.0)
            numbers = [c.number for c in book.due("bench", 1000.0, 10_000)]
            started = time.perf_counter()
            for number in numbers:
                book.is_dnc(number)
            check_us = (time.perf_counter() - started) / len(numbers) * 1e6
            next_ms: list[float] = []
            for i in range(1000):  # the dialler takes one, dials, records: the next is due
                t0 = time.perf_counter()
                (contact,) = book.due("bench", 1000.0, 1)
                next_ms.append((time.perf_counter() - t0) * 1000)
                book.record_attempt(contact.id, "no_answer", f"c{i}", "bench", 5000.0,
                                    "pending", now=1000.0 + i)
        size_mb = db.stat().st_size / 1e6
    return {
        "register": {"rows": loaded.read, "added": loaded.added, "seconds": loaded.seconds},
        "import": {"rows": report.read, "added": report.added, "seconds": report.seconds,
                   "refused": dict(report.by_reason), "on_register": on_register,
                   "target_seconds": TARGET_IMPORT_S},
        "dnc_check_us": check_us,
        "next_contact_ms": {"p50": statistics.median(next_ms),
                            "p99": sorted(next_ms)[int(len(next_ms) * 0.99) - 1],
                            "max": max(next_ms), "target_ms": TARGET_NEXT_MS},
        "store_mb": size_mb, "files_made_seconds": made,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--register", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--label", default="run")
    parser.add_argument("--no-json", action="store_true", help="print only")
    args = parser.parse_args(argv)
    figures = run(args.register, args.contacts, args.seed)
    box = machine()
    reg, imp, nxt = figures["register"], figures["import"], figures["next_contact_ms"]
    print(f"machine: {box['cpu']}, {box['cores']} cores, Linux {box['kernel']}, Python "
          f"{box['python']}, SQLite {box['sqlite']}")
    print(f"register load: {reg['rows']:,} numbers in {reg['seconds']:.1f} s "
          f"({reg['rows'] / reg['seconds']:,.0f}/s)")
    print(f"contact import: {imp['rows']:,} rows, {imp['added']:,} added, refused "
          f"{imp['refused']} in {imp['seconds']:.1f} s (target < {TARGET_IMPORT_S:.0f} s)")
    print(f"do-not-call check: {figures['dnc_check_us']:.1f} us; next due contact: p50 "
          f"{nxt['p50']:.3f} ms, p99 {nxt['p99']:.3f} ms, max {nxt['max']:.3f} ms "
          f"(target < {TARGET_NEXT_MS:.0f} ms)")
    print(f"store file {figures['store_mb']:.0f} MB, peak RSS {figures['peak_rss_mb']:.0f} MB")
    ok = imp["seconds"] < TARGET_IMPORT_S and nxt["p99"] < TARGET_NEXT_MS
    if not args.no_json:
        out = ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-outbound-{args.label}.json"
        out.write_text(json.dumps({"bench": "outbound-import", "label": args.label,
                                   "machine": box, "git": git_revision(),
                                   "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "args": vars(args), "figures": figures, "ok": ok},
                                  indent=2) + "\n")
        print(f"written to {out.relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

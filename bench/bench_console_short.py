"""The console bench's short form for `make bench`: one pair of rounds at 30 calls, without and
with 50 wallboards and 20 agent pages open (about a minute).

Prints the figures of :mod:`bench.console.run` and writes no JSON; `make bench-console` runs
the whole bench (100 calls) and keeps its figures under bench/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.console.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--calls", "30", "--short"]))

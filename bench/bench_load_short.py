"""The load bench's short form for `make bench`: one round of 10 real calls (about 15 s).

Prints the table of :mod:`bench.load.run` and writes no JSON; `make bench-load` runs the whole
bench (10, 30, 100 and 250 calls) and keeps its figures under bench/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--calls", "10", "--short"]))

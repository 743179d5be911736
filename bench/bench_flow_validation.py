"""Validation time of generated flows of 100, 1,000 and 2,000 nodes (goal: 2,000 in <= 0.5 s).

Each generated flow is a tree of menus (three options each) with play, collect and queue leaves,
so every pass (schema, references, graph) has real work. Prints the median of 5 loads.
"""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.flow import load_flow  # noqa: E402


def generate(nodes: int) -> str:
    lines = ["flow: generated", "languages: [it, en]", "start: n0", "nodes:"]
    for i in range(nodes):
        children = [c for c in (3 * i + 1, 3 * i + 2, 3 * i + 3) if c < nodes]
        if children:
            options = ", ".join(f'"{k + 1}": n{c}' for k, c in enumerate(children))
            lines += [f"  n{i}:", "    type: menu",
                      f'    prompt: {{say: {{it: "Menu {i}: premere 1, 2 o 3", '
                      f'en: "Menu {i}: press 1, 2 or 3"}}}}',
                      f"    options: {{{options}}}", "    timeout: 5",
                      "    invalid_prompt: {say: \"Invalid\"}", "    on_failure: end"]
        elif i % 3 == 0:
            lines += [f"  n{i}:", "    type: queue", "    queue: support",
                      f'    prompt: {{say: "Leaf {i}"}}']
        elif i % 3 == 1:
            lines += [f"  n{i}:", "    type: collect", f'    prompt: "Code for {i}"',
                      "    variable: code", "    pattern: \"[0-9]{4}\"", "    next: end"]
        else:
            lines += [f"  n{i}:", "    type: play", f'    prompt: "Leaf {i}"', "    next: end"]
    lines += ["  end:", "    type: hangup", "    prompt: {say: {it: Arrivederci, en: Goodbye}}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        for nodes in (100, 1000, 2000):
            path = Path(tmp) / f"flow{nodes}.yaml"
            path.write_text(generate(nodes))
            times = []
            for _ in range(5):
                start = time.perf_counter()
                flow = load_flow(path, known_queues=["support"])
                times.append(time.perf_counter() - start)
            assert len(flow.nodes) == nodes + 1
            median = statistics.median(times)
            print(f"validate {nodes:5d} nodes ({path.stat().st_size // 1024} kB): "
                  f"median {median * 1000:.0f} ms")


if __name__ == "__main__":
    main()

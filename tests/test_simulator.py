"""The discrete-event simulator on the routing code, checked against Erlang C computed here."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from routing.erlang import agents_needed, average_speed_of_answer
from routing.erlang import service_level as erlang_sl
from routing.simulator import LoadSpec, simulate

ROOT = Path(__file__).resolve().parent.parent


def erlang_c_service_level(c: int, per_hour: float, aht: float, threshold: float) -> float:
    """Erlang C written out again, independently of routing/erlang.py."""
    a = per_hour * aht / 3600
    head = sum(a ** k / math.factorial(k) for k in range(c))
    tail = a ** c / math.factorial(c) * c / (c - a)
    p_wait = tail / (head + tail)
    return 1 - p_wait * math.exp(-(c - a) * threshold / aht)


@pytest.mark.parametrize(("agents", "per_hour", "aht"), [
    (3, 20, 360), (4, 40, 300), (5, 45, 300), (6, 60, 240), (8, 100, 240), (10, 120, 240)])
def test_simulated_service_level_matches_erlang_c(agents, per_hour, aht):
    result = simulate(LoadSpec(agents=agents, calls_per_hour=per_hour, handle_time=aht,
                               hours=60_000 / per_hour, threshold=20, seed=1))
    # Erlang C at the load the random draw really offered (arrival rate and mean handle time),
    # so the check is of the queueing, not of the random numbers
    expected = erlang_c_service_level(agents, result.calls_per_hour, result.handle_time, 20)
    assert abs(result.service_level - expected) < 0.01, (result.service_level, expected)
    assert abs(result.calls_per_hour - per_hour) / per_hour < 0.02
    assert result.abandoned == 0
    assert result.answered == result.calls


def test_erlang_module_agrees_with_the_formula_written_here():
    for c, lam, aht in [(3, 20, 360), (10, 120, 240), (30, 500, 180)]:
        assert erlang_sl(c, lam, aht, 20) == pytest.approx(erlang_c_service_level(c, lam, aht, 20))
    assert erlang_sl(6, 120, 240, 20) == 0.0          # 8 erlangs on 6 agents: overloaded
    assert average_speed_of_answer(6, 120, 240) == math.inf


def test_agents_needed_is_the_fewest_that_reach_the_target():
    n = agents_needed(120, 240, target=0.8, threshold=20)
    assert erlang_sl(n, 120, 240, 20) >= 0.8 > erlang_sl(n - 1, 120, 240, 20)


def test_patience_makes_callers_abandon_and_same_seed_same_result():
    spec = LoadSpec(agents=3, calls_per_hour=60, handle_time=240, patience=60, hours=20, seed=5)
    first, second = simulate(spec), simulate(spec)
    assert first == second
    assert first.abandoned > 0
    assert first.answered + first.abandoned == first.calls
    assert 0 < first.abandonment_rate < 1
    assert first.service_level_all < first.service_level


def test_overflow_escalations_are_counted():
    result = simulate(LoadSpec(agents=2, calls_per_hour=60, handle_time=240, hours=4,
                               max_wait=30, seed=2))
    assert result.escalations.get("queue:exhaustion", 0) > 0


def test_cli_simulate_load_json_and_staffing():
    out = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "simulate-load", "--agents", "6", "--calls-per-hour",
         "60", "--handle-time", "240s", "--threshold", "20s", "--hours", "8", "--seed", "3",
         "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    for key in ("service_level", "asa_seconds", "abandonment_rate", "occupancy"):
        assert 0 <= figures[key] < (1000 if key == "asa_seconds" else 1.0001)
    assert figures["abandonment_rate"] == 0
    text = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "staffing", "--calls-per-hour", "30,120,240",
         "--handle-time", "4m", "--target", "80%", "--threshold", "20s"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    rows = [line.split() for line in text.stdout.splitlines() if line.strip()[:1].isdigit()]
    expected = [agents_needed(x, 240, 0.8, 20) for x in (30, 120, 240)]
    assert [int(r[-1]) for r in rows[:3]] == expected

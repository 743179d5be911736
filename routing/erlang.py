"""Erlang C: expected service level and speed of answer of a queue with c agents (M/M/c).

    >>> service_level(agents=6, calls_per_hour=120, handle_time=240, threshold=20)
    0.83...
    >>> agents_needed(calls_per_hour=120, handle_time=240, target=0.8, threshold=20)
    6
"""

from __future__ import annotations

import math


def wait_probability(agents: int, erlangs: float) -> float:
    """Probability that a caller has to wait (Erlang C formula); 1.0 when overloaded."""
    if agents <= 0 or erlangs >= agents:
        return 1.0
    if erlangs <= 0:
        return 0.0
    # sum of A^k/k! computed by recurrence to stay finite for large c
    term = 1.0
    total = 1.0
    for k in range(1, agents):
        term *= erlangs / k
        total += term
    top = term * erlangs / (agents - erlangs)  # A^c/c! * c/(c-A), with term = A^(c-1)/(c-1)!
    return top / (total + top)


def service_level(agents: int, calls_per_hour: float, handle_time: float,
                  threshold: float) -> float:
    """Share of callers answered within *threshold* seconds."""
    erlangs = calls_per_hour * handle_time / 3600.0
    if agents <= erlangs:
        return 0.0
    p_wait = wait_probability(agents, erlangs)
    return 1.0 - p_wait * math.exp(-(agents - erlangs) * threshold / handle_time)


def average_speed_of_answer(agents: int, calls_per_hour: float, handle_time: float) -> float:
    erlangs = calls_per_hour * handle_time / 3600.0
    if agents <= erlangs:
        return math.inf
    return wait_probability(agents, erlangs) * handle_time / (agents - erlangs)


def agents_needed(calls_per_hour: float, handle_time: float, target: float,
                  threshold: float, max_agents: int = 10_000) -> int:
    """Fewest agents that reach *target* service level (0 when no calls come)."""
    if calls_per_hour <= 0:
        return 0
    agents = max(1, math.floor(calls_per_hour * handle_time / 3600.0))
    while agents <= max_agents:
        if service_level(agents, calls_per_hour, handle_time, threshold) >= target:
            return agents
        agents += 1
    raise ValueError("the target cannot be reached with a sensible number of agents")

"""The routing slice: longest idle first, ring timeout, the next agent, with time by hand."""

import pytest

from routing import QueueSpec, RingAgent, Router, StopRinging


def router(now=0.0, **kw):
    return Router([QueueSpec("support", ("anna", "marco", "luca"), ring_timeout=15, **kw)],
                  now=now)


def test_longest_idle_agent_rings_first():
    r = router()
    r.agents["anna"].idle_since = 50.0
    r.agents["marco"].idle_since = 10.0
    r.agents["luca"].idle_since = 30.0
    assert r.join("c1", "support", now=100.0) == [RingAgent("c1", "marco", "support")]
    assert r.agents["marco"].state == "ringing"


def test_ties_break_by_configured_order():
    r = router()
    assert r.join("c1", "support", now=1.0) == [RingAgent("c1", "anna", "support")]


def test_ring_timeout_moves_to_next_agent():
    r = router()
    r.join("c1", "support", now=0.0)
    assert r.next_deadline() == 15.0
    assert r.on_timer(14.9) == []
    actions = r.on_timer(15.0)
    assert actions == [StopRinging("c1", "anna", "no_answer"), RingAgent("c1", "marco", "support")]
    assert r.agents["anna"].state == "available"
    assert r.agents["anna"].missed == 1


def test_busy_agent_moves_to_next_and_rounds_restart_after_delay():
    r = Router([QueueSpec("q", ("anna", "marco"), ring_timeout=10, retry_delay=2)], now=0.0)
    r.join("c1", "q", now=0.0)
    assert r.ring_failed("c1", "anna", 1.0, "486 Busy Here") == [RingAgent("c1", "marco", "q")]
    assert r.ring_failed("c1", "marco", 2.0, "486 Busy Here") == []
    assert r.next_deadline() == 4.0
    assert r.on_timer(3.9) == []
    assert r.on_timer(4.0) == [RingAgent("c1", "anna", "q")]


def test_answer_connects_and_agent_is_not_offered_another_call():
    r = router()
    r.join("c1", "support", now=0.0)
    r.answered("c1", "anna", 3.0)
    assert "c1" in r.connected
    assert "c1" not in r.waiting
    assert r.agents["anna"].state == "on_call"
    assert r.join("c2", "support", now=4.0) == [RingAgent("c2", "marco", "support")]
    assert r.join("c3", "support", now=5.0) == [RingAgent("c3", "luca", "support")]
    assert r.join("c4", "support", now=6.0) == []  # nobody free: c4 waits
    assert r.position("c4") == 3  # c2 and c3 are still waiting while their agents ring


def test_finished_call_frees_agent_for_waiting_caller_and_updates_idle():
    r = Router([QueueSpec("q", ("anna",))], now=0.0)
    r.join("c1", "q", now=0.0)
    r.answered("c1", "anna", 1.0)
    assert r.join("c2", "q", now=2.0) == []
    assert r.finished("c1", now=60.0) == [RingAgent("c2", "anna", "q")]
    assert r.agents["anna"].idle_since == 60.0


def test_wrap_up_delays_next_offer():
    r = Router([QueueSpec("q", ("anna",), wrap_up=30)], now=0.0)
    r.join("c1", "q", now=0.0)
    r.answered("c1", "anna", 1.0)
    r.join("c2", "q", now=2.0)
    assert r.finished("c1", now=10.0) == []
    assert r.agents["anna"].state == "wrap_up"
    assert r.next_deadline() == 40.0
    assert r.on_timer(40.0) == [RingAgent("c2", "anna", "q")]


def test_caller_leaving_while_ringing_stops_the_ring():
    r = router()
    r.join("c1", "support", now=0.0)
    assert r.leave("c1", now=2.0) == [StopRinging("c1", "anna", "caller_left")]
    assert r.agents["anna"].state == "available"
    assert r.waiting == {}


def test_priority_then_join_order():
    r = Router([QueueSpec("q", ("anna",))], now=0.0)
    r.join("c0", "q", now=0.0)
    r.answered("c0", "anna", 0.5)
    r.join("c1", "q", now=1.0)
    r.join("c2", "q", now=2.0, priority=5)
    r.join("c3", "q", now=3.0)
    assert [r.position(c) for c in ("c2", "c1", "c3")] == [1, 2, 3]
    assert r.finished("c0", now=4.0) == [RingAgent("c2", "anna", "q")]


def test_unknown_queue_is_refused():
    with pytest.raises(KeyError, match="nope"):
        router().join("c1", "nope", now=0.0)

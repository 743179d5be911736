"""The router's part in tickets and dispositions: a caller joining at a level, a wrap-up held
until the agent keys a disposition (time by hand)."""

from routing import QueueSpec, RingAgent, Router
from routing.acd import Member


def tiered(**kw: float) -> Router:
    return Router([QueueSpec("support", ("anna",), (Member("lia", 2),), ring_timeout=10, **kw)],
                  now=0.0)


def one_agent(**kw: float) -> Router:
    return Router([QueueSpec("support", ("anna",), ring_timeout=10, **kw)], now=0.0)


def test_a_caller_joining_at_level_2_is_never_offered_to_level_1() -> None:
    r = tiered()
    assert r.join("c1", "support", now=1.0, level=2) == [RingAgent("c1", "lia", "support")]
    r.on_timer(11.0)  # lia does not answer: the next round is level 2 again, never anna
    assert r.agents["anna"].state == "available"
    assert r.join("c2", "support", now=12.0) == [RingAgent("c2", "anna", "support")]


def test_a_required_disposition_holds_wrap_up_until_keyed_but_not_before_wrap_up() -> None:
    r = one_agent(wrap_up=5.0, disposition_hold=60.0)
    r.join("c1", "support", now=0.0)
    r.answered("c1", "anna", now=1.0)
    r.finished("c1", now=10.0)
    assert (r.agents["anna"].state, r.next_deadline()) == ("wrap_up", 70.0)
    assert r.disposed("anna", now=12.0) == []  # keyed within wrap_up: it still lasts 5 s
    assert r.agents["anna"].state == "wrap_up"
    r.on_timer(15.0)
    assert r.agents["anna"].state == "available"
    r.join("c2", "support", now=20.0)
    r.answered("c2", "anna", now=21.0)
    r.finished("c2", now=30.0)
    r.disposed("anna", now=40.0)  # after wrap_up: it ends at once
    assert r.agents["anna"].state == "available"
    assert [e.kind for e in r.log].count("wrap_up_end") == 2


def test_without_a_required_disposition_keying_one_changes_nothing() -> None:
    r = one_agent(wrap_up=5.0)
    r.join("c1", "support", now=0.0)
    r.answered("c1", "anna", now=1.0)
    r.finished("c1", now=10.0)
    assert r.disposed("anna", now=11.0) == []
    assert (r.agents["anna"].state, r.next_deadline()) == ("wrap_up", 15.0)

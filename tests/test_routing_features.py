"""Routing: every strategy, agent state and escalation kind, with time passed by hand."""

import pytest

from routing.acd import (
    AgentSpec,
    Announce,
    LeaveQueue,
    Member,
    MovedQueue,
    QueueSpec,
    RingAgent,
    Router,
    StopRinging,
)


def rings(actions):
    return [a.agent for a in actions if isinstance(a, RingAgent)]


def events(router, kind):
    return [e for e in router.log if e.kind == kind]


# -- strategies ---------------------------------------------------------------------------------
def test_ring_all_rings_everyone_and_first_answer_stops_the_others():
    r = Router([QueueSpec("q", ("a", "b", "c"), strategy="ring_all")], now=0)
    assert rings(r.join("c1", "q", 1)) == ["a", "b", "c"]
    actions = r.answered("c1", "b", 3)
    assert actions == [StopRinging("c1", "a", "answered_elsewhere"),
                       StopRinging("c1", "c", "answered_elsewhere")]
    assert r.agents["a"].state == "available"
    assert r.agents["b"].state == "on_call"


def test_round_robin_remembers_where_it_stopped():
    r = Router([QueueSpec("q", ("a", "b", "c"), strategy="round_robin")], now=0)
    order = []
    for i in range(4):
        (agent,) = rings(r.join(f"c{i}", "q", i))
        order.append(agent)
        r.answered(f"c{i}", agent, i + 0.5)
        r.finished(f"c{i}", i + 0.8)
    assert order == ["a", "b", "c", "a"]


def test_fewest_calls_and_top_down():
    r = Router([QueueSpec("q", ("a", "b"), strategy="fewest_calls")], now=0)
    r.agents["a"].answered = 5
    assert rings(r.join("c1", "q", 1)) == ["b"]
    r = Router([QueueSpec("q", ("a", "b"), strategy="top_down")], now=0)
    r.agents["a"].idle_since = 100  # top-down ignores idle time
    assert rings(r.join("c1", "q", 200)) == ["a"]


def test_random_is_repeatable_with_a_seed():
    picks = []
    for _ in range(2):
        r = Router([QueueSpec("q", tuple("abcdef"), strategy="random")], now=0, seed=7)
        picks.append(rings(r.join("c1", "q", 1)))
    assert picks[0] == picks[1]
    assert len(picks[0]) == 1


# -- agent states -------------------------------------------------------------------------------
def test_agent_paused_after_n_unanswered_offers_and_unpause():
    r = Router([QueueSpec("q", ("a",), ring_timeout=10, retry_delay=1)], now=0,
               agents=[AgentSpec("a", max_no_answer=2)])
    r.join("c1", "q", 0)
    r.on_timer(10)                       # miss 1
    assert r.agents["a"].state == "available"
    assert rings(r.on_timer(11)) == ["a"]  # new round after retry_delay
    r.on_timer(21)                       # miss 2: paused
    assert r.agents["a"].state == "paused"
    assert r.agents["a"].pause_reason == "no answer"
    assert r.on_timer(100) == []         # never offered while paused
    assert r.unpause("a", 120) == []      # a was tried this round: a new round after the delay
    assert rings(r.on_timer(121)) == ["a"]
    assert [e.detail["reason"] for e in events(r, "pause")] == ["no answer"]


def test_pause_logout_login_and_never_two_calls_at_once():
    r = Router([QueueSpec("q", ("a",))], now=0)
    r.pause("a", 1, reason="lunch")
    assert r.join("c1", "q", 2) == []
    r.unpause("a", 3)
    assert r.agents["a"].state == "ringing"
    assert r.join("c2", "q", 4) == []    # a is ringing for c1: not offered c2
    r.answered("c1", "a", 5)
    assert r.join("c3", "q", 6) == []
    r.finished("c1", 7)
    assert r.agents["a"].call_id == "c2"
    r.logout("a", 8)                     # ringing agents cannot log out mid-offer
    assert r.agents["a"].state == "ringing"


def test_logged_out_agent_at_start_and_login():
    r = Router([QueueSpec("q", ("a",))], now=0, agents=[AgentSpec("a", logged_in=False)])
    assert r.join("c1", "q", 1) == []
    assert rings(r.login("a", 2)) == ["a"]
    assert [e.kind for e in r.log] == ["enter", "login", "ring"]


def test_skills_with_fallback_after_a_wait():
    r = Router([QueueSpec("q", ("junior", "senior"), skill="printers", skill_level=2,
                          skill_fallback_after=30)], now=0,
               agents=[AgentSpec("junior", {"printers": 1}), AgentSpec("senior", {"printers": 3})])
    r.pause("senior", 0)
    assert r.join("c1", "q", 1) == []     # junior lacks the skill level
    assert r.next_deadline() == 31
    assert rings(r.on_timer(31)) == ["junior"]


# -- queue limits -------------------------------------------------------------------------------
def test_max_callers_refuses_one_more():
    r = Router([QueueSpec("q", ("a",), max_callers=1)], now=0)
    r.pause("a", 0)
    assert r.join("c1", "q", 1) == []
    assert r.join("c2", "q", 2) == [LeaveQueue("c2", "full")]


def test_no_agent_logged_in_refuse_or_leave_after():
    r = Router([QueueSpec("q", ("a",), join_empty=False)], now=0,
               agents=[AgentSpec("a", logged_in=False)])
    assert r.join("c1", "q", 1) == [LeaveQueue("c1", "no_agents")]
    r = Router([QueueSpec("q", ("a",), leave_empty_after=20)], now=0,
               agents=[AgentSpec("a", logged_in=False)])
    assert r.join("c1", "q", 1) == []
    assert r.next_deadline() == 21
    assert r.on_timer(21) == [LeaveQueue("c1", "no_agents")]


def test_max_wait_without_overflow_leaves_to_the_flow():
    r = Router([QueueSpec("q", ("a",), max_wait=60)], now=0)
    r.pause("a", 0)
    r.join("c1", "q", 0)
    assert r.on_timer(60) == [LeaveQueue("c1", "timeout")]
    assert r.waiting == {}


def test_announcements_give_position_and_expected_wait():
    r = Router([QueueSpec("q", ("a",), announce_every=30)], now=0)
    r.join("c0", "q", 0)
    r.answered("c0", "a", 1)
    r.finished("c0", 121)                # one call of 120 s teaches the handle time
    r.join("c1", "q", 122)
    r.answered("c1", "a", 123)
    r.join("c2", "q", 124)
    r.join("c3", "q", 125)
    assert r.on_timer(155) == [Announce("c2", 1, 120.0), Announce("c3", 2, 240.0)]


# -- escalation ---------------------------------------------------------------------------------
def tiers(**kw):
    return Router([QueueSpec("help", members=(Member("l1a", 1), Member("l1b", 1),
                                              Member("l2", 2), Member("l3", 3)),
                             tier_wait=30, **kw)], now=0)


def test_escalation_by_waiting_adds_level_2_then_3_keeping_the_place():
    r = tiers()
    for agent in ("l1a", "l1b"):
        r.join(f"busy-{agent}", "help", 0)
        r.answered(f"busy-{agent}", agent, 0)
    assert r.join("c1", "help", 1) == []          # level 1 busy, level 2 not yet
    assert r.next_deadline() == 31
    assert rings(r.on_timer(31)) == ["l2"]
    (ev,) = events(r, "escalate")
    assert ev.detail == {"kind": "waiting", "from_level": 1, "to_level": 2,
                         "from_queue": "help", "to_queue": "help"}
    r.on_timer(46)                                  # l2 did not answer (15 s)
    r.pause("l2", 46)
    assert r.next_deadline() == 48                  # the retry round: nobody free
    assert r.on_timer(48) == []
    assert r.next_deadline() == 61
    assert rings(r.on_timer(61)) == ["l3"]
    assert [e.detail["to_level"] for e in events(r, "escalate")] == [2, 3]


def test_waiting_multiplier_and_empty_level_skipped():
    r = tiers(tier_wait_multiply=True)
    r.logout("l2", 0)
    for agent in ("l1a", "l1b"):
        r.join(f"busy-{agent}", "help", 0)
        r.answered(f"busy-{agent}", agent, 0)
    r.join("c1", "help", 0)
    # level 2 has nobody logged in: level 3 opens after the first wait
    assert rings(r.on_timer(30)) == ["l3"]


def test_escalation_by_exhaustion_moves_to_overflow_with_original_place():
    r = Router([QueueSpec("l1", ("a",), max_wait=60, overflow="l2"),
                QueueSpec("l2", ("b",))], now=0)
    r.pause("a", 0)
    r.pause("b", 0)
    r.join("early", "l1", 0)
    r.join("direct", "l2", 30)
    actions = r.on_timer(60)
    assert MovedQueue("early", "l1", "l2", "exhaustion") in actions
    assert r.position("early") == 1
    assert r.position("direct") == 2
    (ev,) = events(r, "escalate")
    assert ev.detail["kind"] == "exhaustion"
    assert ev.detail["to_queue"] == "l2"
    assert rings(r.unpause("b", 61)) == ["b"]
    assert r.agents["b"].call_id == "early"


def test_no_agent_logged_in_overflows_at_once():
    r = Router([QueueSpec("l1", ("a",), overflow="l2"), QueueSpec("l2", ("b",))], now=0,
               agents=[AgentSpec("a", logged_in=False)])
    actions = r.join("c1", "l1", 5)
    assert MovedQueue("c1", "l1", "l2", "exhaustion") in actions
    assert rings(actions) == ["b"]


def test_escalation_by_the_agent_to_another_queue_with_priority_and_context():
    r = Router([QueueSpec("l1", ("a",), escalate_to="l2", wrap_up=10),
                QueueSpec("l2", ("b", "c"))], now=0)
    r.pause("b", 0)
    r.pause("c", 0)
    r.join("c1", "l1", 0)
    r.answered("c1", "a", 2)
    r.join("other", "l2", 5)
    actions = r.escalate("c1", 60)
    assert MovedQueue("c1", "l1", "l2", "agent") in actions
    assert r.agents["a"].state == "wrap_up"
    assert r.position("c1") == 1                    # ahead of 'other' who joined l2 earlier
    caller = r.waiting["c1"]
    assert caller.previous_agents == ["a"]
    (ev,) = events(r, "escalate")
    assert ev.detail["kind"] == "agent"
    assert ev.agent == "a"
    assert rings(r.unpause("b", 61)) == ["b"]


def test_escalation_by_the_agent_within_tiers_goes_to_the_next_level():
    r = tiers()
    assert rings(r.join("c1", "help", 0)) == ["l1a"]
    r.answered("c1", "l1a", 1)
    actions = r.escalate("c1", 100)
    assert rings(actions) == ["l2"]                 # level 1 agents are not offered it again
    assert events(r, "escalate")[0].detail["to_level"] == 2


def test_unknown_queue_is_refused():
    with pytest.raises(KeyError, match="nope"):
        Router([QueueSpec("q", ("a",))], now=0).join("c1", "nope", now=0)

"""Random event streams against the router: it never offers a call to an agent who is busy,
ringing, paused or logged out, never loses a caller and never gives one caller to two agents."""

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.acd import (
    STRATEGIES,
    AgentSpec,
    LeaveQueue,
    Member,
    MovedQueue,
    QueueSpec,
    RingAgent,
    Router,
    StopRinging,
)

AGENTS = ["a", "b", "c", "d"]
OPS = st.one_of(
    st.tuples(st.just("join"), st.sampled_from(["l1", "l2"]), st.integers(0, 3)),
    st.tuples(st.just("leave"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("answer"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("refuse"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("finish"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("escalate"), st.integers(0, 20), st.just(0)),
    st.tuples(st.sampled_from(["pause", "unpause", "login", "logout"]),
              st.sampled_from(AGENTS), st.just(0)),
    st.tuples(st.just("time"), st.floats(0.1, 40), st.just(0)),
)


def build(strategy: str) -> Router:
    return Router([
        QueueSpec("l1", members=(Member("a", 1), Member("b", 1), Member("c", 2)),
                  strategy=strategy, ring_timeout=10, tier_wait=20, max_wait=90, overflow="l2",
                  escalate_to="l2", wrap_up=5, announce_every=30, max_callers=6),
        QueueSpec("l2", members=(Member("c", 1), Member("d", 1)), strategy=strategy,
                  ring_timeout=8, max_wait=120, leave_empty_after=60),
    ], now=0.0, agents=[AgentSpec(n, max_no_answer=3) for n in AGENTS], seed=1)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(STRATEGIES), st.lists(OPS, max_size=60))
def test_router_invariants(strategy, ops):  # noqa: C901 - one arm per drawn operation
    r = build(strategy)
    now = 0.0
    joined: list[str] = []
    gone: set[str] = set()

    def apply(actions, before, freed_by_op=()):
        freed: set[str] = set(freed_by_op)
        for action in actions:
            if isinstance(action, RingAgent):
                # free before this batch, or freed by a StopRinging earlier in it
                assert before[action.agent] == "available" or action.agent in freed, \
                    (action, before, actions)
                assert r.agents[action.agent].state == "ringing"
                freed.discard(action.agent)
            elif isinstance(action, LeaveQueue):
                gone.add(action.call_id)
            elif isinstance(action, MovedQueue):
                assert action.call_id in r.waiting
            elif isinstance(action, StopRinging) and r.agents[action.agent].state != "paused":
                freed.add(action.agent)  # paused agents are not freed

    for op, arg, extra in ops:
        before = {n: a.state for n, a in r.agents.items()}
        if op == "join":
            call = f"c{len(joined)}"
            joined.append(call)
            apply(r.join(call, arg, now, priority=extra), before)
        elif op == "time":
            now += arg
            deadline = r.next_deadline()
            while deadline is not None and deadline <= now:
                before = {n: a.state for n, a in r.agents.items()}
                wrapped = [n for n, a in r.agents.items()
                           if a.state == "wrap_up" and a.wrap_up_until <= deadline]
                apply(r.on_timer(deadline), before, wrapped)
                nxt = r.next_deadline()
                assert nxt is None or nxt > deadline, "a deadline was not consumed"
                deadline = nxt
            apply(r.on_timer(now), {n: a.state for n, a in r.agents.items()})
        elif op in ("pause", "unpause", "login", "logout"):
            apply(getattr(r, op)(arg, now), before, [arg])
        elif joined:
            call = joined[arg % len(joined)]
            if op == "leave" and call in r.waiting:
                apply(r.leave(call, now), before)
                gone.add(call)
            elif op in ("answer", "refuse") and call in r.waiting and r.waiting[call].ringing:
                agent = sorted(r.waiting[call].ringing)[0]
                if op == "answer":
                    apply(r.answered(call, agent, now), before)
                else:
                    apply(r.ring_failed(call, agent, now, "486 Busy"), before, [agent])
            elif op == "finish" and call in r.connected:
                agent = r.connected[call].agent
                apply(r.finished(call, now), before, [agent])
                gone.add(call)
            elif op == "escalate" and call in r.connected:
                agent = r.connected[call].agent
                apply(r.escalate(call, now), before, [agent])
        check_invariants(r, joined, gone)


def check_invariants(r: Router, joined: list[str], gone: set[str]) -> None:
    on_call = [a.call_id for a in r.agents.values() if a.state == "on_call"]
    assert len(on_call) == len(set(on_call)), "one caller with two agents"
    for agent in r.agents.values():
        if agent.state in ("ringing", "on_call"):
            assert agent.call_id is not None
        if agent.state == "ringing":
            assert agent.agent in r.waiting[agent.call_id].ringing
        if agent.state == "on_call":
            assert r.connected[agent.call_id].agent == agent.agent
    for call in joined:
        places = (call in r.waiting) + (call in r.connected) + (call in gone)
        assert places == 1, f"{call} is in {places} places"
    for caller in r.waiting.values():
        for agent in caller.ringing:
            assert r.agents[agent].state == "ringing"
            assert r.agents[agent].call_id == caller.call_id

"""Supervisors in the whole driver under random events (the driver's hypothesis machine, plus
supervisors' calls, keys and hang-ups).

On top of the driver machine's invariants: every session's audio connections are exactly those
of its mode between its caller, agent and supervisor legs; no session outlives the
supervisor's leg or the agent's call; a refused code leaves a refused record and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from ivr.driver import messages as m
from ivr.driver.supervision import links_for
from tests.driver_bench import make_bench
from tests.test_driver_hypothesis import DIAL_OUT, STRATEGIES, DriverMachine

SUPERVISORS = """
supervisors:
  laura: {uri: "sip:laura@192.0.2.30", queues: [support], announce: true}
  piero: {uri: "sip:piero@192.0.2.31", queues: [support, level2]}
"""
PHONES = {"laura": "192.0.2.30", "piero": "192.0.2.31", "mallory": "192.0.2.30",
          "anna": "192.0.2.10"}
"""Who dials, from where: two supervisors, a stranger at laura's address, an agent."""


class SupervisedMachine(DriverMachine):
    @precondition(lambda self: self.bench is None)
    @rule(strategy=st.sampled_from(STRATEGIES), lines=st.integers(1, 4))
    def setup(self, strategy: str, lines: int) -> None:
        self.bench = make_bench(Path(self._tmp.name), strategy=strategy, lines=lines,
                                dial_out=DIAL_OUT, config_extra=SUPERVISORS)

    @precondition(lambda self: self.bench is not None)
    @rule(data=st.data(), who=st.sampled_from(sorted(PHONES)),
          code=st.sampled_from(["*51", "*52", "*53"]))
    def supervise(self, data: st.DataObject, who: str, code: str) -> None:
        """A supervision code, mostly on an agent who is on a call."""
        on_call = sorted(leg.agent for leg in self.b.core.legs.values()
                         if leg.agent and leg.phase.value == "connected")
        agents = on_call if on_call and data.draw(st.booleans()) else ["anna", "marco", "lia"]
        agent = data.draw(st.sampled_from(agents))
        refused = len([r for r in self.b.records.values() if r.outcome == "refused"])
        leg = self.b.incoming(caller=who, called=code + agent, source=PHONES[who])
        if leg in self.b.core.supervisions:
            assert self.b.legs[leg].answered
            return
        self.calls_placed += 1  # a refused call has its record, as any placed call
        assert len([r for r in self.b.records.values() if r.outcome == "refused"]) == \
            refused + 1
        assert who not in ("laura", "piero") or not self.b.legs[leg].answered

    @invariant()
    def sessions_connect_what_their_mode_says(self) -> None:
        if self.bench is None:
            return
        made: set[tuple[str, str]] = set()
        for fx in self.b.effects:
            if isinstance(fx, m.Connect):
                made.add((fx.src, fx.dst))
            elif isinstance(fx, m.Disconnect):
                made.discard((fx.src, fx.dst))
        wanted: set[tuple[str, str]] = set()
        for sess in self.b.core.supervisions.values():
            call = self.b.core.calls[sess.call_id]
            assert call.agent_ref is not None
            agent_leg = self.b.core.legs[call.agent_ref].sip
            assert agent_leg is not None
            assert not self.b.legs[sess.leg].ended, "a session outlives its supervisor's leg"
            wanted |= links_for(sess.mode, call.leg, agent_leg, sess.leg)
        assert made == wanted

    def teardown(self) -> None:
        if self.bench is not None:
            b = self.b
            for leg in [x.leg for x in b.legs.values() if not x.ended]:
                b.end(leg, 200, "teardown")
            b.settle()
            assert not b.core.supervisions
        super().teardown()


SupervisedMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_supervised_state_machine = SupervisedMachine.TestCase

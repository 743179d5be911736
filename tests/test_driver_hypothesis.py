"""The whole driver core under random SIP events and timings (hypothesis state machine).

Callers call from numbers a callback may dial, from numbers it may not (premium) and withheld;
agents' phones send REFERs (blind and attended) to extensions, queues, numbers their rules allow
or not, also from legs that may not transfer, and now and then a transfer reaches the core after
the call moved on. Invariants after every step: the call machines and the router agree on every
caller, no agent is on two calls. At the end, once every leg has ended: every call has exactly
one closed record, no record is left in progress, and every agent is free again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ivr.driver import messages as m
from ivr.sip import events as sip
from tests.driver_bench import CALLBACK_RULES, Bench, make_bench

STRATEGIES = ("longest_idle", "ring_all", "round_robin", "top_down")
DIAL_OUT = CALLBACK_RULES + """
  - {pattern: "^06[0-9]{6,8}$", uri: "sip:{number}@192.0.2.1", agent_transfers: true}"""
"""Mobiles may be called back; agents may transfer to 06 numbers."""
CALLERS = {"mobile": "333{n:07d}", "premium": "899{n:06d}", "withheld": ""}
"""Caller IDs by kind: a callback may dial the first only."""
REFER_TO = ("sip:201@192.0.2.99", "sip:level2@192.0.2.99", "sip:support@192.0.2.99",
            "sip:0612345678@192.0.2.1", "sip:00390612345678@192.0.2.1", "sip:lia@192.0.2.12")
"""An extension, two queues, a number agents may dial, one they may not, an agent's phone."""


class DriverMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.bench: Bench | None = None
        self.calls_placed = 0

    @property
    def b(self) -> Bench:
        assert self.bench is not None
        return self.bench

    @precondition(lambda self: self.bench is None)
    @rule(strategy=st.sampled_from(STRATEGIES), lines=st.integers(1, 4))
    def setup(self, strategy: str, lines: int) -> None:
        self.bench = make_bench(Path(self._tmp.name), strategy=strategy, lines=lines,
                                dial_out=DIAL_OUT)

    def _incoming_live(self) -> list[str]:
        return [x.leg for x in self.b.legs.values() if x.incoming and not x.ended]

    def _outgoing_live(self) -> list[str]:
        return [x.leg for x in self.b.legs.values() if not x.incoming and not x.ended]

    @precondition(lambda self: self.bench is not None)
    @rule(confirm=st.booleans(), trunk_source=st.sampled_from(["192.0.2.1", "192.0.2.1",
                                                                "198.51.100.9"]),
          kind=st.sampled_from(["mobile", "mobile", "premium", "withheld"]))
    def call_in(self, confirm: bool, trunk_source: str, kind: str) -> None:
        self._place(kind, trunk_source, confirm)

    def _place(self, kind: str, source: str = "192.0.2.1", confirm: bool = True) -> str:
        live = len([c for c in self.b.core.calls.values() if c.trunk == "gw"])
        _trunk, _status, lines, _media = self.b.core.admit(source)
        self.calls_placed += 1
        if lines and live >= lines:  # the SIP layer refuses it with 486 (tested there)
            self.b.send(sip.CallRefused(source, "333", "800", 486, "Busy Here", "gw"))
            return ""
        return self.b.incoming(caller=CALLERS[kind].format(n=self.calls_placed), source=source,
                               confirm=confirm)

    @precondition(lambda self: self.bench is not None)
    @rule(kind=st.sampled_from(["mobile", "mobile", "premium", "withheld"]),
          then=st.sampled_from(["wait", "answer", "answer", "callback"]))
    def call_to_the_queue(self, kind: str, then: str) -> None:
        """A caller straight to the support queue, then an agent answers, or the caller asks
        for a callback: the states that transfers and callbacks start from, reached often."""
        leg = self._place(kind)
        if not leg:
            return
        self.b.key(leg, "1")
        ringing = self.b.ringing()
        if then == "answer" and ringing:
            self.b.answer(next(iter(ringing.values())))
        elif then == "callback":
            self.b.key(leg, "2")

    @precondition(lambda self: self.bench is not None)
    @rule(data=st.data(), digit=st.sampled_from("123789*#"))
    def key(self, data: st.DataObject, digit: str) -> None:
        legs = self._incoming_live() + self._outgoing_live()
        if legs:
            self.b.key(data.draw(st.sampled_from(legs)), digit)

    @precondition(lambda self: self.bench is not None)
    @rule(data=st.data())
    def escalate_code(self, data: st.DataObject) -> None:
        legs = self._outgoing_live()
        if legs:
            self.b.key(data.draw(st.sampled_from(legs)), "*9")

    @precondition(lambda self: self.bench is not None)
    @rule(data=st.data(), refer_to=st.sampled_from(REFER_TO), attended=st.booleans(),
          late=st.sampled_from([False, False, False, True]))
    def refer(self, data: st.DataObject, refer_to: str, attended: bool, late: bool) -> None:
        """A phone's REFER, mostly from an answered agent's leg; *late*: the SIP layer took it
        but the call moved on before the core hears of it (or took one it should not have)."""
        answered = [x for x in self._outgoing_live() if self.b.legs[x].answered]
        legs = answered if answered and data.draw(st.booleans()) else \
            self._outgoing_live() + self._incoming_live()
        if not legs:
            return
        leg = data.draw(st.sampled_from(legs))
        replaces = "a1b2%40192.0.2.10;to-tag=t1;from-tag=f1" if attended else ""
        if self.b.refer(leg, refer_to, replaces) and late:
            self.b.send(sip.TransferRequested(leg, refer_to, replaces))

    @precondition(lambda self: self.bench is not None)
    @rule(data=st.data())
    def prompt_ends(self, data: st.DataObject) -> None:
        legs = [x for x in self._incoming_live() if self.b.playing_token(x) is not None]
        if legs:
            leg = data.draw(st.sampled_from(legs))
            token = self.b.playing_token(leg)
            assert token is not None
            if token != 0:  # hold music loops: it never ends
                self.b.send(sip.PlaybackEnded(leg, token))

    @precondition(lambda self: self.bench is not None)
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        legs = [x for x in self._outgoing_live() if not self.b.legs[x].answered]
        if legs:
            self.b.answer(data.draw(st.sampled_from(legs)))

    @precondition(lambda self: self.bench is not None)
    @rule(data=st.data(), status=st.sampled_from([200, 486, 408, 487, 503]))
    def end_leg(self, data: st.DataObject, status: int) -> None:
        legs = self._incoming_live() + self._outgoing_live()
        if legs:
            self.b.end(data.draw(st.sampled_from(legs)), status, "random")

    @precondition(lambda self: self.bench is not None)
    @rule()
    def settle(self) -> None:
        self.b.settle()

    @precondition(lambda self: self.bench is not None)
    @rule(seconds=st.sampled_from([0.5, 3.0, 6.0, 11.0, 31.0]))
    def time_passes(self, seconds: float) -> None:
        self.b.run_until(self.b.now + seconds)

    @precondition(lambda self: self.bench is not None)
    @rule(ok=st.booleans())
    def bridges(self, ok: bool) -> None:
        self.b.bridge_ok = ok

    @precondition(lambda self: self.bench is not None)
    @rule(ok=st.booleans())
    def dials(self, ok: bool) -> None:
        self.b.dial_ok = ok

    @precondition(lambda self: self.bench is not None)
    @rule(agent=st.sampled_from(["anna", "marco", "lia"]),
          command=st.sampled_from(["login", "logout", "pause", "unpause"]))
    def agent_command(self, agent: str, command: str) -> None:
        self.b.send(m.AgentCommand(agent, command, "", "test"))

    @invariant()
    def machines_and_router_agree(self) -> None:
        if self.bench is not None:
            assert self.b.core.problems() == []

    @invariant()
    def no_agent_on_two_calls(self) -> None:
        if self.bench is None:
            return
        bridged: dict[str, int] = {}
        for leg in self.b.legs.values():
            # a leg the core hangs up is off the call already (its BYE is on the way)
            if not leg.incoming and not leg.ended and not leg.hangup_asked and leg.bridged_to:
                agent = leg.uri.split(":")[1].split("@")[0]
                if agent in self.b.core.router.agents:  # not a transfer destination
                    bridged[agent] = bridged.get(agent, 0) + 1
        assert all(n <= 1 for n in bridged.values()), bridged

    @invariant()
    def nothing_dialled_that_ivr_yaml_does_not_allow(self) -> None:
        if self.bench is None:
            return
        config = self.b.core.config
        fixed = {a.uri for a in config.agents.values()} | {
            e.uri for e in config.extensions.values()}
        for leg in self.b.legs.values():
            uri = leg.uri.split("?")[0]  # an attended transfer's Replaces is no destination
            if leg.incoming or uri in fixed:
                continue
            number = uri.split(":")[1].split("@")[0]
            assert uri in (config.transfer_target(number), config.callback_target(number)), uri

    def teardown(self) -> None:
        try:
            if self.bench is None:
                return
            b = self.b
            b.dial_ok = False  # nothing new is placed while everything ends
            for _ in range(20):
                for leg in self._incoming_live() + self._outgoing_live():
                    b.end(leg, 200, "teardown")
                b.settle()
                b.run_until(b.now + 400)  # callbacks expire, wrap-ups end
                if not self._incoming_live() and not self._outgoing_live() \
                        and not b.core.calls and not b.core.callbacks:
                    break
            assert not b.core.calls, "calls left after every leg ended"
            # a callback keeps its place until an agent is free; with none left to ring it
            # waits, as it should; a stop closes it
            assert all(cb.phase.value == "waiting" for cb in b.core.callbacks.values())
            b._apply(b.core.abandon(b.now))
            assert not b.core.callbacks
            assert not b.core.router.waiting
            assert not b.core.router.connected
            open_records = [r for r in b.records.values() if r.outcome == "in_progress"]
            assert open_records == []
            placed = [r for r in b.records.values() if r.source != "callback"]
            assert len(placed) == self.calls_placed, "one record per call placed"
            for agent in b.core.router.agents.values():
                assert agent.state not in ("on_call", "ringing"), agent
        finally:
            self._tmp.cleanup()


DriverMachine.TestCase.settings = settings(
    max_examples=500, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_driver_state_machine = DriverMachine.TestCase

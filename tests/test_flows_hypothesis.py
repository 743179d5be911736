"""Properties of every shipped flow under random callers: random keys, silences, prompt ends,
CRM answers, recordings and transfers, at random times, on random days of a year.

Whatever happens, the session stays in a valid state (in the IVR with a prompt playing, a
deadline or a transfer under way; or queued, transferred or ended, with its exit set), never
raises, and a caller who goes silent always leaves the IVR.
"""

import datetime as dt
import functools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.engine import (
    CallSession,
    DigitPressed,
    Enqueue,
    HangupCall,
    HttpLookup,
    LookupFinished,
    PlaybackFinished,
    PlayPrompt,
    RecordingFinished,
    SetOverrideState,
    StartRecording,
    StopPlayback,
    TimerFired,
    TransferCall,
    TransferFinished,
)
from ivr.flow import load_flow
from ivr.simulate import WAIT, Simulation

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p for p in (ROOT / "flows").rglob("*.yaml") if not p.name.endswith(".test.yaml"))
STATES = ("ivr", "queued", "transferred", "ended")
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def shipped(name):
    return load_flow(ROOT / "flows" / name)


FLOW_NAMES = [str(p.relative_to(ROOT / "flows")) for p in SHIPPED]

answers = st.one_of(
    st.none(),
    st.fixed_dictionaries({"customer": st.fixed_dictionaries({
        "name": st.text(max_size=12), "tier": st.sampled_from(["gold", "silver", ""])})}),
    st.lists(st.integers(), max_size=3),
)
events = st.one_of(
    st.tuples(st.just("key"), st.sampled_from("0123456789*#")),
    st.tuples(st.just("key"), st.sampled_from("0123456789*#")),
    st.tuples(st.just("timeout")),
    st.tuples(st.just("play_end")),
    st.tuples(st.just("play_end")),
    st.tuples(st.just("lookup"), answers),
    st.tuples(st.just("recording"), st.sampled_from(["silence", "max_length", "hangup"])),
    st.tuples(st.just("transfer"), st.booleans()),
    st.tuples(st.just("stale_play"), st.integers(0, 40)),
    st.tuples(st.just("early_timer")),
)
steps = st.lists(st.tuples(st.floats(0, 20, allow_nan=False), events), max_size=50)
start_times = st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2026, 12, 31),
                           timezones=st.just(dt.UTC))
callers = st.sampled_from(["", "3331234567", "+390612345678"])
overrides = st.dictionaries(st.just("office"), st.sampled_from(["open", "closed"]), max_size=1)


class Driver:
    """What the switchboard does for a session, without SIP: timers on time, and a record of
    what is playing and what the session waits for."""

    def __init__(self, session, switches):
        self.s = session
        self.switches = switches
        self.now = 0.0
        self.playing = None
        self.lookup = None
        self.recording = None
        self.transfer = False

    def start(self):
        self.apply(self.s.start(self.now), "new")

    def advance(self, seconds):
        target = self.now + seconds
        while (deadline := self.s.next_deadline()) is not None and deadline <= target:
            self.now = max(self.now, deadline)
            self.deliver(TimerFired())
        self.now = target

    def deliver(self, event):
        before = self.s.state
        if isinstance(event, PlaybackFinished) and event.play_id == self.playing:
            self.playing = None
        elif isinstance(event, LookupFinished):
            self.lookup = None
        elif isinstance(event, RecordingFinished):
            self.recording = None
        elif isinstance(event, TransferFinished):
            self.transfer = False
        actions = self.s.handle(event, self.now)
        if before != "ivr":
            assert actions == [], "a session out of the IVR acts on an event"
        self.apply(actions, before)

    def apply(self, actions, before):  # noqa: C901 - one arm per action kind
        for action in actions:
            if isinstance(action, PlayPrompt):
                self.playing = action.play_id
            elif isinstance(action, StopPlayback):
                if self.playing == action.play_id:
                    self.playing = None
            elif isinstance(action, HttpLookup):
                self.lookup = action.request_id
            elif isinstance(action, StartRecording):
                self.recording = action.recording_id
            elif isinstance(action, TransferCall):
                self.transfer = True
            elif isinstance(action, SetOverrideState):
                if action.state == "auto":
                    self.switches.pop(action.override, None)
                else:
                    self.switches[action.override] = action.state
        kinds = [type(a) for a in actions]
        if before == "ivr" or before == "new":
            if self.s.state == "queued":
                assert Enqueue in kinds
            if self.s.state == "ended":
                assert HangupCall in kinds
        self.check()

    def check(self):
        s = self.s
        assert s.state in STATES
        if s.state == "ivr":
            assert self.playing is not None or s.next_deadline() is not None or self.transfer, \
                f"stuck at {s.path_text()}: no prompt, no deadline, no transfer"
            # a voicemail node with a 'next' sets exit to the message and the call goes on
            assert not s.exit or set(s.exit) == {"voicemail"}
        else:
            assert s.next_deadline() is None
            assert s.exit, f"{s.state} without an exit"
        if s.state == "queued":
            assert s.exit == {"queue": s.queue}
        elif s.state == "transferred":
            assert set(s.exit) == {"transfer"}
        elif s.state == "ended":
            assert "hangup" in s.exit
            assert set(s.exit) <= {"hangup", "voicemail"}

    def step(self, kind, *arg):
        if kind == "key":
            self.deliver(DigitPressed(arg[0]))
        elif kind == "timeout":
            deadline = self.s.next_deadline()
            if deadline is not None:
                self.advance(max(0.0, deadline - self.now))
        elif kind == "play_end" and self.playing is not None:
            self.deliver(PlaybackFinished(self.playing))
        elif kind == "lookup" and self.lookup is not None:
            self.deliver(LookupFinished(self.lookup, arg[0], "" if arg[0] is not None else "err"))
        elif kind == "recording" and self.recording is not None:
            self.deliver(RecordingFinished(self.recording, "vm.wav", 4.0, arg[0]))
        elif kind == "transfer" and self.transfer:
            self.deliver(TransferFinished(arg[0]))
        elif kind == "stale_play":
            self.deliver(PlaybackFinished(arg[0]))
        elif kind == "early_timer":
            self.deliver(TimerFired())

    def silence(self, limit=500):
        """The caller stays silent; everything else answers. Returns when the call has left the
        IVR, or after *limit* steps."""
        for _ in range(limit):
            if self.s.state != "ivr":
                return
            if self.playing is not None:
                self.deliver(PlaybackFinished(self.playing))
            elif self.recording is not None:
                self.deliver(RecordingFinished(self.recording, "vm.wav", 4.0, "silence"))
            elif self.transfer:
                self.deliver(TransferFinished(False, "no answer"))
            elif self.s.next_deadline() is not None:
                self.advance(max(0.0, self.s.next_deadline() - self.now))
            else:
                raise AssertionError(f"stuck at {self.s.path_text()}")


def new_call(name, when, caller, switches):
    session = CallSession(shipped(name), "c1", caller=caller, called="800123456",
                          started_at=when, overrides=switches)
    driver = Driver(session, switches)
    driver.start()
    return driver


def test_there_are_shipped_flows():
    assert {"demo.yaml", "office.yaml"} <= set(FLOW_NAMES)


@pytest.mark.parametrize("name", FLOW_NAMES)
@SETTINGS
@given(when=start_times, caller=callers, switches=overrides, script=steps)
def test_random_events_leave_the_session_in_a_valid_state(name, when, caller, switches, script):
    driver = new_call(name, when, caller, dict(switches))
    for pause, (kind, *arg) in script:
        driver.advance(pause)
        driver.step(kind, *arg)


@pytest.mark.parametrize("name", FLOW_NAMES)
@SETTINGS
@given(when=start_times, caller=callers, switches=overrides, script=steps)
def test_a_silent_caller_leaves_the_ivr_and_an_ended_call_has_its_exit(name, when, caller,
                                                                       switches, script):
    driver = new_call(name, when, caller, dict(switches))
    for pause, (kind, *arg) in script:
        driver.advance(pause)
        driver.step(kind, *arg)
    driver.silence()
    session = driver.s
    assert session.state in ("queued", "transferred", "ended"), session.path_text()
    if session.state == "ended":
        assert session.exit
        assert (session.exit.get("hangup") or session.exit.get("voicemail"))


tokens = st.lists(st.one_of(st.just(WAIT), st.text("0123456789*#", min_size=1, max_size=4)),
                  max_size=12)


@pytest.mark.parametrize("name", FLOW_NAMES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(when=start_times, caller=callers, script=tokens, barge_in=st.booleans(),
       crm=st.one_of(st.none(), st.just("timeout"), answers))
def test_simulated_calls_always_finish(name, when, caller, script, barge_in, crm):
    sim = Simulation(shipped(name), caller=caller, called="800123456", started_at=when,
                     lookups={"crm": crm}, barge_in=barge_in)
    result = sim.run(script)
    assert result.state in ("queued", "transferred", "ended")
    assert result.exit
    assert result.path.split(" > ")[0].startswith(shipped(name).start)
    times = [line.at for line in result.transcript]
    assert times == sorted(times)

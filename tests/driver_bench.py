"""A test bench for the driver's core: a fake SIP layer that records effects, time by hand.

The bench plays the executor's part: it carries effects out on a model of SIP legs (dials make
legs ``O1``, ``O2``...; bridges hold unless told otherwise), keeps the last saved version of
every call record, and sends back what the executor would (``Dialled``, ``Bridged``). Hang-ups
are only asked for: :meth:`Bench.settle` delivers the ``LegEnded`` events that SIP would send
next, as a real poll would, so tests can also race them against other events.
"""

from __future__ import annotations

import itertools
import textwrap
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.config import load_config
from ivr.driver import messages as m
from ivr.driver.core import Core
from ivr.flow import load_flow
from ivr.sip import events as sip
from ivr.store import CallRecord

CONFIG = """
sip: {{listen: 127.0.0.1:5999}}
trunks:
  gw: {{sources: [192.0.2.1], lines: {lines}}}
agents:
  anna: {{uri: "sip:anna@192.0.2.10"}}
  marco: {{uri: "sip:marco@192.0.2.11"}}
  lia: {{uri: "sip:lia@192.0.2.12"}}
queues:
  support: {{agents: [anna, marco], ring_timeout: 10, strategy: {strategy}, wrap_up: 0}}
  level2: {{agents: [lia], ring_timeout: 10, wrap_up: 0}}
extensions:
  "201": {{uri: "sip:reception@192.0.2.20"}}
{dial_out}
flow: flow.yaml
store: calls.db
"""

CALLBACK_RULES = """\
dial_out:
  - {pattern: "^3[0-9]{8,9}$", uri: "sip:{number}@192.0.2.1", callbacks: true}"""
"""The bench's dial_out: mobile numbers may be called back (its callers call from 333...)."""

FLOW = """
flow: bench
languages: [en]
start: menu
nodes:
  menu:
    type: menu
    prompt: {say: "One for support, two for reception, three for a message."}
    options: {"1": support, "2": reception, "3": message, "9": bye}
    timeout: 5
    max_timeouts: 2
    max_invalid: 2
    on_failure: bye
  support:
    type: queue
    queue: support
    exit_keys: {"2": callback, "3": bye}
  reception:
    type: transfer
    to: "201"
    on_failure: bye
  message:
    type: voicemail
    prompt: {say: "Leave a message."}
    next: bye
  bye: {type: hangup, prompt: {say: "Goodbye."}}
"""


@dataclass
class LegModel:
    leg: str
    uri: str = ""
    incoming: bool = False
    answered: bool = False
    hangup_asked: bool = False
    ended: bool = False
    playing: tuple[str, ...] = ()
    bridged_to: str | None = None


@dataclass
class Bench:
    core: Core
    now: float = 0.0
    legs: dict[str, LegModel] = field(default_factory=dict)
    records: dict[str, CallRecord] = field(default_factory=dict)
    saves: list[CallRecord] = field(default_factory=list)
    effects: list[m.Effect] = field(default_factory=list)
    lookups: list[m.StartLookup] = field(default_factory=list)
    renders: list[m.RenderPrompt] = field(default_factory=list)
    bridge_ok: bool = True
    dial_ok: bool = True
    _out: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _in: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- sending -------------------------------------------------------------------------------
    def send(self, message: m.Message) -> list[m.Effect]:
        """Feed *message* and carry out the effects, and the answers they give, like the loop."""
        done: list[m.Effect] = []
        pending: deque[m.Message] = deque([message])
        while pending:
            effects = self.core.handle(pending.popleft(), self.now)
            done += effects
            pending.extend(self._apply(effects))
        return done

    def tick(self, seconds: float = 0.0) -> list[m.Effect]:
        self.now += seconds
        return self.send(m.Tick())

    def run_until(self, until: float) -> None:
        """Fire every due timer until *until*, as the loop would."""
        while True:
            deadline = self.core.next_deadline()
            if deadline is None or deadline > until:
                break
            self.now = max(self.now, deadline)
            self.send(m.Tick())
        self.now = until
        self.send(m.Tick())

    def settle(self) -> None:
        """Deliver the ends of legs the core asked to hang up (what the next poll reports)."""
        while True:
            todo = [leg for leg in self.legs.values() if leg.hangup_asked and not leg.ended]
            if not todo:
                return
            for leg in todo:
                self.end(leg.leg, 200 if leg.answered else 487, "Hung up")

    # -- what SIP reports ----------------------------------------------------------------------
    def incoming(self, caller: str = "3331234567", called: str = "800",
                 source: str = "192.0.2.1", confirm: bool = True) -> str:
        trunk, status, _lines, _media = self.core.admit(source)
        leg = f"L{next(self._in)}"
        if trunk is None or status != 200:
            self.send(sip.CallRefused(source, caller, called, status, "refused", trunk or ""))
            return ""
        self.legs[leg] = LegModel(leg, incoming=True)
        self.send(sip.IncomingCall(leg, source, trunk, caller, called))
        if confirm and self.legs[leg].answered:
            self.send(sip.CallConfirmed(leg))
        return leg

    def key(self, leg: str, digits: str) -> None:
        for digit in digits:
            self.send(sip.DigitReceived(leg, digit, "rfc2833"))

    def prompt_done(self, leg: str) -> None:
        """The prompt playing to *leg* ended."""
        token = self.playing_token(leg)
        assert token is not None, f"nothing plays to {leg}"
        self.send(sip.PlaybackEnded(leg, token))

    def answer(self, leg: str) -> None:
        self.legs[leg].answered = True
        self.send(sip.LegAnswered(leg))

    def end(self, leg: str, status: int = 200, reason: str = "BYE") -> None:
        model = self.legs[leg]
        if model.ended:
            return
        model.ended = True
        if model.bridged_to and model.bridged_to in self.legs:
            self.legs[model.bridged_to].bridged_to = None
        self.send(sip.LegEnded(leg, status, reason))

    def refer(self, leg: str, refer_to: str, replaces: str = "") -> str:
        """The phone on *leg* sends a REFER: the SIP layer asks the core, and reports the
        transfer it took. Returns the refusal ('' when taken)."""
        why = self.core.transfer_refusal(leg, refer_to)
        if not why:
            self.send(sip.TransferRequested(leg, refer_to, replaces))
        return why

    # -- looking -------------------------------------------------------------------------------
    def ringing(self) -> dict[str, str]:
        """Agent (user part of the URI) -> leg, for dialled legs still ringing."""
        return {leg.uri.split(":")[1].split("@")[0]: leg.leg for leg in self.legs.values()
                if not leg.incoming and not leg.answered and not leg.ended
                and not leg.hangup_asked}

    def live(self) -> list[str]:
        return [leg.leg for leg in self.legs.values() if not leg.ended]

    def playing_token(self, leg: str) -> int | None:
        for fx in reversed(self.effects):
            if isinstance(fx, m.Play) and fx.leg == leg:
                return fx.token
            if isinstance(fx, m.StopPlay) and fx.leg == leg:
                return None
        return None

    def record_of(self, leg_or_id: str) -> CallRecord:
        if leg_or_id in self.records:
            return self.records[leg_or_id]
        call_ids = [c.call_id for c in self.core.calls.values() if c.leg == leg_or_id]
        assert call_ids, f"no call on {leg_or_id}"
        return self.records[call_ids[0]]

    def outcomes(self) -> dict[str, str]:
        return {r.call_id: r.outcome for r in self.records.values()}

    # -- the executor's part -------------------------------------------------------------------
    def _apply(self, effects: list[m.Effect]) -> list[m.Message]:  # noqa: C901
        back: list[m.Message] = []
        for fx in effects:
            self.effects.append(fx)
            if isinstance(fx, m.AnswerLeg):
                self.legs[fx.leg].answered = True
            elif isinstance(fx, m.HangupLeg):
                if fx.leg in self.legs:
                    self.legs[fx.leg].hangup_asked = True
            elif isinstance(fx, m.Dial):
                if not self.dial_ok:
                    back.append(m.Dialled(fx.ref, None))
                    continue
                leg = f"O{next(self._out)}"
                self.legs[leg] = LegModel(leg, uri=fx.uri)
                back.append(m.Dialled(fx.ref, leg))
            elif isinstance(fx, m.Play):
                self.legs[fx.leg].playing = fx.files
            elif isinstance(fx, m.Bridge):
                ok = self.bridge_ok and all(
                    x in self.legs and not self.legs[x].ended for x in (fx.a, fx.b))
                if ok:
                    self.legs[fx.a].bridged_to = fx.b
                    self.legs[fx.b].bridged_to = fx.a
                back.append(m.Bridged(fx.a, fx.b, ok))
            elif isinstance(fx, m.SaveRecord):
                self.records[fx.record.call_id] = fx.record
                self.saves.append(fx.record)
            elif isinstance(fx, m.StartLookup):
                self.lookups.append(fx)
            elif isinstance(fx, m.RenderPrompt):
                self.renders.append(fx)
        return back


def files_for(pieces: tuple[Any, ...]) -> tuple[str, ...] | None:
    """Every piece is 'rendered' except free text, as after PromptLibrary.prepare()."""
    if any(getattr(p, "kind", "") == "text" for p in pieces):
        return None
    return tuple(f"{p.kind}:{p.value}" for p in pieces) or ("silence",)


def make_bench(tmp_path: Path, flow: str = FLOW, lines: int = 30,
               strategy: str = "longest_idle", config_extra: str = "",
               dial_out: str = CALLBACK_RULES) -> Bench:
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(flow))
    (tmp_path / "ivr.yaml").write_text(CONFIG.format(lines=lines, strategy=strategy,
                                                     dial_out=dial_out) + config_extra)
    config = load_config(tmp_path / "ivr.yaml")
    flow_obj = load_flow(tmp_path / "flow.yaml", known_queues=config.queues)
    ids = itertools.count(1)
    core = Core(config, flow_obj, files_for=files_for, music_on_hold="moh.wav", now=0.0,
                wall_offset=1_800_000_000.0, beep="beep.wav", new_id=lambda: f"c{next(ids)}")
    return Bench(core)

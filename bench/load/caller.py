"""A caller process of the load bench: places its share of the calls, presses keys, listens.

    python -m bench.load.caller PLAN.json

The plan (written by :mod:`bench.load.run`) gives this process its SIP and RTP ports, the
switchboard's URI, and per call: when to dial, which keys to press when, and whether to dial
again after the call ends (a caller sent to an agent hangs up and calls back: calls end and
start while the others listen). Its times are seconds from the start of the round, which the
bench writes on stdin once every peer is ready; everything stamped is ``time.monotonic()``,
one clock for every process of the machine.

What it stamps, per call:

- ``invite``: the INVITE sent (makeCall returned), ``confirmed``: the 200 OK taken (ACK sent).
- per key: the call to ``sendDtmf`` and the frame tick its first RFC 4733 packet went out at
  (the next tick of the peer's clock, :class:`~bench.load.peer.FrameClock`).
- ``next_latency``: from that tick to the tick of the first frame of the next prompt heard
  (a level of ``next_level`` or more).
- gaps: every run of silent frames while the menu prompt plays (from its first frame heard to
  the next key or the end) and while the agent's tone plays (from its first frame to the end
  of the call), counted in frames; the wait after a key and the music on hold are not.
- the process's own stalls: loop turns longer than ``STALL_S`` (the peer could not read its
  sockets meanwhile, so a gap that overlaps one may be the peer's own), and its frame clock's
  health (ticks it missed, the longest interval between two ticks).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pjsua2 as pj

from bench.load.peer import FRAME_S, Endpoint, FrameClock, emit, take_signals

LEVEL_EVERY_S = 0.002
"""How often each call's last frame level is read."""

STALL_S = 0.010
"""A loop turn longer than this is recorded as the process's own stall."""

NEXT_TIMEOUT_S = 3.0

LISTENING = ("menu", "agent")
"""The states in which silence is a gap: the menu prompt, the agent's tone."""
"""A key 2 with no next prompt heard within this long counts as missing."""


@dataclass
class Record:
    """One call as this process saw it."""

    id: str
    plan: dict[str, Any]
    invite: float | None = None
    confirmed: float | None = None
    ended: float | None = None
    code: int = 0
    ended_by: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    next_latency: list[float | None] = field(default_factory=list)
    gaps: list[tuple[float, float, str]] = field(default_factory=list)
    """(tick the silence began, its length in s, 'menu' or 'agent') for every run of two
    frames or more."""
    max_gap: dict[str, float] = field(default_factory=lambda: {"menu": 0.0, "agent": 0.0})
    listened: dict[str, float] = field(default_factory=lambda: {"menu": 0.0, "agent": 0.0})
    """Seconds of menu prompt, and of agent's audio, over which gaps were measured."""

    # listening state: wait_audio -> menu (listening) -> await_next -> next -> menu ...
    #                                 menu -> queue -> agent (listening)
    state: str = "wait_audio"
    gap_from: int | None = None
    """The tick of the first silent frame of the gap going on."""
    armed_at: float | None = None
    key_tick: int = 0
    key_sent: float = 0.0
    pending_keys: list[tuple[float, str]] = field(default_factory=list)
    hangup_at: float | None = None

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "invite": self.invite, "confirmed": self.confirmed,
                "ended": self.ended, "code": self.code, "ended_by": self.ended_by,
                "keys": self.keys, "next_latency": self.next_latency, "gaps": self.gaps,
                "max_gap": {k: round(v, 4) for k, v in self.max_gap.items()},
                "listened": {k: round(v, 3) for k, v in self.listened.items()}}


class Call(pj.Call):
    def __init__(self, caller: Caller, record: Record):
        super().__init__(caller.account)
        self.caller = caller
        self.record = record
        self.audio: pj.AudioMedia | None = None
        self.done = False

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        now = time.monotonic()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.record.confirmed is None:
            self.record.confirmed = now
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.done:
            self.done = True
            self.record.ended = now
            self.record.code = info.lastStatusCode
            if not self.record.ended_by:
                self.record.ended_by = "remote"
            self.caller.ended(self)

    def onCallMediaState(self, prm: Any) -> None:
        if self.audio is not None:
            return
        info = self.getInfo()  # held: the media list points into it
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.audio = self.getAudioMedia(media.index)
                # Sent to the null device so that the bridge takes (and levels) every frame.
                self.audio.startTransmit(self.caller.endpoint.sink())


class Caller:
    def __init__(self, plan: dict[str, Any]):
        self.plan = plan
        self.endpoint = Endpoint(plan["sip_port"])
        self.account = pj.Account()
        self.account.create(self.endpoint.account_config(
            plan["name"], plan["sip_port"], plan["rtp_port"]), True)
        self.clock = FrameClock(self.endpoint, Path(plan["workdir"]))
        self.silence = int(plan["silence_level"])
        self.loud = int(plan["next_level"])
        self.agent_top = int(plan["agent_level"])
        self.todo: list[tuple[float, dict[str, Any]]] = []
        self.calls: list[Call] = []
        self.records: list[Record] = []
        self.stalls: list[tuple[float, float]] = []
        self.ambiguous_keys = 0

    # -- calls ---------------------------------------------------------------------------------
    def dial(self, spec: dict[str, Any]) -> None:
        record = Record(spec["id"], spec)
        record.pending_keys = sorted((t, d) for t, d in spec.get("keys", []))
        self.records.append(record)
        call = Call(self, record)
        try:
            call.makeCall(self.plan["target"], pj.CallOpParam(True))
        except Exception as exc:  # noqa: BLE001 - pjsua2 raises its own Error type
            record.ended = time.monotonic()
            record.ended_by = f"makeCall: {exc}"
            return
        record.invite = time.monotonic()
        self.calls.append(call)

    def ended(self, call: Call) -> None:
        now = time.monotonic()
        self._stop_listening(call.record, now)
        spec = call.record.plan
        redial_at = now + float(spec.get("redial_gap", 0.3))
        if spec.get("redial") and redial_at < self.plan["end"] - 2.0:
            again = {"id": spec["id"] + "r", "at": redial_at}
            self.todo.append((redial_at, again))
            self.todo.sort(key=lambda item: item[0])

    def press(self, call: Call, digit: str, now: float) -> None:
        prm = pj.CallSendDtmfParam()
        prm.digits = digit
        prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
        self.clock.observe(time.monotonic())
        before = self.clock.count
        call.sendDtmf(prm)
        # The key goes out at the next tick; one that came while sendDtmf ran may have been
        # too early for it (counted: the key is then timed at the tick after).
        ticked = self.clock.observe(time.monotonic())
        self.ambiguous_keys += ticked
        record = call.record
        tick = before + 1 + ticked
        record.keys.append({"digit": digit, "sent": now, "tick": tick})
        self._stop_listening(record, now)
        record.key_tick = tick
        record.key_sent = now
        if digit == "2":
            record.state = "await_next"
        else:
            record.state = "queue"
            record.hangup_at = now + float(record.plan.get("hold_after_1", 1.5))

    # -- listening -----------------------------------------------------------------------------
    def _stop_listening(self, record: Record, now: float) -> None:
        if record.armed_at is not None and record.state in LISTENING:
            record.listened[record.state] += now - record.armed_at
        record.armed_at = None
        record.gap_from = None

    def _arm(self, record: Record, state: str, now: float) -> None:
        record.state = state
        record.armed_at = now
        record.gap_from = None

    def listen(self, call: Call, level: int, tick: int, now: float) -> None:
        """The level of the frame the call heard at tick *tick* (read at *now*)."""
        record = call.record
        state = record.state
        if state in LISTENING:
            self._gap(record, level, tick)
        elif state == "wait_audio":
            if level > self.silence:
                self._arm(record, "menu", now)
        elif state == "await_next":
            if level >= self.loud and tick > record.key_tick:
                heard, sent = self.clock.time_of(tick), self.clock.time_of(record.key_tick)
                assert heard is not None
                assert sent is not None
                record.next_latency.append(heard - sent)
                record.state = "next"
            elif now - record.key_sent > NEXT_TIMEOUT_S:
                record.next_latency.append(None)
                record.state = "next"
        elif state == "next":
            if self.silence < level < self.loud:
                self._arm(record, "menu", now)  # the menu prompt again: listen from here
        elif state == "queue" and self.silence < level <= self.agent_top:
            self._arm(record, "agent", now)  # music on hold is louder: this is the agent

    def _gap(self, record: Record, level: int, tick: int) -> None:
        if level <= self.silence:
            if record.gap_from is None:
                record.gap_from = tick
            return
        if record.gap_from is not None:
            length = (tick - record.gap_from) * FRAME_S
            if tick - record.gap_from >= 2:
                began = self.clock.time_of(record.gap_from) or 0.0
                record.gaps.append((round(began, 4), round(length, 4), record.state))
            record.max_gap[record.state] = max(record.max_gap[record.state], length)
            record.gap_from = None

    # -- the loop ------------------------------------------------------------------------------
    def levels(self, live: list[Call]) -> None:
        """Read the level of every listening call's last frame. A pass during which the clock
        ticked is dropped (its levels are of two different frames): the next one, a couple of
        milliseconds later, reads the same frames."""
        calls = [c for c in live if c.audio is not None and not c.done]
        self.clock.observe(time.monotonic())
        # pjsua2's "tx" level is what the call's port gives the bridge: the audio it received
        read = [c.audio.getTxLevel() for c in calls]  # type: ignore[union-attr]
        now = time.monotonic()
        if self.clock.observe(now):
            return
        for call, level in zip(calls, read, strict=True):
            self.listen(call, level, self.clock.count, now)

    def run(self) -> None:  # noqa: C901 - the one loop: dial, keys, levels, hang-ups, progress
        end = float(self.plan["end"])
        last = time.monotonic()
        next_level = next_progress = last
        while True:
            self.endpoint.poll()
            now = time.monotonic()
            self.clock.observe(now)
            if now - last > STALL_S:
                self.stalls.append((round(last, 4), round(now - last, 4)))
            last = now
            if now >= end:
                break
            while self.todo and self.todo[0][0] <= now:
                self.dial(self.todo.pop(0)[1])
            live = [c for c in self.calls if not c.done]
            for call in live:
                record = call.record
                if record.confirmed is None:
                    continue
                while record.pending_keys and record.pending_keys[0][0] <= now:
                    self.press(call, record.pending_keys.pop(0)[1], now)
                if record.hangup_at is not None and now >= record.hangup_at:
                    record.hangup_at = None
                    record.ended_by = "local"
                    call.hangup(pj.CallOpParam())
            if now >= next_level:
                next_level = now + LEVEL_EVERY_S
                self.levels(live)
            if now >= next_progress:
                next_progress = now + 1.0
                up = sum(1 for c in live if c.record.confirmed is not None)
                emit("progress", name=self.plan["name"], up=up, placed=len(self.records))
        for call in self.calls:
            if not call.done:
                self._stop_listening(call.record, end)
                call.record.ended_by = call.record.ended_by or "end"

    def result(self) -> dict[str, Any]:
        for record in self.records:
            for key in record.keys:
                key["first_packet"] = self.clock.time_of(key["tick"])
        return {"name": self.plan["name"], "calls": [r.summary() for r in self.records],
                "stalls": self.stalls, "ticks_missed": self.clock.missed,
                "longest_tick": self.clock.longest_tick, "ambiguous_keys": self.ambiguous_keys,
                "cpu_s": time.process_time()}

    def close(self) -> None:
        self.endpoint.shutdown([self.calls])
        del self.clock
        self.account.shutdown()
        self.endpoint.ep.libDestroy()


def shift_plan(plan: dict[str, Any], t0: float) -> None:
    """The plan's times are seconds from the start of the round: make them monotonic times."""
    plan["end"] += t0
    for spec in plan["calls"]:
        spec["at"] += t0
        spec["keys"] = [(t + t0, digit) for t, digit in spec.get("keys", [])]


def main() -> int:
    take_signals()
    plan = json.loads(Path(sys.argv[1]).read_text())
    caller = Caller(plan)
    try:
        emit("ready", name=plan["name"])
        shift_plan(plan, float(sys.stdin.readline()))
        caller.todo = sorted(((c["at"], c) for c in plan["calls"]), key=lambda item: item[0])
        caller.clock.restart()
        caller.run()
        result = caller.result()
    except KeyboardInterrupt:
        emit("error", name=plan["name"], message="interrupted")
        return 130
    finally:
        caller.close()
    emit("result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

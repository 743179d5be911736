"""End to end with an independent SIP client: baresip calls the switchboard, hears the welcome,
presses keys by RFC 4733, waits in the support queue and is put through to an agent's headset
(a second baresip, answering automatically). Audio must flow both ways, and only between them.

Each end sends its own steady tone (tests/support/audio.py says why these frequencies), and
the test asks of each 100 ms of what each end recorded which tones it holds: a yes/no answer
that a busy machine does not blur, where comparing speech envelopes gave a score that did.
Every wait is for something to happen (a SIP event, audio arriving, a metric, a log line).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e import (
    Switchboard,
    free_tcp_port,
    free_udp_port,
    require_baresip,
    require_sip_stack,
)
from tests.support.audio import AGENT_TONE_HZ, CALLER_TONE_HZ, ToneTrack, make_tone_wav
from tests.support.baresip import Baresip, free_port

pytestmark = pytest.mark.e2e

TONES = (CALLER_TONE_HZ, AGENT_TONE_HZ)
TALK_S = 3.0
"""Seconds of each other's tone both ends must hear before the caller hangs up."""
MARGIN_S = 1.0
"""Slack around the moment the agent answered, as a place in the caller's recording (what its
recorder had written when the test saw the answer): scheduling may blur it that much."""
STRAY_S = 0.3
"""A tone heard for less than this in a row counts as a stray window, not as the tone."""


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    require_baresip()
    folder = tmp_path_factory.mktemp("tones")
    # aufile ends the call at the end of its file: far longer than any call here
    return (make_tone_wav(folder / "caller.wav", CALLER_TONE_HZ, 120),
            make_tone_wav(folder / "agent.wav", AGENT_TONE_HZ, 120))


def test_baresip_caller_reaches_agent_and_audio_flows_both_ways(
        tmp_path: Path, tones: tuple[Path, Path]) -> None:
    require_sip_stack()
    caller_src, agent_src = tones
    agent_port = free_port()
    board = Switchboard(tmp_path / "ivr", free_udp_port(), free_tcp_port(),
                        agents={"anna": agent_port})
    board.workdir.mkdir()
    board.start()
    agent = Baresip(tmp_path / "agent", agent_port, free_port(), user="anna",
                    answermode="auto", audio_source_wav=agent_src, record=True)
    caller = Baresip(tmp_path / "caller", free_port(), free_port(), user="3330002222",
                     audio_source_wav=caller_src, record=True)
    try:
        with agent, caller:
            caller.dial(board.uri)
            caller.wait_event("CALL_ESTABLISHED", timeout=10)
            heard_by_caller = caller.listen(TONES)
            # the welcome is playing: the caller hears sound before pressing any key
            caller.wait_heard(None, 1.0, timeout=10)
            keys_at = heard_by_caller.seconds_so_far
            caller.send_digit("2")      # English
            board.wait_for_log(": key 2 (rfc2833)", timeout=10)
            caller.send_digit("1")      # support
            digit_sent = time.monotonic()
            agent.wait_event("CALL_ESTABLISHED", timeout=20)
            agent_up = time.monotonic()
            # how much the caller's recorder had written when the agent answered
            answered_at = heard_by_caller.poll().duration_s
            board.wait_for_log("connected to agent anna")
            assert board.metric("ivr_calls_in_progress") == 1.0
            # talk: until each has heard the other's tone long enough
            agent.listen(TONES)
            agent.wait_heard(CALLER_TONE_HZ, TALK_S, timeout=20)
            caller.wait_heard(AGENT_TONE_HZ, TALK_S, timeout=20)
            caller.hangup()
            caller.wait_event("CALL_CLOSED", timeout=10)
            agent.wait_event("CALL_CLOSED", timeout=10)
            board.wait_for_log("ended: completed")
            assert board.metric("ivr_calls_total", {"outcome": "completed"}) == 1.0
            assert board.metric("ivr_calls_in_progress") == 0.0
            caller_rec = caller.wait_recordings(1, timeout=10)[0]
            agent_rec = agent.wait_recordings(1, timeout=10)[0]
    finally:
        board.stop()
    print(f"RFC 4733: digit '1' -> agent answered {(agent_up - digit_sent) * 1000:.0f} ms "
          "(hold prompt included)")

    # What the caller heard, from the closed recording: prompts, then the agent's tone only
    # once the agent had answered, and never their own tone (no echo through the bridge).
    by_caller = ToneTrack.of_wav(caller_rec.received, TONES)
    by_agent = ToneTrack.of_wav(agent_rec.received, TONES)
    # Where the answer lies in the caller's recording, twice: what the caller's recorder had
    # written when the test saw the answer (late if the test was slow to look), and the
    # caller's recording less the agent's, which began at the answer and ended with the call
    # (early if the agent's hang-up came late). The earlier of the two keeps the check of
    # "nothing of the agent before the answer" on the safe side of both.
    answered_at = min(answered_at, by_caller.duration_s - by_agent.duration_s)
    print(f"caller heard {by_caller.timeline()}\nkeys from {keys_at:.1f} s, agent answered "
          f"at {answered_at:.1f} s\nagent heard {by_agent.timeline()}")
    before = by_caller.between(0.0, answered_at - MARGIN_S)
    assert before.duration_s >= 1.0, by_caller.timeline()  # welcome, menu and hold prompt
    assert before.longest_run_s(AGENT_TONE_HZ) < STRAY_S, before.timeline()
    bridged = by_caller.first_s(AGENT_TONE_HZ, min_run_s=STRAY_S)
    assert bridged is not None, by_caller.timeline()
    assert bridged >= answered_at - MARGIN_S, by_caller.timeline()
    connected = by_caller.between(bridged, by_caller.duration_s - 0.5)
    assert connected.duration_s >= TALK_S - 0.5, by_caller.timeline()
    assert connected.fraction(AGENT_TONE_HZ) >= 0.9, connected.timeline()
    assert by_caller.longest_run_s(CALLER_TONE_HZ) < STRAY_S, by_caller.timeline()

    # What the agent heard: the caller's tone from the bridge on, and never their own.
    from_caller = by_agent.first_s(CALLER_TONE_HZ, min_run_s=STRAY_S)
    assert from_caller is not None, by_agent.timeline()
    talk = by_agent.between(from_caller, by_agent.duration_s - 0.5)
    assert talk.duration_s >= TALK_S - 0.5, by_agent.timeline()
    assert talk.fraction(CALLER_TONE_HZ) >= 0.9, by_agent.timeline()
    assert by_agent.longest_run_s(AGENT_TONE_HZ) < STRAY_S, by_agent.timeline()

    (record,) = board.records()
    assert record["ivr_path"] == "welcome[2] > main[1] > support"
    assert record["queue"] == "support"
    assert record["agent"] == "anna"
    assert record["outcome"] == "completed"
    assert record["end_reason"] == "caller hung up"
    assert record["caller"] == "3330002222"
    assert isinstance(record["talk_seconds"], float)
    assert record["talk_seconds"] >= TALK_S - 0.5
    # answered at the first ring (ring_timeout is 15 s)
    assert isinstance(record["wait_seconds"], float)
    assert record["wait_seconds"] < 15.0
    started, answered, queued, connected_at, ended = (float(str(record[k])) for k in (
        "started_at", "answered_at", "queued_at", "connected_at", "ended_at"))
    # the answer may carry the arrival's own time (one step of the call machine)
    assert started <= answered < queued < connected_at < ended, record

"""End to end with an independent SIP client: baresip calls the switchboard, hears the welcome,
presses keys by RFC 4733, waits in the support queue and is put through to an agent's headset
(a second baresip, answering automatically). Audio must flow both ways."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import pytest

from ivr.engine.session import resolve
from ivr.flow import load_flow
from ivr.prompts import PromptLibrary
from tests.e2e import ROOT, Switchboard, free_tcp_port, free_udp_port, require_sip_stack
from tests.support.audio import (
    best_envelope_correlation,
    make_long_source,
    tracked_envelope_correlation,
)
from tests.support.baresip import Baresip, free_port

pytestmark = pytest.mark.e2e


def trim_wav(source: Path, target: Path, start_s: float, length_s: float | None = None) -> Path:
    with wave.open(str(source), "rb") as w:
        rate = w.getframerate()
        w.setpos(min(w.getnframes(), int(start_s * rate)))
        frames = w.readframes(w.getnframes() if length_s is None else int(length_s * rate))
        params = w.getparams()
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        out.writeframes(frames)
    return target


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    d = tmp_path_factory.mktemp("voices")
    caller = make_long_source(d / "caller.wav", 90, voice="en",
                              text="Hello, my printer shows a red light and will not print "
                                   "my invoices this morning.")
    agent = make_long_source(d / "agent.wav", 90, voice="it",
                             text="Buongiorno, sono Anna dell'assistenza tecnica, "
                                  "come posso aiutarla oggi?")
    return caller, agent


def test_baresip_caller_reaches_agent_and_audio_flows_both_ways(tmp_path, voices):
    require_sip_stack()
    caller_src, agent_src = voices
    agent_port = free_port()
    board = Switchboard(tmp_path / "ivr", free_udp_port(), free_tcp_port(),
                        agents={"anna": agent_port})
    board.workdir.mkdir()
    board.start()
    agent = Baresip(tmp_path / "agent", agent_port, free_port(), user="anna",
                    answermode="auto", audio_source_wav=agent_src, record=True)
    caller = Baresip(tmp_path / "caller", free_port(), free_port(), user="caller",
                     audio_source_wav=caller_src, record=True)
    try:
        with agent, caller:
            caller.dial(board.uri)
            caller.wait_event("CALL_ESTABLISHED", timeout=10)
            caller_up = time.time()
            # let the whole welcome play, so the recording can be compared with it
            flow = load_flow(ROOT / "flows" / "demo.yaml")
            prompts = PromptLibrary(ROOT / "var" / "test-prompts")
            welcome = prompts.sequence(resolve(flow.nodes["welcome"].prompt, "it"))
            time.sleep(wav_seconds(welcome) + 0.5)
            caller.send_digit("2")      # English
            time.sleep(1.0)
            caller.send_digit("1")      # support
            digit_sent = time.time()
            agent.wait_event("CALL_ESTABLISHED", timeout=20)
            agent_up = time.time()
            board.wait_for_log("connected to agent anna")
            assert board.metric("ivr_calls_in_progress") == 1.0
            time.sleep(6.0)             # talk
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
    hold = wav_seconds(prompts.sequence(resolve(flow.nodes["support"].prompt, "en")))
    print(f"RFC 4733: digit '1' -> agent answered {(agent_up - digit_sent) * 1000:.0f} ms, "
          f"of which the hold prompt {hold * 1000:.0f} ms")

    # the caller heard the welcome prompt at the start of the call
    heard_welcome = trim_wav(caller_rec.received, tmp_path / "welcome-heard.wav", 0,
                             wav_seconds(welcome) + 1.0)
    assert best_envelope_correlation(welcome, heard_welcome) > 0.6

    # after the bridge, each end's recording carries the other end's voice: the agent's source
    # starts when the agent answers; the caller's has been playing since the caller's call began
    bridged = agent_up - caller_up
    to_caller, c1 = tracked_envelope_correlation(agent_src, caller_rec.received, bridged + 0.5,
                                                 4.0, sent_start_s=0.5)
    to_agent, c2 = tracked_envelope_correlation(caller_src, agent_rec.received, 0.5, 4.0,
                                                sent_start_s=bridged + 0.5)
    unrelated, c3 = tracked_envelope_correlation(caller_src, caller_rec.received, bridged + 0.5,
                                                 4.0, sent_start_s=bridged + 0.5)
    print(f"envelope correlation: agent->caller {to_caller:.2f} {c1}, caller->agent "
          f"{to_agent:.2f} {c2}, caller's own voice in what the caller heard {unrelated:.2f}")
    assert to_caller > 0.6
    assert to_agent > 0.6
    assert unrelated < min(to_caller, to_agent) - 0.1

    (record,) = board.records()
    assert record["ivr_path"] == "welcome[2] > main[1] > support"
    assert record["queue"] == "support" and record["agent"] == "anna"
    assert record["outcome"] == "completed" and record["end_reason"] == "caller hung up"
    assert record["caller"] == "caller"
    assert 5.0 < record["talk_seconds"] < 9.0
    assert record["wait_seconds"] < 5.0
    assert record["started_at"] < record["answered_at"] < record["queued_at"] \
        < record["connected_at"] < record["ended_at"]

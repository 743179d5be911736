"""The baresip test harness (tests/support) proves itself: two baresip UAs call each other.

A (the "agent") answers automatically and sends AGENT_TONE_HZ; B (the "caller") dials A and
sends CALLER_TONE_HZ. Each records what it hears, and each recording must hold the other
side's tone, not its own.
"""

from __future__ import annotations

import wave
from array import array
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import require_baresip
from tests.support.audio import (
    AGENT_TONE_HZ,
    CALLER_TONE_HZ,
    ToneTrack,
    best_envelope_correlation,
    envelope,
    make_silence_wav,
    make_tone_wav,
    read_wav_mono,
    wav_duration_s,
)
from tests.support.baresip import Baresip, BaresipError, free_port, free_rtp_range

TONES = (CALLER_TONE_HZ, AGENT_TONE_HZ)
TALK_S = 2.0
"""Seconds of each other's tone both UAs must hear before the caller hangs up."""


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_baresip()
    folder = tmp_path_factory.mktemp("tones")
    # aufile ends the call at the end of its file: far longer than the call
    return {
        "caller": make_tone_wav(folder / "caller.wav", CALLER_TONE_HZ, 60),
        "agent": make_tone_wav(folder / "agent.wav", AGENT_TONE_HZ, 60),
    }


def ua(workdir: Path, user: str, **kwargs: Any) -> Baresip:
    return Baresip(workdir, free_port(), free_port(), user=user, **kwargs)


# -- the harness itself, with baresip ---------------------------------------------------------


@pytest.mark.e2e
def test_two_uas_hear_each_other(tmp_path: Path, tones: dict[str, Path]) -> None:
    with ua(tmp_path / "a", "agent", answermode="auto", record=True,
            audio_source_wav=tones["agent"]) as agent, \
         ua(tmp_path / "b", "caller", record=True, audio_source_wav=tones["caller"]) as caller:
        assert agent.rtp_ports != caller.rtp_ports
        caller.dial(agent.uri)
        assert caller.wait_event("CALL_ESTABLISHED")["peeruri"] == agent.uri
        assert agent.wait_event("CALL_ESTABLISHED")["peeruri"] == caller.uri
        agent.listen(TONES)
        caller.listen(TONES)
        agent.wait_heard(CALLER_TONE_HZ, TALK_S)
        caller.wait_heard(AGENT_TONE_HZ, TALK_S)
        caller.hangup()
        caller.wait_event("CALL_CLOSED")
        agent.wait_event("CALL_CLOSED")
        heard_by_agent = agent.wait_recordings(1)
        heard_by_caller = caller.wait_recordings(1)
    assert agent.returncode is not None
    assert caller.returncode is not None

    assert len(heard_by_agent) == len(heard_by_caller) == 1
    a, b = heard_by_agent[0], heard_by_caller[0]
    assert wav_duration_s(a.received) >= TALK_S
    by_agent = ToneTrack.of_wav(a.received, TONES)
    by_caller = ToneTrack.of_wav(b.received, TONES)
    sent_by_agent = ToneTrack.of_wav(a.sent, TONES)  # the -enc file is what it sent
    print(f"\nagent heard {by_agent.timeline()}\ncaller heard {by_caller.timeline()}")
    # from the first window of the peer's tone to the end, nothing but that tone
    for track, peer_tone, own_tone in ((by_agent, CALLER_TONE_HZ, AGENT_TONE_HZ),
                                       (by_caller, AGENT_TONE_HZ, CALLER_TONE_HZ)):
        first = track.first_s(peer_tone, min_run_s=0.3)
        assert first is not None, track.timeline()
        flowing = track.between(first, track.duration_s - 0.2)
        assert flowing.fraction(peer_tone) >= 0.9, track.timeline()
        assert track.fraction(own_tone) == 0.0, track.timeline()
    assert sent_by_agent.fraction(AGENT_TONE_HZ) >= 0.9, sent_by_agent.timeline()
    assert sent_by_agent.fraction(CALLER_TONE_HZ) == 0.0, sent_by_agent.timeline()


@pytest.mark.e2e
def test_manual_answer_and_rfc2833_digits(tmp_path: Path) -> None:
    require_baresip()
    with ua(tmp_path / "a", "agent") as agent, ua(tmp_path / "b", "caller") as caller:
        caller.dial(agent.uri)
        incoming = agent.wait_event("CALL_INCOMING")
        assert incoming["peeruri"] == caller.uri
        caller.wait_event("CALL_RINGING")
        agent.accept()
        agent.wait_event("CALL_ESTABLISHED")
        caller.wait_event("CALL_ESTABLISHED")

        for digit in "15#":
            caller.send_digit(digit)
        received = [agent.wait_event("CALL_DTMF_START")["param"] for _ in range(3)]
        assert received == ["1", "5", "#"]
        agent.wait_event("CALL_DTMF_END")
        # The sender logs that it used RTP telephone-events, not SIP INFO.
        assert "audio: send DTMF digit: '5'" in caller.log_text()

        agent.hangup()
        assert agent.wait_event("CALL_CLOSED")["id"] == incoming["id"]
        caller.wait_event("CALL_CLOSED")
        assert [e["type"] for e in agent.events_seen("CALL_DTMF_START")] == [
            "CALL_DTMF_START"] * 3


@pytest.mark.e2e
def test_wait_event_timeout_shows_the_log(tmp_path: Path) -> None:
    require_baresip()
    with ua(tmp_path / "a", "lonely") as lonely:
        with pytest.raises(AssertionError, match=r"(?s)no CALL_INCOMING event within 0.2s.*"
                                                 r"baresip is ready"):
            lonely.wait_event("CALL_INCOMING", timeout=0.2)
        with pytest.raises(BaresipError, match=r"command not found \(nosuchcommand\)"):
            lonely.command("nosuchcommand")


@pytest.mark.e2e
def test_startup_fails_clearly_when_the_ctrl_port_is_taken(tmp_path: Path) -> None:
    require_baresip()
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        bs = Baresip(tmp_path, free_port(), port, user="late", startup_timeout=1.0)
        with pytest.raises(BaresipError, match=r"(?s)is not sip:late@.*Address already in use"):
            bs.start()
    assert bs.returncode is not None


# -- pieces that need no baresip ------------------------------------------------------------


def test_read_wav_mono_averages_stereo(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(array("h", [16384, 0, -16384, -16384]).tobytes())
    samples, rate = read_wav_mono(path)
    assert rate == 16000
    assert list(samples) == [0.25, -0.5]


def test_envelope_is_rms_per_window() -> None:
    samples = [0.5, -0.5] * 200 + [0.0] * 400
    assert envelope(samples, 8000, window_s=0.05) == [0.5, 0.0]
    assert len(envelope(samples, 8000, window_s=0.02, hop_s=0.01)) == 9


def test_silence_correlates_with_nothing(tmp_path: Path) -> None:
    quiet = make_silence_wav(tmp_path / "quiet.wav", 3)
    assert best_envelope_correlation(quiet, quiet) == 0.0


def test_source_wav_must_suit_aufile(tmp_path: Path) -> None:
    wrong = tmp_path / "wide.wav"
    with wave.open(str(wrong), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(3200))
    with pytest.raises(ValueError, match=r"need 8000 Hz mono 16-bit PCM, got 16000 Hz"):
        Baresip(tmp_path, 5060, 4444, audio_source_wav=wrong)


def test_rtp_ranges_are_free_blocks() -> None:
    low, high = free_rtp_range(20)
    assert high - low == 19
    assert low >= 20000
    assert high < 30000

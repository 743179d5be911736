"""Audio through the switchboard has no holes while other calls come and go (issue 10, item 1).

A caller leaves a voicemail: it sends a steady tone, which the switchboard receives and
records. Meanwhile 20 other calls come in from another process, each queued to one of 20
agents served by a third process, which answers at once and hangs up a second later; the
switchboard then hangs up the caller's leg. So media sessions start and stop all the time.
The longest hole in the tone the switchboard recorded must be at most 60 ms (3 packets).

Why this path: what the switchboard sends (prompts, music on hold) is clocked by its
conference bridge whatever its sockets do; what it receives is what stalled, and that is
how an agent's voice reaches a caller. In pjproject 2.12.1 the media worker slept for its
whole 500 ms poll timeout whenever epoll reported a socket with no read pending. Each agent
leg gives it one: the agent's pjsua sends its first RTCP before its 200 OK, to a socket the
switchboard starts reading only once it has handled that 200 OK. Every call's packets then
waited in the socket buffers; a stream whose jitter buffer was not already padded by an
earlier stall (the caller's leg here: the switchboard answers it, so it starts cleanly) went
silent. sipstack/patches/0004 and 0005 fix it. The caller's leg rather than a caller
listening to an agent: an agent leg starts with that very stall, which pads its jitter
buffer with the half second of packets and hides the later ones.

The figures are printed and appended to var/e2e-figures.txt.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.e2e import (
    ROOT,
    Peer,
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_sip_stack,
    wait_until,
)
from tests.support.audio import ToneTrack, longest_gap, make_tone_wav, read_wav_mono

pytestmark = pytest.mark.e2e
RESULTS = ROOT / "var" / "e2e-figures.txt"

TONE_HZ = 1000.0
MAX_GAP_S = 0.060
"""The acceptance bound: 3 packets of 20 ms."""
LOAD_CALLS = 20

FLOW = """
flow: audio-gaps
languages: [en]
start: who
nodes:
  who:
    type: branch
    cases:
      - when: {caller: "3.*"}
        next: message
      - when: {caller: "4.*"}
        next: load
    default: bye
  message:
    type: voicemail
    prompt: {say: "Message."}
    max_seconds: 60
    silence_seconds: 10
    next: bye
  load: {type: queue, queue: load}
  bye: {type: hangup}
"""


def note_figure(text: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(text + "\n")
    print(text)


def stack_build() -> str:
    try:
        import pjsua2_build_info as info  # type: ignore[import-not-found]
    except ImportError:
        return "pjsua2 (unknown build)"
    own = [p.split("-")[0] for p in info.PATCHES if p[:1].isdigit()]
    return f"pjsua2 {info.PJ_VERSION} key {info.CACHE_KEY} patches {','.join(own) or 'none'}"


def test_a_callers_audio_has_no_gap_while_20_calls_come_and_go(tmp_path: Path) -> None:
    require_sip_stack()
    flow = tmp_path / "gaps.yaml"
    flow.write_text(FLOW)
    tone = make_tone_wav(tmp_path / "tone.wav", TONE_HZ, 120)
    agents_port = free_udp_port()
    load_agents = [f"l{i:02d}" for i in range(LOAD_CALLS)]
    board = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                        agents=dict.fromkeys(load_agents, agents_port), flow=flow,
                        queues=f"  load: {{agents: [{', '.join(load_agents)}], ring_timeout: 15}}")
    recordings = tmp_path / "var" / "recordings"
    peers: list[Peer] = []

    def start(name: str, mode: str, port: int, *extra: str) -> Peer:
        p = peer(tmp_path, name, mode, port, *extra)
        peers.append(p)
        return p.start()

    board.start()
    try:
        # One process answers as all 20 load agents, at once, and hangs up after a second.
        answers = start("agents", "agent", agents_port, "--answer-after", "0",
                        "--talk", "1.0", "--duration", "60")
        caller = start("3000001", "caller", free_udp_port(), "--target", board.uri,
                       "--play", str(tone), "--duration", "90")
        wait_until(lambda: any(recordings.glob("*.wav")), "the voicemail recording starts",
                   timeout=20, details=board.log_tail)
        caller.wait_event("confirmed")
        # Another process places the 20 calls in a burst and waits for the far end's BYE.
        load_started = time.time()
        callers = start("4000001", "caller", free_udp_port(), "--target", board.uri,
                        "--calls", str(LOAD_CALLS), "--call-gap", "0", "--duration", "40")
        assert callers.wait_exit(45) == 0, callers.output()
        load_s = time.time() - load_started
        confirmed = callers.events("confirmed")
        ended = callers.events("disconnected")
        bridged = answers.events("confirmed")
        # Record a little past the load: half a second more of the file (8 kHz, 16 bit).
        (recording,) = recordings.glob("*.wav")
        size = recording.stat().st_size
        wait_until(lambda: recording.stat().st_size >= size + 8000, "the message goes on",
                   timeout=10)
        caller.stop()
    finally:
        for p in peers:
            p.stop()
        code = board.stop()
    assert code == 0, board.log_tail()
    assert len(confirmed) == LOAD_CALLS, callers.output()
    assert len(ended) == LOAD_CALLS, callers.output()
    assert len(bridged) == LOAD_CALLS, answers.output()

    samples, rate = read_wav_mono(recording)
    # From where the caller's tone starts to the end, less the last 200 ms (its hang-up).
    track = ToneTrack.of(samples, rate, (TONE_HZ,))
    first_s = track.first_s(TONE_HZ, min_run_s=0.1)
    assert first_s is not None, f"the switchboard never heard the tone: {track.timeline()}"
    heard = samples[round(first_s * rate):len(samples) - rate // 5]
    gap_s = longest_gap(heard, TONE_HZ, rate, window_s=0.005)
    note_figure(f"audio gaps: longest hole in a caller's tone recorded by the switchboard "
                f"{gap_s * 1000:.0f} ms "
                f"over {len(heard) / rate:.1f} s while {LOAD_CALLS} calls came and went in "
                f"{load_s:.1f} s ({stack_build()}, {os.cpu_count()} cores)")
    assert len(heard) / rate > load_s, f"the recording does not cover the load: {track.timeline()}"
    assert gap_s <= MAX_GAP_S, \
        f"a {gap_s * 1000:.0f} ms hole in the caller's audio: {track.timeline()}"

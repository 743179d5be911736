"""End to end: a supervisor listens to, whispers in and barges into an agent's call.

A real `ivr run` process on loopback and three independent pjsua2 peers, each sending its own
tone: a caller who reaches the support queue (1100 Hz), agent anna's phone (1900 Hz) and
supervisor laura's phone (2700 Hz), which dials ``*51anna`` while anna talks to the caller,
then keys 2 (whisper) and 3 (barge). Each peer records what it hears; the windows of each mode
are read from the peers' clocks (one machine: the same wall clock):

- listen: laura hears the caller and anna; neither of them hears laura;
- whisper: anna hears laura, the caller does not;
- barge: both do.

Laura's supervisors entry has ``announce: true``: anna (only) hears the switchboard's beep when
laura joins. A phone that is not a supervisor's dialling the same code is refused (403) and the
call goes on. Tones are chosen as in tests/support/audio.py: 2700 Hz is no DTMF tone, no note
(or low harmonic) of the music on hold and no harmonic of the other two.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import (
    Peer,
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_sip_stack,
    wait_until,
)
from tests.support.audio import (
    AGENT_TONE_HZ,
    CALLER_TONE_HZ,
    GrowingWav,
    ToneTrack,
    make_tone_wav,
)

pytestmark = pytest.mark.e2e

SUPERVISOR_TONE_HZ = 2700.0
BEEP_HZ = 1000.0
"""The switchboard's beep (service.beep_file), which announces the supervisor to the agent."""
TONES = (CALLER_TONE_HZ, AGENT_TONE_HZ, SUPERVISOR_TONE_HZ, BEEP_HZ)
MODE_S = 5.0
"""Seconds the supervisor stays in each mode (listen, whisper, barge)."""
MARGIN_S = 1.2
"""Slack at each end of a mode's window for the key's way through the switchboard and the
jitter buffers."""
MOSTLY = 0.8
"""Share of a window's 100 ms marks in which a tone that must be heard is present."""
RARELY = 0.05
"""Share of a window's marks in which a tone that must not be heard may seem present."""
CALLER = "3331112222"


@pytest.fixture
def board(tmp_path: Path) -> Iterator[tuple[Switchboard, int]]:
    """The switchboard, and the port of supervisor laura's phone."""
    require_sip_stack()
    laura_port = free_udp_port()
    sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                     agents={"anna": free_udp_port()}, ring_timeout=10.0,
                     extra_config="supervisors:\n"
                                  f"  laura: {{uri: \"sip:laura@127.0.0.1:{laura_port}\", "
                                  "queues: [support], announce: true}\n")
    sb.start()
    yield sb, laura_port
    assert sb.stop() == 0, sb.log_tail()
    assert "Traceback" not in sb.log_path.read_text(), sb.log_tail()


def track(who: Peer, path: Path) -> tuple[ToneTrack, float]:
    """The tones in what *who* recorded, and the wall time the recording started."""
    assert path.exists(), f"no {path.name}:\n{who.output()}"
    wav = GrowingWav(path)
    samples = wav.read_new()
    assert wav.rate is not None, who.output()
    assert len(samples) > 0, who.output()
    (started,) = who.events("recording")
    return ToneTrack.of(samples, wav.rate, TONES), float(started["t"])


def window(heard: tuple[ToneTrack, float], start: float, end: float) -> ToneTrack:
    """The part of a recording between two wall-clock times, less the margins."""
    tones, t0 = heard
    part = tones.between(start - t0 + MARGIN_S, end - t0 - MARGIN_S)
    assert part.duration_s >= MODE_S - 2 * MARGIN_S - 0.3, (start - t0, end - t0,
                                                            tones.timeline())
    return part


def test_listen_whisper_barge_and_a_stranger_refused(board: tuple[Switchboard, int],
                                                     tmp_path: Path) -> None:
    sb, laura_port = board
    heard = tmp_path / "heard"
    heard.mkdir()
    anna = peer(tmp_path, "anna", "agent", sb.agents["anna"], "--answer-after", "0.5",
                "--play", str(make_tone_wav(tmp_path / "anna.wav", AGENT_TONE_HZ, 90)),
                "--record-dir", str(heard), "--duration", "90").start()
    caller = peer(tmp_path, CALLER, "caller", free_udp_port(), "--target", sb.uri,
                  "--digits", "2,1", "--first-digit-after", "0.5", "--digit-gap", "0.5",
                  "--hold", "60",
                  "--play", str(make_tone_wav(tmp_path / "caller.wav", CALLER_TONE_HZ, 90)),
                  "--record-dir", str(heard), "--duration", "90").start()
    laura: Peer | None = None
    stranger: Peer | None = None
    try:
        anna.wait_event("confirmed", timeout=30)
        target = f"sip:*51anna@127.0.0.1:{sb.sip_port}"
        # a phone that is not a supervisor's: refused, the call goes on
        stranger = peer(tmp_path, "mallory", "caller", free_udp_port(), "--target", target,
                        "--duration", "20").start()
        assert stranger.wait_exit(25) == 0
        assert [e["code"] for e in stranger.events("disconnected")] == [403]
        sb.wait_for_log("refused listen of 'anna'")
        laura = peer(tmp_path, "laura", "caller", laura_port,
                     "--target", target, "--digits", "2,3", "--first-digit-after", str(MODE_S),
                     "--digit-gap", str(MODE_S), "--hold", str(MODE_S),
                     "--play", str(make_tone_wav(tmp_path / "laura.wav", SUPERVISOR_TONE_HZ,
                                                 60)),
                     "--record-dir", str(heard), "--duration", "60").start()
        assert laura.wait_exit(45) == 0
        assert [e["event"] for e in anna.events() if e["event"] == "disconnected"] == []
    finally:
        for p in (laura, stranger, caller, anna):
            if p is not None:
                p.stop()

    (on,) = laura.events("confirmed")
    keys = [float(e["t"]) for e in laura.events("digit_sent")]
    (off,) = laura.events("hanging_up")
    spans = {"listen": (float(on["t"]), keys[0]), "whisper": (keys[0], keys[1]),
             "barge": (keys[1], float(off["t"]))}
    by = {"laura": track(laura, heard / "laura-0.wav"),
          "anna": track(anna, heard / "anna-0.wav"),
          "caller": track(caller, heard / f"{CALLER}-0.wav")}
    timelines = "\n".join(f"{who} heard {t.timeline()} from {t0:.1f}"
                          for who, (t, t0) in by.items())
    print(f"modes {spans}\n{timelines}")

    def share(who: str, mode: str, tone: float) -> float:
        return window(by[who], *spans[mode]).fraction(tone)

    for mode in ("listen", "whisper", "barge"):  # the supervisor hears both, always
        assert share("laura", mode, CALLER_TONE_HZ) >= MOSTLY, (mode, timelines)
        assert share("laura", mode, AGENT_TONE_HZ) >= MOSTLY, (mode, timelines)
        assert share("anna", mode, CALLER_TONE_HZ) >= MOSTLY, (mode, timelines)
        assert share("caller", mode, AGENT_TONE_HZ) >= MOSTLY, (mode, timelines)
    assert share("anna", "listen", SUPERVISOR_TONE_HZ) <= RARELY, timelines
    assert share("caller", "listen", SUPERVISOR_TONE_HZ) <= RARELY, timelines
    assert share("anna", "whisper", SUPERVISOR_TONE_HZ) >= MOSTLY, timelines
    assert share("caller", "whisper", SUPERVISOR_TONE_HZ) <= RARELY, timelines
    assert share("anna", "barge", SUPERVISOR_TONE_HZ) >= MOSTLY, timelines
    assert share("caller", "barge", SUPERVISOR_TONE_HZ) >= MOSTLY, timelines

    def announced(who: str) -> float:
        tones, t0 = by[who]
        joined = spans["listen"][0] - t0
        return tones.between(joined - 1.0, joined + 3.0).seconds(BEEP_HZ)

    assert announced("anna") >= 0.2, timelines
    assert announced("caller") == 0.0, timelines

    def logged() -> list[tuple[str, str]] | None:
        rows = [(e["kind"], e["detail"]["mode"]) for e in sb.queue_events()
                if e["kind"].startswith("supervise")]
        return rows if len(rows) == 4 else None

    assert wait_until(logged, "the supervision in the queue log", 10) == [
        ("supervise_start", "listen"), ("supervise_mode", "whisper"),
        ("supervise_mode", "barge"), ("supervise_end", "barge")]

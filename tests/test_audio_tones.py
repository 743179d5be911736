"""The tone detector of tests/support/audio.py, on signals made here: the end-to-end tests'
verdict on who hears whom is only as good as this."""

from __future__ import annotations

import math
import random
import wave
from array import array
from pathlib import Path

import pytest

from ivr.prompts import music_on_hold
from tests.support.audio import (
    AGENT_TONE_HZ,
    CALLER_TONE_HZ,
    MIN_TONE_SHARE,
    TELEPHONY_RATE,
    GrowingWav,
    ToneFollower,
    ToneTrack,
    audible_seconds,
    goertzel_power,
    longest_gap,
    make_tone_samples,
    make_tone_wav,
    mulaw_decode,
    mulaw_encode,
    mulaw_round_trip,
    read_wav_mono,
    tone_levels,
    write_wav,
)

RATE = TELEPHONY_RATE
TONES = (CALLER_TONE_HZ, AGENT_TONE_HZ)


def mix(*signals: array[float]) -> array[float]:
    return array("d", (math.fsum(values) for values in zip(*signals, strict=True)))


def concat(*signals: array[float]) -> array[float]:
    out = array("d")
    for signal in signals:
        out.extend(signal)
    return out


def white_noise(seconds: float, rms: float, seed: int) -> array[float]:
    rng = random.Random(seed)  # a fixed seed: the same noise every run
    return array("d", (rng.gauss(0.0, rms) for _ in range(round(seconds * RATE))))


def silence(seconds: float) -> array[float]:
    return array("d", bytes(8 * round(seconds * RATE)))


# -- Goertzel and the per-window verdict ------------------------------------------------------


def test_goertzel_matches_the_dft_bin() -> None:
    samples = make_tone_samples(1000.0, 0.1, dbfs=0.0)  # 100 cycles in 800 samples
    direct = abs(sum(x * complex(math.cos(2 * math.pi * 100 * n / 800),
                                 -math.sin(2 * math.pi * 100 * n / 800))
                     for n, x in enumerate(samples))) ** 2
    assert goertzel_power(samples, 1000.0, RATE) == pytest.approx(direct, rel=1e-6)
    assert direct == pytest.approx((800 / 2) ** 2, rel=1e-3)


def test_a_clean_tone_has_its_level_and_all_the_power() -> None:
    levels = tone_levels(make_tone_samples(CALLER_TONE_HZ, 1.0, dbfs=-12.0), RATE,
                         CALLER_TONE_HZ)
    assert len(levels) == 10
    for amplitude, share in levels:
        assert amplitude == pytest.approx(10 ** (-12 / 20), rel=0.01)
        assert share == pytest.approx(1.0, abs=0.01)


def test_tone_present_in_every_window_and_the_other_absent() -> None:
    track = ToneTrack.of(make_tone_samples(CALLER_TONE_HZ, 3.0), RATE, TONES)
    assert len(track.windows) == 30
    assert track.fraction(CALLER_TONE_HZ) == 1.0
    assert track.fraction(AGENT_TONE_HZ) == 0.0
    assert track.longest_run_s(CALLER_TONE_HZ) == pytest.approx(3.0)
    assert track.first_s(CALLER_TONE_HZ) == 0.0
    assert track.first_s(AGENT_TONE_HZ) is None


@pytest.mark.parametrize("signal", ["silence", "noise", "tone 60 Hz away", "quiet tone"])
def test_tone_absent(signal: str) -> None:
    samples = {
        "silence": silence(2.0),
        "noise": white_noise(2.0, 0.2, seed=1),
        # a loud neighbour must not leak into the bin (Hann window)
        "tone 60 Hz away": make_tone_samples(CALLER_TONE_HZ + 60.0, 2.0, dbfs=-3.0),
        # below MIN_TONE_DBFS a tone is not heard, whatever its share of a quiet window
        "quiet tone": make_tone_samples(CALLER_TONE_HZ, 2.0, dbfs=-60.0),
    }[signal]
    track = ToneTrack.of(samples, RATE, TONES)
    assert len(track.windows) == 20
    assert track.fraction(CALLER_TONE_HZ) == 0.0, track.timeline()
    assert track.fraction(AGENT_TONE_HZ) == 0.0, track.timeline()


def test_two_tones_at_once_are_both_found() -> None:
    both = mix(make_tone_samples(CALLER_TONE_HZ, 2.0, dbfs=-12.0),
               make_tone_samples(AGENT_TONE_HZ, 2.0, dbfs=-15.0))
    track = ToneTrack.of(both, RATE, TONES)
    assert track.fraction(CALLER_TONE_HZ) == 1.0
    assert track.fraction(AGENT_TONE_HZ) == 1.0
    assert set(track.timeline().split()[-1]) == {"+"}
    # 3 dB quieter, the second carries a third of the power: still above the threshold
    shares = [share for _, share in tone_levels(both, RATE, AGENT_TONE_HZ)]
    assert all(MIN_TONE_SHARE < s < 0.4 for s in shares), shares


def test_tone_in_noise_at_0_db_snr() -> None:
    tone = make_tone_samples(AGENT_TONE_HZ, 5.0, dbfs=-12.0)
    tone_rms = 10 ** (-12 / 20) / math.sqrt(2)
    noisy = mix(tone, white_noise(5.0, tone_rms, seed=7))
    track = ToneTrack.of(noisy, RATE, TONES)
    assert track.fraction(AGENT_TONE_HZ) == 1.0, track.timeline()
    assert track.fraction(CALLER_TONE_HZ) == 0.0, track.timeline()
    shares = [share for _, share in tone_levels(noisy, RATE, AGENT_TONE_HZ)]
    assert min(shares) > 0.4, shares
    assert max(shares) < 0.6, shares


def test_a_tone_survives_g711_and_makes_no_ghost_tone() -> None:
    sent = make_tone_samples(CALLER_TONE_HZ, 2.0, dbfs=-12.0)
    heard = mulaw_round_trip(sent)
    assert max(abs(a - b) for a, b in zip(sent, heard, strict=True)) < 0.01
    track = ToneTrack.of(heard, RATE, TONES)
    assert track.fraction(CALLER_TONE_HZ) == 1.0
    assert track.fraction(AGENT_TONE_HZ) == 0.0
    # so quiet that the codec's coarse steps dominate: still found, in its own bin
    faint = ToneTrack.of(mulaw_round_trip(make_tone_samples(AGENT_TONE_HZ, 1.0, dbfs=-45.0)),
                         RATE, TONES)
    assert faint.fraction(AGENT_TONE_HZ) == 1.0
    assert faint.fraction(CALLER_TONE_HZ) == 0.0


def test_mulaw_matches_g711() -> None:
    # Reference values of the G.711 table (as pjmedia's and Sun's g711.c compute them)
    assert [mulaw_encode(s) for s in (0, -1, 1000, -1000, 8000, 32767, -32768)] == [
        0xFF, 0x7F, 0xCE, 0x4E, 0xA0, 0x80, 0x00]
    assert [mulaw_decode(b) for b in (0xFF, 0x7F, 0x80, 0x00, 0xCE, 0x4E)] == [
        0, 0, 32124, -32124, 988, -988]
    # decoding is the inverse of encoding on the code words themselves
    assert all(mulaw_encode(mulaw_decode(b)) == b for b in range(256) if b != 0x7F)


# -- what the end-to-end tests rely on --------------------------------------------------------


def test_the_music_on_hold_holds_neither_test_tone(tmp_path: Path) -> None:
    """A caller waiting in a queue hears the built-in hold music (pure notes, 440 Hz among
    them): the tones of the end-to-end tests were chosen off its notes and their harmonics."""
    samples, rate = read_wav_mono(music_on_hold(tmp_path))
    heard = mulaw_round_trip(samples)
    track = ToneTrack.of(heard, rate, (*TONES, 440.0))
    assert track.fraction(440.0) > 0.05  # the detector does hear its notes
    assert track.fraction(CALLER_TONE_HZ) == 0.0, track.timeline()
    assert track.fraction(AGENT_TONE_HZ) == 0.0, track.timeline()


def test_between_and_first_s_follow_the_recording_clock() -> None:
    samples = concat(silence(1.0), make_tone_samples(AGENT_TONE_HZ, 2.0), silence(1.0))
    track = ToneTrack.of(samples, RATE, TONES)
    assert track.duration_s == pytest.approx(4.0)
    assert track.first_s(AGENT_TONE_HZ) == pytest.approx(1.0)
    assert track.between(0.0, 1.0).fraction(AGENT_TONE_HZ) == 0.0
    middle = track.between(1.0, 3.0)
    assert middle.start_s == pytest.approx(1.0)
    assert len(middle.windows) == 20
    assert middle.fraction(AGENT_TONE_HZ) == 1.0
    assert track.between(3.05, 9.0).start_s == pytest.approx(3.1)
    assert track.seconds(AGENT_TONE_HZ) == pytest.approx(2.0)
    assert audible_seconds(samples, RATE) == pytest.approx(2.0)
    # a run shorter than asked for does not count as the start
    blip = concat(make_tone_samples(AGENT_TONE_HZ, 0.2), silence(0.8),
               make_tone_samples(AGENT_TONE_HZ, 1.0))
    assert ToneTrack.of(blip, RATE, TONES).first_s(AGENT_TONE_HZ, min_run_s=0.5) == \
        pytest.approx(1.0)


# -- dropouts ---------------------------------------------------------------------------------


def with_gap(samples: array[float], start_s: float, gap_s: float,
             fill: array[float] | None = None) -> array[float]:
    out = array("d", samples)
    first = round(start_s * RATE)
    for i in range(round(gap_s * RATE)):
        out[first + i] = 0.0 if fill is None else fill[i]
    return out


def test_a_steady_tone_has_no_gap() -> None:
    tone = make_tone_samples(CALLER_TONE_HZ, 2.0)
    assert longest_gap(tone, CALLER_TONE_HZ) == 0.0
    assert longest_gap(mulaw_round_trip(tone), CALLER_TONE_HZ) == 0.0


@pytest.mark.parametrize("offset_ms", [0, 3, 5, 7, 9])
def test_a_60_ms_dropout_is_found_as_60_ms(offset_ms: int) -> None:
    """Wherever the dropout falls against the 10 ms windows, it measures 60 ms (+-10)."""
    tone = make_tone_samples(CALLER_TONE_HZ, 2.0)
    gapped = with_gap(tone, 1.0 + offset_ms / 1000, 0.06)
    assert longest_gap(gapped, CALLER_TONE_HZ) == pytest.approx(0.06, abs=0.0101)
    assert longest_gap(mulaw_round_trip(gapped), CALLER_TONE_HZ) == pytest.approx(
        0.06, abs=0.0101)


def test_the_longest_of_several_dropouts_and_noise_in_place_of_the_tone() -> None:
    tone = make_tone_samples(AGENT_TONE_HZ, 3.0)
    gapped = with_gap(with_gap(tone, 0.5, 0.02), 2.0, 0.12,
                      fill=white_noise(0.12, 0.2, seed=3))
    assert longest_gap(gapped, AGENT_TONE_HZ) == pytest.approx(0.12, abs=0.0101)
    assert longest_gap(white_noise(1.0, 0.2, seed=4), AGENT_TONE_HZ) == pytest.approx(1.0)
    assert longest_gap(silence(0.5), AGENT_TONE_HZ) == pytest.approx(0.5)


# -- recordings still being written -----------------------------------------------------------


def test_growing_wav_reads_what_a_recorder_has_written_so_far(tmp_path: Path) -> None:
    """Like baresip's sndfile: the header's sizes stay 0 until the file is closed."""
    path = tmp_path / "live.wav"
    done = make_tone_wav(tmp_path / "done.wav", AGENT_TONE_HZ, 1.0)
    with wave.open(str(done), "rb") as w:
        pcm = w.readframes(w.getnframes())
    head = bytearray(done.read_bytes()[:44])  # RIFF, fmt and data chunk headers
    head[4:8] = head[40:44] = bytes(4)  # RIFF and data sizes not written yet
    path.write_bytes(bytes(head) + pcm[:3001])  # and half a sample at the end
    live = GrowingWav(path)
    first = live.read_new()
    assert live.rate == RATE
    assert len(first) == 1500
    assert live.read_new() == array("d")
    with path.open("ab") as f:
        f.write(pcm[3001:])
    rest = live.read_new()
    assert len(rest) == 6500
    assert live.seconds_read == pytest.approx(1.0)
    assert ToneTrack.of(first + rest, RATE, TONES).fraction(AGENT_TONE_HZ) == 1.0

    follower = ToneFollower(path, TONES)
    track = follower.poll()
    assert track.seconds(AGENT_TONE_HZ) == pytest.approx(1.0)
    assert follower.audible_s == pytest.approx(1.0)
    assert GrowingWav(tmp_path / "not-yet.wav").read_new() == array("d")


def test_follower_analyses_only_whole_new_windows(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    write_wav(path, make_tone_samples(CALLER_TONE_HZ, 1.05))
    follower = ToneFollower(path, TONES)
    assert len(follower.poll().windows) == 10  # the last 50 ms wait for the next poll
    assert follower.seconds_so_far == pytest.approx(1.0)

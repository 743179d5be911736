"""Audio helpers for tests: make speech files, read recordings, compare loudness envelopes.

Stdlib only (wave, array, math). The comparison is deliberately coarse: it asks "is this the
same utterance?" through the shape of the loudness over time, which survives G.711, jitter
buffers and an unknown start offset, and needs no numpy.

Example::

    make_speech_wav("Press one for sales.", tmp / "x.wav")
    make_long_source(tmp / "x_long.wav", 60, text="Press one for sales.")
    score = best_envelope_correlation(tmp / "x.wav", tmp / "heard.wav")
    assert score > 0.6
"""

from __future__ import annotations

import math
import operator
import shutil
import subprocess
import sys
import tempfile
import wave
from array import array
from collections.abc import Sequence
from pathlib import Path

#: Sample rate baresip's aufile source needs with PCMU/PCMA (the codec's rate).
TELEPHONY_RATE = 8000

DEFAULT_LONG_TEXT = (
    "Thank you for calling. All our agents are busy at the moment. "
    "Your call is important to us, please stay on the line."
)

# Windows quieter than this (RMS relative to full scale) count as silence in the envelope;
# it keeps codec noise and dither from driving the correlation.
_SILENCE_FLOOR = 1e-3


def read_wav_mono(path: str | Path, max_s: float | None = None) -> tuple[array[float], int]:
    """Samples of a PCM WAV file as floats in [-1, 1], channels averaged, and its rate.

    `max_s` reads only the first seconds (a long source file needs no more than the call).
    """
    with wave.open(str(path), "rb") as w:
        width = w.getsampwidth()
        channels = w.getnchannels()
        rate = w.getframerate()
        frames = w.getnframes()
        if max_s is not None:
            frames = min(frames, math.ceil(max_s * rate))
        raw = w.readframes(frames)
    ints: array[int]
    if width == 1:  # 8-bit WAV is unsigned
        ints = array("h", (b - 128 for b in raw))
        scale = 128.0
    elif width == 2:
        ints = array("h")
        ints.frombytes(raw[: len(raw) - len(raw) % 2])
        scale = 32768.0
    elif width == 4:
        ints = array("i")
        ints.frombytes(raw[: len(raw) - len(raw) % 4])
        scale = 2147483648.0
    else:
        raise ValueError(f"{path}: unsupported sample width {width * 8} bits")
    if sys.byteorder == "big" and width > 1:  # WAV is little-endian
        ints.byteswap()
    if channels == 1:
        return array("d", (s / scale for s in ints)), rate
    count = len(ints) // channels
    mono = array("d", bytes(8 * count))
    for i in range(count):
        base = i * channels
        mono[i] = sum(ints[base : base + channels]) / (channels * scale)
    return mono, rate


def envelope(
    samples: Sequence[float], rate: int, window_s: float = 0.05, hop_s: float | None = None
) -> list[float]:
    """RMS loudness of windows of `window_s` seconds, one every `hop_s` (default: window_s).

    Windows that would run past the end are dropped.
    """
    size = max(1, round(rate * window_s))
    hop = size if hop_s is None else max(1, round(rate * hop_s))
    # Running sum of squares: each window costs O(1) whatever the overlap.
    energy = [0.0]
    acc = 0.0
    for s in samples:
        acc += s * s
        energy.append(acc)
    return [math.sqrt(max(energy[i + size] - energy[i], 0.0) / size)
            for i in range(0, len(samples) - size + 1, hop)]


def loudness_onsets(
    samples: Sequence[float], rate: int, window_s: float = 0.02, hop_s: float = 0.01
) -> list[float]:
    """How fast the loudness changes: the dB envelope minus itself one window earlier.

    Speech from one synthetic voice has much the same loudness contour in any sentence
    (syllables at a steady pace, pauses between phrases), so plain envelopes of unrelated
    sentences correlate at 0.4-0.7 at some lag. Their onsets and decays, 20 ms at a time,
    are specific to the words; the difference also drops the gain of the path.
    """
    db = [20.0 * math.log10(max(v, _SILENCE_FLOOR))
          for v in envelope(samples, rate, window_s, hop_s)]
    step = max(1, round(window_s / hop_s))
    return [db[i + step] - db[i] for i in range(len(db) - step)]


def _pearson(a: Sequence[float], b: Sequence[float]) -> float:
    n = len(a)
    if n < 2 or len(b) != n:
        return 0.0
    ma = math.fsum(a) / n
    mb = math.fsum(b) / n
    sab = math.fsum(map(operator.mul, a, b)) - n * ma * mb
    saa = math.fsum(map(operator.mul, a, a)) - n * ma * ma
    sbb = math.fsum(map(operator.mul, b, b)) - n * mb * mb
    if saa <= 1e-12 or sbb <= 1e-12:
        return 0.0
    return sab / math.sqrt(saa * sbb)


def best_envelope_correlation(
    sent_path: str | Path,
    received_path: str | Path,
    max_lag_s: float = 3.0,
    window_s: float = 0.02,
    hop_s: float = 0.01,
    min_overlap: float = 0.75,
) -> float:
    """How surely `received_path` is a recording of `sent_path`: best Pearson r over lags.

    Compares `loudness_onsets` of the two files (same window in seconds, so sample rates
    need not match) at every lag within +-`max_lag_s`; the received recording may start
    before or after the sent audio and be longer or shorter. A lag counts only where the
    overlap covers at least `min_overlap` of the shorter file (and 1 s): short overlaps
    match anything. Only the first seconds of `sent_path` that can overlap are read, so a
    long source file is cheap.

    Figures from espeak-ng speech, 4 s recordings through baresip/PCMU or sox (gain,
    resampling, noise at -45 dBFS): same speech 0.86-1.0, unrelated sentences 0.1-0.33.
    Returns a value in [-1, 1]; 0.0 when nothing can be compared (e.g. all silence).
    """
    received, received_rate = read_wav_mono(received_path)
    received_s = len(received) / received_rate
    sent, sent_rate = read_wav_mono(sent_path, max_s=received_s + max_lag_s + window_s)
    a = loudness_onsets(sent, sent_rate, window_s, hop_s)
    b = loudness_onsets(received, received_rate, window_s, hop_s)
    max_lag = round(max_lag_s / hop_s)
    need = max(round(1.0 / hop_s), math.ceil(min_overlap * min(len(a), len(b))), 2)
    best = 0.0
    # lag > 0: the received recording holds the sent audio `lag` hops after its start.
    for lag in range(-max_lag, max_lag + 1):
        a_start = max(0, -lag)
        b_start = max(0, lag)
        n = min(len(a) - a_start, len(b) - b_start)
        if n < need:
            continue
        best = max(best, _pearson(a[a_start : a_start + n], b[b_start : b_start + n]))
    return best


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise RuntimeError(f"{tool} is not installed (Debian package: {tool})")
    return found


def to_telephony_wav(source: str | Path, path: str | Path, rate: int = TELEPHONY_RATE) -> Path:
    """Convert any audio file sox reads to mono 16-bit signed PCM WAV at `rate`."""
    path = Path(path)
    subprocess.run(
        [_require("sox"), str(source), "-r", str(rate), "-c", "1", "-b", "16",
         "-e", "signed-integer", str(path)],
        check=True, capture_output=True)
    return path


def make_speech_wav(
    text: str, path: str | Path, voice: str = "en", rate: int = TELEPHONY_RATE
) -> Path:
    """Speak `text` with espeak-ng into a mono 16-bit PCM WAV at `rate` Hz; returns `path`."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run([_require("espeak-ng"), "-v", voice, "-w", str(raw), text],
                       check=True, capture_output=True)
        return to_telephony_wav(raw, path, rate)


def make_long_source(
    path: str | Path,
    seconds: float,
    text: str = DEFAULT_LONG_TEXT,
    voice: str = "en",
    rate: int = TELEPHONY_RATE,
    gap_s: float = 0.5,
) -> Path:
    """Speech repeated (with `gap_s` of silence between repeats) to exactly `seconds`.

    baresip's aufile source ends the call at the end of its file, so a test source must
    outlast the call.
    """
    with tempfile.TemporaryDirectory() as tmp:
        once = make_speech_wav(text, Path(tmp) / "once.wav", voice, rate)
        with wave.open(str(once), "rb") as w:
            speech = w.readframes(w.getnframes())
        unit = speech + bytes(2 * round(rate * gap_s))
        total = 2 * round(rate * seconds)
        repeats = total // len(unit) + 1
        _write_pcm16(Path(path), (unit * repeats)[:total], rate)
    return Path(path)


def make_silence_wav(path: str | Path, seconds: float, rate: int = TELEPHONY_RATE) -> Path:
    """Digital silence, mono 16-bit PCM."""
    _write_pcm16(Path(path), bytes(2 * round(rate * seconds)), rate)
    return Path(path)


def wav_duration_s(path: str | Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def _write_pcm16(path: Path, frames: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


def tracked_envelope_correlation(
    sent_path: str | Path,
    received_path: str | Path,
    received_start_s: float,
    duration_s: float,
    sent_start_s: float,
    max_lag_s: float = 3.0,
    window_s: float = 0.025,
    chunk_s: float = 1.0,
    slack_s: float = 0.15,
) -> tuple[float, list[float]]:
    """Mean loudness-envelope correlation of `received` with `sent`, chunk by chunk.

    Audio that crossed jitter buffers is not a rigid copy: frames are dropped or stretched,
    so the received speech drifts against the sent one by some 100 ms in 5 s, which spoils one
    correlation over the whole span. Here the received span (from `received_start_s`, for
    `duration_s`) is cut into `chunk_s` pieces; the first is matched anywhere within
    `max_lag_s` of `sent_start_s`, each next one within `slack_s` of where the previous one
    matched. Returns the mean of the chunks' best Pearson r, and the per-chunk values.

    Through pjsua2 and baresip over loopback: the same speech 0.68-0.88, unrelated 0.26-0.53.
    """
    sent, sent_rate = read_wav_mono(sent_path)
    received, received_rate = read_wav_mono(received_path)
    a = envelope(sent, sent_rate, window_s)
    b = envelope(received, received_rate, window_s)
    n = max(2, round(chunk_s / window_s))
    first = round(received_start_s / window_s)
    count = int(duration_s / chunk_s)
    expected = round(sent_start_s / window_s)
    reach = round(max_lag_s / window_s)
    scores: list[float] = []
    for i in range(count):
        piece = b[first + i * n: first + (i + 1) * n]
        if len(piece) < n:
            break
        best, best_lag = -1.0, 0
        for lag in range(-reach, reach + 1):
            start = expected + i * n + lag
            if start < 0 or start + n > len(a):
                continue
            r = _pearson(a[start:start + n], piece)
            if r > best:
                best, best_lag = r, lag
        scores.append(best)
        expected += best_lag
        reach = round(slack_s / window_s)
    if not scores:
        return 0.0, []
    return math.fsum(scores) / len(scores), scores

"""Audio helpers for tests: make tone and speech files, read recordings (finished or still
being written), find tones and dropouts, compare loudness envelopes.

Stdlib only (wave, array, math). To tell who hears whom in a call, give each end its own
tone and ask ToneTrack which tones each 100 ms of a recording holds: a yes/no per window that
G.711, jitter buffers and a busy machine leave alone. longest_gap measures dropouts of a tone.
The envelope comparison is coarser and scores rather than decides: it asks "is this the
same utterance?" through the shape of the loudness over time; keep it for speech that must
be speech (recorded messages).

Example::

    make_tone_wav(tmp / "caller.wav", CALLER_TONE_HZ, 60)
    track = ToneTrack.of_wav(tmp / "heard.wav", (CALLER_TONE_HZ, AGENT_TONE_HZ))
    assert track.fraction(AGENT_TONE_HZ) > 0.9, track.timeline()

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
from dataclasses import dataclass
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


# -- tones: what each end of a call sends, found again in what the other end heard ------------
#
# A pure tone per end makes "who hears whom" a yes/no question per 100 ms, where comparing
# speech envelopes gives a score that drifts with jitter buffers and the machine's load.
# Frequencies for the end-to-end tests are chosen away from everything else a caller hears:
# not DTMF (697-941 and 1209-1633 Hz), not a note of the built-in music on hold
# (392-784 Hz) nor a 2nd or 3rd harmonic of one (G.711 adds some), not a harmonic of each
# other, and above the first formant where espeak-ng speech puts most of its energy.

CALLER_TONE_HZ = 1100.0
"""The tone a calling test UA sends."""
AGENT_TONE_HZ = 1900.0
"""The tone an answering test UA (the agent's headset) sends."""

#: Window of tone detection: 100 ms gives 10 Hz bins, sharp enough to tell tones apart.
TONE_WINDOW_S = 0.1
#: Share of a window's power a tone must carry to count as present: two equal tones carry
#: 0.5 each, a tone in noise at 0 dB SNR 0.5, one harmonic of speech rarely more than 0.1.
MIN_TONE_SHARE = 0.25
#: Quieter tones than this (amplitude, dBFS) are absent, whatever their share of a quiet window.
MIN_TONE_DBFS = -50.0


def make_tone_samples(
    freq: float, seconds: float, rate: int = TELEPHONY_RATE, dbfs: float = -12.0,
    phase: float = 0.0,
) -> array[float]:
    """A sine of `freq` Hz at `dbfs` (peak level relative to full scale) as floats."""
    amplitude = 10.0 ** (dbfs / 20.0)
    step = 2.0 * math.pi * freq / rate
    return array("d", (amplitude * math.sin(phase + step * i)
                       for i in range(round(seconds * rate))))


def write_wav(path: str | Path, samples: Sequence[float], rate: int = TELEPHONY_RATE) -> Path:
    """Floats in [-1, 1] (clipped) as a mono 16-bit PCM WAV; returns `path`."""
    ints = array("h", (max(-32768, min(32767, round(s * 32767.0))) for s in samples))
    if sys.byteorder == "big":
        ints.byteswap()
    _write_pcm16(Path(path), ints.tobytes(), rate)
    return Path(path)


def make_tone_wav(
    path: str | Path, freq: float, seconds: float, rate: int = TELEPHONY_RATE,
    dbfs: float = -12.0,
) -> Path:
    """A WAV of one steady tone, e.g. a test UA's audio source (make it outlast the call)."""
    return write_wav(path, make_tone_samples(freq, seconds, rate, dbfs), rate)


def goertzel_power(samples: Sequence[float], freq: float, rate: int,
                   window: Sequence[float] | None = None) -> float:
    """|X(freq)|^2 of `samples` (times `window` if given), by Goertzel's recurrence."""
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    if window is None:
        for x in samples:
            s1, s2 = x + coeff * s1 - s2, s1
    else:
        for x, w in zip(samples, window, strict=True):
            s1, s2 = x * w + coeff * s1 - s2, s1
    return max(0.0, s1 * s1 + s2 * s2 - coeff * s1 * s2)


def _hann(n: int) -> array[float]:
    return array("d", (0.5 - 0.5 * math.cos(2.0 * math.pi * i / n) for i in range(n)))


def tone_levels(
    samples: Sequence[float], rate: int, tone: float, window_s: float = TONE_WINDOW_S,
) -> list[tuple[float, float]]:
    """Per window of `window_s`: (amplitude of `tone` in it, share of the window's power).

    The amplitude is the peak level a sine of that frequency would need (1.0 = full scale);
    the share is that sine's power over the window's mean-square power (1.0 for a clean tone,
    0.0 for silence). A Hann window keeps a loud neighbour (a tone 40 Hz away or more) from
    leaking in. Windows that would run past the end are dropped.
    """
    size = max(8, round(rate * window_s))
    hann = _hann(size)
    gain = math.fsum(hann) / 2.0  # |X| of a unit sine through the window
    out: list[tuple[float, float]] = []
    for start in range(0, len(samples) - size + 1, size):
        chunk = samples[start:start + size]
        amplitude = math.sqrt(goertzel_power(chunk, tone, rate, hann)) / gain
        power = math.fsum(x * x for x in chunk) / size
        share = 0.0 if power <= 1e-12 else min(1.0, amplitude * amplitude / 2.0 / power)
        out.append((amplitude, share))
    return out


@dataclass(frozen=True)
class ToneTrack:
    """Which of some tones are present in each window of a recording, in order.

    Example::

        track = ToneTrack.of(heard, 8000, (CALLER_TONE_HZ, AGENT_TONE_HZ))
        during = track.between(4.0, 9.0)
        assert during.fraction(AGENT_TONE_HZ) > 0.9, during.timeline()
    """

    tones: tuple[float, ...]
    """The frequencies looked for (Hz)."""
    window_s: float
    """Length of one window (s)."""
    windows: tuple[frozenset[float], ...]
    """Per window, the tones present in it."""
    start_s: float = 0.0
    """Where the first window starts in the recording (s)."""

    @classmethod
    def of(
        cls,
        samples: Sequence[float],
        rate: int,
        tones: Sequence[float],
        window_s: float = TONE_WINDOW_S,
        min_share: float = MIN_TONE_SHARE,
        min_dbfs: float = MIN_TONE_DBFS,
    ) -> ToneTrack:
        """Detect `tones` in `samples`: present where it carries at least `min_share` of the
        window's power and is louder than `min_dbfs`."""
        floor = 10.0 ** (min_dbfs / 20.0)
        per_tone = {t: tone_levels(samples, rate, t, window_s) for t in tones}
        count = min((len(v) for v in per_tone.values()), default=0)
        windows = tuple(
            frozenset(t for t in tones
                      if per_tone[t][i][0] >= floor and per_tone[t][i][1] >= min_share)
            for i in range(count))
        return cls(tuple(tones), window_s, windows)

    @classmethod
    def of_wav(cls, path: str | Path, tones: Sequence[float], **kwargs: float) -> ToneTrack:
        """`of` on a WAV file (see read_wav_mono; an unfinished recording reads too)."""
        samples, rate = read_wav_mono(path)
        return cls.of(samples, rate, tones, **kwargs)

    @property
    def duration_s(self) -> float:
        return len(self.windows) * self.window_s

    def between(self, start_s: float, end_s: float) -> ToneTrack:
        """The windows lying wholly within [start_s, end_s) of the recording."""
        first = max(0, math.ceil((start_s - self.start_s) / self.window_s - 1e-9))
        last = max(first, math.floor((end_s - self.start_s) / self.window_s + 1e-9))
        return ToneTrack(self.tones, self.window_s, self.windows[first:last],
                         self.start_s + first * self.window_s)

    def fraction(self, tone: float) -> float:
        """Share of the windows in which `tone` is present (0.0 with no windows)."""
        if not self.windows:
            return 0.0
        return sum(tone in w for w in self.windows) / len(self.windows)

    def seconds(self, tone: float) -> float:
        """Total time `tone` is present."""
        return sum(tone in w for w in self.windows) * self.window_s

    def longest_run_s(self, tone: float) -> float:
        """The longest stretch of consecutive windows holding `tone`."""
        best = run = 0
        for w in self.windows:
            run = run + 1 if tone in w else 0
            best = max(best, run)
        return best * self.window_s

    def first_s(self, tone: float, min_run_s: float = 0.0) -> float | None:
        """Where `tone` starts (in the recording) and lasts at least `min_run_s`; else None."""
        need = max(1, round(min_run_s / self.window_s))
        run = 0
        for i, w in enumerate(self.windows):
            run = run + 1 if tone in w else 0
            if run >= need:
                return self.start_s + (i - need + 1) * self.window_s
        return None

    def timeline(self) -> str:
        """One character per window, for failure messages: '.' none, 'a'/'b'/... the tones in
        the order given, '+' several. Prefixed by the legend and the start time."""
        marks = "abcdefghij"
        legend = ", ".join(f"{marks[i]}={t:g} Hz" for i, t in enumerate(self.tones))
        chars = []
        for w in self.windows:
            if not w:
                chars.append(".")
            elif len(w) > 1:
                chars.append("+")
            else:
                chars.append(marks[self.tones.index(next(iter(w)))])
        return (f"[{legend}; {self.window_s * 1000:g} ms per mark from "
                f"{self.start_s:.1f} s] {''.join(chars)}")


def longest_gap(
    samples: Sequence[float], tone: float, rate: int = TELEPHONY_RATE,
    window_s: float = 0.01, rel_level: float = 0.5,
) -> float:
    """The longest time (s) a steady `tone` drops out of `samples`, to `window_s`.

    The tone is cut into windows of `window_s` (10 ms: 80 samples at 8 kHz); a window is in
    a gap when the tone's amplitude there is below `rel_level` of its usual level (the 90th
    percentile over all windows), so a window half in the gap counts on the side it mostly
    lies; a window where the tone carries less than MIN_TONE_SHARE of the power (noise or
    another sound instead of it) is in a gap too. A steady tone gives 0.0; a signal without
    the tone, its whole length (to a window).
    """
    size = max(8, round(rate * window_s))
    # Rectangular window: a window that holds the tone for a fraction p of its length
    # measures about p times the full amplitude, so the 50% rule above splits edges evenly.
    levels: list[float] = []
    shares: list[float] = []
    for start in range(0, len(samples) - size + 1, size):
        chunk = samples[start:start + size]
        amplitude = 2.0 * math.sqrt(goertzel_power(chunk, tone, rate)) / size
        power = math.fsum(x * x for x in chunk) / size
        levels.append(amplitude)
        shares.append(0.0 if power <= 1e-12 else amplitude * amplitude / 2.0 / power)
    if not levels:
        return 0.0
    ordered = sorted(levels)
    usual = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    floor = max(rel_level * usual, 10.0 ** (MIN_TONE_DBFS / 20.0))
    best = run = 0
    for level, share in zip(levels, shares, strict=True):
        # Noise or another sound in place of the tone is a gap too, however loud.
        run = run + 1 if level < floor or share < MIN_TONE_SHARE else 0
        best = max(best, run)
    return best * size / rate


def audible_seconds(
    samples: Sequence[float], rate: int, min_dbfs: float = -40.0, window_s: float = TONE_WINDOW_S,
) -> float:
    """How long `samples` hold sound louder than `min_dbfs` (RMS per window): anything at
    all, speech or tones, as opposed to silence."""
    floor = 10.0 ** (min_dbfs / 20.0)
    loud = sum(1 for v in envelope(samples, rate, window_s) if v >= floor)
    return loud * window_s


# -- G.711 mu-law, to test what the telephone codec does to a signal ---------------------------

_MULAW_BIAS = 0x84
_MULAW_CLIP = 32635


def mulaw_encode(sample: int) -> int:
    """One 16-bit linear sample as its G.711 mu-law byte."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(_MULAW_CLIP, -sample if sample < 0 else sample) + _MULAW_BIAS
    exponent = max(0, magnitude.bit_length() - 8)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def mulaw_decode(byte: int) -> int:
    """A G.711 mu-law byte as its 16-bit linear sample."""
    byte = ~byte & 0xFF
    exponent = (byte >> 4) & 0x07
    magnitude = (((byte & 0x0F) << 3) + _MULAW_BIAS) << exponent
    magnitude -= _MULAW_BIAS
    return -magnitude if byte & 0x80 else magnitude


def mulaw_round_trip(samples: Sequence[float]) -> array[float]:
    """Floats in [-1, 1] through a G.711 mu-law encoder and decoder, as a PCMU call does."""
    return array("d", (mulaw_decode(mulaw_encode(max(-32768, min(32767, round(s * 32768.0)))))
                       / 32768.0 for s in samples))


# -- recordings still being written ------------------------------------------------------------


class GrowingWav:
    """Reads a 16-bit PCM WAV file that another process is still writing, a piece at a time.

    A recorder such as baresip's sndfile writes the samples as the call goes and fills in the
    RIFF sizes only when it closes the file, so `wave` sees an empty file until then. This
    finds the data chunk by walking the chunks and reads whatever whole samples follow it.

    Example::

        live = GrowingWav(path)
        fresh = live.read_new()   # samples written since the last call, floats in [-1, 1]
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rate: int | None = None
        """The file's sample rate, once its header has been read."""
        self.samples_read = 0
        """How many samples read_new has returned in all."""
        self._data_offset: int | None = None

    @property
    def seconds_read(self) -> float:
        return 0.0 if not self.rate else self.samples_read / self.rate

    def _read_header(self) -> bool:
        try:
            with self.path.open("rb") as f:
                head = f.read(4096)
        except FileNotFoundError:
            return False
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        pos = 12
        channels = width = 0
        while pos + 8 <= len(head):
            chunk, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
            if chunk == b"fmt " and pos + 24 <= len(head):
                channels = int.from_bytes(head[pos + 10:pos + 12], "little")
                self.rate = int.from_bytes(head[pos + 12:pos + 16], "little")
                width = int.from_bytes(head[pos + 22:pos + 24], "little") // 8
            elif chunk == b"data":
                if (channels, width) != (1, 2):
                    raise ValueError(f"{self.path}: need mono 16-bit PCM, got {channels} "
                                     f"channel(s) of {width * 8} bits")
                self._data_offset = pos + 8
                return True
            pos += 8 + size + (size & 1)
        return False

    def read_new(self) -> array[float]:
        """The whole samples written since the last call (none while there is no header)."""
        if self._data_offset is None and not self._read_header():
            return array("d")
        assert self._data_offset is not None
        with self.path.open("rb") as f:
            f.seek(self._data_offset + 2 * self.samples_read)
            raw = f.read()
        ints = array("h")
        ints.frombytes(raw[: len(raw) - len(raw) % 2])
        if sys.byteorder == "big":
            ints.byteswap()
        self.samples_read += len(ints)
        return array("d", (s / 32768.0 for s in ints))


class ToneFollower:
    """Tones and loudness found so far in a recording that is still being written.

    Each `poll` analyses only the windows completed since the last one, so a test can poll a
    call's recording every few tens of milliseconds for as long as the call lasts.

    Example::

        heard = ToneFollower(recording.received, (CALLER_TONE_HZ, AGENT_TONE_HZ))
        track = heard.poll()
        track.seconds(AGENT_TONE_HZ), heard.audible_s
    """

    def __init__(self, path: str | Path, tones: Sequence[float],
                 window_s: float = TONE_WINDOW_S, audible_dbfs: float = -40.0) -> None:
        self.wav = GrowingWav(path)
        self.tones = tuple(tones)
        self.window_s = window_s
        self.audible_dbfs = audible_dbfs
        self.audible_s = 0.0
        """How long the recording has held sound louder than `audible_dbfs` so far."""
        self._pending = array("d")
        self._windows: list[frozenset[float]] = []

    def poll(self) -> ToneTrack:
        """Read what was written since the last poll; the track of the whole recording so far."""
        self._pending.extend(self.wav.read_new())
        rate = self.wav.rate
        if rate:
            size = max(8, round(rate * self.window_s))
            whole = len(self._pending) - len(self._pending) % size
            if whole:
                chunk = self._pending[:whole]
                del self._pending[:whole]
                self._windows.extend(ToneTrack.of(chunk, rate, self.tones, self.window_s).windows)
                self.audible_s += audible_seconds(chunk, rate, self.audible_dbfs, self.window_s)
        return ToneTrack(self.tones, self.window_s, tuple(self._windows))

    @property
    def seconds_so_far(self) -> float:
        """Length of the recording analysed so far (whole windows)."""
        return len(self._windows) * self.window_s

"""Recordings of bridged calls: the stereo file made from two mono parts, and the disk floor.

The SIP stack records a bridged call as two mono WAV files (pjmedia's recorder is mono): what
the caller sends and what the agent sends. When the recording ends, :class:`RecordingWorker`
joins them on its own thread into one stereo WAV (caller left, agent right, the usual layout
for quality review) and deletes the parts; the loop never waits on it. The same worker watches
the free space where recordings go: under the floor (``recording_min_free_mb``) it says so
through the inbox, and the switchboard starts no recording (and stops those running) until
the disk has room again; calls go on.

    >>> worker = RecordingWorker(Path("var/recordings"), 200, post=inbox.post)  # doctest: +SKIP
    >>> worker.start()                                                         # doctest: +SKIP
    >>> worker.submit("c1", "c1.caller.part.wav", "c1.agent.part.wav", "c1.wav")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import queue
import shutil
import threading
import time
import wave
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("ivr.recording")

CALLS_FOLDER = "calls"
"""Folder under ``recordings`` of the bridged calls' recordings (voicemails sit above)."""
CALLER_PART = ".caller.part.wav"
AGENT_PART = ".agent.part.wav"
CHUNK_FRAMES = 8000
"""Samples per channel read at a time (one second at 8 kHz): memory stays small."""
NOT_STARTED = "not started"
"""The error of a :class:`RecordingDone` for a recording the SIP stack could not start."""
CHECK_EVERY = 10.0
"""Seconds between two looks at the free disk space."""


def call_recording_path(recordings: Path | str, call_id: str) -> Path:
    """Where the stereo recording of call *call_id* goes."""
    return Path(recordings) / CALLS_FOLDER / f"{call_id}.wav"


def part_paths(path: str | Path, talk: str = "") -> tuple[str, str]:
    """The mono parts (caller, agent) the stack writes for the stereo file *path*; *talk*
    names one of several talks of the call (each with an agent), whose parts may exist at
    once (one being joined while the next is recorded)."""
    stem = str(path)[:-4] if str(path).endswith(".wav") else str(path)
    if talk:
        stem += f".{talk}"
    return stem + CALLER_PART, stem + AGENT_PART


def parts_left(path: str | Path) -> list[Path]:
    """Every mono part of the stereo file *path* still on disk (a join that failed)."""
    p = Path(path)
    return sorted(p.parent.glob(glob.escape(p.stem) + ".*part.wav"))


@dataclass(frozen=True)
class RecordingDone:
    """The worker joined (or failed to join) a call's parts into its stereo file."""

    call_id: str
    path: str
    seconds: float
    error: str = ""
    """'' when the file was written; else why not (the parts are kept then)."""


@dataclass(frozen=True)
class RecordingDisk:
    """The free space under ``recordings`` crossed the floor: *low* says which way."""

    low: bool
    free_mb: float


class InterleaveError(Exception):
    """The parts cannot be joined (unreadable, not 16-bit mono, different rates)."""


def _open_wav(path: str, channels: int) -> wave.Wave_read:
    """*path* opened for reading, checked to be 16-bit with *channels* channels."""
    try:
        wav = wave.open(path, "rb")  # noqa: SIM115 - the caller closes it
    except (OSError, EOFError, wave.Error) as exc:
        raise InterleaveError(f"cannot read {path}: {exc}") from None
    if wav.getnchannels() != channels or wav.getsampwidth() != 2:
        wav.close()
        raise InterleaveError(f"{path} is not 16-bit {'mono' if channels == 1 else 'stereo'}")
    return wav


def interleave(left_path: str, right_path: str, out_path: str) -> float:
    """Join two 16-bit mono WAV files of one rate into a stereo WAV: *left_path* in the left
    channel, *right_path* in the right. The shorter one is padded with silence at its end.
    When *out_path* already holds a stereo recording (an earlier talk of the same call), the
    new one is added after it. Written to a temporary name and renamed, so *out_path* is
    whole or as it was. Returns the seconds of the result."""
    with contextlib.ExitStack() as files:
        left = files.enter_context(_open_wav(left_path, 1))
        right = files.enter_context(_open_wav(right_path, 1))
        earlier = files.enter_context(_open_wav(out_path, 2)) \
            if os.path.exists(out_path) else None
        rate = left.getframerate()
        for other, name in ((right, right_path), (earlier, out_path)):
            if other is not None and other.getframerate() != rate:
                raise InterleaveError(f"{left_path} is {rate} Hz, {name} "
                                      f"{other.getframerate()} Hz")
        frames = max(left.getnframes(), right.getnframes())
        before = earlier.getnframes() if earlier is not None else 0
        tmp = out_path + ".tmp"
        try:
            _write_stereo(tmp, rate, earlier, left, right, frames)
            os.replace(tmp, out_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return (before + frames) / rate if rate else 0.0


def _write_stereo(path: str, rate: int, earlier: wave.Wave_read | None,
                  left: wave.Wave_read, right: wave.Wave_read, frames: int) -> None:
    with wave.open(path, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        while earlier is not None and (data := earlier.readframes(CHUNK_FRAMES)):
            out.writeframes(data)
        for _ in range(0, frames, CHUNK_FRAMES):
            a, b = _samples(left), _samples(right)
            n = max(len(a), len(b))
            a.extend([0] * (n - len(a)))
            b.extend([0] * (n - len(b)))
            both = array("h", bytes(4 * n))
            both[0::2], both[1::2] = a, b
            out.writeframes(both.tobytes())


def _samples(part: wave.Wave_read) -> array[int]:
    samples = array("h")
    samples.frombytes(part.readframes(CHUNK_FRAMES))
    return samples  # WAV is little-endian, like every machine we run on


def free_megabytes(folder: Path) -> float:
    """Free space, MB, on the file system that holds *folder* (or its nearest parent)."""
    path = Path(folder).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / 1e6


class RecordingWorker:
    """Joins finished recordings and watches the disk floor, on its own thread.

    It answers with :class:`RecordingDone` for each job, and :class:`RecordingDisk` when the
    free space under ``recordings`` goes under *min_free_mb* or back over it (at start too,
    when it is low then). *post* is the inbox's.
    """

    def __init__(self, recordings: Path, min_free_mb: int, post: Callable[[Any], None],
                 *, check_every: float = CHECK_EVERY,
                 free_mb: Callable[[Path], float] = free_megabytes):
        self.recordings = Path(recordings)
        self.min_free_mb = min_free_mb
        self.post = post
        self.check_every = check_every
        self.free_mb = free_mb
        self.low = False
        self._jobs: queue.SimpleQueue[tuple[str, str, str, str] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.check_disk()
        self._thread = threading.Thread(target=self._work, name="recordings", daemon=True)
        self._thread.start()

    def submit(self, call_id: str, caller_part: str, agent_part: str, path: str) -> None:
        self._jobs.put((call_id, caller_part, agent_part, path))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the jobs given so far, then end."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout)
            self._thread = None

    def check_disk(self) -> None:
        try:
            free = self.free_mb(self.recordings)
        except OSError as exc:
            log.error("cannot read the free space of %s: %s", self.recordings, exc)
            return
        low = free < self.min_free_mb
        if low != self.low:
            self.low = low
            self.post(RecordingDisk(low, round(free, 1)))

    def _work(self) -> None:
        next_check = time.monotonic() + self.check_every
        while True:
            job: tuple[str, str, str, str] | None = ("", "", "", "")
            with contextlib.suppress(queue.Empty):
                job = self._jobs.get(timeout=max(0.0, next_check - time.monotonic()))
            if job is None:
                return
            if job[0]:
                self.post(self.join(*job))
            if time.monotonic() >= next_check:
                self.check_disk()
                next_check = time.monotonic() + self.check_every

    def join(self, call_id: str, caller_part: str, agent_part: str, path: str) -> RecordingDone:
        """One job: the stereo file from the parts, which are deleted once it is written."""
        try:
            seconds = interleave(caller_part, agent_part, path)
        except (InterleaveError, OSError, wave.Error) as exc:
            log.error("call %s: the recording could not be saved (%s); its parts are kept",
                      call_id, exc)
            return RecordingDone(call_id, path, 0.0, str(exc))
        for part in (caller_part, agent_part):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
        log.info("call %s: recording saved, %.1f s", call_id, seconds)
        return RecordingDone(call_id, path, round(seconds, 3))

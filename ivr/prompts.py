"""Prompt audio: text rendered by espeak-ng, recordings converted, all cached and indexed.

Every file handed to the SIP layer is 8 kHz mono 16-bit PCM, the rate of the G.711 bridge, so no
call resamples. Files are named by a hash of what made them (text, voice, rate, converter
version), so a changed text makes a new file and an unchanged one is never rendered twice.

Rendering happens when a flow is loaded (:meth:`PromptLibrary.prepare`, on a worker thread),
never on the loop thread: the loop asks :meth:`PromptLibrary.files_now`, which only looks in an
in-memory index, and hands what it cannot play yet (free text from a lookup) to a
:class:`PromptRenderer`, which answers with :class:`RenderDone` through the inbox.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import queue
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ivr.flow.model import File, Flow, Prompts, Say
from ivr.flow.prompts import (
    PromptPiece,
    fixed_fragments,
    piece_words,
    speakable,
    word_language,
    word_set,
)
from ivr.notices import NOTICE_LANGUAGES, NOTICES

log = logging.getLogger("ivr.prompts")

RATE = 8000
_RENDER_VERSION = "1"
RUN_TIMEOUT = 60.0
"""Seconds any one espeak-ng or sox run may take when no deadline is given."""
PAUSE_MS = 200
"""Silence between the prompts of a sequence."""
_tmp_names = itertools.count()


class PromptError(Exception):
    """A prompt could not be made into audio (a missing tool, a broken WAV file)."""


class PromptDeadline(PromptError):
    """The deadline of a render passed before it was done."""


def check_tools() -> list[str]:
    """Names of the external programs prompts need that are missing."""
    return [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]


class PromptLibrary:
    """Renders, caches and indexes prompt audio.

        >>> lib = PromptLibrary(Path("var/prompts"), voices={"en": "en-us"})
        >>> lib.prepare(flow)                       # on a worker: renders everything fixed
        >>> lib.files_now(session_pieces)           # on the loop: paths, or None
        >>> lib.render(pieces_with_a_name)          # on a worker: renders what is missing

    ``prepare``, ``render`` and ``files_now`` may run at the same time on different threads.
    """

    def __init__(self, cache_dir: Path, voices: dict[str, str] | None = None, rate: int = 150):
        self.cache_dir = cache_dir
        self.voices = voices or {"it": "it", "en": "en-us"}
        self.rate = rate
        cache_dir.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, Path] = {}
        """What is rendered: index key (see :meth:`_say_key`) -> file."""
        self._lock = threading.Lock()

    # -- the loop's side: no rendering, no disk ------------------------------------------------
    def files_now(self, pieces: Iterable[PromptPiece]) -> tuple[str, ...] | None:
        """The files that play *pieces* in order, if all are ready; None if one needs rendering
        (free text, or something :meth:`prepare` did not render). Looks only in memory."""
        with self._lock:
            silence = self._index.get(_SILENCE_KEY)
            out: list[str] = []
            pause = False
            for piece in pieces:
                pause = pause or (bool(out) and not piece.follows)
                keys = self._keys(piece)
                if keys is None:
                    return None
                paths = [self._index.get(key) for key in keys]
                if not paths:
                    continue
                if pause:
                    if silence is None:
                        return None
                    out.append(str(silence))
                    pause = False
                for path in paths:
                    if path is None:
                        return None
                    out.append(str(path))
            return tuple(out)

    # -- a worker's side ---------------------------------------------------------------------
    def render(self, pieces: Iterable[PromptPiece],
               deadline: float | None = None) -> tuple[str, ...]:
        """The files that play *pieces*, rendering what is missing (blocking: not for the loop
        thread). *deadline* is a ``time.monotonic()`` time; past it, :class:`PromptDeadline`."""
        out: list[str] = []
        pause = False
        for piece in pieces:
            pause = pause or (bool(out) and not piece.follows)
            paths = self._render_piece(piece, deadline)
            if not paths:
                continue
            if pause:
                out.append(str(self.silence()))
                pause = False
            out.extend(str(p) for p in paths)
        return tuple(out)

    def prepare(self, flow: Flow, notices: Mapping[str, Prompts] | None = None) -> int:
        """Render, for every language of *flow* and of the notices, every fixed text, the fixed
        parts of texts with variables, every recording, and the words that say numbers and keys.
        *notices* defaults to :data:`ivr.notices.NOTICES`. Returns how many files are ready."""
        notices = NOTICES if notices is None else notices
        languages = list(dict.fromkeys((*flow.languages, *NOTICE_LANGUAGES)))
        sequences = [*flow.prompts(), *notices.values()]
        keys: set[str] = {_SILENCE_KEY}
        self.silence()
        for language in languages:
            for prompts in sequences:
                for prompt in prompts:
                    if isinstance(prompt, File):
                        keys.add(self._index_recording(prompt.path))
                    elif isinstance(prompt, Say):
                        for text in fixed_fragments(prompt.text_for(language)):
                            if speakable(text):
                                keys.add(self._index_say(text, language))
            if word_language(language) is not None:
                for word in word_set(language):
                    keys.add(self._index_say(word, language))
        return len(keys)

    def say(self, text: str, language: str, deadline: float | None = None) -> Path:
        """The file of *text* spoken in *language*, rendered if it is not in the cache."""
        voice = self.voice_for(language)
        target = self._cached(self._say_key(text, language))
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=self.cache_dir) as tmp:
            raw = Path(tmp) / "raw.wav"
            self._run(["espeak-ng", "-v", voice, "-s", str(self.rate), "-w", str(raw), "--", text],
                      _remaining(deadline))
            self._to_bridge_format(raw, target, deadline)
        log.debug("rendered %r (%s) to %s", text[:40], voice, target.name)
        return target

    def recording(self, path: str, deadline: float | None = None) -> Path:
        """A recorded WAV converted to the bridge's format (cached by path, size and time)."""
        source = Path(path)
        stat = source.stat()
        target = self._cached(f"file\0{source.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}")
        if not target.exists():
            self._to_bridge_format(source, target, deadline)
        return target

    def silence(self) -> Path:
        """The short pause put between the prompts of a sequence (made once, without tools)."""
        target = self.cache_dir / f"silence-{PAUSE_MS}ms-{_RENDER_VERSION}.wav"
        if not target.exists():
            _write_wav(target, b"\0\0" * (RATE * PAUSE_MS // 1000))
        with self._lock:
            self._index[_SILENCE_KEY] = target
        return target

    def sequence(self, pieces: Iterable[PromptPiece]) -> Path:
        """One WAV holding the pieces in order (for a player that takes a single file)."""
        files = [Path(f) for f in self.render(pieces)]
        if len(files) == 1:
            return files[0]
        target = self._cached("seq\0" + "\0".join(f.name for f in files))
        if not target.exists():
            _join_wavs(files, target)
        return target

    def voice_for(self, language: str) -> str:
        return self.voices.get(language) or self.voices.get(language.split("-")[0]) or "en-us"

    # -- inside ------------------------------------------------------------------------------
    def _say_key(self, text: str, language: str) -> str:
        return f"say\0{self.voice_for(language)}\0{self.rate}\0{text}"

    def _keys(self, piece: PromptPiece) -> list[str] | None:
        """Index keys of the files that play *piece*; None if it can only be rendered."""
        if piece.kind == "say":
            return [self._say_key(piece.value, piece.language)] if speakable(piece.value) else []
        if piece.kind == "file":
            return [_file_key(piece.value)]
        words = piece_words(piece)
        if words is None:
            return None
        return [self._say_key(word, piece.language) for word in words]

    def _index_say(self, text: str, language: str, deadline: float | None = None) -> str:
        key = self._say_key(text, language)
        with self._lock:
            if key in self._index:
                return key
        path = self.say(text, language, deadline)
        with self._lock:
            self._index[key] = path
        return key

    def _index_recording(self, path: str, deadline: float | None = None) -> str:
        target = self.recording(path, deadline)  # always: the file may have changed
        key = _file_key(path)
        with self._lock:
            self._index[key] = target
        return key

    def _render_piece(self, piece: PromptPiece, deadline: float | None) -> list[Path]:
        if piece.kind == "file":
            return [self.recording(piece.value, deadline)]
        if piece.kind == "say":
            if not speakable(piece.value):
                return []
            key = self._index_say(piece.value, piece.language, deadline)
            with self._lock:
                return [self._index[key]]
        words = piece_words(piece)
        if words is not None:
            keys = [self._index_say(word, piece.language, deadline) for word in words]
            with self._lock:
                return [self._index[key] for key in keys]
        # free text, or a number in a language without a word set: the synthesiser says it;
        # not indexed, so names from lookups do not pile up in memory
        return [self.say(piece.spoken(), piece.language, deadline)]

    def _cached(self, key: str, suffix: str = ".wav") -> Path:
        digest = hashlib.sha256(f"{_RENDER_VERSION}\0{key}".encode()).hexdigest()[:24]
        return self.cache_dir / f"{digest}{suffix}"

    def _run(self, argv: list[str], timeout: float) -> None:
        """Run one tool; the one place that starts processes (tests replace it)."""
        try:
            subprocess.run(argv, check=True, capture_output=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise PromptError(f"'{argv[0]}' is not installed (Debian package {argv[0]})") from exc
        except subprocess.TimeoutExpired as exc:
            raise PromptDeadline(f"{argv[0]} took longer than {timeout:.1f} s") from exc
        except subprocess.CalledProcessError as exc:
            err = exc.stderr.decode(errors="replace").strip().splitlines()
            raise PromptError(f"{argv[0]} failed: {err[-1] if err else exc}") from exc

    def _to_bridge_format(self, source: Path, target: Path, deadline: float | None) -> None:
        tmp = _tmp_path(target)
        try:
            self._run(["sox", str(source), "-r", str(RATE), "-c", "1", "-b", "16",
                       "-e", "signed-integer", str(tmp)], _remaining(deadline))
            tmp.replace(target)  # atomic: a crash never leaves half a prompt in the cache
        finally:
            tmp.unlink(missing_ok=True)


_SILENCE_KEY = "silence"


def _file_key(path: str) -> str:
    return f"file\0{path}"


def _remaining(deadline: float | None) -> float:
    if deadline is None:
        return RUN_TIMEOUT
    left = deadline - time.monotonic()
    if left <= 0:
        raise PromptDeadline("deadline passed")
    return min(left, RUN_TIMEOUT)


def _tmp_path(target: Path) -> Path:
    """A name no other thread or process writes to: two may render the same file at once."""
    return target.with_name(f"{target.stem}.tmp{os.getpid()}-{next(_tmp_names)}.wav")


def _write_wav(target: Path, frames: bytes) -> None:
    tmp = _tmp_path(target)
    try:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes(frames)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _join_wavs(files: list[Path], target: Path) -> None:
    frames = bytearray()
    for f in files:
        with wave.open(str(f), "rb") as w:
            frames += w.readframes(w.getnframes())
    _write_wav(target, bytes(frames))


# -- rendering off the loop ---------------------------------------------------------------------
@dataclass(frozen=True)
class RenderDone:
    """A render asked of :class:`PromptRenderer` is over."""

    key: str
    """What the request was for (a call id, a leg), as given to :meth:`PromptRenderer.submit`."""
    play_id: int
    """The play the files are for; the caller drops a stale one."""
    files: tuple[str, ...] | None
    """The files to play in order, or None when the render failed."""
    error: str = ""
    """Why it failed: 'deadline' when it could not be done in time, else the tool's message."""


@dataclass(frozen=True)
class _Request:
    key: str
    play_id: int
    pieces: tuple[PromptPiece, ...]
    deadline: float


class PromptRenderer:
    """Renders prompts on daemon worker threads and posts a :class:`RenderDone` for each.

        >>> renderer = PromptRenderer(library, post=inbox.put)
        >>> renderer.submit("call-7", play_id=3, pieces=pieces, deadline_s=time.monotonic() + 2)
        >>> renderer.close()

    ``post`` runs on a worker thread: it should only hand the result to the loop.
    """

    def __init__(self, library: PromptLibrary, post: Callable[[RenderDone], None],
                 workers: int = 1):
        self.library = library
        self._post = post
        self._requests: queue.Queue[_Request | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._work, name=f"prompt-render-{i}",
                                          daemon=True) for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, play_id: int, pieces: Iterable[PromptPiece],
               deadline_s: float) -> None:
        """Ask for the files of *pieces*; *deadline_s* is a ``time.monotonic()`` time after
        which the answer is useless (a request not started by then answers 'deadline')."""
        self._requests.put(_Request(key, play_id, tuple(pieces), deadline_s))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers once the requests already submitted are answered."""
        for _ in self._threads:
            self._requests.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            self._post_safely(self._answer(request))

    def _answer(self, request: _Request) -> RenderDone:
        if time.monotonic() >= request.deadline:
            return RenderDone(request.key, request.play_id, None, "deadline")
        try:
            files = self.library.render(request.pieces, request.deadline)
        except PromptDeadline:
            return RenderDone(request.key, request.play_id, None, "deadline")
        except Exception as exc:  # noqa: BLE001 - any failure is answered, never lost
            log.error("cannot render a prompt for %s: %s", request.key, exc)
            return RenderDone(request.key, request.play_id, None, str(exc) or type(exc).__name__)
        return RenderDone(request.key, request.play_id, files)

    def _post_safely(self, done: RenderDone) -> None:
        try:
            self._post(done)
        except Exception:  # a broken inbox must not kill the worker
            log.exception("cannot post the render result for %s", done.key)


def music_on_hold(cache_dir: Path) -> Path:
    """A gentle looping tune (soft arpeggio) made without any tool, for when none is configured."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"moh-{_RENDER_VERSION}.wav"
    if target.exists():
        return target
    notes = [392.0, 493.9, 587.3, 784.0, 587.3, 493.9, 440.0, 523.3, 659.3, 523.3]
    frames = bytearray()
    for freq in notes:
        n = int(RATE * 0.4)
        for i in range(n):
            envelope = min(1.0, i / 200) * min(1.0, (n - i) / 800)
            value = 0.18 * envelope * math.sin(2 * math.pi * freq * i / RATE)
            frames += struct.pack("<h", int(value * 32767))
    _write_wav(target, bytes(frames))
    return target

"""Prompt audio: text rendered by espeak-ng, recordings converted, sequences joined, all cached.

Every file handed to the SIP layer is 8 kHz mono 16-bit PCM, the rate of the G.711 bridge, so no
call resamples. Files are named by a hash of what made them (text, voice, rate, converter
version), so a changed text makes a new file and an unchanged one is never rendered twice.
Rendering happens when a flow is loaded, never during a call.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import struct
import subprocess
import tempfile
import wave
from collections.abc import Iterable
from pathlib import Path

from ivr.engine import PromptPiece
from ivr.engine.session import resolve
from ivr.flow.model import Flow, Prompt, Say

log = logging.getLogger("ivr.prompts")

RATE = 8000
_RENDER_VERSION = "1"


class PromptError(Exception):
    """A prompt could not be made into audio (a missing tool, a broken WAV file)."""


def check_tools() -> list[str]:
    """Names of the external programs prompts need that are missing."""
    return [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]


class PromptLibrary:
    """Renders and caches prompt audio.

        >>> lib = PromptLibrary(Path("var/prompts"), voices={"en": "en-us"})
        >>> lib.sequence((PromptPiece("say", "Hello", "en"),))   # Path to an 8 kHz WAV
    """

    def __init__(self, cache_dir: Path, voices: dict[str, str] | None = None, rate: int = 150):
        self.cache_dir = cache_dir
        self.voices = voices or {"it": "it", "en": "en-us"}
        self.rate = rate
        cache_dir.mkdir(parents=True, exist_ok=True)

    def _cached(self, key: str, suffix: str = ".wav") -> Path:
        digest = hashlib.sha256(f"{_RENDER_VERSION}\0{key}".encode()).hexdigest()[:24]
        return self.cache_dir / f"{digest}{suffix}"

    def voice_for(self, language: str) -> str:
        return self.voices.get(language) or self.voices.get(language.split("-")[0]) or "en-us"

    def say(self, text: str, language: str) -> Path:
        voice = self.voice_for(language)
        target = self._cached(f"say\0{voice}\0{self.rate}\0{text}")
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=self.cache_dir) as tmp:
            raw = Path(tmp) / "raw.wav"
            self._run(["espeak-ng", "-v", voice, "-s", str(self.rate), "-w", str(raw), "--", text])
            self._to_bridge_format(raw, target)
        log.debug("rendered %r (%s) to %s", text[:40], voice, target.name)
        return target

    def recording(self, path: str) -> Path:
        source = Path(path)
        stat = source.stat()
        target = self._cached(f"file\0{source.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}")
        if not target.exists():
            self._to_bridge_format(source, target)
        return target

    def piece(self, piece: PromptPiece) -> Path:
        if piece.kind == "say":
            return self.say(piece.value, piece.language)
        return self.recording(piece.value)

    def sequence(self, pieces: Iterable[PromptPiece]) -> Path:
        """One WAV holding the pieces in order (one player per prompt, however many pieces)."""
        files = [self.piece(p) for p in pieces]
        if len(files) == 1:
            return files[0]
        target = self._cached("seq\0" + "\0".join(f.name for f in files))
        if not target.exists():
            _join_wavs(files, target)
        return target

    def prepare(self, flow: Flow) -> int:
        """Render every prompt of *flow* in every language; returns how many files it needed."""
        count = 0
        for prompts in flow.prompts():
            for language in flow.languages:
                pieces = resolve(prompts, language)
                if any("{" in text for text in _say_texts(prompts, language)):
                    # text with variables is rendered when the call gets there; its fixed
                    # pieces are rendered now
                    for piece, text in zip(pieces, _say_texts(prompts, language), strict=True):
                        if "{" not in text:
                            self.piece(piece)
                    continue
                self.sequence(pieces)
                count += 1
        return count

    def _run(self, argv: list[str]) -> None:
        try:
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
        except FileNotFoundError as exc:
            raise PromptError(f"'{argv[0]}' is not installed (Debian package {argv[0]})") from exc
        except subprocess.CalledProcessError as exc:
            err = exc.stderr.decode(errors="replace").strip().splitlines()
            raise PromptError(f"{argv[0]} failed: {err[-1] if err else exc}") from exc

    def _to_bridge_format(self, source: Path, target: Path) -> None:
        tmp = target.with_suffix(f".tmp{os.getpid()}.wav")
        self._run(["sox", str(source), "-r", str(RATE), "-c", "1", "-b", "16",
                   "-e", "signed-integer", str(tmp)])
        tmp.replace(target)  # atomic: a crash never leaves half a prompt in the cache


def _say_texts(prompts: tuple[Prompt, ...], language: str) -> list[str]:
    return [p.text_for(language) if isinstance(p, Say) else "" for p in prompts]


def _join_wavs(files: list[Path], target: Path) -> None:
    tmp = target.with_suffix(f".tmp{os.getpid()}.wav")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        for f in files:
            with wave.open(str(f), "rb") as w:
                out.writeframes(w.readframes(w.getnframes()))
            out.writeframes(b"\0\0" * (RATE // 5))  # 200 ms between pieces
    tmp.replace(target)


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
    tmp = target.with_suffix(f".tmp{os.getpid()}.wav")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(frames))
    tmp.replace(target)
    return target

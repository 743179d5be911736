"""Prompt pieces, words rendered ahead, and rendering off the loop (real espeak-ng and sox)."""

from __future__ import annotations

import pathlib
import queue
import shutil
import struct
import threading
import time
import wave
from pathlib import Path

import pytest

from ivr.engine import PromptPiece as EnginePromptPiece
from ivr.engine import resolve as engine_resolve
from ivr.engine.session import ANNOUNCE_PROMPT as SESSION_ANNOUNCE
from ivr.engine.session import fill as session_fill
from ivr.flow.model import File, Flow, Hangup, Play, Say
from ivr.flow.prompts import (
    ANNOUNCE_PROMPT,
    PromptPiece,
    digit_words,
    fill,
    number_words,
    resolve,
    spoken_text,
    word_set,
)
from ivr.notices import FEATURE_NOTICES, NOTICES
from ivr.prompts import (
    RATE,
    PromptDeadline,
    PromptError,
    PromptLibrary,
    PromptRenderer,
    RenderDone,
)

needs_tools = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                 reason="espeak-ng and sox are needed")

POSITION = Say({"it": "Lei è il numero {position}", "en": "You are number {position}"})
WELCOME_BACK = Say({"it": "Bentornato {customer}.", "en": "Welcome back {customer}."})


def say(text: str, language: str = "en", follows: bool = False) -> PromptPiece:
    return PromptPiece("say", text, language, follows)


def piece(kind: str, value: str, language: str = "en") -> PromptPiece:
    return PromptPiece(kind, value, language, True)


# -- resolve ------------------------------------------------------------------------------------
QUEUE_TEXT = (Say({"en": "You are number {position} in the queue"}),)


@pytest.mark.parametrize(("value", "middle"), [
    ("3", [piece("number", "3")]),
    ("999999", [piece("number", "999999")]),
    ("0", [piece("number", "0")]),
    ("007", [piece("digits", "007")]),                       # leading zero: spelt
    ("1000000", [piece("digits", "1000000")]),               # more than 6 digits: spelt
    ("+393331234567", [piece("digits", "+393331234567")]),
    ("*", [piece("digits", "*")]),
    ("12#", [piece("digits", "12#")]),
    ("Rossi", [piece("text", "Rossi")]),
    ("12 B", [piece("text", "12 B")]),
    ("", []),                                                # empty: nothing at all
])
def test_a_variable_splits_its_text(value: str, middle: list[PromptPiece]) -> None:
    pieces = resolve(QUEUE_TEXT, "en", {"position": value})
    assert pieces == (say("You are number"), *middle, say("in the queue", follows=True))


def test_digits_format_spells_keys_and_free_text_letter_by_letter() -> None:
    prompts = (Say({"it": "La richiamo al {caller:digits}.", "en": "x"}),)
    assert resolve(prompts, "it", {"caller": "0212 345"}) == (
        say("La richiamo al", "it"), piece("digits", "0212345", "it"), say(".", "it", True))
    assert resolve(prompts, "it", {"caller": "12a"}) == (
        say("La richiamo al", "it"), piece("text", "1 2 a", "it"), say(".", "it", True))


def test_pieces_of_separate_prompts_start_anew() -> None:
    prompts = (File("/prompts/beep.wav"), Say({"en": "{customer}, hello."}),
               Say({"en": "  Plain text, kept as written "}), WELCOME_BACK)
    assert resolve(prompts, "en", {"customer": "Anna"}) == (
        PromptPiece("file", "/prompts/beep.wav"),
        PromptPiece("text", "Anna", "en"),            # first of its prompt: does not follow
        say(", hello.", follows=True),
        say("  Plain text, kept as written "),         # no variables: the same text (same file)
        say("Welcome back"), piece("text", "Anna"), say(".", follows=True))
    # a missing value leaves the fixed parts, and the next one still follows
    assert resolve((WELCOME_BACK,), "en", {}) == (say("Welcome back"), say(".", follows=True))
    assert spoken_text(resolve((WELCOME_BACK,), "en", {})) == "Welcome back."


@pytest.mark.parametrize("values", [
    {"position": "3", "expected_wait": "2", "caller": "+39 02*1#"},
    {"position": "12", "expected_wait": "Rossi", "caller": "1"},
    {"position": "Anna Maria", "expected_wait": "100000", "caller": "Rossi"},
])
@pytest.mark.parametrize("prompts", [ANNOUNCE_PROMPT, NOTICES["callback"], NOTICES["confirm"],
                                     (Say({"it": "La trasferisco all'interno {x:digits}.",
                                           "en": "({x}) is [{x:digits}]"}),)])
@pytest.mark.parametrize("language", ["it", "en"])
def test_spoken_text_is_what_fill_writes(prompts: tuple[Say], language: str,
                                         values: dict[str, str]) -> None:
    values = dict(values, digits=values["caller"], x=values["position"])
    expected = " ".join(fill(p.text_for(language), values) for p in prompts)
    assert spoken_text(resolve(prompts, language, values)) == " ".join(expected.split())


def test_spoken_text_spells_keys_as_they_are_said() -> None:
    # fill() writes a plain {x} as it is; the piece is spelt key by key, and so is its text
    assert fill("Code {x}.", {"x": "007"}) == "Code 007."
    assert spoken_text(resolve((Say({"en": "Code {x}."}),), "en", {"x": "007"})) == "Code 0 0 7."


def test_the_engine_names_still_import() -> None:
    assert EnginePromptPiece is PromptPiece
    assert engine_resolve is resolve
    assert session_fill is fill
    assert SESSION_ANNOUNCE is ANNOUNCE_PROMPT


# -- words --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "words"), [
    (0, ["zero"]), (7, ["seven"]), (13, ["thirteen"]), (40, ["forty"]), (21, ["twenty", "one"]),
    (105, ["one", "hundred", "five"]), (1_000, ["one", "thousand"]),
    (1_234, ["one", "thousand", "two", "hundred", "thirty", "four"]),
    (100_001, ["one", "hundred", "thousand", "one"]),
    (999_999, ["nine", "hundred", "ninety", "nine", "thousand", "nine", "hundred", "ninety",
               "nine"]),
])
def test_english_numbers(n: int, words: list[str]) -> None:
    assert number_words(n, "en") == words
    assert number_words(n, "en-GB") == words


@pytest.mark.parametrize(("n", "words"), [
    (0, ["zero"]), (1, ["uno"]), (17, ["diciassette"]), (21, ["ventuno"]), (28, ["ventotto"]),
    (23, ["venti", "tre"]), (30, ["trenta"]), (81, ["ottantuno"]), (98, ["novantotto"]),
    (100, ["cento"]), (105, ["cento", "cinque"]), (200, ["duecento"]),
    (321, ["trecento", "ventuno"]), (1_000, ["mille"]),
    (1_234, ["mille", "duecento", "trenta", "quattro"]), (2_000, ["due", "mila"]),
    (21_000, ["ventuno", "mila"]), (101_001, ["cento", "uno", "mila", "uno"]),
    (999_999, ["novecento", "novanta", "nove", "mila", "novecento", "novanta", "nove"]),
])
def test_italian_numbers_with_elisions(n: int, words: list[str]) -> None:
    assert number_words(n, "it") == words


@pytest.mark.parametrize("language", ["it", "en"])
def test_every_number_up_to_999999_is_made_of_the_word_set(language: str) -> None:
    words = set(word_set(language))
    used: set[str] = set()
    for n in range(1_000_000):
        used.update(number_words(n, language))
    assert used <= words
    assert words - used == set(digit_words("*#+", language))  # only the key words are extra


def test_keys_as_words_and_what_has_none() -> None:
    assert digit_words("+39*0#", "en") == ["plus", "three", "nine", "star", "zero", "hash"]
    assert digit_words("1*#", "it") == ["uno", "asterisco", "cancelletto"]
    with pytest.raises(ValueError, match="no number words for language 'de'"):
        number_words(3, "de")
    with pytest.raises(ValueError, match="out of range"):
        number_words(1_000_000, "en")
    with pytest.raises(ValueError, match="'a' is not a key"):
        digit_words("1a", "en")
    assert word_set("de") == ()


# -- a library prepared once, with real espeak-ng and sox -------------------------------------
def _wav(path: Path, seconds: float, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", (i % 40) * 200)
                                 for i in range(int(rate * seconds))))


def _flow(recording: Path) -> Flow:
    nodes = {
        "welcome": Play("welcome", 1, (File(str(recording)), Say({"it": "Benvenuti.",
                                                                 "en": "Welcome."})), "back"),
        "back": Play("back", 2, (WELCOME_BACK,), "wait"),
        "wait": Play("wait", 3, (POSITION,), "bye"),
        "bye": Hangup("bye", 4, (Say({"it": "Arrivederci.", "en": "Goodbye."}),)),
    }
    return Flow(name="t", version="1", source="t.yaml", start="welcome", languages=("it", "en"),
                nodes=nodes)


class NoTools:
    """Stands in for the runner of espeak-ng and sox: any call is a failure of the test."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], timeout: float) -> None:
        self.calls.append(argv)
        raise AssertionError(f"a tool was run: {argv[0]}")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[PromptLibrary, Flow, int]:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed")
    base = tmp_path_factory.mktemp("prompts")
    recording = base / "beep.wav"
    _wav(recording, 0.3)
    library = PromptLibrary(base / "cache")
    flow = _flow(recording)
    count = library.prepare(flow)
    return library, flow, count


@pytest.fixture
def library(prepared: tuple[PromptLibrary, Flow, int],
            monkeypatch: pytest.MonkeyPatch) -> PromptLibrary:
    """The prepared library, whose tools now fail if anything runs them."""
    lib = prepared[0]
    monkeypatch.setattr(lib, "_run", NoTools())
    return lib


def _cached(lib: PromptLibrary, text: str, language: str) -> str:
    return str(lib.say(text, language))  # already in the cache: runs nothing


def _frames(path: str) -> tuple[int, int, int]:
    with wave.open(path, "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getnframes()


@needs_tools
@pytest.mark.parametrize("language", ["it", "en"])
@pytest.mark.parametrize("position", [1, 21, 105, 1_234, 999_999])
def test_numbers_play_from_words_without_the_synthesiser(
        library: PromptLibrary, position: int, language: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pieces = resolve((POSITION,), language, {"position": str(position)})
    assert pieces[1] == PromptPiece("number", str(position), language, True)
    fixed = POSITION.text_for(language).split(" {")[0]
    expected = tuple(_cached(library, w, language)
                     for w in [fixed, *number_words(position, language)])

    def no_disk(*args: object, **kwargs: object) -> None:
        raise AssertionError("files_now touched the disk")
    with monkeypatch.context() as m:
        for name in ("exists", "stat", "open", "is_file"):
            m.setattr(pathlib.Path, name, no_disk)
        files = library.files_now(pieces)

    assert files == expected  # no pause between the words of one number
    assert isinstance(library._run, NoTools)
    assert library._run.calls == []
    for f in files:
        assert _frames(f)[:2] == (RATE, 1)


@needs_tools
def test_a_pause_separates_prompts_but_not_the_parts_of_one(library: PromptLibrary) -> None:
    prompts = (Say({"en": "Goodbye."}), POSITION, Say({"en": "Welcome."}))
    files = library.files_now(resolve(prompts, "en", {"position": "21"}))
    pause = str(library.silence())
    assert files == (_cached(library, "Goodbye.", "en"), pause,
                     _cached(library, "You are number", "en"),
                     _cached(library, "twenty", "en"), _cached(library, "one", "en"), pause,
                     _cached(library, "Welcome.", "en"))
    assert _frames(pause) == (RATE, 1, RATE // 5)  # 200 ms
    # keys are spelt from words as well; a trailing full stop is not a file
    files = library.files_now(resolve(NOTICES["callback"], "it", {"caller": "+39*1"}))
    assert files is not None
    assert files[1:6] == tuple(_cached(library, w, "it")
                               for w in ["più", "tre", "nove", "asterisco", "uno"])


@needs_tools
def test_recordings_are_converted_ahead(library: PromptLibrary,
                                        prepared: tuple[PromptLibrary, Flow, int]) -> None:
    flow = prepared[1]
    files = library.files_now(resolve(next(flow.nodes["welcome"].prompt_sequences()), "it"))
    assert files is not None
    assert len(files) == 3
    rate, channels, frames = _frames(files[0])
    assert (rate, channels) == (RATE, 1)
    assert frames == pytest.approx(0.3 * RATE, abs=2)
    assert files[1] == str(library.silence())


@needs_tools
@pytest.mark.parametrize("language", ["it", "en"])
def test_notices_are_prepared(library: PromptLibrary, language: str,
                              prepared: tuple[PromptLibrary, Flow, int]) -> None:
    assert set(FEATURE_NOTICES) == {"login", "logout", "pause", "unpause", "refused",
                                    "disposition"}
    for name, prompts in NOTICES.items():
        values = {"position": "4", "expected_wait": "12", "caller": "3331234567", "digits": "42"}
        files = library.files_now(resolve(prompts, language, values))
        assert files, f"{name} ({language}) is not ready"
    assert prepared[2] > 60  # the count covers texts, notices, words and the pause


@needs_tools
def test_free_text_is_not_ready_and_is_rendered_by_a_worker(
        prepared: tuple[PromptLibrary, Flow, int]) -> None:
    lib = prepared[0]
    pieces = resolve((WELCOME_BACK,), "en", {"customer": "Rossi"})
    assert lib.files_now(pieces) is None

    done: queue.Queue[RenderDone] = queue.Queue()
    renderer = PromptRenderer(lib, done.put)
    try:
        renderer.submit("call-1", 7, pieces, time.monotonic() + 60)
        result = done.get(timeout=60)
    finally:
        renderer.close()
    assert (result.key, result.play_id, result.error) == ("call-1", 7, "")
    assert result.files is not None
    assert len(result.files) == 2
    assert result.files[0] == lib.files_now(pieces[:1])[0]  # type: ignore[index]
    rate, channels, frames = _frames(result.files[1])
    assert (rate, channels) == (RATE, 1)
    assert frames > RATE // 10  # "Rossi" is spoken
    assert lib.render(pieces) == result.files  # now in the cache
    assert lib.files_now(pieces) is None  # but free text never plays without a worker


@needs_tools
def test_a_request_past_its_deadline_is_answered_deadline(library: PromptLibrary) -> None:
    done: queue.Queue[RenderDone] = queue.Queue()
    renderer = PromptRenderer(library, done.put, workers=2)
    try:
        pieces = resolve((WELCOME_BACK,), "en", {"customer": "Bianchi"})
        renderer.submit("call-2", 3, pieces, time.monotonic() - 1)
        assert done.get(timeout=30) == RenderDone("call-2", 3, None, "deadline")
        # a failing tool is answered with its message, and the worker lives on
        renderer.submit("call-3", 4, pieces, time.monotonic() + 60)
        failed = done.get(timeout=30)
        assert failed.key == "call-3"
        assert failed.files is None
        assert failed.error.startswith("a tool was run: espeak-ng")
        renderer.submit("call-4", 5, resolve((POSITION,), "en", {"position": "8"}),
                        time.monotonic() + 60)
        ok = done.get(timeout=30)
        assert ok.key == "call-4"
        assert ok.error == ""
        assert ok.files
    finally:
        renderer.close()
    with pytest.raises(PromptDeadline, match="deadline passed"):
        library.render(pieces, deadline=time.monotonic() - 1)


@needs_tools
def test_two_threads_render_the_same_text_at_once(tmp_path: Path) -> None:
    lib = PromptLibrary(tmp_path)
    pieces = resolve((Say({"en": "Same {x}"}),), "en", {"x": "Verdi"})
    start = threading.Barrier(3)
    results: list[tuple[str, ...] | BaseException] = []

    def render() -> None:
        start.wait(timeout=30)
        try:
            results.append(lib.render(pieces))
        except BaseException as exc:  # noqa: BLE001 - the assertion below shows any failure
            results.append(exc)
    threads = [threading.Thread(target=render) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 3
    assert results[0] == results[1] == results[2]
    assert isinstance(results[0], tuple)
    for f in results[0]:
        assert _frames(f)[:2] == (RATE, 1)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]


@needs_tools
def test_a_missing_tool_is_a_prompt_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    lib = PromptLibrary(tmp_path / "cache")
    with pytest.raises(PromptError, match="'espeak-ng' is not installed"):
        lib.render((say("Hello"),))

"""End to end: the lookup, voicemail and transfer nodes in a real `ivr run` process, with pjsua2
peers as callers, a reception phone and a gateway, and a CRM on a local HTTP server.

Flows are in tests/flows_e2e/. Figures measured here are appended to var/e2e-figures.txt.

Audio is checked by tones (tests/support/audio.py says why these frequencies): the caller sends
one, the reception another, and the test asks of each 100 ms of a recording which of them it
holds, a yes/no answer that a loaded machine does not blur. Recordings are read once they are
closed (after the peer's exit, or the call record that follows the voicemail file), or through
GrowingWav, which also reads a file its writer was killed before closing.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import urllib.parse
import wave
from array import array
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

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
    make_tone_samples,
    make_tone_wav,
    wav_duration_s,
    write_wav,
)

pytestmark = pytest.mark.e2e
FLOWS = Path(__file__).resolve().parent / "flows_e2e"
RESULTS = Path(__file__).resolve().parent.parent / "var" / "e2e-figures.txt"
LEAD_S = 2.0
"""Silence before the caller speaks: longer than the prompt and the beep (about 1.2 s), shorter
than that plus silence_seconds (2 s), which would end the recording before the first word."""
MESSAGE_S = 4.0
"""Length of the message the caller leaves: its tone, once."""
TONES = (CALLER_TONE_HZ, AGENT_TONE_HZ)
"""The caller's tone, and the reception's (the phone a call is transferred to)."""
STRAY_S = 0.3
"""A tone heard for less than this in a row counts as a stray window, not as the tone."""
MARGIN_S = 1.0
"""Slack around a moment taken from the peers' clocks (an answer, a hang-up) as a place in a
recording: the callbacks and the recorder's first frame may be that far apart on a busy machine."""
MOSTLY = 0.9
"""Share of the windows of a span in which the tone expected there must be present."""
HEARD_S = 2.0
"""Seconds of the reception's 5 s of talk in which each end must be checked to hear the other,
at the least: what the bridge's start and the margin before the hang-up leave of it."""


def note_figure(text: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(text + "\n")
    print(text)


@pytest.fixture
def boards(tmp_path: Path) -> Iterator[Callable[..., Switchboard]]:
    """Start switchboards on a flow (and extra ivr.yaml text); each is stopped and checked."""
    require_sip_stack()
    started: list[Switchboard] = []

    def start(flow: Path, extra_config: str = "") -> Switchboard:
        sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                         agents={"anna": free_udp_port()}, flow=flow, extra_config=extra_config)
        started.append(sb)
        return sb.start()

    yield start
    for sb in started:
        assert sb.stop() == 0, sb.log_tail()
        text = sb.log_path.read_text()
        assert "Traceback" not in text, sb.log_tail()


def by_caller(board: Switchboard) -> dict[str, dict[str, Any]]:
    return {str(r["caller"]): r for r in board.records()}


def finished_records(board: Switchboard, callers: list[str],
                     timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """The call records of `callers` once each has ended: the writer thread commits a record a
    moment after the call, and a voicemail file is closed before its call's record is written."""

    def check() -> dict[str, dict[str, Any]] | None:
        records = by_caller(board)
        done = all(records.get(c, {}).get("ended_at") is not None for c in callers)
        return records if done else None

    return wait_until(check, f"the records of the calls from {', '.join(callers)}", timeout,
                      details=board.log_tail)


def log_lines(board: Switchboard, call_id: object) -> list[str]:
    return [line for line in board.log_path.read_text().splitlines() if str(call_id) in line]


def heard_by(who: Peer, path: Path) -> ToneTrack:
    """The tones in what the peer `who` recorded into `path`; call it after the peer ended.

    GrowingWav reads a file whether its writer closed it (after a clean exit) or not (a peer
    killed on a busy machine leaves sizes of 0 in the header, which `wave` refuses): whatever
    samples reached the disk count. A file with none fails here, saying so.
    """
    code = None if who.proc is None else who.proc.poll()
    state = "still running" if code is None else f"exit code {code}"
    whose = f"{path.name} of {who.name} ({state})"
    assert path.exists(), f"no {whose}:\n{who.output()}"
    wav = GrowingWav(path)
    samples = wav.read_new()
    size = path.stat().st_size
    assert wav.rate is not None, f"{whose} has no WAV header ({size} bytes):\n{who.output()}"
    assert len(samples) > 0, f"{whose} holds no audio ({size} bytes):\n{who.output()}"
    return ToneTrack.of(samples, wav.rate, TONES)


def last_s(track: ToneTrack, tone: float) -> float | None:
    """Where `tone` was last present in the recording (the end of its last window); else None."""
    held = [i for i, w in enumerate(track.windows) if tone in w]
    return None if not held else track.start_s + (held[-1] + 1) * track.window_s


# -- lookup --------------------------------------------------------------------------------------
class _Crm(BaseHTTPRequestHandler):
    """Answers by the caller's number: a customer, an error, a slow answer, broken JSON."""

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Crm.requests.append(self.path)
        number = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["number"][0]
        if number == "3330000001":
            self._send(200, json.dumps({"customer": {"name": "Rossi", "tier": "gold"}}))
        elif number == "3330000002":
            self._send(200, json.dumps({"customer": {"name": "Bianchi", "tier": "silver"}}))
        elif number == "3330000003":
            self._send(500, json.dumps({"error": "database down"}))
        elif number == "3330000004":
            time.sleep(4)  # beyond the node's 1.5 s
            self._send(200, json.dumps({"customer": {"tier": "gold"}}))
        else:
            self._send(200, "{not json")

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the switchboard gave up on a slow answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def crm() -> Iterator[int]:
    _Crm.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Crm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_lookup_answer_picks_the_queue_and_failures_take_on_failure(
        boards: Callable[..., Switchboard], crm: int, tmp_path: Path) -> None:
    flow = tmp_path / "lookup.yaml"
    flow.write_text((FLOWS / "lookup.yaml").read_text().replace("127.0.0.1:8088",
                                                                f"127.0.0.1:{crm}"))
    board = boards(flow)
    numbers = ["3330000004", "3330000001", "3330000002", "3330000003", "3330000005"]
    callers = []
    for number in numbers:  # the slow one first: the others must not wait for it
        callers.append(peer(tmp_path, number, "caller", free_udp_port(), "--target", board.uri,
                            "--hold", "4", "--duration", "30").start())
    for caller in callers:
        assert caller.wait_exit(35) == 0
    records = by_caller(board)
    assert set(records) == set(numbers)
    expected = {
        "3330000001": ("crm > tier[case 1] > vip", "support"),      # known customer, gold
        "3330000002": ("crm > tier[default] > standard", "sales"),  # known, another tier
        "3330000003": ("crm[error] > fallback", "sales"),           # HTTP 500
        "3330000004": ("crm[error] > fallback", "sales"),           # timeout
        "3330000005": ("crm[error] > fallback", "sales"),           # broken JSON
    }
    for number, (path, queue) in expected.items():
        record = records[number]
        assert (record["ivr_path"], record["queue"]) == (path, queue), record
        assert record["outcome"] == "abandoned_queue"
    assert sorted(urllib.parse.parse_qs(urllib.parse.urlsplit(p).query)["number"][0]
                  for p in _Crm.requests) == sorted(numbers)

    def lines(number: str) -> str:
        return "\n".join(line for line in log_lines(board, records[number]["call_id"])
                         if ": lookup " in line)

    assert "HTTP 500" in lines("3330000003")
    assert "timeout after 1.5 s" in lines("3330000004")
    assert "bad JSON" in lines("3330000005")
    log = board.log_path.read_text()
    assert "s3cret" not in log  # the API key in the query string
    for number in numbers:  # the caller's number never appears in a lookup line
        assert number not in lines(number)
        assert "/customers?number=***&key=***" in lines(number)
    # the loop went on while the slow lookup was pending: the other answers came at once
    answered = [float(m) for m in re.findall(r"lookup 1 answered in ([0-9.]+) s", log)]
    assert len(answered) == 2
    assert max(answered) < 1.4  # less than the slow lookup's 1.5 s: never queued behind it
    slow, fast = records["3330000004"], records["3330000001"]
    fast_s = float(fast["queued_at"]) - float(fast["answered_at"])
    slow_s = float(slow["queued_at"]) - float(slow["answered_at"])
    assert fast_s < 1.4  # bounds that hold on a loaded machine; the figure is printed below
    assert 1.4 < slow_s < 6.0
    note_figure(f"lookup: answer -> queue {fast_s:.3f} s with a CRM answer, {slow_s:.2f} s when "
                "the CRM does not answer (timeout 1.5 s); lookup times "
                f"{', '.join(f'{a * 1000:.0f} ms' for a in answered)}")


# -- voicemail -----------------------------------------------------------------------------------
_V1_SCHEMA = """
CREATE TABLE calls (
    call_id TEXT PRIMARY KEY, caller TEXT NOT NULL DEFAULT '', called TEXT NOT NULL DEFAULT '',
    trunk TEXT NOT NULL DEFAULT '', source TEXT NOT NULL DEFAULT '',
    flow TEXT NOT NULL DEFAULT '', flow_version TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL, answered_at REAL, queued_at REAL, connected_at REAL,
    ended_at REAL, ivr_path TEXT NOT NULL DEFAULT '', queue TEXT, agent TEXT,
    wait_seconds REAL, talk_seconds REAL, outcome TEXT NOT NULL,
    end_reason TEXT NOT NULL DEFAULT ''
);
INSERT INTO calls (call_id, started_at, outcome) VALUES ('from-version-1', 1.0, 'completed');
"""


def tone_after_silence(tmp_path: Path, lead_s: float, tone_s: float) -> Path:
    """A WAV of `lead_s` s of silence, then `tone_s` s of the caller's tone: a message."""
    silence = array("d", bytes(8 * round(lead_s * 8000)))
    return write_wav(tmp_path / "message.wav",
                     silence + make_tone_samples(CALLER_TONE_HZ, tone_s, 8000), 8000)


def test_voicemail_records_the_message_and_stops_after_silence(
        boards: Callable[..., Switchboard], tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "calls.db") as db:  # a call record file of version 1
        db.executescript(_V1_SCHEMA)
    board = boards(FLOWS / "voicemail.yaml")
    sent = tone_after_silence(tmp_path, lead_s=LEAD_S, tone_s=MESSAGE_S)
    caller = peer(tmp_path, "1001", "caller", free_udp_port(), "--target", board.uri,
                  "--play", str(sent), "--play-once", "--duration", "40").start()
    assert caller.wait_exit(45) == 0  # the switchboard hangs up after "Thank you."
    records = finished_records(board, ["1001"])
    old = [r for r in board.records() if r["call_id"] == "from-version-1"]
    assert len(old) == 1
    assert old[0]["voicemail_path"] is None  # the file was migrated
    record = records["1001"]
    assert record["outcome"] == "completed"
    assert record["ivr_path"] == \
        "route[default] > message > thanks"
    path = Path(str(record["voicemail_path"]))
    assert path == board.workdir / "var" / "recordings" / f"{record['call_id']}.wav"
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    duration = wav_duration_s(path)
    track = ToneTrack.of_wav(path, TONES)
    start = track.first_s(CALLER_TONE_HZ, min_run_s=STRAY_S)
    end = last_s(track, CALLER_TONE_HZ)
    assert start is not None, track.timeline()
    assert end is not None, track.timeline()
    # the message is all there: the tone for about its length, without a gap
    message = track.between(start, start + MESSAGE_S - 0.2)
    assert message.fraction(CALLER_TONE_HZ) >= MOSTLY, track.timeline()
    assert track.seconds(CALLER_TONE_HZ) <= MESSAGE_S + 0.5, track.timeline()  # once only
    # and the recording stopped 2 s (silence_seconds) after it
    trailing = duration - end
    assert 1.8 < trailing < 2.6, (duration, end, track.timeline())
    assert any("recorded (silence)" in line for line in log_lines(board, record["call_id"]))
    note_figure(f"voicemail: {duration:.2f} s file for a {MESSAGE_S:g} s message; its tone "
                f"{track.seconds(CALLER_TONE_HZ):.1f} s in the file from {start:.1f} s; stopped "
                f"{trailing:.2f} s after the last sound (silence_seconds 2)")


def test_voicemail_ends_on_hangup_key_and_max_length(
        boards: Callable[..., Switchboard], tmp_path: Path) -> None:
    board = boards(FLOWS / "voicemail.yaml")
    long_source = make_tone_wav(tmp_path / "long.wav", CALLER_TONE_HZ, 60)
    hangs_up = peer(tmp_path, "1002", "caller", free_udp_port(), "--target", board.uri,
                    "--play", str(long_source), "--hold", "6", "--duration", "40").start()
    presses_key = peer(tmp_path, "1003", "caller", free_udp_port(), "--target", board.uri,
                       "--play", str(long_source), "--digits", "#", "--first-digit-after", "6",
                       "--duration", "40").start()
    talks_on = peer(tmp_path, "4001", "caller", free_udp_port(), "--target", board.uri,
                    "--play", str(long_source), "--duration", "40").start()
    for caller in (hangs_up, presses_key, talks_on):
        assert caller.wait_exit(45) == 0
    records = finished_records(board, ["1002", "1003", "4001"])

    hung = records["1002"]
    assert hung["outcome"] == "completed"
    assert hung["end_reason"] == "voicemail left, caller hung up"
    assert hung["ivr_path"] == "route[default] > message"
    assert any("recorded (hangup)" in line for line in log_lines(board, hung["call_id"]))

    key = records["1003"]
    assert key["ivr_path"] == "route[default] > message > thanks"
    assert any("recorded (key)" in line for line in log_lines(board, key["call_id"]))

    short = records["4001"]
    assert short["ivr_path"] == "route[case 1] > short > thanks"
    assert any("recorded (max_length)" in line for line in log_lines(board, short["call_id"]))
    short_path = Path(str(short["voicemail_path"]))
    short_s = wav_duration_s(short_path)
    assert 4.8 < short_s < 5.3, short_s  # max_seconds 5, though the caller talks on
    short_track = ToneTrack.of_wav(short_path, TONES)
    assert short_track.fraction(CALLER_TONE_HZ) >= MOSTLY, short_track.timeline()

    durations = {}
    for name in ("1002", "1003"):
        path = Path(str(records[name]["voicemail_path"]))
        durations[name] = wav_duration_s(path)
        # about 6 s after answering, less the prompt and the beep
        assert 2.5 < durations[name] < 6.0, (name, durations[name])
        track = ToneTrack.of_wav(path, TONES)
        start = track.first_s(CALLER_TONE_HZ, min_run_s=STRAY_S)
        end = last_s(track, CALLER_TONE_HZ)
        # the caller's tone all along: from the start to the end, without a gap
        assert start is not None, (name, track.timeline())
        assert start < 1.0, (name, track.timeline())
        assert end is not None, (name, track.timeline())
        assert end > durations[name] - 1.0, (name, track.timeline())
        assert track.fraction(CALLER_TONE_HZ) >= MOSTLY, (name, track.timeline())
    note_figure(f"voicemail: max_seconds 5 -> {short_s:.2f} s file; hang-up at 6 s -> "
                f"{durations['1002']:.2f} s; key at 6 s -> {durations['1003']:.2f} s")


# -- transfer ------------------------------------------------------------------------------------
def transfer_config(reception_port: int, gateway_port: int) -> str:
    return f"""
extensions:
  "201": {{uri: "sip:reception@127.0.0.1:{reception_port}"}}
dial_out:
  - {{pattern: "^0[1-9][0-9]{{5,9}}$", uri: "sip:{{number}}@127.0.0.1:{gateway_port}"}}
"""


def test_transfer_to_an_extension_and_an_allowed_number_puts_the_call_through(
        boards: Callable[..., Switchboard], tmp_path: Path) -> None:
    reception_port, gateway_port = free_udp_port(), free_udp_port()
    board = boards(FLOWS / "transfer.yaml", transfer_config(reception_port, gateway_port))
    # the peers loop their file: any length will do; longer than the call all the same
    voice = make_tone_wav(tmp_path / "reception.wav", AGENT_TONE_HZ, 60)
    caller_voice = make_tone_wav(tmp_path / "caller.wav", CALLER_TONE_HZ, 60)
    heard = tmp_path / "heard"
    heard.mkdir()
    reception = peer(tmp_path, "reception", "agent", reception_port, "--answer-after", "1",
                     "--talk", "5", "--play", str(voice), "--record-dir", str(heard),
                     "--duration", "60").start()
    gateway = peer(tmp_path, "gateway", "agent", gateway_port, "--answer-after", "0.5",
                   "--talk", "2", "--duration", "60").start()
    caller = peer(tmp_path, "3331112222", "caller", free_udp_port(), "--target", board.uri,
                  "--digits", "2,0,1", "--first-digit-after", "0.5", "--digit-gap", "0.3",
                  "--play", str(caller_voice), "--record-dir", str(heard),
                  "--duration", "50").start()
    outside = peer(tmp_path, "3334445555", "caller", free_udp_port(), "--target", board.uri,
                   "--digits", "9,0,6,1,2,3,4,5,6,7,8,#", "--first-digit-after", "0.5",
                   "--digit-gap", "0.2", "--duration", "50").start()
    try:
        assert caller.wait_exit(55) == 0
        assert outside.wait_exit(55) == 0
        # the reception hung up (its --talk): its call, and so its recording, has ended
        reception.wait_event("disconnected", timeout=10)
    finally:
        reception.stop()
        gateway.stop()
    records = finished_records(board, ["3331112222", "3334445555"])

    record = records["3331112222"]
    assert record["ivr_path"] == "menu[201] > extension"
    assert record["outcome"] == "completed"
    assert record["end_reason"] == "transferred to 201"
    assert record["transferred_to"] == "201"
    assert 4.0 < float(record["talk_seconds"]) < 6.5, record  # the reception talked 5 s
    (incoming,) = reception.events("incoming")
    sent = caller.events("digit_sent")
    latency = float(incoming["t"]) - float(sent[-1]["t"])
    assert latency < 1.0  # the third digit completes 2XX: no inter-digit wait
    # hearing each other: once the reception answered and until it hung up, the caller heard
    # its tone, and it the caller's; neither heard its own (no echo through the bridge). The
    # span checked starts where the tone does (the bridge and two jitter buffers take a moment
    # after the answer) and ends a margin before the hang-up, placed by the peers' clocks.
    (caller_on,) = caller.events("confirmed")
    (reception_on,) = reception.events("confirmed")
    (reception_off,) = reception.events("hanging_up")
    answered = float(reception_on["t"]) - float(caller_on["t"])  # in the caller's recording
    talked = float(reception_off["t"]) - float(reception_on["t"])  # in the reception's
    caller_heard = heard_by(caller, heard / "3331112222-0.wav")
    reception_heard = heard_by(reception, heard / "reception-0.wav")
    print(f"reception answered at {answered:.1f} s, talked {talked:.1f} s\n"
          f"caller heard {caller_heard.timeline()}\nreception heard {reception_heard.timeline()}")
    bridged = caller_heard.first_s(AGENT_TONE_HZ, min_run_s=STRAY_S)
    assert bridged is not None, caller_heard.timeline()
    assert bridged >= answered - MARGIN_S, (answered, caller_heard.timeline())
    to_caller = caller_heard.between(bridged, answered + talked - MARGIN_S)
    assert to_caller.duration_s >= HEARD_S, (answered, talked, caller_heard.timeline())
    assert to_caller.fraction(AGENT_TONE_HZ) >= MOSTLY, to_caller.timeline()
    assert caller_heard.longest_run_s(CALLER_TONE_HZ) < STRAY_S, caller_heard.timeline()
    from_caller = reception_heard.first_s(CALLER_TONE_HZ, min_run_s=STRAY_S)
    assert from_caller is not None, reception_heard.timeline()
    to_reception = reception_heard.between(from_caller, talked - MARGIN_S)
    assert to_reception.duration_s >= HEARD_S, (talked, reception_heard.timeline())
    assert to_reception.fraction(CALLER_TONE_HZ) >= MOSTLY, to_reception.timeline()
    assert reception_heard.longest_run_s(AGENT_TONE_HZ) < STRAY_S, reception_heard.timeline()

    out = records["3334445555"]
    assert out["ivr_path"] == "menu[9] > number[0612345678] > outside"
    assert out["transferred_to"] == "0612345678"
    assert out["end_reason"] == "transferred to 0612345678"
    assert [e["event"] for e in gateway.events() if e["event"] == "incoming"] == ["incoming"]
    assert board.metric("ivr_calls_total", {"outcome": "completed"}) == 2.0
    note_figure(f"transfer: last digit -> extension INVITE {latency * 1000:.0f} ms; audio "
                f"both ways, the other's tone in "
                f"{to_caller.fraction(AGENT_TONE_HZ):.0%} of {to_caller.duration_s:.1f} s to "
                f"the caller, {to_reception.fraction(CALLER_TONE_HZ):.0%} of "
                f"{to_reception.duration_s:.1f} s to the reception")


def test_transfer_nobody_allows_is_never_dialled_and_takes_on_failure(
        boards: Callable[..., Switchboard], tmp_path: Path) -> None:
    reception_port, gateway_port = free_udp_port(), free_udp_port()
    board = boards(FLOWS / "transfer.yaml", transfer_config(reception_port, gateway_port))
    reception = peer(tmp_path, "reception", "agent", reception_port, "--duration", "40").start()
    gateway = peer(tmp_path, "gateway", "agent", gateway_port, "--duration", "40").start()
    unknown_extension = peer(tmp_path, "3330000299", "caller", free_udp_port(), "--target",
                             board.uri, "--digits", "2,9,9", "--first-digit-after", "0.5",
                             "--digit-gap", "0.3", "--duration", "30").start()
    premium_number = peer(tmp_path, "3330000899", "caller", free_udp_port(), "--target",
                          board.uri, "--digits", "9,8,9,9,1,2,3,4,#", "--first-digit-after",
                          "0.5", "--digit-gap", "0.2", "--duration", "30").start()
    try:
        assert unknown_extension.wait_exit(35) == 0
        assert premium_number.wait_exit(35) == 0
    finally:
        reception.stop()
        gateway.stop()
    assert reception.events("incoming") == []
    assert gateway.events("incoming") == []
    records = by_caller(board)
    assert records["3330000299"]["ivr_path"] == "menu[299] > extension[failed] > sorry"
    assert records["3330000899"]["ivr_path"] == \
        "menu[9] > number[8991234] > outside[failed] > sorry"
    for record in records.values():
        assert record["outcome"] == "completed"
        assert record["end_reason"] == "flow_end"
        assert record["transferred_to"] is None
    log = board.log_path.read_text()
    assert re.search(r"WARNING .*transfer to '299' refused", log)
    assert re.search(r"WARNING .*transfer to '8991234' refused", log)


def test_transfer_to_a_busy_extension_takes_on_failure(
        boards: Callable[..., Switchboard], tmp_path: Path) -> None:
    reception_port = free_udp_port()
    board = boards(FLOWS / "transfer.yaml", transfer_config(reception_port, free_udp_port()))
    reception = peer(tmp_path, "reception", "agent", reception_port, "--reject", "486",
                     "--duration", "30").start()
    caller = peer(tmp_path, "3330000201", "caller", free_udp_port(), "--target", board.uri,
                  "--digits", "2,0,1", "--first-digit-after", "0.5", "--digit-gap", "0.3",
                  "--duration", "30").start()
    try:
        assert caller.wait_exit(35) == 0
    finally:
        reception.stop()
    assert len(reception.events("incoming")) == 1
    (record,) = board.records()
    assert record["ivr_path"] == "menu[201] > extension[failed] > sorry"
    assert record["outcome"] == "completed"
    assert record["transferred_to"] is None
    assert any("transfer to 201 failed: busy" in line
               for line in log_lines(board, record["call_id"]))


# -- hours overrides -----------------------------------------------------------------------------
def test_hours_override_set_by_a_call_holds_for_later_calls_and_restarts(
        boards: Callable[..., Switchboard], tmp_path: Path) -> None:
    def call(board: Switchboard, number: str) -> dict[str, object]:
        caller = peer(tmp_path, f"{number}-{board.sip_port}", "caller", free_udp_port(),
                      "--user", number, "--target", board.uri, "--duration", "20").start()
        assert caller.wait_exit(25) == 0
        return by_caller(board)[number]

    board = boards(FLOWS / "override.yaml")
    assert call(board, "200")["ivr_path"] == "who[default] > hours[open] > open"
    assert call(board, "101")["ivr_path"] == "who[case 1] > close > done"
    assert call(board, "201")["ivr_path"] == "who[default] > hours[closed] > closed"
    assert re.search(r"WARNING .*hours override office set to closed by call "
                     + str(by_caller(board)["101"]["call_id"]), board.log_path.read_text())
    assert board.stop() == 0

    board = boards(FLOWS / "override.yaml")  # same call record file: the switch holds
    assert "hours override office is set to closed" in board.log_path.read_text()
    assert call(board, "202")["ivr_path"] == "who[default] > hours[closed] > closed"
    assert call(board, "100")["ivr_path"] == "who[case 2] > reopen > done"
    assert call(board, "203")["ivr_path"] == "who[default] > hours[open] > open"
    with sqlite3.connect(board.db) as db:
        assert db.execute("SELECT count(*) FROM overrides").fetchone()[0] == 0

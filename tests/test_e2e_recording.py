"""End to end: a call to a queue with ``record: true`` is recorded as a stereo WAV.

A real `ivr run` process on loopback and two pjsua2 peers, each sending its own tone: a caller
(1100 Hz) who hears "this call may be recorded" and waits in the support queue, and agent
anna's phone (1900 Hz). After the talk the switchboard's worker joins the two legs' parts into
one file: the caller's tone in the left channel, the agent's in the right, for the length of the
talk the call record gives. ``ivr purge --caller`` then removes the record and the file.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import (
    ROOT,
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_sip_stack,
    wait_until,
)
from tests.support.audio import AGENT_TONE_HZ, CALLER_TONE_HZ, ToneTrack, make_tone_wav

pytestmark = pytest.mark.e2e

CALLER = "3335557777"
HOLD_S = 10.0
"""Seconds the caller stays on the line: prompt, ringing, then the talk."""
EDGE_S = 0.5
"""Slack at each end of the recording for the jitter buffers."""
MOSTLY = 0.9
RARELY = 0.05
FULL_FLOOR_MB = 1_000_000
"""The highest recording_min_free_mb ivr.yaml takes."""


def switchboard(tmp_path: Path, min_free_mb: int) -> Iterator[Switchboard]:
    require_sip_stack()
    sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(), agents={"anna": free_udp_port()},
                     flow=ROOT / "tests" / "flows_e2e" / "recording.yaml",
                     queues="  support: {agents: [anna], ring_timeout: 10, record: true}",
                     extra_config=f"recordings: rec\nrecording_min_free_mb: {min_free_mb}\n")
    sb.start()
    yield sb
    assert sb.stop() == 0, sb.log_tail()
    assert "Traceback" not in sb.log_path.read_text(), sb.log_tail()


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Switchboard]:
    yield from switchboard(tmp_path, 1)


@pytest.fixture
def full_board(tmp_path: Path) -> Iterator[Switchboard]:
    """The highest floor (1 TB): the disk counts as nearly full."""
    if shutil.disk_usage(tmp_path).free >= FULL_FLOOR_MB * 1e6:
        pytest.skip("more than 1 TB free here: no floor makes this disk nearly full")
    yield from switchboard(tmp_path, FULL_FLOOR_MB)


def call_anna(board: Switchboard, tmp_path: Path) -> None:
    """A caller who hears the notice, waits for anna and talks to her until HOLD_S is over."""
    anna = peer(tmp_path, "anna", "agent", board.agents["anna"], "--answer-after", "0.5",
                "--play", str(make_tone_wav(tmp_path / "anna.wav", AGENT_TONE_HZ, 60)),
                "--duration", "60").start()
    caller = peer(tmp_path, CALLER, "caller", free_udp_port(), "--target", board.uri,
                  "--hold", str(HOLD_S),
                  "--play", str(make_tone_wav(tmp_path / "caller.wav", CALLER_TONE_HZ, 60)),
                  "--duration", "60").start()
    try:
        assert caller.wait_exit(40) == 0
    finally:
        caller.stop()
        anna.stop()


def closed_record(board: Switchboard) -> dict[str, Any]:
    def closed() -> dict[str, Any] | None:
        rows = [r for r in board.records() if r["outcome"] != "in_progress"]
        return rows[0] if rows else None

    return wait_until(closed, "the call's record", timeout=10)


def channels(path: Path) -> tuple[int, array[float], array[float]]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (2, 2)
        rate = w.getframerate()
        data = array("h")
        data.frombytes(w.readframes(w.getnframes()))
    return rate, array("d", (s / 32768 for s in data[0::2])), \
        array("d", (s / 32768 for s in data[1::2]))


def test_caller_left_agent_right_for_the_talk_and_purge_removes_it(board: Switchboard,
                                                                    tmp_path: Path) -> None:
    call_anna(board, tmp_path)
    board.wait_for_metric("ivr_recordings_total", {"result": "saved"}, value=1, timeout=20)
    record = closed_record(board)
    assert record["outcome"] == "completed", record
    path = Path(record["recording_path"])
    assert path == tmp_path / "rec" / "calls" / f"{record['call_id']}.wav"
    assert path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # parts deleted

    rate, left, right = channels(path)
    seconds = len(left) / rate
    talk = float(record["talk_seconds"])
    print(f"recording {seconds:.2f} s, talk {talk:.2f} s")
    assert talk > 3.0, record
    assert abs(seconds - talk) < 1.0, (seconds, talk)
    tones = (CALLER_TONE_HZ, AGENT_TONE_HZ)
    heard_left = ToneTrack.of(left, rate, tones).between(EDGE_S, seconds - EDGE_S)
    heard_right = ToneTrack.of(right, rate, tones).between(EDGE_S, seconds - EDGE_S)
    print(f"left  {heard_left.timeline()}\nright {heard_right.timeline()}")
    assert heard_left.fraction(CALLER_TONE_HZ) >= MOSTLY, heard_left.timeline()
    assert heard_left.fraction(AGENT_TONE_HZ) <= RARELY, heard_left.timeline()
    assert heard_right.fraction(AGENT_TONE_HZ) >= MOSTLY, heard_right.timeline()
    assert heard_right.fraction(CALLER_TONE_HZ) <= RARELY, heard_right.timeline()

    assert board.stop() == 0, board.log_tail()
    purge = subprocess.run([sys.executable, "-m", "ivr.cli", "purge", "--config",
                            str(tmp_path / "ivr.yaml"), "--caller", CALLER],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert purge.returncode == 0, purge.stderr
    assert "1 call recording(s)" in purge.stdout, purge.stdout
    assert not path.exists()
    with sqlite3.connect(board.db) as db:
        assert db.execute("SELECT COUNT(*) FROM calls").fetchone() == (0,)


def test_a_nearly_full_disk_records_nothing_and_the_call_goes_on(full_board: Switchboard,
                                                                 tmp_path: Path) -> None:
    full_board.wait_for_log("call recording suspended")
    assert full_board.wait_for_metric("ivr_recordings_suspended", value=1) == 1
    call_anna(full_board, tmp_path)
    record = closed_record(full_board)
    assert record["outcome"] == "completed", record
    assert float(record["talk_seconds"]) > 3.0, record
    assert record["recording_path"] is None
    full_board.wait_for_metric("ivr_recordings_total", {"result": "skipped_low_disk"}, value=1)
    assert not (tmp_path / "rec" / "calls").exists()

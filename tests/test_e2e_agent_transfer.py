"""End to end: an agent's phone transfers its caller (REFER), and the switchboard moves the caller.

A real `ivr run` process on loopback with pjsua2 peers: a caller who reaches the support queue,
agent anna's phone, which answers and then asks to transfer the call, and the reception's
phone, extension 201 of ivr.yaml. A REFER to the extension is answered 202 and a final NOTIFY
200; the switchboard itself dials the extension's URI (never the Refer-To as written), the caller
and the reception hear each other, anna's leg ends and the record shows the transfer. A REFER
to a number nothing allows is answered 403, dials nothing (a listener there hears no INVITE),
and the call goes on with the agent. REFERs from the trunk are tested in test_e2e_sip_policy.py.

Audio is checked by tones, as in test_e2e_flow_nodes.py: the caller sends one, the reception
another, and each 100 ms of a recording says which of them it holds.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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

TONES = (CALLER_TONE_HZ, AGENT_TONE_HZ)
"""The caller's tone, and the reception's."""
STRAY_S = 0.3
"""A tone heard for less than this in a row counts as a stray window, not as the tone."""
MOSTLY = 0.9
"""Share of the windows of a span in which the tone expected there must be present."""
MARGIN_S = 1.0
"""Slack around a moment taken from the peers' clocks as a place in a recording."""
HEARD_S = 2.0
"""Seconds of the reception's 5 s of talk in which each end must be checked to hear the other."""
QUIET_S = 2.0
"""Seconds a listener that must receive nothing is watched after the call is over."""
PREMIUM = "00390612345678"
CALLER = "3331112222"


class Listener:
    """A UDP socket on loopback that records every datagram: where a REFER points that must
    never be dialled."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.received: list[bytes] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                self.received.append(self.sock.recvfrom(65535)[0])
            except OSError:
                continue

    def stop(self) -> None:
        self._done.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Callable[[int], Switchboard]]:
    """A switchboard whose extension 201 rings the reception at the port given."""
    require_sip_stack()
    started: list[Switchboard] = []

    def start(reception_port: int) -> Switchboard:
        sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                         agents={"anna": free_udp_port()}, ring_timeout=10.0,
                         extra_config="extensions:\n"
                                      f"  \"201\": {{uri: \"sip:reception@127.0.0.1:"
                                      f"{reception_port}\"}}\n")
        started.append(sb)
        return sb.start()

    yield start
    for sb in started:
        assert sb.stop() == 0, sb.log_tail()
        assert "Traceback" not in sb.log_path.read_text(), sb.log_tail()


def record_of(sb: Switchboard, caller: str, timeout: float = 10.0) -> dict[str, Any]:
    """The caller's call record once it has ended (the writer commits a moment later)."""

    def ended() -> dict[str, Any] | None:
        found = [r for r in sb.records() if r["caller"] == caller and r["ended_at"]]
        return found[0] if found else None

    return wait_until(ended, f"the record of {caller}'s call", timeout, details=sb.log_tail)


def heard_by(who: Peer, path: Path) -> ToneTrack:
    """The tones in what *who* recorded into *path* (read even if the file was not closed)."""
    assert path.exists(), f"no {path.name}:\n{who.output()}"
    wav = GrowingWav(path)
    samples = wav.read_new()
    assert wav.rate is not None, f"{path.name} has no WAV header:\n{who.output()}"
    assert len(samples) > 0, f"{path.name} holds no audio:\n{who.output()}"
    return ToneTrack.of(samples, wav.rate, TONES)


def test_an_agents_refer_to_an_extension_moves_the_caller_there(
        board: Callable[[int], Switchboard], tmp_path: Path) -> None:
    reception_port = free_udp_port()
    sb = board(reception_port)
    heard = tmp_path / "heard"
    heard.mkdir()
    reception_voice = make_tone_wav(tmp_path / "reception.wav", AGENT_TONE_HZ, 60)
    caller_voice = make_tone_wav(tmp_path / "caller.wav", CALLER_TONE_HZ, 60)
    reception = peer(tmp_path, "reception", "agent", reception_port, "--answer-after", "1",
                     "--talk", "5", "--play", str(reception_voice), "--record-dir", str(heard),
                     "--duration", "60").start()
    # anna's phone asks to transfer to 201 as its Transfer button would: user 201 at the
    # switchboard (the host of a Refer-To is never dialled; ivr.yaml says where 201 is)
    anna = peer(tmp_path, "anna", "agent", sb.agents["anna"], "--answer-after", "0.5",
                "--refer", f"sip:201@127.0.0.1:{sb.sip_port}", "--refer-after", "1.5",
                "--duration", "60").start()
    caller = peer(tmp_path, CALLER, "caller", free_udp_port(), "--target", sb.uri,
                  "--digits", "2,1", "--first-digit-after", "0.5", "--digit-gap", "0.5",
                  "--play", str(caller_voice), "--record-dir", str(heard),
                  "--duration", "50").start()
    try:
        assert caller.wait_exit(55) == 0  # the reception hangs up after its talk: so do we
        reception.wait_event("disconnected", timeout=10)
        anna.wait_event("disconnected", timeout=10)
    finally:
        anna.stop()
        reception.stop()

    # anna's phone: 202, then the final NOTIFY 200; its call ended by our BYE (pjsua2, as a
    # phone that does not hang up by itself after a transfer)
    statuses = [(s["code"], s["final"]) for s in anna.events("transfer_status")]
    assert statuses[-1] == (200, True), statuses
    assert all(code < 300 for code, _final in statuses), statuses
    assert [e["code"] for e in anna.events("disconnected")] == [200]
    assert len(reception.events("incoming")) == 1
    sb.wait_for_log("agent anna transfers the caller to extension 201")

    record = record_of(sb, CALLER)
    assert (record["outcome"], record["end_reason"]) == ("completed", "transferred to 201")
    assert (record["agent"], record["transferred_to"], record["queue"]) == (
        "anna", "201", "support")
    assert [e["agent"] for e in sb.queue_events("complete")] == ["anna"]

    # the caller heard the reception, and the reception the caller, from the answer on
    (reception_on,) = reception.events("confirmed")
    (reception_off,) = reception.events("hanging_up")
    talked = float(reception_off["t"]) - float(reception_on["t"])
    (caller_on,) = caller.events("confirmed")
    answered = float(reception_on["t"]) - float(caller_on["t"])
    caller_heard = heard_by(caller, heard / f"{CALLER}-0.wav")
    reception_heard = heard_by(reception, heard / "reception-0.wav")
    print(f"reception answered at {answered:.1f} s of the caller's call, talked {talked:.1f} s\n"
          f"caller heard {caller_heard.timeline()}\nreception heard {reception_heard.timeline()}")
    bridged = caller_heard.first_s(AGENT_TONE_HZ, min_run_s=STRAY_S)
    assert bridged is not None, caller_heard.timeline()
    assert bridged >= answered - MARGIN_S, (answered, caller_heard.timeline())
    to_caller = caller_heard.between(bridged, answered + talked - MARGIN_S)
    assert to_caller.duration_s >= HEARD_S, (answered, talked, caller_heard.timeline())
    assert to_caller.fraction(AGENT_TONE_HZ) >= MOSTLY, to_caller.timeline()
    from_caller = reception_heard.first_s(CALLER_TONE_HZ, min_run_s=STRAY_S)
    assert from_caller is not None, reception_heard.timeline()
    to_reception = reception_heard.between(from_caller, talked - MARGIN_S)
    assert to_reception.duration_s >= HEARD_S, (talked, reception_heard.timeline())
    assert to_reception.fraction(CALLER_TONE_HZ) >= MOSTLY, to_reception.timeline()


def test_an_agents_refer_to_a_number_nothing_allows_dials_nothing_and_the_call_goes_on(
        board: Callable[[int], Switchboard], tmp_path: Path) -> None:
    premium = Listener()
    try:
        sb = board(free_udp_port())
        target = f"sip:{PREMIUM}@127.0.0.1:{premium.port}"
        anna = peer(tmp_path, "anna", "agent", sb.agents["anna"], "--answer-after", "0.5",
                    "--refer", target, "--refer-after", "1", "--talk", "4",
                    "--duration", "60").start()
        caller = peer(tmp_path, CALLER, "caller", free_udp_port(), "--target", sb.uri,
                      "--digits", "2,1", "--first-digit-after", "0.5", "--digit-gap", "0.5",
                      "--duration", "50").start()
        try:
            assert caller.wait_exit(55) == 0  # anna hangs up after her talk: so do we
        finally:
            anna.stop()
        assert [(s["code"], s["final"]) for s in anna.events("transfer_status")] == [
            (403, True)]
        assert [e["event"] for e in anna.events() if e["event"] == "hanging_up"] == [
            "hanging_up"]  # anna's call lasted her whole talk: the REFER changed nothing
        sb.wait_for_log(f"refused REFER to {PREMIUM}@127.0.0.1:{premium.port} (403): not an "
                        "extension, a queue or a number agents may transfer to")
        record = record_of(sb, CALLER)
        assert (record["outcome"], record["end_reason"]) == ("completed", "agent hung up")
        assert (record["agent"], record["transferred_to"]) == ("anna", None)
        assert float(record["talk_seconds"]) > 3.0, record
        assert sb.metric("ivr_sip_refused_total", {"reason": "refused refer (403)"}) == 1.0
        end = time.monotonic() + QUIET_S
        while time.monotonic() < end and not premium.received:
            time.sleep(0.05)
        assert premium.received == []
    finally:
        premium.stop()


@pytest.mark.parametrize(("refer_to", "replaces"), [
    ("<sip:201@pbx?Replaces=a%40b%3Bto-tag%3D1%3Bfrom-tag%3D2>",
     "a%40b%3Bto-tag%3D1%3Bfrom-tag%3D2"),
    ("sip:201@pbx?Require=replaces&Replaces=x%3Bto-tag%3D1", "x%3Bto-tag%3D1"),
    ("<sip:201@pbx>", ""),
    ("<sip:201@pbx?Replaces=a%0D%0AVia:x>", ""),  # would end the header: a second one
    ("<sip:201@pbx?Replaces=a%00>", ""),
    ("<sip:201@pbx?Replaces=a b>", ""),
    ("<sip:201@pbx?Replaces=a>b>", "a"),  # the URI ends at its '>'
])
def test_the_replaces_of_an_attended_transfer_is_taken_as_written(refer_to: str,
                                                                  replaces: str) -> None:
    require_sip_stack()
    from ivr.sip.stack import replaces_of

    assert replaces_of(refer_to) == replaces

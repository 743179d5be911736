"""A preview campaign over real SIP: the agent's console offers a contact, the agent clicks
Call, and `ivr run` calls the agent's phone first, then the contact, and puts them through.

A real `ivr run` process on loopback with its console, an agent account made with `ivr user add
--password-stdin`, and two pjsua2 peers: anna's phone and the contact's. The test signs in as
anna over HTTP like her page does (tests/consolekit.py's Browser), waits on her live stream
(/agent/live) for the offer, and posts /agent/preview-call as the page's Call button does. Each
phone plays its own tone and records what it hears: each must hear the other's. The attempt
row and the call record are read from the store file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.consolekit import PASSWORD, Browser
from tests.e2e import (
    ROOT,
    Peer,
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_sip_stack,
    wait_until,
)
from tests.support.audio import AGENT_TONE_HZ, CALLER_TONE_HZ, GrowingWav, ToneTrack, make_tone_wav

pytestmark = pytest.mark.e2e

NUMBER = "+393470000009"
"""The contact's number (its dial_out rule rings the contact's peer)."""
TONES = (CALLER_TONE_HZ, AGENT_TONE_HZ)
"""The contact's tone, and anna's."""
TALK_S = 5.0
"""The contact hangs up this long after answering."""
STRAY_S = 0.3
"""A tone heard for less than this in a row counts as a stray window, not as the tone."""
HEARD_S = 2.0
"""Seconds in which each end must hear the other's tone."""
MOSTLY = 0.9
"""Share of the windows of that span in which the other's tone must be present."""


def add_user(config: Path, name: str, role: str, *extra: str) -> None:
    """``ivr user add`` as a technician runs it, the password on standard input."""
    done = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "user", "add", name, "--role", role, "--lang", "en",
         "--password-stdin", "--config", str(config), *extra],
        input=PASSWORD + "\n", text=True, capture_output=True, cwd=ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, f"ivr user add {name}: {done.stdout}{done.stderr}"


def import_list(config: Path, listing: Path) -> None:
    """``ivr campaign import`` as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "campaign", "import", "calls", str(listing),
         "--config", str(config)],
        text=True, capture_output=True, cwd=ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, f"ivr campaign import: {done.stdout}{done.stderr}"


def campaign_file(folder: Path) -> None:
    folder.mkdir()
    (folder / "calls.yaml").write_text("""\
name: calls
queue: outq
mode: preview
trunk: test
max_lines: 2
reserve_inbound: 2
caller_id: "+390600000000"
window:
  timezone: UTC
  days: [daily]
  hours: "00:00-24:00"
script: "Hello {name}, this is {agent} about your order of {product}."
""")


def live_views(browser: Browser, deadline: float) -> Iterator[dict[str, Any]]:
    """The agent's slices as /agent/live streams them (Server-Sent Events), until *deadline*."""
    request = urllib.request.Request(browser.base + "/agent/live",
                                     headers={"Accept": "text/event-stream"})
    with browser.opener.open(request, timeout=max(1.0, deadline - time.monotonic())) as res:
        while time.monotonic() < deadline:
            line = res.readline()
            if not line:
                return
            text = line.decode().strip()
            if text.startswith("data: "):
                yield json.loads(text[len("data: "):])


def offer_of(browser: Browser, timeout: float) -> dict[str, Any]:
    """The contact the agent's desk offers, as soon as the stream shows one."""
    deadline = time.monotonic() + timeout
    seen: list[Any] = []
    try:
        for view in live_views(browser, deadline):
            preview = (view.get("agent") or {}).get("preview")
            if preview:
                return dict(preview)
            seen.append(view.get("agent"))
    except TimeoutError:
        pass  # the stream went quiet past the deadline
    raise AssertionError(f"no preview offered in {timeout}s; the desk showed {seen[-3:]}")


def heard_by(who: Peer, path: Path) -> ToneTrack:
    """The tones in what *who* recorded into *path* (read even if the file was not closed)."""
    assert path.exists(), f"no {path.name}:\n{who.output()}"
    wav = GrowingWav(path)
    samples = wav.read_new()
    assert wav.rate is not None, f"{path.name} has no WAV header:\n{who.output()}"
    assert len(samples) > 0, f"{path.name} holds no audio:\n{who.output()}"
    return ToneTrack.of(samples, wav.rate, TONES)


def hears(track: ToneTrack, tone: float, until_s: float) -> None:
    """*tone* is heard from its first steady run for HEARD_S at least, nearly all the time."""
    start = track.first_s(tone, min_run_s=STRAY_S)
    assert start is not None, track.timeline()
    span = track.between(start, until_s)
    assert span.duration_s >= HEARD_S, (until_s, track.timeline())
    assert span.fraction(tone) >= MOSTLY, span.timeline()


def test_preview_call_from_the_console_puts_the_agent_through_to_the_contact(
        tmp_path: Path) -> None:
    require_sip_stack()
    contact_port, console_port = free_udp_port(), free_tcp_port()
    campaign_file(tmp_path / "campaigns")
    sb = Switchboard(
        tmp_path, free_udp_port(), free_tcp_port(), agents={"anna": free_udp_port()},
        queues="  support: {agents: [anna]}\n  sales: {agents: [anna]}\n"
               "  outq: {agents: [anna], ring_timeout: 10, wrap_up: 0}",
        extra_config=(f"console: 127.0.0.1:{console_port}\n"
                      f"campaigns: {tmp_path / 'campaigns'}\n"
                      "dial_out:\n"
                      f"  - {{pattern: '^\\+{NUMBER[1:]}$', uri: "
                      f"'sip:contact@127.0.0.1:{contact_port}', campaigns: true, "
                      "flows: false}\n"))
    config = sb.write_config()
    add_user(config, "anna", "agent", "--agent", "anna")
    listing = tmp_path / "list.csv"
    listing.write_text(f"number,name,product\n{NUMBER},Maria Rossi,shoes\n")
    import_list(config, listing)
    heard = tmp_path / "heard"
    heard.mkdir()
    anna_voice = make_tone_wav(tmp_path / "anna.wav", AGENT_TONE_HZ, 60)
    contact_voice = make_tone_wav(tmp_path / "contact.wav", CALLER_TONE_HZ, 60)
    phones: list[Peer] = []
    started = time.monotonic()
    sb.start()
    try:
        anna = peer(tmp_path, "anna", "agent", sb.agents["anna"], "--answer-after", "0.3",
                    "--play", str(anna_voice), "--record-dir", str(heard),
                    "--duration", "60").start()
        phones.append(anna)
        contact = peer(tmp_path, "contact", "agent", contact_port, "--answer-after", "0.5",
                       "--talk", str(TALK_S), "--play", str(contact_voice), "--record-dir",
                       str(heard), "--duration", "60").start()
        phones.append(contact)
        browser = Browser(f"http://127.0.0.1:{console_port}")

        def signed_in() -> bool:
            try:
                return browser.login("anna").status == 200
            except OSError:  # the console is not listening yet
                return False

        wait_until(signed_in, "anna signed in to the console", 15, details=sb.log_tail)
        desk = browser.get("/agent")
        assert desk.status == 200, desk.body[:500]
        assert browser.csrf, desk.body[:500]
        offer = offer_of(browser, 15)
        assert (offer["campaign"], offer["number"], offer["name"]) == (
            "calls", NUMBER, "Maria Rossi")
        assert offer["script"] == "Hello Maria Rossi, this is anna about your order of shoes."
        assert contact.events("incoming") == []
        assert anna.events("incoming") == []
        answer = browser.api("POST", "/agent/preview-call",
                             {"contact_id": offer["contact_id"], "campaign": "calls"})
        assert (answer.status, answer.json()) == (200, {"ok": True}), answer.body
        # anna's phone first; the contact's only once she answered
        (anna_on,) = anna.wait_event("confirmed", timeout=15)
        (rung,) = contact.wait_event("incoming", timeout=15)
        assert float(rung["t"]) > float(anna_on["t"]), (anna.output(), contact.output())
        assert {e["pai"] for e in contact.events("incoming")} == {"<tel:+390600000000>"}
        (contact_on,) = contact.wait_event("confirmed", timeout=15)
        contact.wait_event("hanging_up", timeout=TALK_S + 10)  # the contact ends the call
        anna.wait_event("disconnected", timeout=10)  # and the box hangs anna's phone up
    finally:
        for p in phones:
            p.stop()
        assert sb.stop() == 0, sb.log_tail()
    assert "Traceback" not in sb.log_path.read_text(), sb.log_tail()

    # each heard the other, from the contact's answer to its hang-up
    anna_heard = heard_by(anna, heard / "anna-0.wav")
    contact_heard = heard_by(contact, heard / "contact-0.wav")
    talked = TALK_S - 0.5
    answered_in_anna = float(contact_on["t"]) - float(anna_on["t"])
    print(f"anna heard {anna_heard.timeline()}\ncontact heard {contact_heard.timeline()}")
    hears(contact_heard, AGENT_TONE_HZ, talked)
    hears(anna_heard, CALLER_TONE_HZ, answered_in_anna + talked)

    with sqlite3.connect(sb.db) as db:
        db.row_factory = sqlite3.Row
        (record,) = [dict(r) for r in db.execute(
            "SELECT * FROM calls WHERE direction = 'out'")]
        (attempt,) = [dict(r) for r in db.execute("SELECT * FROM outbound_attempts")]
        (row,) = [dict(r) for r in db.execute("SELECT * FROM outbound_contacts")]
    assert (record["called"], record["campaign"], record["agent"]) == (NUMBER, "calls", "anna")
    assert (record["caller"], record["source"]) == ("+390600000000", "dialler")
    assert record["answered_at"] is not None
    assert record["connected_at"] is not None
    assert (record["outcome"], record["end_reason"]) == ("completed", "contact hung up")
    assert float(record["talk_seconds"]) > TALK_S - 2, record
    assert (attempt["outcome"], attempt["call_id"], attempt["number"]) == (
        "answered", record["call_id"], NUMBER)
    assert "preview by agent anna" in attempt["decision"], attempt
    assert (row["attempts"], row["last_outcome"]) == (1, "answered")
    assert time.monotonic() - started < 60

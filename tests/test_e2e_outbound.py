"""A progressive campaign over real SIP: `ivr run` dials pjsua2 peers standing in for the
customers (one answers, one is busy, one does not answer, one answers and hangs up at once,
one is on the do-not-call list) and puts the answering ones through to the agent's phone.

The calling window ends at a minute boundary during the test (the campaign file's hours are
minutes, so a real window is the fastest one that closes: the test starts it at least 40 s
before the boundary and waits for it), the busy customer is tried again every few seconds
until then, and two inbound callers arrive meanwhile: with 28 of the trunk's 30 lines kept
for inbound, no call goes out while both are on the line.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from ivr.outbound.contacts import ContactBook, import_csv
from tests.e2e import Peer, Switchboard, free_tcp_port, free_udp_port, peer, require_sip_stack

pytestmark = pytest.mark.e2e

CUSTOMERS = {
    # name: (number, peer options)
    "answers": ("+393470000001", ("--answer-after", "0.3")),
    "busy": ("+393470000002", ("--reject", "486")),
    "noanswer": ("+393470000003", ("--reject", "480")),
    "hangsup": ("+393470000004", ("--answer-after", "0.3", "--talk", "0.3")),
    "listed": ("+393470000005", ("--answer-after", "0.3")),
}
LEAD = 40
"""Seconds at least between the switchboard's start and the window's end."""


def window_end() -> dt.datetime:
    """The next minute boundary (UTC) at least LEAD seconds away, on the same day."""
    now = dt.datetime.now(dt.UTC)
    end = (now + dt.timedelta(seconds=LEAD + 60)).replace(second=0, microsecond=0)
    if end.date() != now.date():
        time.sleep((end - now).total_seconds() + 1)  # around midnight: tomorrow's window
        return window_end()
    return end


def campaign_file(folder: Path, end: dt.datetime) -> None:
    folder.mkdir()
    (folder / "e2e.yaml").write_text(f"""\
name: e2e
queue: outq
mode: progressive
trunk: test
max_lines: 4
reserve_inbound: 28
caller_id: "+390600000000"
window:
  timezone: UTC
  days: [daily]
  hours: "00:00-{end:%H:%M}"
retries:
  busy: {{times: 50, after: 3s}}
  no_answer: {{times: 1, after: 2s}}
  failed: {{times: 0, after: 1s}}
  callback: {{times: 0, after: 1s}}
pause_when: {{wait_over: 0}}
whisper: true
""")


def dial_rules(ports: dict[str, int]) -> str:
    rules = "\n".join(
        f"  - {{pattern: '^\\+{number[1:]}$', uri: 'sip:{name}@127.0.0.1:{ports[name]}', "
        "campaigns: true, flows: false}"
        for name, (number, _) in CUSTOMERS.items())
    return f"dial_out:\n{rules}\n"


def attempts(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(
            "SELECT * FROM outbound_attempts ORDER BY at, id")]


def contacts(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return {r["number"]: dict(r) for r in conn.execute("SELECT * FROM outbound_contacts")}


def test_progressive_campaign_end_to_end(tmp_path: Path) -> None:
    require_sip_stack()
    ports = {name: free_udp_port() for name in CUSTOMERS}
    end = window_end()
    campaign_file(tmp_path / "campaigns", end)
    sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                     agents={"anna": free_udp_port(), "marco": free_udp_port()},
                     queues="  support: {agents: [marco]}\n  sales: {agents: [marco]}\n"
                            "  outq: {agents: [anna], ring_timeout: 5, wrap_up: 0}",
                     extra_config=f"campaigns: {tmp_path / 'campaigns'}\n"
                                  + dial_rules(ports))
    listing = tmp_path / "list.csv"
    listing.write_text("number,name\n" + "".join(f"{n},{name.title()}\n"
                                                 for name, (n, _) in CUSTOMERS.items()))
    with ContactBook(sb.db) as book:
        assert import_csv(book, "e2e", listing).added == len(CUSTOMERS)
        book.add_dnc(CUSTOMERS["listed"][0], "internal", "asked not to be called")
    customers: dict[str, Peer] = {}
    agent = None
    callers: list[Peer] = []
    sb.start()
    try:
        for name, (_, options) in CUSTOMERS.items():
            customers[name] = peer(tmp_path, name, "agent", ports[name], *options,
                                   "--duration", "150").start()
        agent = peer(tmp_path, "anna", "agent", sb.agents["anna"], "--answer-after", "0.2",
                     "--talk", "1.5", "--duration", "150").start()
        customers["answers"].wait_event("answered", timeout=30)
        customers["hangsup"].wait_event("answered", timeout=30)
        customers["noanswer"].wait_event("incoming", count=2, timeout=30)  # the retry
        # two inbound callers stay in the IVR for a while: the 2 lines not kept for inbound
        # are theirs, so nothing goes out until they hang up
        for i in range(2):
            callers.append(peer(tmp_path, f"caller{i}", "caller", free_udp_port(), "--target",
                                sb.uri, "--duration", "8").start())
        for c in callers:
            assert c.wait_exit(20) == 0
        left = (end - dt.datetime.now(dt.UTC)).total_seconds()
        assert left > 3, "the window closed before the inbound callers were done"
        time.sleep(left + 6)  # the window closes; the busy customer is not called again
        sb.wait_for_metric("ivr_campaign_paused", {"campaign": "e2e", "reason": "window"},
                           value=1)
    finally:
        for p in [*customers.values(), *callers, *([agent] if agent else [])]:
            p.stop()
        assert sb.stop() == 0, sb.log_tail()

    closed = end.timestamp()
    out = [r for r in sb.records() if r["direction"] == "out"]
    inbound = [r for r in sb.records() if r["direction"] == "in"]
    by_number: dict[str, list[dict[str, Any]]] = {}
    for r in out:
        by_number.setdefault(r["called"], []).append(r)
    # the one who answers talks to the agent
    (talk,) = by_number[CUSTOMERS["answers"][0]]
    assert talk["agent"] == "anna", sb.log_tail()
    assert talk["connected_at"] is not None
    assert talk["outcome"] == "completed"
    assert (talk["campaign"], talk["caller"]) == ("e2e", "+390600000000")
    assert agent is not None
    assert len(agent.events("answered")) >= 1
    # the campaign's caller ID is presented to the people called (P-Asserted-Identity)
    assert {e["pai"] for e in customers["answers"].events("incoming")} == {
        "<tel:+390600000000>"}
    # busy: tried again per the rule, every ~3 s, until the window closed
    busy = by_number[CUSTOMERS["busy"][0]]
    assert len(busy) >= 3
    assert all(r["outcome"] == "busy" for r in busy)
    assert all(r["started_at"] < closed for r in out), "dialled after the window closed"
    # no answer: one retry, then the contact is done with
    noanswer = by_number[CUSTOMERS["noanswer"][0]]
    assert [r["outcome"] for r in noanswer] == ["no_answer", "no_answer"]
    # answers and hangs up at once: answered, not put through
    (hung,) = by_number[CUSTOMERS["hangsup"][0]]
    assert hung["answered_at"] is not None
    # the listed number is never dialled
    assert CUSTOMERS["listed"][0] not in by_number
    assert customers["listed"].events("incoming") == []
    state = contacts(sb.db)
    assert state[CUSTOMERS["listed"][0]]["state"] == "dnc"
    assert state[CUSTOMERS["noanswer"][0]]["state"] == "failed"
    assert state[CUSTOMERS["answers"][0]]["attempts"] == 1
    history = attempts(sb.db)
    assert {a["outcome"] for a in history} >= {"answered", "busy", "no_answer", "dnc_skipped"}
    # inbound first: no call went out while both inbound callers were on the line
    assert len(inbound) == 2
    both_from = max(r["started_at"] for r in inbound)
    both_to = min(r["ended_at"] for r in inbound)
    assert both_to - both_from > 3
    during = [r for r in out if both_from + 0.5 < r["started_at"] < both_to - 0.5]
    assert during == [], "a call went out on a line kept for inbound"
    overlapping = [r for r in out if r["started_at"] < both_from
                   and (r["ended_at"] or closed) > both_from + 0.5]
    assert len(overlapping) <= 1

"""Automated campaigns over real SIP (issue 14): `ivr run` dials pjsua2 peers standing in for
the customers and runs the shipped example flows on their legs, with no agent.

- survey (flows/survey.yaml): the list is imported with `ivr campaign import`; each customer
  answers and keys their answers; the contact's answers hold what they keyed, `ivr campaign
  export` shows them, and the one who keys 9 then 1 lands on the do-not-call list.
- reminder (flows/reminder.yaml): the flow reads the appointment from the contact's columns;
  1 confirms it, 2 then a day as DDMM asks for another day, kept as an answer.

The customers key their digits a fixed time after answering: the flow's questions take keys
while they are being said, so the digits are taken whenever they come. A first test (not e2e)
loads the shipped campaign files as ivr.yaml would.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ivr.config import load_config
from ivr.outbound.campaigns import load_campaigns
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

CAMPAIGN = """\
name: {name}
mode: automated
flow: {flow}
answers: [{answers}]
trunk: test
max_lines: 4
reserve_inbound: 2
caller_id: "+390600000000"
window:
  timezone: UTC
  days: [daily]
  hours: "00:00-23:59"
retries:
  busy: {{times: 0, after: 1s}}
  no_answer: {{times: 0, after: 1s}}
  failed: {{times: 0, after: 1s}}
  callback: {{times: 0, after: 1s}}
pause_when: {{wait_over: 30s}}
"""


def ivr(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ivr.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def switchboard(tmp_path: Path, name: str, answers: str,
                customers: dict[str, tuple[str, int]]) -> Switchboard:
    """A switchboard with the one automated campaign *name* running flows/NAME.yaml, allowed
    to dial each customer's number at their peer's port."""
    folder = tmp_path / "campaigns"
    folder.mkdir()
    (folder / f"{name}.yaml").write_text(CAMPAIGN.format(
        name=name, flow=ROOT / "flows" / f"{name}.yaml", answers=answers))
    rules = "\n".join(
        f"  - {{pattern: '^\\+{number[1:]}$', uri: 'sip:{who}@127.0.0.1:{port}', "
        "campaigns: true, flows: false}"
        for who, (number, port) in customers.items())
    sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(), agents={"anna": free_udp_port()},
                     extra_config=f"campaigns: {folder}\ndial_out:\n{rules}\n")
    sb.write_config()
    return sb


def import_list(sb: Switchboard, campaign: str, csv_text: str) -> str:
    listing = sb.workdir / f"{campaign}.csv"
    listing.write_text(csv_text)
    done = ivr("campaign", "import", campaign, listing, "--config", sb.workdir / "ivr.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def contacts(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM outbound_contacts").fetchall()
    return {r["number"]: {**dict(r), "answers": json.loads(r["answers"])} for r in rows}


def call_customers(tmp_path: Path, sb: Switchboard, customers: dict[str, tuple[str, int]],
                   digits: dict[str, str]) -> dict[str, Peer]:
    """Start the customers' phones, then the switchboard; each customer answers, keys their
    digits and stays on until the flow hangs up. Returns once every call has ended."""
    peers: dict[str, Peer] = {}
    try:
        for who, (_, port) in customers.items():
            peers[who] = peer(tmp_path, who, "agent", port, "--answer-after", "0.3",
                              "--digits", digits[who], "--first-digit-after", "1.5",
                              "--digit-gap", "0.8", "--duration", "80").start()
        sb.start()
        for p in peers.values():
            p.wait_event("confirmed", timeout=30)
        for p in peers.values():
            p.wait_event("disconnected", timeout=40)
    finally:
        for p in peers.values():
            p.stop()
    return peers


def wait_settled(sb: Switchboard, expected: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The contacts once every customer's answers are stored and no contact is in flight."""
    def check() -> dict[str, Any] | None:
        state = contacts(sb.db)
        settled = all(state.get(n, {}).get("answers") == a for n, a in expected.items()) \
            and all(c["state"] not in ("pending", "dialling", "retry") for c in state.values())
        return state if settled else None
    return wait_until(check, "the answers stored", timeout=15,
                      details=lambda: f"{contacts(sb.db)}\n{sb.log_tail()}")


def test_the_shipped_campaign_files_load(tmp_path: Path) -> None:
    """campaigns/*.yaml as ivr.yaml would load them once `campaigns:` is uncommented."""
    config = (ROOT / "ivr.yaml").read_text().replace(
        "flow: flows/", f"flow: {ROOT}/flows/").replace("store: var/", f"store: {tmp_path}/")
    (tmp_path / "ivr.yaml").write_text(
        f"{config}\ncampaigns: {ROOT / 'campaigns'}\ndial_out:\n"
        "  - {pattern: '^\\+39[0-9]{6,11}$', uri: 'sip:{number}@192.0.2.1', "
        "campaigns: true}\n")
    campaigns = load_campaigns(load_config(tmp_path / "ivr.yaml"))
    assert {name: c.mode for name, c in campaigns.items()} == {
        "spring-offer": "progressive", "survey": "automated", "reminder": "automated"}
    assert campaigns["survey"].flow == ROOT / "campaigns" / ".." / "flows" / "survey.yaml"
    assert campaigns["survey"].answers == ("q1", "q2")
    assert campaigns["reminder"].answers == ("confirm", "new_day")


@pytest.mark.e2e
def test_survey_keeps_each_contacts_answers_and_a_9_lists_the_number(tmp_path: Path) -> None:
    require_sip_stack()
    customers = {
        "ada": ("+393470000011", free_udp_port()),
        "bruno": ("+393470000012", free_udp_port()),
        "carla": ("+393470000013", free_udp_port()),
        "dario": ("+393470000014", free_udp_port()),
    }
    digits = {"ada": "4,1", "bruno": "2,2", "carla": "5,1", "dario": "9,1"}
    sb = switchboard(tmp_path, "survey", "q1, q2", customers)
    report = import_list(sb, "survey", "number,name,product\n" + "".join(
        f"{number},{who.title()},{product}\n" for (who, (number, _)), product
        in zip(customers.items(), ["sofa", "lamp", "table", "rug"], strict=True)))
    assert "4 added" in report, report
    try:
        peers = call_customers(tmp_path, sb, customers, digits)
        expected = {customers["ada"][0]: {"q1": "4", "q2": "1"},
                    customers["bruno"][0]: {"q1": "2", "q2": "2"},
                    customers["carla"][0]: {"q1": "5", "q2": "1"},
                    customers["dario"][0]: {"q1": "9"}}
        state = wait_settled(sb, expected)
    finally:
        assert sb.stop() == 0, sb.log_tail()

    # each was called once, from the campaign's number, and keyed what is stored
    for p in peers.values():
        assert len(p.events("incoming")) == 1, p.output()
        assert [e["pai"] for e in p.events("incoming")] == ["<tel:+390600000000>"]
    for number, answers in expected.items():
        assert state[number]["answers"] == answers
        assert state[number]["attempts"] == 1
        assert state[number]["last_outcome"] == "answered"
    assert {state[customers[w][0]]["state"] for w in ("ada", "bruno", "carla")} == {"done"}
    # the calls ran the survey flow, no agent, with the campaign's name
    out = [r for r in sb.records() if r["direction"] == "out"]
    assert sorted(r["called"] for r in out) == sorted(expected)
    assert {(r["campaign"], r["flow"], r["agent"]) for r in out} == {("survey", "survey", None)}
    paths = {r["called"]: r["ivr_path"] for r in out}
    assert paths[customers["ada"][0]] == "q1[4] > opt_out[default] > q2[1] > thanks"
    assert paths[customers["dario"][0]] == (
        "q1[9] > opt_out[case 1] > confirm_dnc[1] > dnc_said[case 1] > listed")
    # the export shows the answers
    export = ivr("campaign", "export", "survey", "--config", sb.workdir / "ivr.yaml")
    assert export.returncode == 0, export.stderr
    lines = export.stdout.splitlines()
    header = lines[0].split(",")
    assert header[-2:] == ["answers.q1", "answers.q2"]
    assert "product" in header
    rows = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert rows[customers["ada"][0]][-2:] == ["4", "1"]
    assert rows[customers["dario"][0]][-2:] == ["9", ""]
    assert rows[customers["bruno"][0]][header.index("product")] == "lamp"
    # 9 then 1: on the do-not-call list, as the flow's own request; the others are not
    listed = ivr("dnc", "check", customers["dario"][0], "--config", sb.workdir / "ivr.yaml")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "source ivr" in listed.stdout
    free = ivr("dnc", "check", customers["ada"][0], "--config", sb.workdir / "ivr.yaml")
    assert free.returncode == 1, free.stdout


@pytest.mark.e2e
def test_reminder_confirms_or_changes_the_appointment(tmp_path: Path) -> None:
    require_sip_stack()
    customers = {
        "elena": ("+393470000021", free_udp_port()),
        "fabio": ("+393470000022", free_udp_port()),
    }
    digits = {"elena": "1", "fabio": "2,1,5,1,2"}
    sb = switchboard(tmp_path, "reminder", "confirm, new_day", customers)
    import_list(sb, "reminder", "number,name,appointment_day,appointment_time,clinic\n"
                f"{customers['elena'][0]},Elena,Tuesday the 8th,09:30,Studio Bianchi\n"
                f"{customers['fabio'][0]},Fabio,Wednesday the 9th,17:00,Studio Bianchi\n")
    try:
        call_customers(tmp_path, sb, customers, digits)
        expected = {customers["elena"][0]: {"confirm": "1"},
                    customers["fabio"][0]: {"confirm": "2", "new_day": "1512"}}
        state = wait_settled(sb, expected)
        log = sb.log_path.read_text()
    finally:
        assert sb.stop() == 0, sb.log_tail()

    for number, answers in expected.items():
        contact = state[number]
        assert (contact["state"], contact["attempts"], contact["answers"]) == (
            "done", 1, answers)
        assert json.loads(contact["vars"])["clinic"] == "Studio Bianchi"
    out = {r["called"]: r for r in sb.records() if r["direction"] == "out"}
    assert set(out) == set(expected)
    assert all((r["campaign"], r["flow"], r["outcome"]) == ("reminder", "reminder", "completed")
               for r in out.values())
    assert out[customers["elena"][0]]["ivr_path"] == "remind[1] > choice[case 1] > confirmed"
    assert out[customers["fabio"][0]]["ivr_path"] == (
        "remind[2] > choice[default] > new_day[1512] > changed")
    assert "answered confirm=2, new_day=1512" in log

"""The dialler in the core: each mode, each outcome, the pacer's gates, with time by hand.

The bench (tests/driver_bench.py) plays SIP; the contact book is played by the test: it sends
:class:`HopperFill` as the filler would and reads the :class:`SaveAttempt` and
:class:`SaveContact` effects the core asks the filler to write.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ivr.config import load_config
from ivr.driver import messages as m
from ivr.driver.core import Core
from ivr.driver.outbound import (
    AGENT_ANSWER,
    NO_ANSWER_TIMEOUT,
    SORRY_TOKEN,
    WHISPER_TOKEN,
    WITHDRAWN,
)
from ivr.flow import load_flow
from ivr.outbound.campaigns import Campaign, PauseWhen, Retry, Window
from ivr.outbound.plan import Contact
from ivr.sip import events as sip
from tests.driver_bench import CONFIG, FLOW, Bench, files_for

WALL = 1_800_000_000.0
"""The bench's wall clock at now=0: Friday 2027-01-15 08:00 UTC."""

DIAL_OUT = """\
dial_out:
  - {pattern: "^3[0-9]{8,9}$", uri: "sip:{number}@192.0.2.1", callbacks: true}
  - {pattern: "^\\\\+393[0-9]{8,9}$", uri: "sip:{number}@192.0.2.1", campaigns: true}"""

EXTRA = """
dispositions:
  "1": {label: sale}
  "2": {label: call back later}
  "6": {label: do not call}
"""

SURVEY = """
flow: survey
languages: [en]
start: q1
nodes:
  q1:
    type: collect
    prompt: {say: "From 1 to 5, how did we do? 9: never call me again."}
    variable: score
    max_length: 1
    next: never
  never:
    type: branch
    cases:
      - when: {variable: score, equals: "9"}
        next: listed
    default: bye
  listed:
    type: collect
    prompt: {say: "Press 1 to confirm."}
    variable: dnc
    max_length: 1
    next: bye
  bye: {type: hangup, prompt: {say: "Thank you."}}
"""


def window(start: str = "06:00", end: str = "20:00") -> Window:
    def minutes(text: str) -> int:
        hours, mins = text.split(":")
        return int(hours) * 60 + int(mins)
    return Window("UTC", tuple(range(7)), ((minutes(start), minutes(end)),))


def campaign(**kw: Any) -> Campaign:
    values: dict[str, Any] = dict(
        name="spring", mode="progressive", trunk="gw", trunk_lines=30, max_lines=10,
        window=window(), queue="support", reserve_inbound=1, caller_id="+390612345678",
        retries={"busy": Retry(3, 900.0), "no_answer": Retry(3, 3600.0),
                 "failed": Retry(1, 1800.0), "callback": Retry(2, 86400.0)},
        final_dispositions=frozenset({"1"}), dnc_disposition="6",
        pause_when=PauseWhen(None, 30.0), script="Hello {name}, {agent} here")
    values.update(kw)
    return Campaign(**values)


def make(tmp_path: Path, camp: Campaign | None = None, lines: int = 30,
         logged_out: tuple[str, ...] = ("marco",)) -> Bench:
    camp = camp or campaign()
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(FLOW))
    (tmp_path / "survey.yaml").write_text(textwrap.dedent(SURVEY))
    (tmp_path / "ivr.yaml").write_text(
        CONFIG.format(lines=lines, strategy="longest_idle", dial_out=DIAL_OUT) + EXTRA)
    config = load_config(tmp_path / "ivr.yaml")
    flow = load_flow(tmp_path / "flow.yaml", known_queues=config.queues)
    survey = load_flow(tmp_path / "survey.yaml", known_queues=config.queues)
    ids = itertools.count(1)
    core = Core(config, flow, files_for=files_for, music_on_hold="moh.wav", now=0.0,
                wall_offset=WALL, beep="beep.wav", new_id=lambda: f"c{next(ids)}",
                flows={str(tmp_path / "survey.yaml"): survey},
                campaigns={camp.name: camp},
                agent_states={a: ("logged_out", "") for a in logged_out})
    return Bench(core)


def contact(cid: int, number: str | None = None, name: str = "", due: float = 0.0) -> Contact:
    return Contact(cid, number or f"+3933300000{cid:02d}", name or f"Contact {cid}",
                   {"last_order": "shoes"}, next_at=WALL + due)


def fill(bench: Bench, *contacts: Contact, name: str = "spring", applied: int = 0) -> None:
    bench.send(m.HopperFill(name, contacts, applied))


def attempts(bench: Bench) -> list[m.SaveAttempt]:
    return [fx for fx in bench.effects if isinstance(fx, m.SaveAttempt)]


def contact_saves(bench: Bench) -> list[m.SaveContact]:
    return [fx for fx in bench.effects if isinstance(fx, m.SaveContact)]


def dialled(bench: Bench) -> list[str]:
    """Numbers the core dialled (contacts), in order."""
    return [fx.uri.split(":")[1].split("@")[0] for fx in bench.effects
            if isinstance(fx, m.Dial) and fx.uri.startswith("sip:+")]


def leg_to(bench: Bench, number: str) -> str:
    legs = [leg.leg for leg in bench.legs.values() if leg.uri.startswith(f"sip:{number}@")]
    assert legs, f"{number} was not dialled"
    return legs[-1]


def out_record(bench: Bench, number: str) -> Any:
    found = [r for r in bench.records.values() if r.called == number and r.direction == "out"]
    assert found, f"no record of a call to {number}"
    return found[-1]


def connect(bench: Bench, number: str) -> tuple[str, str]:
    """The contact on *number* answers, the agent's phone answers and hears the whisper:
    (contact leg, agent leg)."""
    leg = leg_to(bench, number)
    bench.answer(leg)
    agent_leg = bench.ringing()["anna"]
    bench.answer(agent_leg)
    assert bench.playing_token(agent_leg) == WHISPER_TOKEN
    bench.prompt_done(agent_leg)
    return leg, agent_leg


# -- progressive ----------------------------------------------------------------------------------

def test_progressive_dials_one_contact_per_free_agent_and_holds_the_agent(
        tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1), contact(2))
    bench.tick()
    assert dialled(bench) == ["+393330000001"]
    anna = bench.core.router.agents["anna"]
    assert (anna.state, anna.pause_reason) == ("paused", "outbound")
    bench.tick(1)
    assert dialled(bench) == ["+393330000001"]  # one agent, one call
    record = out_record(bench, "+393330000001")
    assert (record.direction, record.campaign, record.contact_id) == ("out", "spring", 1)
    assert record.caller == "+390612345678"
    dial = next(fx for fx in bench.effects if isinstance(fx, m.Dial))
    assert dial.caller_id == "+390612345678"
    assert record.trunk == "gw"
    assert bench.core.problems() == []


def test_progressive_connects_with_a_whisper_then_the_agent_wraps_up(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1, name="Maria Rossi"))
    bench.tick()
    leg = leg_to(bench, "+393330000001")
    bench.answer(leg)
    assert bench.legs[leg].playing == ("moh.wav",)
    agent_leg = bench.ringing()["anna"]
    bench.answer(agent_leg)
    assert bench.legs[agent_leg].playing == ("say:Maria Rossi",)  # the name before the bridge
    assert bench.legs[leg].bridged_to is None
    bench.prompt_done(agent_leg)
    assert bench.legs[leg].bridged_to == agent_leg
    record = out_record(bench, "+393330000001")
    assert record.agent == "anna"
    assert record.connected_at is not None
    view = bench.core.console_view(bench.now)["campaigns"]["spring"]
    assert (view["connected"], view["connects_today"], view["attempts_today"]) == (1, 1, 1)
    bench.now += 40
    bench.end(leg)
    bench.settle()
    record = out_record(bench, "+393330000001")
    assert record.outcome == "completed"
    assert record.talk_seconds == 40
    assert bench.core.router.agents["anna"].state == "available"  # support: wrap_up 0
    [attempt] = attempts(bench)
    assert (attempt.outcome, attempt.state, attempt.contact_id) == ("answered", "pending", 1)
    assert attempt.next_at == WALL + 40 + 86400  # no disposition: retries.callback
    assert bench.core.agent_talk["anna"] == 40
    assert bench.core.problems() == []


def test_a_final_disposition_closes_the_contact_and_lands_on_the_record(
        tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1))
    bench.tick()
    leg, _ = connect(bench, "+393330000001")
    bench.end(leg)
    bench.settle()
    call_id = out_record(bench, "+393330000001").call_id
    bench.send(m.ConsoleWrapUp("anna", call_id, disposition="1"))
    assert out_record(bench, "+393330000001").disposition == "1"
    assert contact_saves(bench) == [m.SaveContact(1, disposition="1", ends=True, dnc=False)]


def test_the_dnc_disposition_lists_the_number_and_no_campaign_dials_it(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1))
    bench.tick()
    leg, _ = connect(bench, "+393330000001")
    bench.send(m.ConsoleWrapUp("anna", out_record(bench, "+393330000001").call_id,
                               disposition="6"))  # during the call
    assert contact_saves(bench) == [m.SaveContact(1, disposition="6", ends=True, dnc=True)]
    bench.end(leg)
    bench.settle()
    assert attempts(bench)[-1].state == "dnc"  # after_attempt sees the disposition
    fill(bench, contact(7, number="+393330000001"))  # the same number, another list
    assert 7 not in bench.core.outbound.campaigns["spring"].hopper
    bench.tick(1)
    assert dialled(bench) == ["+393330000001"]  # once, before the disposition


@pytest.mark.parametrize(("status", "outcome", "after"), [
    (486, "busy", 900.0), (600, "busy", 900.0), (480, "no_answer", 3600.0),
    (487, "no_answer", 3600.0), (503, "failed", 1800.0)])
def test_unanswered_outcomes_release_the_agent_and_retry_per_rule(
        tmp_path: Path, status: int, outcome: str, after: float) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1))
    bench.tick()
    bench.now += 5
    bench.end(leg_to(bench, "+393330000001"), status, "no")
    assert bench.core.router.agents["anna"].state == "available"
    assert out_record(bench, "+393330000001").outcome == outcome
    [attempt] = attempts(bench)
    assert (attempt.outcome, attempt.state, attempt.next_at) == (outcome, "pending",
                                                                 WALL + 5 + after)
    assert bench.core.problems() == []


def test_no_answer_in_30_seconds_cancels_the_call(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1))
    bench.tick()
    leg = leg_to(bench, "+393330000001")
    bench.run_until(NO_ANSWER_TIMEOUT - 1)
    assert not bench.legs[leg].hangup_asked
    bench.run_until(NO_ANSWER_TIMEOUT)
    assert bench.legs[leg].hangup_asked
    assert attempts(bench)[0].outcome == "no_answer"
    bench.settle()
    assert out_record(bench, "+393330000001").outcome == "no_answer"
    assert len(attempts(bench)) == 1
    assert bench.core.router.agents["anna"].state == "available"


def test_the_last_retry_fails_the_contact(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, replace(contact(1), attempts=2, tries={"failed": 1}))
    bench.tick()
    bench.end(leg_to(bench, "+393330000001"), 503, "Service Unavailable")
    [attempt] = attempts(bench)
    assert (attempt.state, attempt.next_at) == ("failed", None)
    assert "all made" in attempt.reason


def test_agent_not_answering_gives_the_contact_the_message_within_2_seconds(
        tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1))
    bench.tick()
    leg = leg_to(bench, "+393330000001")
    bench.now = 10.0
    bench.answer(leg)
    agent_leg = bench.ringing()["anna"]
    bench.run_until(10.0 + AGENT_ANSWER)
    assert bench.playing_token(leg) == SORRY_TOKEN
    assert bench.legs[agent_leg].hangup_asked
    bench.settle()
    bench.prompt_done(leg)  # the message ends: the box hangs up
    bench.settle()
    record = out_record(bench, "+393330000001")
    assert record.outcome == "abandoned"
    [attempt] = attempts(bench)
    assert attempt.outcome == "abandoned"
    assert attempt.next_at is not None
    assert attempt.next_at >= WALL + 22 * 3600
    view = bench.core.console_view(bench.now)["campaigns"]["spring"]
    assert view["abandoned_today"] == 1
    assert bench.core.router.agents["anna"].state == "available"
    assert bench.core.problems() == []


def test_contact_answering_and_hanging_up_before_the_agent(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1))
    bench.tick()
    leg = leg_to(bench, "+393330000001")
    bench.answer(leg)
    agent_leg = bench.ringing()["anna"]
    bench.end(leg)
    assert bench.legs[agent_leg].hangup_asked
    bench.settle()
    [attempt] = attempts(bench)
    assert attempt.outcome == "answered"
    assert attempt.state == "pending"
    assert bench.core.router.agents["anna"].state == "available"
    assert bench.core.problems() == []


def test_agent_hanging_up_ends_the_contact_call(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1))
    bench.tick()
    leg, agent_leg = connect(bench, "+393330000001")
    bench.end(agent_leg)
    assert bench.legs[leg].hangup_asked
    bench.settle()
    assert out_record(bench, "+393330000001").outcome == "completed"
    assert bench.core.router.agents["anna"].state == "available"


# -- dial ratio above 1 ---------------------------------------------------------------------------

def test_overdial_abandons_the_answer_with_no_free_agent_and_stops_overdialling(
        tmp_path: Path) -> None:
    bench = make(tmp_path, campaign(dial_ratio=2.0, abandon_cap=0.03))
    fill(bench, *(contact(i) for i in range(1, 6)))
    bench.tick()
    assert dialled(bench) == ["+393330000001", "+393330000002"]
    first, second = leg_to(bench, "+393330000001"), leg_to(bench, "+393330000002")
    bench.answer(first)
    agent_leg = bench.ringing()["anna"]
    bench.answer(agent_leg)
    bench.prompt_done(agent_leg)  # the whisper
    bench.answer(second)  # anna is taken: the message at once
    assert bench.playing_token(second) == SORRY_TOKEN
    bench.prompt_done(second)
    bench.settle()
    assert out_record(bench, "+393330000002").outcome == "abandoned"
    bench.end(first)
    bench.settle()
    bench.tick(1)
    assert len(dialled(bench)) == 3  # ratio 1 for the rest of the day: one for anna
    bench.tick(1)
    assert len(dialled(bench)) == 3
    assert "stopped over-dialling" in bench.core.outbound.campaigns["spring"].paused_reason
    assert bench.core.problems() == []


# -- inbound first --------------------------------------------------------------------------------

def test_an_inbound_caller_waiting_for_the_agents_stops_dialling(tmp_path: Path) -> None:
    bench = make(tmp_path, logged_out=())
    leg = bench.incoming()
    bench.key(leg, "1")  # queued for support: anna's phone rings, marco is free
    fill(bench, contact(1))
    bench.tick()
    assert dialled(bench) == []
    assert "inbound caller" in bench.core.outbound.campaigns["spring"].paused_reason
    bench.answer(bench.ringing()["anna"])
    bench.tick(1)
    assert dialled(bench) == ["+393330000001"]  # nobody waits now: marco works the campaign
    assert bench.core.router.agents["marco"].pause_reason == "outbound"


def test_reserved_lines_stay_free_for_inbound(tmp_path: Path) -> None:
    bench = make(tmp_path, campaign(trunk_lines=3, reserve_inbound=1, max_lines=4), lines=3,
                 logged_out=())
    fill(bench, *(contact(i) for i in range(1, 5)))
    bench.incoming()  # one inbound call in the IVR: 3 lines - 1 reserved - 1 in use = 1
    bench.tick()
    assert len(dialled(bench)) == 1
    bench.incoming()  # a second inbound call arrives on the reserved line
    bench.tick(1)
    assert len(dialled(bench)) == 1
    state = bench.core.outbound.campaigns["spring"]
    assert "no line free" in state.paused_reason


def test_a_caller_waiting_too_long_pauses_the_campaign(tmp_path: Path) -> None:
    bench = make(tmp_path, campaign(queue="level2"), logged_out=())
    leg = bench.incoming()
    bench.key(leg, "1")  # waits for support (anna, marco), not for the campaign's queue
    bench.end(bench.ringing()["anna"], 486, "Busy")
    bench.end(bench.ringing()["marco"], 486, "Busy")
    bench.now = 31.0
    fill(bench, contact(1))
    bench.tick()
    assert dialled(bench) == []
    assert "waited" in bench.core.outbound.campaigns["spring"].paused_reason


def test_an_inbound_caller_takes_back_an_agent_held_for_a_ringing_contact(
        tmp_path: Path) -> None:
    """Inbound first: the dial is withdrawn on the dialler's next turn, the agent rings for
    the caller at once (no wrap-up), the contact is due again with no try counted and is
    dialled first once an agent is free."""
    bench = make(tmp_path)  # anna alone in support (marco logged out)
    fill(bench, replace(contact(1), tries={"busy": 1}), contact(2, due=0.5))
    bench.tick()
    assert dialled(bench) == ["+393330000001"]
    leg = leg_to(bench, "+393330000001")
    bench.now = 3.0
    caller = bench.incoming()
    bench.key(caller, "1")  # waits for support: anna is held
    assert "anna" not in bench.ringing()
    assert not bench.legs[leg].hangup_asked  # not yet: on the dialler's turn
    bench.tick(0.5)
    assert bench.legs[leg].hangup_asked
    assert "anna" in bench.ringing()  # offered the caller at once
    assert "anna" not in bench.core.outbound.held
    [attempt] = attempts(bench)
    assert (attempt.contact_id, attempt.outcome, attempt.state) == (1, WITHDRAWN, "pending")
    assert attempt.next_at == WALL  # its place in the line
    assert attempt.tries == ()  # the store keeps its counts: no try counted
    assert "withdrawn: inbound caller waiting for agent anna" in attempt.reason
    bench.settle()
    record = out_record(bench, "+393330000001")
    assert (record.outcome, record.end_reason) == (
        WITHDRAWN, "withdrawn: inbound caller waiting for agent anna")
    assert record.agent is None
    assert 1 in bench.core.outbound.campaigns["spring"].hopper
    bench.tick(1)
    assert dialled(bench) == ["+393330000001"]  # anna is ringing for the caller
    assert bench.core.problems() == []
    agent_leg = bench.ringing()["anna"]
    bench.answer(agent_leg)
    bench.now += 60
    bench.end(caller)
    bench.settle()
    assert bench.core.router.agents["anna"].state == "available"
    bench.tick(1)
    assert dialled(bench) == ["+393330000001", "+393330000001"]  # first in line again
    assert bench.core.router.agents["anna"].pause_reason == "outbound"
    bench.end(leg_to(bench, "+393330000001"), 486, "Busy")
    busy = attempts(bench)[-1]
    assert busy.outcome == "busy"
    assert dict(busy.tries) == {"busy": 2}  # the withdrawn dial counted for no rule
    assert bench.core.problems() == []


def test_no_withdraw_for_a_caller_waiting_in_a_queue_the_agent_does_not_serve(
        tmp_path: Path) -> None:
    bench = make(tmp_path, campaign(queue="level2"), logged_out=("anna", "marco"))
    fill(bench, contact(1))
    bench.tick()
    leg = leg_to(bench, "+393330000001")
    assert bench.core.outbound.held == {"lia": bench.core.outbound.calls[
        next(iter(bench.core.outbound.calls))].ref}
    caller = bench.incoming()
    bench.key(caller, "1")  # waits for support: anna and marco are logged out
    assert bench.core.router.waiting
    bench.tick(1)
    assert not bench.legs[leg].hangup_asked
    assert "lia" in bench.core.outbound.held
    assert attempts(bench) == []
    assert bench.core.problems() == []


def test_no_withdraw_once_the_contact_answered(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1))
    bench.tick()
    leg = leg_to(bench, "+393330000001")
    bench.answer(leg)  # anna's phone rings for the contact
    caller = bench.incoming()
    bench.key(caller, "1")
    bench.tick(0.5)
    agent_leg = bench.ringing()["anna"]
    assert not bench.legs[leg].hangup_asked
    bench.answer(agent_leg)
    bench.prompt_done(agent_leg)  # the whisper
    bench.tick(1)
    assert bench.legs[leg].bridged_to == agent_leg
    assert not bench.legs[leg].hangup_asked
    assert attempts(bench) == []
    bench.end(leg)
    bench.settle()
    assert out_record(bench, "+393330000001").outcome == "completed"
    assert attempts(bench)[-1].outcome == "answered"
    assert bench.core.problems() == []


def test_a_preview_call_the_agent_made_is_not_withdrawn(tmp_path: Path) -> None:
    """The agent chose to call and is on the phone hearing it ring: theirs to hang up."""
    bench = make(tmp_path, campaign(mode="preview"))
    fill(bench, contact(1))
    bench.tick()
    bench.send(m.PreviewDial("anna", "spring", 1))
    bench.answer(bench.ringing()["anna"])
    leg = leg_to(bench, "+393330000001")
    caller = bench.incoming()
    bench.key(caller, "1")  # waits for support: anna is on her preview call
    bench.tick(1)
    assert not bench.legs[leg].hangup_asked
    assert attempts(bench) == []
    assert bench.core.problems() == []


# -- the window, the list, the rules --------------------------------------------------------------

def test_nothing_is_dialled_once_the_window_closes(tmp_path: Path) -> None:
    bench = make(tmp_path, campaign(window=window("06:00", "08:01")))
    fill(bench, contact(1), contact(2))
    bench.tick()
    assert dialled(bench) == ["+393330000001"]
    bench.now = 30.0
    bench.end(leg_to(bench, "+393330000001"), 486, "Busy")
    bench.tick(31)  # 08:01:01
    assert dialled(bench) == ["+393330000001"]
    state = bench.core.console_view(bench.now)["campaigns"]["spring"]
    assert (state["window_open"], state["paused_reason"]) == (False,
                                                              "outside the calling window")


def test_a_number_put_on_the_dnc_list_mid_campaign_is_never_dialled(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1), contact(2))
    bench.send(m.DncAdded(frozenset({"+393330000001"})))
    assert len(bench.core.outbound.campaigns["spring"].hopper) == 1
    bench.tick()
    assert dialled(bench) == ["+393330000002"]
    fill(bench, contact(1), contact(3))  # an older picture of the list: still not dialled
    bench.end(leg_to(bench, "+393330000002"), 486, "Busy")
    bench.tick(1)
    assert dialled(bench) == ["+393330000002", "+393330000003"]


def test_a_number_no_dial_out_rule_allows_is_never_dialled(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1, number="+448001234567"), contact(2))
    bench.tick()
    assert dialled(bench) == ["+393330000002"]
    refused = attempts(bench)[0]
    assert (refused.contact_id, refused.outcome, refused.state) == (1, "not_dialled", "failed")
    assert "no dial_out rule" in refused.reason


def test_a_contact_decided_is_not_put_back_by_an_older_fill(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1))
    bench.tick()
    bench.end(leg_to(bench, "+393330000001"), 486, "Busy")
    seq = attempts(bench)[0].seq
    fill(bench, contact(1), applied=seq - 1)  # looked before the busy was written
    assert 1 not in bench.core.outbound.campaigns["spring"].hopper
    fill(bench, contact(1, due=900), applied=seq)  # looked after: its retry time
    assert 1 in bench.core.outbound.campaigns["spring"].hopper


def test_a_contact_not_due_yet_waits(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1, due=60))
    bench.tick()
    assert dialled(bench) == []
    bench.tick(60)
    assert dialled(bench) == ["+393330000001"]


# -- automated ------------------------------------------------------------------------------------

def test_automated_runs_the_flow_and_keeps_the_answers(tmp_path: Path) -> None:
    bench = make(tmp_path, campaign(mode="automated", queue=None, max_lines=2,
                                    flow=tmp_path / "survey.yaml", answers=("score",)))
    fill(bench, contact(1), contact(2), contact(3))
    bench.tick()
    assert dialled(bench) == ["+393330000001", "+393330000002"]
    leg = leg_to(bench, "+393330000001")
    bench.answer(leg)
    assert bench.legs[leg].playing == ("say:From 1 to 5, how did we do? 9: never call me "
                                       "again.",)
    assert not any(isinstance(fx, m.AnswerLeg) and fx.leg == leg for fx in bench.effects)
    bench.key(leg, "4")
    bench.prompt_done(leg)  # "Thank you."
    bench.settle()
    assert contact_saves(bench) == [m.SaveContact(1, answers=(("score", "4"),))]
    [attempt] = attempts(bench)
    assert (attempt.outcome, attempt.state) == ("answered", "done")
    record = out_record(bench, "+393330000001")
    assert (record.outcome, record.flow, record.direction) == ("completed", "survey", "out")
    assert bench.core.problems() == []


# -- preview --------------------------------------------------------------------------------------

def test_preview_offers_a_contact_then_calls_the_agent_first(tmp_path: Path) -> None:
    bench = make(tmp_path, campaign(mode="preview"))
    fill(bench, contact(1, name="Maria"))
    bench.tick()
    assert dialled(bench) == []
    offer = bench.core.console_view(bench.now)["agents"]["anna"]["preview"]
    assert offer == {"campaign": "spring", "contact_id": 1, "number": "+393330000001",
                     "name": "Maria", "vars": {"last_order": "shoes"},
                     "script": "Hello Maria, anna here"}
    bench.send(m.PreviewDial("anna", "spring", 2))
    assert bench.core.console_notices["anna"]["ok"] is False
    bench.send(m.PreviewDial("anna", "spring", 1, source="console"))
    agent_leg = bench.ringing()["anna"]
    assert dialled(bench) == []
    bench.answer(agent_leg)
    assert dialled(bench) == ["+393330000001"]
    leg = leg_to(bench, "+393330000001")
    bench.answer(leg)
    assert bench.legs[leg].bridged_to == agent_leg
    assert out_record(bench, "+393330000001").agent == "anna"
    assert bench.core.console_view(bench.now)["agents"]["anna"]["preview"] is None
    bench.end(agent_leg)
    bench.settle()
    assert out_record(bench, "+393330000001").outcome == "completed"
    assert bench.core.router.agents["anna"].state == "available"
    assert bench.core.problems() == []


def test_the_view_lists_campaigns(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1), contact(2))
    bench.tick()
    view = bench.core.console_view(bench.now)["campaigns"]
    assert view == {"spring": {"mode": "progressive", "window_open": True, "paused_reason": "",
                               "dialling": 1, "connected": 0, "attempts_today": 1,
                               "connects_today": 0, "abandoned_today": 0, "hopper": 1}}


def test_a_stop_closes_campaign_calls_as_interrupted(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1))
    bench.tick()
    bench.core.stop(bench.now)
    bench.send(sip.LegEnded("nope", 0, ""))
    bench.core.abandon(bench.now)
    assert not bench.core.outbound.calls
    assert bench.core.router.agents["anna"].state == "available"


def test_automated_contact_asking_not_to_be_called_is_listed(tmp_path: Path) -> None:
    bench = make(tmp_path, campaign(mode="automated", queue=None, max_lines=1,
                                    flow=tmp_path / "survey.yaml", answers=("score",)))
    fill(bench, contact(1), contact(2, number="+393330000001"))  # same number, 2nd list row
    bench.tick()
    leg = leg_to(bench, "+393330000001")
    bench.answer(leg)
    bench.key(leg, "9")
    bench.key(leg, "1")  # confirmed
    bench.prompt_done(leg)
    bench.settle()
    assert m.AddDnc("+393330000001", "ivr", "asked in campaign spring's flow") in bench.effects
    bench.tick(1)
    assert dialled(bench) == ["+393330000001"]
    assert 2 not in bench.core.outbound.campaigns["spring"].hopper


def test_a_held_agent_asking_for_a_pause_gets_it_after_the_call(tmp_path: Path) -> None:
    bench = make(tmp_path)
    fill(bench, contact(1))
    bench.tick()
    leg, _ = connect(bench, "+393330000001")
    bench.send(m.AgentCommand("anna", "unpause", source="console"))
    assert bench.core.router.agents["anna"].pause_reason == "outbound"
    bench.send(m.AgentCommand("anna", "pause", "lunch", source="console"))
    assert bench.core.problems() == []
    bench.end(leg)
    bench.settle()
    anna = bench.core.router.agents["anna"]
    assert (anna.state, anna.pause_reason) == ("paused", "lunch")


def test_an_agent_held_when_the_process_stopped_starts_available(tmp_path: Path) -> None:
    config_dir = tmp_path / "first"
    config_dir.mkdir()
    bench = make(config_dir)
    core = Core(bench.core.config, bench.core.flow, files_for=files_for,
                music_on_hold="moh.wav", now=0.0,
                agent_states={"anna": ("paused", "outbound"), "lia": ("paused", "lunch")})
    assert core.router.agents["anna"].state == "available"
    assert core.router.agents["lia"].pause_reason == "lunch"


# -- random walks: the invariants hold whatever happens -------------------------------------------

def _random_step(bench: Bench, rng: Any, listed: set[str]) -> int:
    """One random thing happens; which (0: a tick, the dialler's turn)."""
    live = [leg for leg in bench.legs.values() if not leg.ended]
    action = rng.randrange(8)
    if action == 0:
        bench.tick(rng.choice([0.5, 1.0, 3.0, 31.0]))
    elif action == 1 and live:
        leg = rng.choice(live)
        if not leg.answered and not leg.incoming:
            bench.answer(leg.leg)
    elif action == 2 and live:
        bench.end(rng.choice(live).leg, rng.choice([200, 486, 480, 487, 503, 600]), "x")
    elif action == 3:
        bench.settle()
    elif action == 4 and live:
        leg = rng.choice(live)
        if bench.playing_token(leg.leg) not in (None, 0):
            bench.prompt_done(leg.leg)
    elif action == 5:
        number = f"+3933300000{rng.randrange(1, 30):02d}"
        listed.add(number)
        bench.send(m.DncAdded(frozenset({number})))
    elif action == 6 and len([x for x in live if x.incoming]) < 2:
        caller = bench.incoming()
        if rng.random() < 0.5:
            bench.key(caller, "1")  # waits for support, the campaign's agents
    elif action == 7:
        bench.send(m.AgentCommand(rng.choice(["anna", "marco"]),
                                  rng.choice(["pause", "unpause"]), "break"))
    return action


def _inbound_first_holds(bench: Bench) -> None:
    """After a dialler's turn no agent is held for a contact still ringing while an inbound
    caller waits in one of the agent's queues."""
    core = bench.core
    waiting = {c.queue for c in core.router.waiting.values() if not c.callback}
    for agent, ref in core.outbound.held.items():
        call = core.outbound.calls[ref]
        if call.answered_at is None and call.agent_ref is None:
            serves = {q for q, spec in core.config.queues.items()
                      if agent in {mem.agent for mem in spec.all_members()}}
            assert not serves & waiting, f"{agent} held for a ringing contact while a " \
                                         f"caller waits in {serves & waiting}"


def _dials_checked(bench: Bench, effects: list[m.Effect], listed: set[str],
                   closes: float) -> int:
    """The contacts dialled among *effects*, each checked against the rules."""
    dials = 0
    for fx in effects:
        if isinstance(fx, m.Dial) and fx.uri.startswith("sip:+"):
            number = fx.uri.split(":")[1].split("@")[0]
            assert number not in listed, f"dialled {number} after it was listed"
            assert WALL + bench.now < closes, "dialled after the window closed"
            inbound = sum(1 for leg in bench.legs.values() if leg.incoming and not leg.ended)
            out = len(bench.core.outbound.calls)
            assert out + inbound <= 3, "dialled into the line kept for inbound"
            dials += 1
    return dials


@pytest.mark.parametrize("seed", range(40))
def test_random_walk_keeps_the_dialler_consistent(tmp_path: Path, seed: int) -> None:
    """Contacts, answers, hang-ups with every status, inbound callers, DNC adds, pauses, the
    window closing: the core and the router always agree, nothing is dialled to a listed
    number, outside the window or into the line kept for inbound."""
    import random

    rng = random.Random(seed)
    camp = campaign(dial_ratio=rng.choice([1.0, 1.0, 2.0]), trunk_lines=4, reserve_inbound=1,
                    max_lines=3, window=window("06:00", "08:05"))
    bench = make(tmp_path, camp, lines=4, logged_out=())
    fill(bench, *(contact(i, name=rng.choice(["", "Ada"])) for i in range(1, 30)))
    listed: set[str] = set()
    dials = 0
    for _ in range(150):
        before = len(bench.effects)
        if _random_step(bench, rng, listed) == 0:
            _inbound_first_holds(bench)
        assert bench.core.problems() == [], seed
        dials += _dials_checked(bench, bench.effects[before:], listed, WALL + 5 * 60)
    bench.settle()
    assert bench.core.problems() == []
    assert dials > 0


def test_an_automated_call_in_its_flow_takes_one_line(tmp_path: Path) -> None:
    bench = make(tmp_path, campaign(mode="automated", queue=None, max_lines=3, trunk_lines=4,
                                    reserve_inbound=1, flow=tmp_path / "survey.yaml"), lines=4)
    fill(bench, *(contact(i) for i in range(1, 6)))
    bench.tick()
    assert len(dialled(bench)) == 3
    bench.answer(leg_to(bench, "+393330000001"))  # its flow runs: still one line
    bench.end(leg_to(bench, "+393330000002"), 486, "Busy")
    bench.tick(1)
    assert len(dialled(bench)) == 4
    assert bench.core.problems() == []


def test_a_preview_agent_who_takes_an_inbound_call_gives_the_contact_back(
        tmp_path: Path) -> None:
    bench = make(tmp_path, campaign(mode="preview"))
    fill(bench, contact(1))
    bench.tick()
    assert bench.core.console_view(bench.now)["agents"]["anna"]["preview"] is not None
    bench.send(m.AgentCommand("anna", "pause", "lunch"))
    bench.tick(1)
    assert bench.core.console_view(bench.now)["agents"]["anna"]["preview"] is None
    assert 1 in bench.core.outbound.campaigns["spring"].hopper
    bench.send(m.AgentCommand("anna", "unpause"))
    bench.tick(1)
    offer = bench.core.console_view(bench.now)["agents"]["anna"]["preview"]
    assert offer is not None
    assert offer["contact_id"] == 1


def test_the_name_is_rendered_while_the_phone_rings_and_never_holds_the_agent(
        tmp_path: Path) -> None:
    """The whisper is asked for at the dial; an agent who answers before it is ready is put
    through at once (a contact on hold waits for nobody's text-to-speech)."""
    bench = make(tmp_path)

    def names_not_rendered(pieces: tuple[Any, ...]) -> tuple[str, ...] | None:
        return None if any(getattr(p, "kind", "") == "say" for p in pieces) \
            else files_for(pieces)

    bench.core.files_for = names_not_rendered
    fill(bench, contact(1, name="Mario Rossi"), contact(2, name="Lucia Bianchi"))
    bench.tick()
    asked = [fx for fx in bench.effects if isinstance(fx, m.RenderPrompt)]
    assert [(fx.play_id, fx.pieces[0].value) for fx in asked] == [
        (WHISPER_TOKEN, "Mario Rossi")]
    # not rendered yet when anna answers: straight through, no whisper
    leg = leg_to(bench, "+393330000001")
    bench.answer(leg)
    agent_leg = bench.ringing()["anna"]
    bench.answer(agent_leg)
    assert bench.playing_token(agent_leg) != WHISPER_TOKEN
    assert any(isinstance(fx, m.Bridge) and {fx.a, fx.b} == {leg, agent_leg}
               for fx in bench.effects)
    # the render's late answer changes nothing
    before = len(bench.effects)
    bench.send(m.PromptReady(asked[0].call_id, WHISPER_TOKEN, ("name.wav",)))
    assert not [fx for fx in bench.effects[before:] if isinstance(fx, (m.Play, m.Bridge))]
    assert bench.core.problems() == []


def test_a_name_rendered_while_the_phone_rang_is_whispered(tmp_path: Path) -> None:
    bench = make(tmp_path)
    rendered: set[tuple[Any, ...]] = set()

    def names(pieces: tuple[Any, ...]) -> tuple[str, ...] | None:
        return ("name.wav",) if pieces in rendered else None

    bench.core.files_for = names
    fill(bench, contact(1, name="Mario Rossi"))
    bench.tick()
    [asked] = [fx for fx in bench.effects if isinstance(fx, m.RenderPrompt)]
    rendered.add(asked.pieces)  # the renderer's worker put it in the cache...
    bench.send(m.PromptReady(asked.call_id, WHISPER_TOKEN, ("name.wav",)))  # ...and says so
    leg = leg_to(bench, "+393330000001")
    bench.answer(leg)
    agent_leg = bench.ringing()["anna"]
    assert not any(isinstance(fx, m.Play) and fx.leg == agent_leg for fx in bench.effects)
    bench.answer(agent_leg)
    assert bench.playing_token(agent_leg) == WHISPER_TOKEN

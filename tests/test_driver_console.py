"""The web console's commands through the driver's core: fake SIP, time by hand."""

from __future__ import annotations

import itertools
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from ivr.config import load_config
from ivr.driver import messages as m
from ivr.driver.console import fill_script, note_line
from ivr.driver.core import Core
from ivr.driver.state import CallPhase, LegRole
from ivr.flow import load_flow
from ivr.tickets import Ticket
from tests.driver_bench import Bench, files_for

CALLER = "3331234567"
WALL = 1_800_000_000.0
LAURA = "sip:laura@192.0.2.30"

CONFIG = """
sip: {listen: 127.0.0.1:5999}
trunks:
  gw: {sources: [192.0.2.1], lines: 30}
agents:
  anna: {uri: "sip:anna@192.0.2.10"}
  marco: {uri: "sip:marco@192.0.2.11"}
  lia: {uri: "sip:lia@192.0.2.12"}
queues:
  support:
    tiers: {"1": [anna], "2": [lia]}
    ring_timeout: 10
    wrap_up: 30
    number: "700"
    script: |
      Hello {customer}, account {account}.
      {caller} / {queue} / {agent} / ticket {ticket} / {nothing}
  sales:
    agents: [marco]
    ring_timeout: 10
    require_disposition: true
    disposition_wait: 60
dispositions:
  "1": {label: resolved, resolves: true}
  "2": {label: callback}
extensions:
  "201": {uri: "sip:reception@192.0.2.20"}
supervisors:
  laura: {uri: "sip:laura@192.0.2.30", queues: [support]}
teams:
  front: {leader: Laura, members: [anna, marco]}
flow: flow.yaml
store: calls.db
"""

FLOW = """
flow: console
languages: [en]
variables:
  customer: Rossi
start: menu
nodes:
  menu:
    type: menu
    prompt: {say: "One for support, two for sales."}
    options: {"1": account, "2": sales}
    timeout: 5
    max_timeouts: 2
    max_invalid: 2
    on_failure: bye
  account:
    type: collect
    prompt: {say: "Your customer number."}
    variable: account
    min_length: 4
    max_length: 8
    next: support
    on_failure: support
  support: {type: queue, queue: support}
  sales: {type: queue, queue: sales}
  bye: {type: hangup, prompt: {say: "Goodbye."}}
"""


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(FLOW))
    (tmp_path / "ivr.yaml").write_text(CONFIG)
    config = load_config(tmp_path / "ivr.yaml")
    flow = load_flow(tmp_path / "flow.yaml", known_queues=config.queues)
    ids = itertools.count(1)
    core = Core(config, flow, files_for=files_for, music_on_hold="moh.wav", now=0.0,
                wall_offset=WALL, beep="beep.wav", new_id=lambda: f"c{next(ids)}")
    return Bench(core)


def support_call(bench: Bench, answer: bool = True) -> tuple[str, str]:
    """A caller who keyed account 1234 into queue support; (caller's leg, anna's leg)."""
    leg = bench.incoming(caller=CALLER)
    bench.key(leg, "1")
    bench.key(leg, "1234#")
    anna = bench.ringing()["anna"]
    if answer:
        bench.answer(anna)
    return leg, anna


def sales_call(bench: Bench) -> tuple[str, str]:
    leg = bench.incoming(caller="3339999999")
    bench.key(leg, "2")
    marco = bench.ringing()["marco"]
    bench.answer(marco)
    return leg, marco


def notice(bench: Bench, name: str) -> tuple[str, bool]:
    found = bench.core.console_view(bench.now)["notices"][name]
    return found["text"], found["ok"]


def view(bench: Bench) -> dict[str, Any]:
    return bench.core.console_view(bench.now)


def wrap(bench: Bench, agent: str, call_id: str, disposition: str = "", note: str = "",
         ticket: str = "") -> None:
    bench.send(m.ConsoleWrapUp(agent, call_id, disposition, note, ticket,
                               f"console {agent}@127.0.0.1"))


def at(seconds: float) -> str:
    return time.strftime("%H:%M", time.localtime(WALL + seconds))


# -- the view --------------------------------------------------------------------------------------

def test_a_queued_and_offered_call_in_the_view(bench: Bench) -> None:
    bench.now = 2.0
    leg, _anna = support_call(bench, answer=False)
    bench.tick(4.0)
    v = bench.core.console_view(bench.now)
    call = v["calls"]["c1"]
    assert (call["phase"], call["caller"], call["called"], call["trunk"], call["queue"]) == (
        "queued", CALLER, "800", "gw", "support")
    assert call["started"] == WALL + 2.0
    assert call["queued_at"] == WALL + 2.0
    assert call["wait"] == 4.0
    assert call["level"] == 1
    assert call["path"] == ["menu", "account", "support"]
    assert call["keys"] == "11234#"
    assert call["variables"]["account"] == "1234"
    assert call["variables"]["customer"] == "Rossi"
    assert call["agent"] == "anna"  # offered to anna: the script names her
    assert call["script"] == (f"Hello Rossi, account 1234.\n{CALLER} / support / anna / "
                              "ticket  / \n")
    assert (call["recorded"], call["supervisors"], call["notes"], call["ticket"]) == (
        False, [], [], "")
    anna = v["agents"]["anna"]
    assert (anna["state"], anna["call_id"], anna["offered"], anna["queues"], anna["team"]) == (
        "ringing", "c1", True, ["support"], "front")
    assert anna["since"] == WALL + 2.0
    assert v["agents"]["lia"]["team"] == ""
    assert v["queues"]["support"] == {"waiting": 1, "longest_wait": 4.0,
                                      "agents": {"ringing": 1, "available": 1}}
    assert v["queues"]["sales"]["waiting"] == 0
    assert v["supervisions"] == []
    assert v["at"] == WALL + 6.0
    assert bench.core.console_view(bench.now)["seq"] == v["seq"] + 1
    assert bench.legs[leg].answered


def test_a_connected_call_in_the_view_and_the_agents_talk_time(bench: Bench) -> None:
    _leg, _anna = support_call(bench)
    bench.tick(10.0)
    v = view(bench)
    call = v["calls"]["c1"]
    assert (call["phase"], call["agent"], call["ticket"], call["wait"]) == (
        "connected", "anna", "1001", 0.0)
    assert "ticket 1001" in call["script"]
    anna = v["agents"]["anna"]
    assert (anna["state"], anna["call_id"], anna["offered"], anna["answered"]) == (
        "on_call", "c1", False, 1)
    assert anna["talk_seconds"] == 10.0
    assert anna["last_call_id"] == "c1"
    assert v["queues"]["support"]["waiting"] == 0


def test_calls_in_wrap_up_stay_in_the_view_until_the_agents_next_call(bench: Bench) -> None:
    leg, _anna = support_call(bench)
    bench.tick(20.0)
    bench.end(leg)
    bench.settle()
    v = view(bench)
    assert v["calls"] == {}
    assert v["ended"]["c1"]["phase"] == "ended"
    assert v["ended"]["c1"]["keys"] == "11234#"
    anna = v["agents"]["anna"]
    assert (anna["state"], anna["call_id"], anna["wrapup_until"], anna["since"]) == (
        "wrap_up", "c1", WALL + 50.0, WALL + 20.0)
    assert anna["talk_seconds"] == 20.0
    bench.run_until(51.0)
    v = view(bench)
    assert (v["agents"]["anna"]["state"], v["agents"]["anna"]["call_id"]) == ("available", None)
    bench.send(m.AgentCommand("lia", "logout"))  # lia (idle longer) takes no call
    support_call(bench)  # anna's next call: the first is no longer kept
    assert list(view(bench)["ended"]) == []


def test_phone_feature_codes_and_console_pauses_show_in_the_view(bench: Bench) -> None:
    bench.now = 5.0
    bench.incoming(caller="anna", called="*43", source="192.0.2.10")
    anna = view(bench)["agents"]["anna"]
    assert (anna["state"], anna["pause_reason"], anna["since"]) == ("paused", "break",
                                                                    WALL + 5.0)
    bench.now = 9.0
    bench.send(m.AgentCommand("anna", "unpause", source="console anna@127.0.0.1"))
    bench.send(m.AgentCommand("marco", "pause", "lunch", "console marco@127.0.0.1"))
    v = view(bench)
    assert (v["agents"]["anna"]["state"], v["agents"]["anna"]["since"]) == ("available",
                                                                            WALL + 9.0)
    assert (v["agents"]["marco"]["state"], v["agents"]["marco"]["pause_reason"]) == (
        "paused", "lunch")
    assert v["agents"]["marco"]["notice"]["text"] == "pause (lunch): paused"
    assert v["agents"]["marco"]["notice"]["ok"] is True
    saved = [fx for fx in bench.effects if isinstance(fx, m.SaveAgentState)]
    assert (saved[-1].agent, saved[-1].state, saved[-1].reason) == ("marco", "paused", "lunch")


def test_a_pause_while_on_a_call_is_refused_with_a_notice(bench: Bench) -> None:
    support_call(bench)
    bench.send(m.AgentCommand("anna", "pause", "lunch", "console anna@127.0.0.1"))
    assert view(bench)["agents"]["anna"]["state"] == "on_call"
    assert notice(bench, "anna") == ("pause (lunch) refused: the agent is on_call", False)


# -- saving a call ---------------------------------------------------------------------------------

def test_saving_during_the_call_records_and_saving_in_wrap_up_ends_it(bench: Bench) -> None:
    leg, _anna = support_call(bench)
    bench.now = 60.0
    wrap(bench, "anna", "c1", "2", "wants a callback\ntomorrow")
    record = bench.record_of("c1")
    assert record.disposition == "2"
    assert record.note == f"[{at(60)} anna] wants a callback tomorrow"
    assert view(bench)["agents"]["anna"]["state"] == "on_call"  # the call goes on
    assert view(bench)["calls"]["c1"]["notes"] == [record.note]
    bench.end(leg)
    bench.settle()
    assert view(bench)["agents"]["anna"]["state"] == "wrap_up"
    bench.now = 65.0
    wrap(bench, "anna", "c1", note="done")
    v = view(bench)
    assert v["agents"]["anna"]["state"] == "available"
    assert v["agents"]["anna"]["since"] == WALL + 65.0
    assert notice(bench, "anna") == ("call c1 saved", True)
    assert bench.record_of("c1").note.splitlines() == [
        f"[{at(60)} anna] wants a callback tomorrow", f"[{at(65)} anna] done"]
    assert bench.record_of("c1").outcome == "completed"
    kinds = [row.kind for fx in bench.effects if isinstance(fx, m.SaveQueueEvents)
             for row in fx.rows]
    assert kinds[-1] == "wrap_up_end"
    assert bench.core.problems() == []


def test_a_save_for_another_call_or_a_bad_code_is_refused(bench: Bench) -> None:
    _leg, _anna = support_call(bench)
    wrap(bench, "anna", "c9", "1")
    assert notice(bench, "anna") == ("save refused: call c9 is not your current or last call",
                                     False)
    wrap(bench, "marco", "c1", "1")
    assert notice(bench, "marco")[1] is False
    wrap(bench, "anna", "c1", "7")
    assert notice(bench, "anna") == ("save refused: no disposition '7'", False)
    wrap(bench, "anna", "c1", ticket="delete")
    assert notice(bench, "anna") == ("save refused: unknown ticket action 'delete'", False)
    assert bench.record_of("c1").disposition is None


def test_a_queue_that_requires_a_disposition_refuses_a_save_without_one(bench: Bench) -> None:
    leg, _marco = sales_call(bench)
    wrap(bench, "marco", "c1", note="during the call: fine")
    assert notice(bench, "marco") == ("call c1 saved", True)
    bench.end(leg)
    bench.settle()
    wrap(bench, "marco", "c1", note="no code")
    assert notice(bench, "marco") == ("save refused: queue sales needs a disposition", False)
    assert view(bench)["agents"]["marco"]["state"] == "wrap_up"
    wrap(bench, "marco", "c1", "2")
    assert view(bench)["agents"]["marco"]["state"] == "available"
    assert bench.record_of("c1").disposition == "2"
    assert bench.core.problems() == []


def test_resolve_closes_the_callers_ticket(bench: Bench) -> None:
    leg, _anna = support_call(bench)
    bench.end(leg)
    bench.settle()
    wrap(bench, "anna", "c1", ticket="resolve")
    tickets = {fx.ticket.number: fx.ticket for fx in bench.effects
               if isinstance(fx, m.SaveTicket)}
    assert tickets["1001"].status == "closed"
    assert tickets["1001"].history[-1].note == "resolved by anna"
    wrap(bench, "anna", "c1", ticket="resolve")
    assert notice(bench, "anna") == ("save refused: the call has no open ticket to resolve",
                                     False)
    assert bench.core.problems() == []


def test_escalate_during_the_call_sends_the_caller_to_the_next_level(bench: Bench) -> None:
    _leg, anna = support_call(bench)
    wrap(bench, "anna", "c1", note="needs level 2", ticket="escalate")
    assert bench.legs[anna].hangup_asked
    call = bench.core.calls["c1"]
    assert call.phase is CallPhase.QUEUED
    assert list(bench.ringing()) == ["lia"]
    assert view(bench)["calls"]["c1"]["level"] == 2
    assert view(bench)["agents"]["anna"]["state"] == "wrap_up"  # as after the escalation code
    tickets = {fx.ticket.number: fx.ticket for fx in bench.effects
               if isinstance(fx, m.SaveTicket)}
    assert (tickets["1001"].status, tickets["1001"].level) == ("escalated", 2)
    assert bench.record_of("c1").note.endswith("needs level 2")
    bench.settle()
    assert bench.core.problems() == []


def test_escalate_in_wrap_up_moves_the_ticket_up(tmp_path: Path, bench: Bench) -> None:
    leg, _anna = support_call(bench)
    bench.end(leg)
    bench.settle()
    wrap(bench, "anna", "c1", ticket="escalate")
    tickets = {fx.ticket.number: fx.ticket for fx in bench.effects
               if isinstance(fx, m.SaveTicket)}
    assert (tickets["1001"].status, tickets["1001"].level, tickets["1001"].queue) == (
        "escalated", 2, "support")
    assert view(bench)["agents"]["anna"]["state"] == "available"


# -- transfers ------------------------------------------------------------------------------------

def test_a_console_transfer_to_an_extension_dials_it_and_hangs_up_the_agent(
        bench: Bench) -> None:
    leg, anna = support_call(bench)
    bench.send(m.ConsoleTransfer("anna", "201", "console anna@127.0.0.1"))
    assert bench.legs[anna].hangup_asked
    dials = [fx for fx in bench.effects if isinstance(fx, m.Dial)]
    assert dials[-1].uri == "sip:reception@192.0.2.20"
    assert bench.core.calls["c1"].phase is CallPhase.TRANSFERRING
    assert notice(bench, "anna") == ("caller transferred to extension 201", True)
    assert view(bench)["agents"]["anna"]["state"] == "wrap_up"
    reception = next(x.leg for x in bench.legs.values() if x.uri == dials[-1].uri)
    bench.settle()
    bench.answer(reception)
    assert bench.legs[leg].bridged_to == reception
    assert bench.record_of("c1").transferred_to == "201"
    assert bench.core.problems() == []


def test_a_console_transfer_to_a_queue_by_number_requeues_the_caller(bench: Bench) -> None:
    _leg, _anna = support_call(bench)
    bench.send(m.ConsoleTransfer("anna", "700", "console anna@127.0.0.1"))
    assert bench.core.calls["c1"].phase is CallPhase.QUEUED
    assert notice(bench, "anna") == ("caller transferred to queue support", True)
    bench.settle()
    assert bench.core.problems() == []


def test_console_transfers_that_are_not_allowed_are_refused(bench: Bench) -> None:
    bench.send(m.ConsoleTransfer("anna", "201"))
    assert notice(bench, "anna") == ("transfer to 201 refused: not on a call", False)
    _leg, anna = support_call(bench)
    bench.send(m.ConsoleTransfer("anna", "00390612345"))
    text, ok = notice(bench, "anna")
    assert text.startswith("transfer to 00390612345 refused: not allowed")
    assert not ok
    assert not bench.legs[anna].hangup_asked
    assert bench.core.calls["c1"].phase is CallPhase.CONNECTED


# -- supervision called from the console ------------------------------------------------------

def supervisor_leg(bench: Bench) -> str:
    return next(x.leg for x in bench.legs.values() if x.uri == LAURA and not x.ended)


def test_supervise_calls_the_supervisor_and_joins_on_answer(bench: Bench) -> None:
    caller, anna = support_call(bench)
    bench.send(m.Supervise("laura", "anna", "listen", "console laura@127.0.0.1"))
    sup = supervisor_leg(bench)
    assert notice(bench, "laura") == ("calling your phone to listen to anna", True)
    assert view(bench)["supervisions"] == [{"supervisor": "laura", "agent": "anna",
                                            "call_id": "c1", "mode": "listen",
                                            "phase": "calling"}]
    bench.answer(sup)
    connects = {(fx.src, fx.dst) for fx in bench.effects if isinstance(fx, m.Connect)}
    assert connects == {(caller, sup), (anna, sup)}
    v = view(bench)
    assert v["supervisions"] == [{"supervisor": "laura", "agent": "anna", "call_id": "c1",
                                  "mode": "listen", "phase": "joined"}]
    assert v["calls"]["c1"]["supervisors"] == ["laura"]
    bench.key(sup, "2")  # the phone's keys still switch modes
    assert bench.core.supervisions[sup].mode == "whisper"
    bench.send(m.Supervise("laura", "anna", "barge"))  # a session already: its mode changes
    assert bench.core.supervisions[sup].mode == "barge"
    assert len([fx for fx in bench.effects if isinstance(fx, m.Dial)
                and fx.uri == LAURA]) == 1
    assert (sup, caller) in {(fx.src, fx.dst) for fx in bench.effects
                             if isinstance(fx, m.Connect)}
    assert bench.core.problems() == []
    kinds = [(row.kind, row.detail.get("mode")) for fx in bench.effects
             if isinstance(fx, m.SaveQueueEvents) for row in fx.rows
             if row.kind.startswith("supervise")]
    assert kinds == [("supervise_start", "listen"), ("supervise_mode", "whisper"),
                     ("supervise_mode", "barge")]
    bench.end(sup)  # the supervisor hangs up: the call goes on, nothing is left of the leg
    assert not bench.core.supervisions
    assert not [x for x in bench.core.legs.values() if x.role is LegRole.SUPERVISOR]
    assert not bench.legs[anna].hangup_asked
    assert bench.core.problems() == []


def test_the_end_of_the_agents_call_hangs_up_the_supervisor_called(bench: Bench) -> None:
    caller, _anna = support_call(bench)
    bench.send(m.Supervise("laura", "anna", "whisper"))
    sup = supervisor_leg(bench)
    bench.answer(sup)
    bench.end(caller)
    assert bench.legs[sup].hangup_asked
    bench.settle()
    assert bench.live() == []
    assert not bench.core.legs
    assert bench.core.problems() == []


def test_supervise_refusals_come_back_as_notices(bench: Bench) -> None:
    bench.send(m.Supervise("laura", "anna", "listen"))
    assert notice(bench, "laura") == ("listen of anna refused: agent anna is not on a call",
                                      False)
    sales_call(bench)  # marco's call is in sales, which laura may not watch
    bench.send(m.Supervise("laura", "marco", "listen"))
    text, ok = notice(bench, "laura")
    assert "not one supervisor laura may watch" in text
    assert not ok
    bench.send(m.Supervise("nobody", "anna", "listen", "console x@127.0.0.1"))
    assert notice(bench, "console x@127.0.0.1")[1] is False
    bench.send(m.Supervise("laura", "anna", "shout"))
    assert notice(bench, "laura")[1] is False
    assert not [fx for fx in bench.effects if isinstance(fx, m.Dial) and fx.uri == LAURA]


def test_a_supervisors_phone_that_does_not_answer_or_answers_too_late(bench: Bench) -> None:
    caller, _anna = support_call(bench)
    bench.send(m.Supervise("laura", "anna", "listen"))
    bench.end(supervisor_leg(bench), 486, "Busy Here")
    assert notice(bench, "laura") == ("your phone did not take the listen of anna: busy", False)
    assert not bench.core.legs or all(x.role is not LegRole.SUPERVISOR
                                      for x in bench.core.legs.values())
    bench.send(m.Supervise("laura", "anna", "listen"))
    sup = supervisor_leg(bench)
    bench.end(caller)  # the call ends while the supervisor's phone rings: it is cancelled
    assert bench.legs[sup].hangup_asked
    assert notice(bench, "laura") == ("listen of anna ended: the call ended", False)
    bench.settle()
    assert not bench.core.supervisions
    assert not bench.core.legs
    assert bench.core.problems() == []


def test_a_supervisor_answering_once_the_agent_left_the_call_is_hung_up(bench: Bench) -> None:
    _caller, _anna = support_call(bench)
    bench.send(m.Supervise("laura", "anna", "listen"))
    sup = supervisor_leg(bench)
    bench.send(m.ConsoleTransfer("anna", "700"))  # the caller leaves anna for the queue
    bench.answer(sup)
    assert bench.legs[sup].hangup_asked
    assert not bench.core.supervisions
    assert notice(bench, "laura") == ("listen of anna ended: agent anna is not on a call",
                                      False)
    bench.settle()
    assert bench.core.problems() == []


# -- notes ---------------------------------------------------------------------------------------

def test_a_crm_note_reaches_a_live_call_and_one_in_wrap_up(bench: Bench) -> None:
    leg, _anna = support_call(bench)
    bench.now = 30.0
    bench.send(m.CallNote("c1", "VIP customer", "api crm@10.0.0.5"))
    assert view(bench)["calls"]["c1"]["notes"] == [f"[{at(30)} api] VIP customer"]
    bench.end(leg)
    bench.settle()
    bench.send(m.CallNote("c1", "renewal due", "api crm@10.0.0.5", author="crm"))
    assert bench.record_of("c1").note.splitlines() == [f"[{at(30)} api] VIP customer",
                                                      f"[{at(30)} crm] renewal due"]
    assert view(bench)["ended"]["c1"]["notes"][-1].endswith("renewal due")
    assert notice(bench, "api crm@10.0.0.5") == ("note added to call c1", True)
    bench.send(m.CallNote("c7", "lost", "api crm@10.0.0.5"))
    assert notice(bench, "api crm@10.0.0.5") == ("note refused: call c7 is not in progress",
                                                 False)
    bench.send(m.CallNote("c1", "  ", "api crm@10.0.0.5"))
    assert notice(bench, "api crm@10.0.0.5")[1] is False


def test_notes_are_one_line_each_and_scripts_leave_unknown_names_empty() -> None:
    assert note_line(WALL, "anna", "a\nb\t c") == f"[{at(0)} anna] a b c"
    assert fill_script("{a} {b} {c d} {}", {"a": "1"}) == "1  {c d} {}"
    assert fill_script("no placeholder", {}) == "no placeholder"


def test_a_repeat_callers_ticket_is_in_the_view_before_the_answer(tmp_path: Path,
                                                                  bench: Bench) -> None:
    bench.core.ticket_book.load([Ticket("1042", CALLER, "open", 1, "support", "anna", 1.0,
                                        2.0, calls=1)])
    support_call(bench, answer=False)
    call = view(bench)["calls"]["c1"]
    assert call["ticket"] == "1042"
    assert call["variables"]["ticket_status"] == "open"


def test_escalate_during_a_call_without_a_ticket_escalates_the_call(bench: Bench) -> None:
    leg = bench.incoming(caller="")  # withheld: no ticket
    bench.key(leg, "1")
    bench.key(leg, "1234#")
    bench.answer(bench.ringing()["anna"])
    assert bench.record_of("c1").ticket is None
    wrap(bench, "anna", "c1", ticket="escalate")
    assert notice(bench, "anna") == ("call c1 saved", True)
    assert bench.core.calls["c1"].phase is CallPhase.QUEUED
    assert list(bench.ringing()) == ["lia"]
    bench.settle()
    assert bench.core.problems() == []


def test_notices_are_kept_for_the_latest_askers_only(bench: Bench) -> None:
    for i in range(250):
        bench.send(m.CallNote("c404", "x", f"api crm{i}@10.0.0.5"))
    notices = view(bench)["notices"]
    assert len(notices) == 200
    assert "api crm249@10.0.0.5" in notices
    assert "api crm0@10.0.0.5" not in notices

"""The driver's core in process: every path of a call, with a fake SIP layer and time by hand."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ivr.driver import messages as m
from ivr.driver.state import MOH_TOKEN, NOTICE_TOKEN, CallPhase
from ivr.logs import mask_number
from ivr.lookup import LookupResult
from ivr.sip import events as sip
from tests.driver_bench import Bench, make_bench


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return make_bench(tmp_path)


def to_queue(bench: Bench, caller: str = "3331234567") -> str:
    leg = bench.incoming(caller=caller)
    bench.key(leg, "1")
    return leg


def test_a_caller_is_answered_recorded_and_hears_the_menu(bench: Bench) -> None:
    leg = bench.incoming()
    record = bench.record_of(leg)
    assert record.outcome == "in_progress"
    assert record.answered_at is not None
    assert bench.legs[leg].answered
    assert bench.legs[leg].playing == ("say:One for support, two for reception, three for a "
                                       "message.",)


def test_queued_caller_rings_the_agent_and_is_connected(bench: Bench) -> None:
    leg = to_queue(bench)
    call = bench.core.calls[bench.record_of(leg).call_id]
    assert call.phase is CallPhase.QUEUED
    assert bench.record_of(leg).queue == "support"
    assert bench.record_of(leg).queued_at
    assert bench.legs[leg].playing == ("moh.wav",)
    ringing = bench.ringing()
    assert list(ringing) == ["anna"]
    bench.answer(ringing["anna"])
    assert call.phase is CallPhase.CONNECTED
    assert bench.legs[leg].bridged_to == ringing["anna"]
    record = bench.record_of(leg)
    assert record.agent == "anna"
    assert record.connected_at is not None
    assert bench.core.router.agents["anna"].state == "on_call"
    bench.end(leg)
    bench.settle()
    assert bench.record_of(record.call_id).outcome == "completed"
    assert bench.core.router.agents["anna"].state == "available"
    assert bench.live() == []
    assert bench.core.problems() == []


def test_records_are_saved_at_answer_queue_and_connect(bench: Bench) -> None:
    """So that a crash keeps what happened (the store closes rows left open)."""
    leg = to_queue(bench)
    bench.answer(bench.ringing()["anna"])
    call_id = bench.record_of(leg).call_id
    saved = [r for r in bench.saves if r.call_id == call_id]
    assert any(r.answered_at and not r.queue for r in saved)
    assert any(r.queue == "support" and r.ivr_path and not r.agent for r in saved)
    assert saved[-1].agent == "anna"
    assert saved[-1].outcome == "in_progress"


def test_bridge_failure_keeps_the_caller_waiting_and_the_router_in_step(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, strategy="ring_all")
    leg = to_queue(bench)
    ringing = bench.ringing()
    assert set(ringing) == {"anna", "marco"}
    bench.bridge_ok = False
    bench.answer(ringing["anna"])
    call = bench.core.calls[bench.record_of(leg).call_id]
    assert call.phase is CallPhase.QUEUED
    assert bench.legs[ringing["anna"]].hangup_asked
    assert bench.legs[leg].playing == ("moh.wav",)  # back to the music
    assert call.call_id in bench.core.router.waiting
    assert bench.core.problems() == []
    bench.settle()
    bench.bridge_ok = True
    bench.answer(ringing["marco"])  # the other phone still rang: it takes the call
    assert call.phase is CallPhase.CONNECTED
    assert call.record.agent == "marco"
    assert bench.core.problems() == []


def test_ring_all_stops_the_other_phones_when_one_answers(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, strategy="ring_all")
    to_queue(bench)
    ringing = bench.ringing()
    bench.answer(ringing["marco"])
    assert bench.legs[ringing["anna"]].hangup_asked
    assert not bench.legs[ringing["marco"]].hangup_asked
    bench.settle()
    assert bench.core.router.agents["anna"].state == "available"
    assert bench.core.problems() == []


def test_agent_answering_after_the_caller_hung_up_is_hung_up(bench: Bench) -> None:
    leg = to_queue(bench)
    agent_leg = bench.ringing()["anna"]
    bench.end(leg)  # the caller gives up; the agent's phone still rings in SIP
    assert bench.legs[agent_leg].hangup_asked
    bench.answer(agent_leg)  # the answer crosses the CANCEL
    assert bench.legs[agent_leg].bridged_to is None
    bench.settle()
    assert bench.outcomes() == {"c1": "abandoned_queue"}
    assert bench.core.router.agents["anna"].state == "available"
    assert bench.core.problems() == []


def test_both_legs_ending_in_one_turn(bench: Bench) -> None:
    leg = to_queue(bench)
    agent_leg = bench.ringing()["anna"]
    bench.answer(agent_leg)
    bench.end(agent_leg)
    bench.end(leg)
    bench.settle()
    assert bench.outcomes() == {"c1": "completed"}
    assert bench.records["c1"].end_reason == "agent hung up"
    assert bench.core.router.agents["anna"].state == "available"
    assert not bench.core.calls
    assert not bench.core.legs


def test_unanswered_agent_is_skipped_and_the_next_one_rings(bench: Bench) -> None:
    to_queue(bench)
    first = bench.ringing()["anna"]
    bench.end(first, 486, "Busy Here")
    assert "marco" in bench.ringing()
    assert bench.core.problems() == []


def test_ring_timeout_moves_to_the_next_agent(bench: Bench) -> None:
    to_queue(bench)
    first = bench.ringing()["anna"]
    bench.run_until(10.5)
    assert bench.legs[first].hangup_asked
    bench.settle()
    assert "marco" in bench.ringing()


def test_dial_failure_counts_as_a_refusal(bench: Bench) -> None:
    bench.dial_ok = False
    leg = to_queue(bench)
    call = bench.core.calls[bench.record_of(leg).call_id]
    assert call.phase is CallPhase.QUEUED
    assert not call.ringing
    assert bench.core.problems() == []


def test_agent_escalation_code_while_connected_moves_the_caller_on(bench: Bench) -> None:
    bench = make_bench(bench_tmp(bench), config_extra="")
    leg = to_queue(bench)
    agent_leg = bench.ringing()["anna"]
    bench.answer(agent_leg)
    bench.key(agent_leg, "*9")
    call = bench.core.calls[bench.record_of(leg).call_id]
    assert bench.legs[agent_leg].hangup_asked
    assert call.phase is CallPhase.QUEUED
    assert call.record.agent is None
    assert call.record.connected_at is None
    assert bench.playing_token(leg) == NOTICE_TOKEN
    bench.settle()
    assert bench.core.problems() == []


def test_escalation_code_while_only_ringing_does_nothing(bench: Bench) -> None:
    leg = to_queue(bench)
    agent_leg = bench.ringing()["anna"]
    bench.key(agent_leg, "*9")
    assert not bench.legs[agent_leg].hangup_asked
    assert bench.core.calls[bench.record_of(leg).call_id].phase is CallPhase.QUEUED


def test_notice_ends_back_to_hold_music(bench: Bench) -> None:
    leg = to_queue(bench)
    call = bench.core.calls[bench.record_of(leg).call_id]
    bench.core._notice(call, ())  # an announcement, as the router asks for one
    bench.send(sip.PlaybackEnded(leg, NOTICE_TOKEN))
    assert bench.playing_token(leg) == MOH_TOKEN


def test_callback_racing_its_caller(bench: Bench) -> None:
    leg = to_queue(bench)
    agent_leg = bench.ringing()["anna"]
    bench.key(leg, "2")  # callback; the agent's phone still rings
    call = bench.core.calls[bench.record_of(leg).call_id]
    assert call.callback_requested
    bench.answer(agent_leg)  # the agent answers before the caller hung up
    bench.prompt_done(leg)  # the confirmation ends, the flow hangs up
    bench.settle()
    assert bench.records["c1"].outcome == "callback_requested"
    assert bench.core.problems() == []
    # the callback: an agent is rung, answers, the caller is called back and answers
    bench.run_until(bench.now + 1)
    ringing = bench.ringing()
    assert ringing, "an agent is rung for the callback"
    agent = next(iter(ringing))
    bench.answer(ringing[agent])
    customer = [leg.leg for leg in bench.legs.values() if leg.uri.startswith("sip:333")]
    assert customer, "the caller is dialled back"
    assert bench.legs[customer[0]].uri == "sip:3331234567@192.0.2.1"  # at the rule's URI
    bench.answer(customer[0])
    assert bench.records["c1-cb"].connected_at is not None
    bench.end(customer[0])
    bench.settle()
    assert bench.records["c1-cb"].outcome == "completed"
    assert bench.core.router.agents[agent].state == "available"
    assert bench.live() == []


@pytest.mark.parametrize(("caller", "told"), [
    ("899123456", "We cannot call you back on this number. Please stay on the line."),
    ("+39899123456", "We cannot call you back on this number. Please stay on the line."),
    ("0012125550100", "We cannot call you back on this number. Please stay on the line."),
    ("", "Your number is withheld, so we cannot call you back. Please stay on the line."),
])
def test_a_callback_no_rule_allows_dials_nothing_and_the_caller_keeps_waiting(
        bench: Bench, caplog: pytest.LogCaptureFixture, caller: str, told: str) -> None:
    caplog.set_level(logging.INFO, logger="ivr")
    leg = to_queue(bench, caller)
    anna = bench.ringing()["anna"]
    call = bench.core.calls[bench.record_of(leg).call_id]
    bench.key(leg, "2")
    assert not call.callback_requested
    assert call.phase is CallPhase.QUEUED
    assert call.call_id in bench.core.router.waiting  # the place is kept
    assert bench.legs[leg].playing == (f"say:{told}",)
    bench.prompt_done(leg)
    assert bench.legs[leg].playing == ("moh.wav",)  # then the hold music again
    assert bench.ringing() == {"anna": anna}  # still offered to the agent
    assert bench.record_of(leg).ivr_path.endswith("support[2 no callback]")
    if caller:
        assert (f"call c1: callback to {mask_number(caller)} refused: no dial_out rule with "
                "'callbacks: true' allows the number; the caller keeps waiting") in caplog.text
        assert caller.lstrip("+") not in caplog.text  # numbers are masked in the log
    bench.end(leg)
    bench.settle()
    record = bench.record_of(call.call_id)
    assert (record.outcome, record.ivr_path) == ("abandoned_queue", "menu[1] > support[2 no "
                                                                    "callback]")
    bench.run_until(bench.now + 60)
    assert not bench.core.callbacks
    assert [x.uri for x in bench.legs.values() if not x.incoming] == ["sip:anna@192.0.2.10"]
    assert bench.live() == []
    assert bench.core.problems() == []


def test_transfer_failure_goes_on_in_the_flow(bench: Bench) -> None:
    leg = bench.incoming()
    bench.key(leg, "2")
    transfer = [x.leg for x in bench.legs.values() if x.uri.startswith("sip:reception")]
    assert transfer
    bench.end(transfer[0], 486, "Busy Here")
    call = bench.core.calls[bench.record_of(leg).call_id]
    assert call.phase is CallPhase.IVR
    assert bench.legs[leg].playing == ("say:Goodbye.",)


def test_transfer_answered_is_bridged_and_recorded(bench: Bench) -> None:
    leg = bench.incoming()
    bench.key(leg, "2")
    transfer = next(x.leg for x in bench.legs.values() if x.uri.startswith("sip:reception"))
    bench.answer(transfer)
    assert bench.legs[leg].bridged_to == transfer
    bench.end(transfer)
    bench.settle()
    record = bench.records["c1"]
    assert record.outcome == "completed"
    assert record.transferred_to == "201"


def test_transfer_not_answered_times_out(bench: Bench) -> None:
    leg = bench.incoming()
    bench.key(leg, "2")
    transfer = next(x.leg for x in bench.legs.values() if x.uri.startswith("sip:reception"))
    bench.run_until(31)
    assert bench.legs[transfer].hangup_asked
    assert bench.core.calls[bench.record_of(leg).call_id].phase is CallPhase.IVR


def test_ivr_that_gives_up_is_its_own_outcome(bench: Bench) -> None:
    leg = bench.incoming()
    bench.prompt_done(leg)
    bench.key(leg, "7")
    bench.prompt_done(leg)
    bench.key(leg, "8")  # second invalid key: on_failure -> bye
    bench.prompt_done(leg)  # "Goodbye." then the flow hangs up
    bench.settle()
    assert bench.records["c1"].outcome == "ivr_gave_up"
    assert bench.records["c1"].end_reason == "flow_end after menu ran out of tries"


def test_answer_never_acknowledged_is_a_failed_call(bench: Bench) -> None:
    leg = bench.incoming(confirm=False)
    bench.end(leg, 408, "Request Timeout")
    assert bench.records["c1"].outcome == "failed"
    assert "ACK" in bench.records["c1"].end_reason


def test_lookup_answer_after_the_call_ended_is_ignored(bench: Bench) -> None:
    leg = bench.incoming()
    bench.end(leg)
    effects = bench.send(LookupResult("c1", 1, {"name": "x"}, ""))
    assert effects == []


def test_lookups_of_a_call_that_ended_are_cancelled(bench: Bench) -> None:
    leg = bench.incoming()
    effects = bench.send(sip.LegEnded(leg, 200, "BYE"))
    assert m.CancelLookups("c1") in effects


FREE_TEXT_FLOW = """
flow: greet
languages: [en]
start: hello
variables: {name: "Ada"}
nodes:
  hello: {type: play, prompt: {say: "Hello {name}."}, next: bye}
  bye: {type: hangup}
"""
"""A prompt with free text (a name): it must be rendered, off the loop."""


def test_free_text_prompt_is_rendered_off_the_loop_and_played_when_ready(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, flow=FREE_TEXT_FLOW)
    leg = bench.incoming()
    assert len(bench.renders) == 1
    assert bench.playing_token(leg) is None
    render = bench.renders[0]
    bench.send(m.PromptReady(render.call_id, render.play_id, ("hello-ada.wav",)))
    assert bench.legs[leg].playing == ("hello-ada.wav",)


def test_a_prompt_that_cannot_be_rendered_is_skipped(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, flow=FREE_TEXT_FLOW)
    leg = bench.incoming()
    render = bench.renders[0]
    bench.send(m.PromptReady(render.call_id, render.play_id, None, "deadline"))
    assert bench.legs[leg].hangup_asked  # the flow went on to its end


def test_reload_mid_call_keeps_the_call_on_its_version(tmp_path: Path) -> None:
    from ivr.flow import load_flow

    bench = make_bench(tmp_path)
    first = bench.incoming()
    (tmp_path / "flow.yaml").write_text((tmp_path / "flow.yaml").read_text().replace(
        "One for support", "Press one for support"))
    new = load_flow(tmp_path / "flow.yaml", known_queues=bench.core.config.queues)
    effects = bench.send(m.FlowReady(new, "SIGHUP"))
    assert any(isinstance(fx, m.FlowInService) and fx.reloaded for fx in effects)
    second = bench.incoming()
    assert bench.record_of(first).flow_version != bench.record_of(second).flow_version
    assert bench.legs[first].playing[0].startswith("say:One for support")
    bench.prompt_done(first)
    bench.key(first, "1")  # the first call goes on in its own version
    assert bench.core.calls["c1"].phase is CallPhase.QUEUED


def test_burst_of_200_invites_against_30_lines_is_capped_by_the_sip_layer(
        tmp_path: Path) -> None:
    """The core tells the SIP layer the trunk's lines; the SIP layer counts legs itself
    (tests/test_sip_admission.py). Here: every admission says 200 with the cap, so a burst
    taken before the loop sees any call cannot be counted by the loop."""
    bench = make_bench(tmp_path, lines=30)
    answers = {bench.core.admit("192.0.2.1") for _ in range(200)}
    assert answers == {("gw", 200, 30, ())}
    assert bench.core.admit("198.51.100.7") == (None, 403, 0, ())
    bench.core.stopping = True
    assert bench.core.admit("192.0.2.1") == ("gw", 503, 30, ())


def test_stop_hangs_up_everything_and_closes_records_as_interrupted(bench: Bench) -> None:
    leg = to_queue(bench)
    bench.answer(bench.ringing()["anna"])
    other = bench.incoming()
    bench._apply(bench.core.stop(bench.now))
    assert bench.legs[leg].hangup_asked
    assert bench.legs[other].hangup_asked
    bench.settle()
    assert set(bench.outcomes().values()) == {"interrupted"}
    assert bench.core.router.agents["anna"].state == "available"
    assert not bench.core.calls


def test_agent_commands_and_feature_codes(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    bench.send(m.AgentCommand("anna", "pause", "lunch", "test"))
    assert bench.core.router.agents["anna"].state == "paused"
    saves = [fx for fx in bench.effects if isinstance(fx, m.SaveAgentState)]
    assert saves
    assert saves[-1].state == "paused"
    assert saves[-1].reason == "lunch"
    to_queue(bench)
    assert list(bench.ringing()) == ["marco"]
    bench.send(m.AgentCommand("nobody", "login"))  # unknown: ignored, no effect
    # a feature code from anna's phone: answered, confirmed, then hung up
    leg = "F1"
    bench.legs[leg] = __import__("tests.driver_bench", fromlist=["LegModel"]).LegModel(
        leg, incoming=True)
    bench.send(sip.IncomingCall(leg, "192.0.2.10", "agents", "anna", "*44"))
    assert bench.core.router.agents["anna"].state == "available"
    assert bench.legs[leg].answered
    bench.prompt_done(leg)
    assert bench.legs[leg].hangup_asked


def test_refused_call_is_recorded(bench: Bench) -> None:
    bench.incoming(source="198.51.100.7")
    assert list(bench.outcomes().values()) == ["refused"]


def bench_tmp(bench: Bench) -> Path:
    return Path(bench.core.config.store).parent


ROUTES = """
sip: {listen: 127.0.0.1:5999}
trunks:
  gw: {sources: [192.0.2.1], lines: 30}
agents:
  anna: {uri: "sip:anna@192.0.2.10"}
queues:
  support: {agents: [anna]}
routes:
  "800 123 456": {flow: flow.yaml, language: en}
  "+39 06 1234": {flow: other.yaml}
store: calls.db
"""


def routed_bench(tmp_path: Path) -> Bench:
    import itertools

    from ivr.config import load_config
    from ivr.driver.core import Core
    from ivr.flow import load_flow
    from tests.driver_bench import FLOW, files_for

    (tmp_path / "flow.yaml").write_text(FLOW)
    (tmp_path / "other.yaml").write_text(
        "flow: other\nlanguages: [it, en]\nstart: bye\nnodes:\n"
        "  bye: {type: hangup, prompt: {say: {it: Arrivederci., en: Goodbye.}}}\n")
    (tmp_path / "ivr.yaml").write_text(ROUTES)
    config = load_config(tmp_path / "ivr.yaml")
    flows = {str(p): load_flow(p, known_queues=config.queues) for p in config.flow_paths()}
    ids = itertools.count(1)
    core = Core(config, next(iter(flows.values())), flows=flows, files_for=files_for,
                music_on_hold="moh.wav", now=0.0, new_id=lambda: f"c{next(ids)}")
    return Bench(core)


def test_called_numbers_pick_their_flow_and_language(tmp_path: Path) -> None:
    bench = routed_bench(tmp_path)
    toll_free = bench.incoming(called="800123456")
    rome = bench.incoming(called="tel:+39-06-1234")
    assert bench.record_of(toll_free).flow == "bench"
    assert bench.record_of(rome).flow == "other"
    assert bench.record_of(rome).called == "+39061234"
    assert bench.legs[rome].playing == ("say:Arrivederci.",)  # the flow's own first language
    assert bench.core.calls["c1"].session.language == "en"  # the route's language


def test_an_unknown_called_number_is_refused_404_and_recorded(tmp_path: Path) -> None:
    bench = routed_bench(tmp_path)
    for called in ("800999999", "ivr%00evil", "support"):
        leg = f"X{called}"
        from tests.driver_bench import LegModel

        bench.legs[leg] = LegModel(leg, incoming=True)
        effects = bench.send(sip.IncomingCall(leg, "192.0.2.1", "gw", "3331234567", called))
        assert m.HangupLeg(leg, 404) in effects
        assert not bench.legs[leg].answered
    records = list(bench.records.values())
    assert [r.outcome for r in records] == ["refused"] * 3
    assert [r.called for r in records] == ["800999999", "", ""]  # never stored as given
    assert not bench.core.calls


def test_a_caller_id_that_is_not_a_number_is_taken_as_withheld(bench: Bench) -> None:
    leg = bench.incoming(caller="evil\x00name")
    assert bench.record_of(leg).caller == ""
    assert bench.core.calls[bench.record_of(leg).call_id].session.variables["caller"] == ""
    normal = bench.incoming(caller="+39 333 123 4567")
    assert bench.record_of(normal).caller == "+393331234567"


def test_admission_names_where_the_trunks_audio_may_be(tmp_path: Path) -> None:
    extra = "  gw2: {sources: [192.0.2.2], media_networks: [198.51.100.0/24]}\n"
    bench = make_bench(tmp_path)
    config = (tmp_path / "ivr.yaml").read_text().replace(
        "  gw: {sources: [192.0.2.1], lines: 30}\n", "  gw: {sources: [192.0.2.1], lines: 30}\n"
        + extra)
    (tmp_path / "ivr.yaml").write_text(config)
    from ivr.config import load_config
    from ivr.driver.core import Core
    from tests.driver_bench import files_for

    core = Core(load_config(tmp_path / "ivr.yaml"), bench.core.flow, files_for=files_for,
                music_on_hold="moh.wav", now=0.0)
    assert core.admit("192.0.2.2") == ("gw2", 200, 30, ("198.51.100.0/24",))
    assert core.admit("192.0.2.1") == ("gw", 200, 30, ())


# -- agents' transfers (REFER from the agent's phone) --------------------------------------------
AGENT_RULES = """\
dial_out:
  - {pattern: "^06[0-9]{6,8}$", uri: "sip:{number}@192.0.2.1", agent_transfers: true}
  - {pattern: "^07[0-9]{6,8}$", uri: "sip:{number}@192.0.2.1"}"""


def connected_to_anna(bench: Bench) -> tuple[str, str]:
    """A caller connected to anna: (caller's leg, anna's leg)."""
    leg = to_queue(bench)
    anna = bench.ringing()["anna"]
    bench.answer(anna)
    return leg, anna


def dialled_to(bench: Bench, prefix: str) -> str:
    return next(x.leg for x in bench.legs.values() if x.uri.startswith(prefix))


def test_an_agent_transfers_the_caller_to_an_extension(bench: Bench) -> None:
    leg, anna = connected_to_anna(bench)
    call = bench.core.calls[bench.record_of(leg).call_id]
    assert bench.refer(anna, "<sip:201@192.0.2.99:5060;user=phone>") == ""
    assert bench.legs[anna].hangup_asked  # the agent's part is over
    assert bench.core.router.agents["anna"].state == "available"  # wrap-up 0: free at once
    assert call.phase is CallPhase.TRANSFERRING
    assert bench.legs[leg].playing == ("moh.wav",)
    target = dialled_to(bench, "sip:reception@192.0.2.20")  # ivr.yaml's URI, never the REFER's
    assert bench.legs[target].uri == "sip:reception@192.0.2.20"
    bench.settle()
    assert bench.core.problems() == []
    bench.answer(target)
    assert bench.legs[leg].bridged_to == target
    assert call.phase is CallPhase.TRANSFERRED
    record = bench.record_of(leg)
    assert (record.transferred_to, record.agent) == ("201", "anna")
    bench.end(target)
    bench.settle()
    record = bench.record_of(record.call_id)
    assert (record.outcome, record.end_reason) == ("completed", "transferred to 201")
    assert bench.live() == []
    assert bench.core.problems() == []


def test_an_attended_transfer_hands_the_replaces_to_the_extension(bench: Bench) -> None:
    _leg, anna = connected_to_anna(bench)
    replaces = "abc%40192.0.2.10%3Bto-tag%3D1%3Bfrom-tag%3D2"
    assert bench.refer(anna, f"<sip:201@192.0.2.99?Replaces={replaces}>", replaces) == ""
    target = dialled_to(bench, "sip:reception@")
    assert bench.legs[target].uri == f"sip:reception@192.0.2.20?Replaces={replaces}"


@pytest.mark.parametrize(("status", "reason"), [(486, "Busy Here"), (404, "Not Found"),
                                                (0, "no answer")])
def test_a_transfer_the_target_does_not_take_puts_the_caller_back_in_the_queue(
        bench: Bench, status: int, reason: str) -> None:
    leg, anna = connected_to_anna(bench)
    call = bench.core.calls[bench.record_of(leg).call_id]
    bench.refer(anna, "sip:201@192.0.2.99")
    bench.settle()
    target = dialled_to(bench, "sip:reception@")
    if status:
        bench.end(target, status, reason)
    else:
        bench.run_until(bench.now + 31)  # nobody answers within the transfer timeout
        assert bench.legs[target].hangup_asked
        bench.settle()
    assert call.phase is CallPhase.QUEUED
    assert call.call_id in bench.core.router.waiting
    assert bench.core.router.waiting[call.call_id].queue == "support"
    assert bench.legs[leg].playing == ("moh.wav",)
    assert bench.record_of(leg).transferred_to is None
    assert set(bench.ringing()) & {"anna", "marco"}  # offered again, first in line
    assert bench.core.problems() == []


def test_an_agent_transfers_the_caller_to_another_queue(bench: Bench) -> None:
    leg, anna = connected_to_anna(bench)
    call = bench.core.calls[bench.record_of(leg).call_id]
    assert bench.refer(anna, "sip:level2@192.0.2.99") == ""
    assert call.phase is CallPhase.QUEUED
    record = bench.record_of(leg)
    assert (record.queue, record.transferred_to, record.agent) == ("level2", "level2", "anna")
    bench.settle()
    assert bench.core.router.agents["anna"].state == "available"
    lia = bench.ringing()["lia"]
    assert bench.core.problems() == []
    bench.answer(lia)
    assert call.phase is CallPhase.CONNECTED
    assert bench.record_of(leg).agent == "lia"
    assert bench.core.problems() == []


def test_a_transfer_to_a_target_ivr_yaml_does_not_name_is_refused(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, dial_out=AGENT_RULES)
    leg, anna = connected_to_anna(bench)
    call = bench.core.calls[bench.record_of(leg).call_id]
    for target in ("sip:00390612345678@192.0.2.1", "sip:0712345678@192.0.2.1",
                   "sip:reception@192.0.2.20", "<sip:202@192.0.2.99>", "sip:192.0.2.20",
                   "tel:201"):
        assert bench.refer(anna, target) == ("not an extension, a queue or a number agents "
                                             "may transfer to"), target
    assert call.phase is CallPhase.CONNECTED
    assert bench.legs[leg].bridged_to == anna
    assert not bench.legs[anna].hangup_asked
    assert [x for x in bench.legs.values() if x.uri.startswith("sip:0")] == []
    # a number a dial_out rule allows agents is taken, at the rule's URI
    assert bench.refer(anna, "sip:06-1234-5678@192.0.2.250") == ""
    assert bench.legs[dialled_to(bench, "sip:0")].uri == "sip:0612345678@192.0.2.1"
    assert bench.core.problems() == []


def test_a_refer_from_the_caller_or_a_leg_not_connected_is_refused(bench: Bench) -> None:
    leg = to_queue(bench)
    anna = bench.ringing()["anna"]
    not_agents = "not an agent's call with a caller"
    assert bench.refer(anna, "sip:201@192.0.2.99") == not_agents  # still ringing
    bench.answer(anna)
    assert bench.refer(leg, "sip:201@192.0.2.99") == not_agents  # the trunk's caller
    assert bench.refer("L99", "sip:201@192.0.2.99") == not_agents
    call = bench.core.calls[bench.record_of(leg).call_id]
    assert call.phase is CallPhase.CONNECTED
    assert [x for x in bench.legs.values() if x.uri.startswith("sip:reception")] == []


def test_the_caller_hanging_up_during_an_agents_transfer_ends_it(bench: Bench) -> None:
    leg, anna = connected_to_anna(bench)
    bench.refer(anna, "sip:201@192.0.2.99")
    target = dialled_to(bench, "sip:reception@")
    call_id = bench.record_of(leg).call_id
    bench.end(leg)
    bench.settle()
    assert bench.legs[target].hangup_asked
    record = bench.record_of(call_id)
    assert (record.outcome, record.agent) == ("completed", "anna")
    assert record.end_reason == "caller hung up during transfer to 201 by agent anna"
    assert bench.live() == []
    assert bench.core.problems() == []


def test_a_transfer_reported_after_the_call_moved_on_does_nothing(bench: Bench) -> None:
    leg, anna = connected_to_anna(bench)
    bench.end(leg)  # the caller hangs up in the same poll as the agent's REFER
    bench.settle()
    bench.send(sip.TransferRequested(anna, "sip:201@192.0.2.99", ""))
    assert [x for x in bench.legs.values() if x.uri.startswith("sip:reception")] == []
    assert bench.core.problems() == []

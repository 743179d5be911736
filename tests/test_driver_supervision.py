"""Supervisors listening, whispering, barging: the driver's part, fake SIP and time by hand."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.driver import messages as m
from ivr.driver.state import ANNOUNCE_TOKEN, CallPhase
from ivr.driver.supervision import links_for
from ivr.yamlsrc import DocumentError
from tests.driver_bench import Bench, make_bench

SUPERVISORS = """
supervisors:
  laura: {uri: "sip:laura@192.0.2.30", queues: [support], announce: true}
  piero: {uri: "sip:piero@192.0.2.31", queues: [support, level2]}
"""

LAURA = "192.0.2.30"
PIERO = "192.0.2.31"


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return make_bench(tmp_path, config_extra=SUPERVISORS)


def connected_to_anna(bench: Bench) -> tuple[str, str]:
    """A caller of queue support connected to anna: (caller's leg, anna's leg)."""
    leg = bench.incoming()
    bench.key(leg, "1")
    anna = bench.ringing()["anna"]
    bench.answer(anna)
    return leg, anna


def links(bench: Bench) -> set[tuple[str, str]]:
    """The one-way audio connections the effects so far leave in place."""
    out: set[tuple[str, str]] = set()
    for fx in bench.effects:
        if isinstance(fx, m.Connect):
            out.add((fx.src, fx.dst))
        elif isinstance(fx, m.Disconnect):
            out.discard((fx.src, fx.dst))
    return out


def queue_log(bench: Bench, prefix: str = "supervise") -> list[tuple[str, str, dict[str, object]]]:
    return [(row.kind, row.agent, dict(row.detail)) for fx in bench.effects
            if isinstance(fx, m.SaveQueueEvents) for row in fx.rows
            if row.kind.startswith(prefix)]


def refused_with(bench: Bench, leg: str) -> int | None:
    return next((fx.status for fx in bench.effects
                 if isinstance(fx, m.HangupLeg) and fx.leg == leg), None)


def test_listen_hears_both_and_nobody_hears_the_supervisor(bench: Bench) -> None:
    caller, anna = connected_to_anna(bench)
    sup = bench.incoming(caller="laura", called="*51anna", source=LAURA)
    assert bench.legs[sup].answered
    assert links(bench) == {(caller, sup), (anna, sup)}
    assert bench.legs[caller].bridged_to == anna  # the call itself is untouched
    assert bench.core.problems() == []
    assert queue_log(bench) == [("supervise_start", "anna",
                                 {"supervisor": "laura", "mode": "listen", "announced": True})]


def test_announce_plays_a_tone_to_the_agent_only_when_set(bench: Bench) -> None:
    _caller, anna = connected_to_anna(bench)
    bench.incoming(caller="laura", called="*51anna", source=LAURA)
    tones = [fx for fx in bench.effects if isinstance(fx, m.Play) and fx.token == ANNOUNCE_TOKEN]
    assert tones == [m.Play(anna, ("beep.wav",), ANNOUNCE_TOKEN)]
    bench.send(m.Tick())
    bench.incoming(caller="piero", called="*51anna", source=PIERO)  # piero: not announced
    assert [fx for fx in bench.effects
            if isinstance(fx, m.Play) and fx.token == ANNOUNCE_TOKEN] == tones
    assert len(bench.core.supervisions) == 2
    assert bench.core.problems() == []


def test_keys_switch_between_listen_whisper_and_barge(bench: Bench) -> None:
    caller, anna = connected_to_anna(bench)
    sup = bench.incoming(caller="piero", called="*52anna", source=PIERO)
    assert links(bench) == {(caller, sup), (anna, sup), (sup, anna)}
    bench.key(sup, "3")
    assert links(bench) == {(caller, sup), (anna, sup), (sup, anna), (sup, caller)}
    bench.key(sup, "1")
    assert links(bench) == {(caller, sup), (anna, sup)}
    bench.key(sup, "1")  # already listening: nothing
    bench.key(sup, "9")  # not a mode key: nothing
    assert [(kind, d["mode"], d.get("was")) for kind, _a, d in queue_log(bench)] == [
        ("supervise_start", "whisper", None), ("supervise_mode", "barge", "whisper"),
        ("supervise_mode", "listen", "barge")]
    call = next(iter(bench.core.calls.values()))
    assert call.phase is CallPhase.CONNECTED
    assert bench.core.problems() == []


def test_links_of_each_mode() -> None:
    assert links_for("listen", "C", "A", "S") == {("C", "S"), ("A", "S")}
    assert links_for("whisper", "C", "A", "S") == {("C", "S"), ("A", "S"), ("S", "A")}
    assert links_for("barge", "C", "A", "S") == {("C", "S"), ("A", "S"), ("S", "A"),
                                                 ("S", "C")}


@pytest.mark.parametrize("who", ["caller", "agent"])
def test_the_end_of_the_agents_call_ends_the_supervisors_leg(bench: Bench, who: str) -> None:
    caller, anna = connected_to_anna(bench)
    sup = bench.incoming(caller="laura", called="*53anna", source=LAURA)
    bench.end(caller if who == "caller" else anna)
    assert bench.legs[sup].hangup_asked
    assert links(bench) == set()
    assert not bench.core.supervisions
    assert bench.core.problems() == []
    bench.settle()
    assert bench.live() == []
    kinds = [(kind, d.get("reason")) for kind, _a, d in queue_log(bench)]
    assert kinds == [("supervise_start", None), ("supervise_end", "the agent's call ended")]
    assert bench.outcomes() == {"c1": "completed"}


def test_the_supervisor_hanging_up_leaves_the_call_going_on(bench: Bench) -> None:
    caller, anna = connected_to_anna(bench)
    sup = bench.incoming(caller="laura", called="*51anna", source=LAURA)
    bench.end(sup)
    assert links(bench) == set()
    assert not bench.legs[caller].hangup_asked
    assert not bench.legs[anna].hangup_asked
    assert queue_log(bench)[-1][0] == "supervise_end"
    assert queue_log(bench)[-1][2]["reason"] == "supervisor hung up"
    assert bench.core.problems() == []


def test_an_escalation_takes_the_supervisor_off_the_call(bench: Bench) -> None:
    _caller, anna = connected_to_anna(bench)
    sup = bench.incoming(caller="laura", called="*51anna", source=LAURA)
    bench.key(anna, "*9")
    assert bench.legs[sup].hangup_asked
    assert not bench.core.supervisions
    assert bench.core.problems() == []


def test_a_supervisor_may_name_the_agent_by_the_user_of_its_uri(bench: Bench) -> None:
    caller, anna = connected_to_anna(bench)
    agents = bench.core.config.agents
    agents["anna"] = dataclasses.replace(agents["anna"], uri="sip:201@192.0.2.10")
    sup = bench.incoming(caller="laura", called="*51201", source=LAURA)
    assert bench.legs[sup].answered
    assert links(bench) == {(caller, sup), (anna, sup)}


@pytest.mark.parametrize(("source", "user", "called", "why"), [
    ("192.0.2.1", "3331234567", "*51anna", "a caller from the gateway"),
    ("192.0.2.11", "marco", "*51anna", "an agent's phone"),
    ("192.0.2.30", "mallory", "*51anna", "another user at the supervisor's address"),
    ("192.0.2.30", "laura", "*51nobody", "no such agent"),
    ("192.0.2.30", "laura", "*51marco", "an agent not on a call"),
])
def test_a_code_from_elsewhere_or_on_no_call_is_refused(bench: Bench, source: str, user: str,
                                                        called: str, why: str) -> None:
    connected_to_anna(bench)
    sup = bench.incoming(caller=user, called=called, source=source)
    assert refused_with(bench, sup) == 403, why
    assert not bench.legs[sup].answered
    assert not bench.core.supervisions
    assert links(bench) == set()
    assert "refused" in bench.outcomes().values()


def test_a_supervisor_may_not_join_a_queue_they_do_not_watch(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    bench = make_bench(tmp_path, config_extra=SUPERVISORS)
    _caller, _anna = connected_to_anna(bench)
    call = next(iter(bench.core.calls.values()))
    call.record.queue = "level2"  # as after an escalation that anna took
    sup = bench.incoming(caller="laura", called="*51anna", source=LAURA)
    assert refused_with(bench, sup) == 403
    assert "not one supervisor laura may watch" in caplog.text
    ok = bench.incoming(caller="piero", called="*51anna", source=PIERO)
    assert bench.legs[ok].answered


def test_stop_hangs_up_supervisors_too(bench: Bench) -> None:
    connected_to_anna(bench)
    sup = bench.incoming(caller="laura", called="*51anna", source=LAURA)
    assert any(isinstance(fx, m.HangupLeg) and fx.leg == sup for fx in bench.core.stop(0.0))
    bench.core.abandon(0.0)
    assert not bench.core.supervisions


def test_supervision_codes_are_configurable_and_must_differ(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, config_extra=SUPERVISORS + "feature_codes: {listen: '*71'}\n")
    codes = bench.core.config.feature_codes
    assert codes.supervision_for("*71anna") == ("listen", "anna")
    assert codes.supervision_for("*51anna") is None
    assert codes.supervision_for("*53") is None
    (tmp_path / "bad.yaml").write_text((tmp_path / "ivr.yaml").read_text().replace(
        "listen: '*71'", "listen: '*41'"))
    with pytest.raises(DocumentError, match="feature codes must differ"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text((tmp_path / "ivr.yaml").read_text().replace(
        "queues: [support, level2]", "queues: [support, nowhere]"))
    with pytest.raises(DocumentError, match="nowhere"):
        load_config(tmp_path / "bad2.yaml")


def test_the_executor_connects_and_disconnects_one_direction_at_a_time() -> None:
    from tests.test_executor import FailingSip, executor

    class Sip(FailingSip):
        def connect(self, src: str, dst: str) -> None:
            self._do("connect", src, dst)

        def disconnect(self, src: str, dst: str) -> None:
            self._do("disconnect", src, dst)

    sip = Sip({"gone"})
    ex = executor(sip)
    assert ex.run([m.Connect("L1", "L3"), m.Connect("gone", "L3"), m.Disconnect("L3", "L2")]) \
        == []
    assert sip.done == [("connect", "L1", "L3"), ("disconnect", "L3", "L2")]
    assert ex.errors == 1  # logged; the next effect still ran


def test_doctor_lists_who_may_listen_and_a_phone_at_a_trunks_address(tmp_path: Path) -> None:
    from ivr.doctor import security_report

    bench = make_bench(tmp_path, config_extra=SUPERVISORS.replace("192.0.2.31", "192.0.2.1"))
    found = [(f.level, f.text) for f in security_report(bench.core.config, tmp_path / "ivr.yaml")
             if f.area == "supervision"]
    assert found == [
        ("ok", "supervisor 'laura' (sip:laura@192.0.2.30) may listen to, whisper in and join "
               "calls of support (the agent hears a tone)"),
        ("ok", "supervisor 'piero' (sip:piero@192.0.2.1) may listen to, whisper in and join "
               "calls of support, level2 (unannounced)"),
        ("warning", "supervisor 'piero''s phone is at 192.0.2.1, a source of trunk 'gw': a call "
                    "through that trunk giving the supervisor's user name could listen in; give "
                    "the phone an address of its own")]

"""The pure planning of outbound campaigns, with the time given by hand: windows (edges, the
days the clocks change in Europe/Rome, holidays), the hopper, the retry rules and the pacer."""

import datetime as dt
import random
import zoneinfo
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.outbound.campaigns import Campaign, PauseWhen, Retry, Window
from ivr.outbound.plan import (
    Contact,
    Hopper,
    Pacer,
    PacerState,
    after_attempt,
    in_window,
    next_window_start,
)

ROME = zoneinfo.ZoneInfo("Europe/Rome")


def rome(*args: int) -> float:
    """Unix time of a wall time in Rome (year, month, day, hour, minute[, second])."""
    return dt.datetime(*args, tzinfo=ROME).timestamp()


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def campaign(mode: str = "progressive", days=(0, 1, 2, 3, 4),
             intervals=((540, 780), (840, 1140)), **kw) -> Campaign:
    window = Window("Europe/Rome", tuple(days), tuple(intervals), kw.pop("country", "IT"),
                    None, tuple(kw.pop("dates", ())))
    base = {"name": "spring", "mode": mode, "trunk": "gw", "trunk_lines": 10,
            "max_lines": 4, "window": window, "queue": "sales", "reserve_inbound": 2,
            "retries": {"busy": Retry(2, 900.0), "no_answer": Retry(3, 7200.0),
                        "failed": Retry(1, 1800.0), "callback": Retry(1, 86400.0)},
            "final_dispositions": frozenset({"1"}), "dnc_disposition": "9"}
    base.update(kw)
    return Campaign(**base)


# -- the window ----------------------------------------------------------------------------------

def test_window_edges_on_a_weekday():
    c = campaign()  # mon-fri 09:00-13:00, 14:00-19:00
    tue = (2026, 12, 1)
    assert not in_window(c, rome(*tue, 8, 59, 59))
    assert in_window(c, rome(*tue, 9, 0))
    assert in_window(c, rome(*tue, 12, 59, 59))
    assert not in_window(c, rome(*tue, 13, 0))  # the end is not in
    assert not in_window(c, rome(*tue, 13, 59))
    assert in_window(c, rome(*tue, 14, 0))
    assert in_window(c, rome(*tue, 18, 59, 59))
    assert not in_window(c, rome(*tue, 19, 0))
    assert not in_window(c, rome(2026, 12, 5, 10, 0))  # a Saturday


def test_next_window_start():
    c = campaign()
    tue = (2026, 12, 1)
    assert next_window_start(c, rome(*tue, 7, 0)) == rome(*tue, 9, 0)
    assert next_window_start(c, rome(*tue, 10, 30)) == rome(*tue, 10, 30)  # open: now
    assert next_window_start(c, rome(*tue, 13, 0)) == rome(*tue, 14, 0)
    assert next_window_start(c, rome(*tue, 19, 0)) == rome(2026, 12, 2, 9, 0)
    # Friday evening -> Monday morning
    assert next_window_start(c, rome(2026, 12, 4, 20, 0)) == rome(2026, 12, 7, 9, 0)
    # a window with no day never opens
    assert next_window_start(campaign(days=()), rome(*tue, 7, 0)) is None


def test_the_day_the_clocks_go_forward_in_rome():
    """29 March 2026: 02:00 CET becomes 03:00 CEST; a daily window 01:00-04:00 is two hours
    long that day, and 09:00 is 07:00 UTC from then on (08:00 UTC the day before)."""
    c = campaign(days=range(7), intervals=((60, 240), (540, 600)))
    assert not in_window(c, utc(2026, 3, 28, 23, 59))  # 00:59 CET
    assert in_window(c, utc(2026, 3, 29, 0, 0))  # 01:00 CET
    assert in_window(c, utc(2026, 3, 29, 1, 30))  # 03:30 CEST
    assert not in_window(c, utc(2026, 3, 29, 2, 0))  # 04:00 CEST
    assert next_window_start(c, utc(2026, 3, 29, 2, 0)) == utc(2026, 3, 29, 7, 0)
    assert next_window_start(c, utc(2026, 3, 28, 3, 0)) == utc(2026, 3, 28, 8, 0)
    # a window that opens at 02:30, a wall time that day does not have, opens at 03:00 CEST
    gap = campaign(days=range(7), intervals=((150, 300),))
    assert not in_window(gap, utc(2026, 3, 29, 0, 59, 59))
    assert in_window(gap, utc(2026, 3, 29, 1, 0))
    assert next_window_start(gap, utc(2026, 3, 28, 23, 0)) == utc(2026, 3, 29, 1, 0)


def test_the_day_the_clocks_go_back_in_rome():
    """25 October 2026: 03:00 CEST becomes 02:00 CET; 01:00-04:00 lasts four hours."""
    c = campaign(days=range(7), intervals=((60, 240),))
    assert in_window(c, utc(2026, 10, 24, 23, 0))  # 01:00 CEST
    assert in_window(c, utc(2026, 10, 25, 0, 30))  # 02:30 CEST
    assert in_window(c, utc(2026, 10, 25, 1, 30))  # 02:30 CET, the second time
    assert in_window(c, utc(2026, 10, 25, 2, 59))  # 03:59 CET
    assert not in_window(c, utc(2026, 10, 25, 3, 0))  # 04:00 CET
    assert next_window_start(c, utc(2026, 10, 25, 3, 0)) == utc(2026, 10, 26, 0, 0)


def test_holidays_of_the_country_and_dates_given():
    c = campaign(dates=("2026-12-01",))
    # Easter Monday (Pasquetta) and 2 June are Italian public holidays
    assert not in_window(c, rome(2026, 4, 6, 10, 0))
    assert not in_window(c, rome(2026, 6, 2, 10, 0))
    assert in_window(c, rome(2026, 6, 3, 10, 0))
    assert next_window_start(c, rome(2026, 4, 3, 20, 0)) == rome(2026, 4, 7, 9, 0)
    assert not in_window(c, rome(2026, 12, 1, 10, 0))  # a date of the campaign's own
    assert next_window_start(c, rome(2026, 12, 1, 8, 0)) == rome(2026, 12, 2, 9, 0)
    without = campaign(country=None)
    assert in_window(without, rome(2026, 4, 6, 10, 0))


# -- the hopper ----------------------------------------------------------------------------------

def contact(i: int, next_at: float = 0.0, number: str = "") -> Contact:
    return Contact(i, number or f"+39061234{i:04d}", f"c{i}", {}, 0, next_at)


def test_the_hopper_gives_the_contact_due_first_then_the_lowest_id():
    hopper = Hopper([contact(3, 100), contact(1, 200), contact(2, 100), contact(4, 50)])
    assert len(hopper) == 4
    assert hopper.next_due() == 50
    assert hopper.due_count(99) == 1
    assert hopper.due_count(100) == 3
    assert hopper.take(49) is None  # nobody due yet
    assert [hopper.take(1000).id for _ in range(4)] == [4, 2, 3, 1]
    assert hopper.take(1000) is None
    assert hopper.next_due() is None


def test_put_replaces_a_contact_and_remove_takes_out_a_number():
    hopper = Hopper([contact(1, 10), contact(2, 20), contact(3, 30, "+390600000001"),
                     contact(4, 40, "+390600000001")])
    hopper.put(replace(contact(1), next_at=35))  # a retry: later now
    assert 1 in hopper
    assert len(hopper) == 4
    assert hopper.remove("+390600000001") == 2  # on the DNC list mid-campaign
    assert hopper.remove("+390600000001") == 0
    assert len(hopper) == 2
    assert hopper.due_count(100) == 2
    assert [hopper.take(100).id for _ in range(2)] == [2, 1]
    hopper.put(contact(5, 5, "+390600000001"))
    assert hopper.take(100).id == 5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "take", "remove"]), st.integers(0, 30),
                          st.integers(0, 50), st.integers(0, 5)), max_size=120))
def test_the_hopper_agrees_with_a_sorted_list(ops):
    hopper, model = Hopper(), {}
    for op, cid, at, num in ops:
        number = f"+3906000000{num}"
        if op == "put":
            hopper.put(Contact(cid, number, next_at=float(at)))
            model[cid] = (float(at), number)
        elif op == "remove":
            gone = [k for k, v in model.items() if v[1] == number]
            assert hopper.remove(number) == len(gone)
            for k in gone:
                del model[k]
        else:
            due = sorted((v[0], k) for k, v in model.items() if v[0] <= at)
            taken = hopper.take(float(at))
            assert (taken.id if taken else None) == (due[0][1] if due else None)
            if due:
                del model[due[0][1]]
        assert len(hopper) == len(model)
        assert hopper.due_count(float(at)) == sum(1 for v in model.values() if v[0] <= at)


def test_a_hundred_thousand_contacts_stay_in_order():
    rng = random.Random(7)
    contacts = [contact(i, float(rng.randrange(10_000))) for i in range(100_000)]
    hopper = Hopper(contacts)
    for i in range(0, 100_000, 1000):
        hopper.remove(contacts[i].number)
    order = [(c.next_at, c.id) for c in iter(lambda: hopper.take(10_000.0), None)]
    assert len(order) == 99_900
    assert order == sorted(order)


# -- after an attempt ----------------------------------------------------------------------------

NOW = rome(2026, 12, 1, 10, 0)  # a Tuesday, in the window


def test_busy_is_retried_per_its_rule_then_failed():
    c, person = campaign(), contact(1)
    first = after_attempt(c, person, "busy", NOW)
    assert first.action == "retry"
    assert first.at == NOW + 900
    assert first.contact.next_at == NOW + 900
    assert first.contact.attempts == 1
    assert first.contact.last_outcome == "busy"
    assert first.reason == "busy; retry 1 of 2 (retries.busy) at 2026-12-01 10:15 CET"
    second = after_attempt(c, first.contact, "busy", NOW + 900)
    assert second.action == "retry"
    assert second.contact.tries == {"busy": 2}
    third = after_attempt(c, second.contact, "busy", NOW + 1800)
    assert third.action == "failed"
    assert third.reason == "busy; retries.busy allows 2 more attempts, all made"
    assert third.contact.attempts == 3
    # each outcome is counted on its own
    other = after_attempt(c, second.contact, "no_answer", NOW + 1800)
    assert other.action == "retry"
    assert other.contact.tries == {"busy": 2, "no_answer": 1}


def test_a_retry_outside_the_window_moves_to_its_next_opening():
    c = campaign()
    late = rome(2026, 12, 4, 18, 30)  # Friday: no answer, 2 hours later is Friday 20:30
    decision = after_attempt(c, contact(1), "no_answer", late)
    assert decision.at == rome(2026, 12, 7, 9, 0)
    assert decision.reason.endswith("at 2026-12-07 09:00 CET (the window's next opening)")
    never = campaign(days=())
    assert after_attempt(never, contact(1), "busy", late).action == "failed"


def test_failed_and_callback_follow_their_rules():
    c = campaign()
    assert after_attempt(c, contact(1), "failed", NOW).at == NOW + 1800
    called = after_attempt(c, contact(1), "callback", NOW)
    assert called.at == rome(2026, 12, 2, 10, 0)
    assert after_attempt(c, called.contact, "callback", NOW).action == "failed"


def test_answered_calls_by_disposition():
    c = campaign()
    done = after_attempt(c, contact(1), "answered", NOW, "1")
    assert (done.action, done.at) == ("done", None)
    assert done.reason == "answered, disposition 1 ends the contact"
    dnc = after_attempt(c, contact(1), "answered", NOW, "9")
    assert dnc.action == "dnc"
    assert dnc.reason == "answered, disposition 9: do not call this number again"
    # a disposition that is not final (or none) is a callback
    again = after_attempt(c, contact(1), "answered", NOW, "2")
    assert again.action == "retry"
    assert again.reason.startswith("answered with disposition 2, which does not end the "
                                   "contact; retry 1 of 1 (retries.callback)")
    assert after_attempt(c, contact(1), "answered", NOW).reason.startswith(
        "answered with no disposition")
    automated = campaign("automated", queue=None)
    assert after_attempt(automated, contact(1), "answered", NOW).action == "done"


def test_an_abandoned_call_is_not_tried_again_the_same_day():
    c = campaign()
    decision = after_attempt(c, contact(1), "abandoned", NOW)
    assert decision.action == "retry"
    assert decision.at == rome(2026, 12, 2, 9, 0)
    assert decision.contact.tries == {"no_answer": 1}
    assert "not again today" in decision.reason


def test_an_unknown_outcome_is_a_mistake():
    with pytest.raises(ValueError, match="unknown outcome 'hung_up'"):
        after_attempt(campaign(), contact(1), "hung_up", NOW)


# -- the pacer -----------------------------------------------------------------------------------

FREE = PacerState(free_agents=3)


def dials(c: Campaign, **kw) -> int:
    return Pacer.dials_now(c, replace(FREE, **kw))


def test_progressive_dials_one_call_per_free_agent_less_those_ringing():
    c = campaign()
    assert dials(c) == 3
    assert dials(c, ringing=1) == 2
    assert dials(c, free_agents=0) == 0
    assert dials(c, ringing=5) == 0
    assert Pacer.decide(c, FREE).reason.startswith("progressive: one call per free agent")


def test_preview_never_dials_and_nothing_is_dialled_outside_the_window():
    assert dials(campaign("preview")) == 0
    assert dials(campaign(), window_open=False) == 0
    assert dials(campaign("automated", queue=None), window_open=False) == 0


def test_never_above_max_lines_nor_into_the_inbound_reserve():
    c = campaign(max_lines=4, trunk_lines=10, reserve_inbound=2)
    assert dials(c, free_agents=9) == 4
    assert dials(c, free_agents=9, campaign_lines=3, lines_in_use=3) == 1
    assert dials(c, free_agents=9, campaign_lines=4, lines_in_use=4) == 0
    # inbound calls fill the trunk: only what the reserve leaves
    assert dials(c, free_agents=9, lines_in_use=6) == 2
    assert dials(c, free_agents=9, lines_in_use=8) == 0
    assert "kept for inbound" in Pacer.decide(c, replace(FREE, lines_in_use=8)).reason


def test_nothing_while_an_inbound_caller_waits_for_the_agents():
    c = campaign()
    assert dials(c, inbound_waiting=1) == 0
    assert Pacer.decide(c, replace(FREE, inbound_waiting=2)).reason == (
        "2 inbound caller(s) waiting for the campaign's agents")


def test_pause_under_the_service_level_and_over_the_longest_wait():
    c = campaign(pause_when=PauseWhen(0.8, 30.0))
    assert dials(c, service_level=0.79) == 0
    assert dials(c, service_level=0.8) == 3
    assert dials(c, service_level=None) == 3  # no calls yet
    assert dials(c, longest_wait=31) == 0
    assert dials(c, longest_wait=30) == 3
    # without its own threshold the campaign pauses under the queue's target
    own = campaign(pause_when=PauseWhen(None, 0.0))
    assert dials(own, service_level=0.7, service_level_target=0.75) == 0
    assert dials(own, service_level=0.7) == 3
    assert dials(own, longest_wait=600) == 3  # wait_over 0: not a reason


def test_a_ratio_above_one_only_while_abandons_stay_under_the_cap():
    c = campaign(dial_ratio=1.5, abandon_cap=0.03, max_lines=8)
    assert dials(c, free_agents=2) == 3
    assert dials(c, free_agents=2, answered_today=100, abandoned_today=2) == 3
    assert dials(c, free_agents=2, answered_today=100, abandoned_today=3) == 2  # 3%: at cap
    assert dials(c, free_agents=2, overdial_stopped=True) == 2
    assert dials(c, free_agents=2, abandoned_today=1) == 2  # abandoned before any answer
    assert dials(c, free_agents=2, ringing=3) == 0


def test_automated_uses_its_lines_without_agents():
    c = campaign("automated", queue=None, max_lines=4)
    assert dials(c, free_agents=0) == 4
    assert dials(c, free_agents=0, campaign_lines=3, lines_in_use=3) == 1
    assert dials(c, free_agents=0, inbound_waiting=2) == 4  # no agents of its own to free
    with_queue = campaign("automated", max_lines=4)
    assert dials(with_queue, free_agents=0, inbound_waiting=2) == 0


STATES = st.builds(
    PacerState, free_agents=st.integers(0, 50), inbound_waiting=st.integers(0, 5),
    service_level=st.none() | st.floats(0, 1), service_level_target=st.none() | st.floats(0, 1),
    longest_wait=st.floats(0, 60), lines_in_use=st.integers(0, 32),
    campaign_lines=st.integers(0, 32), ringing=st.integers(0, 8),
    answered_today=st.integers(0, 1000), abandoned_today=st.integers(0, 100),
    window_open=st.booleans(), overdial_stopped=st.booleans())


@settings(max_examples=1000, deadline=None)
@given(state=STATES, mode=st.sampled_from(["preview", "progressive", "automated"]),
       trunk_lines=st.integers(1, 30), max_lines=st.integers(1, 30),
       reserve=st.integers(0, 29), ratio=st.floats(1.0, 5.0), queue=st.booleans())
def test_the_pacer_never_exceeds_its_lines_nor_dials_while_inbound_waits(
        state, mode, trunk_lines, max_lines, reserve, ratio, queue):
    c = campaign(mode, trunk_lines=trunk_lines, max_lines=min(max_lines, trunk_lines),
                 reserve_inbound=min(reserve, trunk_lines - 1), dial_ratio=ratio,
                 queue="sales" if queue or mode != "automated" else None)
    n = Pacer.dials_now(c, state)
    assert n >= 0
    # the calls it adds never take the campaign over max_lines, nor the trunk into the reserve
    assert n == 0 or state.campaign_lines + n <= c.max_lines
    assert n == 0 or state.lines_in_use + n <= c.trunk_lines - c.reserve_inbound
    if state.inbound_waiting and c.queue:
        assert n == 0
    if not state.window_open or mode == "preview":
        assert n == 0
    if mode == "progressive":
        assert n <= max(0, int(state.free_agents * ratio + 1e-9) - state.ringing)

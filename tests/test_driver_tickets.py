"""Tickets and dispositions through the driver's core: fake SIP, time by hand."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry

from ivr.config import load_config
from ivr.driver import messages as m
from ivr.driver.core import Core
from ivr.flow import load_flow
from ivr.metrics import Metrics
from ivr.tickets import Ticket, TicketBook
from tests.driver_bench import Bench, files_for

CALLER = "3331234567"

CONFIG = """
sip: {listen: 127.0.0.1:5999}
trunks:
  gw: {sources: [192.0.2.1], lines: 30}
agents:
  anna: {uri: "sip:anna@192.0.2.10"}
  lia: {uri: "sip:lia@192.0.2.12"}
queues:
  support:
    tiers: {"1": [anna], "2": [lia]}
    ring_timeout: 10
    wrap_up: 5
    %s
dispositions:
  "1": {label: resolved, resolves: true}
  "2": {label: callback}
  "3": {label: escalated}
flow: flow.yaml
store: calls.db
"""

FLOW = """
flow: tickets
languages: [en]
start: known
nodes:
  known:
    type: branch
    cases:
      - when: {variable: ticket_status, one_of: [open, escalated]}
        next: owner
    default: support
  owner:
    type: queue
    queue: support
    priority: 10
    prompt: {say: "Your ticket is {ticket:digits}."}
  support: {type: queue, queue: support}
"""


def bench_with(tmp_path: Path, queue_extra: str = "",
               tickets: TicketBook | None = None) -> Bench:
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(FLOW))
    (tmp_path / "ivr.yaml").write_text(CONFIG % queue_extra)
    config = load_config(tmp_path / "ivr.yaml")
    flow = load_flow(tmp_path / "flow.yaml", known_queues=config.queues)
    ids = itertools.count(1)
    core = Core(config, flow, files_for=files_for, music_on_hold="moh.wav", now=0.0,
                wall_offset=1_800_000_000.0, beep="beep.wav", new_id=lambda: f"c{next(ids)}",
                tickets=tickets)
    return Bench(core)


def saved_tickets(bench: Bench) -> dict[str, Ticket]:
    """The last version of each ticket the core asked the store to write."""
    return {fx.ticket.number: fx.ticket for fx in bench.effects if isinstance(fx, m.SaveTicket)}


def agent_call(bench: Bench, agent: str) -> str:
    leg = bench.ringing()[agent]
    bench.answer(leg)
    return leg


def test_a_ticket_opens_at_answer_climbs_with_star_9_and_keeps_the_disposition(
        tmp_path: Path) -> None:
    bench = bench_with(tmp_path)
    leg = bench.incoming(caller=CALLER)
    assert list(bench.ringing()) == ["anna"]
    anna = agent_call(bench, "anna")
    record = bench.record_of(leg)
    assert (record.ticket, record.ticket_seq) == ("1001", 1)
    ticket = saved_tickets(bench)["1001"]
    assert (ticket.customer, ticket.status, ticket.level, ticket.agent) == (
        CALLER, "open", 1, "anna")

    bench.key(anna, "*9")  # anna escalates: lia (level 2) is rung, anna wraps up
    lia = agent_call(bench, "lia")
    ticket = saved_tickets(bench)["1001"]
    assert (ticket.status, ticket.level, ticket.agent) == ("escalated", 2, "lia")
    assert bench.record_of(leg).ticket_seq == 1  # still the ticket's first call

    bench.key(lia, "*2")  # callback: does not resolve
    assert bench.record_of(leg).disposition == "2"
    ticket = saved_tickets(bench)["1001"]
    assert ticket.status == "escalated"
    assert [(e.kind, e.agent, e.level) for e in ticket.history] == [
        ("call", "anna", 1), ("escalate", "anna", 2), ("call", "lia", 2),
        ("disposition", "lia", 2)]
    bench.end(leg)
    bench.settle()
    assert bench.outcomes() == {"c1": "completed"}
    assert bench.core.problems() == []


def test_a_repeat_caller_hears_the_ticket_and_starts_at_its_level(tmp_path: Path) -> None:
    book = TicketBook()
    book.load([Ticket("1042", CALLER, "escalated", 2, "support", "lia", 1.0, 2.0, calls=1)])
    bench = bench_with(tmp_path, tickets=book)
    leg = bench.incoming(caller=CALLER)
    assert bench.legs[leg].playing == ("say:Your ticket is", "digits:1042", "say:.")
    bench.prompt_done(leg)
    assert list(bench.ringing()) == ["lia"]  # level 1 (anna) is not offered the call
    agent_call(bench, "lia")
    record = bench.record_of(leg)
    assert (record.ticket, record.ticket_seq) == ("1042", 2)
    assert saved_tickets(bench)["1042"].calls == 2
    other = bench.incoming(caller="3339999999")  # no ticket: the ordinary queue, level 1
    assert bench.core.calls[bench.record_of(other).call_id].session.variables["ticket"] == ""
    assert bench.core.problems() == []


def test_a_resolving_disposition_in_wrap_up_by_phone_ends_a_held_wrap_up(
        tmp_path: Path) -> None:
    bench = bench_with(tmp_path, "require_disposition: true\n    disposition_wait: 60")
    leg = bench.incoming(caller=CALLER)
    agent_call(bench, "anna")
    bench.end(leg)
    bench.settle()
    bench.tick(10)  # past wrap_up (5 s): still held, no disposition yet
    assert bench.core.router.agents["anna"].state == "wrap_up"
    phone = bench.incoming(caller="anna", called="*1", source="192.0.2.10")
    assert bench.legs[phone].playing == ("say:Outcome recorded.",)
    assert bench.core.router.agents["anna"].state == "available"
    assert bench.records["c1"].disposition == "1"
    ticket = saved_tickets(bench)["1001"]
    assert (ticket.status, ticket.closed_at) == ("resolved", bench.core.wall(10.0))
    assert bench.core.ticket_book.lookup(CALLER) is None
    assert bench.core.problems() == []


def test_a_held_wrap_up_ends_at_the_limit_without_a_disposition(tmp_path: Path) -> None:
    bench = bench_with(tmp_path, "require_disposition: true\n    disposition_wait: 60")
    leg = bench.incoming(caller=CALLER)
    agent_call(bench, "anna")
    bench.end(leg)
    bench.settle()
    bench.tick(59)
    assert bench.core.router.agents["anna"].state == "wrap_up"
    bench.tick(1)
    assert bench.core.router.agents["anna"].state == "available"
    assert bench.records["c1"].disposition is None


def test_an_unknown_code_or_a_stranger_changes_nothing(tmp_path: Path) -> None:
    bench = bench_with(tmp_path)
    leg = bench.incoming(caller=CALLER)
    anna = agent_call(bench, "anna")
    bench.key(anna, "*7")
    assert bench.record_of(leg).disposition is None
    assert bench.incoming(caller="mallory", called="*1", source="192.0.2.99") == ""  # 403
    assert bench.record_of(leg).disposition is None
    assert saved_tickets(bench)["1001"].status == "open"


ACCOUNT_FLOW = """
flow: account
languages: [en]
start: account
nodes:
  account:
    type: collect
    prompt: {say: "Your customer number."}
    variable: account
    min_length: 4
    max_length: 4
    next: support
    on_failure: support
  support: {type: queue, queue: support}
"""


def test_a_keyed_account_number_names_the_customer(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(ACCOUNT_FLOW))
    (tmp_path / "ivr.yaml").write_text(CONFIG % "" + "tickets: {customer_variable: account}\n")
    config = load_config(tmp_path / "ivr.yaml")
    flow = load_flow(tmp_path / "flow.yaml", known_queues=config.queues)
    bench = Bench(Core(config, flow, files_for=files_for, music_on_hold="moh.wav", now=0.0,
                       new_id=lambda: "c1"))
    leg = bench.incoming(caller="")  # withheld, but the account is known
    bench.prompt_done(leg)
    bench.key(leg, "4321")
    agent_call(bench, "anna")
    assert saved_tickets(bench)["1001"].customer == "4321"
    assert bench.record_of(leg).ticket == "1001"


def test_dispositions_are_in_the_queue_log_and_counted_by_the_metrics(tmp_path: Path) -> None:
    bench = bench_with(tmp_path)
    leg = bench.incoming(caller=CALLER)
    anna = agent_call(bench, "anna")
    bench.key(anna, "*1")
    rows = [row for fx in bench.effects if isinstance(fx, m.SaveQueueEvents)
            for row in fx.rows if row.kind == "disposition"]
    assert [(r.queue, r.call_id, r.agent, dict(r.detail)) for r in rows] == [
        ("support", "c1", "anna", {"code": "1", "label": "resolved", "resolves": True,
                                   "ticket": "1001", "first_call": True})]
    assert bench.record_of(leg).disposition == "1"
    registry = CollectorRegistry()
    metrics = Metrics(registry, process=False)
    for r in rows:
        metrics.queue_event(r.kind, r.queue, r.at, r.detail)
    assert registry.get_sample_value("ivr_dispositions_total",
                                     {"queue": "support", "disposition": "resolved"}) == 1
    assert registry.get_sample_value("ivr_tickets_resolved_first_call_total",
                                     {"queue": "support"}) == 1

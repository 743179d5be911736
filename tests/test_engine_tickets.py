"""A flow tests the caller's ticket: branch on ``ticket: open|none`` and ``ticket_level``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flow import DocumentError, load_flow
from ivr.simulate import Simulation

FLOW = """
flow: tickets
languages: [en]
start: known
nodes:
  known:
    type: branch
    cases:
      - when: {ticket: open, ticket_level: 2}
        next: level2
      - when: {ticket: open}
        next: owner
      - when: {ticket: none, caller: "333[0-9]+"}
        next: new
    default: other
  level2: {type: queue, queue: support, priority: 20}
  owner: {type: queue, queue: support, priority: 10}
  new: {type: queue, queue: sales}
  other: {type: hangup}
"""


def ticket(status: str, level: str) -> dict[str, str]:
    return {"ticket": "1042", "ticket_status": status, "ticket_level": level,
            "ticket_queue": "support"}


@pytest.mark.parametrize(("variables", "path"), [
    (ticket("escalated", "2"), "known[case 1] > level2"),
    (ticket("open", "1"), "known[case 2] > owner"),
    (ticket("", ""), "known[case 3] > new"),  # the switchboard's "no open ticket"
    ({}, "known[case 3] > new"),                # a tool that sets no ticket variables
])
def test_branch_on_the_callers_ticket(tmp_path: Path, variables: dict[str, str],
                                      path: str) -> None:
    (tmp_path / "f.yaml").write_text(FLOW)
    flow = load_flow(tmp_path / "f.yaml", known_queues=("support", "sales"))
    result = Simulation(flow, caller="3331234567", variables=variables).run([])
    assert result.path == path


def test_a_ticket_test_that_is_not_one_is_located(tmp_path: Path) -> None:
    bad = FLOW.replace("{ticket: open}", "{ticket: maybe}").replace(
        "ticket_level: 2}", "ticket_level: 9}")
    (tmp_path / "f.yaml").write_text(bad)
    with pytest.raises(DocumentError) as err:
        load_flow(tmp_path / "f.yaml", known_queues=("support", "sales"))
    assert str(err.value).splitlines() == [
        f"{tmp_path / 'f.yaml'}:9:44: nodes.known.cases[0].when.ticket_level: must be at most 5, "
        "got 9",
        f"{tmp_path / 'f.yaml'}:11:24: nodes.known.cases[1].when.ticket: 'maybe' is not one of "
        "open, none"]

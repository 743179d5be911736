"""The flow's sms node: loaded and checked, and the engine asks for a text to the caller with
the call's variables filled in, then goes on at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.engine import CallSession, HangupCall, SendSms
from ivr.flow import DocumentError, Sms, load_flow

FLOW = """
flow: t
start: confirm
nodes:
  confirm:
    type: sms
    text: "Ticket {ticket}: we call you back on {caller}."
    next: bye
  bye:
    type: hangup
"""


def test_the_node_texts_the_filled_in_text_then_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(FLOW)
    flow = load_flow(path)
    assert isinstance(flow.nodes["confirm"], Sms)
    session = CallSession(flow, "c1", caller="+393331234567")
    session.variables["ticket"] = "T-2026-0042"  # as the driver sets it before start
    actions = session.start(0.0)
    assert SendSms("Ticket T-2026-0042: we call you back on +393331234567.") in actions
    assert actions[-1] == HangupCall("flow_end")
    assert session.path_text() == "confirm > bye"


@pytest.mark.parametrize(("node", "message"), [
    ("{type: sms, next: bye}", "text"),
    ("{type: sms, text: hi}", "next"),
    ("{type: sms, text: 'hi', next: bye, to: '+39333'}", "to"),
    ("{type: sms, text: '{nosuch}', next: bye}", "nosuch"),
])
def test_bad_sms_nodes_are_refused(tmp_path: Path, node: str, message: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(f"flow: t\nstart: s\nnodes:\n  s: {node}\n  bye: {{type: hangup}}\n")
    with pytest.raises(DocumentError) as err:
        load_flow(path)
    assert message in str(err.value)

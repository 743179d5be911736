"""End to end: a night switch on a serial adapter's DCD line closes the office for the calls
that follow, and opening it again reopens it; a lamp on DTR lights while no agent is logged in.

The adapter is a network serial server (RFC 2217) the test runs, whose DCD line the test sets as
a key on the front of the box would; the switchboard opens it by its rfc2217:// URL exactly as it
would open /dev/ttyUSB0. Calls meet tests/flows_e2e/override.yaml's hours node, open around the
clock unless the 'office' switch is forced.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.cli import main
from tests.e2e import (
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_sip_stack,
    wait_until,
)
from tests.support.rfc2217_adapter import Rfc2217Adapter

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
FLOWS = Path(__file__).resolve().parent / "flows_e2e"


@pytest.fixture
def adapter() -> Iterator[Rfc2217Adapter]:
    with Rfc2217Adapter() as adapter:
        yield adapter


def _call(board: Switchboard, tmp_path: Path, number: str) -> dict[str, Any]:
    caller = peer(tmp_path, f"{number}-{board.sip_port}", "caller", free_udp_port(),
                  "--user", number, "--target", board.uri, "--duration", "20").start()
    assert caller.wait_exit(25) == 0
    return next(r for r in board.records() if str(r["caller"]) == number)


def test_the_hours_node_follows_the_night_switch(tmp_path: Path,
                                                 adapter: Rfc2217Adapter) -> None:
    require_sip_stack()
    devices = f"""
devices:
  night:
    kind: night_switch
    url: "{adapter.url}"
    line: dcd
    override: office
    debounce: 0.1
"""
    board = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                        agents={"anna": free_udp_port()}, flow=FLOWS / "override.yaml",
                        extra_config=devices).start()
    try:
        board.wait_for_metric("ivr_device_up", {"device": "night"}, value=1)
        board.wait_for_metric("ivr_night_switch_on", {"device": "night"}, value=0)
        assert _call(board, tmp_path, "200")["ivr_path"] == "who[default] > hours[open] > open"

        adapter.set_line("cd", True)
        board.wait_for_log("night switch night turned on: hours override office set to closed")
        board.wait_for_metric("ivr_night_switch_on", {"device": "night"}, value=1)
        assert _call(board, tmp_path, "201")["ivr_path"] == (
            "who[default] > hours[closed] > closed")

        adapter.set_line("cd", False)
        board.wait_for_log("night switch night turned off: hours override office set to auto")
        assert _call(board, tmp_path, "202")["ivr_path"] == "who[default] > hours[open] > open"

        adapter.unplug()
        board.wait_for_metric("ivr_device_up", {"device": "night"}, value=0)
        adapter.replug()
        board.wait_for_metric("ivr_device_up", {"device": "night"}, value=1)
    finally:
        assert board.stop() == 0, board.log_tail()
    text = board.log_path.read_text()
    assert "Traceback" not in text, board.log_tail()
    assert re.search(r"device night \(night_switch\) is down at rfc2217://", text)


def test_the_lamp_lights_while_no_agent_is_logged_in(tmp_path: Path) -> None:
    require_sip_stack()
    with Rfc2217Adapter() as adapter:
        devices = f"""
devices:
  lamp: {{kind: lamp, url: "{adapter.url}", line: dtr, no_agents: true}}
"""
        board = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                            agents={"anna": free_udp_port()}, extra_config=devices).start()
        config = str(tmp_path / "ivr.yaml")
        try:
            board.wait_for_metric("ivr_device_up", {"device": "lamp"}, value=1)
            wait_until(lambda: adapter.outputs.get("dtr") is False or None, "lamp off")
            assert main(["agent", "logout", "anna", "--config", config]) == 0
            board.wait_for_log("lamp lamp on: no agent logged in")
            wait_until(lambda: adapter.outputs.get("dtr") is True or None, "lamp on")
            assert main(["agent", "login", "anna", "--config", config]) == 0
            board.wait_for_log("lamp lamp off")
            wait_until(lambda: adapter.outputs.get("dtr") is False or None, "lamp off again")
        finally:
            assert board.stop() == 0, board.log_tail()

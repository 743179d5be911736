"""End to end: a flow's sms node texts the caller through a modem on a serial port.

The modem is the responder of tests/test_modem.py on a real pseudo-terminal; the switchboard
opens it by its device name, runs the AT dialogue with the SIM's PIN and sends the text with
the number that called and the ticket-style variables filled in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import Switchboard, free_tcp_port, free_udp_port, peer, require_sip_stack
from tests.test_modem import FakeModem

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FLOW = """
flow: texts
languages: [en]
start: confirm
nodes:
  confirm:
    type: sms
    text: "Thank you for calling, {caller}: we call you back today."
    next: bye
  bye: {type: hangup, prompt: {say: "Goodbye."}}
"""


def test_the_caller_gets_the_flows_text_through_the_modem(tmp_path: Path) -> None:
    require_sip_stack()
    link = tmp_path / "ttyGSM"
    fake = FakeModem(link, pin="2468")
    (tmp_path / "texts.yaml").write_text(FLOW)
    devices = f"""
devices:
  gsm: {{kind: modem, url: "{link}", pin: "2468", texts_per_number: 1}}
"""
    board = Switchboard(tmp_path, free_udp_port(), free_tcp_port(),
                        agents={"anna": free_udp_port()}, flow=tmp_path / "texts.yaml",
                        extra_config=devices).start()
    try:
        board.wait_for_metric("ivr_device_up", {"device": "gsm"}, value=1)
        for number in ("3331234567", "3331234567"):  # the second is over the limit
            caller = peer(tmp_path, f"{number}-{board.sip_port}-{len(board.records())}",
                          "caller", free_udp_port(), "--user", number, "--target", board.uri,
                          "--duration", "20").start()
            assert caller.wait_exit(25) == 0
        assert fake.got_text.wait(20)
        board.wait_for_metric("ivr_sms_total", {"result": "sent"}, value=1)
        board.wait_for_log("no text to the caller: this caller had their texts for today")
    finally:
        board.stop()
        fake.stop()
    assert fake.texts == [("3331234567", "Thank you for calling, 3331234567: we call you back "
                                         "today.")]
    assert "2468" not in board.log_path.read_text()

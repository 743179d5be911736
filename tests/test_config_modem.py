"""ivr.yaml's modem keys (PIN or PIN file, rate limits) and supervisors' sms numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import Config, load_config
from ivr.yamlsrc import DocumentError
from tests.driver_bench import CONFIG


def _load(tmp_path: Path, extra: str) -> Config:
    (tmp_path / "flow.yaml").write_text("flow: t\nlanguages: [en]\nstart: bye\nnodes:\n"
                                        "  bye: {type: hangup}\n")
    (tmp_path / "ivr.yaml").write_text(CONFIG.format(lines=2, strategy="ring_all", dial_out="")
                                       + extra)
    return load_config(tmp_path / "ivr.yaml")


def test_a_modem_with_a_pin_file_and_limits_and_a_supervisor_to_text(tmp_path: Path) -> None:
    (tmp_path / "sim.pin").write_text("4321\n")
    config = _load(tmp_path, """\
devices:
  gsm: {kind: modem, url: /dev/ttyUSB2, pin_file: sim.pin, texts_per_number: 2}
supervisors:
  laura: {uri: "sip:laura@127.0.0.1", queues: [support], sms: "+393331234567"}
""")
    gsm = config.devices["gsm"]
    assert (gsm.kind, gsm.pin, gsm.texts_per_number, gsm.texts_per_day) == ("modem", "4321", 2,
                                                                            100)
    assert "4321" not in repr(gsm)
    assert config.supervisors["laura"].sms == "+393331234567"


@pytest.mark.parametrize(("extra", "message"), [
    ("devices:\n  gsm: {kind: modem, url: 'loop://', pin: 12}\n",
     "devices.gsm.pin: a PIN is 4 to 8 digits"),
    ("devices:\n  gsm: {kind: modem, url: 'loop://', pin_file: nope.pin}\n",
     "PIN file"),
    ("devices:\n  l: {kind: lamp, url: 'loop://', line: rts, texts_per_day: 3}\n",
     "devices.l.texts_per_day: 'texts_per_day' is not a key of a lamp device"),
    ("supervisors:\n  laura: {uri: 'sip:laura@127.0.0.1', queues: [support], sms: '333'}\n",
     "is not a mobile number in E.164"),
])
def test_modem_and_sms_problems(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(DocumentError) as err:
        _load(tmp_path, extra)
    assert message in str(err.value)

"""ivr.yaml's devices section: the keys each kind takes, located problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import Device, load_config
from ivr.yamlsrc import DocumentError
from tests.driver_bench import CONFIG


def _load(tmp_path: Path, devices: str) -> dict[str, Device]:
    (tmp_path / "flow.yaml").write_text("flow: t\nlanguages: [en]\nstart: bye\nnodes:\n"
                                        "  bye: {type: hangup}\n")
    (tmp_path / "ivr.yaml").write_text(CONFIG.format(lines=2, strategy="ring_all", dial_out="")
                                       + "devices:\n" + devices)
    return load_config(tmp_path / "ivr.yaml").devices


def test_devices_with_their_defaults(tmp_path: Path) -> None:
    devices = _load(tmp_path, "  night: {kind: night_switch, url: /dev/ttyUSB0, line: dcd}\n"
                              "  lamp: {kind: lamp, url: 'loop://', line: dtr, "
                              "longest_wait: 90, queues: [support]}\n")
    assert devices["night"] == Device("night", "night_switch", "/dev/ttyUSB0", line="dcd")
    assert devices["lamp"] == Device("lamp", "lamp", "loop://", line="dtr", longest_wait=90.0,
                                     queues=("support",))


@pytest.mark.parametrize(("devices", "message"), [
    ("  l: {kind: lamp, url: 'loop://', line: cts}\n",
     "devices.l.line: a lamp uses line rts, dtr, not cts"),
    ("  n: {kind: night_switch, url: 'loop://'}\n",
     "devices.n: a night_switch needs 'line': one of cts, dsr, dcd"),
    ("  n: {kind: night_switch, url: 'loop://', line: cts, no_agents: true}\n",
     "devices.n.no_agents: 'no_agents' is not a key of a night_switch device"),
    ("  l: {kind: lamp, url: 'loop://', line: rts, queues: [nope]}\n",
     "devices.l.queues[0]: unknown queue 'nope'"),
    ("  x: {kind: fax, url: 'loop://'}\n",
     "devices.x.kind: 'fax' is not one of night_switch, lamp, modem"),
])
def test_device_problems(tmp_path: Path, devices: str, message: str) -> None:
    with pytest.raises(DocumentError) as caught:
        _load(tmp_path, devices)
    assert message in str(caught.value)

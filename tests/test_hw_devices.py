"""Serial devices on pyserial's loop:// port: its CTS follows its RTS and its DSR its DTR, so a
test flips the night switch's input by driving the output of the same port object; unplug is
the port closed under the device (reads raise SerialException) and its URL refusing to open."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest
import serial

from hw.devices import Lamp, LampInputs, NightSwitch, lamp_reasons
from hw.serialdev import SerialDevice
from ivr.config import Device
from tests.support.rfc2217_adapter import Rfc2217Adapter

WAIT = 10.0


class Socket:
    """A loop:// port that can be unplugged and plugged back."""

    def __init__(self) -> None:
        self.port: Any = None
        self.plugged = True
        self.opened = threading.Event()

    def open(self, url: str) -> Any:
        if not self.plugged:
            raise serial.SerialException(f"could not open port {url}: No such file or directory")
        self.port = serial.serial_for_url("loop://", timeout=0.1)
        self.opened.set()
        return self.port

    def unplug(self) -> None:
        self.plugged = False
        self.opened.clear()
        self.port.close()

    def replug(self) -> None:
        self.plugged = True


def _events() -> tuple[queue.Queue[tuple[str, bool]], Any]:
    got: queue.Queue[tuple[str, bool]] = queue.Queue()
    return got, lambda name, value: got.put((name, value))


def test_night_switch_reports_the_key_and_survives_unplug() -> None:
    socket = Socket()
    switches, on_switch = _events()
    ups, on_up = _events()
    device = Device("night", "night_switch", "/dev/ttyUSB9", line="cts", debounce=0.0)
    switch = NightSwitch(device, on_switch, on_up=on_up, open_port=socket.open)
    switch._backoff = (0.01, 0.05)
    switch.start()
    try:
        assert ups.get(timeout=WAIT) == ("night", True)
        assert switches.get(timeout=WAIT) == ("night", True)  # pyserial raises RTS on open
        socket.port.rts = False
        assert switches.get(timeout=WAIT) == ("night", False)
        socket.unplug()
        assert ups.get(timeout=WAIT) == ("night", False)
        socket.replug()
        assert ups.get(timeout=WAIT) == ("night", True)
        assert switches.get(timeout=WAIT) == ("night", True)  # read again after a replug
    finally:
        switch.stop()


def test_night_switch_debounces_with_the_clock() -> None:
    now = [0.0]
    switches, on_switch = _events()
    device = Device("night", "night_switch", "loop://", line="dsr", debounce=0.5)
    switch = NightSwitch(device, on_switch, clock=lambda: now[0])
    port = serial.serial_for_url("loop://")
    switch.poll(port)
    assert switches.empty()
    now[0] = 0.5
    switch.poll(port)
    assert switches.get_nowait() == ("night", True)
    port.dtr = False  # a bounce shorter than the debounce is not a change
    now[0] = 0.6
    switch.poll(port)
    port.dtr = True
    now[0] = 0.7
    switch.poll(port)
    now[0] = 1.5
    switch.poll(port)
    assert switches.empty()


def test_lamp_follows_its_rules() -> None:
    socket = Socket()
    lamps, on_lamp = _events()
    ups, on_up = _events()
    inputs = [LampInputs({"support": 0}, {"support": 0.0}, agents_logged_in=1)]
    device = Device("lamp", "lamp", "loop://", line="rts", callers_waiting=2)
    lamp = Lamp(device, lambda: inputs[0], on_up=on_up, on_lamp=on_lamp, open_port=socket.open,
                poll_every=0.01)
    lamp._backoff = (0.01, 0.05)
    lamp.start()
    try:
        assert lamps.get(timeout=WAIT) == ("lamp", False)
        assert socket.port.cts is False  # RTS is off: CTS of loop:// follows it
        inputs[0] = LampInputs({"support": 3}, {"support": 40.0}, agents_logged_in=1)
        assert lamps.get(timeout=WAIT) == ("lamp", True)
        assert socket.port.cts is True
        socket.unplug()  # nothing changes in its rules: the lamp still notices
        assert ups.get(timeout=WAIT) == ("lamp", True)
        assert ups.get(timeout=WAIT) == ("lamp", False)
        socket.replug()
        assert ups.get(timeout=WAIT) == ("lamp", True)
        assert lamps.get(timeout=WAIT) == ("lamp", True)  # set again on the new port
        assert socket.port.cts is True
    finally:
        lamp.stop()


@pytest.mark.parametrize(("settings", "inputs", "reasons"), [
    ({"callers_waiting": 2}, LampInputs({"a": 2}), []),
    ({"callers_waiting": 2}, LampInputs({"a": 2, "b": 1}), ["3 callers waiting"]),
    ({"callers_waiting": 2, "queues": ("a",)}, LampInputs({"a": 2, "b": 1}), []),
    ({"longest_wait": 60.0}, LampInputs({"a": 1}, {"a": 61.0}), ["a caller waiting 61 s"]),
    ({"no_agents": True}, LampInputs(agents_logged_in=0), ["no agent logged in"]),
    ({"no_agents": True}, LampInputs(agents_logged_in=1), []),
    ({"gateway_down": True}, LampInputs(gateways_down=("fxo",)),
     ["gateway fxo not answering"]),
    ({}, LampInputs({"a": 9}, {"a": 999.0}, 0, ("fxo",)), []),
])
def test_lamp_reasons(settings: dict[str, Any], inputs: LampInputs, reasons: list[str]) -> None:
    assert lamp_reasons(Device("lamp", "lamp", "loop://", line="dtr", **settings),
                        inputs) == reasons


def test_a_port_that_never_opens_is_reported_down_once_and_retried() -> None:
    tries: queue.Queue[str] = queue.Queue()
    ups, on_up = _events()

    def refuse(url: str) -> Any:
        tries.put(url)
        raise serial.SerialException("could not open port")

    device = SerialDevice("modem", "/dev/ttyUSB7", on_up=on_up, open_port=refuse,
                          backoff=(0.01, 0.02))
    device.start()
    try:
        for _ in range(3):
            tries.get(timeout=WAIT)
        assert ups.get_nowait() == ("modem", False)
        assert ups.empty()
    finally:
        device.stop()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyserial 3.5 setDaemon
def test_night_switch_over_rfc2217_survives_the_adapter_going_away() -> None:
    switches, on_switch = _events()
    ups, on_up = _events()
    with Rfc2217Adapter() as adapter:
        device = Device("night", "night_switch", adapter.url, line="dcd", debounce=0.0)
        switch = NightSwitch(device, on_switch, on_up=on_up)
        switch._backoff = (0.05, 0.1)
        switch.start()
        try:
            assert ups.get(timeout=WAIT) == ("night", True)
            assert switches.get(timeout=WAIT) == ("night", False)
            adapter.set_line("cd", True)
            assert switches.get(timeout=WAIT) == ("night", True)
            adapter.unplug()
            assert ups.get(timeout=WAIT) == ("night", False)
            adapter.replug()
            assert ups.get(timeout=WAIT) == ("night", True)
            assert switches.get(timeout=WAIT) == ("night", True)
        finally:
            switch.stop()

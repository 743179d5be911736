"""ivr hw list and ivr hw test: what a technician reads at the box."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import serial

from hw.tools import Port, blink, exercise, format_ports
from ivr.cli import main
from ivr.config import Device
from tests.driver_bench import CONFIG


def test_ports_show_usb_ids_stable_names_and_the_devices_on_them() -> None:
    ports = [Port("/dev/ttyUSB0", "FT232R USB UART", "0403:6001", "A10K1ABC",
                  ("/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K1ABC-if00-port0",)),
             Port("/dev/ttyS0", "", "", "")]
    devices = {
        "night": Device("night", "night_switch",
                        "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K1ABC-if00-port0",
                        line="cts"),
        "lamp": Device("lamp", "lamp", "/dev/ttyUSB3", line="rts"),
        "remote": Device("remote", "lamp", "rfc2217://192.0.2.9:2217", line="dtr"),
    }
    assert format_ports(ports, devices) == (
        "/dev/ttyUSB0  USB 0403:6001 serial A10K1ABC FT232R USB UART  <- night (night_switch)\n"
        "    /dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K1ABC-if00-port0\n"
        "/dev/ttyS0  not USB\n"
        "MISSING /dev/ttyUSB3  <- lamp (lamp): plug the adapter in, or correct its url\n")
    assert format_ports([], {}) == "no serial ports found\n"


def test_the_night_switch_test_reads_every_input_line() -> None:
    out = io.StringIO()
    device = Device("night", "night_switch", "loop://", line="dsr", override="office")
    assert exercise(device, out) == 0
    assert out.getvalue() == ("night: the key on DSR is on: hours override 'office' closed\n"
                              "    lines: CTS on, DSR on, DCD on\n")


def test_blink_leaves_the_line_off() -> None:
    port = serial.serial_for_url("loop://")
    blink(port, "rts", 2, 0.0)
    assert port.cts is False


def test_a_port_that_cannot_be_opened_says_so() -> None:
    out = io.StringIO()
    device = Device("lamp", "lamp", "/dev/ttyUSB-none", line="rts")
    assert exercise(device, out) == 1
    assert out.getvalue().startswith("lamp: cannot use /dev/ttyUSB-none: ")


def test_cli_hw_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "flow.yaml").write_text("flow: t\nlanguages: [en]\nstart: bye\nnodes:\n"
                                        "  bye: {type: hangup}\n")
    (tmp_path / "ivr.yaml").write_text(
        CONFIG.format(lines=2, strategy="ring_all", dial_out="") + "devices:\n"
        "  night: {kind: night_switch, url: 'loop://', line: cts}\n")
    config = str(tmp_path / "ivr.yaml")
    assert main(["hw", "test", "night", "--config", config]) == 0
    assert "night: the key on CTS is on: hours override 'night' closed" in capsys.readouterr().out
    assert main(["hw", "test", "nite", "--config", config]) == 2
    assert "no device 'nite'" in capsys.readouterr().err

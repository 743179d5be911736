"""What ``ivr hw list`` and ``ivr hw test NAME`` do: for a technician at the box.

``list`` shows the serial ports present (with their USB ids, to tell two adapters apart) and
which configured device names each; ``test`` opens one configured device and exercises it: reads
a night switch's key, blinks a lamp. Kinds register their test in :data:`TESTERS` (the modem's
sends a test SMS).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from hw.devices import INPUT_LINES, read_line, set_line
from hw.serialdev import PORT_ERRORS, OpenPort, open_url

if TYPE_CHECKING:
    from ivr.config import Device

__all__ = ["TESTERS", "Port", "blink", "exercise", "format_ports", "input_lines", "present_ports"]


@dataclass(frozen=True)
class Port:
    """A serial port present on the machine."""

    device: str
    """Its path, e.g. /dev/ttyUSB0."""
    description: str
    usb_id: str
    """VID:PID in hex, '' for a port that is not USB."""
    serial_number: str
    links: tuple[str, ...] = ()
    """Stable names pointing at it (/dev/serial/by-id/...): better in ivr.yaml than ttyUSB0,
    whose number changes with the order adapters are found in."""


def present_ports(by_id: str = "/dev/serial/by-id") -> list[Port]:
    """The serial ports present, USB ones first."""
    from serial.tools import list_ports

    links: dict[str, list[str]] = {}
    if os.path.isdir(by_id):
        for name in sorted(os.listdir(by_id)):
            path = os.path.join(by_id, name)
            links.setdefault(os.path.realpath(path), []).append(path)
    ports = []
    for info in list_ports.comports():
        usb = f"{info.vid:04x}:{info.pid:04x}" if info.vid is not None else ""
        description = info.description if info.description not in (None, "n/a") else ""
        ports.append(Port(info.device, description or "", usb, info.serial_number or "",
                          tuple(links.get(os.path.realpath(info.device), ()))))
    return sorted(ports, key=lambda p: (not p.usb_id, p.device))


def format_ports(ports: Iterable[Port], devices: Mapping[str, Device]) -> str:
    """One line per port (and its stable names), with the configured devices on it; then
    configured devices on local ports that are not there."""
    lines = []
    seen: set[str] = set()
    for port in ports:
        names = {port.device, *port.links}
        seen |= names | {os.path.realpath(port.device)}
        used = [f"{d.name} ({d.kind})" for d in devices.values()
                if d.url in names or os.path.realpath(d.url) == port.device]
        usb = f"USB {port.usb_id}" if port.usb_id else "not USB"
        serial_no = f" serial {port.serial_number}" if port.serial_number else ""
        desc = f" {port.description}" if port.description else ""
        line = f"{port.device}  {usb}{serial_no}{desc}"
        lines.append(line + (f"  <- {', '.join(used)}" if used else ""))
        lines += [f"    {link}" for link in port.links]
    if not lines:
        lines.append("no serial ports found")
    for d in devices.values():
        if d.url.startswith("/") and d.url not in seen and os.path.realpath(d.url) not in seen:
            lines.append(f"MISSING {d.url}  <- {d.name} ({d.kind}): plug the adapter in, or "
                         "correct its url")
    return "\n".join(lines) + "\n"


Tester = Callable[["Device", TextIO, OpenPort], int]


def _test_night_switch(device: Device, out: TextIO, open_port: OpenPort) -> int:
    port = open_port(device.url)
    try:
        lines = input_lines(port)
    finally:
        port.close()
    on = lines[device.line]
    state = device.when_on if on else device.when_off
    out.write(f"{device.name}: the key on {device.line.upper()} is {'on' if on else 'off'}: "
              f"hours override '{device.override}' {state}\n")
    out.write("    lines: " + ", ".join(f"{line.upper()} {'on' if value else 'off'}"
                                        for line, value in lines.items()) + "\n")
    return 0


def _test_lamp(device: Device, out: TextIO, open_port: OpenPort, blinks: int = 3,
               period: float = 0.5) -> int:
    port = open_port(device.url)
    try:
        out.write(f"{device.name}: blinking {device.line.upper()} {blinks} times\n")
        blink(port, device.line, blinks, period)
    finally:
        port.close()
    out.write(f"{device.name}: done, {device.line.upper()} left off (the switchboard sets it "
              "from its rules)\n")
    return 0


def blink(port: Any, line: str, times: int, period: float) -> None:
    """Turn output *line* on and off *times* times, *period* seconds each way."""
    pause = threading.Event()  # never set: a wait that is not a busy loop
    for _ in range(times):
        set_line(port, line, True)
        pause.wait(period)
        set_line(port, line, False)
        pause.wait(period)


TESTERS: dict[str, Tester] = {"night_switch": _test_night_switch, "lamp": _test_lamp}
"""Device kind -> its test: writes what it did to *out*, returns the exit status."""


def exercise(device: Device, out: TextIO, open_port: OpenPort = open_url) -> int:
    """Exercise *device*: 0 if it worked, 1 if its port cannot be used."""
    tester = TESTERS.get(device.kind)
    if tester is None:
        out.write(f"{device.name}: no test for a {device.kind} device\n")
        return 1
    try:
        return tester(device, out, open_port)
    except PORT_ERRORS as exc:
        out.write(f"{device.name}: cannot use {device.url}: {exc}\n")
        return 1


def input_lines(port: Any) -> dict[str, bool]:
    """Every input line of an open port, by our names."""
    return {line: read_line(port, line) for line in INPUT_LINES}

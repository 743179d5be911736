"""The night switch and the lamp (or buzzer): serial devices driven by control lines.

A **night switch** is a key or switch wired to an input line of a USB-serial adapter (CTS, DSR or
DCD, against RTS or DTR held high). While the key is on, an hours override (``when_on``, closed
by default) is in force; while off, ``when_off`` (auto: the opening hours). A change counts once
the line has held still for ``debounce`` seconds. An unplugged switch changes nothing: the
override stays as the key last set it until the adapter is back and read again.

A **lamp** (or buzzer) hangs on an output line (RTS or DTR, through a relay or a transistor): it
is on while any of its rules holds: more than ``callers_waiting`` callers waiting, a caller
waiting more than ``longest_wait`` seconds, no agent logged in, a gateway not answering. It
reads the state the switchboard publishes (:class:`LampInputs`), so it never asks the loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hw.serialdev import OpenPort, SerialDevice, open_url

if TYPE_CHECKING:
    from ivr.config import Device

__all__ = ["Lamp", "LampInputs", "NightSwitch", "lamp_reasons", "read_line", "set_line"]

log = logging.getLogger(__name__)

INPUT_LINES = {"cts": "cts", "dsr": "dsr", "dcd": "cd"}
"""Our names of the input lines -> pyserial's attributes."""
OUTPUT_LINES = ("rts", "dtr")
POLL_SWITCH = 0.05
"""Seconds between two looks at a switch's line."""
POLL_LAMP = 0.5
"""Seconds between two looks at the lamp's rules."""


def read_line(port: Any, line: str) -> bool:
    """The state of input *line* (cts, dsr or dcd) of an open port."""
    return bool(getattr(port, INPUT_LINES[line]))


def set_line(port: Any, line: str, on: bool) -> None:
    """Drive output *line* (rts or dtr) of an open port."""
    if line not in OUTPUT_LINES:
        raise ValueError(f"{line} is not an output line")
    setattr(port, line, on)


class NightSwitch(SerialDevice):
    """Reads a key on an input line; reports each debounced change with ``on_switch(name,
    on)``, and the first state read after each (re)open."""

    kind = "night_switch"

    def __init__(self, device: Device, on_switch: Callable[[str, bool], None], *,
                 on_up: Callable[[str, bool], None] | None = None,
                 open_port: OpenPort = open_url, clock: Callable[[], float] = time.monotonic):
        super().__init__(device.name, device.url, on_up=on_up, open_port=open_port, clock=clock)
        self.device = device
        self._on_switch = on_switch
        self._reported: bool | None = None
        self._candidate: bool | None = None
        self._since = 0.0

    def on_open(self, port: Any) -> None:
        # pyserial raises RTS and DTR on open: a plain key between one of them and the input.
        self._reported = None
        self._candidate = None

    def poll(self, port: Any) -> float:
        now = self._clock()
        state = read_line(port, self.device.line)
        if state != self._candidate:
            self._candidate, self._since = state, now
        if state != self._reported and now - self._since >= self.device.debounce:
            self._reported = state
            self._on_switch(self.name, state)
        return POLL_SWITCH


@dataclass(frozen=True)
class LampInputs:
    """What the lamp's rules look at: the switchboard's state as last published."""

    callers_waiting: Mapping[str, int] = field(default_factory=dict)
    """Queue -> callers waiting."""
    longest_wait: Mapping[str, float] = field(default_factory=dict)
    """Queue -> seconds the longest-waiting caller has waited."""
    agents_logged_in: int = 0
    gateways_down: tuple[str, ...] = ()
    """Trunks whose gateway does not answer OPTIONS."""


def lamp_reasons(device: Device, inputs: LampInputs) -> list[str]:
    """Why the lamp should be on now (empty: off), one short phrase per rule that holds."""
    queues = device.queues or tuple(inputs.callers_waiting)
    reasons = []
    waiting = sum(inputs.callers_waiting.get(q, 0) for q in queues)
    if device.callers_waiting and waiting > device.callers_waiting:
        reasons.append(f"{waiting} callers waiting")
    longest = max((inputs.longest_wait.get(q, 0.0) for q in queues), default=0.0)
    if device.longest_wait and longest > device.longest_wait:
        reasons.append(f"a caller waiting {longest:.0f} s")
    if device.no_agents and inputs.agents_logged_in == 0:
        reasons.append("no agent logged in")
    if device.gateway_down and inputs.gateways_down:
        reasons.append(f"gateway {', '.join(inputs.gateways_down)} not answering")
    return reasons


class Lamp(SerialDevice):
    """Drives an output line from its rules (:func:`lamp_reasons`) on what *read* returns
    (None: nothing known yet)."""

    kind = "lamp"

    def __init__(self, device: Device, read: Callable[[], LampInputs | None], *,
                 on_up: Callable[[str, bool], None] | None = None,
                 on_lamp: Callable[[str, bool], None] | None = None,
                 open_port: OpenPort = open_url, poll_every: float = POLL_LAMP):
        super().__init__(device.name, device.url, on_up=on_up, open_port=open_port)
        self.device = device
        self._read = read
        self._on_lamp = on_lamp
        self._poll_every = poll_every
        self.lit: bool | None = None

    def on_open(self, port: Any) -> None:
        self.lit = None  # a replugged adapter starts with its lines in any state: set it again

    def poll(self, port: Any) -> float:
        port.cts  # noqa: B018 - touch the port: else an idle lamp's unplug goes unnoticed
        inputs = self._read()
        if inputs is None:
            return self._poll_every  # no state published yet: the line stays as it is
        reasons = lamp_reasons(self.device, inputs)
        on = bool(reasons)
        if on != self.lit:
            set_line(port, self.device.line, on)
            if self.lit is not None or on:
                log.warning("lamp %s %s%s", self.name, "on: " if on else "off",
                            "; ".join(reasons))
            self.lit = on
            if self._on_lamp is not None:
                self._on_lamp(self.name, on)
        return self._poll_every

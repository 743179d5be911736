"""The serial devices' news in the core: a port up or down, a night switch turned.

A night switch sets the same hours override a flow's ``set_override`` node sets (kept in the
store, honoured by every hours node naming it), so a key on the front of the box and a
supervisor's phone code are two ways to the one switch: the last change wins. At start a key
at rest (off) leaves the override as the store kept it.
"""

from __future__ import annotations

import logging

from ivr.driver import messages as m
from ivr.driver.base import CoreBase

log = logging.getLogger("ivr.driver")


class Devices(CoreBase):
    def _device_message(self, msg: m.DeviceState | m.NightSwitchChanged, now: float) -> None:
        if isinstance(msg, m.DeviceState):
            self.device_up[msg.device] = msg.up
            return
        device = self.config.devices.get(msg.device)
        if device is None or device.kind != "night_switch":
            return
        old = self.night_switches.get(msg.device)
        self.night_switches[msg.device] = msg.on
        state = device.when_on if msg.on else device.when_off
        if old == msg.on:
            return  # read again after a replug: no change
        if old is None and (not msg.on or self.overrides.get(device.override, "auto") == state):
            # At start a key at rest leaves the override as it was (a phone code may have set
            # it); a key that is on applies.
            log.info("night switch %s is %s: hours override %s stays %s", msg.device,
                     "on" if msg.on else "off", device.override,
                     self.overrides.get(device.override, "auto"))
            return
        if state == "auto":
            self.overrides.pop(device.override, None)
        else:
            self.overrides[device.override] = state
        self._emit(m.SaveOverride(device.override, state, self.wall(now)))
        log.warning("night switch %s turned %s: hours override %s set to %s", msg.device,
                    "on" if msg.on else "off", device.override, state)

"""The core and the serial devices' messages: a port up or down, a night switch turned."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from ivr.driver import messages as m
from ivr.metrics import Metrics, Snapshot
from tests.driver_bench import Bench, make_bench

NIGHT = """
devices:
  night: {kind: night_switch, url: "loop://", line: cts, override: office}
  lamp: {kind: lamp, url: "loop://", line: rts, no_agents: true}
"""


def _bench(tmp_path: Path) -> Bench:
    return make_bench(tmp_path, config_extra=NIGHT)


def test_the_key_sets_and_clears_the_hours_override(tmp_path: Path) -> None:
    bench = _bench(tmp_path)
    fx = bench.send(m.NightSwitchChanged("night", on=True))
    assert bench.core.overrides == {"office": "closed"}
    assert [e for e in fx if isinstance(e, m.SaveOverride)] == [
        m.SaveOverride("office", "closed", bench.core.wall(bench.now))]
    fx = bench.send(m.NightSwitchChanged("night", on=False))
    assert bench.core.overrides == {}
    assert [(e.name, e.state) for e in fx if isinstance(e, m.SaveOverride)] == [
        ("office", "auto")]
    assert bench.core.snapshot(bench.now).night_switches == {"night": False}


def test_a_key_at_rest_at_start_keeps_an_override_a_phone_set(tmp_path: Path) -> None:
    bench = _bench(tmp_path)
    bench.core.overrides["office"] = "closed"
    assert not bench.send(m.NightSwitchChanged("night", on=False))
    assert bench.core.overrides == {"office": "closed"}


def test_the_same_state_read_after_a_replug_changes_nothing(tmp_path: Path) -> None:
    bench = _bench(tmp_path)
    bench.send(m.NightSwitchChanged("night", on=True))
    bench.core.overrides.pop("office")  # a phone code opened it meanwhile
    assert not bench.send(m.NightSwitchChanged("night", on=True))
    assert bench.core.overrides == {}


def test_devices_up_and_down_are_in_the_snapshot(tmp_path: Path) -> None:
    bench = _bench(tmp_path)
    bench.send(m.DeviceState("lamp", up=True))
    bench.send(m.DeviceState("night", up=False))
    assert bench.core.snapshot(bench.now).devices == {"lamp": True, "night": False}
    assert not bench.send(m.NightSwitchChanged("lamp", on=True))  # not a switch


def test_device_metrics() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, process=False)
    metrics.publish(Snapshot(devices={"lamp": True, "night": False},
                             night_switches={"night": True}))
    assert registry.get_sample_value("ivr_device_up", {"device": "lamp"}) == 1
    assert registry.get_sample_value("ivr_device_up", {"device": "night"}) == 0
    assert registry.get_sample_value("ivr_night_switch_on", {"device": "night"}) == 1

"""A gateway that answers OPTIONS with 503 takes no calls: it counts as unreachable."""

from __future__ import annotations

import logging

import pytest

from hw.gateway import GatewayMonitor, serving
from tests.support.sip_stub import GatewayStub


def _monitor(port: int, changes: list[tuple[str, bool]]) -> GatewayMonitor:
    return GatewayMonitor([("gw", "127.0.0.1", port)], timeout=2.0, local_host="127.0.0.1",
                          on_change=lambda name, up: changes.append((name, up)))


def test_503_is_unreachable_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    changes: list[tuple[str, bool]] = []
    with GatewayStub("503 Service Unavailable") as stub, \
            caplog.at_level(logging.INFO, logger="hw.gateway"):
        assert _monitor(stub.port, changes).check_all() == {"gw": False}
    assert changes == [("gw", False)]
    assert "unavailable: SIP 503 Service Unavailable" in caplog.text


def test_503_then_200_comes_back() -> None:
    changes: list[tuple[str, bool]] = []
    with GatewayStub("503 Service Unavailable") as stub:
        monitor = _monitor(stub.port, changes)
        monitor.check_all()
        stub.status = "200 OK"
        assert monitor.check_all() == {"gw": True}
    assert changes == [("gw", False), ("gw", True)]


def test_probe_gives_the_status_without_changing_state() -> None:
    with GatewayStub("503 Service Unavailable") as stub:
        monitor = _monitor(stub.port, [])
        assert monitor.probe() == {"gw": (503, "Service Unavailable")}
        assert monitor.state() == {}


@pytest.mark.parametrize(("code", "up"), [(200, True), (404, True), (500, True), (503, False)])
def test_serving(code: int, up: bool) -> None:
    assert serving(code) is up

"""Prometheus metrics of the switchboard.

The registry is passed in (never the global one). Counters move on the driver's thread when
things happen; gauges of current state are computed at scrape time from a snapshot the driver
publishes, so the HTTP thread never touches live call objects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Info, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ivr import __version__


@dataclass(frozen=True)
class Snapshot:
    """Immutable state published by the driver for scrapes."""

    calls_in_progress: int = 0
    callers_waiting: dict[str, int] = field(default_factory=dict)
    agents_by_state: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FlowInService:
    """The flow version new calls get, and when it was loaded (Unix seconds)."""

    name: str
    version: str
    loaded_at: float


class _StateCollector(Collector):
    def __init__(self, read: Callable[[], Snapshot]):
        self._read = read

    def collect(self) -> Iterable[Metric]:
        snap = self._read()
        yield GaugeMetricFamily("ivr_calls_in_progress", "Calls on the switchboard now.",
                                value=snap.calls_in_progress)
        waiting = GaugeMetricFamily("ivr_queue_callers_waiting",
                                    "Callers waiting in each queue now.", labels=["queue"])
        for queue, n in sorted(snap.callers_waiting.items()):
            waiting.add_metric([queue], n)
        yield waiting
        agents = GaugeMetricFamily("ivr_agents", "Agents by state now.", labels=["state"])
        for state, n in sorted(snap.agents_by_state.items()):
            agents.add_metric([state], n)
        yield agents


class _FlowCollector(Collector):
    def __init__(self, read: Callable[[], FlowInService | None]):
        self._read = read

    def collect(self) -> Iterable[Metric]:
        flow = self._read()
        info = GaugeMetricFamily("ivr_flow_info", "The flow version new calls get (value 1).",
                                 labels=["flow", "version"])
        loaded = GaugeMetricFamily("ivr_flow_last_reload_timestamp_seconds",
                                   "When the flow in service was last loaded and checked "
                                   "(start or successful reload), Unix seconds.")
        if flow is not None:
            info.add_metric([flow.name, flow.version], 1)
            loaded.add_metric([], flow.loaded_at)
        yield info
        yield loaded


class Metrics:
    """The switchboard's metrics on one registry.

        >>> m = Metrics(CollectorRegistry())
        >>> m.call_ended("loopback", "completed")
    """

    def __init__(self, registry: CollectorRegistry, process: bool = True):
        self.registry = registry
        self._lock = threading.Lock()
        self._snapshot = Snapshot()
        self.calls = Counter("ivr_calls", "Calls ended, by trunk and outcome.",
                             ["trunk", "outcome"], registry=registry)
        self.build = Info("ivr_build", "Version of the switchboard and its SIP stack.",
                          registry=registry)
        self._flow: FlowInService | None = None
        self.reloads = Counter("ivr_flow_reloads", "Flow reloads (SIGHUP or file change), by "
                               "result: ok (in service, or unchanged) or failed.", ["result"],
                               registry=registry)
        for result in ("ok", "failed"):
            self.reloads.labels(result=result)
        registry.register(_StateCollector(self.snapshot))
        registry.register(_FlowCollector(self.flow_in_service))
        if process:
            ProcessCollector(namespace="", registry=registry)

    def set_build(self, sip_stack: str) -> None:
        self.build.info({"version": __version__, "sip_stack": sip_stack})

    def call_ended(self, trunk: str, outcome: str) -> None:
        self.calls.labels(trunk=trunk or "none", outcome=outcome).inc()

    def flow_loaded(self, name: str, version: str, at: float) -> None:
        """The flow new calls get from now on (at start, and on each successful reload)."""
        with self._lock:
            self._flow = FlowInService(name, version, at)

    def flow_in_service(self) -> FlowInService | None:
        with self._lock:
            return self._flow

    def reload_done(self, ok: bool) -> None:
        self.reloads.labels(result="ok" if ok else "failed").inc()

    def publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)

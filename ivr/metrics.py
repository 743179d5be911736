"""Prometheus metrics of the switchboard.

The registry is passed in (never the global one). Counters move on the driver's thread when
things happen; gauges of current state are computed at scrape time from a snapshot the driver
publishes, so the HTTP thread never touches live call objects.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ivr import __version__

MAX_PAUSE_REASONS = 12
"""Distinct pause reasons with a label of their own (``ivr agent pause --reason`` is free
text); later ones count as ``other``, so the metric stays bounded."""

SNAPSHOT_WAIT = 0.25
"""Seconds a scrape waits for the loop to publish a fresh snapshot before it takes the last
one (the loop answers within one turn, 10 ms, unless it is stuck)."""


@dataclass(frozen=True)
class Snapshot:
    """Immutable state published by the driver for scrapes."""

    calls_in_progress: int = 0
    callers_waiting: dict[str, int] = field(default_factory=dict)
    agents_by_state: dict[str, int] = field(default_factory=dict)
    longest_wait: dict[str, float] = field(default_factory=dict)
    """Queue -> seconds the longest-waiting caller has waited so far."""
    queue_agents: dict[tuple[str, str], int] = field(default_factory=dict)
    """(queue, state) -> agents of that queue in that state."""
    registered: dict[str, bool] = field(default_factory=dict)
    """Agent -> phone registered, for agents that register with the SIP edge."""
    trunks: dict[str, bool] = field(default_factory=dict)
    """Trunk -> gateway answered the last SIP OPTIONS, for trunks with a ping address."""
    devices: dict[str, bool] = field(default_factory=dict)
    """Serial device -> its port is open."""
    night_switches: dict[str, bool] = field(default_factory=dict)
    """Night switch -> its key is on."""
    campaign_dialling: dict[str, int] = field(default_factory=dict)
    """Campaign -> its calls out now (ringing or answered)."""
    campaign_paused: dict[str, str] = field(default_factory=dict)
    """Campaign -> why it dials nothing now, as a short kind ('' : it may dial)."""


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
        longest = GaugeMetricFamily("ivr_queue_longest_wait_seconds",
                                    "How long the longest-waiting caller of each queue has "
                                    "waited so far.", labels=["queue"])
        for queue, seconds in sorted(snap.longest_wait.items()):
            longest.add_metric([queue], seconds)
        yield longest
        by_queue = GaugeMetricFamily("ivr_queue_agents", "Agents of each queue by state now.",
                                     labels=["queue", "state"])
        for (queue, state), n in sorted(snap.queue_agents.items()):
            by_queue.add_metric([queue, state], n)
        yield by_queue
        registered = GaugeMetricFamily("ivr_agent_registered",
                                       "1 while the agent's phone is registered with the SIP "
                                       "edge (agents that register only).", labels=["agent"])
        for agent, up in sorted(snap.registered.items()):
            registered.add_metric([agent], 1 if up else 0)
        yield registered
        trunks = GaugeMetricFamily("ivr_trunk_reachable", "1 while the gateway answers SIP "
                                   "OPTIONS (trunks with a ping address only).",
                                   labels=["trunk"])
        for trunk, up in sorted(snap.trunks.items()):
            trunks.add_metric([trunk], 1 if up else 0)
        yield trunks
        devices = GaugeMetricFamily("ivr_device_up", "1 while the serial device's port is "
                                    "open (0: unplugged or missing).", labels=["device"])
        for device, up in sorted(snap.devices.items()):
            devices.add_metric([device], 1 if up else 0)
        yield devices
        switches = GaugeMetricFamily("ivr_night_switch_on", "1 while the night switch's key is "
                                     "on.", labels=["device"])
        for device, on in sorted(snap.night_switches.items()):
            switches.add_metric([device], 1 if on else 0)
        yield switches
        dialling = GaugeMetricFamily("ivr_campaign_dialling", "Calls out of each campaign now "
                                     "(ringing or answered).", labels=["campaign"])
        for campaign, n in sorted(snap.campaign_dialling.items()):
            dialling.add_metric([campaign], n)
        yield dialling
        paused = GaugeMetricFamily("ivr_campaign_paused", "1 while the campaign dials nothing, "
                                   "with why: window, inbound_waiting, service_level, "
                                   "wait_over, lines, agents, preview, stopping.",
                                   labels=["campaign", "reason"])
        for campaign, reason in sorted(snap.campaign_paused.items()):
            if reason:
                paused.add_metric([campaign, reason], 1)
        yield paused


class _StoreCollector(Collector):
    """The call store's writer, read at scrape time: records waiting to be written (a locked
    database or a full disk keeps them in memory) and failed write attempts."""

    def __init__(self, pending: Callable[[], int], errors: Callable[[], int]):
        self._pending = pending
        self._errors = errors

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("ivr_store_pending", "Records, queue events and state changes "
                                "waiting to be written to the call store.",
                                value=self._pending())
        yield CounterMetricFamily("ivr_store_write_errors", "Failed attempts to write to the "
                                  "call store (each is retried).", value=self._errors())


class _SipTrafficCollector(Collector):
    """What the SIP layer refused or dropped, and every decision on requests outside calls,
    read from the SIP layer at scrape time."""

    def __init__(self, read: Callable[[], tuple[dict[str, int], dict[tuple[str, str], int]]]):
        self._read = read

    def collect(self) -> Iterable[Metric]:
        traffic, decisions = self._read()
        refused = CounterMetricFamily("ivr_sip_refused", "SIP traffic refused, dropped or not "
                                      "understood, by reason (e.g. 'refused message (403)', "
                                      "'unparseable SIP').", labels=["reason"])
        for reason, n in sorted(traffic.items()):
            refused.add_metric([reason], n)
        yield refused
        requests = CounterMetricFamily("ivr_sip_requests", "Requests outside calls (OPTIONS, "
                                       "MESSAGE, SUBSCRIBE...) by kind and what was decided.",
                                       labels=["kind", "decision"])
        for (kind, decision), n in sorted(decisions.items()):
            requests.add_metric([kind, decision], n)
        yield requests


class _ServiceLevelCollector(Collector):
    """Service level per queue over a sliding window, both of Asterisk's definitions:
    SL = answered within the threshold / answered; SL2 = (answered + abandoned within the
    threshold) / (answered + abandoned)."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        family = GaugeMetricFamily(
            "ivr_queue_service_level_ratio",
            f"Share of callers served within {m.sl_threshold:g} s over the last "
            f"{m.sl_window:g} s, by definition (sl: of answered; sl2: of answered and "
            "abandoned, abandons within the threshold counting as served).",
            labels=["queue", "definition"])
        for queue, (sl, sl2) in sorted(m.service_levels(m.clock()).items()):
            if sl is not None:
                family.add_metric([queue, "sl"], sl)
            if sl2 is not None:
                family.add_metric([queue, "sl2"], sl2)
        yield family


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

    def __init__(self, registry: CollectorRegistry, process: bool = True,
                 sl_threshold: float = 20.0, sl_window: float = 3600.0,
                 clock: Callable[[], float] = time.time):
        self.registry = registry
        self.sl_threshold = sl_threshold
        self.sl_window = sl_window
        self.clock = clock
        self._outcomes: dict[str, deque[tuple[float, float, bool]]] = {}
        """Queue -> (when, wait, answered) of recent callers, for service levels."""
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)
        self._snapshot = Snapshot()
        self._asked = 0
        """Snapshots asked for by scrapes so far (see :meth:`fresh_snapshot`)."""
        self._answered = 0
        self._on_demand = False
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
        self.queue_entered = Counter("ivr_queue_entered", "Callers who joined each queue.",
                                     ["queue"], registry=registry)
        self.queue_answered = Counter("ivr_queue_answered", "Callers answered by an agent.",
                                      ["queue"], registry=registry)
        self.queue_abandoned = Counter("ivr_queue_abandoned", "Callers who hung up while "
                                       "waiting.", ["queue"], registry=registry)
        self.escalations = Counter("ivr_queue_escalations", "Escalations by kind (waiting, "
                                   "exhaustion, agent) and the level reached.",
                                   ["queue", "kind", "to_level"], registry=registry)
        self.dispositions = Counter("ivr_dispositions", "Dispositions agents keyed, by queue "
                                    "and label.", ["queue", "disposition"], registry=registry)
        self.first_call_resolutions = Counter(
            "ivr_tickets_resolved_first_call", "Tickets resolved by a disposition on the call "
            "that opened them (first-contact resolution).", ["queue"], registry=registry)
        self.wait = Histogram("ivr_queue_wait_seconds", "Seconds callers waited before an "
                              "agent answered.", ["queue"], registry=registry,
                              buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800))
        self.handle = Histogram("ivr_queue_talk_seconds", "Seconds of talk per answered call.",
                                ["queue"], registry=registry,
                                buckets=(30, 60, 120, 180, 300, 600, 1200, 3600))
        self.wrap_up = Histogram("ivr_agent_wrap_up_seconds", "Seconds agents spent in wrap-up "
                                 "after a call.", registry=registry,
                                 buckets=(5, 10, 20, 30, 60, 120, 300))
        self.agent_answered = Counter("ivr_agent_answered", "Calls each agent answered (an "
                                      "escalated call counts for each agent who took it).",
                                      ["agent"], registry=registry)
        self.agent_escalations = Counter("ivr_agent_escalations", "Calls each agent escalated "
                                         "to the next level (the escalate feature code).",
                                         ["agent"], registry=registry)
        self.agent_wrap_up = Counter("ivr_agent_wrap_up_time_seconds", "Seconds each agent "
                                     "spent in wrap-up (with ivr_agent_wrap_ups_total: the "
                                     "average).", ["agent"], registry=registry)
        self.agent_wrap_ups = Counter("ivr_agent_wrap_ups", "Wrap-ups each agent ended.",
                                      ["agent"], registry=registry)
        self.agent_pause = Counter("ivr_agent_pause_seconds", "Seconds each agent was paused, "
                                   "by reason, counted when the pause ends.",
                                   ["agent", "reason"], registry=registry)
        self.agent_dispositions = Counter("ivr_agent_dispositions", "Dispositions each agent "
                                          "keyed, by label.", ["agent", "disposition"],
                                          registry=registry)
        self.agent_first_call_resolutions = Counter(
            "ivr_agent_tickets_resolved_first_call", "Tickets each agent resolved on the call "
            "that opened them.", ["agent"], registry=registry)
        self._paused: dict[str, tuple[float, str]] = {}
        """Agent -> (since, reason label) while paused (driver thread only)."""
        self._pause_reasons: set[str] = set()
        self.node_entries = Counter("ivr_node_entries", "Calls that reached each IVR node.",
                                    ["flow", "node"], registry=registry)
        self.node_invalid = Counter("ivr_node_invalid_inputs", "Invalid entries at each node.",
                                    ["flow", "node"], registry=registry)
        self.node_timeouts = Counter("ivr_node_timeouts", "Timeouts waiting for keys at each "
                                     "node.", ["flow", "node"], registry=registry)
        self.node_hangups = Counter("ivr_node_hangups", "Callers who hung up in the IVR, by the "
                                    "node where they gave up.", ["flow", "node"],
                                    registry=registry)
        self.transitions = Counter("ivr_call_transitions", "Changes of state of the call "
                                   "machines (caller, agent leg, transfer leg, callback).",
                                   ["machine", "from_state", "to_state"], registry=registry)
        self.loop_errors = Counter("ivr_loop_errors", "Messages whose handling raised: the "
                                   "call they concern is ended, the switchboard goes on.",
                                   registry=registry)
        self.recordings = Counter("ivr_recordings", "Recordings of bridged calls by result: "
                                  "saved, failed (the stereo file could not be made), "
                                  "not_started (the stack refused), skipped_low_disk, "
                                  "stopped_low_disk.", ["result"], registry=registry)
        for result in ("saved", "failed", "not_started", "skipped_low_disk",
                       "stopped_low_disk"):
            self.recordings.labels(result=result)
        self.recordings_suspended = Gauge("ivr_recordings_suspended", "1 while free disk under "
                                          "'recordings' is below recording_min_free_mb: no "
                                          "call is recorded.", registry=registry)
        self.campaign_attempts = Counter("ivr_campaign_attempts", "Dial decisions of each "
                                         "campaign by outcome: answered, busy, no_answer, "
                                         "failed, abandoned, withdrawn (called off while "
                                         "ringing: an inbound caller waited for the agent), "
                                         "and not_dialled or dnc_skipped (never dialled).",
                                         ["campaign", "outcome"], registry=registry)
        self.campaign_connects = Counter("ivr_campaign_connects", "Contacts of each campaign "
                                         "who talked to an agent (or whose flow ran).",
                                         ["campaign"], registry=registry)
        self.campaign_abandoned = Counter("ivr_campaign_abandoned", "Contacts of each campaign "
                                          "who answered and had no agent (they heard the "
                                          "message).", ["campaign"], registry=registry)
        registry.register(_StateCollector(self.fresh_snapshot))
        registry.register(_ServiceLevelCollector(self))
        registry.register(_FlowCollector(self.flow_in_service))
        if process:
            ProcessCollector(namespace="", registry=registry)

    def set_build(self, sip_stack: str) -> None:
        self.build.info({"version": __version__, "sip_stack": sip_stack})

    def transition(self, machine: str, old: str, new: str) -> None:
        self.transitions.labels(machine=machine, from_state=old, to_state=new).inc()

    def campaign_event(self, campaign: str, event: str, outcome: str = "") -> None:
        """A campaign's attempt (with its outcome), connect or abandoned call."""
        if event == "attempt":
            self.campaign_attempts.labels(campaign=campaign, outcome=outcome).inc()
        elif event == "connect":
            self.campaign_connects.labels(campaign=campaign).inc()
        elif event == "abandoned":
            self.campaign_abandoned.labels(campaign=campaign).inc()

    def campaigns_defined(self, names: Iterable[str]) -> None:
        """Every campaign's counters exist from the start (0 until something happens)."""
        for name in names:
            self.campaign_connects.labels(campaign=name)
            self.campaign_abandoned.labels(campaign=name)

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

    def queue_event(self, kind: str, queue: str, at: float, detail: Mapping[str, Any],
                    agent: str = "") -> None:
        """Count one queue-log event (the driver passes each as it is written)."""
        if agent:
            self._agent_event(kind, agent, at, detail)
        if kind == "enter":
            self.queue_entered.labels(queue=queue).inc()
        elif kind == "connect":
            wait = float(detail.get("wait", 0.0))
            self.queue_answered.labels(queue=queue).inc()
            self.wait.labels(queue=queue).observe(wait)
            self._remember(queue, at, wait, True)
        elif kind == "abandon":
            self.queue_abandoned.labels(queue=queue).inc()
            self._remember(queue, at, float(detail.get("wait", 0.0)), False)
        elif kind == "complete":
            self.handle.labels(queue=queue).observe(float(detail.get("talk", 0.0)))
        elif kind == "wrap_up_end":
            self.wrap_up.observe(float(detail.get("wrap", 0.0)))
        elif kind == "escalate":
            self.escalations.labels(queue=queue, kind=str(detail.get("kind", "")),
                                    to_level=str(detail.get("to_level", ""))).inc()
        elif kind == "disposition":
            self.dispositions.labels(queue=queue, disposition=str(detail.get("label", ""))).inc()
            if detail.get("resolves") and detail.get("first_call"):
                self.first_call_resolutions.labels(queue=queue).inc()

    def _agent_event(self, kind: str, agent: str, at: float, detail: Mapping[str, Any]) -> None:
        """The per-agent counters of one queue-log event."""
        if kind == "connect":
            self.agent_answered.labels(agent=agent).inc()
        elif kind == "escalate" and detail.get("kind") == "agent":
            self.agent_escalations.labels(agent=agent).inc()
        elif kind == "wrap_up_end":
            self.agent_wrap_up.labels(agent=agent).inc(float(detail.get("wrap", 0.0)))
            self.agent_wrap_ups.labels(agent=agent).inc()
        elif kind == "disposition":
            self.agent_dispositions.labels(agent=agent,
                                           disposition=str(detail.get("label", ""))).inc()
            if detail.get("resolves") and detail.get("first_call"):
                self.agent_first_call_resolutions.labels(agent=agent).inc()
        elif kind == "pause":
            self._paused.setdefault(agent, (at, self._pause_reason(detail.get("reason"))))
        elif kind in ("unpause", "logout", "login") and agent in self._paused:
            since, reason = self._paused.pop(agent)
            self.agent_pause.labels(agent=agent, reason=reason).inc(max(0.0, at - since))

    def _pause_reason(self, reason: object) -> str:
        """A bounded label for a pause reason (see :data:`MAX_PAUSE_REASONS`)."""
        label = str(reason or "unknown")[:32]
        if label not in self._pause_reasons:
            if len(self._pause_reasons) >= MAX_PAUSE_REASONS:
                return "other"
            self._pause_reasons.add(label)
        return label

    def _remember(self, queue: str, at: float, wait: float, answered: bool) -> None:
        with self._lock:
            self._outcomes.setdefault(queue, deque()).append((at, wait, answered))

    def service_levels(self, now: float) -> dict[str, tuple[float | None, float | None]]:
        """Queue -> (SL, SL2) over the window ending *now*; None where nobody counts."""
        out: dict[str, tuple[float | None, float | None]] = {}
        with self._lock:
            for queue, outcomes in self._outcomes.items():
                while outcomes and outcomes[0][0] < now - self.sl_window:
                    outcomes.popleft()
                answered = [w for _, w, a in outcomes if a]
                abandoned = [w for _, w, a in outcomes if not a]
                fast = sum(1 for w in answered if w <= self.sl_threshold)
                fast_abandon = sum(1 for w in abandoned if w <= self.sl_threshold)
                sl = fast / len(answered) if answered else None
                both = len(answered) + len(abandoned)
                sl2 = (fast + fast_abandon) / both if both else None
                out[queue] = (sl, sl2)
        return out

    def ivr_path(self, flow: str, steps: Iterable[tuple[str, str]], gave_up_at: str | None
                 ) -> None:
        """Count a finished call's walk: (node, keys) steps; keys hold '!' per invalid entry
        and '~' per timeout."""
        for node, keys in steps:
            self.node_entries.labels(flow=flow, node=node).inc()
            if "!" in keys:
                self.node_invalid.labels(flow=flow, node=node).inc(keys.count("!"))
            if "~" in keys:
                self.node_timeouts.labels(flow=flow, node=node).inc(keys.count("~"))
        if gave_up_at:
            self.node_hangups.labels(flow=flow, node=gave_up_at).inc()

    def snapshots_on_demand(self) -> None:
        """A loop publishes snapshots when :meth:`snapshot_asked` says a scrape waits for one:
        from now on a scrape asks and waits for it (see :meth:`fresh_snapshot`)."""
        self._on_demand = True

    def snapshot_asked(self) -> int:
        """The latest request for a snapshot not answered yet, or 0. Read by the loop every
        turn, so without the lock (two integer reads)."""
        asked = self._asked
        return asked if asked != self._answered else 0

    def publish(self, snapshot: Snapshot, answers: int = 0) -> None:
        """The state now; *answers* is the request (:meth:`snapshot_asked`) it answers."""
        with self._published:
            self._snapshot = snapshot
            if answers > self._answered:
                self._answered = answers
                self._published.notify_all()

    def snapshot(self) -> Snapshot:
        """The last snapshot published."""
        with self._lock:
            return self._snapshot

    def fresh_snapshot(self) -> Snapshot:
        """For a scrape: a snapshot the loop publishes after this call, or the last one if
        the loop does not answer within :data:`SNAPSHOT_WAIT` (or publishes on its own
        rhythm only, as in tests)."""
        with self._published:
            if not self._on_demand:
                return self._snapshot
            self._asked += 1
            ticket = self._asked
            self._published.wait_for(lambda: self._answered >= ticket, SNAPSHOT_WAIT)
            return self._snapshot

    def watch_sip(self, read: Callable[[], tuple[dict[str, int],
                                                 dict[tuple[str, str], int]]]) -> None:
        """Export the SIP layer's refusals and request decisions, read at each scrape."""
        self.registry.register(_SipTrafficCollector(read))

    def watch_store(self, pending: Callable[[], int], errors: Callable[[], int]) -> None:
        """Export the call store's backlog and write errors, read at each scrape."""
        self.registry.register(_StoreCollector(pending, errors))

    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on a daemon thread; a port in use is a one-line StartupError."""
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            from ivr.preflight import listen_error

            raise listen_error(exc, host, port, "metrics", "tcp") from None

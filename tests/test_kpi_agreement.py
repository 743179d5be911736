"""The metrics and 'ivr report' agree over the same window: one scripted scenario, driven through
routing by hand, feeds both the Prometheus metrics and the call records the report reads."""

from prometheus_client import CollectorRegistry

from ivr.metrics import Metrics
from ivr.report import compute, read_rows
from ivr.store import CallRecord, CallStore, QueueEventRow
from tests.test_metrics import scenario


def records_from(events):
    """Call records as the switchboard writes them, from the queue log of the scenario."""
    calls: dict[str, CallRecord] = {}
    for e in events:
        if not e.call_id:
            continue
        rec = calls.setdefault(e.call_id, CallRecord(e.call_id, started_at=e.at, caller=e.call_id))
        if e.kind == "enter":
            rec.queue, rec.queued_at = e.queue, e.at
        elif e.kind == "connect":
            rec.agent, rec.connected_at = e.agent, e.at
        elif e.kind == "complete":
            rec.finish(e.at, "completed")
        elif e.kind == "abandon":
            rec.finish(e.at, "abandoned_queue")
        elif e.kind == "escalate":
            rec.queue = e.detail["to_queue"]
    for rec in calls.values():
        if rec.outcome == "in_progress":
            rec.finish(rec.started_at + 500, "abandoned_queue")  # never answered at level 2
    return list(calls.values())


def test_report_and_metrics_give_the_same_service_levels(tmp_path):
    events, end = scenario()
    metrics = Metrics(CollectorRegistry(), process=False, sl_threshold=20, sl_window=10**6,
                      clock=lambda: end)
    for e in events:
        metrics.queue_event(e.kind, e.queue, e.at, e.detail)
    store = CallStore(tmp_path / "calls.db")
    for rec in records_from(events):
        store.save(rec)
    store.add_events([QueueEventRow(e.at, e.kind, e.queue, e.call_id, e.agent, dict(e.detail))
                      for e in events])
    store.flush()
    store.close()
    calls, rows = read_rows(tmp_path / "calls.db", 0, end, fcr_days=7)
    report = {r.group: r for r in compute(calls, rows, start=0, end=end, threshold=20)}
    sl, sl2 = metrics.service_levels(end)["support"]
    assert report["support"].sl == sl == 12 / 15
    assert report["support"].sl2 == sl2 == 14 / 19
    assert report["support"].answered == metrics.registry.get_sample_value(
        "ivr_queue_answered_total", {"queue": "support"})
    assert report["support"].abandoned == metrics.registry.get_sample_value(
        "ivr_queue_abandoned_total", {"queue": "support"})
    entered = metrics.registry.get_sample_value("ivr_queue_entered_total", {"queue": "support"})
    assert report["support"].offered == entered == 20       # the escalated caller included
    assert report["support"].abandonment == 4 / 20
    wait_sum = metrics.registry.get_sample_value("ivr_queue_wait_seconds_sum",
                                                 {"queue": "support"})
    wait_count = metrics.registry.get_sample_value("ivr_queue_wait_seconds_count",
                                                   {"queue": "support"})
    assert report["support"].asa == wait_sum / wait_count == 199 / 15
    assert report["support"].escalation == 1 / 19

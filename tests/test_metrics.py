"""Metrics from a scripted queue scenario with known numbers, driven through routing by hand."""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ivr.metrics import Metrics, Snapshot
from routing.acd import MovedQueue, QueueSpec, RingAgent, Router


def scenario():
    """20 callers of 'support': 12 answered within 20 s, 3 after, 4 abandoned (2 within 20 s),
    1 escalated by exhaustion to 'level2' after 100 s."""
    r = Router([QueueSpec("support", tuple(f"s{i}" for i in range(20)), ring_timeout=600,
                          max_wait=100, overflow="level2"),
                QueueSpec("level2", ("x",))], now=0.0)
    answered_waits = [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 20, 25, 30, 40]
    abandoned_waits = [5, 10, 30, 45]
    t = 0.0
    for i, wait in enumerate(answered_waits):
        t += 1000
        (ring,) = [a for a in r.join(f"a{i}", "support", t) if isinstance(a, RingAgent)]
        r.answered(f"a{i}", ring.agent, t + wait)
        r.finished(f"a{i}", t + wait + 120)
    for i, wait in enumerate(abandoned_waits):
        t += 1000
        r.join(f"b{i}", "support", t)
        r.leave(f"b{i}", t + wait)
    t += 1000
    r.join("esc", "support", t)
    moved = [a for a in r.on_timer(t + 100) if isinstance(a, MovedQueue)]
    assert moved == [MovedQueue("esc", "support", "level2", "exhaustion")]
    return r.drain_log(), t + 200


def fresh():
    clock = [0.0]
    metrics = Metrics(CollectorRegistry(), process=False, sl_threshold=20, sl_window=10**6,
                      clock=lambda: clock[0])
    return metrics, clock


def value(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def test_scripted_scenario_gives_exact_service_levels_and_counts():
    metrics, clock = fresh()
    events, end = scenario()
    for e in events:
        metrics.queue_event(e.kind, e.queue, e.at, e.detail)
    clock[0] = end
    assert value(metrics, "ivr_queue_entered_total", queue="support") == 20
    assert value(metrics, "ivr_queue_answered_total", queue="support") == 15
    assert value(metrics, "ivr_queue_abandoned_total", queue="support") == 4
    assert value(metrics, "ivr_queue_escalations_total", queue="support", kind="exhaustion",
                 to_level="2") == 1
    assert value(metrics, "ivr_queue_service_level_ratio", queue="support",
                 definition="sl") == 12 / 15
    assert value(metrics, "ivr_queue_service_level_ratio", queue="support",
                 definition="sl2") == (12 + 2) / (15 + 4)
    assert value(metrics, "ivr_queue_wait_seconds_count", queue="support") == 15
    assert value(metrics, "ivr_queue_wait_seconds_sum", queue="support") == 199
    assert value(metrics, "ivr_queue_wait_seconds_bucket", queue="support", le="20.0") == 12
    assert value(metrics, "ivr_queue_talk_seconds_count", queue="support") == 15
    # the window slides: an hour later nobody counts any more
    metrics.sl_window = 3600
    clock[0] = end + 10**5
    assert value(metrics, "ivr_queue_service_level_ratio", queue="support", definition="sl") \
        is None


def test_ivr_nodes_state_gauges_and_the_text_parses():
    metrics, _ = fresh()
    metrics.ivr_path("demo", [("welcome", "5!2"), ("main", "~~1")], None)
    metrics.ivr_path("demo", [("welcome", "")], "welcome")
    assert value(metrics, "ivr_node_entries_total", flow="demo", node="welcome") == 2
    assert value(metrics, "ivr_node_invalid_inputs_total", flow="demo", node="welcome") == 1
    assert value(metrics, "ivr_node_timeouts_total", flow="demo", node="main") == 2
    assert value(metrics, "ivr_node_hangups_total", flow="demo", node="welcome") == 1
    metrics.publish(Snapshot(3, {"support": 2}, {"available": 1, "on_call": 2},
                             {"support": 42.5}, {("support", "on_call"): 2},
                             {"anna": True, "marco": False}))
    assert value(metrics, "ivr_queue_longest_wait_seconds", queue="support") == 42.5
    assert value(metrics, "ivr_queue_agents", queue="support", state="on_call") == 2
    assert value(metrics, "ivr_agent_registered", agent="marco") == 0
    text = generate_latest(metrics.registry).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"ivr_calls_in_progress", "ivr_queue_service_level_ratio", "ivr_node_entries",
            "ivr_queue_wait_seconds"} <= names
    assert "3331234567" not in text


def test_wrap_up_time_is_observed_from_the_queue_log():
    r = Router([QueueSpec("q", ("a",), wrap_up=30)], now=0.0)
    r.join("c1", "q", 0)
    r.answered("c1", "a", 1)
    r.finished("c1", 61)
    r.on_timer(91)
    metrics, _ = fresh()
    for e in r.drain_log():
        metrics.queue_event(e.kind, e.queue, e.at, e.detail)
    assert value(metrics, "ivr_agent_wrap_up_seconds_count") == 1
    assert value(metrics, "ivr_agent_wrap_up_seconds_sum") == 30


def test_sip_refusals_and_request_decisions_are_read_at_scrape():
    registry = CollectorRegistry()
    metrics = Metrics(registry, process=False)
    counts = ({"refused message (403)": 2, "unparseable SIP": 7},
              {("options", "answered"): 3, ("message", "stranger"): 1})
    metrics.watch_sip(lambda: counts)
    assert registry.get_sample_value("ivr_sip_refused_total",
                                     {"reason": "unparseable SIP"}) == 7
    assert registry.get_sample_value("ivr_sip_requests_total",
                                     {"kind": "options", "decision": "answered"}) == 3


def test_the_store_backlog_and_write_errors_are_read_at_scrape(tmp_path):
    from ivr.store import CallStore

    registry = CollectorRegistry()
    metrics = Metrics(registry, process=False)
    store = CallStore(tmp_path / "calls.db")
    metrics.watch_store(store.pending_count, lambda: store.write_errors)
    assert registry.get_sample_value("ivr_store_pending") == 0
    assert registry.get_sample_value("ivr_store_write_errors_total") == 0
    store.write_errors = 3  # what the writer counts on each failed attempt
    assert registry.get_sample_value("ivr_store_write_errors_total") == 3
    store.close()

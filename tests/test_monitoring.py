"""The monitoring files (monitoring/): promtool accepts them, every metric they use is one the
switchboard exports, and the dashboard has the panels operators expect."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ivr.metrics import Metrics, Snapshot
from ivr.sms import SmsMetrics

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
ALERTS = MONITORING / "alerts.yml"
CONFIG = MONITORING / "prometheus.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

METRIC_NAME = re.compile(r"\b(?:ivr|process)_[a-z0-9_]*[a-z0-9]")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (Debian package prometheus, scripts/system-deps.sh)")
        pytest.skip("promtool is missing (Debian package prometheus)")
    return path


def run_promtool(*args: str, cwd: Path = MONITORING) -> None:
    done = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def alert_exprs() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return {r.get("alert") or r["record"]: r["expr"]
            for group in rules["groups"] for r in group["rules"]}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(all_panels(p.get("panels", [])))
    return out


def dashboard_exprs() -> list[str]:
    d = dashboard()
    exprs = [t["expr"] for p in all_panels(d["panels"]) for t in p.get("targets", [])
             if "expr" in t]
    for var in d.get("templating", {}).get("list", []):
        query = var.get("query")
        exprs.append(query.get("query", "") if isinstance(query, dict) else query or "")
    return exprs


def exported_sample_names() -> set[str]:
    """Names of the samples /metrics exposes once every kind of event has happened."""
    registry = CollectorRegistry()
    m = Metrics(registry, sl_threshold=20, sl_window=3600, clock=lambda: 1000.0)
    m.set_build("pjsip")
    m.flow_loaded("main", "1.2", 900.0)
    m.reload_done(True)
    m.reload_done(False)
    m.call_ended("trunk1", "completed")
    m.queue_event("enter", "support", 950.0, {})
    m.queue_event("connect", "support", 960.0, {"wait": 10.0})
    m.queue_event("complete", "support", 990.0, {"talk": 30.0})
    m.queue_event("enter", "support", 970.0, {})
    m.queue_event("abandon", "support", 980.0, {"wait": 10.0})
    m.queue_event("escalate", "support", 985.0, {"kind": "exhaustion", "to_level": "level2"})
    m.queue_event("disposition", "support", 995.0, {"label": "resolved", "resolves": True,
                                                    "first_call": True})
    m.queue_event("connect", "support", 960.0, {"wait": 10.0}, "anna")
    m.queue_event("escalate", "support", 962.0, {"kind": "agent", "to_level": 2}, "anna")
    m.queue_event("wrap_up_end", "", 965.0, {"wrap": 3.0}, "anna")
    m.queue_event("disposition", "support", 966.0, {"label": "resolved", "resolves": True,
                                                    "first_call": True}, "anna")
    m.queue_event("pause", "", 967.0, {"reason": "lunch"}, "anna")
    m.queue_event("unpause", "", 968.0, {}, "anna")
    m.ivr_path("main", [("welcome", "1"), ("menu", "!~2")], "menu")
    m.campaign_event("spring", "attempt", "answered")
    m.campaign_event("spring", "connect")
    m.campaign_event("spring", "abandoned")
    m.watch_store(lambda: 2, lambda: 1)
    m.publish(Snapshot(calls_in_progress=1, callers_waiting={"support": 1},
                       agents_by_state={"available": 1}, longest_wait={"support": 4.0},
                       queue_agents={("support", "available"): 1},
                       registered={"alice": True}, trunks={"gateway": True},
                       devices={"modem": True}, campaign_dialling={"spring": 1},
                       campaign_paused={"spring": "window"}))
    texts = SmsMetrics(registry)
    texts.total.labels("failed").inc()
    texts.queued.set(0)
    text = generate_latest(registry).decode()
    return {s.name for family in text_string_to_metric_families(text)
            for s in family.samples}


def test_promtool_check_rules():
    run_promtool("check", "rules", str(ALERTS))


def test_promtool_check_config():
    run_promtool("check", "config", str(CONFIG))


def test_alert_names():
    assert set(alert_exprs()) == {
        "CentralinoDown", "QueueServiceLevelLow", "QueueNoAgentLoggedIn",
        "QueueAbandonmentHigh", "FlowReloadFailed", "AgentPhoneUnregistered",
        "GatewayUnreachable", "CallRecordsNotWritten", "CallRecordingSuspended",
        "CallRecordingsFailing", "AgentWrapUpLong", "AgentEscalatesMost",
        "DeviceUnplugged", "TextsNotSent", "CampaignAbandonRateHigh"}


NO_AGENT_TEST = """
rule_files:
  - {alerts}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # every agent of 'support' logged out: ivr_queue_agents only has the logged_out series
      - series: 'ivr_queue_callers_waiting{{job="centralino",queue="support"}}'
        values: '2x10'
      - series: 'ivr_queue_agents{{job="centralino",queue="support",state="logged_out"}}'
        values: '3x10'
      # 'sales' has an agent on a call: no alert
      - series: 'ivr_queue_callers_waiting{{job="centralino",queue="sales"}}'
        values: '1x10'
      - series: 'ivr_queue_agents{{job="centralino",queue="sales",state="on_call"}}'
        values: '1x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: QueueNoAgentLoggedIn
        exp_alerts:
          - exp_labels:
              severity: critical
              queue: support
            exp_annotations:
              summary: "Queue support: callers waiting, no agent logged in"
              description: "2 caller(s) wait in support and none of its agents is logged in."
"""


def test_no_agent_alert_fires_when_all_agents_logged_out(tmp_path):
    promtool()
    test_file = tmp_path / "no_agent_test.yml"
    test_file.write_text(NO_AGENT_TEST.format(alerts=ALERTS))
    run_promtool("test", "rules", str(test_file), cwd=tmp_path)


@pytest.mark.parametrize("where", ["alerts", "dashboard"])
def test_metric_names_are_exported(where):
    exprs = list(alert_exprs().values()) if where == "alerts" else dashboard_exprs()
    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert used, "no metric found in the expressions"
    exported = exported_sample_names()
    # names as Prometheus stores them: counters with _total, histograms' _bucket/_sum/_count,
    # never the bare family name of a counter or histogram
    missing = sorted(used - exported)
    assert not missing, f"{where} use metrics the switchboard does not export: {missing}"


def test_exported_names_include_the_documented_ones():
    exported = exported_sample_names()
    for name in ("ivr_calls_total", "ivr_queue_wait_seconds_bucket", "ivr_build_info",
                 "ivr_queue_service_level_ratio", "ivr_agent_registered",
                 "process_cpu_seconds_total", "process_resident_memory_bytes"):
        assert name in exported
    assert "ivr_calls" not in exported
    assert "ivr_queue_wait_seconds" not in exported


def test_dashboard_panels():
    d = dashboard()
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    titles = {p["title"] for p in all_panels(d["panels"])}
    assert titles >= {
        "Calls in progress", "Calls by outcome", "Callers waiting", "Longest wait",
        "Service level (sl, sl2)", "Answered and abandoned", "Wait time quantiles",
        "Agents by state", "Escalations by kind", "IVR drop-off funnel",
        "Flow version in service", "Flow reload results", "Process CPU", "Process RSS"}
    for p in all_panels(d["panels"]):
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            assert p["targets"], p["title"]
    ids = [p["id"] for p in all_panels(d["panels"])]
    assert len(ids) == len(set(ids))


def test_dashboard_expressions_use_the_right_metrics():
    exprs = "\n".join(dashboard_exprs())
    assert "histogram_quantile" in exprs
    assert "ivr_queue_wait_seconds_bucket" in exprs
    assert "ivr_node_entries_total" in exprs
    assert "ivr_node_hangups_total" in exprs
    assert "rate(ivr_calls_total" in exprs

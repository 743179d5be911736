"""The dialler's monitoring: the campaign panels and the abandon-rate alert, which fires for
the campaign over the 3% cap only."""

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from ivr.metrics import Metrics, Snapshot
from tests.test_monitoring import ALERTS, all_panels, dashboard, promtool, run_promtool

CAMPAIGN_RULES_TEST = """
rule_files:
  - {alerts}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # spring: 100 answered and 5 abandoned an hour (5%); summer: 100 and 1 (1%)
      - series: 'ivr_campaign_attempts_total{{campaign="spring",outcome="answered"}}'
        values: '0+100x120'
      - series: 'ivr_campaign_attempts_total{{campaign="spring",outcome="abandoned"}}'
        values: '0+5x120'
      - series: 'ivr_campaign_abandoned_total{{campaign="spring"}}'
        values: '0+5x120'
      - series: 'ivr_campaign_attempts_total{{campaign="summer",outcome="answered"}}'
        values: '0+100x120'
      - series: 'ivr_campaign_attempts_total{{campaign="summer",outcome="abandoned"}}'
        values: '0+1x120'
      - series: 'ivr_campaign_abandoned_total{{campaign="summer"}}'
        values: '0+1x120'
    alert_rule_test:
      - eval_time: 1h
        alertname: CampaignAbandonRateHigh
        exp_alerts:
          - exp_labels:
              severity: warning
              campaign: spring
            exp_annotations:
              summary: "Campaign spring: 4.762% of answered calls abandoned"
              description: "Over the last 24 hours more than 3% of the people campaign spring \
reached answered with no agent free and heard the call-back message. The dialler stops \
over-dialling after an abandon; check the campaign's dial_ratio and that its agents answer \
within 2 seconds (auto-answer), see ivr report --campaign."
"""


def test_abandon_rate_alert_fires_for_the_campaign_over_the_cap(tmp_path: Path) -> None:
    promtool()
    test_file = tmp_path / "campaign_test.yml"
    test_file.write_text(CAMPAIGN_RULES_TEST.format(alerts=ALERTS))
    run_promtool("test", "rules", str(test_file), cwd=tmp_path)


def test_the_dashboard_has_the_campaign_panels() -> None:
    titles = {p["title"] for p in all_panels(dashboard()["panels"])}
    assert titles >= {"Campaigns", "Campaign attempts by outcome",
                      "Campaign connects and abandoned", "Campaign contact and abandon rates",
                      "Campaign calls out and pauses"}


def test_campaign_gauges_from_the_snapshot() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, sl_threshold=20, sl_window=3600, process=False)
    metrics.campaigns_defined(["spring"])
    metrics.publish(Snapshot(campaign_dialling={"spring": 2, "summer": 0},
                             campaign_paused={"spring": "", "summer": "window"}))
    text = generate_latest(registry).decode()
    assert 'ivr_campaign_dialling{campaign="spring"} 2.0' in text
    assert 'ivr_campaign_paused{campaign="summer",reason="window"} 1.0' in text
    assert 'ivr_campaign_paused{campaign="spring"' not in text
    assert 'ivr_campaign_connects_total{campaign="spring"} 0.0' in text

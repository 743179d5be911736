"""The per-agent alert rules (monitoring/alerts.yml) fire for the agent concerned only."""

from pathlib import Path

from tests.test_monitoring import ALERTS, promtool, run_promtool

AGENT_RULES_TEST = """
rule_files:
  - {alerts}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # anna: a 5-minute wrap-up after every call, and every call escalated
      - series: 'ivr_agent_wrap_up_time_seconds_total{{job="centralino",agent="anna"}}'
        values: '0+300x240'
      - series: 'ivr_agent_wrap_ups_total{{job="centralino",agent="anna"}}'
        values: '0+1x240'
      - series: 'ivr_agent_answered_total{{job="centralino",agent="anna"}}'
        values: '0+1x240'
      - series: 'ivr_agent_escalations_total{{job="centralino",agent="anna"}}'
        values: '0+1x240'
      # marco: a minute of wrap-up, one call in ten escalated
      - series: 'ivr_agent_wrap_up_time_seconds_total{{job="centralino",agent="marco"}}'
        values: '0+60x240'
      - series: 'ivr_agent_wrap_ups_total{{job="centralino",agent="marco"}}'
        values: '0+1x240'
      - series: 'ivr_agent_answered_total{{job="centralino",agent="marco"}}'
        values: '0+1x240'
      - series: 'ivr_agent_escalations_total{{job="centralino",agent="marco"}}'
        values: '0+0.1x240'
    alert_rule_test:
      - eval_time: 3h
        alertname: AgentWrapUpLong
        exp_alerts:
          - exp_labels:
              severity: info
              agent: anna
            exp_annotations:
              summary: "Agent anna: wrap-up 5m 0s on average"
              description: "Over the last 2 hours agent anna spent on average more than 2 \
minutes in wrap-up after a call: fewer calls are offered to them. Their team leader may check \
what the wrap-up is used for (ivr report --by agent)."
      - eval_time: 3h
        alertname: AgentEscalatesMost
        exp_alerts:
          - exp_labels:
              severity: info
              agent: anna
            exp_annotations:
              summary: "Agent anna escalates 100% of calls"
              description: "Over the last 2 hours agent anna sent more than half of the calls \
they answered to the next level with the escalate code. A topic they are not trained on, or a \
level 1 without the tools to solve it: see ivr report --by agent for their dispositions."
"""


def test_agent_alerts_fire_for_the_agent_concerned_only(tmp_path: Path) -> None:
    promtool()
    test_file = tmp_path / "agent_rules_test.yml"
    test_file.write_text(AGENT_RULES_TEST.format(alerts=ALERTS))
    run_promtool("test", "rules", str(test_file), cwd=tmp_path)


def test_the_dashboard_has_the_agent_panels() -> None:
    from tests.test_monitoring import all_panels, dashboard

    panels = {p["title"]: p for p in all_panels(dashboard()["panels"])}
    assert {"Escalations made by agent", "Average wrap-up by agent", "Pause time by reason",
            "Dispositions and first-contact resolutions by agent"} <= set(panels)
    exprs = " ".join(t["expr"] for p in panels.values() for t in p.get("targets", []))
    for name in ("ivr_agent_escalations_total", "ivr_agent_wrap_ups_total",
                 "ivr_agent_pause_seconds_total", "ivr_agent_tickets_resolved_first_call_total"):
        assert name in exprs

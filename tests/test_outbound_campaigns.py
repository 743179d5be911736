"""Campaign files: checked like ivr.yaml and flows (every problem at once, file:line:col, a
near-match hint), against the names of ivr.yaml, with the dial_out rules' 'campaigns' flag."""

import shutil
from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.config_spec import config_schema
from ivr.outbound.campaigns import (
    Campaign,
    PauseWhen,
    Retry,
    campaign_schema,
    load_campaigns,
    parse_duration,
)
from ivr.yamlsrc import DocumentError

ROOT = Path(__file__).resolve().parent.parent

IVR_YAML = """\
sip: {listen: 127.0.0.1:5080}
trunks:
  gateway: {sources: [127.0.0.1], lines: 8}
agents:
  anna: {uri: "sip:anna@127.0.0.1:5070"}
queues:
  sales: {agents: [anna]}
dispositions:
  "1": {label: sale}
  "2": {label: callback}
  "8": {label: do not call}
dial_out:
  - {pattern: "^\\\\+39[0-9]{6,11}$", uri: "sip:{number}@192.0.2.1", campaigns: true,
     flows: false}
  - {pattern: "^0[1-9][0-9]{5,9}$", uri: "sip:{number}@192.0.2.1"}
flow: flow.yaml
campaigns: campaigns
"""

FLOW = """\
flow: reminder
languages: [en]
start: ask
nodes:
  ask:
    type: collect
    prompt: {say: {en: "Press 1 to confirm, 2 to change."}}
    variable: confirm
    max_length: 1
    next: bye
  bye: {type: hangup}
"""

PROGRESSIVE = """\
queue: sales
mode: progressive
trunk: gateway
max_lines: 4
reserve_inbound: 2
caller_id: "+390612345678"
window:
  timezone: Europe/Rome
  days: [mon-fri, sat]
  hours: "09:00-13:00,14:00-19:00"
  holidays: {country: IT, subdivision: RM, dates: ["2026-08-14"]}
retries:
  busy: {times: 2, after: 90s}
  no_answer: {times: 4, after: 2h}
final_dispositions: ["1", 2]
dnc_disposition: "8"
dial_ratio: 1.5
pause_when: {service_level_below: 0.8, wait_over: 45s}
whisper: false
script: "Hello {name}, about {product}"
"""


def setup(tmp_path: Path, campaigns: dict[str, str], ivr_yaml: str = IVR_YAML):
    (tmp_path / "ivr.yaml").write_text(ivr_yaml)
    (tmp_path / "flow.yaml").write_text(FLOW)
    folder = tmp_path / "campaigns"
    folder.mkdir(exist_ok=True)
    for name, text in campaigns.items():
        (folder / name).write_text(text)
    return load_config(tmp_path / "ivr.yaml")


def problems(tmp_path: Path, campaigns: dict[str, str], ivr_yaml: str = IVR_YAML) -> list[str]:
    config = setup(tmp_path, campaigns, ivr_yaml)
    with pytest.raises(DocumentError) as err:
        load_campaigns(config)
    return [str(p) for p in err.value.problems]


def test_a_progressive_campaign_loads_with_every_key(tmp_path):
    campaigns = load_campaigns(setup(tmp_path, {"spring.yaml": PROGRESSIVE}))
    c = campaigns["spring"]  # named after its file
    assert (c.queue, c.mode, c.trunk, c.trunk_lines, c.max_lines, c.reserve_inbound) == (
        "sales", "progressive", "gateway", 8, 4, 2)
    assert c.caller_id == "+390612345678"
    assert c.source == "campaigns/spring.yaml"
    assert c.window.timezone == "Europe/Rome"
    assert c.window.days == (0, 1, 2, 3, 4, 5)
    assert c.window.intervals == ((540, 780), (840, 1140))
    assert (c.window.holiday_country, c.window.holiday_subdivision, c.window.holiday_dates) \
        == ("IT", "RM", ("2026-08-14",))
    # the window is the flows' own hours node
    assert c.window.hours.schedule[5] == ((540, 780), (840, 1140))
    assert 6 not in c.window.hours.schedule
    assert c.retries["busy"] == Retry(2, 90.0)
    assert c.retries["no_answer"] == Retry(4, 7200.0)
    assert c.retries["failed"] == Retry(1, 1800.0)  # defaults for the outcomes not given
    assert c.retries["callback"] == Retry(2, 3600.0)
    assert c.final_dispositions == frozenset({"1", "2"})
    assert c.dnc_disposition == "8"
    assert (c.dial_ratio, c.abandon_cap) == (1.5, 0.03)
    assert c.pause_when == PauseWhen(0.8, 45.0)
    assert c.whisper is False
    assert c.script == "Hello {name}, about {product}"
    assert c.flow is None
    assert c.answers == ()


def test_defaults_of_a_short_campaign(tmp_path):
    text = """\
name: short
queue: sales
mode: preview
trunk: gateway
max_lines: 1
window: {timezone: Europe/Rome, hours: "10:00-12:00"}
"""
    c = load_campaigns(setup(tmp_path, {"a.yaml": text}))["short"]
    assert c.window.days == (0, 1, 2, 3, 4)  # mon-fri
    assert c.window.holiday_country is None
    assert c.reserve_inbound == 1
    assert c.dial_ratio == 1.0
    assert c.abandon_cap == 0.03
    assert c.pause_when == PauseWhen(None, 30.0)
    assert c.whisper is True
    assert c.final_dispositions == frozenset()
    assert c.dnc_disposition is None
    assert c.retries == Campaign(name="x", mode="preview", trunk="t", trunk_lines=1,
                                 max_lines=1, window=c.window).retries


def test_an_automated_campaign_loads_its_flow_and_stores_variables_it_sets(tmp_path):
    text = """\
mode: automated
flow: ../flow.yaml
trunk: gateway
max_lines: 6
window: {timezone: Europe/Rome, days: [daily], hours: ["09:00-12:00", "15:00-18:00"]}
answers: [confirm]
"""
    c = load_campaigns(setup(tmp_path, {"reminder.yml": text}))["reminder"]
    assert c.mode == "automated"
    assert c.queue is None
    assert c.flow is not None
    assert c.flow.resolve() == (tmp_path / "flow.yaml").resolve()
    assert c.answers == ("confirm",)
    assert c.window.days == tuple(range(7))


def test_every_problem_at_once_with_its_place_and_a_hint(tmp_path):
    text = """\
queue: sale
mode: progresive
trunk: gatway
max_lines: 0
reserve_inbound: -1
caller_id: "06-12"
window:
  timezone: Europe/Roma
  days: [mon-fry]
  hours: "09:00-13:00,19:00-14:00"
  holidays: {country: Italia, dates: [2026-13]}
retries:
  busy: {times: 2, after: 5 minutes}
  no_answr: {times: 1}
final_dispositions: ["7"]
dnc_disposition: "6"
abandon_cap: 0.05
whispr: true
script: "Hello {name"
"""
    assert problems(tmp_path, {"bad.yaml": text}) == [
        "campaigns/bad.yaml:1:8: queue: unknown queue 'sale'. Did you mean 'sales'?",
        "campaigns/bad.yaml:2:7: mode: 'progresive' is not a campaign mode. Did you mean "
        "'progressive'?",
        "campaigns/bad.yaml:3:8: trunk: unknown trunk 'gatway'. Did you mean 'gateway'?",
        "campaigns/bad.yaml:4:12: max_lines: must be at least 1, got 0",
        "campaigns/bad.yaml:5:18: reserve_inbound: must be at least 0, got -1",
        "campaigns/bad.yaml:6:12: caller_id: '06-12' is not a number to present such as "
        "+390612345678",
        "campaigns/bad.yaml:8:13: window.timezone: unknown time zone 'Europe/Roma' (use a name "
        "such as 'Europe/Rome')",
        "campaigns/bad.yaml:9:10: window.days[0]: 'mon-fry' is not a day or range of days "
        "such as 'mon', 'mon-fri' or 'daily'",
        "campaigns/bad.yaml:10:10: window.hours: '19:00-14:00' is not a time range such as "
        "'09:00-13:00'",
        "campaigns/bad.yaml:11:23: window.holidays.country: 'Italia' is not a country code the "
        "holidays library knows",
        "campaigns/bad.yaml:11:39: window.holidays.dates[0]: '2026-13' is not a date such as "
        "'2026-08-14'",
        "campaigns/bad.yaml:13:27: retries.busy.after: '5 minutes' is not a duration such as "
        "90s, 30m or 2h",
        "campaigns/bad.yaml:14:3: retries.no_answr: unknown key 'no_answr'. Did you mean "
        "'no_answer'?",
        "campaigns/bad.yaml:15:22: final_dispositions[0]: unknown disposition '7'",
        "campaigns/bad.yaml:16:18: dnc_disposition: unknown disposition '6'",
        "campaigns/bad.yaml:17:14: abandon_cap: abandon_cap 0.05 is over 0.03: at most 3% of "
        "the answered calls of a day may be abandoned (answered with no agent free)",
        "campaigns/bad.yaml:18:1: whispr: unknown key 'whispr'. Did you mean 'whisper'?",
        "campaigns/bad.yaml:19:9: script: the script's braces do not pair up (expected '}' "
        "before end of string); write {{ and }} for a brace shown as is",
    ]


def test_rules_across_keys(tmp_path):
    preview = """\
mode: preview
trunk: gateway
max_lines: 9
reserve_inbound: 8
dial_ratio: 2
flow: ../flow.yaml
window: {timezone: UTC, hours: "09:00-17:00"}
"""
    automated = """\
mode: automated
queue: sales
trunk: gateway
max_lines: 2
window: {timezone: UTC, hours: "09:00-17:00"}
"""
    survey = """\
mode: automated
flow: ../flow.yaml
trunk: gateway
max_lines: 2
window: {timezone: UTC, hours: "09:00-17:00"}
answers: [confirm, rating]
"""
    assert problems(tmp_path, {"a.yaml": preview, "b.yaml": automated,
                               "c.yaml": survey}) == [
        "campaigns/a.yaml:1:1: missing required key 'queue': the agents who work a preview "
        "campaign",
        "campaigns/a.yaml:3:12: max_lines: max_lines 9 is more than trunk 'gateway' has "
        "(8 lines)",
        "campaigns/a.yaml:4:18: reserve_inbound: reserve_inbound 8 leaves no line of trunk "
        "'gateway' (8 lines) to the campaign",
        "campaigns/a.yaml:5:13: dial_ratio: dial_ratio above 1 is for progressive campaigns "
        "(this one is preview)",
        "campaigns/a.yaml:6:7: flow: 'flow' is for automated campaigns (this one is preview)",
        "campaigns/b.yaml:1:1: missing required key 'flow': what an automated campaign plays "
        "to the people who answer",
        "campaigns/c.yaml:6:20: answers[1]: the flow never sets 'rating' (it sets: confirm)",
    ]


def test_a_window_that_never_opens_is_a_problem(tmp_path):
    text = PROGRESSIVE.replace("days: [mon-fri, sat]", "days: []").replace(
        'hours: "09:00-13:00,14:00-19:00"', "hours: []")
    assert problems(tmp_path, {"a.yaml": text}) == [
        "campaigns/a.yaml:9:9: window.days: no day: the campaign would never dial (leave "
        "'days' out for mon-fri)",
        "campaigns/a.yaml:10:10: window.hours: no hours: give at least one range such as "
        "'09:00-13:00'",
    ]


def test_problems_of_an_automated_campaigns_flow_are_reported_in_the_flow_file(tmp_path):
    text = """\
mode: automated
flow: ../broken.yaml
trunk: gateway
max_lines: 2
window: {timezone: UTC, hours: "09:00-17:00"}
"""
    (tmp_path / "broken.yaml").write_text(FLOW.replace("next: bye", "next: byee"))
    assert problems(tmp_path, {"a.yaml": text}) == [
        "broken.yaml:10:11: nodes.ask.next: unknown node 'byee'. Did you mean 'bye'?"]
    text = text.replace("../broken.yaml", "../missing.yaml")
    assert problems(tmp_path, {"a.yaml": text}) == [
        "campaigns/a.yaml:2:7: flow: flow file 'missing.yaml' does not exist"]


def test_no_dial_out_rule_for_campaigns_refuses_every_campaign(tmp_path):
    without = IVR_YAML.replace("campaigns: true,", "")
    assert problems(tmp_path, {"a.yaml": PROGRESSIVE}, without) == [
        "campaigns/a.yaml:1:1: no dial_out rule of ivr.yaml has 'campaigns: true': this "
        "campaign could dial nobody (add it to the rule of the numbers campaigns may call)"]


def test_two_campaigns_of_one_name(tmp_path):
    one = "name: offer\n" + PROGRESSIVE
    assert problems(tmp_path, {"a.yaml": one, "b.yaml": one}) == [
        "campaigns/b.yaml:1:7: name: campaign 'offer' is defined twice: also in "
        "campaigns/a.yaml"]


def test_a_file_that_is_not_a_campaign(tmp_path):
    assert problems(tmp_path, {"a.yaml": "- just\n- a list\n", "b.yaml": "mode: [\n"}) == [
        "campaigns/a.yaml:1:1: expected a mapping, got a list",
        "campaigns/b.yaml:2:1: YAML syntax error: did not find expected node content",
    ]


def test_dial_ratio_above_one_needs_a_cap_above_zero(tmp_path):
    text = PROGRESSIVE + "abandon_cap: 0\n"
    assert problems(tmp_path, {"a.yaml": text}) == [
        "campaigns/a.yaml:17:13: dial_ratio: dial_ratio above 1 needs an abandon_cap above 0"]


def test_without_campaigns_key_there_are_none_and_a_missing_folder_is_a_config_problem(
        tmp_path):
    config = setup(tmp_path, {}, IVR_YAML.replace("campaigns: campaigns\n", ""))
    assert config.campaigns_dir is None
    assert load_campaigns(config) == {}
    (tmp_path / "ivr.yaml").write_text(IVR_YAML.replace("campaigns: campaigns",
                                                        "campaigns: nowhere"))
    with pytest.raises(DocumentError) as err:
        load_config(tmp_path / "ivr.yaml")
    assert [str(p).replace(str(tmp_path) + "/", "") for p in err.value.problems] == [
        "ivr.yaml:17:12: campaigns: campaigns folder 'nowhere' does not exist"]
    config = setup(tmp_path, {"notes.txt": "not a campaign"})
    assert load_campaigns(config) == {}  # only .yaml and .yml files are campaigns


def test_only_rules_with_campaigns_true_let_a_campaign_dial(tmp_path):
    config = setup(tmp_path, {})
    assert [r.campaigns for r in config.dial_out] == [True, False]
    assert config.campaign_dial_target("+390612345678") == "sip:+390612345678@192.0.2.1"
    # the other rule allows transfers, not campaigns; nothing beyond a whole match either
    for number in ("0612345678", "+39061", "+390612345678@evil", "+39 0612345678", "",
                   "+390612345678\n"):
        assert config.campaign_dial_target(number) is None, number
    assert config.transfer_target("+390612345678") is None  # flows: false


def test_durations():
    assert parse_duration("90s") == 90
    assert parse_duration("30m") == 1800
    assert parse_duration("2h") == 7200
    assert parse_duration("1d") == 86400
    assert parse_duration("45") == 45
    assert parse_duration("1.5h") == 5400
    for text in ("", "m", "5 minutes", "-1m", "1w"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(text)


def test_the_schemas_describe_campaigns():
    top = config_schema()["properties"]
    assert top["campaigns"]["type"] == "string"
    rule = top["dial_out"]["items"]["properties"]["campaigns"]
    assert rule["type"] == "boolean"
    assert rule["default"] is False
    schema = campaign_schema()
    assert schema["required"] == ["mode", "trunk", "max_lines", "window"]
    assert schema["properties"]["mode"]["enum"] == ["preview", "progressive", "automated"]
    assert set(schema["properties"]["window"]["properties"]) == {
        "timezone", "days", "hours", "holidays"}


def test_the_example_campaign_loads_with_the_demo_configuration(tmp_path):
    """The repo's example, with the demo's ivr.yaml once its campaigns line is uncommented
    and a dial_out rule allows campaigns; the demo itself loads no campaign."""
    assert load_config(ROOT / "ivr.yaml").campaigns_dir is None
    text = (ROOT / "ivr.yaml").read_text(encoding="utf-8")
    assert "\n# campaigns: campaigns/" in text
    shutil.copytree(ROOT / "campaigns", tmp_path / "campaigns")
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    text = text.replace("\n# campaigns: campaigns/", "\ncampaigns: campaigns/") + (
        'dial_out:\n  - {pattern: "^\\\\+39[0-9]{6,11}$", uri: "sip:{number}@192.0.2.1", '
        "campaigns: true, flows: false}\n")
    (tmp_path / "ivr.yaml").write_text(text)
    campaigns = load_campaigns(load_config(tmp_path / "ivr.yaml"))
    assert sorted(campaigns) == ["reminder", "spring-offer", "survey"]
    c = campaigns["spring-offer"]
    assert (c.queue, c.mode, c.max_lines, c.reserve_inbound) == ("sales", "progressive", 4, 2)

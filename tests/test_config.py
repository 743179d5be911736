"""ivr.yaml: checked by its declarative spec (every problem at once, located), its JSON Schema,
transfer destinations (extensions, dial_out rules) and the recordings folder."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from ivr.cli import main
from ivr.config import Config, FeatureCodes, Route, Trunk, load_config
from ivr.config_spec import IVR_YAML, config_schema, schema_text
from ivr.yamlsrc import DocumentError
from routing.acd import QueueSpec

ROOT = Path(__file__).resolve().parent.parent

BASE = """\
sip: {listen: 127.0.0.1:5080}
trunks: {gw: {sources: [127.0.0.1]}}
flow: flows/demo.yaml
"""


def config(tmp_path, extra: str):
    path = tmp_path / "ivr.yaml"
    path.write_text(BASE + extra)
    return load_config(path)


def problems(tmp_path, extra: str) -> list[str]:
    with pytest.raises(DocumentError) as err:
        config(tmp_path, extra)
    return [str(p).replace(str(tmp_path) + "/", "") for p in err.value.problems]


def test_extensions_and_dial_out_rules_resolve_transfer_targets(tmp_path):
    c = config(tmp_path, """\
extensions:
  "201": {uri: "sip:reception@127.0.0.1:5090"}
  202: {uri: "sip:warehouse@192.0.2.30", description: the warehouse}
dial_out:
  - pattern: "^0[1-9][0-9]{5,9}$"
    uri: "sip:{number}@192.0.2.1"
  - {pattern: "112", uri: "sip:emergency@192.0.2.1"}
""")
    assert c.transfer_target("201") == "sip:reception@127.0.0.1:5090"
    assert c.transfer_target("202") == "sip:warehouse@192.0.2.30"  # an unquoted key
    assert c.transfer_target("0612345678") == "sip:0612345678@192.0.2.1"
    assert c.transfer_target("112") == "sip:emergency@192.0.2.1"
    # nothing else is dialled: unknown extensions, numbers no rule matches in whole, premium
    # numbers, and anything that is not keys of a phone
    for destination in ("203", "", "0612", "06123456789012", "899123456", "1120",
                        "0612345678@evil.example", "06123456\n78", "0612345678\n",
                        "sip:0612345678@192.0.2.1"):
        assert c.transfer_target(destination) is None, destination


def test_agents_transfer_to_extensions_queues_and_numbers_their_rules_allow(tmp_path):
    c = config(tmp_path, """\
agents: {anna: {uri: "sip:anna@127.0.0.1:5070"}}
queues:
  support: {agents: [anna], number: "700"}
  sales: {agents: [anna]}
extensions:
  "201": {uri: "sip:reception@127.0.0.1:5090"}
dial_out:
  - {pattern: "^06[0-9]{6,8}$", uri: "sip:{number}@192.0.2.1", agent_transfers: true}
  - {pattern: "^07[0-9]{6,8}$", uri: "sip:{number}@192.0.2.1"}
""")
    def target(refer_to: str) -> tuple[str, str, str] | None:
        found = c.agent_transfer_target(refer_to)
        return (found.kind, found.name, found.uri) if found else None

    assert target("<sip:201@192.0.2.99:5060;user=phone>") == (
        "extension", "201", "sip:reception@127.0.0.1:5090")
    assert target("<sip:201@pbx?Replaces=a%40b%3Bto-tag%3D1%3Bfrom-tag%3D2>") == (
        "extension", "201", "sip:reception@127.0.0.1:5090")
    assert target('"Reception" <sips:2%301@pbx>') == (
        "extension", "201", "sip:reception@127.0.0.1:5090")
    assert target("sip:support@pbx") == ("queue", "support", "")
    assert target("sip:700@pbx") == ("queue", "support", "")
    assert target("sip:sales@pbx") == ("queue", "sales", "")
    assert target("sip:06-1234-5678@pbx") == ("number", "0612345678",
                                               "sip:0612345678@192.0.2.1")
    for refused in ("sip:0712345678@pbx",  # its rule is for flows' transfers only
                    "sip:00390612345678@pbx", "sip:202@pbx", "sip:pbx", "tel:201",
                    "sip:anna@pbx", "sip:201%00@pbx", "sip:Support@pbx", "201", ""):
        assert target(refused) is None, refused
    assert c.transfer_target("0712345678") == "sip:0712345678@192.0.2.1"  # flows: unchanged


def test_a_queue_number_must_be_one_a_phone_can_dial(tmp_path):
    assert problems(tmp_path, """\
agents: {anna: {uri: "sip:anna@127.0.0.1:5070"}}
queues: {support: {agents: [anna], number: "seven"}}
""") == ["ivr.yaml:5:44: queues.support.number: 'seven' is not a number a phone can dial "
         "(digits, * # +)"]


def test_pattern_must_match_the_whole_number_even_without_anchors(tmp_path):
    c = config(tmp_path, """\
dial_out: [{pattern: "0[1-9][0-9]{5,9}", uri: "sip:{number}@192.0.2.1"},
           {pattern: '9[\\s\\S]*', uri: "sip:{number}@192.0.2.1"}]
""")
    assert c.transfer_target("0612345678") is not None
    assert c.transfer_target("9123") is not None
    assert c.transfer_target("9123\n") is None  # a careless pattern still gets only keys
    assert c.transfer_target("00612345678") is None
    assert c.transfer_target("0612345678#") is None


def test_no_transfer_destinations_by_default_and_recordings_beside_the_config(tmp_path):
    c = config(tmp_path, "")
    assert c.extensions == {}
    assert c.dial_out == ()
    assert c.transfer_target("201") is None
    assert c.recordings == tmp_path / "var" / "recordings"
    assert config(tmp_path, "recordings: /srv/voicemail\n").recordings == Path("/srv/voicemail")
    assert config(tmp_path, "recordings: vm\n").recordings == tmp_path / "vm"


def test_shipped_config_dials_nothing_out():
    c = load_config(ROOT / "ivr.yaml")
    assert c.dial_out == ()
    assert c.extensions == {}
    assert c.recordings == ROOT / "var" / "recordings"


def test_bad_regex_and_bad_uris_are_reported_with_their_place(tmp_path):
    found = problems(tmp_path, """\
extensions:
  "201": {uri: "reception@127.0.0.1"}
  "20x": {uri: "sip:x@127.0.0.1"}
  "202": {url: "sip:y@127.0.0.1"}
dial_out:
  - pattern: "^0[1-9][0-9{5,9}$"
    uri: "sip:{number}@192.0.2.1"
  - pattern: "^3[0-9]{8,9}$"
    uri: "{number}@192.0.2.1"
  - pattern: "^0[0-9]+$"
    uri: "sip:{numbr}@192.0.2.1"
  - {uri: "sip:{number}@192.0.2.1"}
  - pattern: "^1$"
    uri: "sip:{number}@192.0.2.1"
    trunk: gw
""")
    assert found == [
        "ivr.yaml:5:16: extensions.201.uri: 'reception@127.0.0.1' is not a SIP URI such as "
        "sip:reception@192.0.2.20:5060",
        "ivr.yaml:6:10: extensions.20x: extension '20x' must be a number a caller can key "
        "(digits, * # +)",
        "ivr.yaml:7:10: extensions.202: missing required key 'uri'",
        "ivr.yaml:7:11: extensions.202.url: unknown key 'url'. Did you mean 'uri'?",
        "ivr.yaml:9:14: dial_out[0].pattern: '^0[1-9][0-9{5,9}$' is not a valid regular "
        "expression: unterminated character set at position 7",
        "ivr.yaml:12:10: dial_out[1].uri: '{number}@192.0.2.1' is not a SIP URI template such "
        "as sip:{number}@192.0.2.1",
        "ivr.yaml:14:10: dial_out[2].uri: unknown placeholder '{numbr}' in "
        "'sip:{numbr}@192.0.2.1'; only {number} (the number dialled) can be used",
        "ivr.yaml:15:5: dial_out[3]: missing required key 'pattern'",
        "ivr.yaml:18:5: dial_out[4].trunk: unknown key 'trunk'; expected one of: "
        "agent_transfers, callbacks, campaigns, description, flows, pattern, uri",
    ]


def test_dial_out_must_be_a_list_of_rules(tmp_path):
    assert problems(tmp_path, 'dial_out: {pattern: "^0", uri: "sip:{number}@192.0.2.1"}\n') == [
        "ivr.yaml:4:11: dial_out: expected a list, got a mapping"]


def test_metrics_section_takes_service_level_window_and_threshold(tmp_path):
    from ivr.config import load_config

    cfg = tmp_path / "ivr.yaml"
    cfg.write_text("sip: {listen: 127.0.0.1:5080}\ntrunks: {gw: {sources: [127.0.0.1]}}\n"
                   "flow: flow.yaml\nmetrics: {listen: 127.0.0.1:9480, "
                   "service_level_threshold: 30, service_level_window: 900}\n")
    config = load_config(cfg)
    assert str(config.metrics) == "127.0.0.1:9480"
    assert (config.sl_threshold, config.sl_window) == (30, 900)


# -- routes: called numbers (DIDs) to flows --------------------------------------------------------

NO_FLOW = BASE.replace("flow: flows/demo.yaml\n", "")


def routed(tmp_path, routes: str, *flows: str) -> Config:
    for name in flows or ("demo.yaml", "office.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("# a flow\n")
    path = tmp_path / "ivr.yaml"
    path.write_text(NO_FLOW + routes)
    return load_config(path)


def route_problems(tmp_path, routes: str) -> list[str]:
    with pytest.raises(DocumentError) as err:
        routed(tmp_path, routes)
    return [str(p).replace(str(tmp_path) + "/", "") for p in err.value.problems]


def test_routes_send_each_called_number_to_its_flow_in_any_spelling(tmp_path):
    c = routed(tmp_path, """\
routes:
  "800 123 456": {flow: demo.yaml, language: it}
  "+39 (06) 1234-5678": {flow: office.yaml, description: the office number}
  0298765: {flow: demo.yaml}
""")
    assert set(c.routes) == {"800123456", "+390612345678", "0298765"}
    toll_free = c.route_for("800123456")
    assert toll_free == Route("800123456", tmp_path / "demo.yaml", "it")
    for spelling in ("+390612345678", "tel:+39-06-1234-5678", "sip:+390612345678@192.0.2.1",
                     '"Office" <sip:%2B390612345678@gw;user=phone>'):
        assert c.route_for(spelling) == Route("+390612345678", tmp_path / "office.yaml"), spelling
    assert c.route_for("0298765") == Route("0298765", tmp_path / "demo.yaml")
    # no default: any other number, no number and a number that is none are refused (404)
    for called in ("800123457", "0390612345678", "", "anonymous", "ivr", "ivr%00evil",
                   "800123456\n", "sip:800123456"):
        assert c.route_for(called) is None, called
    assert c.flow_paths() == (tmp_path / "demo.yaml", tmp_path / "office.yaml")
    assert c.flow == tmp_path / "demo.yaml"  # the first route's, for tools that check one flow


def test_the_default_route_takes_every_other_number_and_the_switchboards_own_user(tmp_path):
    c = routed(tmp_path, """\
routes:
  "800123456": {flow: office.yaml}
  default: {flow: demo.yaml, language: en}
""")
    default = Route("default", tmp_path / "demo.yaml", "en")
    assert c.route_for("800123456") == Route("800123456", tmp_path / "office.yaml")
    for called in ("0612", "", "ivr", "anonymous", "*41"):
        assert c.route_for(called) == default, called
    for called in ("support", "ivr%00evil", "0612%3Bx", "1" * 33):
        assert c.route_for(called) is None, called
    assert c.flow == tmp_path / "demo.yaml"  # the default's
    assert c.flow_paths() == (tmp_path / "office.yaml", tmp_path / "demo.yaml")


def test_without_routes_every_number_goes_to_the_flow_as_before(tmp_path):
    c = config(tmp_path, "")
    assert c.routes == {}
    main_flow = Route("default", tmp_path / "flows" / "demo.yaml")
    for called in ("800123456", "+390612345678", "", "ivr", "anonymous", "tel:0612"):
        assert c.route_for(called) == main_flow, called
    # a called number that cannot be a number is refused even so
    for called in ("support", "ivr%00evil", "x\x00"):
        assert c.route_for(called) is None, called
    assert c.flow_paths() == (tmp_path / "flows" / "demo.yaml",)


def test_the_shipped_config_routes_every_call_to_the_demo():
    c = load_config(ROOT / "ivr.yaml")
    assert c.routes == {}
    assert c.route_for("ivr") == Route("default", ROOT / "flows" / "demo.yaml")
    assert c.flow_paths() == (ROOT / "flows" / "demo.yaml",)


def test_route_problems_are_located(tmp_path):
    assert route_problems(tmp_path, """\
routes:
  "800123456": {flow: demo.yaml}
  "800 123 456": {flow: office.yaml}
  "+39 06 1234": {flow: missing.yaml}
  "800-ABC": {flow: demo.yaml}
  "39+06": {flow: demo.yaml}
  "   ": {flow: demo.yaml}
  "0612": {flow: demo.yaml, language: Italian}
  "0613": {language: it}
  "0614": {flow: demo.yaml, lang: it}
  default: flows/demo.yaml
""") == [
        "ivr.yaml:5:18: routes.800 123 456: '800 123 456' is the same number as '800123456' "
        "(800123456)",
        "ivr.yaml:6:25: routes.+39 06 1234.flow: flow file 'missing.yaml' does not exist",
        "ivr.yaml:7:14: routes.800-ABC: route '800-ABC' is not a called number (digits, * # +, "
        "spaces, '-', '.', brackets) or 'default'",
        "ivr.yaml:8:12: routes.39+06: route '39+06' is not a called number (digits, * # +, "
        "spaces, '-', '.', brackets) or 'default'",
        "ivr.yaml:9:10: routes.   : route '   ' is not a called number (digits, * # +, "
        "spaces, '-', '.', brackets) or 'default'",
        "ivr.yaml:10:39: routes.0612.language: 'Italian' is not a language code such as it "
        "or en",
        "ivr.yaml:11:11: routes.0613: missing required key 'flow'",
        "ivr.yaml:12:29: routes.0614.lang: unknown key 'lang'. Did you mean 'language'?",
        "ivr.yaml:13:12: routes.default: expected a mapping, got text",
    ]


def test_flow_and_routes_together_or_neither_are_refused(tmp_path):
    assert problems(tmp_path, 'routes: {"0612": {flow: flows/demo.yaml}}\n') == [
        "ivr.yaml:3:7: flow: 'flow' is not used when 'routes' is given (a number no route "
        "names is refused with 404): move it into routes as 'default: {flow: ...}', or "
        "remove it",
        "ivr.yaml:4:25: routes.0612.flow: flow file 'demo.yaml' does not exist",
    ]
    assert route_problems(tmp_path, "routes: {}\n") == [
        "ivr.yaml:3:9: routes: list at least one called number, or use 'flow' for every call"]
    assert route_problems(tmp_path, "store: x.db\n") == [
        "ivr.yaml:1:1: missing required key 'flow' (the flow of every call) or 'routes' (a "
        "flow per called number)"]


# -- the declarative spec: every problem at once, located, and the JSON Schema ---------------------

FULL = """\
# yaml-language-server: $schema=ivr.schema.json
sip:
  listen: 127.0.0.1:5080
  user: centralino
  rtp_port: 30000
  rtp_port_range: 200
  max_calls: 64
  log_level: 3
trunks:
  gateway:
    sources: [127.0.0.1, 192.0.2.0/28]
    lines: 8
    description: the FXO gateway
    ping: 192.0.2.1:5060
    ping_interval: 15
agents:
  anna:
    uri: sip:anna@127.0.0.1:5060
    name: Anna Rossi
    skills: {german: 7}
    max_no_answer: 2
    password: anna-secret
  marco:
    uri: sip:marco@127.0.0.1:5060
queues:
  support:
    agents: [anna]
    tiers: {"2": [marco]}
    strategy: ring_all
    ring_timeout: 20
    retry_delay: 1.5
    wrap_up: 10
    max_callers: 12
    join_empty: false
    leave_empty_after: 30
    max_wait: 300
    overflow: sales
    tier_wait: 60
    tier_wait_multiply: true
    skill: german
    skill_level: 5
    skill_fallback_after: 90
    escalate_to: sales
    announce_every: 45
    number: "700"
    description: first line
  sales:
    tiers:
      "1": [marco, anna]
flow: flows/demo.yaml
store: var/calls.db
recordings: var/vm
prompts:
  cache: var/cache
  voices: {de: de}
  rate: 140
music_on_hold: hold.wav
metrics:
  listen: 127.0.0.1:9480
  service_level_threshold: 30
  service_level_window: 900
log_level: debug
extensions:
  "201": {uri: "sip:reception@127.0.0.1:5090", name: reception, description: front desk}
dial_out:
  - {pattern: "^0[1-9][0-9]{5,9}$", uri: "sip:{number}@192.0.2.1", description: landlines,
     agent_transfers: true, callbacks: true}
feature_codes: {login: "*51", logout: "*52", pause: "*53", unpause: "*54", escalate: "*8",
                listen: "*61", whisper: "*62", barge: "*63"}
edge:
  listen: 127.0.0.1:5060
  rpc_port: 5071
  realm: centralino
  trunk_sources: [127.0.0.1]
  agent_sources: [127.0.0.0/8]
retention_days: 90
"""


def as_editor_sees_it(text: str) -> object:
    """The document as an editor's YAML server sees it: keys and dates as text."""
    return json.loads(json.dumps(yaml.safe_load(text), default=str))


def schema_errors(text: str) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(config_schema())
    return sorted(f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
                  for e in validator.iter_errors(as_editor_sees_it(text)))


def test_every_key_at_once_is_loaded(tmp_path):
    (tmp_path / "hold.wav").write_bytes(b"RIFF")
    path = tmp_path / "ivr.yaml"
    path.write_text(FULL)
    c = load_config(path)
    assert (str(c.sip_listen), c.sip_user, c.rtp_port, c.rtp_port_range, c.max_calls,
            c.sip_log_level) == ("127.0.0.1:5080", "centralino", 30000, 200, 64, 3)
    [trunk] = c.trunks
    assert trunk.lines == 8
    assert str(trunk.ping) == "192.0.2.1:5060"
    assert trunk.ping_interval == 15
    assert trunk.allows("192.0.2.14")
    assert not trunk.allows("192.0.2.16")
    assert c.agents["anna"].skills == {"german": 7}
    assert c.agents["anna"].max_no_answer == 2
    support = c.queues["support"]
    assert support.agents == ("anna",)
    assert [(m.agent, m.level) for m in support.members] == [
        ("marco", 2)]
    assert (support.strategy, support.ring_timeout, support.retry_delay, support.max_callers,
            support.join_empty, support.overflow, support.escalate_to, support.skill_level) == (
        "ring_all", 20.0, 1.5, 12, False, "sales", "sales", 5)
    assert [(m.agent, m.level) for m in c.queues["sales"].all_members()] == [
        ("marco", 1), ("anna", 1)]
    assert c.store == tmp_path / "var" / "calls.db"
    assert c.recordings == tmp_path / "var" / "vm"
    assert c.prompt_cache == tmp_path / "var" / "cache"
    assert c.speech_rate == 140
    assert c.voices == {"it": "it", "en": "en-us", "de": "de"}  # added to the defaults
    assert c.music_on_hold == tmp_path / "hold.wav"
    assert (str(c.metrics), c.sl_threshold, c.sl_window) == ("127.0.0.1:9480", 30, 900)
    assert c.log_level == "debug"
    assert c.retention_days == 90
    assert c.transfer_target("201") == "sip:reception@127.0.0.1:5090"
    assert c.transfer_target("0612345678") == "sip:0612345678@192.0.2.1"
    assert c.queue_numbers == {"700": "support"}
    assert c.dial_out[0].agent_transfers
    assert c.feature_codes.action_for("*53") == "pause"
    assert c.feature_codes.escalate == "*8"
    assert c.feature_codes.supervision_for("*63201") == ("barge", "201")
    assert c.dial_out[0].callbacks
    assert c.callback_target("0612345678") == "sip:0612345678@192.0.2.1"
    assert c.edge is not None
    assert c.edge.rpc_port == 5071
    assert c.agent_for("127.0.0.1", "anna") is c.agents["anna"]


def test_a_minimal_config_takes_the_defaults_of_the_spec(tmp_path):
    c = config(tmp_path, "")
    assert (c.sip_user, c.rtp_port, c.rtp_port_range, c.max_calls, c.sip_log_level) == (
        "ivr", 20000, 1000, 128, 1)
    assert c.agents == {}
    assert c.queues == {}
    assert c.metrics is None
    assert c.edge is None
    assert c.store == tmp_path / "var" / "centralino.db"
    assert c.prompt_cache == tmp_path / "var" / "prompts"
    assert c.voices == {"it": "it", "en": "en-us"}
    assert c.speech_rate == 150
    assert (c.sl_threshold, c.sl_window, c.log_level, c.retention_days) == (
        20.0, 3600.0, "info", 0)
    assert c.feature_codes == FeatureCodes()
    assert c.callback_target("0612345678") is None  # no rule allows callbacks
    assert c.trunks[0].lines == 30
    assert c.trunks[0].ping is None


def test_the_spec_defaults_are_those_of_the_typed_config():
    """Config, FeatureCodes and QueueSpec have defaults of their own: they must agree."""
    codes = IVR_YAML.key("feature_codes").spec
    assert {k.name: k.spec.default for k in codes.keys} == dataclasses.asdict(FeatureCodes())
    queue = IVR_YAML.key("queues").spec.value
    for f in dataclasses.fields(QueueSpec):
        if f.name in {k.name for k in queue.keys} and f.name not in ("agents", "overflow",
                                                                      "skill", "escalate_to"):
            assert queue.key(f.name).spec.default == f.default, f.name
    trunk = IVR_YAML.key("trunks").spec.value
    assert trunk.key("ping_interval").spec.default == Trunk("t", (), 1).ping_interval
    metrics = IVR_YAML.key("metrics").spec.section
    assert metrics.key("service_level_threshold").spec.default == Config.sl_threshold
    assert metrics.key("service_level_window").spec.default == Config.sl_window


def test_the_edge_section_of_the_spec_is_the_edges_own():
    from ivr.edge.settings import DEFAULT_LISTEN, DEFAULT_RPC_PORT, EDGE_KEYS

    edge = IVR_YAML.key("edge").spec
    assert tuple(k.name for k in edge.keys) == EDGE_KEYS
    assert edge.key("listen").spec.default == DEFAULT_LISTEN
    assert edge.key("rpc_port").spec.default == DEFAULT_RPC_PORT


def test_every_problem_is_reported_at_once_in_file_order(tmp_path):
    path = tmp_path / "ivr.yaml"
    path.write_text("""\
sip:
  listen: 127.0.0.1:5080
  max_calls: many
  rtp_port: 80
trunks:
  gw: {sources: 127.0.0.1, lines: 0}
agents:
  anna: {uri: "sip:anna@127.0.0.1", max_no_answr: 2}
  marco: {uri: "sip:marco@127.0.0.1"}
queues:
  support:
    agents: [anna, marko]
    strategy: ring_al
    ring_timout: 20
    ring_timeout: 900
    join_empty: sometimes
    overflow: support
  sales:
    tiers: {"6": [anna]}
    escalate_to: suport
flow: flows/demo.yaml
log_level: loud
metrics: {listen: 127.0.0.1:9480, service_level_window: 10}
feature_codes: {login: "*41", logout: "*41"}
retention_days: 1.5
""")
    with pytest.raises(DocumentError) as err:
        load_config(path)
    assert [str(p).replace(f"{tmp_path}/", "") for p in err.value.problems] == [
        "ivr.yaml:3:14: sip.max_calls: expected a whole number, got text",
        "ivr.yaml:4:13: sip.rtp_port: must be at least 1024, got 80",
        "ivr.yaml:6:17: trunks.gw.sources: expected a list, got text",
        "ivr.yaml:6:35: trunks.gw.lines: must be at least 1, got 0",
        "ivr.yaml:8:37: agents.anna.max_no_answr: unknown key 'max_no_answr'. Did you mean "
        "'max_no_answer'?",
        "ivr.yaml:12:20: queues.support.agents[1]: unknown agent 'marko'. Did you mean 'marco'?",
        "ivr.yaml:13:15: queues.support.strategy: 'ring_al' is not a queue strategy. Did you "
        "mean 'ring_all'?",
        "ivr.yaml:14:5: queues.support.ring_timout: unknown key 'ring_timout'. Did you mean "
        "'ring_timeout'?",
        "ivr.yaml:15:19: queues.support.ring_timeout: must be at most 600, got 900",
        "ivr.yaml:16:17: queues.support.join_empty: expected true or false, got text",
        "ivr.yaml:17:15: queues.support.overflow: a queue cannot send callers to itself "
        "('support')",
        "ivr.yaml:19:18: queues.sales.tiers.6: tier '6' is not a support level 1 to 5",
        "ivr.yaml:20:18: queues.sales.escalate_to: unknown queue 'suport'. Did you mean "
        "'support'?",
        "ivr.yaml:22:12: log_level: 'loud' is not one of debug, info, warning, error",
        "ivr.yaml:23:57: metrics.service_level_window: must be at least 60, got 10",
        "ivr.yaml:24:16: feature_codes: feature codes must differ from each other",
        "ivr.yaml:25:17: retention_days: expected a whole number, got a number",
    ]


def test_metrics_can_be_switched_off_in_every_spelling(tmp_path):
    for spelling in ("off", '"off"', "false"):
        assert config(tmp_path, f"metrics: {spelling}\n").metrics is None, spelling
    assert str(config(tmp_path, "metrics: 127.0.0.1:9480\n").metrics) == "127.0.0.1:9480"
    assert problems(tmp_path, "metrics: on\n") == [
        "ivr.yaml:4:10: metrics: expected text, got true/false"]


CALLBACK_RULES = """\
dial_out:
  - {pattern: "^0[1-9][0-9]{5,9}$", uri: "sip:{number}@192.0.2.1"}
  - {pattern: "^3[0-9]{8,9}$", uri: "sip:{number}@192.0.2.1", callbacks: true}
  - {pattern: "^\\\\+393[0-9]{8,9}$", uri: "sip:{number}@192.0.2.9", callbacks: true,
     agent_transfers: true}
"""


def test_callbacks_dial_only_numbers_a_dial_out_rule_with_callbacks_allows(tmp_path):
    c = config(tmp_path, CALLBACK_RULES)
    assert [(r.callbacks, r.agent_transfers) for r in c.dial_out] == [
        (False, False), (True, False), (True, True)]
    assert c.callback_target("3331234567") == "sip:3331234567@192.0.2.1"
    assert c.callback_target("+393331234567") == "sip:+393331234567@192.0.2.9"
    # a forged caller ID: premium, international, directory services, a landline that only a
    # transfer rule allows, service codes, anything that is not keys of a phone
    for number in ("899123456", "+39899123456", "00390612345678", "0012125550100", "1254",
                   "178123456", "0612345678", "", "*21*3331234567#", "3331234567@evil",
                   "333123456\n7", "33312345678901"):
        assert c.callback_target(number) is None, number
    assert c.transfer_target("3331234567") == "sip:3331234567@192.0.2.1"  # flows too, as ever


def test_the_old_callback_uri_is_refused_with_what_to_write_instead(tmp_path):
    """It called back any caller ID, forged premium numbers too: secure by default, a config
    that had it stops at load and says how to allow callbacks."""
    assert problems(tmp_path, 'callback: "sip:{number}@192.0.2.1"\n') == [
        "ivr.yaml:4:11: callback: 'callback' was removed: a callback dials only a number a "
        "dial_out rule allows: add 'callbacks: true' to a rule whose pattern matches the "
        "callers you will call back, e.g. dial_out: [{pattern: '^3[0-9]{8,9}$', uri: "
        "'sip:{number}@192.0.2.1', callbacks: true}] (Italian mobiles through the gateway)"]
    assert problems(tmp_path, CALLBACK_RULES.replace("callbacks: true}", "callbacks: yes}")
                    .replace("callbacks: true,", "callbacks: 1,")) == [
        "ivr.yaml:7:79: dial_out[2].callbacks: expected true or false, got a whole number"]


def test_missing_required_sections_and_music_on_hold(tmp_path):
    path = tmp_path / "ivr.yaml"
    path.write_text("sip: {user: ivr}\nmusic_on_hold: hold.wav\ntrunks: {}\n")
    with pytest.raises(DocumentError) as err:
        load_config(path)
    assert [str(p).replace(f"{tmp_path}/", "") for p in err.value.problems] == [
        "ivr.yaml:1:1: missing required key 'flow' (the flow of every call) or 'routes' (a "
        "flow per called number)",
        "ivr.yaml:1:6: sip: missing required key 'listen'",
        "ivr.yaml:2:16: music_on_hold: music on hold file 'hold.wav' does not exist",
        "ivr.yaml:3:9: trunks: configure at least one trunk: only trunk sources may place calls",
    ]


# -- ivr schema --config ---------------------------------------------------------------------------

def test_shipped_schema_is_what_ivr_schema_config_prints(capsys):
    assert main(["schema", "--config"]) == 0
    printed = capsys.readouterr().out
    assert printed == schema_text()
    assert (ROOT / "ivr.schema.json").read_text(encoding="utf-8") == printed, (
        "ivr.schema.json is stale: run 'ivr schema --config --output ivr.schema.json'")
    assert (ROOT / "ivr.yaml").read_text().startswith(
        "# yaml-language-server: $schema=ivr.schema.json\n")


def test_schema_config_output_writes_the_file(tmp_path, capsys):
    out = tmp_path / "ivr.schema.json"
    assert main(["schema", "--config", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == schema_text()
    assert capsys.readouterr().out == ""
    assert json.loads(out.read_text())["title"] == "Centralino appliance configuration"


def test_schema_is_a_valid_draft_07_schema():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft7Validator.check_schema(config_schema())
    assert config_schema()["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_schema_accepts_the_shipped_config_and_every_key():
    assert schema_errors((ROOT / "ivr.yaml").read_text()) == []
    assert schema_errors(FULL) == []
    assert schema_errors(BASE + "metrics: off\n") == []
    assert schema_errors(NO_FLOW + 'routes: {"800 123 456": {flow: a.yaml, language: it}, '
                                   "default: {flow: b.yaml}}\n") == []


def test_schema_refuses_what_the_loader_refuses():
    assert schema_errors(BASE + "queus: {}\n") == [
        ": Additional properties are not allowed ('queus' was unexpected)"]
    assert schema_errors(BASE.replace("5080}", "5080, max_calls: many}")) == [
        "sip/max_calls: 'many' is not of type 'integer'"]
    assert schema_errors(BASE.replace("5080}", "5080, rtp_port: 80}")) == [
        "sip/rtp_port: 80 is less than the minimum of 1024"]
    assert schema_errors(BASE + "queues: {q: {agents: [], strategy: ring_al}}\n") == [
        "queues/q/strategy: 'ring_al' is not one of ['longest_idle', 'ring_all', "
        "'round_robin', 'fewest_calls', 'top_down', 'random']"]
    assert schema_errors(BASE + "queues: {q: {wrap_up: 5}}\n") == [
        "queues/q: {'wrap_up': 5} is not valid under any of the given schemas"]
    assert schema_errors("sip: {listen: 127.0.0.1:5080}\nflow: f.yaml\n") == [
        ": 'trunks' is a required property"]
    assert schema_errors(BASE + "extensions: {'20x': {uri: 'sip:a@127.0.0.1'}}\n") == [
        "extensions: '20x' does not match '^[0-9*#+]{1,32}$'"]
    assert schema_errors(NO_FLOW + "routes: {'800-ABC': {flow: a.yaml}}\n") == [
        "routes: '800-ABC' does not match '^(default|[0-9*#+() .-]{1,64})$'"]
    assert schema_errors(NO_FLOW + "routes: {'800': {flow: a.yaml, language: Italian}}\n") == [
        "routes/800/language: 'Italian' does not match '^[a-z]{2,3}(-[a-z0-9]+)?$'"]
    assert schema_errors(NO_FLOW) == [
        ": {'sip': {'listen': '127.0.0.1:5080'}, 'trunks': {'gw': {'sources': ['127.0.0.1']}}} "
        "is not valid under any of the given schemas"]
    assert schema_errors(BASE + "callback: 'sip:{number}@192.0.2.1'\n") == [
        "callback: 'sip:{number}@192.0.2.1' should not be valid under {}"]
    assert schema_errors(BASE + "dial_out: [{pattern: '^3', uri: 'sip:{number}@gw', "
                                "callbacks: 'yes'}]\n") == [
        "dial_out/0/callbacks: 'yes' is not of type 'boolean'"]


def test_every_key_of_the_spec_has_a_description():
    def walk(node: dict, path: str) -> None:
        if node.get("type") == "object" or "properties" in node:
            for name, sub in node.get("properties", {}).items():
                assert sub.get("description"), f"{path}.{name}"
                walk(sub, f"{path}.{name}")
            if isinstance(node.get("additionalProperties"), dict):
                walk(node["additionalProperties"], f"{path}.*")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")
        for sub in node.get("anyOf", []):
            walk(sub, path)

    walk(config_schema(), "")


def test_a_rule_with_flows_false_opens_no_flow_transfer(tmp_path):
    c = config(tmp_path, """\
dial_out:
  - {pattern: "^3[0-9]{8,9}$", uri: "sip:{number}@192.0.2.1", callbacks: true, flows: false}
  - {pattern: "^0[1-9][0-9]{5,9}$", uri: "sip:{number}@192.0.2.1"}
""")
    assert c.callback_target("3331234567") == "sip:3331234567@192.0.2.1"
    assert c.transfer_target("3331234567") is None
    assert c.transfer_target("0612345678") == "sip:0612345678@192.0.2.1"


# -- the web console and queue scripts ------------------------------------------------------------

def test_the_console_is_on_by_default_on_loopback_and_takes_a_short_form_or_off(tmp_path):
    console = config(tmp_path, "").console
    assert console is not None
    assert (str(console.listen), console.tls_cert, console.lang, console.session_hours) == (
        "127.0.0.1:9481", None, "it", 12.0)
    short = config(tmp_path, "console: 127.0.0.1:9500\n").console
    assert short is not None
    assert str(short.listen) == "127.0.0.1:9500"
    for spelling in ("off", "false", "no"):
        assert config(tmp_path, f"console: {spelling}\n").console is None, spelling


def test_the_console_section_takes_tls_language_and_session_length(tmp_path):
    (tmp_path / "c.pem").write_text("cert")
    (tmp_path / "k.pem").write_text("key")
    console = config(tmp_path, "console: {listen: 0.0.0.0:8443, tls: {cert: c.pem, key: k.pem}, "
                               "lang: en, session_hours: 8}\n").console
    assert console is not None
    assert (str(console.listen), console.tls_cert, console.tls_key, console.lang,
            console.session_hours) == ("0.0.0.0:8443", tmp_path / "c.pem", tmp_path / "k.pem",
                                       "en", 8.0)


def test_console_problems_are_located_with_a_hint(tmp_path):
    assert problems(tmp_path, "console: {listen: 127.0.0.1:9481, lang: fr, session_hour: 3, "
                              "tls: {cert: none.pem}}\n") == [
        "ivr.yaml:4:41: console.lang: 'fr' is not one of it, en",
        "ivr.yaml:4:45: console.session_hour: unknown key 'session_hour'. "
        "Did you mean 'session_hours'?",
        "ivr.yaml:4:67: console.tls: missing required key 'key'",
        "ivr.yaml:4:74: console.tls.cert: certificate file 'none.pem' does not exist",
    ]
    assert problems(tmp_path, "console: localhost:80\n") == [
        "ivr.yaml:4:10: console: 'localhost' is not an IP address (give the address to listen "
        "on)"]
    assert problems(tmp_path, "console: {lang: en}\n")[0].startswith("ivr.yaml:4:10: console: ")


def test_a_queue_takes_a_multi_line_script(tmp_path):
    c = config(tmp_path, "agents: {anna: {uri: 'sip:anna@127.0.0.1:5070'}}\n"
                         "queues:\n  support:\n    agents: [anna]\n    script: |\n"
                         "      Hello {caller}\n      ticket {ticket}\n"
                         "  sales: {agents: [anna]}\n")
    assert c.queues["support"].script == "Hello {caller}\nticket {ticket}\n"
    assert c.queues["sales"].script == ""
    assert problems(tmp_path, "agents: {anna: {uri: 'sip:anna@127.0.0.1:5070'}}\n"
                              "queues: {support: {agents: [anna], script: [a, b]}}\n") == [
        "ivr.yaml:5:44: queues.support.script: expected text, got a list"]


def test_the_shipped_config_has_a_console_and_scripts_on_its_queues():
    c = load_config(ROOT / "ivr.yaml")
    assert c.console is not None
    assert str(c.console.listen) == "127.0.0.1:9481"
    assert all(q.script for q in c.queues.values())

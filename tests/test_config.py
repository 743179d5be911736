"""ivr.yaml: transfer destinations (extensions, dial_out rules) and the recordings folder."""

from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.yamlsrc import DocumentError

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
    assert c.extensions == {} and c.dial_out == ()
    assert c.transfer_target("201") is None
    assert c.recordings == tmp_path / "var" / "recordings"
    assert config(tmp_path, "recordings: /srv/voicemail\n").recordings == Path("/srv/voicemail")
    assert config(tmp_path, "recordings: vm\n").recordings == tmp_path / "vm"


def test_shipped_config_dials_nothing_out():
    c = load_config(ROOT / "ivr.yaml")
    assert c.dial_out == () and c.extensions == {}
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
        "ivr.yaml:18:5: dial_out[4].trunk: unknown key 'trunk'; expected one of: description, "
        "pattern, uri",
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

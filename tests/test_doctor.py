"""ivr doctor --security: the attack surface of small configurations, finding by finding."""

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.config import DialRule, load_config
from ivr.doctor import Automaton, Finding, format_report, security_report, worst_level

ROOT = Path(__file__).resolve().parent.parent


def report(tmp_path: Path, text: str, mode: int = 0o600) -> list[Finding]:
    (tmp_path / "flows").mkdir(exist_ok=True)
    flow = tmp_path / "flows" / "demo.yaml"
    flow.write_text("# a flow\n")
    flow.chmod(0o644)
    path = tmp_path / "ivr.yaml"
    path.write_text(text)
    path.chmod(mode)
    return security_report(load_config(path), path)


def facts(findings: list[Finding], area: str | None = None) -> list[tuple[str, str]]:
    return [(f.level, f.text) for f in findings if area is None or f.area == area]


LOOPBACK = """\
sip: {listen: 127.0.0.1:5080}
trunks: {loopback: {sources: [127.0.0.1], lines: 30}}
agents:
  anna: {uri: "sip:anna@127.0.0.1:5070"}
flow: flows/demo.yaml
metrics: 127.0.0.1:9480
"""


def test_a_loopback_switchboard_is_all_ok(tmp_path):
    findings = report(tmp_path, LOOPBACK, mode=0o644)
    assert facts(findings) == [
        ("ok", "trunk 'loopback': calls from 127.0.0.1; at most 30 at once"),
        ("ok", "every called number plays flow demo.yaml"),
        ("ok", "transfers dial nothing: no extensions, no dial_out rules"),
        ("ok", "agents' phones may transfer callers to nothing (every REFER is refused)"),
        ("ok", "callbacks dial nothing: no dial_out rule has 'callbacks: true'"),
        ("ok", "agents' phones rung: anna (sip:anna@127.0.0.1:5070)"),
        ("ok", "no SIP edge: no phone registers; agents are rung at the addresses in the "
               "configuration"),
        ("ok", "SIP (UDP) on 127.0.0.1:5080: loopback only"),
        ("ok", "RTP (UDP) ports 20000-20999 on 127.0.0.1: loopback only"),
        ("ok", "metrics (HTTP, no password) on 127.0.0.1:9480: loopback only"),
        ("ok", "web console (HTTP) on 127.0.0.1:9481: loopback only"),
        ("ok", "ivr.yaml holds no password (mode 0644)"),
    ]
    assert worst_level(findings) == "ok"
    assert [f.area for f in findings] == ["trunks", "trunks", "dialling", "dialling", "dialling",
                                          "dialling", "registration", "ports", "ports", "ports",
                                          "ports", "files"]


def test_the_shipped_configuration_has_no_danger():
    findings = security_report(load_config(ROOT / "ivr.yaml"), ROOT / "ivr.yaml")
    assert [f for f in findings if f.level == "danger"] == []


OPEN = """\
sip: {listen: 0.0.0.0:5080}
trunks:
  gw: {sources: [0.0.0.0/0]}
  branch: {sources: [10.0.0.0/8, 192.0.2.1], lines: 4}
agents:
  anna: {uri: "sip:00390699999999@10.1.2.3"}
extensions:
  "201": {uri: "sip:reception@10.0.0.20"}
  "202": {uri: "sip:+393331234567@192.0.2.1"}
dial_out:
  - {pattern: "^0[1-9][0-9]{5,9}$", uri: "sip:{number}@192.0.2.1"}
  - {pattern: "\\\\d+", uri: "sip:{number}@192.0.2.1", callbacks: true}
metrics: 192.0.2.5:9480
flow: flows/demo.yaml
"""


def test_an_open_switchboard_is_reported_area_by_area(tmp_path):
    findings = report(tmp_path, OPEN)
    assert facts(findings, "trunks") == [
        ("ok", "trunk 'gw': calls from 0.0.0.0/0; at most 30 at once"),
        ("danger", "trunk 'gw' takes calls from 0.0.0.0/0: anyone who reaches the switchboard "
                   "can call in and use its transfers and callbacks"),
        ("ok", "trunk 'branch': calls from 10.0.0.0/8, 192.0.2.1; at most 4 at once"),
        ("warning", "trunk 'branch' takes calls from 10.0.0.0/8 (16,777,216 addresses): give "
                    "the gateway's own address"),
        ("ok", "every called number plays flow demo.yaml"),
    ]
    assert facts(findings, "dialling") == [
        ("ok", "transfers may dial extension '201': sip:reception@10.0.0.20"),
        ("ok", "transfers may dial extension '202': sip:+393331234567@192.0.2.1 (a number "
               "through trunk 'gw')"),
        ("ok", "dial_out[0] '^0[1-9][0-9]{5,9}$' -> sip:{number}@192.0.2.1 (for flows' "
               "transfers): numbers such as 0100000; no international, satellite or "
               "premium number"),
        ("danger", "dial_out[1] '\\d+' -> sip:{number}@192.0.2.1 (for flows' transfers, "
                   "callbacks) allows "
                   "international numbers "
                   "(e.g. 001); satellite numbers (e.g. 00870); premium numbers (e.g. 890000); "
                   "numbers starting with any digit; numbers of 18 keys or more (e.g. "
                   "000000000000000000)"),
        ("ok", "agents' phones may transfer callers (REFER) to extensions 201, 202; nothing "
               "else"),
        ("ok", "callbacks may dial a waiting caller's number (its caller ID, which can be "
               "forged) only if dial_out[1] allows it; nothing else"),
        ("warning", "agent 'anna' is rung at sip:00390699999999@10.1.2.3, a number through "
                    "trunk 'gw': its calls go out through the gateway and may cost money"),
        ("ok", "agents' phones rung: anna (sip:00390699999999@10.1.2.3)"),
    ]
    assert facts(findings, "ports") == [
        ("warning", "SIP (UDP) on 0.0.0.0:5080: listens on every interface; give the address "
                    "it must be reached at"),
        ("warning", "RTP (UDP) ports 20000-20999 on 0.0.0.0: listens on every interface; give "
                    "the address it must be reached at"),
        ("warning", "metrics (HTTP, no password) on 192.0.2.5:9480: readable by anyone who "
                    "reaches that address; keep it on loopback or a management network"),
        ("ok", "web console (HTTP) on 127.0.0.1:9481: loopback only"),
    ]
    assert worst_level(findings) == "danger"


def test_routes_say_what_each_called_number_reaches(tmp_path):
    (tmp_path / "office.yaml").write_text("# a flow\n")
    routes = """\
routes:
  "800 123 456": {flow: flows/demo.yaml, language: it}
  "+39 06 1234": {flow: office.yaml}
"""
    text = LOOPBACK.replace("flow: flows/demo.yaml\n", routes)
    assert facts(report(tmp_path, text), "trunks")[-1] == (
        "ok", "called numbers: 800123456 -> demo.yaml (it), +39061234 -> office.yaml, any "
              "other number is refused (404)")
    text = LOOPBACK.replace("flow: flows/demo.yaml\n",
                            routes + "  default: {flow: office.yaml}\n")
    assert facts(report(tmp_path, text), "trunks")[-1] == (
        "ok", "called numbers: 800123456 -> demo.yaml (it), +39061234 -> office.yaml, any "
              "other number -> office.yaml")


def test_a_network_address_with_an_open_trunk_is_a_warning(tmp_path):
    findings = report(tmp_path, """\
sip: {listen: 192.0.2.5:5080}
trunks: {gw: {sources: ["::/0", 192.0.2.1]}}
flow: flows/demo.yaml
""")
    assert facts(findings, "ports")[0] == (
        "warning", "SIP (UDP) on 192.0.2.5:5080: reachable from the network, and a trunk takes "
                   "calls from any address")


EDGE = """\
sip: {listen: 192.0.2.5:5080}
trunks:
  gw: {sources: [192.0.2.1, 192.0.2.5]}
agents:
  anna: {uri: "sip:anna@192.0.2.5:5060", password: anna2024}
  luca: {uri: "sip:luca@192.0.2.5:5060", password: "luca-and-the-long-one"}
  sara: {uri: "sip:sara@192.0.2.5:5060", password: "violet staple orbit"}
  marco: {uri: "sip:marco@192.0.2.40:5060"}
flow: flows/demo.yaml
store: calls.db
metrics: off
edge: {listen: 192.0.2.5:5060}
"""


def test_who_may_register_at_the_edge(tmp_path):
    findings = report(tmp_path, EDGE)
    assert facts(findings, "registration") == [
        ("ok", "phones register at the edge 192.0.2.5:5060 (realm centralino) with a password: "
               "anna, luca, sara"),
        ("warning", "phones may register from any address: anyone who reaches 192.0.2.5:5060 "
                    "can try agents' passwords (set edge.agent_sources)"),
        ("warning", "agent 'anna' has a weak password (shorter than 12 characters)"),
        ("warning", "agent 'luca' has a weak password (it contains the agent's name)"),
        ("warning", "agent 'marco' has no password behind the edge: its phone cannot register, "
                    "and its calls go straight to sip:marco@192.0.2.40:5060"),
    ]
    assert facts(findings, "ports") == [
        ("ok", "SIP (UDP) on 192.0.2.5:5080: calls only from trunk sources"),
        ("ok", "RTP (UDP) ports 20000-20999 on 192.0.2.5: media of calls from trunk sources"),
        ("ok", "metrics are off"),
        ("ok", "web console (HTTP) on 127.0.0.1:9481: loopback only"),
        ("ok", "edge SIP (UDP) on 192.0.2.5:5060: calls only from trunk sources, phones "
               "register with a password"),
        ("ok", "edge JSON-RPC (HTTP) on 127.0.0.1:5071: loopback only"),
    ]
    no_secret = " ".join(f.text for f in findings)
    for password in ("anna2024", "luca-and-the-long-one", "violet staple orbit"):
        assert password not in no_secret


def test_registration_limited_to_a_network(tmp_path):
    text = EDGE.replace("edge: {listen: 192.0.2.5:5060}",
                        "edge: {listen: 192.0.2.5:5060, agent_sources: [192.0.2.32/27]}")
    assert ("ok", "phones may register only from 192.0.2.32/27") in facts(
        report(tmp_path, text), "registration")


def test_file_modes(tmp_path):
    assert facts(report(tmp_path, EDGE, mode=0o644), "files") == [
        ("warning", "ivr.yaml is readable by every user (mode 0644) and holds agents' "
                    "passwords: chmod 600, or 640 with the service's group")]
    assert facts(report(tmp_path, EDGE, mode=0o640), "files") == [
        ("ok", "ivr.yaml holds agents' passwords and other users cannot read it (mode 0640)")]
    assert facts(report(tmp_path, LOOPBACK, mode=0o666), "files") == [
        ("danger", "ivr.yaml can be changed by every user (mode 0666): chmod 600")]
    # a flow anyone can change, call records anyone can read
    report(tmp_path, EDGE)
    (tmp_path / "flows" / "demo.yaml").chmod(0o666)
    (tmp_path / "calls.db").write_bytes(b"")
    (tmp_path / "calls.db").chmod(0o644)
    findings = security_report(load_config(tmp_path / "ivr.yaml"), tmp_path / "ivr.yaml")
    assert facts(findings, "files") == [
        ("ok", "ivr.yaml holds agents' passwords and other users cannot read it (mode 0600)"),
        ("danger", "flow demo.yaml can be changed by every user (mode 0666): a flow decides "
                   "what callers may dial"),
        ("warning", "call records calls.db are readable by every user (mode 0644): they hold "
                    "callers' numbers"),
    ]


RULES = [
    ("^0[1-9][0-9]{5,9}$", "ok", "numbers such as 0100000; no international, satellite or "
                                 "premium number"),
    ("112", "ok", "numbers such as 112; no international, satellite or premium number"),
    ("1[0-9]{2}", "ok", "numbers such as 100; no international, satellite or premium number"),
    ("^0[1-9]\\d{5,9}$|^3\\d{9}$", "ok", "numbers such as 0100000; no international, "
                                         "satellite or premium number"),
    ("^(00|\\+)39[0-9]{6,11}$", "danger", "allows premium numbers (e.g. 0039890000)"),
    ("(0|00)\\d{9}", "danger", "allows international numbers (e.g. 0010000000); satellite "
                               "numbers (e.g. 0087000000); premium numbers (e.g. 0039890000)"),
    ("0\\d+", "danger", "allows international numbers (e.g. 001); satellite numbers (e.g. "
                        "00870); premium numbers (e.g. 0039890000); numbers of 18 keys or more "
                        "(e.g. 000000000000000000)"),
    ("\\+88[12]\\d{6,9}", "danger", "allows international numbers (e.g. +881000000); satellite "
                                    "numbers (e.g. +881000000)"),
    ("[^8]\\d{9}", "danger", "allows international numbers (e.g. 0010000000); satellite "
                             "numbers (e.g. 0087000000); premium numbers (e.g. 1660000000); "
                             "the keys * and # of service codes, such as call forwarding (e.g. "
                             "*000000000)"),
    (".*", "danger", "allows international numbers (e.g. 001); satellite numbers (e.g. 00870); "
                     "premium numbers (e.g. 890000); numbers starting with any digit; numbers "
                     "of 18 keys or more (e.g. 000000000000000000); the keys * and # of service "
                     "codes, such as call forwarding (e.g. *)"),
    ("[0-9]{10}", "danger", "allows international numbers (e.g. 0010000000); satellite numbers "
                            "(e.g. 0087000000); premium numbers (e.g. 8900000000); numbers "
                            "starting with any digit"),
    ("[*#]\\d+#", "warning", "is broader than it looks: numbers of 18 keys or more (e.g. "
                             "*0000000000000000#); the keys * and # of service codes, such as "
                             "call forwarding (e.g. *0#)"),
    ("^(?!00)\\d+$", "warning", "cannot be checked (a look-ahead or look-behind); keep patterns "
                                "to digits, classes, groups and counts"),
    ("\\b0612\\b", "warning", "cannot be checked (a word boundary); keep patterns to digits, "
                              "classes, groups and counts"),
    ("(0)\\d{6}\\1", "warning", "cannot be checked (a back-reference); keep patterns to "
                                "digits, classes, groups and counts"),
    ("(\\d{2}){40}", "warning", "allows no number at all"),
]


@pytest.mark.parametrize(("pattern", "level", "text"), RULES)
def test_dial_out_rules_are_judged_by_what_they_accept(tmp_path, pattern, level, text):
    report(tmp_path, LOOPBACK)
    rule = DialRule(re.compile(pattern), "sip:{number}@192.0.2.1")
    config = dataclasses.replace(load_config(tmp_path / "ivr.yaml"), dial_out=(rule,))
    [finding] = [f for f in security_report(config, tmp_path / "ivr.yaml")
                 if f.text.startswith("dial_out[0]")]
    head = f"dial_out[0] '{pattern}' -> sip:{{number}}@192.0.2.1 (for flows' transfers)"
    separator = ": " if level == "ok" or text.startswith("cannot") else " "
    assert (finding.level, finding.text) == (level, head + separator + text)


def test_every_example_is_a_number_the_rule_really_dials():
    """The examples come from the automaton: each must be accepted by the pattern itself."""
    for pattern, _, text in RULES:
        rule = DialRule(re.compile(pattern), "sip:{number}@192.0.2.1")
        for example in re.findall(r"(?:e\.g\.|such as) ([0-9*#+]+)", text):
            assert rule.target(example) is not None, (pattern, example)


def test_format_report_groups_by_area_and_counts():
    findings = [
        Finding("ok", "ports", "SIP (UDP) on 127.0.0.1:5080: loopback only"),
        Finding("danger", "trunks", "trunk 'gw' takes calls from 0.0.0.0/0"),
        Finding("warning", "ports", "metrics on 192.0.2.5:9480"),
    ]
    assert format_report(findings) == (
        "Trunks: who may call in\n"
        "  DANGER   trunk 'gw' takes calls from 0.0.0.0/0\n"
        "\n"
        "Open ports\n"
        "  ok       SIP (UDP) on 127.0.0.1:5080: loopback only\n"
        "  WARNING  metrics on 192.0.2.5:9480\n"
        "\n"
        "1 danger, 1 warning, 1 ok\n")
    assert format_report([]) == "0 dangers, 0 warnings, 0 ok\n"
    assert worst_level([]) == "ok"
    assert worst_level(findings[:1]) == "ok"
    assert worst_level(findings[2:]) == "warning"


# -- the automaton agrees with the re module -------------------------------------------------------

ATOMS = st.sampled_from(["0", "1", "3", "8", "9", "00", "39", "[0-9]", "[1-9]", "\\d", ".",
                         "[^8]", "\\+", "[*#]", "\\D", "\\w"])


def _pattern(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, children).map("".join),
        st.tuples(children, children).map(lambda ab: f"(?:{ab[0]}|{ab[1]})"),
        st.tuples(children, st.integers(0, 3), st.integers(0, 3)).map(
            lambda t: f"(?:{t[0]}){{{min(t[1], t[2])},{max(t[1], t[2])}}}"),
        children.map(lambda a: f"(?:{a})?"),
        children.map(lambda a: f"(?:{a})*"),
        children.map(lambda a: f"({a})+"),
    )


PATTERNS = st.tuples(st.booleans(), st.recursive(ATOMS, _pattern, max_leaves=6),
                     st.booleans()).map(lambda t: ("^" if t[0] else "") + t[1]
                                        + ("$" if t[2] else ""))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PATTERNS, st.lists(st.text(alphabet="0123456789*#+", min_size=1, max_size=10),
                          min_size=1, max_size=8))
def test_the_automaton_accepts_exactly_what_fullmatch_accepts(pattern, numbers):
    nfa = Automaton.of(re.compile(pattern))
    for number in numbers:
        expected = re.fullmatch(pattern, number) is not None
        assert (nfa.search(number, len(number)) == number) is expected, (pattern, number)
    example = nfa.search("")
    if example is not None:
        assert re.fullmatch(pattern, example), (pattern, example)


AGENT_TRANSFERS = """\
sip: {listen: 127.0.0.1:5080}
trunks: {gw: {sources: [192.0.2.1], lines: 30}}
agents:
  anna: {uri: "sip:anna@127.0.0.1:5070"}
queues:
  support: {agents: [anna], number: "700"}
  sales: {agents: [anna]}
extensions:
  "201": {uri: "sip:reception@127.0.0.1:5090"}
dial_out:
  - {pattern: "^0[1-9][0-9]{5,9}$", uri: "sip:{number}@192.0.2.1"}
  - {pattern: "^06[0-9]{6,8}$", uri: "sip:{number}@192.0.2.1", agent_transfers: true}
flow: flows/demo.yaml
"""


def test_what_agents_may_transfer_to_is_listed(tmp_path):
    findings = report(tmp_path, AGENT_TRANSFERS)
    dialling = facts(findings, "dialling")
    assert ("ok", "dial_out[1] '^06[0-9]{6,8}$' -> sip:{number}@192.0.2.1 (for flows' "
                  "transfers, agents' transfers): numbers such as 06000000; no "
                  "international, satellite or premium number") in dialling
    assert ("ok", "agents' phones may transfer callers (REFER) to extension 201; queues support "
                  "(number 700), sales; the numbers of dial_out[1]; nothing else") in dialling


CALLBACKS = """\
sip: {listen: 127.0.0.1:5080}
trunks: {gw: {sources: [192.0.2.1]}}
dial_out:
  - {pattern: "^0[1-9][0-9]{5,9}$", uri: "sip:{number}@192.0.2.1"}
  - {pattern: "^3[0-9]{8,9}$", uri: "sip:{number}@192.0.2.1", callbacks: true, flows: false}
  - {pattern: "^\\\\+39[0-9]+$", uri: "sip:{number}@192.0.2.1", callbacks: true,
     agent_transfers: true}
flow: flows/demo.yaml
"""


def test_what_callbacks_may_dial_is_listed_and_broad_rules_are_judged(tmp_path):
    dialling = facts(report(tmp_path, CALLBACKS), "dialling")
    assert dialling[:4] == [
        ("ok", "dial_out[0] '^0[1-9][0-9]{5,9}$' -> sip:{number}@192.0.2.1 (for flows' "
               "transfers): numbers such as 0100000; no international, satellite or "
               "premium number"),
        ("ok", "dial_out[1] '^3[0-9]{8,9}$' -> sip:{number}@192.0.2.1 (for callbacks): "
               "numbers such as 300000000; no international, satellite or premium number"),
        ("danger", "dial_out[2] '^\\+39[0-9]+$' -> sip:{number}@192.0.2.1 (for flows' "
                   "transfers, agents' transfers, callbacks) allows premium numbers "
                   "(e.g. +39890000); numbers of 18 keys or more (e.g. +39000000000000000)"),
        ("ok", "agents' phones may transfer callers (REFER) to the numbers of dial_out[2]; "
               "nothing else"),
    ]
    assert dialling[4] == ("ok", "callbacks may dial a waiting caller's number (its caller ID, "
                                 "which can be forged) only if dial_out[1] or dial_out[2] allows "
                                 "it; nothing else")

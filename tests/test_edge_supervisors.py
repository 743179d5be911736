"""Supervisors whose phones register with the edge: their passwords, the generated Kamailio
configuration (their calls authenticated, a trunk's call From their name refused), the
switchboard taking their calls as theirs, and what ``ivr doctor --security`` says."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.doctor import security_report
from ivr.edge import Address, EdgeSettings, kamailio_config, settings_from_yaml
from ivr.yamlsrc import DocumentError

IVR_YAML = """\
sip:
  listen: 127.0.0.1:5080
trunks:
  gateway:
    sources: [192.0.2.1, 127.0.0.1]
queues:
  support: {agents: [anna]}
agents:
  anna:
    uri: sip:anna@127.0.0.1:5060
    password: tulip-orbit-canyon
supervisors:
  laura:
    uri: sip:laura@127.0.0.1:5060
    password: velvet harbor lamp
    queues: [support]
edge:
  listen: 127.0.0.1:5060
  trunk_sources: [192.0.2.1]
flow: flows/demo.yaml
store: calls.db
metrics: off
"""


def write(tmp_path: Path, text: str, secrets: str | None = None) -> Path:
    (tmp_path / "flows").mkdir(exist_ok=True)
    (tmp_path / "flows" / "demo.yaml").write_text("# a flow\n")
    path = tmp_path / "ivr.yaml"
    path.write_text(text)
    path.chmod(0o600)
    if secrets is not None:
        (tmp_path / "secrets.yaml").write_text(secrets)
        (tmp_path / "secrets.yaml").chmod(0o600)
    return path


# -- settings ----------------------------------------------------------------------------------

def test_a_supervisor_with_a_password_registers(tmp_path: Path) -> None:
    plan = settings_from_yaml(write(tmp_path, IVR_YAML))
    s = plan.settings
    assert dict(s.agents) == {"anna": "tulip-orbit-canyon"}
    assert dict(s.supervisors) == {"laura": "velvet harbor lamp"}
    assert s.users == {"anna": "tulip-orbit-canyon", "laura": "velvet harbor lamp"}
    assert plan.refusals == ()


def test_a_supervisors_password_from_the_secrets_file(tmp_path: Path) -> None:
    text = IVR_YAML.replace("    password: velvet harbor lamp\n", "").replace(
        "  trunk_sources:", "  secrets: secrets.yaml\n  trunk_sources:")
    plan = settings_from_yaml(write(tmp_path, text, 'laura: "copper meadow 71 kite"\n'))
    assert dict(plan.settings.supervisors) == {"laura": "copper meadow 71 kite"}


def test_a_supervisor_without_a_password_does_not_register(tmp_path: Path) -> None:
    text = IVR_YAML.replace("    password: velvet harbor lamp\n", "").replace(
        "sip:laura@127.0.0.1:5060", "sip:laura@192.0.2.30:5060")
    assert dict(settings_from_yaml(write(tmp_path, text)).settings.supervisors) == {}


@pytest.mark.parametrize(("old", "new", "where", "message"), [
    ("sip:laura@127.0.0.1:5060", "sip:laura@192.0.2.30:5060", "supervisors.laura.uri",
     "must know its calls there: uri: sip:laura@127.0.0.1:5060"),
    ("  laura:\n    uri: sip:laura@", "  anna:\n    uri: sip:anna@", "supervisors.anna",
     "'anna' is also an agent who registers"),
    ("    password: velvet harbor lamp", "    password: ''", "supervisors.laura.password",
     "the password is empty"),
])
def test_a_supervisor_that_cannot_register_is_located(tmp_path: Path, old: str, new: str,
                                                      where: str, message: str) -> None:
    assert old in IVR_YAML
    with pytest.raises(DocumentError) as caught:
        settings_from_yaml(write(tmp_path, IVR_YAML.replace(old, new, 1)))
    text = str(caught.value)
    assert re.search(rf"ivr\.yaml:\d+:\d+: {re.escape(where)}: .*{re.escape(message)}", text), text


def test_a_secrets_entry_of_nobody_is_located(tmp_path: Path) -> None:
    text = IVR_YAML.replace("  trunk_sources:", "  secrets: secrets.yaml\n  trunk_sources:")
    with pytest.raises(DocumentError, match=r"secrets.yaml:1:7: lara: 'lara' is not an agent "
                                            r"or supervisor of ivr.yaml.*laura"):
        settings_from_yaml(write(tmp_path, text, 'lara: "copper meadow 71 kite"\n'))


def test_a_weak_supervisor_password_is_refused_by_ivr_edge(tmp_path: Path) -> None:
    plan = settings_from_yaml(write(tmp_path, IVR_YAML.replace("velvet harbor lamp",
                                                               "laura2024!!!")))
    (refusal,) = plan.refusals
    assert "supervisors.laura.password: supervisor 'laura': the password is the user name " \
           "with digits or symbols" in refusal


# -- kamailio.cfg --------------------------------------------------------------------------------

def _config() -> str:
    return kamailio_config(EdgeSettings(
        listen=Address("192.0.2.5", 5060), ivr=Address("127.0.0.1", 5080),
        trunk_sources=("198.51.100.7",), agents={"anna": "tulip orbit canyon"},
        supervisors={"laura": "velvet harbor lamp"}))


def test_the_supervisors_ha1_is_loaded_and_never_the_password() -> None:
    cfg = _config()
    ha1 = hashlib.md5(b"laura:centralino:velvet harbor lamp").hexdigest()
    assert f'$sht(agents=>laura) = "{ha1}";' in cfg
    assert "$sht(supervisors=>laura) = 1;" in cfg  # her log lines say "supervisor laura"
    assert "$sht(supervisors=>anna)" not in cfg
    assert "velvet harbor lamp" not in cfg


def test_a_phones_call_is_authenticated_then_goes_to_the_switchboard() -> None:
    cfg = _config()
    main = cfg[cfg.index("request_route {"):cfg.index("route[RELAY] {")]
    invite = main[main.index('if (is_method("INVITE")) {'):]
    # the switchboard's and the trunks' INVITEs first; anyone else must be a user's phone
    assert invite.index("route(TO_AGENT);") < invite.index("route(TO_IVR);") \
        < invite.index("route(FROM_PHONE);")
    # only feature codes, addressed to the edge: no call out through it
    assert 'if (uri == myself && $rU =~ "^[*][0-9A-Za-z._-]{1,72}$") {\n' \
           '            route(FROM_PHONE);' in invite
    phone = cfg[cfg.index("route[FROM_PHONE] {"):cfg.index("route[AUTH] {")]
    # the From user logs in (pv_auth_check with checks 1: the auth user is the From user)
    assert phone.index("$var(user) = $fU;\n    route(AUTH);") < phone.index("route(CONTACT);")
    assert 'pv_auth_check("centralino", "$var(ha1)", "1", "1");' in cfg
    assert phone.index("route(CONTACT);") < phone.index("route(AUTHOK);") \
        < phone.index("route(RELAY);")
    assert '$var(bad) = "not one Contact";' in phone
    assert '$sht(dialogs=>$ci::phone) = $si + ":" + $sp;' in phone
    assert '$rd = "127.0.0.1";\n    $rp = 5080;' in phone
    assert 'append_hf("X-Centralino-Source: $si\\r\\n");' in phone


def test_a_trunks_call_from_a_users_name_is_refused() -> None:
    cfg = _config()
    to_ivr = cfg[cfg.index("route[TO_IVR] {"):cfg.index("route[TO_AGENT] {")]
    check = to_ivr.index("if ($fU != $null && $sht(agents=>$fU) != $null) {")
    assert check < to_ivr.index("route(REFUSE);") < to_ivr.index("route(RELAY);")


# -- the switchboard ---------------------------------------------------------------------------

def test_the_switchboard_takes_a_call_from_the_edge_from_laura_as_lauras(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, IVR_YAML))
    assert config.edge is not None
    sup = config.supervisor_for("127.0.0.1", "laura")
    assert sup is not None
    assert sup.name == "laura"
    assert config.supervisor_for("127.0.0.1", "anna") is None
    assert config.supervisor_for("192.0.2.1", "laura") is None  # a trunk's own address


# -- ivr doctor --security ---------------------------------------------------------------------

def test_the_doctor_lists_a_supervisor_registering_at_the_edge(tmp_path: Path) -> None:
    path = write(tmp_path, IVR_YAML.replace("velvet harbor lamp", "laura-is-here-ok"))
    findings = [(f.level, f.text) for f in security_report(load_config(path), path)
                if f.area == "supervision"]
    assert findings == [
        ("ok", "supervisor 'laura' (sip:laura@127.0.0.1:5060) may listen to, whisper in and "
               "join calls of support (unannounced)"),
        ("ok", "supervisor 'laura' registers at the edge 127.0.0.1:5060 with a password: only "
               "a call the edge authenticated as theirs may use the supervision codes (the edge "
               "refuses a trunk's call From their name)"),
        ("warning", "supervisor 'laura' has a weak password (it contains the supervisor's "
                    "name)"),
    ]


def test_the_doctor_warns_of_a_supervisor_named_by_a_number(tmp_path: Path) -> None:
    path = write(tmp_path, IVR_YAML.replace("laura", "2001"))
    findings = [(f.level, f.text) for f in security_report(load_config(path), path)
                if f.area == "supervision"]
    assert ("warning", "supervisor '2001''s name is a number: the edge refuses a trunk's calls "
                       "From it, a caller's with that number too; give the supervisor a name") \
        in findings

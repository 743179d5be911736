"""A trunk's gateway profile: caller ID in E.164 (Italy), the called number cut or fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.driver_bench as driver_bench
from ivr.config import load_config
from ivr.config_spec import IVR_YAML
from ivr.numbers import normalise, to_e164_it
from tests.driver_bench import Bench, make_bench

GW = "  gw: {{sources: [192.0.2.1], lines: {lines}}}"


@pytest.mark.parametrize(("number", "e164"), [
    ("0612345678", "+390612345678"),      # Rome, the 0 kept
    ("0212345", "+390212345"),            # Milan, short subscriber number
    ("3471234567", "+393471234567"),      # mobile
    ("0041441234567", "+41441234567"),    # international prefix
    ("+390612345678", "+390612345678"),   # already E.164
    ("", ""),                             # withheld stays withheld
    ("112", "112"),                       # emergency / service numbers
    ("800123456", "800123456"),           # toll free: not a caller ID rule of ours
    ("*41", "*41"),
    ("0", "0"),
    ("00", "00"),
])
def test_to_e164_it(number: str, e164: str) -> None:
    assert to_e164_it(number) == e164
    assert to_e164_it(e164) == e164  # idempotent


def test_withheld_caller_ids_stay_withheld() -> None:
    for raw in ("anonymous", "Restricted", "", "sip:anonymous@anonymous.invalid"):
        number = normalise(raw)
        assert number == ""
        assert to_e164_it(number) == ""


def _bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: str) -> Bench:
    trunk = GW.replace("{lines}}}", "{lines}, " + profile + "}}")
    monkeypatch.setattr(driver_bench, "CONFIG", driver_bench.CONFIG.replace(GW, trunk))
    return make_bench(tmp_path)


def test_default_profile_keeps_numbers_as_sent(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    trunk = bench.core.config.trunks[0]
    assert (trunk.caller_id, trunk.called_strip, trunk.called_number) == ("as_sent", "", "")
    leg = bench.incoming(caller="0612345678", called="0039800")
    record = bench.record_of(leg)
    assert (record.caller, record.called) == ("0612345678", "0039800")


def test_e164_it_caller_and_stripped_called(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench(tmp_path, monkeypatch, "caller_id: e164_it, called_strip: '0039'")
    leg = bench.incoming(caller="3331234567", called="0039800")
    record = bench.record_of(leg)
    assert (record.caller, record.called) == ("+393331234567", "800")
    withheld = bench.record_of(bench.incoming(caller="anonymous", called="800"))
    assert (withheld.caller, withheld.called) == ("", "800")  # no prefix: kept


def test_fixed_called_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench(tmp_path, monkeypatch, "called_number: '+39061234567'")
    record = bench.record_of(bench.incoming(called="s"))
    assert record.called == "+39061234567"


def test_fixed_called_number_picks_the_route(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text("x")
    (tmp_path / "ivr.yaml").write_text(
        "sip: {listen: 127.0.0.1:5999}\n"
        "trunks:\n"
        "  fxo1: {sources: [192.0.2.1], lines: 4, called_number: '0612345'}\n"
        "  fxo2: {sources: [192.0.2.2], lines: 4, called_strip: '99'}\n"
        "routes:\n"
        "  '0612345': {flow: f.yaml}\n"
        "store: calls.db\n")
    config = load_config(tmp_path / "ivr.yaml")
    fxo1, fxo2 = config.trunks
    assert fxo1.lines == 4
    assert config.route_for(fxo1.called("anything")) is not None
    assert config.route_for("anything") is None
    assert config.route_for(fxo2.called("sip:990612345@gw")) is not None


@pytest.mark.parametrize(("key", "value"), [("caller_id", "e164_us"),
                                            ("called_strip", "abc"),
                                            ("called_number", "12x")])
def test_bad_profile_values_are_refused(tmp_path: Path, key: str, value: str) -> None:
    (tmp_path / "f.yaml").write_text("x")
    (tmp_path / "ivr.yaml").write_text(
        "sip: {listen: 127.0.0.1:5999}\n"
        f"trunks:\n  gw: {{sources: [192.0.2.1], {key}: '{value}'}}\n"
        "flow: f.yaml\nstore: calls.db\n")
    with pytest.raises(Exception, match=key):
        load_config(tmp_path / "ivr.yaml")
    assert IVR_YAML is not None

"""Loading flows: the shipped demo, and broken files with the exact messages they produce."""

from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.flow import DocumentError, Menu, Queue, Say, load_flow

ROOT = Path(__file__).resolve().parent.parent
BAD = Path(__file__).parent / "flows_bad"


def test_demo_flow_loads_with_its_queues():
    config = load_config(ROOT / "ivr.yaml")
    flow = load_flow(ROOT / "flows" / "demo.yaml", known_queues=config.queues)
    assert flow.name == "demo"
    assert flow.languages == ("it", "en")
    assert flow.start == "welcome"
    main = flow.nodes["main"]
    assert isinstance(main, Menu)
    assert set(main.options) == {"1", "2", "9"}
    assert main.options["9"].repeat
    assert isinstance(flow.nodes["support"], Queue)
    assert flow.nodes["support"].queue == "support"
    welcome = flow.nodes["welcome"]
    assert isinstance(welcome, Menu)
    assert welcome.options["2"].language == "en"
    say = main.prompt[0]
    assert isinstance(say, Say)
    assert "sales" in say.text_for("en")
    assert flow.queues() == {"support", "sales"}


def test_same_text_same_version(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text((ROOT / "flows" / "demo.yaml").read_text())
    v1 = load_flow(a).version
    assert load_flow(a).version == v1
    a.write_text(a.read_text().replace("Goodbye", "Bye"))
    assert load_flow(a).version != v1


def _cases():
    for path in sorted(BAD.glob("*.yaml")):
        yield pytest.param(path, id=path.stem)


@pytest.mark.parametrize("path", list(_cases()))
def test_broken_flow_gives_exact_messages(path):
    expected = path.with_suffix(".expected").read_text().strip().splitlines()
    with pytest.raises(DocumentError) as info:
        load_flow(path, known_queues=["support", "sales"], display_name=path.name)
    assert [str(p) for p in info.value.problems] == expected


def test_there_are_broken_flow_fixtures():
    assert len(list(BAD.glob("*.yaml"))) >= 30
    for path in BAD.glob("*.yaml"):
        assert path.with_suffix(".expected").exists(), path


def test_missing_file_is_a_problem_not_a_traceback(tmp_path):
    with pytest.raises(DocumentError, match=r"cannot read the file"):
        load_flow(tmp_path / "nope.yaml")


def test_huge_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("flow: x\n" + "# padding\n" * 300_000)
    with pytest.raises(DocumentError, match=r"the limit is"):
        load_flow(big)


def test_deep_nesting_is_refused(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("flow: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(DocumentError, match=r"nested deeper than"):
        load_flow(deep)

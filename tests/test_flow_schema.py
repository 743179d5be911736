"""`ivr schema`: the JSON Schema of the flow language, made from ivr/flow/spec.py.

The shipped flows/flow.schema.json must be what `ivr schema` prints now; the shipped flows must
pass it and broken ones fail it (with the jsonschema package, a test-only dependency).
"""

import json
from pathlib import Path

import pytest
import yaml

from ivr.cli import main
from ivr.flow import spec
from ivr.flow.schema import DRAFT, flow_schema, schema_text

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
SHIPPED_SCHEMA = FLOWS / "flow.schema.json"
BAD = Path(__file__).parent / "flows_bad"
# flows/*.test.yaml are scripted calls for `ivr test`, not flows
SHIPPED_FLOWS = sorted(p for p in FLOWS.rglob("*.yaml") if not p.name.endswith(".test.yaml"))


def _as_json(path: Path) -> object:
    """The document as an editor's YAML server sees it: keys and dates as text."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))


def _errors(document: object) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(flow_schema())
    return [f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
            for e in validator.iter_errors(document)]


def test_shipped_schema_is_what_ivr_schema_prints(capsys):
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == schema_text()
    assert SHIPPED_SCHEMA.read_text(encoding="utf-8") == printed, (
        "flows/flow.schema.json is stale: run 'ivr schema --output flows/flow.schema.json'")


def test_schema_output_writes_the_file(tmp_path, capsys):
    out = tmp_path / "flow.schema.json"
    assert main(["schema", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == schema_text()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("argv", [["schema", "--help"], ["graph", "--help"]])
def test_new_commands_have_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: ivr" in capsys.readouterr().out


def test_schema_is_a_valid_draft_07_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = flow_schema()
    assert schema["$schema"] == DRAFT
    jsonschema.Draft7Validator.check_schema(schema)


def test_schema_follows_the_spec():
    schema = flow_schema()
    assert list(schema["properties"]) == list(spec.TOP_KEYS)
    assert schema["required"] == [k.name for k in spec.TOP if k.required]
    assert schema["additionalProperties"] is False
    for key in spec.TOP:
        assert schema["properties"][key.name]["description"] == key.doc
    definitions = schema["definitions"]
    assert definitions["node"]["properties"]["type"]["enum"] == list(spec.NODE_TYPES)
    assert list(definitions["condition"]["properties"]) == list(spec.CONDITION_KEYS)
    for kind, (doc, keys) in spec.NODES.items():
        node = definitions[f"{kind}_node"]
        assert node["additionalProperties"] is False
        assert node["properties"]["type"] == {"const": kind, "description": doc}
        removed = spec.REMOVED.get(kind, {})
        assert list(node["properties"]) == list(spec.NODE_KEYS[kind]) + list(removed)
        assert node["required"] == ["type", *spec.REQUIRED[kind]]
        for key in keys:
            assert node["properties"][key.name]["description"] == key.doc
        for name, message in removed.items():
            prop = node["properties"][name]
            assert prop["not"] == {}
            assert prop["deprecated"] is True
            assert message in prop["description"]
            assert prop["deprecationMessage"] == message


def test_every_node_type_is_chosen_by_its_type():
    branches = flow_schema()["definitions"]["node"]["allOf"]
    chosen = {b["if"]["properties"]["type"]["const"]: b["then"]["$ref"] for b in branches}
    assert chosen == {kind: f"#/definitions/{kind}_node" for kind in spec.NODE_TYPES}


@pytest.mark.parametrize("path", SHIPPED_FLOWS, ids=lambda p: p.relative_to(FLOWS).as_posix())
def test_shipped_flow_names_the_schema_on_its_first_line(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    assert (path.parent / first.removeprefix(prefix)).resolve() == SHIPPED_SCHEMA


@pytest.mark.parametrize("path", SHIPPED_FLOWS, ids=lambda p: p.relative_to(FLOWS).as_posix())
def test_shipped_flow_passes_the_schema(path):
    assert _errors(_as_json(path)) == []


@pytest.mark.parametrize(("name", "where"), [
    ("typo_key", "nodes/a: Additional properties are not allowed ('timout' was unexpected)"),
    ("bad_type", "nodes/a/type: 'qeue' is not one of"),
    ("wrong_types", "nodes/a/timeout: 'soon' is not of type 'number'"),
    ("removed_key", "nodes/a/retries:"),
    ("bad_option_key", "nodes/a/options: 'one' does not match"),
    ("play_without_next", "nodes/a: 'next' is a required property"),
    ("say_and_file", "nodes/a/prompt:"),
    ("bad_override_state", "nodes/a/state: 'shut' is not one of"),
    ("not_mapping", ": ['just', 'a list'] is not of type 'object'"),
])
def test_broken_flow_fails_the_schema(name, where):
    errors = _errors(_as_json(BAD / f"{name}.yaml"))
    assert any(e.startswith(where) for e in errors), errors


def test_schema_takes_the_spellings_the_loader_takes(tmp_path):
    """Numbers where text is expected, day names in capitals, a list of prompts."""
    flow = tmp_path / "f.yaml"
    flow.write_text(
        "flow: 7\nstart: h\nnodes:\n"
        "  h: {type: hours, timezone: Europe/Rome, schedule: {Mon-Fri: '9:00-13:00',"
        " sat: [CLOSED]}, open: b, closed: t}\n"
        "  b: {type: branch, cases: [{when: {called: 800123}, next: t}], default: t}\n"
        "  t: {type: transfer, to: 201, prompt: ['Hold on', {say: One moment}]}\n",
        encoding="utf-8")
    from ivr.flow import load_flow

    load_flow(flow)
    assert _errors(_as_json(flow)) == []

"""`ivr graph`: a flow as Graphviz DOT (parsed back here, statement by statement), SVG and PNG."""

import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.flow import Subflow, load_flow, spec
from ivr.flow import graph as graph_module
from ivr.flow.graph import PROMPT_CHARS, SHAPES, START_ID, format_for, quote, to_dot

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "flows" / "demo.yaml"
OFFICE = ROOT / "flows" / "office.yaml"

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_NODE = re.compile(rf"^\s*{_QUOTED}(?: \[(.*)\])?;$")
_EDGE = re.compile(rf"^\s*{_QUOTED} -> {_QUOTED}(?: \[(.*)\])?;$")
_ATTR = re.compile(rf"(\w+)=(?:{_QUOTED}|([\w.]+))")


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def _attrs(text: str | None) -> dict[str, str]:
    return {m.group(1): _unquote(m.group(2)) if m.group(2) is not None else m.group(3)
            for m in _ATTR.finditer(text or "")}


def parse_dot(text: str) -> tuple[dict[str, dict[str, str]], list[tuple[str, str, dict]]]:
    """Node statements (ID -> attributes) and edges (tail, head, attributes) of our DOT."""
    nodes: dict[str, dict[str, str]] = {}
    edges: list[tuple[str, str, dict]] = []
    for line in text.splitlines():
        if m := _EDGE.match(line):
            edges.append((_unquote(m.group(1)), _unquote(m.group(2)), _attrs(m.group(3))))
        elif m := _NODE.match(line):
            nodes[_unquote(m.group(1))] = _attrs(m.group(2))
    return nodes, edges


def _need_dot() -> None:
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("Graphviz 'dot' is missing on CI: scripts/system-deps.sh installs "
                        "the Debian package graphviz")
        pytest.skip("Graphviz 'dot' is not installed (Debian package graphviz)")


def test_every_node_type_has_a_shape():
    assert set(SHAPES) == set(spec.NODE_TYPES)


def test_demo_dot_holds_every_node_and_every_edge_with_its_label():
    flow = load_flow(DEMO)
    text = to_dot(flow)
    assert text.startswith("// flow demo")
    assert f'digraph "{flow.name}" {{' in text
    assert text.rstrip().endswith("}")
    nodes, edges = parse_dot(text)
    assert set(nodes) == set(flow.nodes) | {START_ID}
    for name, node in flow.nodes.items():
        label = nodes[name]["label"].split("\n")
        assert label[0] == name
        assert label[1].split(":")[0] == node.kind
        assert nodes[name]["shape"] == SHAPES[node.kind]
    # every way out of every node, with the key (or label) of exits() on the edge's first line
    drawn = Counter((a, b, attrs.get("label", "").split("\n")[0]) for a, b, attrs in edges)
    expected = Counter((name, target, label) for name, node in flow.nodes.items()
                       for label, target in node.exits())
    assert sum(expected.values()) == 6
    assert drawn - Counter({(START_ID, flow.start, ""): 1, ("main", "main", "9 repeat"): 1}) \
        == expected
    # the start node is marked
    assert (START_ID, flow.start, {}) in edges
    assert nodes[flow.start].get("penwidth") == "2"
    assert nodes[START_ID]["label"] == "start"


def test_demo_labels_hold_the_first_prompt_in_the_first_language():
    nodes, edges = parse_dot(to_dot(load_flow(DEMO)))
    assert nodes["welcome"]["label"] == "welcome\nmenu\n\u201cBenvenuti. Per l'italiano,\n" \
                                        "premere 1.\u201d"
    support = nodes["support"]["label"].split("\n")
    assert support[:2] == ["support", "queue: support"]
    assert " ".join(support[2:]).startswith("\u201cLa stiamo mettendo in contatto")
    languages = {attrs["label"] for a, b, attrs in edges if (a, b) == ("welcome", "main")}
    assert languages == {"1\nlanguage it", "2\nlanguage en"}


def test_office_subflow_is_a_cluster_named_by_its_file():
    flow = load_flow(OFFICE)
    text = to_dot(flow)
    nodes, edges = parse_dot(text)
    assert 'subgraph "cluster_common/closed.yaml" {' in text
    assert "subflow common/closed.yaml (flow closed)" in text
    closed = flow.nodes["closed"]
    assert isinstance(closed, Subflow)
    assert nodes["closed"]["label"].split("\n")[1] == "subflow: common/closed.yaml"
    assert nodes["closed"]["peripheries"] == "2"
    for name in closed.flow.nodes:
        assert f"common/closed.yaml#{name}" in nodes
    assert ("closed", "common/closed.yaml#message", {"label": "runs", "style": "dashed"}) in edges
    inner = Counter((a, b, attrs.get("label", "")) for a, b, attrs in edges
                    if a.startswith("common/closed.yaml#"))
    assert inner == Counter((f"common/closed.yaml#{n}", f"common/closed.yaml#{t}", label)
                            for n, node in closed.flow.nodes.items()
                            for label, t in node.exits())
    drawn = Counter((a, b, attrs.get("label", "").split("\n")[0]) for a, b, attrs in edges)
    for name, node in flow.nodes.items():
        for label, target in node.exits():
            assert drawn[(name, target, label)] >= 1, (name, target, label)


def _tricky_flow(tmp_path: Path) -> Path:
    path = tmp_path / "tricky.yaml"
    path.write_text(
        "flow: tricky\nstart: hi\nnodes:\n"
        "  hi:\n    type: play\n"
        "    prompt: 'He said \"hi\" in C:\\new\\N folder'\n"
        "    next: long\n"
        "  long:\n    type: hangup\n"
        f"    prompt: '{'word ' * 40}'\n", encoding="utf-8")
    return path


def test_labels_are_escaped_for_dot_and_cut(tmp_path):
    text = to_dot(load_flow(_tricky_flow(tmp_path)))
    assert '\\"hi\\" in C:\\\\new\\\\N\\nfolder' in text  # \\n: the wrap, nothing else
    nodes, _ = parse_dot(text)
    spoken = nodes["hi"]["label"].split("\n", 2)[2]
    assert spoken == '\u201cHe said "hi" in C:\\new\\N\nfolder\u201d'
    spoken = " ".join(nodes["long"]["label"].split("\n")[2:]).strip("\u201c\u201d")
    assert spoken.endswith("\u2026")
    assert len(spoken) <= PROMPT_CHARS
    assert quote('a\\b"c\nd') == '"a\\\\b\\"c\\nd"'


def test_cli_writes_dot_to_standard_output(capsys):
    assert main(["graph", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert out == to_dot(load_flow(DEMO))


def test_cli_reports_a_broken_flow_like_validate(capsys):
    bad = ROOT / "tests" / "flows_bad" / "typo_key.yaml"
    assert main(["graph", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "typo_key.yaml:8:5: nodes.a.timout: unknown key 'timout'. Did you mean 'timeout'?" \
        in captured.err
    assert "1 problem found." in captured.err


def test_cli_without_graphviz_names_the_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(graph_module.shutil, "which", lambda _name: None)
    out = tmp_path / "demo.svg"
    assert main(["graph", str(DEMO), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Graphviz 'dot' is not installed" in err
    assert "apt-get install graphviz" in err
    assert not out.exists()
    assert main(["graph", str(DEMO), "--format", "dot", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("// flow demo")


def test_format_comes_from_the_output_name():
    assert format_for("x/demo.svg") == "svg"
    assert format_for("demo.PNG") == "png"
    assert format_for("demo.gv") == "dot"
    assert format_for(None) == "dot"


def test_svg_render_holds_every_node_name(tmp_path):
    _need_dot()
    out = tmp_path / "office.svg"
    assert main(["graph", str(OFFICE), "--format", "svg", "--output", str(out)]) == 0
    svg = out.read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml")
    assert "</svg>" in svg
    flow = load_flow(OFFICE)
    closed = flow.nodes["closed"]
    assert isinstance(closed, Subflow)
    for name in list(flow.nodes) + list(closed.flow.nodes):
        assert f">{name}</text>" in svg, name
    assert "common/closed.yaml" in svg
    # text with quotes and backslashes reaches the drawing as written
    tricky = tmp_path / "tricky.svg"
    assert main(["graph", str(_tricky_flow(tmp_path)), "--output", str(tricky)]) == 0
    assert "said &quot;hi&quot; in C:\\new\\N<" in tricky.read_text(encoding="utf-8")
    png = tmp_path / "demo.png"
    assert main(["graph", str(DEMO), "--output", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

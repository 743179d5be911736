"""A flow as a Graphviz graph: ``ivr graph flows/demo.yaml --output demo.svg``.

Each node is drawn with its name, its type (and what it names: queue, subflow file, variable,
...) and the start of its first prompt in the flow's first language, in a shape that says its
type. Edges carry the labels of :meth:`~ivr.flow.model.Node.exits` (the key of a menu option,
``failure``, ``case 1``, ...); a menu option that changes the language says so on a second line,
and a ``repeat`` option is a dotted loop. Each subflow file is drawn once, as a cluster of its
own nodes, entered by a dashed edge from every subflow node that runs it.

DOT needs nothing; SVG and PNG are rendered by Graphviz ``dot`` (Debian package ``graphviz``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

from ivr.flow.model import (
    Collect,
    File,
    Flow,
    Hours,
    Language,
    Lookup,
    Menu,
    Node,
    Queue,
    Say,
    SetOverride,
    Sms,
    Subflow,
    Transfer,
)

FORMATS = ("dot", "svg", "png")
PROMPT_CHARS = 60
"""Prompt text longer than this is cut, with an ellipsis."""
LINE_CHARS = 32
"""Prompt text is wrapped to lines of about this width."""
START_ID = "#start"
"""ID of the start marker; no node name can hold '#'."""

SHAPES: dict[str, str] = {
    "menu": "box",
    "play": "note",
    "collect": "parallelogram",
    "branch": "diamond",
    "hours": "hexagon",
    "set_override": "component",
    "sms": "note",
    "language": "tab",
    "lookup": "box3d",
    "queue": "cylinder",
    "voicemail": "folder",
    "transfer": "cds",
    "goto": "ellipse",
    "subflow": "box",
    "return": "invhouse",
    "hangup": "doubleoctagon",
}

_INSTALL_HINT = ("install the Debian package 'graphviz' (apt-get install graphviz), or write "
                 "DOT with --format dot")


class GraphError(Exception):
    """The graph could not be rendered (no Graphviz, or Graphviz failed)."""


def quote(text: str) -> str:
    """*text* as a double-quoted DOT string that Graphviz shows literally.

    Backslashes are doubled, so text never turns into Graphviz escapes (``\\N``, ``\\l``...),
    quotes are escaped, and line breaks become DOT's centred ``\\n``.
    """
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return '"' + text.replace("\t", " ") + '"'


def _attrs(**attrs: str | int | None) -> str:
    parts = [f"{k}={v if isinstance(v, int) else quote(v)}" for k, v in attrs.items()
             if v is not None and v != ""]
    return f" [{', '.join(parts)}]" if parts else ""


def prompt_text(node: Node, language: str) -> str | None:
    """The first prompt of *node* as one line of text, cut to :data:`PROMPT_CHARS`."""
    for sequence in node.prompt_sequences():
        for prompt in sequence:
            if isinstance(prompt, Say):
                text = " ".join(prompt.text_for(language).split())
            elif isinstance(prompt, File):
                text = f"file {Path(prompt.path).name}"
            else:  # pragma: no cover - Prompt is Say | File
                continue
            return _cut(text)
    return None


def _cut(text: str) -> str:
    """*text* cut to :data:`PROMPT_CHARS`, at a space where one is near the end."""
    if len(text) <= PROMPT_CHARS:
        return text
    cut = text[:PROMPT_CHARS - 1]
    if " " in cut[PROMPT_CHARS // 2:]:
        cut = cut[:cut.rfind(" ")]
    return cut.rstrip(" ,.;:") + "\u2026"


def _detail(node: Node, flow: Flow) -> str:
    """What the node names, for the second line of its label."""
    if isinstance(node, Queue):
        return node.queue + (f", priority {node.priority}" if node.priority else "")
    if isinstance(node, Subflow):
        return _relative(node.flow.source, Path(flow.source).parent)
    if isinstance(node, Transfer):
        return f"to {node.to}"
    if isinstance(node, Collect):
        return f"into {{{node.variable}}}"
    if isinstance(node, Language):
        return node.language
    if isinstance(node, SetOverride):
        return f"{node.override} {node.state}"
    if isinstance(node, Hours):
        return node.timezone + (f", override {node.override}" if node.override else "")
    if isinstance(node, Lookup):
        return _cut(node.url)
    if isinstance(node, Sms):
        return _cut(node.text)
    return ""


def node_label(node: Node, flow: Flow, language: str) -> str:
    """Name, type (and detail) and the start of the first prompt, one item a line."""
    detail = _detail(node, flow)
    lines = [node.name, f"{node.kind}: {detail}" if detail else node.kind]
    text = prompt_text(node, language)
    if text:
        lines.extend(textwrap.wrap(f"\u201c{text}\u201d", LINE_CHARS) or [text])
    return "\n".join(lines)


def _relative(source: str, base: Path) -> str:
    return Path(os.path.relpath(Path(source).resolve(), base.resolve())).as_posix()


def _subflows(flow: Flow) -> Iterator[Flow]:
    """Every flow that *flow* runs as a subflow, directly or not, each file once."""
    seen: set[Path] = set()
    todo = [flow]
    while todo:
        for node in todo.pop(0).nodes.values():
            if isinstance(node, Subflow):
                path = Path(node.flow.source).resolve()
                if path not in seen:
                    seen.add(path)
                    todo.append(node.flow)
                    yield node.flow


class _Writer:
    def __init__(self, top: Flow):
        self.top = top
        self.base = Path(top.source).parent
        self.language = top.default_language
        self.lines: list[str] = []

    def prefix(self, flow: Flow) -> str:
        """Node IDs of a subflow are 'FILE#node', FILE relative to the top flow."""
        return "" if flow is self.top else _relative(flow.source, self.base) + "#"

    def nodes(self, flow: Flow, indent: str) -> None:
        prefix = self.prefix(flow)
        for name, node in flow.nodes.items():
            start = name == flow.start
            self.lines.append(f"{indent}{quote(prefix + name)}" + _attrs(
                label=node_label(node, flow, self.language), shape=SHAPES.get(node.kind, "box"),
                peripheries=2 if node.kind == "subflow" else None,
                penwidth=2 if start and flow is self.top else None,
                style="bold" if start and flow is not self.top else None) + ";")

    def edges(self, flow: Flow, indent: str) -> None:
        prefix = self.prefix(flow)
        for name, node in flow.nodes.items():
            source = quote(prefix + name)
            languages = {}
            if isinstance(node, Menu):
                languages = {k: o.language for k, o in node.options.items() if o.language}
                for key, option in node.options.items():
                    if option.repeat:
                        self.lines.append(f"{indent}{source} -> {source}" + _attrs(
                            label=f"{key} repeat", style="dotted") + ";")
            for label, target in node.exits():
                if label in languages:
                    label = f"{label}\nlanguage {languages[label]}"
                failure = label == "failure"
                self.lines.append(f"{indent}{source} -> {quote(prefix + target)}" + _attrs(
                    label=label, color="firebrick" if failure else None,
                    fontcolor="firebrick" if failure else None) + ";")
            if isinstance(node, Subflow):
                entry = self.prefix(node.flow) + node.flow.start
                self.lines.append(f"{indent}{source} -> {quote(entry)}" + _attrs(
                    label="runs", style="dashed") + ";")


def to_dot(flow: Flow) -> str:
    """The flow (and its subflows, as clusters) as Graphviz DOT text."""
    w = _Writer(flow)
    w.lines += [
        f"// flow {flow.name}, version {flow.version}: written by 'ivr graph'",
        f"digraph {quote(flow.name)} {{",
        "  graph" + _attrs(rankdir="LR", fontname="Helvetica", labelloc="t",
                           label=f"flow {flow.name} (version {flow.version})") + ";",
        "  node" + _attrs(fontname="Helvetica", fontsize=10) + ";",
        "  edge" + _attrs(fontname="Helvetica", fontsize=9) + ";",
        f"  {quote(START_ID)}" + _attrs(label="start", shape="Mdiamond") + ";",
        f"  {quote(START_ID)} -> {quote(flow.start)};",
    ]
    w.nodes(flow, "  ")
    w.edges(flow, "  ")
    for sub in _subflows(flow):
        file = _relative(sub.source, w.base)
        w.lines.append(f"  subgraph {quote('cluster_' + file)} {{")
        w.lines.append("    graph" + _attrs(label=f"subflow {file} (flow {sub.name})",
                                             style="dashed", color="gray40") + ";")
        w.nodes(sub, "    ")
        w.edges(sub, "    ")
        w.lines.append("  }")
    w.lines.append("}")
    return "\n".join(w.lines) + "\n"


def render(dot_text: str, fmt: str, timeout: float = 120.0) -> bytes:
    """*dot_text* rendered by Graphviz ``dot`` as *fmt* ('svg', 'png')."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphError(f"Graphviz 'dot' is not installed: {_INSTALL_HINT}")
    try:
        proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode("utf-8"),
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GraphError(f"Graphviz 'dot' took longer than {timeout:g} s") from None
    except OSError as exc:
        raise GraphError(f"cannot run Graphviz 'dot': {exc}") from None
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
        raise GraphError(f"Graphviz 'dot' failed: {message}")
    return proc.stdout


def format_for(output: str | None) -> str:
    """The format an output file's name asks for ('demo.svg' -> 'svg'); DOT otherwise."""
    suffix = Path(output).suffix.lower().lstrip(".") if output else ""
    return suffix if suffix in FORMATS else "dot"


__all__ = ["FORMATS", "SHAPES", "GraphError", "format_for", "node_label", "prompt_text",
           "quote", "render", "to_dot"]

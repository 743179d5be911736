"""YAML documents that remember where each value came from, and errors that say so.

Flows and `ivr.yaml` are edited by technicians, so every complaint about them names the file, the
line and column, the path inside the document and, where it can, the spelling that was meant:

    flows/demo.yaml:12:7: nodes.main.options.1: unknown node 'suport'. Did you mean 'support'?

The loader composes the YAML into nodes (it never constructs arbitrary objects), refuses aliases,
oversized or non-UTF-8 files, and checks walk the nodes through :class:`Cursor`, collecting every
error instead of stopping at the first.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

try:  # the C parser is much faster where libyaml is present; the pure one gives the same marks
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 64


@dataclass(frozen=True)
class Problem:
    """One located complaint about a document."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class DocumentError(Exception):
    """A document that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' Did you mean ...?' suffix for the nearest of *choices*, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass
class Problems:
    """Collector shared by the passes over one document."""

    file: str
    items: list[Problem] = field(default_factory=list)

    def add(self, node: yaml.Node | None, path: str, message: str) -> None:
        line, column = (node.start_mark.line + 1, node.start_mark.column + 1) if node else (1, 1)
        self.items.append(Problem(self.file, line, column, path, message))

    def raise_if_any(self) -> None:
        if self.items:
            self.items.sort(key=lambda p: (p.line, p.column))
            raise DocumentError(self.items)


def _depth_ok(node: yaml.Node) -> bool:
    stack: list[tuple[yaml.Node, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(current, yaml.MappingNode):
            stack.extend((v, depth + 1) for _, v in current.value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((v, depth + 1) for v in current.value)
    return True


class _NoAliasLoader(_Loader):
    """Composer that refuses anchors and aliases: flows gain nothing from them, and they are the
    way to build 'billion laughs' documents."""


def load_document(path: Path, display_name: str | None = None) -> Cursor:
    """Read and compose *path*; raise :class:`DocumentError` with a located message on failure."""
    name = display_name or str(path)
    problems = Problems(name)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.add(None, "", f"cannot read the file: {exc.strerror or exc}")
        problems.raise_if_any()
        raise  # unreachable, for the type checker
    if len(raw) > MAX_FILE_BYTES:
        problems.add(None, "", f"file is {len(raw)} bytes; the limit is {MAX_FILE_BYTES}")
        problems.raise_if_any()
    if b"\x00" in raw:
        problems.add(None, "", "this is a binary file, not YAML text")
        problems.raise_if_any()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.items.append(Problem(name, line, 1, "", "the file is not valid UTF-8 text"))
        problems.raise_if_any()
    try:
        loader = _NoAliasLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.context_mark and exc.problem_mark \
                and exc.context_mark.line != exc.problem_mark.line:
            what += f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
        if "alias" in what or "anchor" in what:
            what += " (anchors and aliases are not allowed)"
        problems.items.append(Problem(name, line, col, "", f"YAML syntax error: {what}"))
        problems.raise_if_any()
        raise
    except yaml.YAMLError as exc:
        problems.add(None, "", f"YAML error: {exc}")
        problems.raise_if_any()
        raise
    if root is None:
        problems.add(None, "", "the file is empty")
        problems.raise_if_any()
    assert root is not None
    if _has_alias(text):
        problems.add(root, "", "anchors and aliases (&name, *name) are not allowed")
        problems.raise_if_any()
    if not _depth_ok(root):
        problems.add(root, "", f"the document is nested deeper than {MAX_DEPTH} levels")
        problems.raise_if_any()
    return Cursor(root, "", problems)


def _has_alias(text: str) -> bool:
    for token in yaml.scan(text, Loader=_Loader):
        if isinstance(token, (yaml.AliasToken, yaml.AnchorToken)):
            return True
    return False


_TAG_NAMES = {
    "tag:yaml.org,2002:str": "text",
    "tag:yaml.org,2002:int": "a whole number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true/false",
    "tag:yaml.org,2002:null": "nothing (null)",
}


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _TAG_NAMES.get(node.tag, node.tag)


class Cursor:
    """A position in a composed document: a node and its dotted path.

    Reads values with the types a schema expects and files a located problem (returning None)
    when the value has another type, so a check can carry on and report everything.
    """

    def __init__(self, node: yaml.Node, path: str, problems: Problems):
        self.node = node
        self.path = path
        self.problems = problems

    @property
    def file(self) -> str:
        return self.problems.file

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def error(self, message: str) -> None:
        self.problems.add(self.node, self.path, message)

    def child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else str(key)

    # -- structure -------------------------------------------------------------------------
    def is_mapping(self) -> bool:
        return isinstance(self.node, yaml.MappingNode)

    def is_sequence(self) -> bool:
        return isinstance(self.node, yaml.SequenceNode)

    def is_scalar(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode)

    def mapping(self, allowed: Iterable[str] | None = None,
                required: Iterable[str] = ()) -> dict[str, Cursor] | None:
        """The mapping's entries by key; unknown and missing keys are reported."""
        if not isinstance(self.node, yaml.MappingNode):
            self.error(f"expected a mapping, got {_describe(self.node)}")
            return None
        out: dict[str, Cursor] = {}
        allowed_set = set(allowed) if allowed is not None else None
        for key_node, value_node in self.node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.add(key_node, self.path, "keys must be plain text")
                continue
            key = str(key_node.value)
            if key in out:
                self.problems.add(key_node, self.child_path(key), "this key is given twice")
                continue
            if allowed_set is not None and key not in allowed_set:
                self.problems.add(key_node, self.child_path(key),
                                  unknown_key_message(key, allowed_set))
                continue
            out[key] = Cursor(value_node, self.child_path(key), self.problems)
        for key in required:
            if key not in out:
                self.error(f"missing required key '{key}'")
        return out

    def sequence(self) -> list[Cursor] | None:
        if not isinstance(self.node, yaml.SequenceNode):
            self.error(f"expected a list, got {_describe(self.node)}")
            return None
        return [Cursor(n, self.child_path(i), self.problems) for i, n in enumerate(self.node.value)]

    def items(self) -> Iterator[tuple[str, Cursor]]:
        entries = self.mapping()
        return iter(entries.items()) if entries else iter(())

    # -- scalars ---------------------------------------------------------------------------
    def _scalar(self) -> yaml.ScalarNode | None:
        if not isinstance(self.node, yaml.ScalarNode):
            return None
        return self.node

    def text(self) -> str | None:
        """A scalar as text (numbers such as digit keys are accepted as their spelling)."""
        node = self._scalar()
        if node is None or node.tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:bool"):
            self.error(f"expected text, got {_describe(self.node)}")
            return None
        return str(node.value)

    def number(self, minimum: float | None = None, maximum: float | None = None) -> float | None:
        node = self._scalar()
        if node is None or node.tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
            self.error(f"expected a number, got {_describe(self.node)}")
            return None
        value = float(yaml.safe_load(node.value)) if node.tag.endswith("float") else float(
            int(str(node.value).replace("_", ""), 0))
        if minimum is not None and value < minimum:
            self.error(f"must be at least {minimum:g}, got {value:g}")
            return None
        if maximum is not None and value > maximum:
            self.error(f"must be at most {maximum:g}, got {value:g}")
            return None
        return value

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int | None:
        node = self._scalar()
        if node is None or node.tag != "tag:yaml.org,2002:int":
            self.error(f"expected a whole number, got {_describe(self.node)}")
            return None
        value = self.number(minimum, maximum)
        return None if value is None else int(value)

    def boolean(self) -> bool | None:
        node = self._scalar()
        if node is None or node.tag != "tag:yaml.org,2002:bool":
            self.error(f"expected true or false, got {_describe(self.node)}")
            return None
        return str(node.value).lower() in ("true", "yes", "on", "y")

    def choice(self, choices: Iterable[str], what: str = "") -> str | None:
        """A text that must be one of *choices*; *what* names them ('node type')."""
        value = self.text()
        options = list(choices)
        if value is not None and value not in options:
            hint = did_you_mean(value, options)
            if hint and what:
                self.error(f"'{value}' is not a {what}.{hint}")
            else:
                self.error(f"'{value}' is not one of {', '.join(options)}.{hint}".rstrip("."))
            return None
        return value


def unknown_key_message(key: str, allowed: Iterable[str]) -> str:
    hint = did_you_mean(key, allowed)
    if hint:
        return f"unknown key '{key}'.{hint}"
    return f"unknown key '{key}'; expected one of: {', '.join(sorted(allowed))}"

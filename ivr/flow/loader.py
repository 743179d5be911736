"""Load a flow file into a :class:`~ivr.flow.model.Flow`, reporting every problem with its place.

Checks run in passes, each collecting all it finds: the shape of every node (keys, types,
ranges), then the references between nodes, queues and prompt files.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from ivr.flow.model import (
    ANY_LANGUAGE,
    File,
    Flow,
    Hangup,
    Menu,
    MenuOption,
    Node,
    Play,
    Prompt,
    Queue,
    Say,
)
from ivr.yamlsrc import Cursor, DocumentError, did_you_mean, load_document

NODE_TYPES = ("menu", "play", "queue", "hangup")
_COMMON = ("type", "description")
_KEYS = {
    "menu": _COMMON + ("prompt", "options", "timeout", "inter_digit_timeout", "retries",
                       "invalid_prompt", "timeout_prompt", "on_failure"),
    "play": _COMMON + ("prompt", "next"),
    "queue": _COMMON + ("queue", "prompt", "priority"),
    "hangup": _COMMON + ("prompt",),
}
_REQUIRED = {"menu": ("prompt", "options"), "play": ("prompt",), "queue": ("queue",),
             "hangup": ()}
_DIGITS = re.compile(r"^[0-9*#]{1,8}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_LANG = re.compile(r"^[a-z]{2,3}(-[a-z0-9]+)?$")


def load_flow(path: str | Path, known_queues: Iterable[str] | None = None,
              display_name: str | None = None) -> Flow:
    """Load and check *path*.

    ``known_queues``, when given, makes a queue node that names another queue an error.
    Raises :class:`~ivr.yamlsrc.DocumentError` listing every problem.
    """
    path = Path(path)
    root = load_document(path, display_name)
    builder = _Builder(root, path.parent)
    flow = builder.build(path, known_queues)
    root.problems.raise_if_any()
    assert flow is not None
    return flow


class _Builder:
    def __init__(self, root: Cursor, base_dir: Path):
        self.root = root
        self.base_dir = base_dir
        self.languages: tuple[str, ...] = ("en",)
        self.references: list[tuple[Cursor, str]] = []
        self.queue_cursors: dict[str, Cursor] = {}

    def build(self, path: Path, known_queues: Iterable[str] | None) -> Flow | None:
        top = self.root.mapping(allowed=("flow", "description", "languages", "start", "nodes"),
                                required=("flow", "start", "nodes"))
        if top is None:
            return None
        name = top["flow"].text() if "flow" in top else None
        if "languages" in top:
            self.languages = self._languages(top["languages"]) or self.languages
        nodes: dict[str, Node] = {}
        node_cursors: dict[str, Cursor] = {}
        if "nodes" in top:
            entries = top["nodes"].mapping()
            if entries is not None and not entries:
                top["nodes"].error("a flow needs at least one node")
            for node_name, cursor in (entries or {}).items():
                if not _NAME.match(node_name):
                    cursor.error(f"node name '{node_name}' must start with a letter and hold "
                                 "only letters, digits, '_' and '-'")
                node = self._node(node_name, cursor)
                node_cursors[node_name] = cursor
                if node is not None:
                    nodes[node_name] = node
        start = top["start"].text() if "start" in top else None
        if start is not None and node_cursors and start not in node_cursors:
            top["start"].error(f"start node '{start}' is not defined."
                               f"{did_you_mean(start, node_cursors)}".rstrip("."))
        # pass 2: references
        for cursor, target in self.references:
            if target not in node_cursors:
                cursor.error(f"unknown node '{target}'.{did_you_mean(target, node_cursors)}"
                             .rstrip("."))
        if known_queues is not None:
            queues = set(known_queues)
            for node_name, node in nodes.items():
                if isinstance(node, Queue) and node.queue not in queues:
                    where = self.queue_cursors[node_name]
                    hint = did_you_mean(node.queue, queues)
                    known = f" (configured queues: {', '.join(sorted(queues))})" if not hint else ""
                    where.error(f"queue '{node.queue}' is not configured in ivr.yaml.{hint}"
                                .rstrip(".") + known)
        if self.root.problems.items or name is None or start is None:
            return None
        version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return Flow(name=name, version=version, source=str(path), start=start,
                    languages=self.languages, nodes=nodes)

    def _languages(self, cursor: Cursor) -> tuple[str, ...] | None:
        items = cursor.sequence()
        if not items:
            if items is not None:
                cursor.error("list at least one language, e.g. [it, en]")
            return None
        out = []
        for item in items:
            lang = item.text()
            if lang is not None and not _LANG.match(lang):
                item.error(f"'{lang}' is not a language code such as 'it' or 'en'")
            elif lang is not None:
                out.append(lang)
        return tuple(out) or None

    # -- nodes -------------------------------------------------------------------------------
    def _node(self, name: str, cursor: Cursor) -> Node | None:
        if not cursor.is_mapping():
            cursor.error("a node is a mapping with at least 'type'")
            return None
        raw = cursor.mapping()
        assert raw is not None
        if "type" not in raw:
            cursor.error(f"missing required key 'type' (one of {', '.join(NODE_TYPES)})")
            return None
        kind = raw["type"].choice(NODE_TYPES)
        if kind is None:
            return None
        fields = cursor.mapping(allowed=_KEYS[kind], required=_REQUIRED[kind])
        if fields is None:
            return None
        line = cursor.line
        if kind == "menu":
            return self._menu(name, line, fields)
        if kind == "play":
            nxt = self._ref(fields.get("next"))
            prompt = self._prompts(fields.get("prompt"))
            return Play(name, line, prompt, nxt) if prompt else None
        if kind == "queue":
            queue = fields["queue"].text() if "queue" in fields else None
            priority = fields["priority"].integer(0, 100) if "priority" in fields else 0
            prompt = self._prompts(fields.get("prompt"), optional=True)
            if queue is None or priority is None:
                return None
            self.queue_cursors[name] = fields["queue"]
            return Queue(name, line, queue, prompt, priority)
        return Hangup(name, line, self._prompts(fields.get("prompt"), optional=True))

    def _menu(self, name: str, line: int, f: dict[str, Cursor]) -> Menu | None:
        prompt = self._prompts(f.get("prompt"))
        options: dict[str, MenuOption] = {}
        if "options" in f:
            entries = f["options"].mapping()
            if entries is not None and not entries:
                f["options"].error("a menu needs at least one option")
            for key, value in (entries or {}).items():
                if not _DIGITS.match(key):
                    value.error(f"option key '{key}' must be phone keys "
                                "(0-9, * and #), e.g. \"1\"")
                    continue
                option = self._option(value)
                if option is not None:
                    options[key] = option
        timeout = f["timeout"].number(0.5, 120) if "timeout" in f else 5.0
        inter = f["inter_digit_timeout"].number(0.2, 30) if "inter_digit_timeout" in f else 2.0
        retries = f["retries"].integer(0, 20) if "retries" in f else 3
        invalid = self._prompts(f.get("invalid_prompt"), optional=True)
        timeout_prompt = self._prompts(f.get("timeout_prompt"), optional=True)
        on_failure = self._ref(f.get("on_failure"))
        if not prompt or timeout is None or inter is None or retries is None:
            return None
        return Menu(name, line, prompt, options, timeout, inter, retries, invalid,
                    timeout_prompt, on_failure)

    def _option(self, cursor: Cursor) -> MenuOption | None:
        if cursor.is_scalar():
            target = cursor.text()
            if target is None:
                return None
            if target == "repeat":
                return MenuOption(None, repeat=True)
            self.references.append((cursor, target))
            return MenuOption(target)
        fields = cursor.mapping(allowed=("next", "language"), required=("next",))
        if fields is None or "next" not in fields:
            return None
        language = None
        if "language" in fields:
            language = fields["language"].text()
            if language is not None and language not in self.languages:
                fields["language"].error(
                    f"language '{language}' is not in the flow's languages "
                    f"({', '.join(self.languages)}).{did_you_mean(language, self.languages)}"
                    .rstrip("."))
        target = fields["next"].text()
        if target == "repeat":
            return MenuOption(None, language=language, repeat=True)
        if target is not None:
            self.references.append((fields["next"], target))
        return MenuOption(target, language=language) if target else None

    def _ref(self, cursor: Cursor | None) -> str | None:
        if cursor is None:
            return None
        target = cursor.text()
        if target is not None:
            self.references.append((cursor, target))
        return target

    # -- prompts -----------------------------------------------------------------------------
    def _prompts(self, cursor: Cursor | None, optional: bool = False) -> tuple[Prompt, ...]:
        if cursor is None:
            return ()
        items = cursor.sequence() if cursor.is_sequence() else [cursor]
        out: list[Prompt] = []
        for item in items or ():
            prompt = self._prompt(item)
            if prompt is not None:
                out.append(prompt)
        if not out and not optional and not cursor.problems.items:
            cursor.error("a prompt needs 'say' text or a 'file'")
        return tuple(out)

    def _prompt(self, cursor: Cursor) -> Prompt | None:
        if cursor.is_scalar():
            text = cursor.text()
            return Say({ANY_LANGUAGE: text}) if text else None
        fields = cursor.mapping(allowed=("say", "file"))
        if fields is None:
            return None
        if ("say" in fields) == ("file" in fields):
            cursor.error("give exactly one of 'say' (text to speak) or 'file' (a WAV recording)")
            return None
        if "file" in fields:
            rel = fields["file"].text()
            if rel is None:
                return None
            full = (self.base_dir / rel).resolve()
            if not full.is_file():
                fields["file"].error(f"prompt file '{rel}' does not exist "
                                     "(paths are relative to the flow file)")
                return None
            return File(str(full))
        say = fields["say"]
        if say.is_scalar():
            text = say.text()
            return Say({ANY_LANGUAGE: text}) if text else None
        texts = say.mapping(allowed=self.languages)
        if texts is None:
            return None
        resolved = {lang: t.text() for lang, t in texts.items()}
        missing = [lang for lang in self.languages if lang not in resolved]
        if missing:
            say.error(f"no text for language {', '.join(missing)}")
        if any(v is None for v in resolved.values()) or missing:
            return None
        return Say({k: v for k, v in resolved.items() if v is not None})


__all__ = ["DocumentError", "load_flow"]

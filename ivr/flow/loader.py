"""Load a flow file into a :class:`~ivr.flow.model.Flow`, reporting every problem with its place.

Checks run in ordered passes, each collecting all it finds:

1. schema: keys, types and ranges of every node;
2. references: target nodes, queues, prompt files, subflow files, languages;
3. graph: unreachable nodes, and parts of the tree with no way to end the call.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from ivr.flow import spec
from ivr.flow.model import (
    ANY_LANGUAGE,
    Branch,
    Case,
    Collect,
    Condition,
    File,
    Flow,
    Goto,
    Hangup,
    Hours,
    Language,
    Lookup,
    Menu,
    MenuOption,
    Node,
    Play,
    Prompts,
    Queue,
    Return,
    Say,
    SetOverride,
    Sms,
    Subflow,
    Transfer,
    Voicemail,
)
from ivr.yamlsrc import Cursor, DocumentError, Problems, did_you_mean, load_document

_DIGITS = re.compile(r"^[0-9*#]{1,16}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_VAR_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}")
_TIME_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
BUILTIN_VARIABLES = ("caller", "called", "language", "position", "expected_wait", "extension",
                     "call_id", "ticket", "ticket_status", "ticket_level", "ticket_queue")
"""Variables every call has; the ``ticket*`` ones describe the caller's open ticket ('' when
there is none: see ivr.driver.ticketing)."""
MAX_SUBFLOW_DEPTH = 8


def load_flow(path: str | Path, known_queues: Iterable[str] | None = None,
              display_name: str | None = None, transfer_allowed: Callable[[str], bool] | None
              = None) -> Flow:
    """Load and check *path*.

    ``known_queues``, when given, makes a queue node that names another queue an error;
    ``transfer_allowed(destination)``, when given, checks fixed transfer destinations against
    the dial-out rules. Raises :class:`~ivr.yamlsrc.DocumentError` listing every problem.
    """
    return _load(Path(path), known_queues, display_name, transfer_allowed, ())


def _load(path: Path, known_queues: Iterable[str] | None, display_name: str | None,
          transfer_allowed: Callable[[str], bool] | None, stack: tuple[Path, ...]) -> Flow:
    root = load_document(path, display_name)
    builder = _Builder(root, path, known_queues, transfer_allowed, stack)
    flow = builder.build()
    root.problems.raise_if_any()
    assert flow is not None
    return flow


class _Builder:
    def __init__(self, root: Cursor, path: Path, known_queues: Iterable[str] | None,
                 transfer_allowed: Callable[[str], bool] | None, stack: tuple[Path, ...]):
        self.root = root
        self.path = path
        self.base_dir = path.parent
        self.known_queues = set(known_queues) if known_queues is not None else None
        self.transfer_allowed = transfer_allowed
        self.stack = (*stack, path.resolve())
        self.languages: tuple[str, ...] = ("en",)
        self.references: list[tuple[Cursor, str]] = []
        self.variables_used: list[tuple[Cursor, str]] = []
        self.variables_set: set[str] = set(BUILTIN_VARIABLES)
        self.node_cursors: dict[str, Cursor] = {}
        self.extra_hash: list[str] = []

    @property
    def problems(self) -> Problems:
        return self.root.problems

    def build(self) -> Flow | None:
        top = self.root.mapping(allowed=spec.TOP_KEYS, required=("flow", "start", "nodes"))
        if top is None:
            return None
        name = top["flow"].text() if "flow" in top else None
        if "languages" in top:
            self.languages = self._languages(top["languages"]) or self.languages
        variables = self._variables(top["variables"]) if "variables" in top else {}
        nodes = self._nodes(top["nodes"]) if "nodes" in top else {}
        start = top["start"].text() if "start" in top else None
        if start is not None and self.node_cursors and start not in self.node_cursors:
            top["start"].error(f"start node '{start}' is not defined."
                               f"{did_you_mean(start, self.node_cursors)}".rstrip("."))
        self._check_references()
        if self.problems.items or name is None or start is None:
            return None
        # pass 3: the graph as a whole
        self._check_graph(start, nodes)
        if self.problems.items:
            return None
        digest = hashlib.sha256(self.path.read_bytes())
        for extra in self.extra_hash:
            digest.update(extra.encode())
        return Flow(name=name, version=digest.hexdigest()[:12], source=str(self.path),
                    start=start, languages=self.languages, nodes=nodes, variables=variables)

    def _variables(self, cursor: Cursor) -> dict[str, str]:
        variables: dict[str, str] = {}
        for var, value_cursor in cursor.items():
            value = value_cursor.text()
            if value is not None:
                variables[var] = value
                self.variables_set.add(var)
        return variables

    def _nodes(self, cursor: Cursor) -> dict[str, Node]:
        nodes: dict[str, Node] = {}
        entries = cursor.mapping()
        if entries is not None and not entries:
            cursor.error("a flow needs at least one node")
        self.node_cursors = dict(entries or {})
        for node_name, node_cursor in self.node_cursors.items():
            if not _NAME.match(node_name):
                node_cursor.error(f"node name '{node_name}' must start with a letter and hold "
                                  "only letters, digits, '_' and '-'")
            node = self._node(node_name, node_cursor)
            if node is not None:
                nodes[node_name] = node
        return nodes

    # -- pass 2 ------------------------------------------------------------------------------
    def _check_references(self) -> None:
        """Every node named and every variable read exists (known once pass 1 read them all)."""
        for cursor, target in self.references:
            if target not in self.node_cursors:
                cursor.error(f"unknown node '{target}'."
                             f"{did_you_mean(target, self.node_cursors)}".rstrip("."))
        for cursor, var in self.variables_used:
            if var not in self.variables_set:
                cursor.error(f"variable '{var}' is never set (set it with a collect or lookup "
                             f"node, or under 'variables:').{did_you_mean(var, self.variables_set)}"
                             .rstrip("."))

    def _languages(self, cursor: Cursor) -> tuple[str, ...] | None:
        items = cursor.sequence()
        if not items:
            if items is not None:
                cursor.error("list at least one language, e.g. [it, en]")
            return None
        out = []
        for item in items:
            lang = item.text()
            if lang is not None and not re.match(r"^[a-z]{2,3}(-[a-z0-9]+)?$", lang):
                item.error(f"'{lang}' is not a language code such as 'it' or 'en'")
            elif lang is not None:
                out.append(lang)
        return tuple(out) or None

    # -- pass 3 ------------------------------------------------------------------------------
    def _check_graph(self, start: str, nodes: dict[str, Node]) -> None:
        reachable: set[str] = set()
        todo = [start]
        while todo:
            name = todo.pop()
            if name in reachable or name not in nodes:
                continue
            reachable.add(name)
            todo.extend(target for _, target in nodes[name].exits())
        for name in nodes:
            if name not in reachable:
                self.node_cursors[name].error(
                    f"node '{name}' cannot be reached from the start node '{start}'; link to it "
                    "or remove it")
        # nodes from which no path leads to an end of the call
        # walk back from the nodes that end the call (linear in nodes + edges)
        callers: dict[str, list[str]] = {}
        for name, node in nodes.items():
            for _, target in node.exits():
                callers.setdefault(target, []).append(name)
        todo = [n for n, node in nodes.items() if node.kind in spec.TERMINAL_KINDS]
        can_end = set(todo)
        while todo:
            for source in callers.get(todo.pop(), ()):
                if source not in can_end:
                    can_end.add(source)
                    todo.append(source)
        stuck = [n for n in nodes if n in reachable and n not in can_end]
        for name in stuck:
            node = nodes[name]
            what = ("a menu whose options and failure all lead back into a loop"
                    if isinstance(node, Menu) else "a loop")
            self.node_cursors[name].error(
                f"node '{name}' is in {what} with no way out: no path from it reaches a "
                "hangup, queue, voicemail or transfer; add an 'on_failure' or an exit")

    # -- pass 1: nodes -----------------------------------------------------------------------
    def _node(self, name: str, cursor: Cursor) -> Node | None:
        if not cursor.is_mapping():
            cursor.error("a node is a mapping with at least 'type'")
            return None
        raw = cursor.mapping()
        assert raw is not None
        if "type" not in raw:
            cursor.error(f"missing required key 'type' (one of {', '.join(spec.NODE_TYPES)})")
            return None
        kind = raw["type"].choice(spec.NODE_TYPES, "node type")
        if kind is None:
            return None
        for key, message in spec.REMOVED.get(kind, {}).items():
            if key in raw:
                raw[key].error(message)
        allowed = spec.NODE_KEYS[kind] + tuple(spec.REMOVED.get(kind, {}))
        f = cursor.mapping(allowed=allowed, required=spec.REQUIRED[kind])
        if f is None or any(k not in f for k in spec.REQUIRED[kind]):
            return None
        for key in spec.REMOVED.get(kind, {}):
            f.pop(key, None)
        build = getattr(self, f"_node_{kind}")
        node: Node | None = build(name, cursor.line, f)
        return node

    def _num(self, f: dict[str, Cursor], key: str, default: float, lo: float,
             hi: float) -> float:
        if key not in f:
            return default
        value = f[key].number(lo, hi)
        return default if value is None else value

    def _int(self, f: dict[str, Cursor], key: str, default: int, lo: int, hi: int) -> int:
        if key not in f:
            return default
        value = f[key].integer(lo, hi)
        return default if value is None else value

    def _bool(self, f: dict[str, Cursor], key: str, default: bool) -> bool:
        if key not in f:
            return default
        value = f[key].boolean()
        return default if value is None else value

    def _text(self, f: dict[str, Cursor], key: str) -> str | None:
        return f[key].text() if key in f else None

    def _ref(self, f: dict[str, Cursor], key: str) -> str | None:
        if key not in f:
            return None
        target = f[key].text()
        if target is not None:
            self.references.append((f[key], target))
        return target

    def _regex(self, f: dict[str, Cursor], key: str) -> str | None:
        text = self._text(f, key)
        if text is None:
            return None
        try:
            re.compile(text)
        except re.error as exc:
            f[key].error(f"'{text}' is not a valid regular expression: {exc}")
            return None
        return text

    def _node_menu(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        options: dict[str, MenuOption] = {}
        entries = f["options"].mapping()
        if entries is not None and not entries and "extensions" not in f:
            f["options"].error("a menu needs at least one option")
        for key, value in (entries or {}).items():
            if not _DIGITS.match(key):
                value.error(f"option key '{key}' must be phone keys (0-9, * and #), e.g. \"1\"")
                continue
            option = self._option(value)
            if option is not None:
                options[key] = option
        ext_patterns: list[str] = []
        ext_next = None
        if "extensions" in f:
            ef = f["extensions"].mapping(allowed=("pattern", "next"), required=("pattern", "next"))
            if ef is not None and "pattern" in ef and "next" in ef:
                items = ef["pattern"].sequence() if ef["pattern"].is_sequence() \
                    else [ef["pattern"]]
                for item in items or ():
                    text = item.text()
                    if text is not None and not re.fullmatch(r"[0-9XZN*#]{1,16}", text):
                        item.error(f"'{text}' is not an extension pattern: use digits and X "
                                   "(any digit), Z (1-9), N (2-9), e.g. '2XX'")
                    elif text is not None:
                        ext_patterns.append(text)
                ext_next = self._ref(ef, "next")
        terminator = self._text(f, "terminator") or "#"
        if terminator not in ("#", "*", "none"):
            f["terminator"].error("terminator must be '#', '*' or 'none'")
        prompt = self._prompts(f["prompt"])
        if not prompt:
            return None
        return Menu(
            name, line, prompt, options,
            short_prompt=self._prompts(f.get("short_prompt"), optional=True),
            timeout=self._num(f, "timeout", 5.0, 0.5, 120),
            inter_digit_timeout=self._num(f, "inter_digit_timeout", 2.0, 0.2, 30),
            max_digits=self._int(f, "max_digits", 0, 1, 16),
            terminator="" if terminator == "none" else terminator,
            max_invalid=self._int(f, "max_invalid", 3, 0, 20),
            max_timeouts=self._int(f, "max_timeouts", 3, 0, 20),
            invalid_prompt=self._prompts(f.get("invalid_prompt"), optional=True),
            timeout_prompt=self._prompts(f.get("timeout_prompt"), optional=True),
            on_failure=self._ref(f, "on_failure"),
            extension_patterns=tuple(ext_patterns), extension_next=ext_next)

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
            language = self._language_value(fields["language"])
        target = fields["next"].text()
        if target == "repeat":
            return MenuOption(None, language=language, repeat=True)
        if target is not None:
            self.references.append((fields["next"], target))
        return MenuOption(target, language=language) if target else None

    def _language_value(self, cursor: Cursor) -> str | None:
        language = cursor.text()
        if language is not None and language not in self.languages:
            cursor.error(f"language '{language}' is not in the flow's languages "
                         f"({', '.join(self.languages)}).{did_you_mean(language, self.languages)}"
                         .rstrip("."))
            return None
        return language

    def _node_play(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        prompt = self._prompts(f["prompt"])
        nxt = self._ref(f, "next")
        if not prompt or nxt is None:
            return None
        return Play(name, line, prompt, nxt, self._bool(f, "barge_in", False))

    def _node_collect(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        variable = self._text(f, "variable")
        if variable is not None:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", variable):
                f["variable"].error(f"'{variable}' is not a variable name (letters, digits, _)")
            self.variables_set.add(variable)
        prompt = self._prompts(f["prompt"])
        nxt = self._ref(f, "next")
        min_len = self._int(f, "min_length", 1, 1, 64)
        max_len = self._int(f, "max_length", 20, 1, 64)
        if max_len < min_len:
            f.get("max_length", f["prompt"]).error(
                f"max_length ({max_len}) is less than min_length ({min_len})")
        terminator = self._text(f, "terminator") or "#"
        if terminator not in ("#", "*", "none"):
            f["terminator"].error("terminator must be '#', '*' or 'none'")
        if not prompt or variable is None or nxt is None:
            return None
        return Collect(
            name, line, prompt, variable, nxt, min_len, max_len,
            pattern=self._regex(f, "pattern"),
            terminator="" if terminator == "none" else terminator,
            timeout=self._num(f, "timeout", 8.0, 0.5, 120),
            inter_digit_timeout=self._num(f, "inter_digit_timeout", 4.0, 0.2, 60),
            max_attempts=self._int(f, "max_attempts", 3, 1, 20),
            invalid_prompt=self._prompts(f.get("invalid_prompt"), optional=True),
            confirm=self._bool(f, "confirm", False),
            confirm_prompt=self._prompts(f.get("confirm_prompt"), optional=True),
            on_failure=self._ref(f, "on_failure"))

    def _node_branch(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        cases: list[Case] = []
        for item in f["cases"].sequence() or ():
            cf = item.mapping(allowed=("when", "next"), required=("when", "next"))
            if cf is None or "when" not in cf or "next" not in cf:
                continue
            condition = self._condition(cf["when"])
            nxt = self._ref(cf, "next")
            if condition is not None and nxt is not None:
                cases.append(Case(condition, nxt))
        default = self._ref(f, "default")
        if default is None:
            return None
        return Branch(name, line, tuple(cases), default)

    def _condition(self, cursor: Cursor) -> Condition | None:
        f = cursor.mapping(allowed=spec.CONDITION_KEYS)
        if f is None:
            return None
        if not f:
            cursor.error("give at least one test: variable, caller, called, language, ticket "
                         "or ticket_level")
            return None
        variable = self._text(f, "variable")
        if variable is not None:
            self.variables_used.append((f["variable"], variable))
        tests = [k for k in ("equals", "matches", "one_of") if k in f]
        if variable is not None and len(tests) != 1:
            cursor.error("with 'variable', give exactly one of 'equals', 'matches' or 'one_of'")
        elif variable is None and tests:
            f[tests[0]].error(f"'{tests[0]}' tests a variable: add 'variable: NAME'")
        one_of = None
        if "one_of" in f:
            one_of = tuple(t for t in (c.text() for c in f["one_of"].sequence() or ()) if t)
        called = None
        if "called" in f:
            if f["called"].is_sequence():
                called = tuple(t for t in (c.text() for c in f["called"].sequence() or ()) if t)
            else:
                called = tuple(t for t in [f["called"].text()] if t)
        caller = self._text(f, "caller")
        if caller is not None and caller != "withheld":
            caller = self._regex(f, "caller")
        language = self._language_value(f["language"]) if "language" in f else None
        ticket = f["ticket"].choice(spec.TICKET_TESTS, "ticket test") if "ticket" in f else None
        level = f["ticket_level"].integer(1, 5) if "ticket_level" in f else None
        return Condition(variable=variable, equals=self._text(f, "equals"),
                         matches=self._regex(f, "matches"), one_of=one_of, caller=caller,
                         called=called, language=language, ticket=ticket, ticket_level=level)

    def _node_hours(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        tz = self._timezone(f)
        schedule = self._schedule(f["schedule"])
        country = subdivision = None
        dates: tuple[str, ...] = ()
        if "holidays" in f:
            country, subdivision, dates = self._holidays(f["holidays"])
        opened, closed = self._ref(f, "open"), self._ref(f, "closed")
        holiday = self._ref(f, "holiday") if "holiday" in f else closed
        if tz is None or opened is None or closed is None or holiday is None:
            return None
        return Hours(name, line, tz, {d: tuple(sorted(v)) for d, v in schedule.items()},
                     opened, closed, holiday, country, subdivision, dates,
                     self._text(f, "override"))

    def _timezone(self, f: dict[str, Cursor]) -> str | None:
        tz = self._text(f, "timezone")
        if tz is not None:
            try:
                import zoneinfo

                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                f["timezone"].error(f"unknown time zone '{tz}' (use a name such as "
                                    "'Europe/Rome')")
                tz = None
        return tz

    def _schedule(self, cursor: Cursor) -> dict[int, list[tuple[int, int]]]:
        """Opening intervals (minutes from midnight) per weekday, Monday = 0."""
        schedule: dict[int, list[tuple[int, int]]] = {d: [] for d in range(7)}
        for key, value in cursor.items():
            days = _days(key)
            if days is None:
                value.error(f"'{key}' is not a day or range of days such as 'mon', 'mon-fri'"
                            f".{did_you_mean(key.split('-')[0], _DAYS)}".rstrip("."))
                continue
            ranges = value.sequence() if value.is_sequence() else [value]
            for item in ranges or ():
                text = item.text()
                if text is None or text.strip().lower() == "closed":
                    continue
                for part in text.split(","):
                    interval = _interval(part)
                    if interval is None:
                        item.error(f"'{part.strip()}' is not a time range such as "
                                   "'09:00-13:00'")
                        continue
                    for day in days:
                        schedule[day].append(interval)
        return schedule

    def _holidays(self, cursor: Cursor) -> tuple[str | None, str | None, tuple[str, ...]]:
        """(country, subdivision, extra closed dates) of a ``holidays:`` mapping."""
        hf = cursor.mapping(allowed=("country", "subdivision", "dates"))
        if hf is None:
            return None, None, ()
        country = self._text(hf, "country")
        subdivision = self._text(hf, "subdivision")
        if country is not None:
            self._check_country(hf, country, subdivision)
        dates: list[str] = []
        for item in (hf["dates"].sequence() if "dates" in hf else None) or ():
            text = item.text()
            if text is not None and not _DATE.match(text):
                item.error(f"'{text}' is not a date such as '2026-08-14'")
            elif text is not None:
                dates.append(text)
        return country, subdivision, tuple(dates)

    def _check_country(self, f: dict[str, Cursor], country: str, sub: str | None) -> None:
        import holidays

        supported = holidays.list_supported_countries()
        if country not in supported:
            f["country"].error(f"'{country}' is not a country code the holidays library "
                               f"knows.{did_you_mean(country, supported)}".rstrip("."))
        elif sub is not None and sub not in supported[country]:
            f["subdivision"].error(f"'{sub}' is not a subdivision of {country}."
                                   f"{did_you_mean(sub, supported[country])}".rstrip("."))

    def _node_set_override(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        override = self._text(f, "override")
        state = f["state"].choice(("open", "closed", "auto"))
        nxt = self._ref(f, "next")
        if override is None or state is None or nxt is None:
            return None
        return SetOverride(name, line, override, state, nxt)

    def _node_sms(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        text = self._text(f, "text")
        if text is not None:
            if not text.strip():
                f["text"].error("an sms node needs some text")
            self._note_variables(f["text"], text)
        nxt = self._ref(f, "next")
        if text is None or nxt is None:
            return None
        return Sms(name, line, text, nxt)

    def _node_language(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        language = self._language_value(f["language"])
        nxt = self._ref(f, "next")
        if language is None or nxt is None:
            return None
        return Language(name, line, language, nxt)

    def _node_lookup(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        url = self._text(f, "url")
        if url is not None:
            if not re.match(r"^https?://", url):
                f["url"].error(f"'{url}' is not an http:// or https:// address")
            self._note_variables(f["url"], url)
        fields: dict[str, str] = {}
        for var, cursor in f["fields"].items():
            path = cursor.text()
            if path is not None:
                fields[var] = path
                self.variables_set.add(var)
        nxt, fail = self._ref(f, "next"), self._ref(f, "on_failure")
        if url is None or nxt is None or fail is None:
            return None
        return Lookup(name, line, url, fields, nxt, fail, self._num(f, "timeout", 3.0, 0.1, 30))

    def _node_queue(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        queue = self._text(f, "queue")
        if queue is not None and self.known_queues is not None and queue not in self.known_queues:
            hint = did_you_mean(queue, self.known_queues)
            known = "" if hint else f" (configured queues: {', '.join(sorted(self.known_queues))})"
            f["queue"].error(f"queue '{queue}' is not configured in ivr.yaml.{hint}".rstrip(".")
                             + known)
        if queue is None:
            return None
        exit_keys: dict[str, str] = {}
        for key, cursor in (f["exit_keys"].items() if "exit_keys" in f else ()):
            target = cursor.text()
            if not _DIGITS.match(key) or len(key) != 1:
                cursor.error(f"exit key '{key}' must be one phone key (0-9, * or #)")
            elif target == "callback":
                exit_keys[key] = target  # keyword: call the caller back, keeping their place
            elif target is not None:
                self.references.append((cursor, target))
                exit_keys[key] = target
        return Queue(name, line, queue, self._prompts(f.get("prompt"), optional=True),
                     self._int(f, "priority", 0, 0, 100),
                     self._prompts(f.get("announce_prompt"), optional=True), exit_keys,
                     self._ref(f, "on_exit"))

    def _node_voicemail(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        prompt = self._prompts(f["prompt"])
        if not prompt:
            return None
        return Voicemail(name, line, prompt, self._num(f, "max_seconds", 120.0, 5, 900),
                         self._num(f, "silence_seconds", 5.0, 1, 60),
                         self._bool(f, "beep", True), self._ref(f, "next"))

    def _node_transfer(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        to = self._text(f, "to")
        if to is None:
            return None
        self._note_variables(f["to"], to)
        if self.transfer_allowed is not None and "{" not in to and not self.transfer_allowed(to):
            f["to"].error(f"'{to}' is neither an extension in ivr.yaml nor allowed by a "
                          "dial_out rule: add it there first (nothing dials out otherwise)")
        return Transfer(name, line, to, self._prompts(f.get("prompt"), optional=True),
                        self._ref(f, "on_failure"))

    def _node_goto(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        nxt = self._ref(f, "next")
        return Goto(name, line, nxt) if nxt is not None else None

    def _node_subflow(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        rel = self._text(f, "flow")
        nxt = self._ref(f, "next")
        if rel is None or nxt is None:
            return None
        full = (self.base_dir / rel).resolve()
        if full in self.stack:
            f["flow"].error(f"subflow '{rel}' includes itself (directly or through others)")
            return None
        if len(self.stack) >= MAX_SUBFLOW_DEPTH:
            f["flow"].error(f"subflows are nested deeper than {MAX_SUBFLOW_DEPTH}")
            return None
        if not full.is_file():
            f["flow"].error(f"subflow file '{rel}' does not exist (paths are relative to the "
                            "flow file)")
            return None
        try:
            sub = _load(full, self.known_queues, None, self.transfer_allowed, self.stack)
        except DocumentError as exc:
            f["flow"].error(f"subflow '{rel}' has {len(exc.problems)} problem(s); first: "
                            f"{exc.problems[0]}")
            return None
        if not any(isinstance(n, Return) for n in sub.nodes.values()):
            f["flow"].error(f"subflow '{rel}' has no 'return' node, so the call never comes "
                            "back to 'next'")
        self.extra_hash.append(sub.version)
        self.variables_set.update(sub.variables)
        return Subflow(name, line, sub, nxt)

    def _node_return(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        return Return(name, line)

    def _node_hangup(self, name: str, line: int, f: dict[str, Cursor]) -> Node | None:
        return Hangup(name, line, self._prompts(f.get("prompt"), optional=True))

    # -- prompts -----------------------------------------------------------------------------
    def _note_variables(self, cursor: Cursor, text: str) -> None:
        for var in _VAR_REF.findall(text):
            self.variables_used.append((cursor, var))

    def _prompts(self, cursor: Cursor | None, optional: bool = False) -> Prompts:
        if cursor is None:
            return ()
        before = len(self.problems.items)
        items = cursor.sequence() if cursor.is_sequence() else [cursor]
        out: list[Say | File] = []
        for item in items or ():
            prompt = self._prompt(item)
            if prompt is not None:
                out.append(prompt)
        if not out and not optional and len(self.problems.items) == before:
            cursor.error("a prompt needs 'say' text or a 'file'")
        return tuple(out)

    def _prompt(self, cursor: Cursor) -> Say | File | None:
        if cursor.is_scalar():
            text = cursor.text()
            if text:
                self._note_variables(cursor, text)
            return Say({ANY_LANGUAGE: text}) if text else None
        fields = cursor.mapping(allowed=("say", "file"))
        if fields is None:
            return None
        if ("say" in fields) == ("file" in fields):
            cursor.error("give exactly one of 'say' (text to speak) or 'file' (a WAV recording)")
            return None
        if "file" in fields:
            return self._prompt_file(fields["file"])
        return self._say(fields["say"])

    def _prompt_file(self, cursor: Cursor) -> File | None:
        rel = cursor.text()
        if rel is None:
            return None
        full = (self.base_dir / rel).resolve()
        if not full.is_file():
            cursor.error(f"prompt file '{rel}' does not exist "
                         "(paths are relative to the flow file)")
            return None
        return File(str(full))

    def _say(self, say: Cursor) -> Say | None:
        """``say:`` as one text for every language, or a mapping of language to text."""
        if say.is_scalar():
            text = say.text()
            if text:
                self._note_variables(say, text)
            return Say({ANY_LANGUAGE: text}) if text else None
        texts = say.mapping(allowed=self.languages)
        if texts is None:
            return None
        resolved = {lang: t.text() for lang, t in texts.items()}
        for lang, t in texts.items():
            if resolved[lang]:
                self._note_variables(t, str(resolved[lang]))
        missing = [lang for lang in self.languages if lang not in resolved]
        if missing:
            say.error(f"no text for language {', '.join(missing)}")
        if any(v is None for v in resolved.values()) or missing:
            return None
        return Say({k: v for k, v in resolved.items() if v is not None})


def _days(key: str) -> list[int] | None:
    key = key.strip().lower()
    if key in ("daily", "every day"):
        return list(range(7))
    if "-" in key:
        first, _, last = key.partition("-")
        if first in _DAYS and last in _DAYS:
            a, b = _DAYS.index(first), _DAYS.index(last)
            return list(range(a, b + 1)) if a <= b else list(range(a, 7)) + list(range(0, b + 1))
        return None
    return [_DAYS.index(key)] if key in _DAYS else None


def _interval(text: str) -> tuple[int, int] | None:
    m = _TIME_RANGE.match(text)
    if not m:
        return None
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
        return None
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start or end > 24 * 60:
        return None
    return start, end


# -- opening hours, shared with other documents that take them (outbound campaigns' windows) --

def check_timezone(cursor: Cursor) -> str | None:
    """The time zone named at *cursor* as an hours node checks it, or None (problem filed)."""
    return _Builder(cursor, Path(cursor.file), None, None, ())._timezone({"timezone": cursor})


def check_holidays(cursor: Cursor) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(country, subdivision, extra closed dates) of a ``holidays:`` mapping at *cursor*, as an
    hours node checks it (the holidays library's countries), every problem filed."""
    return _Builder(cursor, Path(cursor.file), None, None, ())._holidays(cursor)


day_range = _days
"""Weekdays (Monday = 0) of 'mon', 'mon-fri', 'daily', or None."""
time_range = _interval
"""(start, end) minutes since midnight of '09:00-13:00', or None."""


__all__ = ["DocumentError", "check_holidays", "check_timezone", "day_range", "load_flow",
           "time_range"]

"""Flow tests: scripted calls through a flow and what must come of them, in YAML.

A test file sits beside the flow it tests and is named after it (``demo.test.yaml`` for
``demo.yaml``); ``ivr test`` finds them, runs every case with :mod:`ivr.simulate` and prints a
line per case::

    flow: demo.yaml                      # relative to this file
    defaults: {caller: "3331234567", called: "800123456"}
    cases:
      - name: English, then support
        digits: [2, 1]                   # or "2,1"; "wait" lets a timeout pass
        expect:
          path: [welcome, main, support] # or the exact text "welcome[2] > main[1] > support"
          exit: {queue: support}         # {hangup: reason}, {voicemail: "*"}, {transfer: "201"}
          variables: {language: en}      # these must hold ("*": set, not empty); others too
          heard: ["Please hold"]         # texts that must have been said

Case keys besides ``name`` and ``expect`` (and the same under ``defaults``): ``caller``
(``withheld`` for none), ``called``, ``at`` (local time, optionally followed by a time zone:
``"2026-12-25 10:00 Europe/Rome"``; required when the flow has business hours), ``language``,
``digits``, ``lookup`` (node name or URL -> JSON answer; null fails, ``timeout`` times out),
``failing_transfers`` (destinations that do not answer), ``overrides`` (hours switch -> open or
closed), ``barge_in`` (press keys as soon as a prompt may be interrupted), ``ticket`` (the
caller's open ticket: ``{number: "1042", level: 2, queue: support, status: escalated}``; the
call starts with it in the ``ticket*`` variables, as the switchboard does).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from ivr.flow import Flow, Subflow, load_flow
from ivr.simulate import Result, Simulation, flow_timezone, parse_digits, parse_when
from ivr.yamlsrc import Cursor, DocumentError, Problem, did_you_mean, load_document

SUFFIX = ".test.yaml"
TOP_KEYS = ("flow", "description", "defaults", "cases")
SETTING_KEYS = ("caller", "called", "at", "language", "digits", "lookup", "failing_transfers",
                "overrides", "barge_in", "ticket")
TICKET_KEYS = {"number": "ticket", "status": "ticket_status", "level": "ticket_level",
               "queue": "ticket_queue"}
"""A case's ``ticket`` keys -> the call variables they set."""
CASE_KEYS = ("name", "description", *SETTING_KEYS, "expect")
EXPECT_KEYS = ("path", "exit", "variables", "heard")
EXIT_KINDS = ("queue", "hangup", "voicemail", "transfer")
HANGUP_REASONS = ("flow_end", "menu_failures", "collect_failures", "voicemail_done",
                  "transfer_failed", "flow_error", "caller")
ANY = "*"


@dataclass(frozen=True)
class Expect:
    path: tuple[str, ...] | str | None = None
    """Node names in order, or the exact path text with keys."""
    exit: tuple[str, str] | None = None
    """(kind, value); value '*' matches any."""
    variables: Mapping[str, str] = field(default_factory=dict)
    heard: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlowCase:
    name: str
    line: int
    expect: Expect
    caller: str = ""
    called: str = ""
    at: dt.datetime | None = None
    language: str | None = None
    digits: tuple[str, ...] = ()
    lookups: Mapping[str, Any] = field(default_factory=dict)
    failing_transfers: tuple[str, ...] = ()
    overrides: Mapping[str, str] = field(default_factory=dict)
    barge_in: bool = False
    ticket: Mapping[str, str] = field(default_factory=dict)
    """Call variables of the caller's open ticket (``ticket``, ``ticket_level``...)."""


@dataclass(frozen=True)
class FlowTests:
    """A loaded test file: the flow and its cases."""

    name: str
    """The file as given, for messages."""
    flow: Flow
    cases: tuple[FlowCase, ...]


@dataclass
class Outcome:
    case: FlowCase
    result: Result
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


# -- loading ------------------------------------------------------------------------------------
def load_tests(path: str | Path, display_name: str | None = None) -> FlowTests:
    """Load and check a test file; raise :class:`DocumentError` listing every problem (the
    flow's own problems first, if the flow does not load)."""
    path = Path(path)
    name = display_name or str(path)
    root = load_document(path, name)
    top = root.mapping(allowed=TOP_KEYS, required=("flow", "cases"))
    flow: Flow | None = None
    flow_problems: list[Problem] = []
    if top is not None and "flow" in top:
        rel = top["flow"].text()
        if rel is not None:
            flow_path = path.parent / rel
            if not flow_path.is_file():
                top["flow"].error(f"flow file '{rel}' does not exist (paths are relative to the "
                                  "test file)")
            else:
                try:
                    flow = load_flow(flow_path, display_name=str(Path(name).parent / rel))
                except DocumentError as exc:
                    flow_problems = exc.problems
                    n = len(exc.problems)
                    top["flow"].error(f"the flow '{rel}' does not load: {n} "
                                      f"problem{'s' if n != 1 else ''}, listed above")
    cases: list[FlowCase] = []
    if top is not None:
        defaults: dict[str, Any] = {}
        if "defaults" in top:
            entries = top["defaults"].mapping(allowed=SETTING_KEYS)
            defaults = _settings(entries or {}, flow)
        names: set[str] = set()
        items = top["cases"].sequence() if "cases" in top else None
        if items is not None and not items:
            top["cases"].error("give at least one case")
        for item in items or ():
            case = _case(item, flow, defaults)
            if case is None:
                continue
            if case.name in names:
                item.error(f"a case named '{case.name}' is given twice")
            names.add(case.name)
            cases.append(case)
    if flow_problems:
        root.problems.items.sort(key=lambda p: (p.line, p.column))
        raise DocumentError(flow_problems + root.problems.items)
    root.problems.raise_if_any()
    assert flow is not None
    return FlowTests(name, flow, tuple(cases))


def _case(cursor: Cursor, flow: Flow | None, defaults: Mapping[str, Any]) -> FlowCase | None:
    f = cursor.mapping(allowed=CASE_KEYS, required=("name", "expect"))
    if f is None:
        return None
    settings = dict(defaults)
    settings.update(_settings(f, flow))
    name = f["name"].text() if "name" in f else None
    expect = _expect(f["expect"], flow) if "expect" in f else None
    if flow is not None and "at" not in settings and flow_timezone(flow) is not None:
        cursor.error("the flow has business hours: give 'at' (e.g. '2026-12-02 10:00') so the "
                     "case does not depend on the day it runs")
    if name is None or expect is None:
        return None
    return FlowCase(name=name, line=cursor.line, expect=expect, **settings)


def _settings(  # noqa: C901 - one arm per optional key of a case
    f: Mapping[str, Cursor], flow: Flow | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("caller", "called"):
        if key in f:
            value = f[key].text()
            if value is not None:
                out[key] = "" if key == "caller" and value == "withheld" else value
    if "at" in f:
        text = f["at"].text()
        if text is not None:
            try:
                out["at"] = parse_when(text, None, flow_timezone(flow) if flow else None)
            except ValueError as exc:
                f["at"].error(str(exc))
    if "language" in f:
        language = f["language"].text()
        if language is not None and flow is not None and language not in flow.languages:
            f["language"].error(f"'{language}' is not one of the flow's languages "
                                f"({', '.join(flow.languages)})")
        elif language is not None:
            out["language"] = language
    if "digits" in f:
        out["digits"] = _digits(f["digits"])
    if "lookup" in f:
        entries = f["lookup"].mapping()
        if entries is not None:
            out["lookups"] = {key: _plain(value.node) for key, value in entries.items()}
    if "failing_transfers" in f:
        out["failing_transfers"] = tuple(_texts(f["failing_transfers"]))
    if "overrides" in f:
        overrides = {}
        for switch, cursor in f["overrides"].items():
            state = cursor.choice(("open", "closed"))
            if state is not None:
                overrides[switch] = state
        out["overrides"] = overrides
    if "barge_in" in f:
        barge_in = f["barge_in"].boolean()
        if barge_in is not None:
            out["barge_in"] = barge_in
    if "ticket" in f:
        out["ticket"] = _ticket(f["ticket"])
    return out


def _ticket(cursor: Cursor) -> dict[str, str]:
    """A case's open ticket as the call variables it sets (status 'open' unless given)."""
    values = {"ticket_status": "open"}
    for key, value in cursor.items():
        text = value.text()
        if key not in TICKET_KEYS:
            value.error(f"unknown ticket key '{key}' ({', '.join(TICKET_KEYS)})."
                        f"{did_you_mean(key, TICKET_KEYS)}".rstrip("."))
        elif text is not None:
            values[TICKET_KEYS[key]] = text
    return values


def _digits(cursor: Cursor) -> tuple[str, ...]:
    items = cursor.sequence() if cursor.is_sequence() else [cursor]
    tokens: list[str] = []
    for item in items or ():
        text = item.text()
        if text is None:
            continue
        try:
            tokens += parse_digits(text if item is cursor else [text])
        except ValueError as exc:
            item.error(f"{exc}; e.g. digits: [2, 1, wait, \"123#\"]")
    return tuple(tokens)


def _texts(cursor: Cursor) -> list[str]:
    items = cursor.sequence() if cursor.is_sequence() else [cursor]
    return [t for t in (item.text() for item in items or ()) if t is not None]


def _plain(node: yaml.Node) -> Any:
    """A YAML node as plain data (for lookup answers)."""
    if isinstance(node, yaml.MappingNode):
        return {str(k.value): _plain(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_plain(v) for v in node.value]
    if node.tag.endswith((":int", ":float", ":bool", ":null")):
        return yaml.safe_load(node.value)
    return str(node.value)


def _node_names(flow: Flow, prefix: str = "") -> set[str]:
    names = set()
    for name, node in flow.nodes.items():
        names.add(prefix + name)
        if isinstance(node, Subflow):
            names |= _node_names(node.flow, f"{prefix}{name}/")
    return names


def _expect(cursor: Cursor, flow: Flow | None) -> Expect | None:
    f = cursor.mapping(allowed=EXPECT_KEYS)
    if f is None:
        return None
    if not f:
        cursor.error(f"give at least one of {', '.join(EXPECT_KEYS)}")
        return None
    path: tuple[str, ...] | str | None = None
    if "path" in f:
        if f["path"].is_sequence():
            known = _node_names(flow) if flow is not None else None
            names = []
            for item in f["path"].sequence() or ():
                node = item.text()
                if node is None:
                    continue
                if known is not None and node not in known:
                    item.error(f"the flow has no node '{node}'.{did_you_mean(node, known)}"
                               .rstrip("."))
                names.append(node)
            path = tuple(names)
        else:
            path = f["path"].text()
    exit_ = _exit(f["exit"], flow) if "exit" in f else None
    variables: dict[str, str] = {}
    if "variables" in f:
        for var, value in f["variables"].items():
            text = "" if value.is_scalar() and value.node.tag.endswith(":null") else value.text()
            if text is not None:
                variables[var] = text
    heard = tuple(_texts(f["heard"])) if "heard" in f else ()
    return Expect(path=path, exit=exit_, variables=variables, heard=heard)


def _exit(cursor: Cursor, flow: Flow | None) -> tuple[str, str] | None:
    if cursor.is_scalar():
        kind = cursor.choice(EXIT_KINDS, "way out of the IVR")
        return (kind, ANY) if kind is not None else None
    entries = cursor.mapping()
    if entries is None:
        return None
    if len(entries) != 1:
        cursor.error("give one way out: {queue: NAME}, {hangup: REASON}, {voicemail: '*'} or "
                     "{transfer: DESTINATION}")
        return None
    ((kind, value),) = entries.items()
    if kind not in EXIT_KINDS:
        value.error(f"'{kind}' is not a way out of the IVR; use one of "
                    f"{', '.join(EXIT_KINDS)}.{did_you_mean(kind, EXIT_KINDS)}".rstrip("."))
        return None
    text = value.text()
    if text is None:
        return None
    if kind == "hangup" and text not in (*HANGUP_REASONS, ANY):
        value.error(f"'{text}' is not a hangup reason ({', '.join(HANGUP_REASONS)})."
                    f"{did_you_mean(text, HANGUP_REASONS)}".rstrip("."))
    if kind == "queue" and flow is not None and text != ANY and text not in flow.queues():
        value.error(f"the flow has no queue '{text}'.{did_you_mean(text, flow.queues())}"
                    .rstrip("."))
    return kind, text


# -- running ------------------------------------------------------------------------------------
def run_case(flow: Flow, case: FlowCase) -> Outcome:
    sim = Simulation(flow, caller=case.caller, called=case.called, started_at=case.at,
                     language=case.language, lookups=case.lookups,
                     failing_transfers=case.failing_transfers, overrides=case.overrides,
                     barge_in=case.barge_in, variables=case.ticket)
    result = sim.run(case.digits)
    return Outcome(case, result, compare(case.expect, result))


def compare(expect: Expect, result: Result) -> list[str]:
    """What differs between *expect* and *result*, one entry per field (empty if nothing)."""
    failures = []
    if isinstance(expect.path, tuple) and list(expect.path) != result.nodes:
        failures.append(_diff("path", " > ".join(expect.path),
                              f"{' > '.join(result.nodes)}   ({result.path})"))
    elif isinstance(expect.path, str) and expect.path != result.path:
        failures.append(_diff("path", expect.path, result.path))
    if expect.exit is not None:
        kind, value = expect.exit
        # a call may leave more than one way (a message left, then the goodbye): any counts
        if kind not in result.exit or value not in (ANY, result.exit[kind]):
            wanted = kind if value == ANY else f"{kind} {value}"
            failures.append(_diff("exit", wanted, result.exit_text()))
    for var, value in expect.variables.items():
        actual_value = result.variables.get(var)
        if (actual_value != value) if value != ANY else not actual_value:
            failures.append(_diff(f"variable {var}", repr(value),
                                  "(not set)" if actual_value is None else repr(actual_value)))
    said = result.said()
    for text in expect.heard:
        if not any(text in s for s in said):
            failures.append(f"heard: '{text}' was never said")
    if result.unused:
        failures.append(f"digits: the call had left the IVR before {', '.join(result.unused)}")
    return failures


def _diff(what: str, expected: str, actual: str) -> str:
    label = f"{what}:"
    pad = " " * len(label)
    return f"{label} expected {expected}\n{pad} actual   {actual}"


# -- the command --------------------------------------------------------------------------------
def find_test_files(paths: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Test files under *paths* (directories are searched; a flow file stands for the test file
    beside it), and messages about paths that hold none."""
    files: list[Path] = []
    errors: list[str] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(path.rglob(f"*{SUFFIX}"))
            if not found:
                errors.append(f"{name}: no flow tests (*{SUFFIX}) here")
            files += found
        elif path.name.endswith(SUFFIX) and path.is_file():
            files.append(path)
        elif path.suffix in (".yaml", ".yml") and path.is_file():
            beside = path.with_name(path.name[: -len(path.suffix)] + SUFFIX)
            if beside.is_file():
                files.append(beside)
            else:
                errors.append(f"{name}: no tests for this flow (write {beside.name} beside it)")
        else:
            errors.append(f"{name}: no such file or directory")
    unique = list(dict.fromkeys(files))
    return unique, errors


def main(paths: Iterable[str], verbose: bool = False, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """``ivr test``: run every case, print a line each and a summary; 0 if all passed."""
    out = out or sys.stdout
    err = err or sys.stderr
    files, errors = find_test_files(paths)
    for message in errors:
        print(message, file=err)
    passed = failed = broken = 0
    for path in files:
        try:
            tests = load_tests(path)
        except DocumentError as exc:
            broken += 1
            for problem in exc.problems:
                print(str(problem), file=err)
            continue
        for case in tests.cases:
            outcome = run_case(tests.flow, case)
            where = f"{tests.name}:{case.line}"
            if outcome.passed:
                passed += 1
                print(f"PASS  {where}  {case.name}", file=out)
            else:
                failed += 1
                print(f"FAIL  {where}  {case.name}", file=out)
                for failure in outcome.failures:
                    print(_indent(failure, 6), file=out)
            if verbose or not outcome.passed:
                print("      transcript:", file=out)
                for line in outcome.result.transcript:
                    print(f"        {line}", file=out)
    summary = f"{passed} passed, {failed} failed"
    if broken:
        summary += f"; {broken} test file{'s' if broken != 1 else ''} with errors"
    print(summary, file=out)
    return 0 if not failed and not broken and not errors else 1


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


__all__ = ["Expect", "FlowCase", "FlowTests", "Outcome", "compare", "find_test_files",
           "load_tests", "main", "run_case"]

"""Outbound campaigns: one YAML file each in the folder ``campaigns:`` of ivr.yaml names.

A campaign says who works it (a queue's agents), how it dials (``mode``), when (its calling
``window`` in its own time zone, with holidays as the flows' ``hours`` nodes take them), what
it presents (``caller_id``), on which trunk and how many lines at most, how often a contact is
tried again after each outcome, and which dispositions end a contact::

    name: spring-offer                  # default: the file's name without .yaml
    queue: sales
    mode: progressive                   # preview | progressive | automated
    trunk: gateway
    max_lines: 4
    reserve_inbound: 2                  # lines always left to inbound callers
    caller_id: "+390612345678"
    window:
      timezone: Europe/Rome
      days: [mon-fri]
      hours: "09:00-13:00,14:00-19:00"
      holidays: {country: IT, dates: ["2026-08-14"]}
    retries:
      busy: {times: 3, after: 15m}
      no_answer: {times: 3, after: 2h}
    final_dispositions: ["4"]
    dnc_disposition: "6"
    script: "Good morning {name}, ..."

Files are checked like ivr.yaml and flows: every problem at once, each as
``campaigns/spring.yaml:7:8: trunk: unknown trunk 'gatway'. Did you mean 'gateway'?``. The
names a campaign refers to (queue, trunk, dispositions) must exist in ivr.yaml, an automated
campaign's flow is loaded with the flow loader, and a campaign is refused while no dial_out rule
of ivr.yaml has ``campaigns: true`` (it could dial nothing: see
:meth:`ivr.config.Config.campaign_dial_target`, which every dial goes through).

The keys and their meaning are declared once in :data:`CAMPAIGN` with the shapes of
:mod:`ivr.config_spec`, which checks them; the cross-key rules are in :func:`_rules`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivr.config import Config
from ivr.config_spec import Context, Key, ListOf, Section, Value, spec_schema, validate
from ivr.flow.loader import check_holidays, check_timezone, day_range, load_flow, time_range
from ivr.flow.model import Collect, Flow, Hours, Lookup, Subflow
from ivr.yamlsrc import Cursor, DocumentError, Problem, load_document

MODES = ("preview", "progressive", "automated")
"""preview: the agent starts each call from the console; progressive: the box dials when an
agent of the queue is free and puts them through on answer; automated: no agent, a flow runs
on answer."""
OUTCOMES = ("busy", "no_answer", "failed", "callback")
"""Outcomes of an attempt that a contact is tried again after (``retries``)."""
ABANDON_CAP_MAX = 0.03
"""Abandoned calls (answered with no agent free) per answered call and day, at most."""
DAYS_DEFAULT = (0, 1, 2, 3, 4)
"""A window without ``days``: Monday to Friday."""

_DURATION = r"^\s*[0-9]+(\.[0-9]+)?\s*(s|m|h|d)?\s*$"
_DURATION_MESSAGE = "'{value}' is not a duration such as 90s, 30m or 2h"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_VARIABLE = r"^[a-z_][a-z0-9_]*$"
_RETRY_DEFAULTS = {"busy": (3, "15m"), "no_answer": (3, "1h"), "failed": (1, "30m"),
                   "callback": (2, "1h")}


def parse_duration(text: str) -> float:
    """Seconds in '90s', '30m', '2h', '1d' or a plain number of seconds ('45')."""
    match = re.fullmatch(_DURATION, str(text))
    if match is None:
        raise ValueError(_DURATION_MESSAGE.replace("{value}", str(text)))
    number = str(text).strip().rstrip("smhd").strip()
    return float(number) * _UNITS[match.group(2) or "s"]


def _duration(doc: str, default: str | None = None) -> Value:
    return Value("text", doc, default=default, pattern=_DURATION, message=_DURATION_MESSAGE,
                 example="30m")


def _retry(outcome: str, meaning: str) -> Section:
    times, after = _RETRY_DEFAULTS[outcome]
    return Section(f"After {meaning}: how many more attempts, and how long after.", (
        Key("times", Value("integer", f"Attempts after {meaning}, at most (0: none; default "
                                      f"{times}).", default=times, minimum=0, maximum=100)),
        Key("after", _duration(f"Time from the attempt to the next one (default {after}); a "
                               "time outside the window moves to its next opening.", after)),
    ))


_WINDOW = Section("When the campaign may dial, in its own time zone; nothing is dialled "
                  "outside it.", (
    Key("timezone", Value("text", "Time zone of the hours, e.g. Europe/Rome.",
                          example="Europe/Rome"), required=True),
    Key("days", ListOf("Days, or ranges of days, it may dial (default: mon-fri).",
                       Value("text", "mon, tue... or a range such as mon-fri, or daily.",
                             example="mon-fri"))),
    Key("hours", Value("text", "Hours it may dial on those days: '09:00-13:00,14:00-19:00'.",
                       example="09:00-13:00,14:00-19:00"), required=True),
    Key("holidays", Section("Days it never dials: a country's public holidays (the holidays "
                            "library, as the flows' hours nodes) and dates.", (
        Key("country", Value("text", "ISO country code, e.g. IT.", example="IT")),
        Key("subdivision", Value("text", "Region or province code of the country.")),
        Key("dates", ListOf("Extra dates, YYYY-MM-DD.", Value("text", "A date.",
                                                             example="2026-08-14"))),
    ))),
), delegated="ivr.outbound.campaigns")

_PAUSE = Section("Inbound first: the campaign dials nothing while one of these holds (and "
                 "always while an inbound caller waits for its agents).", (
    Key("service_level_below", Value("number", "The queue's service level now (0 to 1) under "
                                               "this (default: the queue's own target, when "
                                               "the switchboard has one).", minimum=0,
                                     maximum=1)),
    Key("wait_over", _duration("An inbound caller anywhere has waited longer than this "
                               "(default 30s).", "30s")),
))

CAMPAIGN = Section("An outbound campaign (one file of the campaigns folder). Paths are "
                   "relative to the file's folder.", (
    Key("name", Value("text", "The campaign's name (default: the file's name without .yaml).",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                      message="'{value}' is not a campaign name (letters, digits, '_', '-', "
                              "'.')")),
    Key("description", Value("text", "A note for technicians.")),
    Key("queue", Value("ref", "The queue whose agents work the campaign (preview, "
                              "progressive); an automated campaign may name one to pause "
                              "for its inbound callers.", ref="queues")),
    Key("mode", Value("choice", "preview (the agent starts each call), progressive (the box "
                                "dials for each free agent) or automated (a flow, no agent).",
                      choices=MODES, what="campaign mode"), required=True),
    Key("flow", Value("path", "automated: the flow run when a contact answers.",
                      example="../flows/reminder.yaml",
                      must_exist="flow file '{name}' does not exist")),
    Key("script", Value("text", "What the agent's console shows for a contact; {name}, "
                                "{number} and the list's columns such as {customer} are "
                                "filled in.", default="")),
    Key("caller_id", Value("text", "The number presented to the people called (default: the "
                                   "trunk's own).", pattern=r"^\+?[0-9]{2,20}$",
                           message="'{value}' is not a number to present such as "
                                   "+390612345678", example="+390612345678")),
    Key("trunk", Value("ref", "The trunk (gateway) the campaign dials through.", ref="trunks"),
        required=True),
    Key("max_lines", Value("integer", "Lines of the trunk the campaign uses at most.",
                           minimum=1, maximum=1000), required=True),
    Key("reserve_inbound", Value("integer", "Lines of the trunk always left free for inbound "
                                            "calls (default 1).", default=1, minimum=0,
                                 maximum=1000)),
    Key("window", _WINDOW, required=True),
    Key("retries", Section("Attempts again after each outcome.", (
        Key("busy", _retry("busy", "a busy line")),
        Key("no_answer", _retry("no_answer", "no answer")),
        Key("failed", _retry("failed", "a failed call (network, gateway)")),
        Key("callback", _retry("callback", "a contact who asked to be called back, or an "
                                           "answered call without a final disposition")),
    ))),
    Key("final_dispositions", ListOf("Dispositions (codes of ivr.yaml) that end a contact.",
                                     Value("ref", "A disposition code.", ref="dispositions"))),
    Key("dnc_disposition", Value("ref", "A disposition that ends the contact and adds the "
                                        "number to the do-not-call list.",
                                 ref="dispositions")),
    Key("dial_ratio", Value("number", "progressive: calls per free agent (above 1 only while "
                                      "abandoned calls stay under abandon_cap).", default=1.0,
                            minimum=1.0, maximum=5.0)),
    Key("abandon_cap", Value("number", "Abandoned calls (answered with no agent free) per "
                                       "answered call and day above which the ratio falls "
                                       "back to 1 (at most 0.03, the default).",
                             default=ABANDON_CAP_MAX, minimum=0, maximum=1)),
    Key("pause_when", _PAUSE),
    Key("whisper", Value("boolean", "The agent hears the contact's name before being put "
                                    "through (default true).", default=True)),
    Key("answers", ListOf("automated: flow variables stored per contact (a survey's answers).",
                          Value("text", "A variable the flow sets.", pattern=_VARIABLE,
                                message="'{value}' is not a flow variable name"))),
))
"""The spec of a campaign file."""


@dataclass(frozen=True)
class Retry:
    times: int
    """Attempts after this outcome, at most."""
    after: float
    """Seconds from the attempt to the next one."""


@dataclass(frozen=True)
class Window:
    """When a campaign may dial. :attr:`hours` is the same hours node a flow has (open on
    the days and hours given, closed on holidays): :mod:`ivr.outbound.plan` asks it."""

    timezone: str
    days: tuple[int, ...]
    """Weekdays, Monday = 0."""
    intervals: tuple[tuple[int, int], ...]
    """(start, end) minutes since local midnight."""
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    holiday_dates: tuple[str, ...] = ()
    hours: Hours = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        schedule = {day: tuple(sorted(self.intervals)) for day in self.days}
        object.__setattr__(self, "hours", Hours(
            "window", 1, self.timezone, schedule, "open", "closed", "holiday",
            self.holiday_country, self.holiday_subdivision, self.holiday_dates))


@dataclass(frozen=True)
class PauseWhen:
    service_level_below: float | None = None
    """None: the queue's own target (given to the pacer)."""
    wait_over: float = 30.0
    """Seconds; 0: not a reason."""


@dataclass(frozen=True)
class Campaign:
    name: str
    mode: str
    trunk: str
    trunk_lines: int
    """Lines of the trunk (from ivr.yaml), for the inbound reserve."""
    max_lines: int
    window: Window
    queue: str | None = None
    source: str = ""
    """The file, as messages name it."""
    description: str = ""
    reserve_inbound: int = 1
    caller_id: str = ""
    """'' : the trunk's own."""
    flow: Path | None = None
    script: str = ""
    retries: Mapping[str, Retry] = field(default_factory=lambda: {
        outcome: Retry(times, parse_duration(after))
        for outcome, (times, after) in _RETRY_DEFAULTS.items()})
    final_dispositions: frozenset[str] = frozenset()
    dnc_disposition: str | None = None
    dial_ratio: float = 1.0
    abandon_cap: float = ABANDON_CAP_MAX
    pause_when: PauseWhen = field(default_factory=PauseWhen)
    whisper: bool = True
    answers: tuple[str, ...] = ()

    def retry(self, outcome: str) -> Retry:
        return self.retries.get(outcome) or Retry(0, 0.0)


# -- loading -----------------------------------------------------------------------------------

def load_campaigns(config: Config) -> dict[str, Campaign]:
    """Every campaign of the folder ``campaigns:`` names (none without it), by name.

    Raises :class:`DocumentError` with every problem of every file (and of automated
    campaigns' flows), file by file.
    """
    folder = config.campaigns_dir
    if folder is None:
        return {}
    files = sorted(p for p in folder.iterdir()
                   if p.suffix in (".yaml", ".yml") and p.is_file()) if folder.is_dir() else []
    campaigns: dict[str, Campaign] = {}
    problems: list[Problem] = []
    for path in files:
        try:
            campaign = load_campaign(path, config, campaigns)
        except DocumentError as exc:
            problems.extend(exc.problems)
            continue
        campaigns[campaign.name] = campaign
    if problems:
        raise DocumentError(problems)
    return campaigns


def load_campaign(path: Path, config: Config,
                  taken: Mapping[str, Campaign] | None = None) -> Campaign:
    """Load and check one campaign file against *config*; *taken*: campaigns already loaded
    (a second campaign of the same name is a problem)."""
    display = _display(path, config)
    root = load_document(path, display)
    context = Context(path.resolve().parent, {
        "queues": list(config.queues), "trunks": [t.name for t in config.trunks],
        "dispositions": list(config.dispositions)})
    values = validate(root, CAMPAIGN, context)
    flow_problems: list[Problem] = []
    campaign = None
    if isinstance(values, dict):
        window = _window(values["window"]) if isinstance(values.get("window"), Cursor) else None
        flow = _flow(values, root, config, flow_problems)
        _rules(values, root, config, flow, taken or {}, path)
        if not root.problems.items and not flow_problems and window is not None:
            campaign = _build(values, window, config, path, display)
    if campaign is None and not root.problems.items and not flow_problems:
        root.error("not a campaign: see the keys of a campaign file")  # a guard; checks name it
    if root.problems.items or flow_problems or campaign is None:
        items = sorted(root.problems.items, key=lambda p: (p.line, p.column))
        raise DocumentError(items + flow_problems)
    return campaign


def _display(path: Path, config: Config) -> str:
    """*path* as messages name it: from the folder of ivr.yaml when it is inside it."""
    try:
        return str(path.resolve().relative_to(config.source.resolve().parent))
    except ValueError:
        return str(path)


def _at(cursor: Cursor, *keys: str) -> Cursor:
    """The cursor of the value at *keys* under *cursor* (or the nearest one that exists), for
    locating a problem found across keys."""
    for key in keys:
        node = cursor.node
        found = None
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        if found is None:
            return cursor
        cursor = Cursor(found, cursor.child_path(key), cursor.problems)
    return cursor


def _window(cursor: Cursor) -> Window | None:
    f = cursor.mapping(allowed=[k.name for k in _WINDOW.keys], required=("timezone", "hours"))
    if f is None:
        return None
    before = len(cursor.problems.items)
    timezone = check_timezone(f["timezone"]) if "timezone" in f else None
    days = _days(f["days"]) if "days" in f else set(DAYS_DEFAULT)
    intervals = _hours(f["hours"]) if "hours" in f else []
    country = subdivision = None
    dates: tuple[str, ...] = ()
    if "holidays" in f:
        country, subdivision, dates = check_holidays(f["holidays"])
    if len(cursor.problems.items) > before or timezone is None or not days or not intervals:
        return None
    return Window(timezone, tuple(sorted(days)), tuple(sorted(set(intervals))), country,
                  subdivision, dates)


def _days(cursor: Cursor) -> set[int]:
    days: set[int] = set()
    before = len(cursor.problems.items)
    for item in (cursor.sequence() if cursor.is_sequence() else [cursor]) or ():
        text = item.text()
        found = day_range(text) if text is not None else None
        if found is None and text is not None:
            item.error(f"'{text}' is not a day or range of days such as 'mon', 'mon-fri' or "
                       "'daily'")
        days.update(found or ())
    if not days and len(cursor.problems.items) == before:
        cursor.error("no day: the campaign would never dial (leave 'days' out for mon-fri)")
    return days


def _hours(cursor: Cursor) -> list[tuple[int, int]]:
    intervals: list[tuple[int, int]] = []
    before = len(cursor.problems.items)
    for item in (cursor.sequence() if cursor.is_sequence() else [cursor]) or ():
        text = item.text()
        for part in (text.split(",") if text is not None else ()):
            interval = time_range(part)
            if interval is None:
                item.error(f"'{part.strip()}' is not a time range such as '09:00-13:00'")
            else:
                intervals.append(interval)
    if not intervals and len(cursor.problems.items) == before:
        cursor.error("no hours: give at least one range such as '09:00-13:00'")
    return intervals


def _flow(values: dict[str, Any], root: Cursor, config: Config,
          problems: list[Problem]) -> Flow | None:
    path = values.get("flow")
    if values.get("mode") != "automated" or not isinstance(path, Path):
        return None
    try:
        return load_flow(path, config.queues, _display(path, config),
                         lambda destination: config.transfer_target(destination) is not None)
    except DocumentError as exc:
        problems.extend(exc.problems)
        return None


def _rules(values: dict[str, Any], root: Cursor, config: Config, flow: Flow | None,
           taken: Mapping[str, Campaign], path: Path) -> None:
    """The checks across keys and across files."""
    mode = values.get("mode")
    if mode in ("preview", "progressive") and "queue" not in values:
        root.error(f"missing required key 'queue': the agents who work a {mode} campaign")
    if mode == "automated" and "flow" not in values:
        root.error("missing required key 'flow': what an automated campaign plays to the "
                   "people who answer")
    if mode is not None and mode != "automated":
        for key in ("flow", "answers"):
            if key in values:
                _at(root, key).error(f"'{key}' is for automated campaigns (this one is {mode})")
    _lines(values, root, config)
    _ratio(values, root, mode)
    if flow is not None:
        known = _flow_variables(flow)
        items = _at(root, "answers").sequence() if "answers" in values else None
        for item, name in zip(items or (), values.get("answers") or (), strict=False):
            if name is not None and name not in known:
                item.error(f"the flow never sets '{name}' (it sets: "
                           f"{', '.join(sorted(known)) or 'nothing'})")
    name = values.get("name") or path.stem
    if name in taken:
        _at(root, "name").error(f"campaign '{name}' is defined twice: also in "
                                f"{taken[name].source}")
    if not any(rule.campaigns for rule in config.dial_out):
        root.error("no dial_out rule of ivr.yaml has 'campaigns: true': this campaign could "
                   "dial nobody (add it to the rule of the numbers campaigns may call)")
    script = values.get("script")
    if isinstance(script, str):
        _check_script(script, _at(root, "script"))


def _lines(values: dict[str, Any], root: Cursor, config: Config) -> None:
    trunk = next((t for t in config.trunks if t.name == values.get("trunk")), None)
    max_lines, reserve = values.get("max_lines"), values.get("reserve_inbound")
    if trunk is None:
        return
    if isinstance(max_lines, int) and max_lines > trunk.lines:
        _at(root, "max_lines").error(f"max_lines {max_lines} is more than trunk "
                                     f"'{trunk.name}' has ({trunk.lines} lines)")
    if isinstance(reserve, int) and reserve >= trunk.lines:
        _at(root, "reserve_inbound").error(
            f"reserve_inbound {reserve} leaves no line of trunk '{trunk.name}' "
            f"({trunk.lines} lines) to the campaign")


def _ratio(values: dict[str, Any], root: Cursor, mode: Any) -> None:
    ratio, cap = values.get("dial_ratio"), values.get("abandon_cap")
    if isinstance(cap, float) and cap > ABANDON_CAP_MAX:
        _at(root, "abandon_cap").error(
            f"abandon_cap {cap:g} is over {ABANDON_CAP_MAX:g}: at most 3% of the answered "
            "calls of a day may be abandoned (answered with no agent free)")
    if isinstance(ratio, float) and ratio > 1:
        if mode != "progressive":
            _at(root, "dial_ratio").error(f"dial_ratio above 1 is for progressive campaigns "
                                          f"(this one is {mode})")
        elif isinstance(cap, float) and cap <= 0:
            _at(root, "dial_ratio").error("dial_ratio above 1 needs an abandon_cap above 0")


def _check_script(script: str, cursor: Cursor) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(script) if name is not None]
    except ValueError as exc:
        cursor.error(f"the script's braces do not pair up ({exc}); write {{{{ and }}}} for a "
                     "brace shown as is")
        return
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            cursor.error(f"'{{{name}}}' is not a placeholder such as {{name}} or {{customer}}")


def _flow_variables(flow: Flow) -> set[str]:
    """The variables a flow (and its subflows) can set."""
    found = set(flow.variables)
    for node in flow.nodes.values():
        if isinstance(node, Collect):
            found.add(node.variable)
        elif isinstance(node, Lookup):
            found.update(node.fields)
        elif isinstance(node, Subflow):
            found |= _flow_variables(node.flow)
    return found


def _build(values: dict[str, Any], window: Window, config: Config, path: Path,
           display: str) -> Campaign:
    trunk = next(t for t in config.trunks if t.name == values["trunk"])
    retries = values.get("retries") or {}
    pause = values.get("pause_when") or {}
    return Campaign(
        name=values.get("name") or path.stem, mode=values["mode"], trunk=trunk.name,
        trunk_lines=trunk.lines, max_lines=values["max_lines"], window=window,
        queue=values.get("queue"), source=display, description=values.get("description") or "",
        reserve_inbound=values["reserve_inbound"], caller_id=str(values.get("caller_id") or ""),
        flow=values.get("flow"), script=values.get("script") or "",
        retries={outcome: Retry(int(r["times"]), parse_duration(r["after"]))
                 for outcome, r in retries.items()},
        final_dispositions=frozenset(values.get("final_dispositions") or ()),
        dnc_disposition=values.get("dnc_disposition"),
        dial_ratio=float(values["dial_ratio"]), abandon_cap=float(values["abandon_cap"]),
        pause_when=PauseWhen(pause.get("service_level_below"),
                             parse_duration(pause.get("wait_over", "30s"))),
        whisper=bool(values["whisper"]), answers=tuple(values.get("answers") or ()))


def campaign_schema() -> dict[str, Any]:
    """The JSON Schema (draft-07) of a campaign file, from :data:`CAMPAIGN`."""
    return {"$schema": "http://json-schema.org/draft-07/schema#",
            "title": "Centralino outbound campaign", **spec_schema(CAMPAIGN)}


__all__ = ["CAMPAIGN", "MODES", "OUTCOMES", "Campaign", "PauseWhen", "Retry", "Window",
           "campaign_schema", "load_campaign", "load_campaigns", "parse_duration"]

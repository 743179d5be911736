"""The `ivr` command."""

from __future__ import annotations

import argparse
import logging
import math
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ivr import __version__
from ivr.errors import RecordsError, StartupError, one_line
from ivr.yamlsrc import DocumentError

if TYPE_CHECKING:
    from ivr.config import Disposition

log = logging.getLogger("ivr")
T = TypeVar("T")

DEFAULT_CONFIG = "ivr.yaml"


def _version_text() -> str:
    try:
        from ivr.sip.stack import stack_version
        stack = stack_version()
    except ImportError:
        stack = "pjsua2 is not installed (run 'make venv' to build it)"
    return f"ivr (Centralino) {__version__}\nSIP stack: {stack}"


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def _setup_logging(level: str) -> None:
    """Logging for `ivr run`: one line per record on standard error (the journal under
    systemd), with text from the network escaped and bounded (ivr.logs.SafeFormatter), and a
    faulthandler trace of every thread on a fatal signal (SIGSEGV, SIGABRT...) so a crash in the
    SIP stack leaves where it happened."""
    import faulthandler

    from ivr.logs import SafeFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(LOG_FORMAT, datefmt=LOG_DATE_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    faulthandler.enable(file=sys.stderr, all_threads=True)


def _print_problems(exc: DocumentError) -> None:
    for problem in exc.problems:
        print(str(problem), file=sys.stderr)
    n = len(exc.problems)
    print(f"{n} problem{'s' if n != 1 else ''} found.", file=sys.stderr)


def _fail(message: str) -> int:
    """Print ``ivr: error: <message>`` as one line on standard error; the exit status 2."""
    print(f"ivr: error: {one_line(message)}", file=sys.stderr)
    return 2


def _operator_errors() -> tuple[type[Exception], ...]:
    """Errors whose message is meant for the operator as it is: startup checks, a file that
    is not a call record database, and the call store's own (where ivr.store defines them)."""
    from ivr import store

    error = getattr(store, "StoreError", None)
    found: tuple[type[Exception], ...] = (StartupError, RecordsError)
    return (*found, error) if isinstance(error, type) and issubclass(error, Exception) \
        else found


def _checked(load: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Load a configuration, flow or test file; on problems print them all and give None."""
    try:
        return load(*args, **kwargs)
    except DocumentError as exc:
        _print_problems(exc)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    from ivr.config import load_config
    from ivr.flow import Flow, load_flow
    from ivr.prompts import check_tools

    config = _checked(load_config, args.config)
    if config is None:
        return 2
    _setup_logging(args.log_level or config.log_level)
    missing = check_tools()
    if missing:
        log.error("missing programs for prompts: %s (apt-get install %s)", ", ".join(missing),
                  " ".join(missing))
        return 2

    def transfer_allowed(destination: str) -> bool:
        return config.transfer_target(destination) is not None

    flows: dict[str, Flow] = {}
    for path in config.flow_paths():  # the default flow and every route's
        flow = _checked(load_flow, path, known_queues=config.queues,
                        transfer_allowed=transfer_allowed)
        if flow is None:
            return 2
        flows[str(path)] = flow
    from ivr.preflight import check_startup

    check_startup(config)  # a port in use or a store it cannot write: one line, not a traceback

    def reload_flow(path: str) -> Flow:
        """A flow file checked again; run() logs a DocumentError and keeps the old flow."""
        return load_flow(path, known_queues=config.queues, transfer_allowed=transfer_allowed)

    import importlib.util

    if importlib.util.find_spec("pjsua2") is None:  # only ivr/sip imports the SIP stack
        log.error("the SIP stack (pjsua2) is not installed in this environment: run 'make venv'")
        return 2
    from ivr.driver.service import run

    return run(config, flows, reload_flow)


def cmd_doctor(args: argparse.Namespace) -> int:
    from ivr.config import load_config
    from ivr.doctor import format_report, security_report, worst_level

    if not args.security:
        from ivr.checkup import exit_status, format_checks, run_checks

        checks = run_checks(args.config, args.timeout)
        print(format_checks(checks), end="")
        return exit_status(checks)
    config = _checked(load_config, args.config)
    if config is None:
        return 2
    findings = security_report(config, args.config)
    print(format_report(findings), end="")
    return 1 if worst_level(findings) == "danger" else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from ivr.config import load_config
    from ivr.flow import load_flow

    queues = None
    transfer_allowed = None
    if args.config:
        config = _checked(load_config, args.config)
        if config is None:
            return 2
        queues = config.queues
        transfer_allowed = lambda dest: config.transfer_target(dest) is not None  # noqa: E731
    status = 0
    for name in args.files:
        if name.endswith(".test.yaml"):  # a flow's test cases: check them (run with ivr test)
            from ivr.flowtest import load_tests

            try:
                tests = load_tests(name)
            except DocumentError as exc:
                _print_problems(exc)
                status = 1
                continue
            print(f"{name}: ok (tests of flow '{tests.flow.name}', {len(tests.cases)} cases; "
                  "run them with 'ivr test')")
            continue
        try:
            flow = load_flow(name, known_queues=queues, transfer_allowed=transfer_allowed)
        except DocumentError as exc:
            _print_problems(exc)
            status = 1
            continue
        print(f"{name}: ok (flow '{flow.name}', {len(flow.nodes)} nodes, version {flow.version})")
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    if args.config:
        from ivr.config_spec import schema_text
    else:
        from ivr.flow.schema import schema_text

    text = schema_text()
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"{args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from ivr.flow import load_flow
    from ivr.flow.graph import GraphError, format_for, render, to_dot

    fmt = args.format or format_for(args.output)
    flow = _checked(load_flow, args.file)
    if flow is None:
        return 2
    dot = to_dot(flow)
    try:
        data = dot.encode("utf-8") if fmt == "dot" else render(dot, fmt)
    except GraphError as exc:
        print(f"ivr graph: {exc}", file=sys.stderr)
        return 2
    if args.output is None and fmt != "png":
        sys.stdout.write(data.decode("utf-8"))
        return 0
    if args.output is None:
        if sys.stdout.isatty():
            print("ivr graph: PNG is not for a terminal: give --output FILE", file=sys.stderr)
            return 2
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    try:
        Path(args.output).write_bytes(data)
    except OSError as exc:
        print(f"{args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from ivr.flow import load_flow
    from ivr.simulate import main as simulate

    flow = _checked(load_flow, args.file)
    if flow is None:
        return 2
    return simulate(flow, args)


def cmd_test(args: argparse.Namespace) -> int:
    from ivr.flowtest import main as run_tests

    return run_tests(args.paths or ["flows/"], verbose=args.verbose)


def _seconds(text: str) -> float:
    """'240', '240s', '4m', '1h' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    scale = units.get(text[-1:].lower(), 0)
    number = text[:-1] if scale else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration such as 240s or 4m")
    if value < 0:
        raise argparse.ArgumentTypeError("a duration cannot be negative")
    return value


def _threshold(text: str) -> float:
    """A service level threshold: a duration of more than 0 seconds."""
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got '{text}'")
    return value


def _days(minimum: float, *, inclusive: bool) -> Callable[[str], float]:
    """An argparse type: a number of days, at least (or more than) *minimum*."""
    def days(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"'{text}' is not a number of days such as 7")
        if value < minimum or (value == minimum and not inclusive):
            bound = "at least" if inclusive else "more than"
            unit = "day" if minimum == 1 else "days"
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum:g} {unit}, got '{text}'")
        return value

    days.__name__ = "days"
    return days


def _number(text: str) -> str:
    """A caller's number for ``ivr purge --caller``: not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give the caller's number, e.g. 3331234567")
    return text


def _share(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a share such as 80% or 0.8") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("the target must be between 0 and 100%")
    return value


def cmd_simulate_load(args: argparse.Namespace) -> int:
    import json

    from routing.simulator import LoadSpec, simulate

    spec = LoadSpec(agents=args.agents, calls_per_hour=args.calls_per_hour,
                    handle_time=args.handle_time, hours=args.hours, patience=args.patience,
                    threshold=args.threshold, seed=args.seed, strategy=args.strategy,
                    max_wait=args.max_wait)
    if args.agents < 1 or args.calls_per_hour <= 0 or args.handle_time <= 0:
        print("agents, calls per hour and handle time must be positive", file=sys.stderr)
        return 2
    erlangs = args.calls_per_hour * args.handle_time / 3600
    if erlangs >= args.agents and not args.patience and not args.json:
        print(f"note: {erlangs:.1f} erlangs of traffic on {args.agents} agents is more than "
              "they can answer; the queue grows without end", file=sys.stderr)
    result = simulate(spec)
    if args.json:
        print(json.dumps(result.as_dict(), sort_keys=True))
        return 0
    print(f"{result.calls} calls in {args.hours:g} h on {args.agents} agents "
          f"({erlangs:.2f} erlangs offered)")
    print(f"  service level  {result.service_level:6.1%} answered within {args.threshold:g} s")
    print(f"  ASA            {result.asa_seconds:6.1f} s")
    print(f"  abandonment    {result.abandonment_rate:6.1%} ({result.abandoned} calls)")
    print(f"  occupancy      {result.occupancy:6.1%}")
    for key, count in sorted(result.escalations.items()):
        queue, kind = key.split(":")
        print(f"  escalations    {count} from {queue} ({kind})")
    return 0


def cmd_staffing(args: argparse.Namespace) -> int:
    from routing.erlang import agents_needed, average_speed_of_answer, service_level

    try:
        hours = [float(x) for x in args.calls_per_hour.split(",") if x.strip()]
    except ValueError:
        print(f"--calls-per-hour: '{args.calls_per_hour}' is not a list of numbers",
              file=sys.stderr)
        return 2
    print(f"target: {args.target:.0%} of calls answered within {args.threshold:g} s, "
          f"handle time {args.handle_time:g} s (Erlang C)")
    print(f"{'hour':>4}  {'calls':>7}  {'erlangs':>7}  {'SL':>6}  {'ASA s':>6}  agents")
    for i, calls in enumerate(hours):
        n = agents_needed(calls, args.handle_time, args.target, args.threshold)
        sl = service_level(n, calls, args.handle_time, args.threshold) if n else 1.0
        asa = average_speed_of_answer(n, calls, args.handle_time) if n else 0.0
        print(f"{i:>4}  {calls:>7g}  {calls * args.handle_time / 3600:>7.2f}  {sl:>6.1%}  "
              f"{asa:>6.1f}  {n}")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    import time

    from ivr.config import load_config
    from ivr.store import CallStore

    config = _checked(load_config, args.config)
    if config is None:
        return 2
    from ivr.preflight import check_store_path

    if args.name not in config.agents:
        from ivr.yamlsrc import did_you_mean

        print(f"unknown agent '{args.name}'.{did_you_mean(args.name, config.agents)}"
              .rstrip(".") + f" (agents in {args.config}: {', '.join(sorted(config.agents))})",
              file=sys.stderr)
        return 2
    check_store_path(config.store)
    store = CallStore(config.store)
    try:
        store.request_agent_command(args.name, args.action, args.reason or "", time.time())
    finally:
        store.close()
    state = {"login": "logged in", "logout": "logged out", "pause": "paused",
             "unpause": "available"}[args.action]
    print(f"agent {args.name}: {state}" + (f" ({args.reason})" if args.reason else "")
          + " (a running switchboard applies it within a second; it also holds after a "
            "restart)")
    return 0


def cmd_hw(args: argparse.Namespace) -> int:
    from hw.tools import exercise, format_ports, present_ports
    from ivr.config import Device, load_config

    devices: dict[str, Device] = {}
    if args.action == "test" or Path(args.config).exists():
        config = _checked(load_config, args.config)
        if config is None:
            return 2
        devices = config.devices
    if args.action == "list":
        print(format_ports(present_ports(), devices), end="")
        return 0
    if not args.name or args.name not in devices:
        from ivr.yamlsrc import did_you_mean

        known = ", ".join(sorted(devices)) or "none"
        what = (f"no device '{args.name}' in {args.config}.{did_you_mean(args.name, devices)}"
                if args.name else f"name a device of {args.config}.")
        print(f"ivr hw test: {what} (devices: {known})", file=sys.stderr)
        return 2
    device = devices[args.name]
    if device.kind == "modem":
        from hw.modem import exercise_modem

        return exercise_modem(device.url, device.pin or None, sys.stdout, args.to or "")
    return exercise(device, sys.stdout)


def cmd_sms(args: argparse.Namespace) -> int:
    from ivr.sms import format_queue

    where = _store_and_recordings(args)
    if where is None:
        return 2
    print(format_queue(where[0], args.last), end="")
    return 0


def _store_and_recordings(args: argparse.Namespace) -> tuple[Path, Path | None, int] | None:
    """The call record file, voicemail folder and retention days from --store or --config."""
    if getattr(args, "store", None) is not None:
        return args.store, None, 0
    from ivr.config import load_config

    config = _checked(load_config, args.config)
    if config is None:
        return None
    return config.store, config.recordings, config.retention_days


def _dispositions(args: argparse.Namespace) -> dict[str, Disposition]:
    """The dispositions of ivr.yaml for reports (none with --store alone)."""
    if getattr(args, "store", None) is not None:
        return {}
    from ivr.config import load_config

    config = _checked(load_config, args.config)
    return dict(config.dispositions) if config is not None else {}


def _teams(args: argparse.Namespace) -> dict[str, str]:
    """Agent -> team from ivr.yaml for reports (none with --store alone)."""
    if getattr(args, "store", None) is not None:
        return {}
    from ivr.config import load_config

    config = _checked(load_config, args.config)
    return config.team_of() if config is not None else {}


def cmd_report(args: argparse.Namespace) -> int:
    from ivr.report import compute, format_csv, format_table, parse_time, read_rows

    try:
        start = parse_time(args.start)
        end = parse_time(args.end, end=True)
    except ValueError as exc:
        return _fail(str(exc))
    if end <= start:
        return _fail("--to must be after --from")
    where = _store_and_recordings(args)
    if where is None:
        return 2
    if args.campaign:
        return _campaign_report(args, where[0], start, end)
    try:
        calls, events = read_rows(where[0], start, end, args.fcr_days)
    except sqlite3.Error as exc:  # e.g. locked for longer than the timeout, or damaged
        return _fail(f"{where[0]}: cannot read the call records: {exc}")
    dispositions = _dispositions(args)
    resolving = {code for code, d in dispositions.items() if d.resolves} if dispositions \
        else None
    labels = {code: d.label for code, d in sorted(dispositions.items())}
    rows = compute(calls, events, start=start, end=end, by=args.by, threshold=args.threshold,
                   fcr_days=args.fcr_days, resolving=resolving,
                   teams=_teams(args) if args.by == "team" else None)
    sys.stdout.write(format_csv(rows, args.by, labels) if args.csv
                     else format_table(rows, args.by, labels))
    return 0


def _campaign_report(args: argparse.Namespace, store: Path, start: float, end: float) -> int:
    """``ivr report --campaign NAME``: the campaign's KPIs (see ivr.report.compute_campaign).
    Right-party contacts count the campaign file's final dispositions; with --store alone,
    the dispositions that closed its contacts."""
    from ivr.report import compute_campaign, format_campaign, read_campaign_rows

    try:
        calls, attempts, closing = read_campaign_rows(store, args.campaign, start, end)
    except sqlite3.Error as exc:
        return _fail(f"{store}: cannot read the campaign's records: {exc}")
    final: set[str] = closing
    if getattr(args, "store", None) is None:
        from ivr.config import load_config
        from ivr.outbound.campaigns import load_campaigns

        config = _checked(load_config, args.config)
        campaigns = _checked(load_campaigns, config) if config is not None else None
        if campaigns is None:
            return 2
        if args.campaign not in campaigns and not calls and not attempts:
            return _fail(f"no campaign '{args.campaign}': neither a campaign file nor calls "
                         "of that name")
        if args.campaign in campaigns:
            campaign = campaigns[args.campaign]
            final = set(campaign.final_dispositions)
            if campaign.dnc_disposition:
                final.add(campaign.dnc_disposition)
    labels = {code: d.label for code, d in sorted(_dispositions(args).items())}
    report = compute_campaign(args.campaign, calls, attempts, start=start, end=end,
                              final_dispositions=final)
    sys.stdout.write(format_campaign(report, labels, csv_form=args.csv))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    import time

    from ivr.retention import purge_caller, purge_older_than

    where = _store_and_recordings(args)
    if where is None:
        return 2
    store, recordings, retention_days = where
    try:
        if args.caller is not None:
            result = purge_caller(store, args.caller, recordings)
        else:
            days = args.older_than if args.older_than is not None else retention_days
            if not days:
                return _fail("give --older-than DAYS or --caller NUMBER (retention_days in "
                             "ivr.yaml is 0: keep forever)")
            result = purge_older_than(store, days, time.time(), recordings)
    except sqlite3.Error as exc:  # e.g. locked by a long transaction, or a read-only file
        return _fail(f"{store}: cannot purge the call records: {exc}")
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    print(result.summary())
    return 1 if result.failed_files else 0


def cmd_user(args: argparse.Namespace) -> int:  # noqa: C901 - one small function per action
    """``ivr user ...``: the console's accounts in the store file of ivr.yaml; every change
    goes to the console's audit log as made by '(cli)' from 'local'."""
    import getpass
    import json
    import time

    from ivr.config import load_config
    from ivr.console.accounts import (
        AccountError,
        Accounts,
        User,
        check_fields,
        check_name,
        check_password,
    )
    from ivr.preflight import check_store_path
    from ivr.yamlsrc import did_you_mean

    config = _checked(load_config, args.config)
    if config is None:
        return 2
    cli, action = User("(cli)", "admin"), args.user_action

    def ask_password() -> str:
        if args.password_stdin:
            line = sys.stdin.readline().rstrip("\r\n")
            if not line:
                raise AccountError("no password on standard input (one line)")
            return line
        first = getpass.getpass(f"New password for {args.name}: ")
        check_password(first)  # said before it is typed again
        if getpass.getpass("Again: ") != first:
            raise AccountError("the two passwords differ; nothing changed")
        return first

    def in_config(kind: str, name: str, names: dict[str, Any]) -> None:
        if name and name not in names:
            known = ", ".join(sorted(names)) or "none"
            raise AccountError(f"no {kind} {name!r} in {args.config}.{did_you_mean(name, names)}"
                               .rstrip(".") + f" ({kind}s there: {known})")

    def add(accounts: Accounts) -> str:
        check_name(args.name)
        check_fields(args.role, args.agent or "", args.supervisor or "", args.lang or "")
        in_config("agent", args.agent or "", config.agents)
        in_config("supervisor", args.supervisor or "", config.supervisors)
        if accounts.get(args.name) is not None:
            raise AccountError(f"the user {args.name!r} already exists (change the password "
                               "with 'ivr user passwd')")
        user = accounts.add_user(args.name, ask_password(), args.role, agent=args.agent or "",
                                 supervisor=args.supervisor or "", lang=args.lang or "")
        accounts.audit(cli, "local", "user.add", user.name,
                       {"role": user.role, "agent": user.agent, "supervisor": user.supervisor,
                        "lang": user.lang})
        return f"user {user.name} added ({user.role}" + (
            f", agent {user.agent}" if user.agent else "") + ")"

    def existing(accounts: Accounts) -> User:
        user = accounts.get(args.name)
        if user is None:
            names = [u.name for u in accounts.users()]
            raise AccountError(f"no user {args.name!r}.{did_you_mean(args.name, names)}"
                               .rstrip(".") + " (see 'ivr user list')")
        return user

    def passwd(accounts: Accounts) -> str:
        existing(accounts)
        accounts.set_password(args.name, ask_password())
        accounts.audit(cli, "local", "user.passwd", args.name)
        return f"password of {args.name} changed; their console sessions ended"

    def remove(accounts: Accounts) -> str:
        existing(accounts)
        accounts.remove_user(args.name)
        accounts.audit(cli, "local", "user.remove", args.name)
        return f"user {args.name} removed, with their console sessions and API tokens"

    def enable(accounts: Accounts) -> str:
        existing(accounts)
        off = action == "disable"
        accounts.set_disabled(args.name, off)
        accounts.audit(cli, "local", f"user.{action}", args.name)
        return f"user {args.name} " + ("disabled: cannot log in, sessions ended, API tokens "
                                       "refused" if off else "enabled")

    def listing(accounts: Accounts) -> str:
        rows = [("NAME", "ROLE", "AGENT", "SUPERVISOR", "LANG", "TOKENS", "CREATED", "")]
        for u in accounts.users():
            created = accounts.created(u.name) or 0.0
            rows.append((u.name, u.role, u.agent or "-", u.supervisor or "-", u.lang or "-",
                         str(len(accounts.tokens(u.name))),
                         time.strftime("%Y-%m-%d", time.localtime(created)),
                         "disabled" if u.disabled else ""))
        if len(rows) == 1:
            return "no users yet: add one with 'ivr user add NAME --role admin'"
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                         for r in rows)

    def token(accounts: Accounts) -> str:
        existing(accounts)
        value = accounts.new_token(args.name, args.label or "", time.time())
        accounts.audit(cli, "local", "user.token", args.name, {"label": args.label or ""})
        print(f"API token for {args.name}" + (f" ({args.label})" if args.label else "")
              + ": it will not be shown again, keep it now.", file=sys.stderr)
        return value

    def revoke(accounts: Accounts) -> str:
        existing(accounts)
        n = accounts.revoke_tokens(args.name)
        accounts.audit(cli, "local", "user.revoke", args.name, {"tokens": n})
        return f"{n} API token{'s' if n != 1 else ''} of {args.name} revoked"

    def audit(accounts: Accounts) -> str:
        lines = []
        for e in reversed(accounts.audit_log(limit=args.limit, user=args.user)):
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
            detail = "" if e["detail"] is None else " " + json.dumps(e["detail"],
                                                                     sort_keys=True)
            lines.append(f"{at}  {e['user'] or '-'} ({e['role'] or '-'}) from {e['address']}: "
                         f"{e['action']} {e['target']}".rstrip() + detail)
        return "\n".join(lines) if lines else "no audit entries"

    actions: dict[str, Callable[[Accounts], str]] = {
        "add": add, "passwd": passwd, "remove": remove, "list": listing, "token": token,
        "revoke": revoke, "audit": audit, "disable": enable, "enable": enable}
    check_store_path(config.store)
    try:
        print(actions[action](Accounts(config.store)))
    except AccountError as exc:
        return _fail(str(exc))
    except (EOFError, KeyboardInterrupt):  # the password prompt closed or interrupted
        print(file=sys.stderr)
        return _fail("no password given; nothing changed")
    except sqlite3.Error as exc:  # e.g. locked by a long transaction, or a read-only file
        return _fail(f"{config.store}: cannot use the console's accounts: {exc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivr", description="Centralino: IVR and call queues for a SIP/FXO gateway.")
    parser.add_argument("--version", action="store_true", help="show versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the switchboard",
                         description="Answer calls from the configured trunks, run the flow, "
                                     "queue callers and ring agents. Ctrl-C stops it cleanly; "
                                     "SIGHUP reloads the flow.")
    run.add_argument("--config", default=DEFAULT_CONFIG, type=Path,
                     help="appliance configuration (default: %(default)s)")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                     help="override the configuration's log level")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check flow files",
                         description="Check flow files and print every problem as "
                                     "file:line:col: path: message. Exit status 1 if any.")
    val.add_argument("files", nargs="+", help="flow files (YAML)")
    val.add_argument("--config", type=Path,
                     help="also check queue names against this ivr.yaml")
    val.set_defaults(func=cmd_validate)

    schema = sub.add_parser("schema", help="print the JSON Schema of flow files or ivr.yaml",
                            description="Print the JSON Schema (draft-07) of the flow language "
                                        "(or with --config, of ivr.yaml), made from its "
                                        "specification, for editors' completion and checks. A "
                                        "file that starts with '# yaml-language-server: "
                                        "$schema=flow.schema.json' (ivr.schema.json) uses it.")
    schema.add_argument("--config", action="store_true",
                        help="the schema of ivr.yaml instead of flow files")
    schema.add_argument("--output", type=Path, metavar="FILE",
                        help="write it to FILE (e.g. flows/flow.schema.json, or ivr.schema.json "
                             "with --config) instead")
    schema.set_defaults(func=cmd_schema)

    graph = sub.add_parser("graph", help="draw a flow as a graph (DOT, SVG, PNG)",
                           description="Write the flow's tree as Graphviz DOT, or render it as "
                                       "SVG or PNG with Graphviz 'dot' (Debian package "
                                       "graphviz). Exit status 2 if the flow has problems.")
    graph.add_argument("file", help="flow file (YAML)")
    graph.add_argument("--format", choices=("dot", "svg", "png"),
                       help="output format (default: from the --output suffix, else dot)")
    graph.add_argument("--output", metavar="PATH",
                       help="write to PATH (default: standard output)")
    graph.set_defaults(func=cmd_graph)

    simulate = sub.add_parser(
        "simulate", help="try a flow without SIP: a call typed at the terminal or scripted",
        description="Run a flow on a virtual clock and show what the caller hears. With --digits "
                    "the call is scripted and a transcript, the path and the exit are printed; "
                    "without, keys are read from standard input (a line of keys, an empty line "
                    "waits for the timeout, q hangs up). Exit status 2 if the flow has problems.")
    simulate.add_argument("file", help="flow file (YAML)")
    simulate.add_argument("--digits", metavar="KEYS",
                          help="script, e.g. '2,1' or '1,wait,123#': keys after each prompt; "
                               "'wait' lets a timeout pass")
    simulate.add_argument("--at", metavar="TIME",
                          help="start of the call, e.g. '2026-12-25 10:00' (default: now)")
    simulate.add_argument("--timezone", metavar="ZONE",
                          help="zone of --at (default: the flow's hours node, else UTC)")
    simulate.add_argument("--caller", default="3331234567", help="caller number ('' withheld)")
    simulate.add_argument("--called", default="800123456", help="dialled number")
    simulate.add_argument("--language", help="language at the start (default: the flow's first)")
    simulate.add_argument("--lookup-json", type=Path, metavar="FILE",
                          help="answers of lookups: JSON object, node name or URL -> answer "
                               "(null fails, \"timeout\" times out; missing ones fail)")
    simulate.add_argument("--failing-transfer", action="append", default=[], metavar="DEST",
                          help="a transfer destination that does not answer ('*': all)")
    simulate.add_argument("--override", action="append", default=[], metavar="NAME=STATE",
                          help="an hours switch forced open or closed")
    simulate.add_argument("--barge-in", action="store_true",
                          help="press keys as soon as a prompt may be interrupted")
    simulate.set_defaults(func=cmd_simulate)

    test = sub.add_parser(
        "test", help="run flow tests (*.test.yaml)",
        description="Run the scripted calls of flow test files (NAME.test.yaml beside NAME.yaml) "
                    "and compare path, exit and variables with the expected ones. Prints PASS or "
                    "FAIL per case and 'N passed, M failed'; exit status 1 on any failure.")
    test.add_argument("paths", nargs="*", metavar="PATH",
                      help="test files, flow files or directories (default: flows/)")
    test.add_argument("-v", "--verbose", action="store_true",
                      help="show the transcript of passing cases too")
    test.set_defaults(func=cmd_test)

    load = sub.add_parser(
        "simulate-load", help="simulate a day of traffic on the routing code",
        description="Discrete-event simulation of one queue: Poisson arrivals, exponential "
                    "handle times (and patience). Prints service level, ASA, abandonment, "
                    "occupancy and escalations.")
    load.add_argument("--agents", type=int, required=True)
    load.add_argument("--calls-per-hour", type=float, required=True)
    load.add_argument("--handle-time", type=_seconds, required=True, help="mean, e.g. 240s or 4m")
    load.add_argument("--patience", type=_seconds, help="mean wait before callers hang up")
    load.add_argument("--threshold", type=_seconds, default=20.0, help="service level threshold")
    load.add_argument("--hours", type=float, default=8.0)
    load.add_argument("--max-wait", type=_seconds, default=0.0,
                      help="overflow to a second queue of the same size after this wait")
    load.add_argument("--strategy", default="longest_idle")
    load.add_argument("--seed", type=int, default=1)
    load.add_argument("--json", action="store_true", help="print one JSON object")
    load.set_defaults(func=cmd_simulate_load)

    staff = sub.add_parser(
        "staffing", help="agents needed per hour for a service level (Erlang C)",
        description="For each hour's expected calls, the fewest agents that reach the target "
                    "service level, by Erlang C.")
    staff.add_argument("--calls-per-hour", required=True,
                       help="comma-separated, one per hour, e.g. 30,60,120")
    staff.add_argument("--handle-time", type=_seconds, required=True)
    staff.add_argument("--target", type=_share, default=0.8, help="e.g. 80%% or 0.8")
    staff.add_argument("--threshold", type=_seconds, default=20.0)
    staff.set_defaults(func=cmd_staffing)

    agent = sub.add_parser(
        "agent", help="log an agent in or out, pause or unpause",
        description="Change an agent's state. A running switchboard applies it within a "
                    "second; the state is saved and holds after a restart. Agents can do the "
                    "same from their phone with the feature codes (*41 login, *42 logout, "
                    "*43 pause, *44 unpause by default).")
    agent.add_argument("action", choices=("login", "logout", "pause", "unpause"))
    agent.add_argument("name", help="agent name from ivr.yaml")
    agent.add_argument("--reason", help="pause reason, e.g. lunch, training")
    agent.add_argument("--config", default=DEFAULT_CONFIG, type=Path,
                       help="appliance configuration (default: %(default)s)")
    agent.set_defaults(func=cmd_agent)

    doctor = sub.add_parser(
        "doctor", help="check the box: configuration, ports, gateways, clock, disk...",
        description="Without options: one line per check (configuration valid, ports free, "
                    "gateways answer OPTIONS, clock synchronised, disk free, prompts render, "
                    "database integrity, edge, serial devices, the SIP stack's security "
                    "patches) and what to do; exit status 1 if any failed. With --security: "
                    "print the attack surface as configured (trunk sources and line caps, what "
                    "may be dialled and by whom, who may register, open ports, file modes) "
                    "with a warning or danger for each risk; exit status 1 if anything is "
                    "dangerous.")
    doctor.add_argument("--security", action="store_true",
                        help="the security report instead of the checks")
    doctor.add_argument("--timeout", type=float, default=1.0,
                        help="seconds to wait for the gateways' OPTIONS answers "
                             "(default: %(default)s)")
    doctor.add_argument("--config", default=DEFAULT_CONFIG, type=Path,
                        help="appliance configuration (default: %(default)s)")
    doctor.set_defaults(func=cmd_doctor)

    hw = sub.add_parser(
        "hw", help="serial devices: list the ports, test a device",
        description="list: the serial ports present, with their USB ids and stable "
                    "/dev/serial/by-id names, and the devices of ivr.yaml on them. test NAME: "
                    "read a night switch's key, blink a lamp, send a modem's test SMS. Stop "
                    "the switchboard first if it holds the port.")
    hw.add_argument("action", choices=("list", "test"))
    hw.add_argument("name", nargs="?", help="test: the device's name in ivr.yaml")
    hw.add_argument("--to", metavar="NUMBER",
                    help="test of a modem: text this number (else only the dialogue, network "
                         "and signal are checked)")
    hw.add_argument("--config", default=DEFAULT_CONFIG, type=Path,
                    help="appliance configuration (default: %(default)s)")
    hw.set_defaults(func=cmd_hw)

    sms = sub.add_parser(
        "sms", help="the modem's texts: queued, sent, failed",
        description="The texts in the queue of the call records file by state, then the "
                    "latest ones (numbers by their last digits), with their attempts and the "
                    "modem's last error.")
    sms.add_argument("--last", type=int, default=20, help="latest texts to show (20)")
    sms.add_argument("--config", default=DEFAULT_CONFIG, type=Path,
                     help="appliance configuration (default: %(default)s)")
    sms.add_argument("--store", type=Path, help="call record file (instead of --config)")
    sms.set_defaults(func=cmd_sms)

    report = sub.add_parser(
        "report", help="service level, ASA, abandonment, FCR... from the call records",
        description="Contact-centre figures per queue, agent, team, day or hour from the call "
                    "records (see README, 'Reports and retention'). Dates are in this "
                    "machine's local time; a bare --to date includes that whole day.")
    report.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD[THH:MM]")
    report.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD[THH:MM]")
    report.add_argument("--by", choices=("queue", "agent", "team", "day", "hour"),
                        default="queue", help="team: the teams of ivr.yaml (agents in none "
                        "form '(no team)'); by agent or team the columns are the people's "
                        "KPIs: calls, AHT, wrap-up, escalations made, tickets resolved at "
                        "first contact, dispositions, pause time by reason")
    report.add_argument("--csv", action="store_true", help="CSV instead of a table")
    report.add_argument("--campaign", metavar="NAME",
                        help="an outbound campaign's figures instead: attempts, connects, "
                             "contact rate, right-party contacts (a final disposition), "
                             "conversions by disposition, abandon rate, agents' talk and idle "
                             "time")
    report.add_argument("--threshold", type=_threshold, default=20.0,
                        help="service level threshold (default: 20 s)")
    report.add_argument("--fcr-days", type=_days(1, inclusive=True), default=7.0,
                        metavar="DAYS",
                        help="a repeat call within this many days (1 or more) is not "
                             "first-contact resolution (default: 7)")
    report.add_argument("--config", default=DEFAULT_CONFIG, type=Path,
                        help="appliance configuration (default: %(default)s)")
    report.add_argument("--store", type=Path, help="the call record file (instead of --config)")
    report.set_defaults(func=cmd_report)

    purge = sub.add_parser(
        "purge", help="delete old call data, or one caller's data (GDPR)",
        description="Delete call records, queue events and voicemail files older than DAYS "
                    "(default: retention_days of ivr.yaml), or everything about one caller "
                    "number. One database transaction; files are deleted after it.")
    which = purge.add_mutually_exclusive_group()
    which.add_argument("--older-than", type=_days(0, inclusive=False), metavar="DAYS",
                       help="delete what ended more than DAYS days ago (more than 0)")
    which.add_argument("--caller", type=_number, metavar="NUMBER",
                       help="delete everything about this caller number")
    purge.add_argument("--config", default=DEFAULT_CONFIG, type=Path,
                       help="appliance configuration (default: %(default)s)")
    purge.add_argument("--store", type=Path,
                       help="the call record file (instead of --config; voicemail paths are "
                            "then taken as stored)")
    purge.set_defaults(func=cmd_purge)

    user = sub.add_parser(
        "user", help="console accounts: add, passwd, remove, list, token, revoke, audit",
        description="The web console's accounts, kept in the store file of ivr.yaml. Roles: "
                    "agent (tied to an agent of ivr.yaml: sees only their own calls and "
                    "tickets), team_leader, supervisor (may name a supervisors: entry, the "
                    "phone the box calls to listen, whisper or barge), admin. Every change is "
                    "in the console's audit log.")
    user_sub = user.add_subparsers(dest="user_action", metavar="ACTION", required=True)

    def user_action(name: str, help: str, description: str) -> argparse.ArgumentParser:
        p = user_sub.add_parser(name, help=help, description=description)
        if name not in ("list", "audit"):
            p.add_argument("name", help="the user's name: 1 to 32 of a-z 0-9 _ . -")
        p.add_argument("--config", default=DEFAULT_CONFIG, type=Path,
                       help="appliance configuration (default: %(default)s)")
        if name in ("add", "passwd"):
            p.add_argument("--password-stdin", action="store_true",
                           help="read the password from the first line of standard input "
                                "(for scripts) instead of asking twice")
        p.set_defaults(func=cmd_user)
        return p

    add = user_action("add", "add a user",
                      "Add a console user. The password (at least 10 characters) is asked "
                      "twice, or read with --password-stdin.")
    add.add_argument("--role", required=True, choices=("agent", "team_leader", "supervisor",
                                                       "admin"))
    add.add_argument("--agent", help="role agent: the agent of ivr.yaml this user is")
    add.add_argument("--supervisor",
                     help="role supervisor or admin: the supervisors: entry of ivr.yaml whose "
                          "phone the box calls to listen, whisper or barge")
    add.add_argument("--lang", choices=("it", "en"),
                     help="the console's language (default: the browser's)")
    user_action("passwd", "change a user's password",
                "Change a user's password; the user's console sessions end (API tokens stay: "
                "see revoke).")
    user_action("remove", "remove a user",
                "Remove a user with their console sessions and API tokens; their audit "
                "entries stay.")
    user_action("disable", "stop a user logging in, keeping the account",
                "Disable a user: logins refused, console sessions ended, API tokens refused "
                "until enabled again.")
    user_action("enable", "let a disabled user log in again",
                "Enable a disabled user again (their API tokens work again).")
    user_action("list", "list the users",
                "The users with their role, agent, supervisor phone, language, number of API "
                "tokens and creation date.")
    tok = user_action("token", "make an API token for integrations",
                      "Make an API token for the console's /api/ for this user (it acts with "
                      "the user's role). The token is printed once on standard output: only "
                      "its SHA-256 is kept, so it cannot be shown again.")
    tok.add_argument("--label", help="what the token is for, e.g. crm")
    user_action("revoke", "revoke all API tokens of a user",
                "Revoke every API token of a user.")
    aud = user_action("audit", "show the console's audit log",
                      "The latest entries of the console's audit log, oldest first: who "
                      "(user and role), from where, what and on what.")
    aud.add_argument("--user", help="only this user's entries ('(cli)': made with ivr user)")
    aud.add_argument("--limit", type=int, default=50,
                     help="the latest N entries (default: %(default)s)")

    from ivr.outbound.cli import add_campaign_parser, add_dnc_parser

    add_campaign_parser(sub, DEFAULT_CONFIG)  # ivr campaign import|status|export|list
    add_dnc_parser(sub, DEFAULT_CONFIG)  # ivr dnc add|remove|import|check|count

    version = sub.add_parser("version", help="show versions",
                             description="Show the versions of Centralino and its SIP stack.")
    version.set_defaults(func=lambda _args: print(_version_text()) or 0)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(_version_text())
        return 0
    if not args.command:
        parser.print_help()
        return 2
    try:
        result: int = args.func(args)
    except _operator_errors() as exc:  # evaluated only when something was raised
        return _fail(str(exc))
    return result


if __name__ == "__main__":
    sys.exit(main())

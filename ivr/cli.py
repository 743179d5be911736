"""The `ivr` command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ivr import __version__
from ivr.yamlsrc import DocumentError

log = logging.getLogger("ivr")

DEFAULT_CONFIG = "ivr.yaml"


def _version_text() -> str:
    try:
        from ivr.sip.stack import stack_version
        stack = stack_version()
    except ImportError:
        stack = "pjsua2 is not installed (run 'make venv' to build it)"
    return f"ivr (Centralino) {__version__}\nSIP stack: {stack}"


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")


def _print_problems(exc: DocumentError) -> None:
    for problem in exc.problems:
        print(str(problem), file=sys.stderr)
    n = len(exc.problems)
    print(f"{n} problem{'s' if n != 1 else ''} found.", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from ivr.config import load_config
    from ivr.flow import load_flow
    from ivr.prompts import check_tools

    try:
        config = load_config(args.config)
    except DocumentError as exc:
        _print_problems(exc)
        return 2
    _setup_logging(args.log_level or config.log_level)
    missing = check_tools()
    if missing:
        log.error("missing programs for prompts: %s (apt-get install %s)", ", ".join(missing),
                  " ".join(missing))
        return 2
    try:
        flow = load_flow(config.flow, known_queues=config.queues)
    except DocumentError as exc:
        _print_problems(exc)
        return 2

    def reload_flow() -> object:
        try:
            return load_flow(config.flow, known_queues=config.queues)
        except DocumentError as exc:
            log.error("flow reload refused, the running version stays in service:")
            for problem in exc.problems:
                log.error("  %s", problem)
            return None

    try:
        import pjsua2  # noqa: F401
    except ImportError:
        log.error("the SIP stack (pjsua2) is not installed in this environment: run 'make venv'")
        return 2
    from ivr.app import run

    return run(config, flow, reload_flow)  # type: ignore[arg-type]


def cmd_validate(args: argparse.Namespace) -> int:
    from ivr.config import load_config
    from ivr.flow import load_flow

    queues = None
    if args.config:
        try:
            queues = load_config(args.config).queues
        except DocumentError as exc:
            _print_problems(exc)
            return 2
    status = 0
    for name in args.files:
        try:
            flow = load_flow(name, known_queues=queues)
        except DocumentError as exc:
            _print_problems(exc)
            status = 1
            continue
        print(f"{name}: ok (flow '{flow.name}', {len(flow.nodes)} nodes, version {flow.version})")
    return status


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
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

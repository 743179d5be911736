"""``ivr campaign`` (import, status, export, list) and ``ivr dnc`` (add, remove, import,
check, count): contact lists and the do-not-call list in the store file of ivr.yaml.

:func:`add_campaign_parser` and :func:`add_dnc_parser` add the sub-commands to ``ivr``'s
parser; each action is a ``cmd_*`` function of its parsed arguments giving the exit status.
The store file is ``store:`` of ``--config`` (ivr.yaml), or ``--store FILE``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ivr.errors import one_line
from ivr.yamlsrc import DocumentError

if TYPE_CHECKING:
    from ivr.config import Config
    from ivr.outbound.campaigns import Campaign
    from ivr.outbound.contacts import Contact

DEFAULT_CONFIG = "ivr.yaml"
SHOW_REFUSED = 10
"""Refused rows printed after an import's counts (all of them with --refused-out)."""


def _fail(message: str) -> int:
    print(f"ivr: error: {one_line(message)}", file=sys.stderr)
    return 2


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _store(args: argparse.Namespace) -> tuple[Path, Config | None] | None:
    """The store file, from --store, else store: of --config with the configuration (None,
    problems printed, if the configuration is invalid)."""
    config = None
    if args.store is not None:
        path = Path(args.store)
    else:
        from ivr.config import load_config

        try:
            config = load_config(args.config)
        except DocumentError as exc:
            _print_problems(exc)
            return None
        path = Path(config.store)
    from ivr.preflight import check_store_path

    check_store_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, config


def _print_problems(exc: DocumentError) -> None:
    for problem in exc.problems:
        print(str(problem), file=sys.stderr)


def _campaigns(config: Config | None) -> dict[str, Campaign] | None:
    """The campaigns of the configuration's campaigns folder; None with --store (unknown).
    Raises DocumentError if a campaign file has problems."""
    if config is None:
        return None
    from ivr.outbound.campaigns import load_campaigns

    return load_campaigns(config)


def _progress(what: str) -> Callable[[int], None]:
    def show(rows: int) -> None:
        print(f"{what}: {rows:,} rows read", file=sys.stderr, flush=True)
    return show


def _run(args: argparse.Namespace, action: Callable[[Path, Config | None], int]) -> int:
    """*action* on the store file (and the configuration, None with --store), with the
    operator's errors as one line and status 2."""
    from ivr.errors import StartupError
    from ivr.outbound.dnc import ListError
    from ivr.store import StoreError

    try:
        where = _store(args)
        if where is None:
            return 2
        return action(*where)
    except DocumentError as exc:  # a campaign file with problems
        _print_problems(exc)
        return 2
    except (ListError, StartupError, StoreError) as exc:
        return _fail(str(exc))
    except sqlite3.Error as exc:  # locked for longer than the timeout, damaged, read-only
        return _fail(f"cannot use the contact lists in the store file: {exc}")


def _report(report_text: str, refused_out: Path | None, write: Callable[[Path], None]) -> None:
    print(report_text)
    if refused_out is not None:
        write(refused_out)
        print(f"refused rows written to {refused_out}")


# -- ivr campaign -------------------------------------------------------------------------------

def cmd_campaign_import(args: argparse.Namespace) -> int:
    from ivr.outbound.contacts import ContactBook, check_campaign_name, import_csv

    def action(path: Path, config: Config | None) -> int:
        check_campaign_name(args.name)
        campaigns = _campaigns(config)
        if campaigns is not None and args.name not in campaigns:
            defined = ", ".join(sorted(campaigns)) or "none"
            return _fail(f"no campaign {args.name!r} in the campaign files of {args.config} "
                         f"(campaigns: {defined}); add its file first, or give --store FILE "
                         "to import the list before the campaign exists")
        with ContactBook(path) as book:
            report = import_csv(book, args.name, args.file, number_column=args.number_column,
                                name_column=args.name_column,
                                progress=_progress(str(args.file)))
        _report(f"campaign {args.name}: " + report.summary(args.show), args.refused_out,
                report.write_refused)
        return 0
    return _run(args, action)


def cmd_campaign_status(args: argparse.Namespace) -> int:
    from ivr.outbound.contacts import ContactBook

    def action(path: Path, config: Config | None) -> int:
        with ContactBook(path) as book:
            status = book.status(args.name, time.time())
        if not status.total:
            return _fail(f"campaign {args.name!r} has no contacts (import a list with "
                         f"'ivr campaign import {args.name} FILE.csv')")
        print(f"campaign {status.campaign}: {status.total} contacts")
        print("  " + ", ".join(f"{state} {n}" for state, n in status.states.items()))
        attempts = sum(status.outcomes.values())
        print(f"attempts: {attempts}")
        for outcome, n in status.outcomes.items():
            print(f"  {n:>9}  {outcome}")
        print(f"due now: {status.due_now}; next due after now: {_when(status.next_due)}")
        return 0
    return _run(args, action)


def cmd_campaign_export(args: argparse.Namespace) -> int:
    from ivr.outbound.contacts import ContactBook

    def action(path: Path, config: Config | None) -> int:
        with ContactBook(path) as book:
            contacts = list(book.contacts(args.name))
        if not contacts:
            return _fail(f"campaign {args.name!r} has no contacts")
        header, rows = export_table(contacts)
        if args.out is None:
            _write_csv(sys.stdout, header, rows)
        else:
            with open(args.out, "w", newline="", encoding="utf-8") as out:
                _write_csv(out, header, rows)
            print(f"{len(contacts)} contacts of {args.name} written to {args.out}")
        return 0
    return _run(args, action)


def export_table(contacts: list[Contact]) -> tuple[list[str], Iterator[list[str]]]:
    """The header and rows of a campaign's export (``ivr campaign export``, the console's
    CSV): number, name, state, attempts, last outcome, disposition, times (local), the
    list's variables, then one answers.KEY column per survey answer."""
    variables = sorted({k for c in contacts for k in c.vars})
    answers = sorted({k for c in contacts for k in c.answers})
    header = ["number", "name", "state", "attempts", "last_outcome", "disposition",
              "next_at", "created", "updated", *variables, *(f"answers.{k}" for k in answers)]

    def rows() -> Iterator[list[str]]:
        for c in contacts:
            yield [c.number, c.name, c.state, str(c.attempts), c.last_outcome or "",
                   c.disposition or "", _when(c.next_at) if c.next_at else "",
                   _when(c.created), _when(c.updated),
                   *(c.vars.get(k, "") for k in variables),
                   *(_cell(c.answers[k]) if k in c.answers else "" for k in answers)]
    return header, rows()


def _cell(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _write_csv(out: TextIO, header: list[str], rows: Iterator[list[str]]) -> None:
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)


def cmd_campaign_list(args: argparse.Namespace) -> int:
    from ivr.outbound.contacts import ContactBook

    def action(path: Path, config: Config | None) -> int:
        with ContactBook(path) as book:
            stored = book.campaigns()
        defined = _campaigns(config)
        modes = {name: c.mode for name, c in (defined or {}).items()}
        rows = {name: (total, pending, last) for name, total, pending, last in stored}
        for name in modes:
            rows.setdefault(name, (0, 0, None))
        if not rows:
            print("no campaign is defined or has contacts")
            return 0
        width = max(8, *(len(name) for name in rows))
        print(f"{'campaign':<{width}}  {'mode':<11}  {'contacts':>9}  {'pending':>9}  "
              "last attempt")
        for name, (total, pending, last) in sorted(rows.items()):
            mode = modes.get(name, "-" if defined is None else "(no file)")
            print(f"{name:<{width}}  {mode:<11}  {total:>9}  {pending:>9}  {_when(last)}")
        return 0
    return _run(args, action)


# -- ivr dnc ------------------------------------------------------------------------------------

def cmd_dnc_add(args: argparse.Namespace) -> int:
    from ivr.outbound.dnc import DncList

    def action(path: Path, config: Config | None) -> int:
        with DncList(path) as dnc:
            added = dnc.add(args.number, "internal", args.note)
            entry = dnc.entry(args.number)
        assert entry is not None
        print(f"{entry[0]}: added to the do-not-call list" if added else
              f"{entry[0]}: already on the do-not-call list (source {entry[1]}, since "
              f"{_when(entry[2])})")
        return 0
    return _run(args, action)


def cmd_dnc_remove(args: argparse.Namespace) -> int:
    from ivr.outbound.dnc import DncList, to_e164

    def action(path: Path, config: Config | None) -> int:
        with DncList(path) as dnc:
            removed = dnc.remove(args.number)
        number = to_e164(args.number)[0]
        print(f"{number}: removed from the do-not-call list" if removed else
              f"{number}: was not on the do-not-call list")
        return 0 if removed else 1
    return _run(args, action)


def cmd_dnc_check(args: argparse.Namespace) -> int:
    from ivr.outbound.dnc import DncList, to_e164

    def action(path: Path, config: Config | None) -> int:
        with DncList(path) as dnc:
            entry = dnc.entry(args.number)
        if entry is None:
            print(f"{to_e164(args.number)[0]}: not on the do-not-call list")
            return 1
        note = f", note: {entry[3]}" if entry[3] else ""
        print(f"{entry[0]}: on the do-not-call list (source {entry[1]}, since "
              f"{_when(entry[2])}{note})")
        return 0
    return _run(args, action)


def cmd_dnc_count(args: argparse.Namespace) -> int:
    from ivr.outbound.dnc import DncList

    def action(path: Path, config: Config | None) -> int:
        with DncList(path) as dnc:
            counts = dnc.count()
        for source, n in counts.items():
            print(f"{n:>9}  {source}")
        print(f"{sum(counts.values()):>9}  in all")
        return 0
    return _run(args, action)


def cmd_dnc_import(args: argparse.Namespace) -> int:
    from ivr.outbound.dnc import DncList, register_source

    def action(path: Path, config: Config | None) -> int:
        source = (register_source(args.register_name or args.file.name)
                  if args.source == "register" else "internal")
        with DncList(path) as dnc:
            report = dnc.import_file(args.file, source, column=args.column,
                                     replace=args.replace, progress=_progress(str(args.file)))
        _report(f"do-not-call ({source}): " + report.summary(args.show), args.refused_out,
                report.write_refused)
        return 0
    return _run(args, action)


# -- parsers ------------------------------------------------------------------------------------

def _where(p: argparse.ArgumentParser, default_config: str) -> None:
    p.add_argument("--config", default=default_config, type=Path,
                   help="appliance configuration: its store file (default: %(default)s)")
    p.add_argument("--store", type=Path, help="the store file (instead of --config)")


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show", type=int, default=SHOW_REFUSED, metavar="N",
                   help="refused rows to print after the counts (default: %(default)s)")
    p.add_argument("--refused-out", type=Path, metavar="FILE.csv",
                   help="write every refused row (line, number, reason) to this CSV file")


def add_campaign_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                        default_config: str = DEFAULT_CONFIG) -> argparse.ArgumentParser:
    """``ivr campaign import|status|export|list`` on *sub* (ivr's sub-command parsers)."""
    campaign = sub.add_parser(
        "campaign", help="outbound contact lists: import, status, export, list",
        description="The contact lists of outbound campaigns, kept in the store file of "
                    "ivr.yaml with every attempt.")
    actions = campaign.add_subparsers(dest="campaign_action", metavar="ACTION", required=True)

    imp = actions.add_parser(
        "import", help="add a CSV list of contacts to a campaign",
        description="Add the contacts of a CSV file (header first; comma, semicolon or tab; "
                    "UTF-8) to campaign NAME. The number column is required; a 'name' column "
                    "is optional; every other column becomes a variable for the script and "
                    "flows. Numbers are normalised to E.164 (Italian national numbers get "
                    "+39). A row is refused, with its line and reason, for an empty, invalid or "
                    "non-E.164 number, a duplicate (in the file or already in the campaign), a "
                    "number on the do-not-call list, or a wrong number of fields. Prints the "
                    "counts by reason and the first refused rows; progress every 10,000 rows "
                    "on standard error. With --config, NAME must be a campaign of the "
                    "campaign files of ivr.yaml.")
    imp.add_argument("name", help="the campaign's name")
    imp.add_argument("file", type=Path, metavar="FILE.csv", help="the list")
    imp.add_argument("--number-column", default="number", metavar="COL",
                     help="the column of the numbers (default: %(default)s)")
    imp.add_argument("--name-column", default="name", metavar="COL",
                     help="the column of the contacts' names, if any (default: %(default)s)")
    _report_options(imp)
    _where(imp, default_config)
    imp.set_defaults(func=cmd_campaign_import)

    status = actions.add_parser(
        "status", help="a campaign's contacts by state, attempts by outcome, what is due",
        description="Contacts of campaign NAME by state, its attempts by outcome, how many "
                    "are due now and when the next one is due after that.")
    status.add_argument("name", help="the campaign's name")
    _where(status, default_config)
    status.set_defaults(func=cmd_campaign_status)

    export = actions.add_parser(
        "export", help="a campaign's results as CSV",
        description="Every contact of campaign NAME as CSV: number, name, state, attempts, "
                    "last outcome, disposition, next attempt, times (local), the list's "
                    "variables and one answers.KEY column per survey answer.")
    export.add_argument("name", help="the campaign's name")
    export.add_argument("--out", type=Path, metavar="FILE.csv",
                        help="write to this file (default: standard output)")
    _where(export, default_config)
    export.set_defaults(func=cmd_campaign_export)

    listing = actions.add_parser(
        "list", help="the campaigns: defined, with contacts",
        description="Every campaign of the campaign files of ivr.yaml and every campaign with "
                    "contacts in the store file: its mode ('-' with --store, '(no file)' for "
                    "contacts whose campaign has no file), contacts, pending ones, the last "
                    "attempt.")
    _where(listing, default_config)
    listing.set_defaults(func=cmd_campaign_list)
    return campaign


def add_dnc_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                   default_config: str = DEFAULT_CONFIG) -> argparse.ArgumentParser:
    """``ivr dnc add|remove|import|check|count`` on *sub* (ivr's sub-command parsers)."""
    dnc = sub.add_parser(
        "dnc", help="the do-not-call list: add, remove, import, check, count",
        description="Numbers never to dial, kept in the store file of ivr.yaml: checked when "
                    "a list is imported and again before every dial. Numbers are normalised "
                    "to E.164 (Italian national numbers get +39).")
    actions = dnc.add_subparsers(dest="dnc_action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="put a number on the list",
                             description="Put NUMBER on the do-not-call list (source "
                                         "'internal'); an entry already there is kept.")
    add.add_argument("number", help="the number, e.g. 347 123 4567 or +393471234567")
    add.add_argument("--note", default="", help="why, e.g. 'asked on the phone'")
    _where(add, default_config)
    add.set_defaults(func=cmd_dnc_add)

    remove = actions.add_parser("remove", help="take a number off the list",
                                description="Take NUMBER off the do-not-call list. Exit "
                                            "status 1 if it was not on it.")
    remove.add_argument("number")
    _where(remove, default_config)
    remove.set_defaults(func=cmd_dnc_remove)

    check = actions.add_parser("check", help="whether a number is on the list",
                               description="Whether NUMBER is on the do-not-call list, with "
                                           "its source and date. Exit status 0 if it is, 1 "
                                           "if not.")
    check.add_argument("number")
    _where(check, default_config)
    check.set_defaults(func=cmd_dnc_check)

    count = actions.add_parser("count", help="entries by source",
                               description="The entries of the do-not-call list by source.")
    _where(count, default_config)
    count.set_defaults(func=cmd_dnc_count)

    imp = actions.add_parser(
        "import", help="load an opt-out register or a list of numbers",
        description="Load FILE: one number per line, or a CSV file with a header and the "
                    "numbers in --column. Entries already on the list are kept as they are. "
                    "A million numbers load in seconds, by transactions of 50,000 so the "
                    "running switchboard's writes never wait long; an import cut short can "
                    "be run again. Prints the counts by reason and the first refused rows "
                    "like 'ivr campaign import'.")
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument("--source", choices=("register", "internal"), default="register",
                     help="register (default): entries get the source register:NAME; "
                          "internal: as if added by hand")
    imp.add_argument("--register-name", metavar="NAME",
                     help="NAME of register:NAME (default: the file's name)")
    imp.add_argument("--column", metavar="COL",
                     help="the CSV column of the numbers (for a file with a header)")
    imp.add_argument("--replace", action="store_true",
                     help="a new edition of the register replaces the old one: register: "
                          "entries not in FILE are dropped once all of FILE is in (no "
                          "number of either edition is ever missing meanwhile)")
    _report_options(imp)
    _where(imp, default_config)
    imp.set_defaults(func=cmd_dnc_import)
    return dnc


__all__ = ["add_campaign_parser", "add_dnc_parser", "cmd_campaign_export",
           "cmd_campaign_import", "cmd_campaign_list", "cmd_campaign_status", "cmd_dnc_add",
           "cmd_dnc_check", "cmd_dnc_count", "cmd_dnc_import", "cmd_dnc_remove",
           "export_table"]

"""``python -m ivr.edge``: write the edge's configurations for an ``ivr.yaml``.

    python -m ivr.edge --config ivr.yaml --out var/edge

writes ``kamailio.cfg`` (checked with ``kamailio -c`` unless ``--no-check``) and
``supervisord.conf``; ``make run-edge`` then runs both processes under supervisord.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ivr.edge.kamailio import check_kamailio_config, kamailio_command, kamailio_config
from ivr.edge.settings import EdgeError, EdgePlan, settings_from_yaml
from ivr.edge.supervisor import supervisord_config
from ivr.yamlsrc import DocumentError


def write_edge(config: Path, out: Path, kamailio: str | None = None,
               ivr_command: Sequence[str] | None = None) -> EdgePlan:
    """Write ``kamailio.cfg`` (mode 0600: it holds the users' HA1 hashes) and
    ``supervisord.conf`` into *out* for the ``ivr.yaml`` at *config*.

    Raises :class:`EdgeError`, one line per problem and before anything is written, if a
    password is weak or sits in a file others may read (:attr:`EdgePlan.refusals`).
    """
    plan = settings_from_yaml(config)
    if plan.refusals:
        raise EdgeError("\n".join(plan.refusals))
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    cfg = out / "kamailio.cfg"
    fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(kamailio_config(plan.settings, source=config.name))
    command = list(ivr_command) if ivr_command is not None else [
        sys.executable, "-m", "ivr.cli", "run", "--config", str(config.resolve())]
    (out / "supervisord.conf").write_text(
        supervisord_config(command, kamailio_command(cfg, out, kamailio), out))
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (2: bad settings, 1: Kamailio refuses)."""
    parser = argparse.ArgumentParser(
        prog="python -m ivr.edge",
        description="Generate the Kamailio and supervisord configurations of the edge (the "
                    "registrar of agents' phones) from ivr.yaml.")
    parser.add_argument("--config", type=Path, default=Path("ivr.yaml"))
    parser.add_argument("--out", type=Path, default=Path("var/edge"))
    parser.add_argument("--kamailio", help="the kamailio binary (default: found on PATH)")
    parser.add_argument("--no-check", action="store_true",
                        help="do not run 'kamailio -c' on the generated configuration")
    args = parser.parse_args(argv)
    try:
        plan = write_edge(args.config, args.out, args.kamailio)
    except DocumentError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except (EdgeError, OSError) as exc:
        for line in str(exc).splitlines():
            print(f"ivr.edge: {line}", file=sys.stderr)
        return 2
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    cfg = args.out / "kamailio.cfg"
    if not args.no_check:
        ok, output = check_kamailio_config(cfg, args.kamailio)
        if not ok:
            print(output.strip(), file=sys.stderr)
            print(f"ivr.edge: Kamailio refuses {cfg}", file=sys.stderr)
            return 1
    s = plan.settings
    print(f"wrote {cfg} and {args.out / 'supervisord.conf'}: edge on udp {s.listen}, "
          f"switchboard {s.ivr}, {len(s.agents)} agent(s) and {len(s.supervisors)} "
          f"supervisor(s) may register, "
          f"registrations at {s.rpc_url}")
    return 0

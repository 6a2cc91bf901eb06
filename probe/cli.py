"""The command line: argument parsing and the ``probe run`` command.

Exit codes: 0 when a run completed, whatever it found; 2 for bad input (an
unusable config, an unknown domain); 1 when the probe itself failed. Heavy
modules are imported inside the commands so ``probe --version`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from probe import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probe",
        description="Measure whether X (Twitter) is reachable from this network, and how "
        "it is blocked. Writes OONI-format JSON measurements.",
    )
    parser.add_argument("--version", action="version", version=f"probe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="measure every target once and write the measurements")
    run.add_argument(
        "--config", type=Path, help="campaign config (default: configs/x.toml or $PROBE_CONFIG)"
    )
    run.add_argument("--only", nargs="+", metavar="DOMAIN", help="measure only these targets")
    run.add_argument(
        "--output",
        type=Path,
        default=Path("results"),
        help="directory for the JSONL files (default: results)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print the measurements as JSON lines instead of a table",
    )
    run.set_defaults(handler=cmd_run)

    from probe.lab.cli import add_parser as add_lab

    add_lab(sub)
    return parser


def main(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = args.handler(args)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    from probe import campaign, normalize, store
    from probe.config import ConfigError, default_config_path, load
    from probe.summary import table, with_verdicts

    try:
        config = load(args.config or default_config_path())
        if args.only:
            config = config.only(tuple(args.only))
    except ConfigError as exc:
        print(f"probe: config error: {exc}", file=sys.stderr)
        return 2
    result = asyncio.run(campaign.run(config))
    measurements = with_verdicts(normalize.measurements(result, config))
    path = store.day_file(args.output, result.start_time)
    written = store.append(path, measurements)
    if args.json:
        for m in measurements:
            print(json.dumps(m, ensure_ascii=False))
    else:
        print(table(measurements))
    print(f"{written} measurements appended to {path}", file=sys.stderr)
    return 0

"""The command line: argument parsing and the ``run``, ``schedule``, ``upload`` and ``consent``
commands.

Exit codes: 0 when a run completed, whatever it found (or was skipped on purpose:
a VPN, a backoff); 2 for bad input (an unusable config, an unknown domain, no
consent on record); 1 when the probe itself failed (or the disk is too full to
measure); 75 (EX_TEMPFAIL) when another unattended run holds the lock. Heavy
modules are imported inside the commands so ``probe --version`` stays fast.

Logs go to stderr: one plain line each (with a UTC timestamp) when stderr is not a
terminal (journald, cron mail, ``docker logs``); on a terminal, short lines and a
countdown to the next campaign.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from probe import __version__

if TYPE_CHECKING:
    from probe.config import Config
    from probe.pipeline import Outcome
    from probe.schedule import Runner

__all__ = ["main"]


_CONFIG_HELP = (
    "campaign config (default: $PROBE_CONFIG, else ./configs/x.toml, else the installed one)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probe",
        description="Measure whether X (Twitter) is reachable from this network, and how "
        "it is blocked. Writes OONI-format JSON measurements.",
    )
    parser.add_argument("--version", action="version", version=f"probe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="measure every target once and write the measurements")
    run.add_argument("--config", type=Path, help=_CONFIG_HELP)
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
    run.add_argument(
        "--once",
        action="store_true",
        help="unattended (cron, systemd timer): never asks, needs recorded consent, takes the "
        "run lock, looks after the results folder, skips on a VPN, logs one line",
    )
    run.set_defaults(handler=cmd_run)

    sched = sub.add_parser(
        "schedule", help="measure every N seconds on average, at random times, until SIGTERM/SIGINT"
    )
    sched.add_argument("--config", type=Path, help=_CONFIG_HELP)
    sched.add_argument(
        "--output",
        type=Path,
        default=Path("results"),
        help="directory for the JSONL files (default: results)",
    )
    sched.add_argument(
        "--interval",
        type=float,
        help="mean seconds between campaign starts (30 to 86400; default: the config's "
        "[schedule] interval); with sampling = poisson (the default) each wait is random, "
        "0.1 to 5 times N; with regular, N +/- jitter",
    )
    sched.add_argument(
        "--max-campaigns", type=int, metavar="N", help="stop after N campaigns (default: never)"
    )
    sched.set_defaults(handler=cmd_schedule)

    up = sub.add_parser(
        "upload",
        help="send the outbox's measurements to the collector "
        "([upload] url); automatic after each unattended campaign",
    )
    up.add_argument("--config", type=Path, help=_CONFIG_HELP)
    up.set_defaults(handler=cmd_upload, output=Path("results"))

    agree = sub.add_parser("consent", help="read the risks of running the probe, and consent")
    action = agree.add_mutually_exclusive_group()
    action.add_argument(
        "--yes", action="store_true", help="record consent without asking (read --show first)"
    )
    action.add_argument("--show", action="store_true", help="print the text and the status")
    action.add_argument("--withdraw", action="store_true", help="forget the recorded consent")
    agree.set_defaults(handler=cmd_consent)

    reindex = sub.add_parser(
        "reindex", help="rebuild the index beside each measurement file from its raw lines"
    )
    reindex.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                         help="JSONL(.gz) files or folders")  # fmt: skip
    reindex.set_defaults(handler=cmd_reindex)

    from probe.collector.cli import add_parser as add_collector
    from probe.config_show import add_parser as add_config
    from probe.lab.cli import add_parser as add_lab
    from probe.report.cli import add_parser as add_report

    add_lab(sub)
    add_report(sub)
    add_collector(sub)
    add_config(sub)
    return parser


def main(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = args.handler(args)
    return code


def _logging() -> None:
    """Log lines of the ``probe`` logger to the current stderr (see the module doc)."""
    logger = logging.getLogger("probe")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("\r\x1b[K%(asctime)s %(message)s", "%H:%M:%S"))
    else:
        formatter = logging.Formatter(
            "%(asctime)s probe %(levelname)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ"
        )
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _config(args: argparse.Namespace) -> Config | None:
    """The config of a measuring command, or None (said why) when it or ``--output`` is bad."""
    from probe.config import ConfigError, default_config_path, load

    try:
        config = load(args.config or default_config_path())
        if getattr(args, "only", None):
            config = config.only(tuple(args.only))
    except ConfigError as exc:
        print(f"probe: config error: {exc}", file=sys.stderr)
        return None
    if args.output.exists() and not args.output.is_dir():
        print(f"probe: --output: {args.output} is a file, not a folder", file=sys.stderr)
        return None
    return config


def _unwritable(folder: Path) -> bool:
    """Say why ``folder`` cannot take results, if it cannot; tried for real (permission bits
    do not tell: root, read-only mounts) in it or in the ancestor it would be made in; leaves
    nothing behind."""
    import tempfile

    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".probe-write-test."):
            pass
    except OSError as exc:  # the machine refused: exit 1, before any packet is sent
        print(f"probe: --output: {folder}: {exc.strerror or exc}", file=sys.stderr)
        return True
    return False


NO_CONSENT = (
    "probe: no consent on record, nothing measured. Read what running the probe risks with "
    "`probe consent --show`, then give consent with `probe consent` (or `probe consent --yes`); "
    "an automated install may set `consent = true` under [vantage] in its config instead."
)


def _consented(config: Config, state: Path, *, interactive: bool) -> bool:
    """Consent on record or in the config; else, on a terminal, ask (and record a yes)."""
    from probe import consent

    if config.vantage.consent or consent.recorded(state):
        return True
    if not interactive:
        print(NO_CONSENT, file=sys.stderr)
        return False
    if not consent.ask(sys.stdin, sys.stdout):
        print("probe: no consent, nothing measured.", file=sys.stderr)
        return False
    print(f"probe: consent recorded in {consent.record(state)}", file=sys.stderr)
    return True


def cmd_run(args: argparse.Namespace) -> int:
    from probe.format.vocab import Trigger
    from probe.rotate import low_disk
    from probe.schedule import Runner, once
    from probe.state import state_dir
    from probe.summary import table

    config = _config(args)
    if config is None:
        return 2
    if _unwritable(args.output):
        return 1
    _logging()
    state = state_dir()
    if args.once:
        return _unattended(Runner(config, args.output, state), once)
    if not _consented(config, state, interactive=sys.stdin.isatty() and sys.stdout.isatty()):
        return 2
    if low_disk(args.output, config.storage.min_free_mb << 20):
        print(
            f"probe: less than {config.storage.min_free_mb} MB free for {args.output} "
            "([storage] min_free_mb): nothing measured",
            file=sys.stderr,
        )
        return 1
    runner = Runner(config, args.output, state)

    def show(m: dict[str, object]) -> None:  # as each measurement is written
        print(json.dumps(m, ensure_ascii=False), flush=True)

    async def manual() -> Outcome | None:
        found = await runner.vantage()
        if found.vpn:
            logging.getLogger("probe").warning(
                "%s: measurements tagged as made through a VPN", found.vpn
            )
        try:
            return await runner.measure(found, Trigger.MANUAL, each=show if args.json else None)
        except TimeoutError:
            print(
                f"probe: campaign over its {config.schedule.budget:g} s budget "
                "([schedule] budget): only the measurements it finished are written",
                file=sys.stderr,
            )
            return None

    outcome = asyncio.run(manual())
    if outcome is None:
        return 1
    if not args.json:
        print(table(outcome.rows))
    print(f"{outcome.count} measurements appended to {outcome.path}", file=sys.stderr)
    return 0


def _unattended(runner: Runner, work: Callable[[Runner], Coroutine[object, object, int]]) -> int:
    """Consent (never asked), then the run lock, then ``work``."""
    from probe.schedule import Lock, LockHeld, LockUnusable

    if not _consented(runner.config, runner.state, interactive=False):
        return 2
    try:
        with Lock(runner.output):
            return asyncio.run(work(runner))
    except LockHeld as exc:
        print(f"probe: {exc}; exiting", file=sys.stderr)
        return 75
    except LockUnusable as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 1


def cmd_schedule(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from probe.config import DAY
    from probe.schedule import Runner
    from probe.state import state_dir

    if args.max_campaigns is not None and args.max_campaigns < 1:
        print("probe: --max-campaigns: must be >= 1", file=sys.stderr)
        return 2
    if args.interval is not None and not 30 <= args.interval <= DAY:  # NaN and inf too
        print(f"probe: --interval: must be in [30, {DAY:g}] seconds", file=sys.stderr)
        return 2
    config = _config(args)
    if config is None:
        return 2
    if _unwritable(args.output):
        return 1
    if args.interval is not None:
        config = replace(config, schedule=replace(config.schedule, interval=args.interval))
    _logging()
    return _unattended(
        Runner(config, args.output, state_dir()), lambda r: _schedule(r, args.max_campaigns)
    )


async def _schedule(runner: Runner, max_campaigns: int | None) -> int:
    from probe.schedule import Stop, loop

    log = logging.getLogger("probe")
    stop = Stop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.signal)
    progress = None
    if sys.stderr.isatty():

        def progress(text: str) -> None:
            sys.stderr.write(f"\r\x1b[K{text}")
            sys.stderr.flush()

    log.info(
        "measuring: %s, into %s; stop with Ctrl-C or SIGTERM", _how(runner.config), runner.output
    )
    count, failed = await loop(runner, stop, progress=progress, max_campaigns=max_campaigns)
    log.info("stopped after %d campaign(s)", count)
    if failed:  # e.g. --max-campaigns 1 on a full disk: a cron wrapper must see it
        log.error("the last %d campaign(s) failed", failed)
    return 1 if failed else 0


def _how(config: Config) -> str:
    """When campaigns start, in the words of what the scheduler does (its own waits)."""
    from probe.schedule_policy import regular_wait

    s = config.schedule
    low, high = regular_wait(s, 0.0), regular_wait(s, 1.0)
    if s.sampling == "poisson":
        return (
            f"a campaign every {s.interval:g} s on average, at random ({low:g} to {high:g} s apart)"
        )
    return f"a campaign every {s.interval:g} s ({low:g} to {high:g} s apart)"


def cmd_upload(args: argparse.Namespace) -> int:
    """Exit 0 when the outbox is empty after it (sent, or refused: logged), else 1."""
    from probe.schedule import Runner
    from probe.state import state_dir

    config = _config(args)
    if config is None:
        return 2
    if not config.upload.url:
        print(f"probe: no collector: set [upload] url in {config.path}", file=sys.stderr)
        return 2
    _logging()

    async def work(runner: Runner) -> int:
        found = await runner.vantage()  # the public address, for the last scrub check
        return 1 if (await runner.upload(found)).left else 0

    return _unattended(Runner(config, args.output, state_dir()), work)


def cmd_reindex(args: argparse.Namespace) -> int:
    """Exit 0 when every file was indexed, 1 when one could not be (said in one line each).
    Files are indexed in parallel, one process per core (parsing every line is the cost)."""
    import multiprocessing
    import os

    from probe import store

    days = list(store.iter_files(args.paths))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    failed = 0
    with multiprocessing.get_context("fork").Pool(max(1, cores or 1)) as pool:
        for day, rows in zip(days, pool.imap(_reindex, days), strict=True):
            if isinstance(rows, str):
                print(f"probe: cannot index {day}: {rows}", file=sys.stderr)
                failed += 1
            else:
                print(f"{day}: {rows} lines indexed")
    return 1 if failed else 0


def _reindex(day: Path) -> int | str:
    """The rows of ``day``'s rebuilt index, or why it could not be written."""
    from probe import index

    try:
        return index.rebuild(day)
    except OSError as exc:
        return str(exc)


def cmd_consent(args: argparse.Namespace) -> int:
    from probe import consent
    from probe.state import state_dir

    state = state_dir()
    if args.withdraw:
        gone = consent.withdraw(state)
        print("consent withdrawn" if gone else "no consent was on record")
        return 0
    if args.show:
        print(consent.TEXT)
        status = "recorded" if consent.recorded(state) else "not recorded"
        print(f"Consent: {status} ({state / consent.FILE})")
        return 0
    if args.yes:
        print(f"consent recorded in {consent.record(state)}")
        return 0
    if not sys.stdin.isatty():
        print(consent.TEXT)
        print("Not a terminal: run `probe consent --yes` to record your consent.", file=sys.stderr)
        return 2
    if not consent.ask(sys.stdin, sys.stdout):
        print("No consent recorded.")
        return 2
    print(f"consent recorded in {consent.record(state)}")
    return 0

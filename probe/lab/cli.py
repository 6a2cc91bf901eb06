"""``probe lab ...``: the censorship lab's commands.

:func:`add_parser` mounts ``lab up|down|status|run|eval|scenarios`` on the probe's command
line; each subcommand sets ``handler(args) -> exit code``. :func:`main` runs the same commands
without the probe's CLI (``python -m probe.lab.cli``). Heavy modules are imported in the
handlers, so mounting costs nothing. Exit codes: 0 done, 1 the lab or a probe round failed,
2 bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["add_parser", "main"]

# The evaluation of a run against its truth lives in this module, as `main(argv) -> int`
# (argv = [DIR]); it belongs to the lab's evaluation, not to these commands.


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lab`` and its subcommands to ``subparsers``."""
    lab = subparsers.add_parser(
        "lab", help="the censorship lab: simulated ISPs in network namespaces (needs root)"
    )
    sub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)

    up = sub.add_parser("up", help="create the lab of a scenario and leave it running")
    _scenario_arguments(up)
    up.add_argument(
        "--truth",
        type=Path,
        metavar="FILE",
        help="append the truth here (default: the state directory, gone at down)",
    )
    up.set_defaults(handler=cmd_up)

    down = sub.add_parser("down", help="stop the lab and remove everything it left")
    down.set_defaults(handler=cmd_down)

    status = sub.add_parser("status", help="is a lab up, and how to run a probe in it")
    status.set_defaults(handler=cmd_status)

    run = sub.add_parser("run", help="up, probe every ISP on an interval, then down")
    _scenario_arguments(run)
    run.add_argument(
        "--duration",
        type=float,
        required=True,
        metavar="SECONDS",
        help="how long the lab runs and the probes measure",
    )
    run.add_argument(
        "--interval",
        type=float,
        default=20.0,  # probe.lab.scenario.DEFAULT_INTERVAL: not imported here (cost)
        metavar="SECONDS",
        help="mean seconds between probe runs in each vantage point, at random (Poisson) "
        "times (default: 20)",
    )
    run.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="DIR",
        help="measurements go to DIR/<isp>/, the truth to DIR/truth.jsonl "
        "(default: results/lab-<scenario>-<UTC time>)",
    )
    _min_open_detected(run)
    run.set_defaults(handler=cmd_run)

    evaluate = sub.add_parser("eval", help="score the verdicts of a `lab run` against its truth")
    evaluate.add_argument(
        "directory", type=Path, metavar="DIR", help="the --output folder of a `lab run`"
    )
    evaluate.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="mean seconds between runs (default: inferred from the data)",
    )
    evaluate.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the whole evaluation here"
    )
    _min_open_detected(evaluate)
    evaluate.set_defaults(handler=cmd_eval)

    scenarios = sub.add_parser(
        "scenarios", help="list the scenarios --scenario knows by name, and their files"
    )
    scenarios.set_defaults(handler=cmd_scenarios)


def _scenario_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        required=True,
        metavar="NAME",
        help="a name (e.g. pakistan-2024: ./configs/scenarios/, else the installed ones; "
        "see `probe lab scenarios`) or a path",
    )
    parser.add_argument("--seed", type=int, help="override the scenario's seed")


def cmd_up(args: argparse.Namespace) -> int:
    from probe.lab import runner
    from probe.lab.scenario import ScenarioError

    try:
        lab = runner.up(args.scenario, seed=args.seed, truth=args.truth)
    except (ScenarioError, runner.LabError) as exc:
        print(f"probe lab: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ScenarioError) else 1
    print(f"lab up: {lab.topology.scenario.name}, daemon {lab.pid}, state {lab.state}")
    print(runner.status(lab.state))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from probe.lab import runner

    removed = runner.down()
    print(f"lab down: removed {len(removed)} item(s)" + "".join(f"\n  {r}" for r in removed))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from probe.lab import runner

    print(runner.status())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from probe.lab import runner
    from probe.lab.scenario import ScenarioError

    if args.duration <= 0 or args.interval <= 0:
        print("probe lab: --duration and --interval must be positive", file=sys.stderr)
        return 2
    if args.output is None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        args.output = Path("results") / f"lab-{Path(args.scenario).stem}-{stamp}"
    try:
        failures = runner.run(
            args.scenario,
            duration=args.duration,
            interval=args.interval,
            output=args.output,
            seed=args.seed,
        )
    except ScenarioError as exc:
        print(f"probe lab: {exc}", file=sys.stderr)
        return 2
    except runner.LabError as exc:
        print(f"probe lab: {exc}", file=sys.stderr)
        return 1
    if failures:
        print(f"probe lab: {failures} rounds failed", file=sys.stderr)
    from probe.lab import evaluate

    verdicts = evaluate.judge_run(args.output, min_open_detected=args.min_open_detected)
    return 1 if failures or verdicts else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from probe.lab import evaluate

    return evaluate.judge_run(
        args.directory,
        interval=args.interval,
        json_path=args.json,
        min_open_detected=args.min_open_detected,
    )


def _min_open_detected(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-open-detected",
        type=_fraction,
        metavar="FRACTION",
        help="the share of true open windows of >= 10 s the run must have seen open "
        "(default 0.9; 0 for a run too short to sample many windows)",
    )


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def cmd_scenarios(args: argparse.Namespace) -> int:
    from probe.lab.scenario import known

    for name, path in known().items():
        print(f"{name}\t{path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m probe.lab.cli COMMAND ...``: the same as ``probe lab COMMAND ...``."""
    parser = argparse.ArgumentParser(prog="python -m probe.lab.cli")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

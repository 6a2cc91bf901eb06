"""``probe report`` and ``probe export``: the report's commands.

:func:`add_parser` mounts both on the probe's command line. DuckDB (the
project's ``report`` extra) is imported inside the handlers, so mounting costs
nothing and a probe installed without the extra still runs; the commands then
say how to install it. ``--engine spark`` runs the same report on Apache Spark
(:mod:`probe.report.spark`, the ``spark`` extra). Exit codes: 0 done (also over
zero measurements, which the summary says), 2 bad input (a bad time or bucket, a
missing path, no DuckDB, no pyspark).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from probe.extras import needs_extra

__all__ = ["add_parser", "parse_time"]

_NO_DUCKDB = needs_extra("the report needs DuckDB", "report")
_NO_PYSPARK = needs_extra("--engine spark needs pyspark", "spark")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report`` and ``export`` to ``subparsers``."""
    report = subparsers.add_parser(
        "report", help="merge measurement files of many volunteers into a per-ISP report"
    )
    report.add_argument("paths", nargs="+", metavar="PATH",
                        help="JSONL(.gz) files, folders, or `probe export` Parquet (with "
                        "--engine spark also s3a:// or gs:// URLs)")  # fmt: skip
    report.add_argument("--since", type=parse_time, metavar="T",
                        help="only measurements from T on (UTC, e.g. 2024-02-17 or "
                        "'2024-02-17 10:00')")  # fmt: skip
    report.add_argument("--until", type=parse_time, metavar="T", help="only before T (UTC)")
    report.add_argument("--bucket", default="AUTO", metavar="AUTO|5m|1h|1d",
                        help="time bucket (default AUTO; any <n>s|m|h|d)")  # fmt: skip
    report.add_argument("--config", type=Path, metavar="FILE",
                        help="campaign config whose targets and controls classify OONI's "
                        "measurements by input (default: as `probe run`)")  # fmt: skip
    report.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                        help="duckdb (default: this machine) or spark (the [spark] extra; "
                        "docs/report.md)")  # fmt: skip
    report.add_argument("--master", default="local[2]", metavar="URL",
                        help="Spark master with --engine spark (default local[2]: in this "
                        "process, on loopback)")  # fmt: skip
    report.add_argument("--html", type=Path, metavar="FILE", help="write the HTML report")
    report.add_argument("--csv", type=Path, metavar="FILE", help="write the aggregate as CSV")
    report.add_argument("--json", type=Path, metavar="FILE", help="write everything as JSON")
    report.set_defaults(handler=cmd_report)

    export = subparsers.add_parser(
        "export", help="convert measurement files to one Parquet file for fast reports"
    )
    export.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="measurement files (ours, OONI's) or folders of them")  # fmt: skip
    export.add_argument("--parquet", type=Path, required=True, metavar="FILE",
                        help="the Parquet file to write (`probe report` reads it)")  # fmt: skip
    export.set_defaults(handler=cmd_export)


def parse_time(text: str) -> datetime:
    """A UTC time for --since/--until: ``2024-02-17``, ``2024-02-17 10:00[:00]``, ISO 8601."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (try 2024-02-17 10:00)") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _missing(paths: list[Path] | list[str]) -> bool:
    gone = [str(p) for p in paths if not Path(p).exists()]
    if gone:
        print(f"probe: no such file or folder: {', '.join(gone)}", file=sys.stderr)
    return bool(gone)


def cmd_report(args: argparse.Namespace) -> int:
    from probe.report.model import parse_bucket

    try:
        bucket = parse_bucket(args.bucket)
    except ValueError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 2
    spark = args.engine == "spark"
    if _missing([p for p in args.paths if not (spark and "://" in p)]):
        return 2
    try:
        from probe.report.engine import build
    except ImportError:
        print(_NO_DUCKDB, file=sys.stderr)
        return 2
    if spark:
        try:
            from probe.report import spark as on_spark
        except ImportError:
            print(_NO_PYSPARK, file=sys.stderr)
            return 2
    from probe.config import ConfigError, default_config_path, load
    from probe.report.html import render
    from probe.report.scan import Roles
    from probe.report.tables import to_csv, to_json
    from probe.report.text import summary

    try:
        config = load(args.config or default_config_path())
    except (ConfigError, OSError) as exc:
        print(f"probe: config error: {exc}", file=sys.stderr)
        return 2
    roles = Roles(config.targets, config.controls)
    if spark:
        report = on_spark.build(args.paths, since=args.since, until=args.until, bucket=bucket,
                                roles=roles, master=args.master)  # fmt: skip
    else:
        report = build(args.paths, since=args.since, until=args.until, bucket=bucket, roles=roles)
    print(summary(report))
    if args.csv:
        args.csv.write_text(to_csv(report), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(to_json(report), indent=1) + "\n", encoding="utf-8")
    if args.html:
        args.html.write_text(render(report), encoding="utf-8")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if _missing(args.paths):
        return 2
    try:
        from probe.report.engine import export_parquet
    except ImportError:
        print(_NO_DUCKDB, file=sys.stderr)
        return 2
    folder = args.parquet.resolve().parent
    if not folder.is_dir():
        print(f"probe export: no folder {folder} for {args.parquet}", file=sys.stderr)
        return 2
    rows, skipped = export_parquet(args.paths, args.parquet)
    extra = ", ".join(f"{n} {r}" for r, n in sorted(skipped.items()))
    print(
        f"{rows} measurements written to {args.parquet}" + (f"; skipped: {extra}" if extra else "")
    )
    return 0

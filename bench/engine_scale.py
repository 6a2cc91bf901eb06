"""Scale-out benchmark (issue 17 item 3): ``probe report --engine spark`` against DuckDB.

On a synthetic archive (bench/synth.py; default 1M measurements, 50 ASNs, 30 days, one
.jsonl.gz per volunteer and day; ``--observations empty``: ~1.5 KB a line), the report is
built by DuckDB (probe/report/engine.py) and by Spark in local mode (probe/report/spark.py,
``local[2]``: this machine's two cores in one JVM), and the two reports are compared whole
(every count, cell, series and statistic; floats to 12 digits). Printed: the time of each,
Spark's session start apart, and whether the figures are identical. Spark in local mode on
one machine is not expected to beat DuckDB: the figure says what the scale-out costs where
DuckDB would do, and that it gives the same answer.

The archive is generated once into $TMPDIR/probe-bench-scale-<observations>-<rows>-v<rules>
(verdicts written by the current rules, a few older: re-scored) and reused.
Run: python bench/engine_scale.py [--rows N] [--observations lab|empty] [--master URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from synth import generate  # noqa: E402
from test_report_spark import _same  # noqa: E402

from probe.report import spark  # noqa: E402
from probe.report.engine import build  # noqa: E402
from probe.verdict import ANALYSIS_VERSION  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--observations", choices=("lab", "empty"), default="empty")
    parser.add_argument("--master", default=spark.LOCAL)
    args = parser.parse_args()
    folder = (
        Path(tempfile.gettempdir())
        / f"probe-bench-scale-{args.observations}-{args.rows}-v{ANALYSIS_VERSION}"
    )
    if not folder.is_dir():
        part = folder.with_suffix(".part")
        part.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        lines = generate(part, rows=args.rows, version=ANALYSIS_VERSION, kind=args.observations)
        part.rename(folder)
        print(f"generated {lines} lines in {time.perf_counter() - start:.0f} s: {folder}")
    start = time.perf_counter()
    duck = build([folder])
    t_duck = time.perf_counter() - start
    print(f"DuckDB: {t_duck:.1f} s ({duck.targets} targets, {len(duck.cells)} cells, "
          f"{len(duck.series)} series, {duck.duplicates} duplicates, "
          f"{duck.rescored} re-scored)")  # fmt: skip
    start = time.perf_counter()
    session = spark.session(args.master)
    t_start = time.perf_counter() - start
    start = time.perf_counter()
    on_spark = spark.build([folder], spark=session)
    t_spark = time.perf_counter() - start
    session.stop()
    same = _same(on_spark) == _same(duck)
    print(f"Spark ({args.master}): {t_spark:.1f} s, + {t_start:.1f} s to start the session; "
          f"{t_spark / t_duck:.1f} x DuckDB's time")  # fmt: skip
    print(f"same report figures: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()

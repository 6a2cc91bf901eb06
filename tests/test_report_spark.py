"""``probe report --engine spark``: Spark (local[2], this machine's JVM) gives DuckDB's report.

Both engines run the same aggregation SQL (probe/report/aggregate.py); these tests run Spark
for real over the same files as DuckDB and compare the whole :class:`Report` (every count,
cell, series and statistic). Without pyspark or Java they skip, except in CI (``CI=true``),
where a skip would hide a broken engine: there they fail. One Spark session serves the
module (starting it costs ~10 s).
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("duckdb", reason="the report needs the project's [report] extra (duckdb)")


def _missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (the project's [spark] extra)"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (Debian: openjdk-17-jre-headless)"
    return None


if (_why := _missing()) is not None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"cannot run the Spark engine in CI: {_why}", pytrace=False)
    pytest.skip(_why, allow_module_level=True)

from pyspark.sql import SparkSession  # noqa: E402
from test_ooni import wc  # noqa: E402
from test_report import measurement  # noqa: E402

from probe.__main__ import main  # noqa: E402
from probe.report import spark  # noqa: E402
from probe.report.engine import build, export_parquet  # noqa: E402
from probe.report.model import Report  # noqa: E402
from probe.report.scan import OTHER_INPUT, Roles  # noqa: E402
from probe.verdict import ANALYSIS_VERSION  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from synth import generate  # noqa: E402


@pytest.fixture(scope="module")
def session() -> Iterator[SparkSession]:
    s = spark.session()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic archive (bench/synth.py): every ISP shape, re-scored rows,
    duplicates in a second upload, torn last lines, .jsonl.gz per volunteer and day."""
    root = tmp_path_factory.mktemp("synth")
    generate(root, rows=4000, asns=12, days=2, version=ANALYSIS_VERSION, kind="empty")
    return root


def _same(report: Report) -> Any:
    """The report as nested tuples, floats to 12 digits (the engines may sum in other orders)."""

    def rounded(x: Any) -> Any:
        if isinstance(x, float):
            return float(f"{x:.12g}")
        if isinstance(x, tuple | list):
            return tuple(rounded(v) for v in x)
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        return x

    return rounded(dataclasses.astuple(report))


def _ours_and_oonis(root: Path) -> list[Path]:
    """A ``probe export`` Parquet file (one row of older rules: re-scored from its line),
    our JSONL, OONI's JSONL classified by input, and OONI's whole-document .json.gz."""
    rows = [measurement("a", run, d, "blocked") for run in (0, 1) for d in ("x.com", "t.co")]
    rows += [measurement("b", run, "x.com", "ok") for run in range(3)]
    rows += [measurement("a", run, "www.example.com", None, role="control") for run in (0, 1)]
    rows[0]["test_keys"]["x_analysis_version"] = "0"
    (root / "in").mkdir()
    (root / "in" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    export_parquet([root / "in"], root / "old.parquet")
    (root / "in" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[4:]))
    ooni = [wc("connection_reset", url=u) for u in
            ("https://x.com/", "https://www.example.com/", "https://example.org/")]  # fmt: skip
    (root / "in" / "ooni.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ooni[:2]))
    (root / "in" / "one.json.gz").write_bytes(gzip.compress(json.dumps(ooni[2]).encode()))
    return [root / "in", root / "old.parquet"]


def test_spark_gives_duckdbs_report(session: SparkSession, archive: Path, tmp_path: Path) -> None:
    """The synthetic archive, with a Parquet export and OONI's rows beside it."""
    paths = [archive, *_ours_and_oonis(tmp_path)]
    roles = Roles(("x.com", "t.co"), ("www.example.com",))
    expected = build(paths, roles=roles)
    assert expected.targets > 3000 and expected.duplicates and expected.rescored
    assert expected.sources.keys() == {"probe", "ooni"}
    assert expected.skipped.keys() > {OTHER_INPUT}  # and the torn lines
    assert _same(spark.build(paths, roles=roles, spark=session)) == _same(expected)


def test_the_cli_runs_the_spark_engine(session: SparkSession, archive: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """``--engine spark`` (the module's session is reused) writes DuckDB's JSON, here with
    --since, --until and a fixed bucket."""
    window = ["--since", "2024-02-17 06:00", "--until", "2024-02-18 03:00", "--bucket", "10m"]
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.json"
        assert main(["report", str(archive), *window, "--engine", engine, "--json", str(out)]) == 0
    duck, on_spark = (json.loads((tmp_path / f"{e}.json").read_text()) for e in ("duckdb", "spark"))
    assert duck["summary"]["filtered"]
    assert on_spark == duck
    assert "Synthetic ISP" in capsys.readouterr().out

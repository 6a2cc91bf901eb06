"""The report on Apache Spark (``probe report --engine spark``): the scale-out engine.

The same report as :mod:`probe.report.engine` (DuckDB), for archives one machine cannot
hold: a year of a country's OONI archive, a collector fed by thousands of probes. Spark
reads the files (``.jsonl``, ``.jsonl.gz``, OONI's ``.json`` documents, ``probe export``
Parquet; local paths, or ``s3a://`` / ``gs://`` URLs when the cluster has those
connectors), makes table ``m`` with the columns :mod:`probe.report.scan` makes, drops
duplicates and re-scores stale rows with the same Python verdict (a Python UDF on the
executors), then runs the aggregation SQL of :mod:`probe.report.aggregate`, the one
DuckDB runs. The keys, their problems and the domain family are the scan's
(``_HOST``/``_FAMILY`` are shared SQL); only the reader differs. Both parse each line
whole (Spark with ``from_json``); a valid JSON value that is no
object (``[1]``, ``null``) is an invalid line here; a truncated ``.gz`` gives the lines
before the damage (``spark.sql.files.ignoreCorruptFiles``) and is not counted as unreadable.

The session is the user's: ``--master local[2]`` (the default) runs Spark inside this
process's JVM, bound to 127.0.0.1 with the web UI off; any other master URL is handed to
Spark as is (its executors then need Python with this project installed). Nothing is
downloaded: no ``--packages``; the JVM's own jars only.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from probe.report.aggregate import Read, report
from probe.report.engine import _score
from probe.report.model import Report
from probe.report.scan import (
    _DOCUMENTS,
    _FAMILY,
    _HOST,
    Roles,
    _documents,
    _files,
    _hosts,
    _ooni_skip,
    _problem_sql,
)  # fmt: skip
from probe.verdict import ANALYSIS_VERSION

__all__ = ["LOCAL", "build", "session"]

#: The default master: Spark in this process's JVM, two cores.
LOCAL: Final = "local[2]"
# The keys of _KEYS (probe.report.scan) as the struct from_json reads; a line that is no
# JSON object gets its text in _corrupt_record.
_SCHEMA: Final = (
    "measurement_uid STRING, probe_asn STRING, probe_network_name STRING, "
    "measurement_start_time STRING, input STRING, annotations STRUCT<x_role: STRING>, "
    "test_name STRING, software_name STRING, x_format_version STRING, report_id STRING, "
    "test_keys STRUCT<x_verdict: STRUCT<status: STRING, method: STRING, detail: STRING>, "
    "x_analysis_version: STRING>, _corrupt_record STRING"
)
# Marks the OONI rows of other tests, whose reason the UDF ooni_skip gives (a Python UDF
# in a CASE runs on every row: it runs on these rows alone).
_ASK_OONI: Final = "\x00ooni"
# The scan's _STAGED (probe/report/scan.py) in Spark SQL, over view ``lines`` (line).
_STAGED: Final = """
WITH keyed AS (
    SELECT line, j IS NOT NULL AND j._corrupt_record IS NULL AS valid,
           j.measurement_uid AS given_uid, j.probe_asn AS asn, j.probe_network_name AS network,
           j.measurement_start_time AS start_text, j.input AS input,
           j.annotations.x_role AS given_role, j.test_name AS test_name,
           j.software_name AS software, j.x_format_version AS fmt, j.report_id AS report_id,
           j.test_keys.x_verdict.status AS status, j.test_keys.x_verdict.method AS method,
           j.test_keys.x_verdict.detail AS detail, j.test_keys.x_analysis_version AS version
    FROM (SELECT line, from_json(line, '{schema}', map('mode', 'PERMISSIVE',
                 'columnNameOfCorruptRecord', '_corrupt_record')) AS j
          FROM lines WHERE btrim(line, concat(' ', chr(9), chr(13))) <> '')
), sourced AS (
    SELECT *, CASE WHEN fmt IS NOT NULL OR test_name = 'x_reachability' OR software = 'probe'
                   THEN 'probe' ELSE 'ooni' END AS source
    FROM keyed
), hosted AS (
    SELECT *, {host} AS host FROM sourced
), rows AS (  -- OONI has neither x_role (its input's host says: Roles) nor uid
    SELECT *, CASE WHEN source = 'ooni' AND given_uid IS NULL THEN md5(trim(line))
                   ELSE given_uid END AS uid,
           CASE WHEN source <> 'ooni' OR given_role IS NOT NULL THEN given_role
                WHEN {all_targets} THEN 'target'
                WHEN {is_target} THEN 'target'
                WHEN {is_control} THEN 'control'
                ELSE 'other' END AS role,
           unix_timestamp(try_to_timestamp(start_text, 'yyyy-MM-dd HH:mm:ss')) AS t
    FROM hosted
)
SELECT uid, asn, network, source, t, {family} AS family,
       coalesce(nullif(report_id, ''), start_text) AS run, role, status, method, detail,
       {problem} AS problem,
       version, line
FROM rows
"""
# Which target rows need the current rules' verdict (as the scan's ``stale``).
_STALE: Final = (
    f"problem IS NULL AND role = 'target' AND (source = 'ooni' "
    f"OR version IS DISTINCT FROM '{ANALYSIS_VERSION}' OR status IS NULL)"
)
# The columns of table m (probe.report.scan), in its order.
_COLUMNS: Final = ("uid", "asn", "network", "source", "t", "family", "run", "role", "status",
                   "method", "detail", "problem", "stale", "line")  # fmt: skip
_SCORED: Final = "struct<problem: string, status: string, method: string, detail: string>"


def session(master: str = LOCAL) -> SparkSession:
    """A Spark session on ``master``; a ``local`` one bound to loopback, without its UI."""
    builder = (
        SparkSession.builder.master(master)
        .appName("probe-report")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # SQL string literals taken as written, as DuckDB does: the shared regular expressions
        .config("spark.sql.parser.escapedStringLiterals", "true")
        .config("spark.sql.files.ignoreCorruptFiles", "true")
    )
    if master.startswith("local"):
        # The Python workers (verdict UDFs) run this interpreter, which has probe installed.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # never an outside interface
        builder = (
            builder.config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            # One shuffle partition a local core (200 by default: for a cluster): each is a
            # task, and a report runs dozens of queries of a few stages each, so on a small
            # folder per-task overhead was most of the time (8 partitions: ~25% slower).
            .config("spark.sql.shuffle.partitions", str(_cores(master)))
            # Local files are listed by the driver: past 32 paths Spark listed them in a
            # job of one task a file, pure overhead for a folder of small day files.
            .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "1000000")
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _cores(master: str) -> int:
    """The cores of a ``local``, ``local[N]`` or ``local[*]`` master (``local[N, F]`` too)."""
    inside = master.partition("[")[2].partition("]")[0].partition(",")[0].strip()
    if inside == "*":
        return os.cpu_count() or 1
    return int(inside) if inside.isdigit() and int(inside) > 0 else 1


class _Sql:
    """A Spark session as the aggregation's :class:`~probe.report.aggregate.Sql`."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.spark.sql(query).collect()]

    def table(self, name: str, query: str) -> None:
        self.spark.sql(query).cache().createOrReplaceTempView(name)


def build(
    paths: Sequence[str | os.PathLike[str]],
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: int | None = None,
    roles: Roles | None = None,
    spark: SparkSession | None = None,
    master: str = LOCAL,
) -> Report:
    """The report over ``paths`` as :func:`probe.report.engine.build` makes it, on ``spark``
    (None: the session running in this process, else a new one on ``master``, stopped when
    done)."""
    with _session(spark, master) as s, tempfile.TemporaryDirectory(prefix="probe-spark-") as tmp:
        return _build(s, paths, since, until, bucket, roles, Path(tmp))


@contextmanager
def _session(spark: SparkSession | None, master: str) -> Iterator[SparkSession]:
    spark = spark or SparkSession.getActiveSession()  # one already running in this process
    if spark is not None:
        yield spark
        return
    own = session(master)
    try:
        yield own
    finally:
        own.stop()


def _build(spark: SparkSession, paths: Sequence[str | os.PathLike[str]],
           since: datetime | None, until: datetime | None, bucket: int | None,
           roles: Roles | None, tmp: Path) -> Report:  # fmt: skip
    urls = [str(p) for p in paths if "://" in str(p)]
    files = _files(p for p in paths if "://" not in str(p))
    skipped: dict[str, int] = defaultdict(int)
    texts = [_literal(f) for f in files if not f.name.endswith((".parquet", *_DOCUMENTS))]
    texts += [u for u in urls if not u.endswith(".parquet")]
    unstaged = 0
    documents = [f for f in files if f.name.endswith(_DOCUMENTS)]
    if documents:
        unstaged = _documents(documents, tmp / "documents.jsonl", skipped)
        texts.append(_literal(tmp / "documents.jsonl"))
    parquet = [_literal(f) for f in files if f.name.endswith(".parquet")]
    parsed, staged = _lines(spark, texts, roles)
    for part in _parquet(spark, parquet + [u for u in urls if u.endswith(".parquet")], skipped):
        staged = staged.unionByName(part)
    lines = 0
    for problem, n in staged.groupBy("problem").count().collect():
        lines += n
        if problem is not None:
            skipped[problem] += n
    good = staged.where("problem IS NULL")
    valid = good.count()
    first = F.row_number().over(Window.partitionBy("uid").orderBy("stale"))
    unique = good.withColumn("n", first).where("n = 1").drop("n").persist()
    duplicates = valid - unique.count()
    scored, n_scored = _rescore(unique, skipped)
    parsed.unpersist()
    unique.unpersist()
    if since is not None:
        scored = scored.where(F.col("t") >= int(since.replace(tzinfo=UTC).timestamp()))
    if until is not None:
        scored = scored.where(F.col("t") < int(until.replace(tzinfo=UTC).timestamp()))
    scored.createOrReplaceTempView("m")
    read = Read(len(files) + len(urls), lines + unstaged, skipped, duplicates, n_scored)
    return report(_Sql(spark), read, bucket)


def _literal(path: Path) -> str:
    """``path`` as Spark (Hadoop) reads it literally: glob characters escaped."""
    return "".join("\\" + c if c in "[]{}*?\\" else c for c in str(path))


def _member(names: Sequence[str]) -> str:
    """SQL: the row's host (without a final dot) is one of ``names``."""
    names = [n for n in names if "'" not in n and "\\" not in n]  # no host name holds them
    if not names:
        return "false"
    return "TRIM(TRAILING '.' FROM host) IN (" + ", ".join(f"'{n}'" for n in names) + ")"


def _lines(spark: SparkSession, texts: list[str],
           roles: Roles | None) -> tuple[DataFrame, DataFrame]:  # fmt: skip
    """The rows of the text files (one per non-blank line), with the scan's columns: (the
    parsed rows, kept in memory until released; the rows with every problem named)."""
    if texts:
        spark.read.text(texts).withColumnRenamed("value", "line").createOrReplaceTempView("lines")
    else:
        spark.createDataFrame([], "line STRING").createOrReplaceTempView("lines")
    rows = spark.sql(_STAGED.format(
        schema=_SCHEMA, host=_HOST, family=_FAMILY, problem=_problem_sql(f"'{_ASK_OONI}'"),
        all_targets="true" if roles is None else "false",
        is_target=_member(_hosts(roles.targets)) if roles else "false",
        is_control=_member(_hosts(roles.controls)) if roles else "false",
    ))  # fmt: skip
    stale = F.expr(_STALE)
    asked = F.col("problem").eqNullSafe(_ASK_OONI)
    # Parsed once, kept narrow: a line only where Python still reads it.
    rows = (
        rows.withColumn("stale", stale)
        .withColumn("line", F.when(stale | asked, F.col("line")))
        .select(*_COLUMNS)
        .persist()
    )
    ooni_skip = F.udf(_ooni_skip, "string", useArrow=False)
    told = rows.where(asked).withColumn("problem", ooni_skip("line"))
    return rows, rows.where(~asked).unionByName(told.withColumn("line", F.lit(None).cast("string")))


def _parquet(spark: SparkSession, names: list[str], skipped: dict[str, int]) -> list[DataFrame]:
    """The rows of each ``probe export`` Parquet file: without their lines (~7 KB each), and
    the lines of the rows to re-score joined back."""
    out = []
    wanted = {*_COLUMNS, "version"} - {"problem", "stale"}
    for name in names:
        try:
            table = spark.read.parquet(name)
        except Exception as exc:  # Spark's errors have no common base; the file is at fault
            skipped[f"unreadable file ({type(exc).__name__})"] += 1
            continue
        if not wanted <= set(table.columns):
            skipped["Parquet file not written by probe export"] += 1
            continue
        rows = table.withColumn("problem", F.lit(None).cast("string")).withColumn(
            "stale", F.expr(_STALE)
        )
        lines = rows.where("stale").select("uid", "line").dropDuplicates(["uid"])
        narrow = rows.drop("line", "version")
        out.append(narrow.join(lines, "uid", "left").select(*_COLUMNS))
    return out


def _rescore(unique: DataFrame, skipped: dict[str, int]) -> tuple[DataFrame, int]:
    """The rows with the current rules' verdict on the stale ones (a Python UDF, the DuckDB
    engine's), kept in memory, and their number; the stale rows that cannot be scored are
    dropped and counted."""
    score = F.udf(_score, _SCORED, useArrow=False)
    fresh = unique.where("stale").withColumn("s", score("line")).select(
        *(F.col(f"s.{c}").alias(c) if c in ("problem", "status", "method", "detail")
          else c for c in _COLUMNS)
    ).persist()  # fmt: skip
    for problem, n in fresh.where("problem IS NOT NULL").groupBy("problem").count().collect():
        skipped[problem] += n
    kept = fresh.where("problem IS NULL").drop("line")
    scored = unique.where("NOT stale").drop("line").unionByName(kept).persist()
    n = scored.count()
    fresh.unpersist()
    return scored, n

"""The report's engine: de-duplicate, re-score and aggregate the rows in SQL.

:mod:`probe.report.scan` reads the files into table ``m`` (one narrow row per
line, OONI's included, every problem counted); here the rows are counted.

Re-scoring. The report re-scores old data with the current rules, but calling
the Python verdict on every row of a million-line archive is far too slow. So
a target row keeps its stored ``x_verdict`` when its ``x_analysis_version`` is
the current :data:`probe.verdict.ANALYSIS_VERSION` (the same rules wrote it,
so re-running them would give the same answer). Only the other rows (older
rules, no verdict, OONI's) keep their line through the scan, and only those
left after de-duplication go through :func:`probe.verdict.verdict`; with many
of them (a rules upgrade, an OONI archive) a pool of processes forked before
DuckDB starts its threads shares the work between the cores.

Aggregating. Duplicates (the same ``measurement_uid`` uploaded twice) are
dropped here; :mod:`probe.report.aggregate` then counts the rows with the SQL that
the Spark engine (:mod:`probe.report.spark`) runs too.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, Final

import duckdb

from probe import store
from probe.format.ooni import is_ooni, skip_reason
from probe.report.aggregate import Read, report
from probe.report.model import Report
from probe.report.scan import Roles, connect, one, stage
from probe.verdict import ANALYSIS_VERSION, summary_keys, verdict

__all__ = ["Duck", "build", "export_parquet"]

# Drop the unusable rows, and of two copies of a measurement_uid the one without the
# current verdict (duplicates are rare: only their uids go through the window).
_DEDUPLICATE: Final = """
DELETE FROM m WHERE problem IS NOT NULL OR rowid IN (
    SELECT rowid FROM m
    WHERE problem IS NULL AND uid IN (
        SELECT uid FROM m WHERE problem IS NULL GROUP BY uid HAVING count(*) > 1)
    QUALIFY row_number() OVER (PARTITION BY uid ORDER BY stale) > 1)
"""
#: Below this many rows to score, forking a pool costs more than it saves.
POOL_FROM: Final = 2000
#: Lines scored per batch (a few MB to a few tens of MB of lines in Python at a time).
RESCORE_BATCH: Final = 2000


class Duck:
    """A DuckDB connection as the aggregation's :class:`~probe.report.aggregate.Sql`."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        return self.con.execute(query).fetchall()

    def table(self, name: str, query: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {query}")


def _score(line: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(why skipped, or None; then the current rules' status, method, detail) of one line."""
    m = store.parse_line(line)
    if m is None:
        return store.INVALID_LINE, None, None, None
    if is_ooni(m):
        reason = skip_reason(m)
        if reason is not None:
            return reason, None, None, None
    keys = summary_keys(verdict(m))["x_verdict"]
    return None, keys["status"], keys["method"], keys["detail"]


@contextmanager
def _workers() -> Iterator[Pool | None]:
    """Worker processes for :func:`_score`, forked now, before DuckDB starts its threads
    (forking a process with running threads is unsafe); None with one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cores or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        yield None
        return
    pool = multiprocessing.get_context("fork").Pool(cores)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def _rescore(con: duckdb.DuckDBPyConnection, pool: Pool | None, skipped: dict[str, int]) -> None:
    """Score the stale rows of ``m`` with the current rules; drop (and count) the OONI rows
    that cannot be scored. OONI rows of the same ``evidence`` (what their verdict reads but for
    timings: :data:`probe.format.ooni.EVIDENCE_KEYS`) are one group scored once, from one of
    their lines; any other row is a group of its own. The lines go to Python a batch at a
    time: after a rules upgrade every row is stale, and all the lines at once would be
    gigabytes."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE groups AS
        SELECT row_number() OVER (ORDER BY g) AS i, g, one, evidence FROM (
            SELECT coalesce(evidence::VARCHAR, uid) AS g, any_value(evidence) AS evidence,
                   arg_min(rowid, rowid) FILTER (line IS NOT NULL) AS one
            FROM m WHERE stale GROUP BY g)
    """)  # fmt: skip
    con.execute("CREATE OR REPLACE TEMP TABLE scores (g VARCHAR, problem VARCHAR, "
                "status VARCHAR, method VARCHAR, detail VARCHAR)")  # fmt: skip
    (count,) = one(con, "SELECT count(*) FROM groups")
    lines_of = """
        SELECT g.g, coalesce(m.line, e.line, '') FROM groups g
        LEFT JOIN m ON m.rowid = g.one
        LEFT JOIN (SELECT evidence, any_value(line) AS line FROM evidence_lines GROUP BY ALL) e
          ON e.evidence = g.evidence AND g.one IS NULL
        WHERE g.i > $first AND g.i <= $last
    """
    if one(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'evidence_lines'")[0] == 0:
        con.execute("CREATE TEMP TABLE evidence_lines (evidence UBIGINT, line VARCHAR)")
    for first in range(0, count, RESCORE_BATCH):
        rows = con.execute(lines_of, {"first": first, "last": first + RESCORE_BATCH}).fetchall()
        lines = [line for _, line in rows]
        if pool is not None and count >= POOL_FROM:
            scores = pool.map(_score, lines, chunksize=max(1, len(lines) // 16))
        else:
            scores = [_score(line) for line in lines]
        columns = list(zip(*scores, strict=True))
        con.execute(
            "INSERT INTO scores SELECT unnest($g), unnest($problem), unnest($status), "
            "unnest($method), unnest($detail)",
            {"g": [g for g, _ in rows], "problem": list(columns[0]),
             "status": list(columns[1]), "method": list(columns[2]),
             "detail": list(columns[3])},
        )  # fmt: skip
    con.execute("""
        CREATE OR REPLACE TEMP TABLE fresh AS
        SELECT m.uid, s.problem, s.status, s.method, s.detail FROM m
        JOIN scores s ON s.g = coalesce(m.evidence::VARCHAR, m.uid) WHERE m.stale
    """)  # fmt: skip
    for reason, n in con.execute(
        "SELECT problem, count(*) FROM fresh WHERE problem IS NOT NULL GROUP BY ALL"
    ).fetchall():
        skipped[reason] += n
    con.execute("DELETE FROM m WHERE uid IN (SELECT uid FROM fresh WHERE problem IS NOT NULL)")
    con.execute(
        "UPDATE m SET status = f.status, method = f.method, detail = f.detail "
        "FROM fresh f WHERE m.uid = f.uid"
    )


def build(
    paths: Sequence[str | os.PathLike[str]],
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: int | None = None,
    roles: Roles | None = None,
) -> Report:
    """The report over the measurement files and folders ``paths`` (module docstring).

    ``since`` / ``until`` are naive UTC datetimes (inclusive / exclusive); ``bucket`` is
    seconds, or None to choose one from the data's span and run interval. ``roles``: the
    campaign's targets and controls, which classify OONI's rows (None: all are targets).
    """
    with tempfile.TemporaryDirectory(prefix="probe-report-") as spill:
        return _build(paths, since, until, bucket, spill, roles)


def _build(paths: Sequence[str | os.PathLike[str]], since: datetime | None,
           until: datetime | None, bucket: int | None, spill: str,
           roles: Roles | None) -> Report:  # fmt: skip
    with _workers() as pool:
        con = connect(spill=spill)
        staged = stage(con, paths, roles=roles)
        (valid,) = one(con, "SELECT count(*) FROM m WHERE problem IS NULL")
        con.execute(_DEDUPLICATE)
        (unique,) = one(con, "SELECT count(*) FROM m")
        _rescore(con, pool, staged.skipped)
    (scored,) = one(con, "SELECT count(*) FROM m")
    if since is not None or until is not None:
        con.execute("DELETE FROM m WHERE NOT (($since IS NULL OR t >= epoch($since::TIMESTAMP)) "
                    "AND ($until IS NULL OR t < epoch($until::TIMESTAMP)))",
                    {"since": since, "until": until})  # fmt: skip
    read = Read(staged.files, staged.lines, staged.skipped, valid - unique, scored)
    return report(Duck(con), read, bucket)


def export_parquet(
    paths: Sequence[str | os.PathLike[str]], out: Path
) -> tuple[int, dict[str, int]]:
    """Write the usable, de-duplicated rows (verdicts re-scored, raw lines kept for later
    re-scoring) to one zstd Parquet file; return (rows written, skipped by reason)."""
    # Every raw line is kept (~7 KB each: gigabytes for a large archive), so the table lives
    # in a database file DuckDB can page out, not in memory; next to the output, on the disk
    # the user chose for it (/tmp may be RAM).
    temporary = tempfile.TemporaryDirectory(prefix=".probe-export-", dir=out.resolve().parent)
    with _workers() as pool, temporary as tmp:
        con = connect(memory_limit="1GB", database=str(Path(tmp) / "export.duckdb"))
        staged = stage(con, paths, keep_lines=True)
        con.execute(_DEDUPLICATE)
        _rescore(con, pool, staged.skipped)
        (rows,) = one(con, "SELECT count(*) FROM m")
        # The verdict columns now hold the current rules' answer: store them as such. Not
        # sorted, and in small row groups (8192 rows, at most 64 MB): the writer holds a row
        # group in memory, and lines are 4 KB to hundreds of KB (files come in path order, so
        # by ASN and day anyway).
        con.execute(f"COPY (SELECT * EXCLUDE (stale, problem, evidence, file), CASE WHEN "
                    f"role = 'target' THEN '{ANALYSIS_VERSION}' END AS version FROM m) "
                    f"TO '{_quote(out)}' "
                    f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 8192, "
                    f"ROW_GROUP_SIZE_BYTES '64MB')")  # fmt: skip
        con.close()
    return int(rows), dict(staged.skipped)


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")

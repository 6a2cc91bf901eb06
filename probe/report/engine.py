"""The report's engine: DuckDB reads the measurement files and aggregates them in SQL.

Reading. DuckDB reads every ``.jsonl`` / ``.jsonl.gz`` line as text (in
parallel, decompressing itself), checks it is a JSON object and pulls the few
keys the report needs with one multi-path ``json_extract_string``. Working on
the raw line keeps the reader as tolerant as :mod:`probe.store` (whose
``iter_files`` picks the files): a torn line, another program's measurement
(``test_name`` not ``x_reachability``), an unknown ``x_format_version`` or a
missing key is counted under a reason and skipped, never fatal. A file DuckDB
cannot read at all (a truncated ``.gz``) fails the whole scan, so the scan is
then redone file by file and such files are counted. Parquet files written by
``probe export`` hold the same columns plus the raw line, and join the scan.

Re-scoring. The report re-scores old data with the current rules, but calling
the Python verdict on every row of a million-line archive is far too slow. So
a target row keeps its stored ``x_verdict`` when its ``x_analysis_version`` is
the current :data:`probe.verdict.ANALYSIS_VERSION` (the same rules wrote it,
so re-running them would give the same answer), and only the other rows (older
rules, or no verdict at all) go through :func:`probe.verdict.verdict`, called
from SQL as a Python function on that row's line. Control rows need no verdict.

Aggregating. Duplicates (the same ``measurement_uid`` uploaded twice) are
dropped, then SQL counts targets per ASN x domain family x time bucket, and
per run (``report_id``) for the sporadic statistics, which are the pure
functions of :mod:`probe.report.sporadic`. A domain family is the registrable
domain of the target (``pbs.twimg.com`` -> ``twimg.com``), plus :data:`ALL`.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import duckdb

from probe import store
from probe.report.model import ALL, METHODS, Cell, Report, Series, choose_bucket
from probe.report.sporadic import Sample, max_gap, sporadic
from probe.verdict import ANALYSIS_VERSION, summary_keys, verdict
from probe.verdict.observations import KNOWN_FORMAT_VERSIONS

__all__ = ["build", "export_parquet"]

#: (column, JSON path) of every key the report reads.
_KEYS: Final = (
    ("uid", "$.measurement_uid"),
    ("asn", "$.probe_asn"),
    ("network", "$.probe_network_name"),
    ("start_text", "$.measurement_start_time"),
    ("input", "$.input"),
    ("role", "$.annotations.x_role"),
    ("test_name", "$.test_name"),
    ("fmt", "$.x_format_version"),
    ("report_id", "$.report_id"),
    ("stored_status", "$.test_keys.x_verdict.status"),
    ("stored_method", "$.test_keys.x_verdict.method"),
    ("stored_detail", "$.test_keys.x_verdict.detail"),
    ("version", "$.test_keys.x_analysis_version"),
)
_LINES: Final = (
    "read_csv($files, columns={'line': 'VARCHAR'}, delim=chr(1), quote='', escape='', "
    "header=false, auto_detect=false, filename=true, max_line_size=16777216)"
)  # a JSON text never holds a raw control character, so chr(1) never splits a line
_STAGED: Final = """
WITH rows AS (
    SELECT line, valid, {columns}
    FROM (SELECT line, valid, json_extract_string(CASE WHEN valid THEN line END, {paths}) AS k
          FROM (SELECT line, json_valid(line) AS valid FROM {source} WHERE line IS NOT NULL))
    WHERE valid OR trim(line) <> ''  -- like probe.store: blank lines are no lines
)
SELECT uid, asn, network, try_strptime(start_text, '%Y-%m-%d %H:%M:%S') AS start,
       input, coalesce(nullif(report_id, ''), start_text) AS run, role, version,
       CASE
         WHEN NOT valid THEN 'torn or invalid JSON line'
         WHEN test_name IS NULL THEN 'not a measurement (no test_name)'
         WHEN test_name <> 'x_reachability' THEN 'other software: test_name ' || test_name
         WHEN fmt IS NULL OR fmt NOT IN {formats} THEN
           'unknown x_format_version ' || coalesce(fmt, '(none)')
         WHEN uid IS NULL OR asn IS NULL OR start IS NULL OR input IS NULL THEN
           'missing or unreadable base key'
         WHEN role IS NULL OR role NOT IN ('target', 'control') THEN 'unknown annotations.x_role'
       END AS problem,
       problem IS NULL AND role = 'target'
         AND (version IS DISTINCT FROM $version OR stored_status IS NULL) AS stale,
       CASE WHEN stale THEN rescore(line) END AS fresh,
       CASE WHEN stale THEN fresh['status'] ELSE stored_status END AS status,
       CASE WHEN stale THEN fresh['method'] ELSE stored_method END AS method,
       CASE WHEN stale THEN fresh['detail'] ELSE stored_detail END AS detail{line}
FROM rows
"""
_PARQUET: Final = """
SELECT * EXCLUDE (fresh{line}) REPLACE (
    CASE WHEN stale THEN fresh['status'] ELSE status END AS status,
    CASE WHEN stale THEN fresh['method'] ELSE method END AS method,
    CASE WHEN stale THEN fresh['detail'] ELSE detail END AS detail)
FROM (SELECT *, role = 'target' AND version IS DISTINCT FROM $version AS stale,
             CASE WHEN stale THEN rescore(line) END AS fresh
      FROM read_parquet($files))
"""
_FAMILY: Final = (
    "coalesce(nullif(regexp_extract(lower(regexp_extract(input, '^[a-zA-Z][a-zA-Z0-9+.-]*://"
    "([^/:?#]+)', 1)), '([^.]+\\.[^.]+)$', 1), ''), 'unknown')"
)
# One row per measurement_uid; of two copies, the one with the current verdict.
_UNIQUE: Final = (
    "SELECT * EXCLUDE (problem, fresh) FROM staged WHERE problem IS NULL "
    "QUALIFY row_number() OVER (PARTITION BY uid ORDER BY stale) = 1"
)


@dataclass(frozen=True, slots=True)
class _Staged:
    files: int
    lines: int
    skipped: dict[str, int]


def connect(memory_limit: str = "1GB") -> duckdb.DuckDBPyConnection:
    """A fresh in-memory database with the ``rescore`` function registered."""
    con = duckdb.connect(config={"memory_limit": memory_limit, "preserve_insertion_order": False})
    fresh = duckdb.struct_type({"status": "VARCHAR", "method": "VARCHAR", "detail": "VARCHAR"})
    con.create_function("rescore", _rescore, ["VARCHAR"], fresh)
    return con


def _rescore(line: str) -> dict[str, Any]:
    """The current rules' verdict on one measurement line (the SQL ``rescore``)."""
    keys = summary_keys(verdict(json.loads(line)))["x_verdict"]
    return {"status": keys["status"], "method": keys["method"], "detail": keys["detail"]}


def _stage(con: duckdb.DuckDBPyConnection, paths: Iterable[str | os.PathLike[str]],
           keep_lines: bool = False) -> _Staged:  # fmt: skip
    """Create table ``staged``: one row per non-blank line, with its problem (or none)."""
    files = [str(p) for p in store.iter_files(paths)]
    jsonl = [f for f in files if not f.endswith(".parquet")]
    parquet = [f for f in files if f.endswith(".parquet")]
    skipped: dict[str, int] = defaultdict(int)
    sql = _STAGED.format(
        source="{source}",
        paths="[" + ", ".join(f"'{path}'" for _, path in _KEYS) + "]",
        columns=", ".join(f"k[{i + 1}] AS {name}" for i, (name, _) in enumerate(_KEYS)),
        formats="(" + ", ".join(f"'{v}'" for v in sorted(KNOWN_FORMAT_VERSIONS)) + ")",
        line=", line" if keep_lines else "",
    )
    params = {"version": ANALYSIS_VERSION}
    from_lines = f"INSERT INTO staged {sql.format(source=_LINES)}"
    # The table's shape, from a scan of nothing.
    con.execute(f"CREATE OR REPLACE TEMP TABLE staged AS {sql.format(source=_LINES)} LIMIT 0",
                params | {"files": ["/dev/null"]})  # fmt: skip
    if jsonl:
        try:
            con.execute(from_lines, params | {"files": jsonl})
        except duckdb.Error:  # one unreadable file fails the scan: redo it file by file
            con.execute("DELETE FROM staged")
            for f in jsonl:
                try:
                    con.execute(from_lines, params | {"files": [f]})
                except duckdb.Error as exc:
                    skipped[f"unreadable file ({type(exc).__name__})"] += 1
    for f in parquet:
        body = _PARQUET.format(line="" if keep_lines else ", line")
        try:
            con.execute(f"INSERT INTO staged BY NAME {body}", params | {"files": [f]})
        except duckdb.Error as exc:
            skipped[f"unreadable file ({type(exc).__name__})"] += 1
    for reason, n in con.execute(
        "SELECT problem, count(*) FROM staged WHERE problem IS NOT NULL GROUP BY ALL"
    ).fetchall():
        skipped[reason] += n
    (lines,) = con.execute("SELECT count(*) FROM staged").fetchone() or (0,)
    return _Staged(len(files), int(lines), dict(skipped))


def build(
    paths: Sequence[str | os.PathLike[str]],
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: int | None = None,
) -> Report:
    """The report over the measurement files and folders ``paths`` (module docstring).

    ``since`` / ``until`` are naive UTC datetimes (inclusive / exclusive); ``bucket`` is
    seconds, or None to choose one from the data's span and run interval.
    """
    con = connect()
    staged = _stage(con, paths)
    con.execute(f"CREATE TEMP TABLE uniq AS {_UNIQUE}")
    con.execute(f"""
        CREATE TEMP TABLE m AS
        WITH families AS (SELECT input, {_FAMILY} AS family FROM (SELECT DISTINCT input FROM uniq))
        SELECT asn, role, status, method, detail, stale, epoch(start) AS t, run, family
        FROM uniq JOIN families USING (input)
        WHERE ($since IS NULL OR start >= $since) AND ($until IS NULL OR start < $until)
    """, {"since": since, "until": until})  # fmt: skip
    (valid, unique) = _one(con, "SELECT (SELECT count(*) FROM staged WHERE problem IS NULL), "
                           "(SELECT count(*) FROM uniq)")  # fmt: skip
    (kept, targets, controls, rescored, start, end) = _one(con, """
        SELECT count(*), count(*) FILTER (role = 'target'), count(*) FILTER (role = 'control'),
               count(*) FILTER (stale), min(t)::BIGINT, max(t)::BIGINT FROM m
    """)  # fmt: skip
    networks = dict(con.execute("""
        SELECT asn, coalesce(mode(network) FILTER (network <> ''), '') FROM uniq GROUP BY asn
    """).fetchall())  # fmt: skip
    if bucket is None:
        bucket = choose_bucket((end or 0) - (start or 0), _run_interval(con))
    con.execute("DELETE FROM m WHERE role <> 'target'")
    cells = _cells(con, bucket)
    series = _series(con, cells, networks)
    return Report(
        files=staged.files,
        lines=staged.lines,
        targets=targets,
        controls=controls,
        duplicates=valid - unique,
        rescored=rescored,
        filtered=unique - kept,
        skipped=staged.skipped,
        analysis_version=ANALYSIS_VERSION,
        bucket=bucket,
        start=start,
        end=end,
        cells=cells,
        series=series,
    )


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    row = con.execute(sql).fetchone()
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return tuple(row)


def _run_interval(con: duckdb.DuckDBPyConnection) -> float:
    """The typical time between two runs on one ASN (median over ASNs), in seconds."""
    spans = con.execute("""
        SELECT (max(t) - min(t)) / (count(DISTINCT run) - 1) FROM m
        WHERE role = 'target' GROUP BY asn HAVING count(DISTINCT run) > 1
    """).fetchall()  # fmt: skip
    return statistics.median(s for (s,) in spans) if spans else 0.0


def _blocked_by(pairs: dict[str, int]) -> dict[str, int]:
    return {m: pairs.get(m, 0) for m in METHODS} | {
        k: v for k, v in pairs.items() if k not in METHODS
    }


def _cells(con: duckdb.DuckDBPyConnection, bucket: int) -> tuple[Cell, ...]:
    rows = con.execute(f"""
        SELECT asn, coalesce(family, '{ALL}'), t::BIGINT // {bucket} * {bucket} AS b,
               count(*) AS measured,
               count(*) FILTER (status = 'ok'), count(*) FILTER (status = 'blocked'),
               count(*) FILTER (status = 'down'),
               count(*) FILTER (status IS NULL OR status NOT IN ('ok', 'blocked', 'down')),
               histogram(method) FILTER (status = 'blocked' AND method IS NOT NULL),
               mode(coalesce(detail, method)) FILTER (status = 'blocked')
        FROM m GROUP BY GROUPING SETS ((asn, family, b), (asn, b))
        ORDER BY 1, 2, 3
    """).fetchall()  # fmt: skip
    return tuple(
        Cell(asn, family, b, n, ok, bl, dn, inc, _blocked_by(dict(hist or {})), detail)
        for asn, family, b, n, ok, bl, dn, inc, hist, detail in rows
    )


def _series(con: duckdb.DuckDBPyConnection, cells: Sequence[Cell],
            networks: dict[str, str]) -> tuple[Series, ...]:  # fmt: skip
    totals = con.execute(f"""
        SELECT asn, coalesce(family, '{ALL}'), count(*),
               count(*) FILTER (status = 'ok'), count(*) FILTER (status = 'blocked'),
               count(*) FILTER (status = 'down'),
               count(*) FILTER (status IS NULL OR status NOT IN ('ok', 'blocked', 'down')),
               histogram(method) FILTER (status = 'blocked' AND method IS NOT NULL),
               mode(coalesce(detail, method)) FILTER (status = 'blocked')
        FROM m GROUP BY GROUPING SETS ((asn, family), (asn)) ORDER BY 1, 2
    """).fetchall()  # fmt: skip
    # One state per run: the majority of the family's targets in that run.
    runs = con.execute(f"""
        SELECT asn, coalesce(family, '{ALL}'), min(t),
               CASE WHEN count(*) FILTER (status = 'blocked') > 0
                     AND count(*) FILTER (status = 'blocked') >= count(*) FILTER (status = 'ok')
                    THEN 'blocked'
                    WHEN count(*) FILTER (status = 'ok') > 0 THEN 'open' ELSE 'unknown' END
        FROM m GROUP BY GROUPING SETS ((asn, family, run), (asn, run)) ORDER BY 1, 2, 3
    """).fetchall()  # fmt: skip
    samples: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for asn, family, t, state in runs:
        samples[asn, family].append(Sample(t, state))
    by_key: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for c in cells:
        by_key[c.asn, c.family].append(c)
    out = []
    for asn, family, n, ok, bl, dn, inc, hist, detail in totals:
        s = samples[asn, family]
        buckets = by_key[asn, family]
        stats = sporadic(
            s,
            [(c.bucket, c.blocked_share or 0.0, c.ok + c.blocked) for c in buckets],
            [(c.bucket, c.detail) for c in buckets],
            max_gap(s),
        )
        out.append(Series(asn, networks.get(asn, ""), family, n, ok, bl, dn, inc,
                          _blocked_by(dict(hist or {})), detail, stats))  # fmt: skip
    return tuple(out)


def export_parquet(
    paths: Sequence[str | os.PathLike[str]], out: Path
) -> tuple[int, dict[str, int]]:
    """Write the usable, de-duplicated rows (verdicts re-scored, raw lines kept for later
    re-scoring) to one zstd Parquet file; return (rows written, skipped by reason)."""
    con = connect(memory_limit="2GB")
    staged = _stage(con, paths, keep_lines=True)
    con.execute(f"CREATE TEMP TABLE uniq AS {_UNIQUE}")
    # The verdict columns now hold the current rules' answer: store them as such.
    con.execute("UPDATE uniq SET version = $v WHERE role = 'target'", {"v": ANALYSIS_VERSION})
    (rows,) = _one(con, "SELECT count(*) FROM uniq")
    con.execute(f"COPY (SELECT * EXCLUDE (stale) FROM uniq ORDER BY asn, start) TO "
                f"'{_quote(out)}' (FORMAT parquet, COMPRESSION zstd)")  # fmt: skip
    return int(rows), staged.skipped


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")

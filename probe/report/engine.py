"""The report's engine: DuckDB reads the measurement files and aggregates them in SQL.

Reading. DuckDB reads every non-blank ``.jsonl`` / ``.jsonl.gz`` line (in
parallel, decompressing itself) with ``read_json_objects``, which parses it
once and gives its text, or NULL when it is no JSON (torn, not UTF-8), and
pulls the few keys the report needs with one multi-path
``json_extract_string``. Working on the raw line keeps the reader as tolerant
as :mod:`probe.store` (whose ``iter_files`` picks the files): CRLF line ends,
a torn line, a line that is no UTF-8, another program's measurement,
an unknown ``x_format_version`` or a missing key is counted under a reason and
skipped, never fatal. A file DuckDB cannot read at all (a truncated ``.gz``)
fails the whole scan, so the scan is then redone file by file and such files
are counted. Parquet files written by ``probe export`` hold the same columns
plus the raw line, and join the scan.

OONI. A row is ours (source ``probe``) when it has an ``x_format_version``, our
``test_name`` or our ``software_name``, as :func:`probe.verdict.ooni.is_ooni`
decides; any other is OONI's (source ``ooni``). OONI ``web_connectivity`` rows
are targets (OONI has no ``x_role``) named by the md5 of their line (OONI has
no ``measurement_uid``), always scored (they carry no verdict of ours); other
OONI tests are skipped with :func:`probe.verdict.ooni.skip_reason`. OONI's
``.json`` files are whole documents (pretty-printed, or the API's JSON-in-JSON
wrapper): Python reads them with :func:`probe.verdict.ooni.parse_text` and
stages each measurement as one compact line for the same scan. Every
aggregate is per source too, so OONI's picture of an ISP stands beside ours.

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
dropped, then one SQL query counts targets per ASN x source x domain family x time
bucket and per series (``GROUPING SETS``), and another turns each run
(``report_id``) into one state per family. The statistics
over runs (duty cycle, switches, open windows: see :mod:`probe.report.sporadic`
for their definitions) are window functions over those states; Python only
runs the CUSUM and the method changes over the (few) buckets. A domain family
is the registrable domain of the target (``pbs.twimg.com`` -> ``twimg.com``),
plus :data:`ALL`.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import statistics
import tempfile
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, Final

import duckdb

from probe import store
from probe.report.model import ALL, METHODS, Cell, Report, Series, choose_bucket
from probe.report.sporadic import Sporadic, Window, cusum, method_changes
from probe.verdict import ANALYSIS_VERSION, summary_keys, verdict
from probe.verdict.observations import KNOWN_FORMAT_VERSIONS
from probe.verdict.ooni import is_ooni, parse_text, skip_reason

__all__ = ["RunStats", "build", "connect", "export_parquet", "run_statistics"]

#: (column, JSON path) of every key the report reads.
_KEYS: Final = (
    ("uid", "$.measurement_uid"),
    ("asn", "$.probe_asn"),
    ("network", "$.probe_network_name"),
    ("start_text", "$.measurement_start_time"),
    ("input", "$.input"),
    ("role", "$.annotations.x_role"),
    ("test_name", "$.test_name"),
    ("software", "$.software_name"),
    ("fmt", "$.x_format_version"),
    ("report_id", "$.report_id"),
    ("stored_status", "$.test_keys.x_verdict.status"),
    ("stored_method", "$.test_keys.x_verdict.method"),
    ("stored_detail", "$.test_keys.x_verdict.detail"),
    ("version", "$.test_keys.x_analysis_version"),
)
# Two readers give (line, k: the keys, NULL when the line is no JSON) per non-blank line.
# The fast one parses a line once: read as text, a line ending in "}" goes straight to
# json_extract_string (which fails the whole query on a line that is no JSON), any other
# (torn, CRLF, trailing blanks) is checked first. A CASE evaluates only the branch a row
# takes (OR evaluates both sides); the extraction is written once, or DuckDB would hoist the
# common expression out of the CASE and run it on every line.
_FAST: Final = """
SELECT line, json_extract_string(
    CASE WHEN CASE WHEN suffix(line, '}}') THEN true ELSE json_valid(line) END THEN line END,
    {paths}) AS k
FROM read_csv($files, columns={{'line': 'VARCHAR'}}, delim=chr(1), quote='', escape='',
              header=false, auto_detect=false, new_line='\\n', strict_mode=false,
              max_line_size=16777216)  -- JSON never holds a raw chr(1): it never splits a line
WHERE CASE WHEN suffix(line, '}}') THEN true ELSE trim(line) <> '' END
"""
# The safe one parses a line twice but takes anything: NULL for a torn or non-UTF-8 line.
_SAFE: Final = """
SELECT json AS line, json_extract_string(json, {paths}) AS k
FROM read_json_objects($files, format='newline_delimited', ignore_errors=true)
"""
_FAMILY: Final = (
    "coalesce(nullif(regexp_extract(lower(regexp_extract(input, '^[a-zA-Z][a-zA-Z0-9+.-]*://"
    "([^/:?#]+)', 1)), '([^.]+\\.[^.]+)$', 1), ''), 'unknown')"
)
_STAGED: Final = """
WITH keyed AS (
    SELECT line, k IS NOT NULL AS valid, {columns},
           CASE WHEN fmt IS NOT NULL OR test_name = 'x_reachability' OR software = 'probe'
                THEN 'probe' ELSE 'ooni' END AS source  -- as probe.verdict.ooni.is_ooni
    FROM ({source})
), rows AS (  -- OONI has neither x_role (every web_connectivity row is a target) nor uid
    SELECT * REPLACE (CASE WHEN source = 'ooni' AND uid IS NULL THEN md5(trim(line)) ELSE uid
                           END AS uid,
                      CASE WHEN source = 'ooni' THEN coalesce(role, 'target') ELSE role END AS role)
    FROM keyed
)
SELECT uid, asn, network, source,
       epoch(try_strptime(start_text, '%Y-%m-%d %H:%M:%S'))::BIGINT AS t, {family} AS family,
       coalesce(nullif(report_id, ''), start_text) AS run, role,
       stored_status AS status, stored_method AS method, stored_detail AS detail,
       CASE
         WHEN NOT valid THEN 'torn or invalid JSON line'
         WHEN test_name IS NULL THEN 'not a measurement (no test_name)'
         WHEN source = 'probe' AND test_name <> 'x_reachability' THEN
           'other software: test_name ' || test_name
         WHEN source = 'probe' AND (fmt IS NULL OR fmt NOT IN {formats}) THEN
           'unknown x_format_version ' || coalesce(fmt, '(none)')
         WHEN source = 'ooni' AND test_name <> 'web_connectivity' THEN ooni_skip(line)
         WHEN uid IS NULL OR asn IS NULL OR t IS NULL OR input IS NULL THEN
           'missing or unreadable base key'
         WHEN role NOT IN ('target', 'control') THEN 'unknown annotations.x_role'
       END AS problem,
       problem IS NULL AND role = 'target'
         AND (source = 'ooni' OR version IS DISTINCT FROM $version OR status IS NULL) AS stale,
       CASE WHEN stale OR $keep THEN line END AS line
FROM rows
"""
# A Parquet file's rows without their lines (~7 KB each: reading them all would cost
# more than the rest of the report), then the lines of the rows that need them.
_PARQUET: Final = """
SELECT * EXCLUDE (line, version), NULL AS problem,
       role = 'target' AND (version IS DISTINCT FROM $version OR status IS NULL) AS stale,
       NULL::VARCHAR AS line
FROM read_parquet($files)
"""
_PARQUET_LINES: Final = """
UPDATE m SET line = p.line FROM read_parquet($files) p
WHERE (m.stale OR $keep) AND m.line IS NULL AND p.uid = m.uid
  AND ($keep OR (p.role = 'target' AND (p.version IS DISTINCT FROM $version OR p.status IS NULL)))
"""
# Drop the unusable rows, and of two copies of a measurement_uid the one without the
# current verdict (duplicates are rare: only their uids go through the window).
_DEDUPLICATE: Final = """
DELETE FROM m WHERE problem IS NOT NULL OR rowid IN (
    SELECT rowid FROM m
    WHERE problem IS NULL AND uid IN (
        SELECT uid FROM m WHERE problem IS NULL GROUP BY uid HAVING count(*) > 1)
    QUALIFY row_number() OVER (PARTITION BY uid ORDER BY stale) > 1)
"""
# The per-family counts of every cell (per bucket ``b``) and series (``b`` NULL), in one scan.
_COUNTS: Final = f"""
SELECT asn, source, coalesce(family, '{ALL}') AS fam, t // $bucket * $bucket AS b, count(*),
       count(*) FILTER (status = 'ok'), count(*) FILTER (status = 'blocked'),
       count(*) FILTER (status = 'down'),
       count(*) FILTER (status IS NULL OR status NOT IN ('ok', 'blocked', 'down')),
       {", ".join(f"count(*) FILTER (status = 'blocked' AND method = '{m}')" for m in METHODS)},
       histogram(method) FILTER (status = 'blocked' AND method NOT IN {METHODS!r}),
       mode(coalesce(detail, method)) FILTER (status = 'blocked')
FROM m GROUP BY GROUPING SETS ((asn, source, family, b), (asn, source, b), (asn, source, family),
                               (asn, source))
ORDER BY asn, source, fam, b
"""
# One state per run and family: the majority of the family's targets in that run.
_RUNS: Final = f"""
CREATE OR REPLACE TEMP TABLE runs AS
SELECT asn, source, coalesce(family, '{ALL}') AS family, min(t)::DOUBLE AS t,
       CASE WHEN count(*) FILTER (status = 'blocked') > 0
             AND count(*) FILTER (status = 'blocked') >= count(*) FILTER (status = 'ok')
            THEN 'blocked'
            WHEN count(*) FILTER (status = 'ok') > 0 THEN 'open' ELSE 'unknown' END AS state
FROM m GROUP BY GROUPING SETS ((asn, source, family, run), (asn, source, run))
"""
# The statistics over the runs of each series (definitions in probe.report.sporadic).
_RUN_STATS: Final = """
CREATE OR REPLACE TEMP TABLE decided AS
WITH gaps AS (
    SELECT asn, source, family, t - lag(t) OVER (PARTITION BY asn, source, family ORDER BY t) AS gap
    FROM runs
), limits AS (  -- max_gap: 4x the median interval between runs, at least 1 s
    SELECT asn, source, family,
           greatest(1.0, coalesce(4 * median(gap) FILTER (gap > 0), 1.0)) AS cap
    FROM gaps GROUP BY ALL
), d AS (
    SELECT asn, source, family, t, state,
           row_number() OVER w AS i, lag(t) OVER w AS prev_t, lead(t) OVER w AS next_t,
           lag(state) OVER w AS prev_state
    FROM runs WHERE state <> 'unknown'
    WINDOW w AS (PARTITION BY asn, source, family ORDER BY t, state)
)
SELECT d.*,  -- the time each decided run owns: half the (capped) gap to each neighbour
       least(coalesce(t - prev_t, 0), cap) / 2 AS before,  -- (least() skips a NULL)
       least(coalesce(next_t - t, 0), cap) / 2 AS after,
       sum((state IS DISTINCT FROM prev_state)::INT) OVER (
           PARTITION BY asn, source, family ORDER BY i ROWS UNBOUNDED PRECEDING) AS stretch
FROM d JOIN limits USING (asn, source, family)
"""
_SERIES_STATS: Final = """
SELECT asn, source, family, count(*),
       CASE WHEN sum(before + after) > 0
            THEN coalesce(sum(before + after) FILTER (state = 'blocked'), 0) / sum(before + after)
            ELSE avg((state = 'blocked')::INT) END,
       count(*) FILTER (state <> prev_state)
FROM decided GROUP BY ALL
"""
_WINDOWS: Final = """
SELECT asn, source, family, min(t) - arg_min(before, i), max(t) + arg_max(after, i),
       min(t), max(t), count(*), bool_or(prev_t IS NULL OR next_t IS NULL)
FROM decided WHERE state = 'open' GROUP BY asn, source, family, stretch ORDER BY ALL
"""
#: Below this many rows to score, forking a pool costs more than it saves.
POOL_FROM: Final = 2000

Key = tuple[str, str, str]  # (asn, source, family)
#: DuckDB's errors that mean a file is bad (malformed, truncated, not UTF-8); any other
#: (out of memory, ...) is the machine's problem and must not pass for a skipped file.
_BAD_INPUT: Final = (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException)


@dataclass(frozen=True, slots=True)
class RunStats:
    """The statistics of one series computed in SQL over its runs."""

    decided: int
    duty_cycle: float | None
    switches: int
    windows: tuple[Window, ...]


@dataclass(frozen=True, slots=True)
class _Staged:
    files: int
    lines: int
    skipped: dict[str, int]


def connect(memory_limit: str = "1GB", database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A fresh database (in memory unless a file is named) with ``ooni_skip`` registered."""
    con = duckdb.connect(database, config={"memory_limit": memory_limit,
                                           "preserve_insertion_order": False})  # fmt: skip
    con.create_function("ooni_skip", _ooni_skip, ["VARCHAR"], "VARCHAR")
    return con


def _ooni_skip(line: str) -> str:
    """Why an OONI measurement of another test is skipped (the SQL ``ooni_skip``)."""
    return skip_reason(json.loads(line)) or "OONI measurement not scored"


def _score(line: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(why skipped, or None; then the current rules' status, method, detail) of one line."""
    m = json.loads(line)
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


def _files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """What :func:`probe.store.iter_files` picks, plus the whole-document ``.json(.gz)``
    files in the folders (OONI's)."""
    paths = list(paths)
    found = list(store.iter_files(paths))
    for folder in (Path(p) for p in paths if Path(p).is_dir()):
        found += sorted(x for x in folder.rglob("*") if x.name.endswith((".json", ".json.gz")))
    return found


def _documents(files: Sequence[Path], out: Path, skipped: dict[str, int]) -> int:
    """Write each measurement of the whole-document files as one compact line in ``out``;
    return how many documents were skipped (counted in ``skipped`` by reason)."""
    count = 0
    with open(out, "w", encoding="utf-8") as f:
        for path in files:
            try:
                data = path.read_bytes()
                text = (gzip.decompress(data) if path.name.endswith(".gz") else data).decode()
            except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
                skipped[f"unreadable file ({type(exc).__name__})"] += 1
                continue
            found, problems = parse_text(text)
            for m in found:
                f.write(json.dumps(m, ensure_ascii=False, separators=(",", ":")) + "\n")
            for reason in problems:
                skipped[reason] += 1
            count += len(problems)
    return count


def _stage(con: duckdb.DuckDBPyConnection, paths: Iterable[str | os.PathLike[str]],
           keep_lines: bool = False) -> _Staged:  # fmt: skip
    """Create table ``m``: one row per non-blank line, with its problem (or none)."""
    files = _files(paths)
    parquet = [str(f) for f in files if f.name.endswith(".parquet")]
    documents = [f for f in files if f.name.endswith((".json", ".json.gz"))]
    jsonl = [str(f) for f in files if str(f) not in parquet and f not in documents]
    skipped: dict[str, int] = defaultdict(int)
    unstaged = 0  # documents skipped before the scan
    paths_sql = "[" + ", ".join(f"'{path}'" for _, path in _KEYS) + "]"
    fast, safe = (
        "INSERT INTO m " + _STAGED.format(
            source=reader.format(paths=paths_sql),
            columns=", ".join(f"k[{i + 1}] AS {name}" for i, (name, _) in enumerate(_KEYS)),
            formats="(" + ", ".join(f"'{v}'" for v in sorted(KNOWN_FORMAT_VERSIONS)) + ")",
            family=_FAMILY,
        )
        for reader in (_FAST, _SAFE)
    )  # fmt: skip
    params = {"version": ANALYSIS_VERSION, "keep": keep_lines}
    # The table's shape, from a scan of nothing.
    con.execute(f"CREATE OR REPLACE TEMP TABLE m AS {safe.removeprefix('INSERT INTO m ')} LIMIT 0",
                params | {"files": ["/dev/null"]})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="probe-report-") as tmp:
        if documents:
            staged_docs = Path(tmp) / "documents.jsonl"
            unstaged = _documents(documents, staged_docs, skipped)
            jsonl.append(str(staged_docs))
        if jsonl:
            _insert(con, (fast, safe), jsonl, params, skipped)
    for f in parquet:
        try:
            con.execute(f"INSERT INTO m BY NAME {_PARQUET}",
                        {"version": ANALYSIS_VERSION, "files": [f]})  # fmt: skip
            (stale,) = _one(con, "SELECT count(*) FROM m WHERE stale AND line IS NULL")
            if stale or keep_lines:
                con.execute(_PARQUET_LINES, params | {"files": [f]})
        except _BAD_INPUT as exc:
            skipped[f"unreadable file ({type(exc).__name__})"] += 1
    for reason, n in con.execute(
        "SELECT problem, count(*) FROM m WHERE problem IS NOT NULL GROUP BY ALL"
    ).fetchall():
        skipped[reason] += n
    (lines,) = _one(con, "SELECT count(*) FROM m")
    return _Staged(len(files), int(lines) + unstaged, skipped)


def _insert(con: duckdb.DuckDBPyConnection, readers: tuple[str, str], files: list[str],
            params: dict[str, Any], skipped: dict[str, int]) -> None:  # fmt: skip
    """Insert the rows of ``files`` with the fast reader. One bad file fails a whole query
    (a truncated .gz; for the fast reader also a line that is no UTF-8, or ends in "}" and
    is no JSON): the failing half is split again until the file is found, which the safe
    reader then reads, or which is counted as unreadable."""
    fast, safe = readers
    try:
        con.execute(fast, params | {"files": files})
        return
    except _BAD_INPUT:
        if len(files) == 1:
            try:
                con.execute(safe, params | {"files": files})
            except _BAD_INPUT as exc:
                skipped[f"unreadable file ({type(exc).__name__})"] += 1
            return
    half = len(files) // 2
    _insert(con, readers, files[:half], params, skipped)
    _insert(con, readers, files[half:], params, skipped)


def _rescore(con: duckdb.DuckDBPyConnection, pool: Pool | None, skipped: dict[str, int]) -> None:
    """Score the stale rows of ``m`` with the current rules; drop (and count) the OONI rows
    that cannot be scored."""
    rows = con.execute("SELECT uid, line FROM m WHERE stale").fetchall()
    if not rows:
        return
    lines = [line for _, line in rows]
    if pool is not None and len(rows) >= POOL_FROM:
        scores = pool.map(_score, lines, chunksize=max(1, len(lines) // 64))
    else:
        scores = [_score(line) for line in lines]
    columns = list(zip(*scores, strict=True))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE fresh AS SELECT unnest($uid) AS uid, unnest($problem) AS "
        "problem, unnest($status) AS status, unnest($method) AS method, unnest($detail) AS detail",
        {"uid": [uid for uid, _ in rows], "problem": list(columns[0]), "status": list(columns[1]),
         "method": list(columns[2]), "detail": list(columns[3])},
    )  # fmt: skip
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
) -> Report:
    """The report over the measurement files and folders ``paths`` (module docstring).

    ``since`` / ``until`` are naive UTC datetimes (inclusive / exclusive); ``bucket`` is
    seconds, or None to choose one from the data's span and run interval.
    """
    with _workers() as pool:
        con = connect()
        staged = _stage(con, paths)
        (valid,) = _one(con, "SELECT count(*) FROM m WHERE problem IS NULL")
        con.execute(_DEDUPLICATE)
        (unique,) = _one(con, "SELECT count(*) FROM m")
        _rescore(con, pool, staged.skipped)
    (scored,) = _one(con, "SELECT count(*) FROM m")
    if since is not None or until is not None:
        con.execute("DELETE FROM m WHERE NOT (($since IS NULL OR t >= epoch($since)) "
                    "AND ($until IS NULL OR t < epoch($until)))",
                    {"since": since, "until": until})  # fmt: skip
    counts = con.execute("""
        SELECT source, count(*) FILTER (role = 'target'), count(*) FILTER (role = 'control'),
               count(*) FILTER (stale), min(t), max(t) FROM m GROUP BY source ORDER BY source
    """).fetchall()  # fmt: skip
    sources = {source: targets for source, targets, *_ in counts if targets}
    starts = [row[4] for row in counts]
    networks = dict(con.execute("""
        SELECT asn, coalesce(mode(network) FILTER (network <> ''), '') FROM m GROUP BY asn
    """).fetchall())  # fmt: skip
    con.execute("DELETE FROM m WHERE role <> 'target'")
    start, end = (min(starts), max(row[5] for row in counts)) if starts else (None, None)
    if bucket is None:
        bucket = choose_bucket((end or 0) - (start or 0), _run_interval(con))
    cells, totals = _cells(con, bucket)
    series = _series(con, cells, totals, networks)
    return Report(
        files=staged.files,
        lines=staged.lines,
        targets=sum(row[1] for row in counts),
        controls=sum(row[2] for row in counts),
        duplicates=valid - unique,
        rescored=sum(row[3] for row in counts),
        filtered=scored - sum(row[1] + row[2] for row in counts),
        skipped=dict(staged.skipped),
        analysis_version=ANALYSIS_VERSION,
        bucket=bucket,
        start=start,
        end=end,
        cells=cells,
        series=series,
        sources=sources,
    )


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    row = con.execute(sql).fetchone()
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return tuple(row)


def _run_interval(con: duckdb.DuckDBPyConnection) -> float:
    """The typical time between two runs on one ASN (median over ASNs), in seconds."""
    spans = con.execute("""
        SELECT (max(t) - min(t)) / (count(DISTINCT run) - 1) FROM m
        GROUP BY asn, source HAVING count(DISTINCT run) > 1
    """).fetchall()  # fmt: skip
    return statistics.median(s for (s,) in spans) if spans else 0.0


def _blocked_by(counts: Sequence[int], other: dict[str, int] | None) -> dict[str, int]:
    return dict(zip(METHODS, counts, strict=True)) | (other or {})


def _cells(con: duckdb.DuckDBPyConnection, bucket: int) -> tuple[tuple[Cell, ...], list[Any]]:
    """The cells, and the rows of per-series totals (``b`` NULL) of the same query."""
    rows = con.execute(_COUNTS, {"bucket": bucket}).fetchall()
    k = len(METHODS)
    cells = tuple(
        Cell(asn, source, family, b, n, ok, bl, dn, inc, _blocked_by(r[:k], r[k]), r[k + 1])
        for asn, source, family, b, n, ok, bl, dn, inc, *r in rows
        if b is not None
    )
    return cells, [row for row in rows if row[3] is None]


def run_statistics(con: duckdb.DuckDBPyConnection) -> dict[Key, RunStats]:
    """The statistics of every series of table ``runs`` (asn, source, family, t, state)."""
    con.execute(_RUN_STATS)
    windows: dict[Key, list[Window]] = defaultdict(list)
    for asn, source, family, *window in con.execute(_WINDOWS).fetchall():
        windows[asn, source, family].append(Window(*window))
    return {
        (asn, source, family): RunStats(n, duty, switches, tuple(windows[asn, source, family]))
        for asn, source, family, n, duty, switches in con.execute(_SERIES_STATS).fetchall()
    }


def _series(con: duckdb.DuckDBPyConnection, cells: Sequence[Cell], totals: Sequence[Any],
            networks: dict[str, str]) -> tuple[Series, ...]:  # fmt: skip
    con.execute(_RUNS)
    stats = run_statistics(con)
    by_key: dict[Key, list[Cell]] = defaultdict(list)
    for c in cells:
        by_key[c.asn, c.source, c.family].append(c)
    out = []
    k = len(METHODS)
    none = RunStats(0, None, 0, ())
    for asn, source, family, _, n, ok, bl, dn, inc, *r in totals:
        run = stats.get((asn, source, family), none)
        buckets = by_key[asn, source, family]
        sporadic = Sporadic(
            run.decided, run.duty_cycle, run.switches, run.windows,
            cusum([(c.bucket, c.blocked_share or 0.0, c.ok + c.blocked) for c in buckets]),
            method_changes([(c.bucket, c.detail) for c in buckets]),
        )  # fmt: skip
        out.append(Series(asn, source, networks.get(asn, ""), family, n, ok, bl, dn, inc,
                          _blocked_by(r[:k], r[k]), r[k + 1], sporadic))  # fmt: skip
    return tuple(out)


def export_parquet(
    paths: Sequence[str | os.PathLike[str]], out: Path
) -> tuple[int, dict[str, int]]:
    """Write the usable, de-duplicated rows (verdicts re-scored, raw lines kept for later
    re-scoring) to one zstd Parquet file; return (rows written, skipped by reason)."""
    # Every raw line is kept (~7 KB each: gigabytes for a large archive), so the table lives
    # in a database file DuckDB can page out, not in memory.
    with _workers() as pool, tempfile.TemporaryDirectory(prefix="probe-export-") as tmp:
        con = connect(memory_limit="1GB", database=str(Path(tmp) / "export.duckdb"))
        staged = _stage(con, paths, keep_lines=True)
        con.execute(_DEDUPLICATE)
        _rescore(con, pool, staged.skipped)
        (rows,) = _one(con, "SELECT count(*) FROM m")
        # The verdict columns now hold the current rules' answer: store them as such. Not
        # sorted, and in small row groups: the writer holds a row group in memory, and the
        # lines are ~7 KB each (files come in path order, so by ASN and day anyway).
        con.execute(f"COPY (SELECT * EXCLUDE (stale, problem), CASE WHEN role = 'target' THEN "
                    f"'{ANALYSIS_VERSION}' END AS version FROM m) TO '{_quote(out)}' "
                    f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 8192)")  # fmt: skip
        con.close()
    return int(rows), dict(staged.skipped)


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")

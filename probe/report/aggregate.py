"""The report's aggregation, written once in SQL that DuckDB and Spark SQL both run.

An engine (:mod:`probe.report.engine` on DuckDB, :mod:`probe.report.spark` on Spark)
reads the files into table ``m`` (one narrow row per measurement, de-duplicated and
scored: :mod:`probe.report.scan` says what each column holds), then hands this module
an :class:`Sql`: something that runs a query and makes a temporary table. Every query here
is in the dialect both engines speak (``FILTER (WHERE ...)``, ``GROUPING SETS``,
``GROUP BY ALL``, ``min_by``, ``median``, ``::`` casts; integers formatted in, never
engine-specific parameters), so the two reports cannot drift apart.

Counts per ASN x source x domain family x time bucket and per series come from one
``GROUPING SETS`` query; the blocked rows' methods and details from a second one (both
engines' ``mode`` break ties arbitrarily, so the most common detail is chosen here: the
largest count, then the first name). Each run (``report_id``) becomes one state per family;
the statistics over runs (duty cycle, switches, open windows: see
:mod:`probe.report.sporadic` for their definitions) are window functions over those states;
Python only runs the CUSUM and the method changes over the (few) buckets. Only target rows
are aggregated; controls are counted.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from probe.format.vocab import Role, Status
from probe.report.model import ALL, METHODS, Cell, Report, Series, choose_bucket
from probe.report.sporadic import Sporadic, Window, cusum, method_changes
from probe.verdict import ANALYSIS_VERSION

__all__ = ["Read", "RunStats", "Sql", "report", "run_statistics"]

# The grouping sets of every aggregate: per bucket ``b`` (cells) and over the period (series).
_SETS: Final = "GROUPING SETS (({k}, family, b), ({k}, b), ({k}, family), ({k}))"
# Targets with their bucket (integer arithmetic on whole seconds: exact in both engines).
_TARGETS: Final = f"""
(SELECT *, CAST(floor(t / {{bucket}}) AS BIGINT) * {{bucket}} AS b FROM m
 WHERE role = '{Role.TARGET}')
"""
# The counts of every cell (``b`` set) and series (``b`` NULL), in one scan.
_COUNTS: Final = f"""
SELECT asn, source, coalesce(family, '{ALL}') AS fam, b, count(*),
       count(*) FILTER (WHERE status = '{Status.OK}'),
       count(*) FILTER (WHERE status = '{Status.BLOCKED}'),
       count(*) FILTER (WHERE status = '{Status.DOWN}'),
       count(*) FILTER (WHERE status IS NULL
                        OR status NOT IN ('{Status.OK}', '{Status.BLOCKED}', '{Status.DOWN}'))
FROM {_TARGETS} AS x GROUP BY {_SETS.format(k="asn, source")}
ORDER BY asn, source, fam, b
"""
# The blocked rows of every cell and series by method and detail (a method stands for a
# missing detail).
_BLOCKED: Final = f"""
SELECT asn, source, coalesce(family, '{ALL}') AS fam, b, method, d, count(*)
FROM (SELECT *, coalesce(detail, method) AS d FROM {_TARGETS} AS x
      WHERE status = '{Status.BLOCKED}') AS y
GROUP BY {_SETS.format(k="asn, source, method, d")}
"""
# Per source: targets, controls, re-scored targets, first and last start.
_SOURCES: Final = """
SELECT source, count(*) FILTER (WHERE role = 'target'), count(*) FILTER (WHERE role = 'control'),
       count(*) FILTER (WHERE stale), min(t), max(t) FROM m GROUP BY source ORDER BY source
"""
_NETWORKS: Final = "SELECT asn, network, count(*) FROM m GROUP BY asn, network"
# The typical time between two runs on one ASN, per ASN.
_INTERVALS: Final = """
SELECT (max(t) - min(t)) / (count(DISTINCT run) - 1) FROM m WHERE role = 'target'
GROUP BY asn, source HAVING count(DISTINCT run) > 1
"""
# One state per run and family: the majority of the family's targets in that run.
_RUNS: Final = f"""
SELECT asn, source, coalesce(family, '{ALL}') AS family, min(t)::DOUBLE AS t,
       CASE WHEN count(*) FILTER (WHERE status = '{Status.BLOCKED}') > 0
             AND count(*) FILTER (WHERE status = '{Status.BLOCKED}')
                 >= count(*) FILTER (WHERE status = '{Status.OK}')
            THEN 'blocked'
            WHEN count(*) FILTER (WHERE status = '{Status.OK}') > 0 THEN 'open'
            ELSE 'unknown' END AS state
FROM m WHERE role = '{Role.TARGET}'
GROUP BY GROUPING SETS ((asn, source, family, run), (asn, source, run))
"""
# The statistics over the runs of each series (definitions in probe.report.sporadic).
_DECIDED: Final = """
WITH gaps AS (
    SELECT asn, source, family, t - lag(t) OVER (PARTITION BY asn, source, family ORDER BY t) AS gap
    FROM runs
), limits AS (  -- max_gap: 4x the median interval between runs, at least 1 s
    SELECT asn, source, family,
           greatest(1.0, coalesce(4 * median(gap) FILTER (WHERE gap > 0), 1.0)) AS cap
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
            THEN coalesce(sum(before + after) FILTER (WHERE state = 'blocked'), 0)
                 / sum(before + after)
            ELSE avg((state = 'blocked')::INT) END,
       -- the duty cycle's 95% margin (sporadic.py): each switch's midpoint is off by an error
       -- uniform in +-h (h: the half-gap the run after it owns before it), variance h^2/3
       CASE WHEN sum(before + after) > 0
            THEN 2 * sqrt(coalesce(sum(before * before) FILTER (WHERE state <> prev_state), 0) / 3)
                 / sum(before + after) END,
       count(*) FILTER (WHERE state <> prev_state)
FROM decided GROUP BY ALL
"""
_WINDOWS: Final = """
SELECT asn, source, family, min(t) - min_by(before, i), max(t) + max_by(after, i),
       min(t), max(t), count(*), bool_or(prev_t IS NULL OR next_t IS NULL)
FROM decided WHERE state = 'open' GROUP BY asn, source, family, stretch ORDER BY ALL
"""

Key = tuple[str, str, str]  # (asn, source, family)
Row = tuple[Any, ...]


class Sql(Protocol):
    """An engine's connection: :meth:`rows` runs a query, :meth:`table` keeps a query's
    result as a temporary table (read more than once)."""

    def rows(self, query: str) -> list[Row]: ...

    def table(self, name: str, query: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Read:
    """What an engine read before aggregating (the counts :class:`Report` shows)."""

    files: int
    lines: int
    skipped: Mapping[str, int]
    duplicates: int  # valid rows dropped as copies of a measurement_uid
    scored: int  # unique rows left after re-scoring (before --since / --until)


@dataclass(frozen=True, slots=True)
class RunStats:
    """The statistics of one series computed in SQL over its runs."""

    decided: int
    duty_cycle: float | None
    duty_margin: float | None
    switches: int
    windows: tuple[Window, ...]


def report(sql: Sql, read: Read, bucket: int | None) -> Report:
    """The report over table ``m`` (module docstring); ``bucket`` None: chosen from the
    data's span and run interval."""
    counts = sql.rows(_SOURCES)
    start = min((row[4] for row in counts), default=None)
    end = max((row[5] for row in counts), default=None)
    if bucket is None:
        bucket = choose_bucket((end or 0) - (start or 0), _run_interval(sql))
    cells, totals = _cells(sql, bucket)
    targets = sum(row[1] for row in counts)
    controls = sum(row[2] for row in counts)
    return Report(
        files=read.files,
        lines=read.lines,
        targets=targets,
        controls=controls,
        duplicates=read.duplicates,
        rescored=sum(row[3] for row in counts),
        filtered=read.scored - targets - controls,
        skipped=dict(read.skipped),
        analysis_version=ANALYSIS_VERSION,
        bucket=bucket,
        start=start,
        end=end,
        cells=cells,
        series=_series(sql, cells, totals, _networks(sql)),
        sources={source: n for source, n, *_ in counts if n},
    )


def _run_interval(sql: Sql) -> float:
    """The typical time between two runs on one ASN (median over ASNs), in seconds."""
    spans = sql.rows(_INTERVALS)
    return statistics.median(s for (s,) in spans) if spans else 0.0


def _networks(sql: Sql) -> dict[str, str]:
    """Each ASN's most common non-empty network name (ties: the first name), or ''."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for asn, network, n in sql.rows(_NETWORKS):
        seen[asn][network or ""] += n
    return {asn: _most_common((k, n) for k, n in c.items() if k) or "" for asn, c in seen.items()}


def _most_common(counts: Iterable[tuple[str, int]]) -> str | None:
    """The name of the largest of (name, count) pairs, the first name on a tie; None: none."""
    return min(counts, key=lambda item: (-item[1], item[0]), default=(None, 0))[0]


def _blocked(sql: Sql, bucket: int) -> dict[tuple[Any, ...], tuple[dict[str, int], str | None]]:
    """Per (asn, source, family, bucket or None): the blocked counts by method (every one of
    METHODS, then any other by name) and the most common detail."""
    methods: dict[tuple[Any, ...], Counter[str]] = defaultdict(Counter)
    details: dict[tuple[Any, ...], Counter[str]] = defaultdict(Counter)
    for asn, source, family, b, method, detail, n in sql.rows(_BLOCKED.format(bucket=bucket)):
        key = (asn, source, family, b)
        if method is not None:
            methods[key][method] += n
        if detail is not None:
            details[key][detail] += n
    return {
        key: (
            {m: methods[key].get(m, 0) for m in METHODS}
            | {m: n for m, n in sorted(methods[key].items()) if m not in METHODS},
            _most_common(details[key].items()),
        )
        for key in methods.keys() | details.keys()
    }


def _cells(sql: Sql, bucket: int) -> tuple[tuple[Cell, ...], list[Row]]:
    """The cells, and the per-series totals (``b`` NULL, with their blocked breakdown)."""
    blocked = _blocked(sql, bucket)
    nothing: tuple[dict[str, int], None] = (dict.fromkeys(METHODS, 0), None)
    rows = [(*row, *blocked.get(tuple(row[:4]), nothing))
            for row in sql.rows(_COUNTS.format(bucket=bucket))]  # fmt: skip
    cells = tuple(Cell(*row) for row in rows if row[3] is not None)
    return cells, [row for row in rows if row[3] is None]


def run_statistics(sql: Sql) -> dict[Key, RunStats]:
    """The statistics of every series of table ``runs`` (asn, source, family, t, state)."""
    sql.table("decided", _DECIDED)
    windows: dict[Key, list[Window]] = defaultdict(list)
    for asn, source, family, *window in sql.rows(_WINDOWS):
        windows[asn, source, family].append(Window(*window))
    return {
        (asn, source, family): RunStats(
            n, duty, margin, switches, tuple(windows[asn, source, family])
        )
        for asn, source, family, n, duty, margin, switches in sql.rows(_SERIES_STATS)
    }


def _series(sql: Sql, cells: Sequence[Cell], totals: Sequence[Row],
            networks: dict[str, str]) -> tuple[Series, ...]:  # fmt: skip
    sql.table("runs", _RUNS)
    stats = run_statistics(sql)
    by_key: dict[Key, list[Cell]] = defaultdict(list)
    for c in cells:
        by_key[c.asn, c.source, c.family].append(c)
    out = []
    none = RunStats(0, None, None, 0, ())
    for asn, source, family, _, n, ok, bl, dn, inc, blocked_by, detail in totals:
        run = stats.get((asn, source, family), none)
        buckets = by_key[asn, source, family]
        sporadic = Sporadic(
            run.decided, run.duty_cycle, run.switches, run.windows,
            cusum([(c.bucket, c.blocked_share or 0.0, c.ok + c.blocked) for c in buckets]),
            method_changes([(c.bucket, c.detail) for c in buckets]),
            run.duty_margin,
        )  # fmt: skip
        out.append(Series(asn, source, networks.get(asn, ""), family, n, ok, bl, dn, inc,
                          blocked_by, detail, sporadic))  # fmt: skip
    return tuple(out)

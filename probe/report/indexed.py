"""Reading the write-time index (:mod:`probe.index`) instead of the raw lines.

A day file whose index matches it (this version's header; its last row ends where the file
ends; every line indexed, or known as blank or no JSON: a torn one) gives its rows to table
``m`` from the index alone: a narrow CSV row instead of a line of kilobytes of JSON. Any
other file (no index: another volunteer's older files, OONI's; an index behind its file; a
line the index could not read) is read raw by :mod:`probe.report.scan`, whole, as before.
A target row of an index whose verdict is from older rules (or missing) is stale: only its
line is read from the day file, at the offset the index gives, for
:mod:`probe.report.engine` to re-score.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import duckdb

from probe import index, store
from probe.format.vocab import Role
from probe.verdict import ANALYSIS_VERSION

__all__ = ["stage"]

_TYPES: Final = {name: "VARCHAR" for name in index.COLUMNS} | {
    "time": "DOUBLE", "line_start": "BIGINT", "line_bytes": "BIGINT"}  # fmt: skip
_READ: Final = """
CREATE OR REPLACE TEMP TABLE ix AS
SELECT filename, uid, asn, network, time, family, role, report_id, status, method, detail,
       analysis_version, problem, line_start, line_bytes
FROM read_csv($files, header=true, columns=$types, auto_detect=false, delim=',', quote='"',
              escape='"', filename=true, ignore_errors=true, max_line_size=1048576)
"""
# Per index: where its last row says its line ends, and whether a line went unindexed.
_ENDS: Final = """
SELECT filename, max(line_start + line_bytes), count(*) FILTER (uid IS NULL AND problem IS NULL)
FROM ix GROUP BY filename
"""
_GLOB: Final = re.compile(r"[\[?*]")
_STALE: Final = (
    f"role = '{Role.TARGET}' AND (analysis_version IS DISTINCT FROM $version OR status IS NULL)"
)
_INSERT: Final = f"""
INSERT INTO m BY NAME
SELECT uid, asn, network, 'probe' AS source, floor(time)::BIGINT AS t, family,
       coalesce(nullif(report_id, ''),
                strftime(to_timestamp(floor(time)), '%Y-%m-%d %H:%M:%S')) AS run, role,
       status, method, detail,
       CASE WHEN problem IS NOT NULL THEN problem
            WHEN role IS NULL OR role NOT IN {tuple(map(str, Role))}
            THEN 'unknown annotations.x_role' END AS problem,
       problem IS NULL AND {_STALE} AS stale, NULL::VARCHAR AS line
FROM ix WHERE problem IS DISTINCT FROM '{index.BLANK}'
"""


def _candidates(files: Sequence[Path]) -> tuple[dict[str, tuple[Path, int]], list[Path]]:
    """(index name -> (its day file, the day file's uncompressed size)), and the files without
    a usable index (two forms of one day share an index: both are read raw; a name DuckDB
    would read as a glob pattern is read raw too)."""
    indexes = {f: index.index_of(f) for f in files if f.name.endswith((".jsonl", ".jsonl.gz"))}
    shared = Counter(indexes.values())
    found, raw = {}, []
    for f in files:
        ix = indexes.get(f)
        size = index.data_size(f) if ix is not None else None
        if (ix is None or size is None or shared[ix] > 1 or _GLOB.search(str(ix))
                or not index.header_ok(ix)):  # fmt: skip
            raw.append(f)
        else:
            found[str(ix)] = (f, size)
    return found, raw


def _lines(con: duckdb.DuckDBPyConnection, found: dict[str, tuple[Path, int]]) -> None:
    """The lines of the stale rows, read at their offsets, into ``m``."""
    where: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    query = f"SELECT filename, uid, line_start, line_bytes FROM ix WHERE {_STALE} ORDER BY ALL"
    for name, uid, start, length in con.execute(query, {"version": ANALYSIS_VERSION}).fetchall():
        where[name].append((uid, start, length))
    if not where:
        return
    uids, lines = [], []
    for name, rows in where.items():
        with store.open_file(found[name][0]) as f:
            for uid, start, length in rows:
                f.seek(start)  # forward only (sorted): a .gz is inflated once
                uids.append(uid)
                lines.append(f.read(length).decode("utf-8", "replace"))
    con.execute("UPDATE m SET line = s.line FROM (SELECT unnest($uid) AS uid, "
                "unnest($line) AS line) s WHERE m.uid = s.uid AND m.stale",
                {"uid": uids, "line": lines})  # fmt: skip


def stage(con: duckdb.DuckDBPyConnection, files: Sequence[Path], bad_input: Any) -> list[Path]:
    """Insert into ``m`` the rows of every file whose index matches it; return the others,
    for the raw reader. ``bad_input``: DuckDB's errors that mean a file is bad (an index
    DuckDB cannot read sends every file to the raw reader)."""
    found, raw = _candidates(files)
    if not found:
        return raw
    try:
        con.execute(_READ, {"files": sorted(found), "types": _TYPES})
    except bad_input:
        return list(files)
    stale = set(found)
    for name, end, unindexed in con.execute(_ENDS).fetchall():
        _, size = found[name]
        if not unindexed and end % (1 << 32) == size % (1 << 32):
            stale.discard(name)
    if stale:  # behind its file, or naming a line it could not read: the file is read raw
        raw += [found.pop(name)[0] for name in sorted(stale)]
        con.execute("DELETE FROM ix WHERE filename IN (SELECT unnest($names))",
                    {"names": sorted(stale)})  # fmt: skip
    con.execute(_INSERT, {"version": ANALYSIS_VERSION})
    _lines(con, found)
    con.execute("DROP TABLE ix")
    return raw

"""Reading: measurement files into DuckDB table ``m``, one narrow row per line.

DuckDB reads the lines of the ``.jsonl`` / ``.jsonl.gz`` files itself, in
parallel (small ``.gz`` files inflated by ISA-L: :mod:`probe.report.gunzip`),
pulls the few keys the report needs with one multi-path ``json_extract_string`` over
the whole line and works on the raw line, so the reader is
as tolerant as :mod:`probe.store` (whose ``iter_files`` picks the files): CRLF
line ends, a torn line, a line that is no UTF-8, another program's measurement,
an unknown ``x_format_version`` or a missing key is counted under a reason and
skipped, never fatal. Two readers (``_FAST``, ``_SAFE`` below): the fast one
parses each line once but fails a whole query on some bad lines, so the files
of a failing query are halved until the bad file is found, which the safe one
reads (with DuckDB's own inflater if ISA-L served it); a file neither can read
(a truncated ``.gz``) is counted as unreadable. Only DuckDB's bad-input errors
(and, for a file ISA-L served, its file system's) count so: running out of
memory is an error.
Parquet files written by ``probe export`` hold the same columns plus the raw
line, and join the scan (their lines are read only for rows to re-score).

OONI. A row is ours (source ``probe``) when it has an ``x_format_version``, our
``test_name`` or our ``software_name``, as :func:`probe.format.ooni.is_ooni`
decides; any other is OONI's (source ``ooni``). OONI has no ``x_role``: an OONI
``web_connectivity`` row is a target when its input's host is one of the
campaign's targets, a control when it is one of its control sites, and any other
input is skipped ("not a target nor a control of the campaign"), so example.org
never counts as X; without lists (:class:`Roles` None) every row is a target. Rows
are named by their report, start time, network, length and evidence
(:data:`probe.format.ooni.EVIDENCE_KEYS`; by the md5 of their line without a report id: OONI
has no ``measurement_uid``; a report measures an input once), always scored (they carry
no verdict of ours), a group of lines alike (the same evidence) once; other
OONI tests are skipped with :func:`probe.format.ooni.skip_reason`. OONI's
``.json`` files are whole documents (pretty-printed, or the API's JSON-in-JSON
wrapper): Python reads them with :func:`probe.format.ooni.parse_text` and
stages each measurement as one compact line for the same scan. Every
aggregate is per source too, so OONI's picture of an ISP stands beside ours.

Each row holds the keys the report counts by, its ``problem`` (why it is skipped,
or NULL) and whether it is ``stale`` (needs the current rules' verdict: then it
keeps its ``line``). :mod:`probe.report.engine` counts the rows.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb

from probe import store
from probe.format.ooni import EVIDENCE_KEYS, TIMINGS, parse_text, skip_reason
from probe.format.vocab import KNOWN_FORMAT_VERSIONS
from probe.index import GENERIC_SLD, HOST_PATTERN
from probe.report import gunzip, indexed
from probe.verdict import ANALYSIS_VERSION

__all__ = ["OTHER_INPUT", "Roles", "Staged", "connect", "one", "reader_sql", "stage"]

#: Whole-document files (read by Python, staged as lines): OONI's ``.json`` and ``.jsonc``.
_DOCUMENTS: Final = (".json", ".json.gz", ".jsonc")
#: Why an OONI row whose input is neither a target nor a control site is skipped.
OTHER_INPUT: Final = "OONI input not a target nor a control of the campaign"

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
# The fast one reads each line as text and parses it once, whole (lines promise no key order:
# docs/format.md): a line ending in "}" goes straight to the extraction, any other (torn,
# CRLF, trailing blanks) is checked with json_valid first. A CASE evaluates only the branch a
# row takes (OR evaluates both sides); try() turns the error of a line torn just after a "}"
# into NULL (DuckDB then redoes only that vector of 2048 lines row by row). A line that is no
# UTF-8 still fails the whole query. JSON never holds a raw chr(1), so the delimiter never
# splits a line. The buffer is set: its default, 16x the longest line, is 256 MB per thread
# for a .gz (out of memory on a 4-core Pi, and half the time over .gz goes to filling such
# buffers).
_FAST: Final = """
SELECT line, filename, try(json_extract_string(
    CASE WHEN CASE WHEN suffix(line, '}}') THEN true ELSE json_valid(line) END THEN line END,
    {paths})) AS k
FROM read_csv($files, columns={{'line': 'VARCHAR'}}, delim=chr(1), quote='', escape='',
              header=false, auto_detect=false, new_line='\\n', strict_mode=false,
              max_line_size=16777216, buffer_size=16777216, filename=true)
WHERE CASE WHEN suffix(line, '}}') THEN true ELSE trim(line, ' ' || chr(9) || chr(13)) <> '' END
"""
# The safe one parses a line twice but takes anything: NULL for a torn or non-UTF-8 line.
_SAFE: Final = """
SELECT json::VARCHAR AS line, filename, json_extract_string(json, {paths}) AS k
FROM read_json_objects($files, format='newline_delimited', ignore_errors=true, filename=true)
"""
# The registrable domain of the URL's host, as :func:`probe.index.family` (its patterns);
# written in the SQL Spark runs too (probe.report.spark; backslashes taken literally).
_HOST: Final = f"lower(regexp_extract(input, '{HOST_PATTERN}', 1))"
_FAMILY: Final = f"""CASE
    WHEN host = '' OR host IS NULL THEN 'unknown'
    WHEN left(host, 1) = '[' OR regexp_extract(host, '^[0-9.]+$', 0) <> '' THEN host
    WHEN regexp_extract(host, '[^.]\\.({"|".join(GENERIC_SLD)})\\.[a-z][a-z]$', 0) <> ''
      THEN regexp_extract(host, '([^.]+\\.[^.]+\\.[^.]+)$', 1)
    ELSE coalesce(nullif(regexp_extract(host, '([^.]+\\.[^.]+)$', 1), ''), host) END"""
# Why a row is no measurement to count (NULL: it is one), in SQL both engines run
# (probe.report.spark); ``ooni_skip`` says why for another OONI test.
_PROBLEM: Final = """CASE
         WHEN NOT valid THEN '{invalid}'
         WHEN test_name IS NULL THEN 'not a measurement (no test_name)'
         WHEN source = 'probe' AND test_name <> 'x_reachability' THEN
           'other software: test_name ' || test_name
         WHEN source = 'probe' AND (fmt IS NULL OR fmt NOT IN {formats}) THEN
           'unknown x_format_version ' || coalesce(fmt, '(none)')
         WHEN source = 'ooni' AND test_name <> 'web_connectivity' THEN {ooni_skip}
         WHEN uid IS NULL OR asn IS NULL OR t IS NULL OR input IS NULL THEN
           'missing or unreadable base key'
         WHEN role = 'other' THEN '{other}'
         WHEN role IS NULL OR role NOT IN ('target', 'control') THEN 'unknown annotations.x_role'
       END"""


def _problem_sql(ooni_skip: str) -> str:
    """The ``problem`` column's expression (:data:`_PROBLEM`)."""
    return _PROBLEM.format(
        invalid=store.INVALID_LINE,
        formats=_sql_set(KNOWN_FORMAT_VERSIONS),
        other=OTHER_INPUT,
        ooni_skip=ooni_skip,
    )


_STAGED: Final = """
WITH keyed AS (
    SELECT line, filename, ev, k IS NOT NULL AS valid, {columns},
           CASE WHEN fmt IS NOT NULL OR test_name = 'x_reachability' OR software = 'probe'
                THEN 'probe' ELSE 'ooni' END AS source  -- as probe.format.ooni.is_ooni
    FROM ({source})
), hosted AS (
    SELECT *, {host} AS host,
           CASE WHEN source = 'ooni'  -- what its verdict reads, without timings
                THEN hash(ev[:-2], regexp_replace(ev[-1], '{timings}', '', 'g')) END AS evidence
    FROM keyed
), rows AS (  -- OONI has neither x_role (its input's host says: Roles) nor uid
    SELECT * REPLACE (CASE WHEN source <> 'ooni' OR uid IS NOT NULL THEN uid
                           WHEN coalesce(report_id, '') = '' THEN md5(trim(line))
                           ELSE md5(concat(evidence, chr(1), report_id, chr(1), start_text,
                                           chr(1), asn, chr(1), network, chr(1), length(line)))
                           END AS uid,
                      CASE WHEN source <> 'ooni' OR role IS NOT NULL THEN role
                           WHEN $targets IS NULL THEN 'target'
                           WHEN list_contains($targets, rtrim(host, '.')) THEN 'target'
                           WHEN list_contains($controls, rtrim(host, '.')) THEN 'control'
                           ELSE 'other' END AS role)
    FROM hosted
)
SELECT uid, asn, network, source,
       epoch(try_strptime(start_text, '%Y-%m-%d %H:%M:%S'))::BIGINT AS t, {family} AS family,
       coalesce(nullif(report_id, ''), start_text) AS run, role,
       stored_status AS status, stored_method AS method, stored_detail AS detail,
       {problem} AS problem,
       problem IS NULL AND role = 'target'
         AND (source = 'ooni' OR version IS DISTINCT FROM $version OR status IS NULL) AS stale,
       CASE WHEN (stale AND source <> 'ooni') OR $keep THEN line END AS line,
       CASE WHEN stale AND source = 'ooni' THEN evidence END AS evidence,
       CASE WHEN stale AND source = 'ooni' THEN filename END AS file
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
#: DuckDB's errors that mean a file is bad (malformed, truncated, not UTF-8); any other
#: (out of memory, ...) is the machine's problem and must not pass for a skipped file.
_BAD_INPUT: Final = (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException)


def reader_sql(reader: str) -> str:
    """A reader (``_FAST``, ``_SAFE``) as SQL: (line, k) per non-blank line of ``$files``."""
    paths = [path for _, path in _KEYS] + [f"$.{key}" for key in EVIDENCE_KEYS]
    return (
        f"SELECT * REPLACE (k[:{len(_KEYS)}] AS k), k[{len(_KEYS) + 1}:] AS ev FROM ("
        + reader.format(paths="[" + ", ".join(f"'{path}'" for path in paths) + "]")
        + ")"
    )


def _sql_set(values: Iterable[str]) -> str:
    """A SQL list of string literals, for ``IN``."""
    return "(" + ", ".join(f"'{v}'" for v in sorted(values)) + ")"


@dataclass(frozen=True, slots=True)
class Roles:
    """The campaign's target and control host names, which classify OONI's rows."""

    targets: tuple[str, ...]
    controls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Staged:
    """What :func:`stage` read: files, non-blank lines, and what it skipped, by reason."""

    files: int
    lines: int
    skipped: dict[str, int]


def connect(memory_limit: str = "1GB", database: str = ":memory:",
            spill: str | None = None) -> duckdb.DuckDBPyConnection:  # fmt: skip
    """A fresh database (in memory unless a file is named) with ``ooni_skip`` registered.

    ``spill`` is the folder DuckDB writes to when the memory limit is reached; without one an
    in-memory database spills into ``./.tmp``, which fails where the working folder is not
    writable (cron's ``/``) and is left behind if the process is killed.
    """
    where = {} if spill is None else {"temp_directory": spill}
    con = duckdb.connect(database, config={"memory_limit": memory_limit,
                                           "preserve_insertion_order": False, **where})  # fmt: skip
    con.create_function("ooni_skip", _ooni_skip, ["VARCHAR"], "VARCHAR")
    gunzip.register(con)
    return con


def _hosts(names: Iterable[str]) -> list[str]:
    """Each name as an input's host may spell it: as configured (ASCII) and, for an IDN,
    in Unicode (``xn--d1acpjx3f.xn--p1ai`` and ``яндекс.рф``)."""
    out = []
    for name in names:
        out.append(name.lower().rstrip("."))
        with contextlib.suppress(UnicodeError):  # not ASCII, or not valid IDNA
            out.append(out[-1].encode("ascii").decode("idna"))
    return sorted(set(out))


def _ooni_skip(line: str) -> str:
    """Why an OONI measurement of another test is skipped (the SQL ``ooni_skip``)."""
    m = store.parse_line(line)
    if m is None:
        return store.INVALID_LINE
    return skip_reason(m) or "OONI measurement not scored"


def _files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """What :func:`probe.store.iter_files` picks, plus the whole-document ``.json(.gz)``
    and ``.jsonc`` (JSON with ``//`` comment lines, as in OONI's test data) files in the
    folders (OONI's)."""
    paths = list(paths)
    found = list(store.iter_files(paths))
    for folder in (Path(p) for p in paths if Path(p).is_dir()):
        found += sorted(x for x in folder.rglob("*") if x.name.endswith(_DOCUMENTS))
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
            except (*store.READ_ERRORS, UnicodeDecodeError) as exc:
                skipped[f"unreadable file ({type(exc).__name__})"] += 1
                continue
            found, problems = parse_text(text)
            for m in found:
                f.write(json.dumps(m, separators=(",", ":")) + "\n")  # ASCII: "\ud800" too
            for reason in problems:
                skipped[reason] += 1
            count += len(problems)
    return count


def _literal(path: Path) -> str:
    """``path`` as DuckDB reads it literally: it expands glob characters even in a list of
    files (``a[1].jsonl`` would read ``a1.jsonl``), so each is put in a class of its own."""
    return re.sub(r"([\[?*])", r"[\1]", str(path))


def stage(con: duckdb.DuckDBPyConnection, paths: Iterable[str | os.PathLike[str]],
          keep_lines: bool = False, roles: Roles | None = None) -> Staged:  # fmt: skip
    """Create table ``m``: one row per non-blank line, with its problem (or none).

    ``roles`` classifies OONI's rows by their input (module docstring); None: all targets.
    """
    files = _files(paths)
    parquet = [_literal(f) for f in files if f.name.endswith(".parquet")]
    documents = [f for f in files if f.name.endswith(_DOCUMENTS)]
    jsonl = [f for f in files if not f.name.endswith((".parquet", *_DOCUMENTS))]
    skipped: dict[str, int] = defaultdict(int)
    unstaged = 0  # documents skipped before the scan
    fast, safe = (
        "INSERT INTO m " + _STAGED.format(
            source=reader_sql(reader),
            columns=", ".join(f"k[{i + 1}] AS {name}" for i, (name, _) in enumerate(_KEYS)),
            family=_FAMILY,
            host=_HOST,
            problem=_problem_sql("ooni_skip(line)"),
            timings=TIMINGS,
        )
        for reader in (_FAST, _SAFE)
    )  # fmt: skip
    params = {
        "version": ANALYSIS_VERSION,
        "keep": keep_lines,
        "targets": None if roles is None else _hosts(roles.targets),
        "controls": None if roles is None else _hosts(roles.controls),
    }
    # The table's shape, from a scan of nothing.
    con.execute(f"CREATE OR REPLACE TEMP TABLE m AS {safe.removeprefix('INSERT INTO m ')} LIMIT 0",
                params | {"files": ["/dev/null"]})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="probe-report-") as tmp:
        if not keep_lines:  # files with an index matching them are read from it
            jsonl = indexed.stage(con, jsonl, _BAD_INPUT)
        if documents:
            staged_docs = Path(tmp) / "documents.jsonl"
            unstaged = _documents(documents, staged_docs, skipped)
            jsonl.append(staged_docs)
        if jsonl:
            _insert(con, (fast, safe), jsonl, params, skipped)
            _evidence_lines(con, (fast, safe), params)
    readable = []
    for f in parquet:
        try:
            con.execute(f"INSERT INTO m BY NAME {_PARQUET}",
                        {"version": ANALYSIS_VERSION, "files": [f]})  # fmt: skip
            readable.append(f)
        except _BAD_INPUT as exc:
            skipped[f"unreadable file ({type(exc).__name__})"] += 1
        except duckdb.BinderException:  # a Parquet file without our columns
            skipped["Parquet file not written by probe export"] += 1
    lineless = "SELECT count(*) FROM m WHERE stale AND line IS NULL"
    if readable and (keep_lines or one(con, lineless)[0]):  # the lines of rows to re-score
        lines = {"version": ANALYSIS_VERSION, "keep": keep_lines, "files": readable}
        con.execute(_PARQUET_LINES, lines)
    for reason, n in con.execute(
        "SELECT problem, count(*) FROM m WHERE problem IS NOT NULL GROUP BY ALL"
    ).fetchall():
        skipped[reason] += n
    (lines,) = one(con, "SELECT count(*) FROM m")
    return Staged(len(files), int(lines) + unstaged, skipped)


def _insert(con: duckdb.DuckDBPyConnection, readers: tuple[str, str], files: list[Path],
            params: dict[str, Any], skipped: dict[str, int],
            serve: bool = True) -> None:  # fmt: skip
    """Insert the rows of ``files`` with the fast reader, small ``.gz`` files inflated by
    ISA-L (:mod:`probe.report.gunzip`) when ``serve``. One bad file fails a whole query (a
    truncated .gz; for the fast reader also a line that is no UTF-8): the failing half is
    split again until the file is found, which DuckDB's own inflater then reads if ISA-L
    served it, else the safe reader, or which is counted as unreadable."""
    fast, safe = readers
    names = _names(files, serve)
    served = any(n.startswith(f"{gunzip.PROTOCOL}://") for n in names)
    try:
        con.execute(fast, params | {"files": names})
        return
    except duckdb.Error as exc:
        if not _bad_input(exc, served):
            raise
    if len(files) == 1:
        if served:
            _insert(con, readers, files, params, skipped, serve=False)
            return
        try:
            con.execute(safe, params | {"files": _names(files, serve=False)})
        except duckdb.Error as exc:
            if not _bad_input(exc, served=False):
                raise
            skipped[f"unreadable file ({type(exc).__name__})"] += 1
        return
    half = len(files) // 2
    _insert(con, readers, files[:half], params, skipped, serve)
    _insert(con, readers, files[half:], params, skipped, serve)


def _evidence_lines(con: duckdb.DuckDBPyConnection, readers: tuple[str, str],
                    params: dict[str, Any]) -> None:  # fmt: skip
    """Table ``evidence_lines``: one line for each distinct ``evidence`` of the OONI rows to
    score, read again from only the files that hold the first row of each (the scan kept no
    OONI line: an archive's lines are gigabytes, and the rows of one evidence share a verdict).
    The fast reader first; the safe one for what it missed (the files only the safe one read:
    it hashes DuckDB's copy of each line, not the line)."""
    con.execute("CREATE OR REPLACE TEMP TABLE evidence_lines (evidence UBIGINT, line VARCHAR)")
    missing = """
        CREATE OR REPLACE TEMP TABLE missing AS SELECT evidence, arg_min(file, rowid) AS file
        FROM m WHERE evidence IS NOT NULL AND line IS NULL
          AND evidence NOT IN (SELECT evidence FROM evidence_lines) GROUP BY evidence
    """
    for select in (r.removeprefix("INSERT INTO m ") for r in readers):
        con.execute(missing)
        files = [f for (f,) in con.execute("SELECT DISTINCT file FROM missing").fetchall()]
        if not files:
            return
        try:
            con.execute(
                "INSERT INTO evidence_lines SELECT evidence, any_value(line) FROM (" + select
                + ") WHERE evidence IN (SELECT evidence FROM missing) GROUP BY evidence",
                params | {"keep": True, "files": files},
            )  # fmt: skip
        except duckdb.Error as exc:
            if not _bad_input(exc, served=True):
                raise


def _names(files: Sequence[Path], serve: bool) -> list[str]:
    """DuckDB's names for ``files``: served by ISA-L (``serve``) or read by DuckDB itself."""
    return [(serve and gunzip.served_name(f)) or _literal(f) for f in files]


def _bad_input(exc: duckdb.Error, served: bool) -> bool:
    """A file's fault, not the machine's: DuckDB's bad-input errors, or, in a query that read
    files served by ISA-L, an error of that file system (DuckDB gives an exception raised in
    Python as a plain ``duckdb.Error``: :class:`~probe.report.gunzip.Unfit`); the failing file
    is then read by DuckDB's own inflater."""
    return isinstance(exc, _BAD_INPUT) or (served and type(exc) is duckdb.Error)


def one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The one row of an aggregate query."""
    row = con.execute(sql).fetchone()
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return tuple(row)

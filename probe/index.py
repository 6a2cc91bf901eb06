"""The write-time index: one narrow CSV row per stored measurement, beside its day file.

``probe report`` needs a dozen keys of each measurement, not its observations (most of a
line). Parsing every line for them is what makes a report over a large archive slow, so the
keys are written once, when the measurement is stored (as OONI's fastpath computes its narrow
row at ingest): ``YYYY-MM-DD.jsonl`` gets ``YYYY-MM-DD.index.csv`` (:data:`COLUMNS`, with a
header), compressed and deleted with its day file (:mod:`probe.rotate`).

An index is a cache: :func:`rebuild` (``probe reindex``) makes it again from the raw lines,
and a reader trusts it only while it matches its day file. Each row records where its line is
(``line_start``, ``line_bytes``: bytes of the uncompressed file), so the index matches when its
last row ends where the day file ends (:func:`data_size`; the same for the ``.jsonl.gz`` of the
day, whose gzip trailer holds its uncompressed size): a line appended after it (a crash between
the two writes, another program's append) or a file replaced shows. The writer checks the
same before each append (:func:`append`) and rebuilds an index that is behind.

CSV, appended one row per measurement: as crash-safe as the day file (:func:`probe.store.
append_bytes`: one write, fsync, a torn last row cut on the next append); a reader with a
header and fixed columns types it. A field never holds a line break (replaced by a space:
a torn row could otherwise end inside a quoted field).

:func:`family`: the one definition of a URL's "domain family" (its registrable domain); the
report's SQL is built from the same patterns (:data:`HOST_PATTERN`, :data:`GENERIC_SLD`).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import re
import struct
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from probe import store
from probe.format.vocab import KNOWN_FORMAT_VERSIONS, Role
from probe.verdict import ANALYSIS_VERSION, summary_keys, verdict

__all__ = [
    "BLANK",
    "COLUMNS",
    "GENERIC_SLD",
    "HOST_PATTERN",
    "append",
    "data_size",
    "family",
    "header_ok",
    "index_of",
    "rebuild",
    "row",
]

#: The columns of an index, in order (its header line). ``time``: epoch seconds with
#: microseconds (``x_measurement_start_time``, else ``measurement_start_time``); the verdict
#: columns are those of the rules of ``analysis_version``.
COLUMNS: Final = ("uid", "asn", "network", "time", "input", "family", "role", "report_id",
                  "status", "method", "detail", "analysis_version", "format_version",
                  "problem", "line_start", "line_bytes")  # fmt: skip
#: The ``problem`` of a blank line (the report neither reads nor counts those).
BLANK: Final = "blank"
_HEADER: Final = (",".join(COLUMNS) + "\n").encode()
#: The host of a URL (an IPv6 literal keeps its brackets).
HOST_PATTERN: Final = r"^[a-zA-Z][a-zA-Z0-9+.-]*://(\[[^\]]*\]|[^/:?#]+)"
#: Generic second-level labels under a country code: ``dawn.com.pk``'s family has 3 labels.
GENERIC_SLD: Final = ("com", "net", "org", "gov", "edu", "co", "ac", "gob", "mil", "or", "ne", "go")
_HOST: Final = re.compile(HOST_PATTERN)
_ADDRESS: Final = re.compile(r"[0-9.]+")
_UNDER_CC: Final = re.compile(r"[^.]\.(" + "|".join(GENERIC_SLD) + r")\.[a-z][a-z]$")
_THREE: Final = re.compile(r"([^.]+\.[^.]+\.[^.]+)$")
_TWO: Final = re.compile(r"([^.]+\.[^.]+)$")
_TAIL: Final = 1 << 16


def family(url: str) -> str:
    """The registrable domain of the URL's host: its last two labels, three under a generic
    second level of a country (``www.dawn.com.pk`` -> ``dawn.com.pk``); an address stands for
    itself; ``unknown`` without a host."""
    found = _HOST.search(url)
    host = found.group(1).lower() if found else ""
    if not host:
        return "unknown"
    if host[0] == "[" or _ADDRESS.fullmatch(host):
        return host
    if _UNDER_CC.search(host):
        return _THREE.search(host).group(1)  # type: ignore[union-attr]  # 3 labels matched
    two = _TWO.search(host)
    return two.group(1) if two else host


def index_of(day: Path) -> Path:
    """The index of a day file (``X.jsonl`` or ``X.jsonl.gz``): ``X.index.csv`` if there is
    one (the day's current index), else ``X.index.csv.gz``."""
    plain = day.with_name(day.name.removesuffix(".gz").removesuffix(".jsonl") + ".index.csv")
    return plain if plain.exists() else plain.with_name(plain.name + ".gz")


def _time(m: Mapping[str, Any]) -> float | None:
    for key in ("x_measurement_start_time", "measurement_start_time"):
        text = m.get(key)
        if isinstance(text, str):
            try:
                return datetime.fromisoformat(text + "+00:00").timestamp()
            except ValueError:
                continue
    return None


def _text(value: Any) -> str:
    """A field: None is empty, a line break a space (module docstring)."""
    if value is None:
        return ""
    return str(value).replace("\r", " ").replace("\n", " ")


def row(m: Any, start: int, length: int, problem: str | None = None) -> bytes:
    """The index row (one CSV line) of the line at ``start`` (``length`` bytes) holding ``m``
    (the line's JSON value, None when it is no JSON): for a measurement of ours its keys, a
    target's verdict re-scored when the line's is from older rules or missing; for a line
    that is no JSON (a torn one) or blank, its ``problem``; for any other line (not ours, an
    unknown format, a missing base key) only where it is, which tells a reader to read the
    file's raw lines."""
    if m is None or problem is not None:
        return _csv([""] * (len(COLUMNS) - 3) + [problem or store.INVALID_LINE, start, length])
    if not isinstance(m, dict):
        return _csv([""] * (len(COLUMNS) - 3) + ["", start, length])
    annotations, tk = m.get("annotations"), m.get("test_keys")
    t = _time(m)
    if (m.get("test_name") != "x_reachability" or not isinstance(annotations, dict)
            or not isinstance(tk, dict) or m.get("x_format_version") not in KNOWN_FORMAT_VERSIONS
            or t is None or not all(isinstance(m.get(k), str) for k in
                                    ("measurement_uid", "probe_asn", "input"))):  # fmt: skip
        return _csv([""] * (len(COLUMNS) - 3) + ["", start, length])
    role, version = annotations.get("x_role"), tk.get("x_analysis_version")
    v = tk.get("x_verdict") if isinstance(tk.get("x_verdict"), dict) else None
    if role == Role.TARGET and (version != ANALYSIS_VERSION or v is None or not v.get("status")):
        v, version = summary_keys(verdict(m))["x_verdict"], ANALYSIS_VERSION
    v = v or {}
    return _csv([
        m["measurement_uid"], m["probe_asn"], m.get("probe_network_name"), f"{t:.6f}",
        m["input"], family(m["input"]), role, m.get("report_id"), v.get("status"),
        v.get("method"), v.get("detail"), version, m["x_format_version"], "", start, length,
    ])  # fmt: skip


def _csv(fields: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(map(_text, fields))
    return buffer.getvalue().encode("utf-8")


def data_size(day: Path) -> int | None:
    """The size of the day file's uncompressed content (of a ``.gz``, from its trailer: modulo
    2**32, as gzip records it); None when it cannot be read."""
    try:
        if not day.name.endswith(".gz"):
            return day.stat().st_size
        with open(day, "rb") as f:
            f.seek(-4, os.SEEK_END)
            return int(struct.unpack("<I", f.read(4))[0])
    except (OSError, struct.error):
        return None


def header_ok(index: Path) -> bool:
    """The index file starts with this version's header (any other is not trusted)."""
    try:
        with store.open_file(index) as f:
            return f.readline() == _HEADER
    except store.READ_ERRORS:
        return False


def _end(index: Path) -> int | None:
    """Where the last row of a plain index says its line ends (0: only the header, or no
    file); None for an index that cannot be trusted."""
    try:
        size = index.stat().st_size
    except FileNotFoundError:
        return 0
    if not header_ok(index):
        return None
    with open(index, "rb") as f:
        f.seek(max(0, size - _TAIL))
        lines = f.read().split(b"\n")
    complete = lines[:-1]  # after the last newline: nothing, or a torn row (cut on append)
    if not complete or (size <= _TAIL and len(complete) == 1):
        return 0  # the header alone
    try:
        *_, start, length = next(csv.reader([complete[-1].decode("utf-8")]))
        return int(start) + int(length)
    except (ValueError, UnicodeDecodeError, StopIteration):
        return None


def append(day: Path, m: Mapping[str, Any], start: int, length: int) -> None:
    """Index the measurement just stored at ``start`` of the plain ``day`` file; an index that
    is not in step with the file (a crash between the two writes, an index deleted or from an
    older version) is rebuilt from the raw lines instead."""
    index = day.with_name(day.name.removesuffix(".jsonl") + ".index.csv")
    if _end(index) != start:
        rebuild(day)
        return
    line = row(m, start, length)
    store.append_bytes(index, [line] if index.exists() else [_HEADER, line])


def _rows(day: Path) -> Iterator[bytes]:
    """The index rows of every line of the day file (none for what follows a damaged part of a
    ``.gz``: that index will not match its file)."""
    start = 0
    with store.open_file(day) as f, contextlib.suppress(*store.READ_ERRORS):
        for raw in f:
            blank = None if raw.strip() else BLANK
            yield row(None if blank else store.parse_line(raw), start, len(raw), blank)
            start += len(raw)


def rebuild(day: Path) -> int:
    """Write the index of ``day`` (plain or ``.gz``; the index compressed alike) from its raw
    lines, atomically; return how many rows it holds."""
    base = day.name.removesuffix(".gz").removesuffix(".jsonl") + ".index.csv"
    target = day.with_name(base + ".gz" if day.name.endswith(".gz") else base)
    count = 0
    with store.atomic_file(target) as raw, contextlib.ExitStack() as closing:
        out: Any = raw
        if target.suffix == ".gz":  # closed (its trailer written) before the fsync
            out = closing.enter_context(gzip.GzipFile(fileobj=raw, mode="wb"))
        out.write(_HEADER)
        for line in _rows(day):
            out.write(line)
            count += 1
    if target.suffix == ".gz":
        day.with_name(base).unlink(missing_ok=True)  # a plain index of the day is older
    return count

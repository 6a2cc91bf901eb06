"""Append-only JSON Lines storage: one file per UTC day, nothing lost on a crash.

Each measurement is written as one line with a single ``write`` on a file
opened in append mode, then flushed and ``fsync``-ed, so a power cut can at
worst leave one torn *last* line. The reader detects a line that does not
parse (torn, or garbage) and skips it with a count, never failing.
``.jsonl.gz`` files (compressed past days) are read the same way.

Small state files, and the compressed days, are replaced whole or not at all
(:func:`atomic_file`): written to a temporary file, fsynced, renamed over the
target, and the folder fsynced; a crash or a full disk leaves the old file.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

__all__ = [
    "INVALID_LINE",
    "READ_ERRORS",
    "ReadStats",
    "append",
    "append_bytes",
    "append_lines",
    "atomic_file",
    "atomic_write",
    "day_file",
    "fsync_folder",
    "iter_files",
    "open_file",
    "parse_line",
    "read",
    "repair_tail",
]

#: Why a line that does not parse is skipped.
INVALID_LINE: Final = "torn or invalid JSON line"
#: What json.loads raises for a line that is no JSON: ValueError, or RecursionError for one
#: nested deeper than Python's parser goes (DuckDB's takes it).
_JSON_ERRORS: Final = (ValueError, RecursionError)
#: What reading a damaged file raises: OSError (a bad gzip header or CRC included), EOFError
#: (a truncated .gz), zlib.error (a damaged deflate stream).
READ_ERRORS: Final = (OSError, EOFError, zlib.error)
_CHUNK: Final = 1 << 16


def day_file(directory: str | os.PathLike[str], timestamp: float | None = None) -> Path:
    """The file for the UTC day of ``timestamp`` (now by default)."""
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() if timestamp is None else timestamp))
    return Path(directory) / f"{day}.jsonl"


def append(path: Path, measurements: Iterable[Mapping[str, Any]]) -> int:
    """Append measurements as JSON lines, each flushed and fsynced; return how many."""
    return len(append_lines(path, measurements))


def append_lines(path: Path, measurements: Iterable[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """Append measurements as JSON lines, each flushed and fsynced; return each line's
    (offset, length) in bytes (what :mod:`probe.index` records)."""
    return append_bytes(
        path,
        (
            (json.dumps(m, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
            for m in measurements
        ),
    )


def append_bytes(path: Path, lines: Iterable[bytes]) -> list[tuple[int, int]]:
    """Append whole lines (each ending in a newline) to ``path``, each with one ``write``,
    flushed and fsynced, after cutting a torn tail; return each one's (offset, length)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    with open(path, "ab") as f:
        end = repair_tail(f, path)
        for line in lines:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
            out.append((end, len(line)))
            end += len(line)
    return out


def repair_tail(f: IO[bytes], path: Path) -> int:
    """Cut a torn last line (a crash mid-append) back to the last complete line; return the
    file's size after it.

    The torn line was never a complete measurement, so nothing is lost; sealing it with a
    newline instead would leave a permanent invalid line in the middle of the file.
    """
    size = end = path.stat().st_size
    if not size:
        return 0
    with open(path, "rb") as r:
        while end > 0:
            start = max(0, end - _CHUNK)
            r.seek(start)
            chunk = r.read(end - start)
            if start + len(chunk) == size and chunk.endswith(b"\n"):
                return size  # the usual case: the file ends with a complete line
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
    f.truncate(end)
    f.flush()
    os.fsync(f.fileno())
    return end


@dataclass(slots=True)
class ReadStats:
    files: int = 0
    lines: int = 0
    skipped: int = 0  # torn or unparsable lines
    reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Measurement files under the given files and folders, sorted within each folder."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(x for x in p.rglob("*") if x.name.endswith((".jsonl", ".jsonl.gz")))
        else:
            yield p


def read(
    paths: Iterable[str | os.PathLike[str]], stats: ReadStats | None = None
) -> Iterator[dict[str, Any]]:
    """Every measurement (a JSON object per line) in the files; bad lines are counted."""
    stats = stats if stats is not None else ReadStats()
    for path in iter_files(paths):
        stats.files += 1
        try:
            with open_file(path) as f:
                yield from _lines(f, stats)
        except READ_ERRORS as exc:
            stats.skip(f"unreadable file: {type(exc).__name__}")


def parse_line(line: str | bytes) -> Any:
    """The JSON value of one line, or None when it is no JSON to Python (a torn line; some
    lines DuckDB's parser takes, with a trailing comma or nested too deep, Python's does not)."""
    try:
        return json.loads(line)
    except _JSON_ERRORS:
        return None


def open_file(path: Path) -> IO[bytes]:
    """A measurement file for reading, inflated if it is a ``.gz``."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is an IO[bytes]
    return open(path, "rb")


def _lines(f: IO[bytes], stats: ReadStats) -> Iterator[dict[str, Any]]:
    for raw in f:
        if not raw.strip():
            continue
        stats.lines += 1
        try:
            value = json.loads(raw)
        except _JSON_ERRORS:
            stats.skip(INVALID_LINE)
            continue
        if isinstance(value, dict):
            yield value
        else:
            stats.skip("not a JSON object")


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``path`` only if the ``with`` block completes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_folder(path.parent)  # the rename itself survives a power cut


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` survive a power cut."""
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)

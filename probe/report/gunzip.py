"""Reading ``.gz`` faster: ISA-L inflates the files, DuckDB reads the text.

DuckDB's own gzip reader inflates at about zlib's speed; ISA-L (``python-isal``) inflates
2-3x faster, and over an archive of ``.jsonl.gz`` inflating is a third of the report. So a
DuckDB file system (an fsspec one, under the protocol ``probe-gunzip://``) serves each
``.gz`` file as its inflated bytes, read from the file at once with the GIL released, under
its name without ``.gz`` (or DuckDB would take the text for gzip and inflate it again).

DuckDB asks a file's size (after opening it), and a gzip file states its size only in its
trailer (ISIZE, modulo 4 GiB) and only for its last member. So :func:`served_name` names only
files of at most :data:`MAX_BYTES` whose trailer claims at most that (the bytes of one file are
held in memory), and :func:`inflate` checks the claim: a file that is not one gzip member of
exactly that size (several members, a damaged or truncated file, more than the claim) raises
:class:`Unfit`, and the caller reads that file with DuckDB's own inflater instead. The size
DuckDB is told is the one served, as long as the file is still the one that was read: a file
replaced in between raises :class:`Unfit` too, rather than be cut to another file's size.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, BinaryIO, Final

import duckdb

__all__ = ["MAX_BYTES", "PROTOCOL", "Unfit", "claimed_size", "inflate", "register", "served_name"]

PROTOCOL: Final = "probe-gunzip"
MAX_BYTES: Final = 64 << 20  # inflated bytes of one file; DuckDB reads a few files at once

try:  # the report extra installs both; without them DuckDB inflates every file itself
    from fsspec.spec import AbstractFileSystem  # type: ignore[import-untyped]
    from isal import isal_zlib

    _INFLATE_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]  # stub: an instance
except ImportError:  # pragma: no cover - the report extra installs both
    AbstractFileSystem = None


class Unfit(OSError):
    """The file is not one gzip member of the size its trailer states."""


def claimed_size(path: Path) -> int | None:
    """The inflated size a ``.gz`` file states in its trailer, if it can be served from memory
    (the file and the claim at most :data:`MAX_BYTES`); ``None`` otherwise."""
    try:
        with open(path, "rb") as f:
            return _claim(f)
    except OSError:
        return None


def _claim(f: BinaryIO) -> int | None:
    if f.read(2) != b"\x1f\x8b" or not 20 <= f.seek(0, os.SEEK_END) <= MAX_BYTES:
        return None
    f.seek(-4, os.SEEK_END)
    size = int.from_bytes(f.read(4), "little")
    return size if size <= MAX_BYTES else None


def inflate(path: Path) -> tuple[bytes, os.stat_result]:
    """The inflated bytes of ``path``, which must be one gzip member of the size its trailer
    states, and the ``stat`` of the file they came from."""
    with open(path, "rb") as f:
        size, st = _claim(f), os.fstat(f.fileno())
        if size is None:
            raise Unfit(f"{path}: no longer a small gzip file")
        f.seek(0)
        decompressor = isal_zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer
        try:
            data = decompressor.decompress(f.read(), size + 1)
        except _INFLATE_ERROR as exc:
            raise Unfit(f"{path}: {exc}") from exc
    if not decompressor.eof or decompressor.unused_data or len(data) != size:
        raise Unfit(f"{path}: not one gzip member of {size} bytes")
    return data, st


def served_name(path: Path) -> str | None:
    """DuckDB's name for ``path`` if it is a ``.gz`` file served here, else ``None``."""
    if AbstractFileSystem is None or not path.name.endswith(".gz") or claimed_size(path) is None:
        return None
    return f"{PROTOCOL}://{str(path).removesuffix('.gz')}"


def _gz(path: str) -> Path:
    """The ``.gz`` file behind a served name (the name without protocol and ``.gz``)."""
    return Path(path.removeprefix(f"{PROTOCOL}://") + ".gz")


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Serve ``probe-gunzip://`` paths on ``con`` (nothing without the report extra)."""
    if AbstractFileSystem is not None:
        con.register_filesystem(_Inflated())


if AbstractFileSystem is not None:

    class _Inflated(AbstractFileSystem):  # type: ignore[misc]
        """``.gz`` files as their inflated bytes, for DuckDB."""

        protocol = PROTOCOL
        cachable = False  # one instance per connection (fsspec would share one): see _served

        def __init__(self) -> None:
            super().__init__()
            # .gz file -> (inode, mtime, size) of the file read, and the bytes it gave. DuckDB
            # opens a file, then asks its size: it must be told the size of what it was given.
            self._served: dict[Path, tuple[tuple[int, int, int], int]] = {}

        def info(self, path: str, **_: Any) -> dict[str, Any]:
            gz = _gz(path)
            try:
                st = os.stat(gz)
            except OSError as exc:
                raise FileNotFoundError(path) from exc
            if gz in self._served:
                read, size = self._served[gz]
                if read != _identity(st):
                    raise Unfit(f"{gz}: replaced while being read")
            elif (claimed := claimed_size(gz)) is not None:
                size = claimed
            else:
                raise FileNotFoundError(path)
            return {"name": path, "size": size, "type": "file"}

        def glob(self, path: str, **_: Any) -> list[str]:  # names are literal, never patterns
            return [path] if _gz(path).is_file() else []

        def _open(self, path: str, mode: str = "rb", **_: Any) -> io.BytesIO:
            data, st = inflate(_gz(path))  # fsspec gives the name without the protocol
            self._served[_gz(path)] = (_identity(st), len(data))
            return io.BytesIO(data)

    def _identity(st: os.stat_result) -> tuple[int, int, int]:
        return st.st_ino, st.st_mtime_ns, st.st_size

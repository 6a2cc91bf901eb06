"""Looking after the results folder of a small device (an SD card that must not fill up).

* :func:`compress_past_days`: ``YYYY-MM-DD.jsonl`` of a day before today becomes
  ``YYYY-MM-DD.jsonl.gz``, streamed (a day can be larger than the device's memory) into
  a temporary file that is fsynced and renamed (:func:`probe.store.atomic_file`);
  only then is the original deleted. A crash at any point leaves every measurement
  in at least one of the two files. If a ``.gz`` of that day already exists (a crash
  between rename and delete, or a late write to a past day), its content is kept:
  unless it is a prefix of the plain file, it goes first into the new ``.gz``.
* :func:`enforce_cap`: deletes whole days, oldest first, until the folder is under
  the cap; today's file is never deleted, whatever the cap.
* :func:`low_disk`: less free space than the threshold means "stop measuring".
* :func:`remove_stale_temps`: a compression killed mid-way (SIGKILL, power cut) leaves its
  temporary ``.YYYY-MM-DD.jsonl.gz.<pid>.tmp``; the original is still there, so the temp
  holds nothing of value. Under the run lock no compression is running: every such file
  is stale. Until removed they count against the cap.

A day's index (``YYYY-MM-DD.index.csv``, :mod:`probe.index`) goes with its day file: compressed
after it (or rebuilt from the new ``.gz`` when an older ``.gz`` was merged in), counted in the
cap and deleted with it. Only files named like measurement days and their indexes are touched.
The scheduler calls these between campaigns, under the run lock, so no campaign writes
while they run.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import time
from pathlib import Path
from typing import Final

from probe import index, store

__all__ = [
    "compress_past_days",
    "day_files",
    "enforce_cap",
    "free_bytes",
    "low_disk",
    "remove_stale_temps",
]

_DAY: Final = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl(\.gz)?$")
_INDEX: Final = re.compile(r"^(\d{4}-\d{2}-\d{2})\.index\.csv(\.gz)?$")
_TEMP: Final = re.compile(r"^\.\d{4}-\d{2}-\d{2}\.(jsonl|index\.csv)(\.gz)?\.\d+\.tmp$")
_CHUNK: Final = 1 << 16


def _today(now: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))


def day_files(directory: Path, pattern: re.Pattern[str] = _DAY) -> list[tuple[str, Path]]:
    """(day, file) of every measurement file (or, with ``_INDEX``, index) directly in
    ``directory``, oldest day first."""
    if not directory.is_dir():
        return []
    found = [(m.group(1), p) for p in directory.iterdir() if (m := pattern.match(p.name))]
    return sorted(found, key=lambda item: (item[0], item[1].name))


def _is_prefix(gz: Path, plain: Path) -> bool:
    """The decompressed ``gz`` is a prefix of ``plain`` (an unreadable ``gz`` is not)."""
    try:
        with gzip.open(gz, "rb") as a, open(plain, "rb") as b:
            while chunk := a.read(_CHUNK):
                if b.read(len(chunk)) != chunk:
                    return False
    except store.READ_ERRORS:
        return False
    return True


def compress_past_days(directory: Path, now: float | None = None) -> list[Path]:
    """Compress every plain day file before today's; return the ``.gz`` files written."""
    today, written = _today(now), []
    for day, plain in day_files(directory):
        if day >= today or plain.name.endswith(".gz"):
            continue
        gz = plain.with_name(plain.name + ".gz")
        keep_old = gz.exists() and not _is_prefix(gz, plain)
        with store.atomic_file(gz) as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:
            if keep_old:
                with gzip.open(gz, "rb") as old:
                    if _copy_readable(old, out) not in (b"", b"\n"):  # a damaged tail, torn
                        out.write(b"\n")  # the late lines must not be glued to it
            with open(plain, "rb") as f:
                shutil.copyfileobj(f, out, _CHUNK)
        plain.unlink()
        written.append(gz)
        if keep_old:  # the old .gz's lines come first: the plain index's offsets are wrong
            index.rebuild(gz)
    for day, plain in day_files(directory, _INDEX):  # a crash may have left one behind
        if day < today and not plain.name.endswith(".gz"):
            gz = plain.with_name(plain.name + ".gz")
            with (store.atomic_file(gz) as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out,
                  open(plain, "rb") as f):  # fmt: skip
                shutil.copyfileobj(f, out, _CHUNK)
            plain.unlink()
    return written


def _copy_readable(old: gzip.GzipFile, out: gzip.GzipFile) -> bytes:
    """Copy what can be read of an existing ``.gz``: a damaged tail is lost, not the rest;
    return the last byte copied (``b""`` if none).

    Only read errors end the copy; a write error (a full disk) propagates and aborts.
    """
    last = b""
    while True:
        try:
            chunk = old.read(_CHUNK)
        except store.READ_ERRORS:
            return last
        if not chunk:
            return last
        out.write(chunk)
        last = chunk[-1:]


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete the temporary files of killed compressions (call under the run lock)."""
    stale = _temps(directory)
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _temps(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _TEMP.match(p.name))


def enforce_cap(directory: Path, max_bytes: int, now: float | None = None) -> list[Path]:
    """Delete the oldest day files (with their indexes) until the folder's measurement files,
    indexes and any temporary files left by a crash fit ``max_bytes``."""
    today = _today(now)
    files = day_files(directory)
    indexes = day_files(directory, _INDEX)
    every = [*(p for _, p in files), *(p for _, p in indexes), *_temps(directory)]
    total = sum(p.stat().st_size for p in every)
    deleted = []
    for day, path in files:
        if total <= max_bytes or day >= today:
            break
        for gone in [path, *(p for d, p in indexes if d == day)]:
            if gone.exists():  # an index goes with the day's first file
                total -= gone.stat().st_size
                gone.unlink()
                deleted.append(gone)
    return deleted


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system of ``directory``."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def low_disk(directory: Path, min_free: int) -> bool:
    """Less than ``min_free`` bytes free where the results go."""
    directory.mkdir(parents=True, exist_ok=True)
    return free_bytes(directory) < min_free

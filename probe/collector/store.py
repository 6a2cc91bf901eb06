"""The collector's store: raw archives that are the write-ahead, and a narrow SQLite index.

Layout under the data folder::

    archive/<ASN>/<YYYY-MM-DD>.jsonl      today's lines (UTC day of receipt), appended
    archive/<ASN>/<YYYY-MM-DD>.jsonl.gz   past days, compressed by probe.rotate
    index.sqlite                          reports, measurements (narrow rows), checkpoints

The archive file is the write-ahead log: a measurement is acknowledged only after its
line is written and the file fsynced. The index follows in the same SQLite write
transaction, which also records up to which byte each archive file is indexed; the
transaction is opened (``BEGIN IMMEDIATE``) *before* the lines are appended, so appends
and index updates are serialised across worker processes and a uid is checked and
written under one lock. A crash between the fsync and the commit leaves lines past the
checkpoint: :meth:`Store.recover` (at start, and for each file before it is appended to)
indexes them, and cuts a torn last line (never acknowledged: its client retries). So the
archive holds every acknowledged measurement exactly once, and a retry of one already
held (the client lost the answer) adds nothing: de-duplication is by measurement_uid.

``probe report DATA/archive`` reads the archive as it reads a volunteer's folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from probe import rotate

__all__ = ["ASN", "Entry", "Report", "Store"]

ASN: Final = re.compile(r"^AS\d{1,10}$")  # also what makes a safe folder name
_PARAMS: Final = 500  # SQL parameters a query (SQLite allows 32766 since 3.32, 999 before)
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY, opened REAL NOT NULL, closed REAL, probe_asn TEXT NOT NULL,
    probe_cc TEXT NOT NULL, test_name TEXT NOT NULL, token TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    uid TEXT PRIMARY KEY, report_id TEXT, received REAL, start_time TEXT, probe_asn TEXT,
    probe_cc TEXT, input TEXT, role TEXT, status TEXT, partition TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, indexed INTEGER NOT NULL);
"""
_INSERT: Final = (
    "INSERT {}INTO measurements (uid, report_id, start_time, probe_asn, probe_cc, input, role,"
    " status, received, partition) VALUES (?,?,?,?,?,?,?,?,?,?)"
)


@dataclass(frozen=True, slots=True)
class Report:
    id: str
    probe_asn: str
    probe_cc: str
    test_name: str
    token: str  # who opened it ("" when anonymous); only they may add to it
    closed: bool


@dataclass(frozen=True, slots=True)
class Entry:
    """One validated measurement to store: its uid, ASN, index fields and line (JSON, no
    newline). The parsed measurement itself is not kept: freed at once, it does not grow
    the heap that the garbage collector walks while its batch waits for the fsync."""

    uid: str
    probe_asn: str
    fields: tuple[Any, ...]  # the index row but for the time received and the partition
    line: bytes

    @classmethod
    def of(cls, m: Mapping[str, Any], line: bytes) -> Entry:
        """The entry of measurement ``m``, whose line is ``line``; its index row is computed
        once, here, at ingest."""
        verdict = m.get("test_keys", {}).get("x_verdict") or {}
        fields = (
            m["measurement_uid"], m.get("report_id"), m.get("measurement_start_time"),
            m["probe_asn"], m.get("probe_cc"), m.get("input"),
            (m.get("annotations") or {}).get("x_role"),
            verdict.get("status") if isinstance(verdict, dict) else None,
        )  # fmt: skip
        return cls(m["measurement_uid"], m["probe_asn"], fields, line)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _partition(path: Path) -> str:
    """``AS64496/2026-12-05``: where a measurement's line is (``.jsonl`` or ``.jsonl.gz``)."""
    return f"{path.parent.name}/{path.name.split('.', 1)[0]}"


class Store:
    """One per process; every method does blocking I/O (call it from a worker thread)."""

    def __init__(self, data: Path) -> None:
        self.data, self.archive = data, data / "archive"
        self.archive.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(
            data / "index.sqlite", timeout=60, isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        # The archive is the durable copy; a commit lost in a power cut is redone by recover()
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._day = ""
        self._lock = os.open(data / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)

    def close(self) -> None:
        self.db.close()
        os.close(self._lock)

    def _begin(self) -> None:
        """Take the writers' lock, then SQLite's. The flock wakes a waiting worker as soon as
        it is free; SQLite's own busy handler sleeps 1-100 ms between tries, which made a
        second worker slower than one (p99 over 300 ms in bench/collector.py)."""
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            raise

    def _end(self, commit: bool) -> None:
        try:
            self.db.execute("COMMIT" if commit else "ROLLBACK")
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    # -- reports ---------------------------------------------------------------------------
    def open_report(self, probe_asn: str, probe_cc: str, test_name: str, token: str) -> str:
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        report_id = f"{stamp}_{probe_asn}_{secrets.token_urlsafe(32)}"  # 256 bits, CSPRNG
        self.db.execute(
            "INSERT INTO reports VALUES (?, ?, NULL, ?, ?, ?, ?)",
            (report_id, now, probe_asn, probe_cc, test_name, token),
        )
        return report_id

    def report(self, report_id: str) -> Report | None:
        row = self.db.execute(
            "SELECT id, probe_asn, probe_cc, test_name, token, closed FROM reports WHERE id = ?",
            (report_id,),
        ).fetchone()
        if row is None:
            return None
        return Report(row[0], row[1], row[2], row[3], row[4], closed=row[5] is not None)

    def close_report(self, report_id: str) -> None:
        self.db.execute("UPDATE reports SET closed = ? WHERE id = ?", (time.time(), report_id))

    # -- measurements ----------------------------------------------------------------------
    def add(self, entries: Sequence[Entry], now: float | None = None) -> None:
        """Store every entry not held yet (by uid), durably, then index them."""
        now = time.time() if now is None else now
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        self._begin()
        try:
            if day != self._day:  # the first batch of a day: yesterday's files are done
                self._compress(now)
                self._day = day
            by_file: dict[Path, list[Entry]] = {}
            for e in entries:  # one uid always goes to one file (its ASN, today)
                path = self.archive / e.probe_asn / f"{day}.jsonl"
                by_file.setdefault(path, []).append(e)
            rows = []
            for path, group in by_file.items():
                self._recover_file(path)  # a crashed batch's lines first (they may be these)
                held = self._fresh(group)
                partition = _partition(path)
                rows += [(*e.fields, now, partition) for e in held]
                self._append(path, [e.line for e in held])
            self.db.executemany(_INSERT.format(""), rows)
        except BaseException:
            self._end(commit=False)
            raise
        self._end(commit=True)

    def _fresh(self, entries: Sequence[Entry]) -> list[Entry]:
        """The entries whose uid is neither in the index nor earlier in ``entries``."""
        uids = [e.uid for e in entries]
        seen: set[str] = set()
        for i in range(0, len(uids), _PARAMS):  # one query a chunk, not one a measurement
            chunk = uids[i : i + _PARAMS]
            query = f"SELECT uid FROM measurements WHERE uid IN ({','.join('?' * len(chunk))})"
            seen.update(uid for (uid,) in self.db.execute(query, chunk))
        out = []
        for uid, e in zip(uids, entries, strict=True):
            if uid not in seen:
                seen.add(uid)
                out.append(e)
        return out

    def _append(self, path: Path, lines: list[bytes]) -> None:
        if not lines:
            return
        new = not path.exists()
        if new:
            path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = b"".join(line + b"\n" for line in lines)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fdatasync(fd)  # the data and the size, what reading the lines back needs
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if new:  # the new file's name (and a new ASN folder's) survives a power cut too
            _fsync_dir(path.parent)
            _fsync_dir(path.parent.parent)
        self._checkpoint(path, size)

    def _checkpoint(self, path: Path, size: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?)", (str(path.relative_to(self.data)), size)
        )

    # -- recovery --------------------------------------------------------------------------
    def recover(self) -> int:
        """Index what a crash left past the checkpoints; compress past days. Lines indexed."""
        self._begin()
        try:
            count = sum(self._recover_file(p) for p in sorted(self.archive.glob("AS*/*.jsonl")))
            self._compress(time.time())
        except BaseException:
            self._end(commit=False)
            raise
        self._end(commit=True)
        return count

    def _recover_file(self, path: Path) -> int:
        """Cut a torn last line, index complete lines past the checkpoint (in the lock)."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0
        key = str(path.relative_to(self.data))
        row = self.db.execute("SELECT indexed FROM files WHERE path = ?", (key,)).fetchone()
        start = row[0] if row else 0
        if size == start:
            return 0
        with open(path, "r+b") as f:
            f.seek(start)
            tail = f.read()
            end = tail.rfind(b"\n") + 1
            if end < len(tail):  # a torn line: written, never acknowledged
                f.truncate(start + end)
                os.fsync(f.fileno())
        rows, received, partition = [], path.stat().st_mtime, _partition(path)
        for raw in tail[:end].splitlines():
            try:
                rows.append((*Entry.of(json.loads(raw), raw).fields, received, partition))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # cannot be: lines are validated before they are written
        self.db.executemany(_INSERT.format("OR IGNORE "), rows)
        self._checkpoint(path, start + end)
        return len(rows)

    def _compress(self, now: float) -> None:
        today = time.strftime("%Y-%m-%d", time.gmtime(now))
        for folder in self.archive.glob("AS*"):
            for day, plain in rotate.day_files(folder):
                if day < today and not plain.name.endswith(".gz"):
                    self._recover_file(plain)  # indexed before it changes name
            for gz in rotate.compress_past_days(folder, now):
                key = str(gz.relative_to(self.data)).removesuffix(".gz")
                self.db.execute("DELETE FROM files WHERE path = ?", (key,))

    def count(self) -> int:
        row = self.db.execute("SELECT count(*) FROM measurements").fetchone()
        return int(row[0])

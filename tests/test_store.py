"""Storage: append + fsync JSON lines; a torn last line is skipped, never fatal."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from probe import store


def test_append_and_read_back(tmp_path: Path) -> None:
    path = store.day_file(tmp_path, 0)
    assert path.name == "1970-01-01.jsonl"
    assert store.append(path, [{"a": 1}, {"b": "ü"}]) == 2
    assert store.append(path, [{"c": 3}]) == 1
    assert list(store.read([tmp_path])) == [{"a": 1}, {"b": "ü"}, {"c": 3}]


def test_torn_last_line_is_skipped_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "2024-02-17.jsonl"
    store.append(path, [{"n": 1}])
    with open(path, "ab") as f:  # a power cut in the middle of a write
        f.write(b'{"n": 2, "test_k')
    stats = store.ReadStats()
    assert list(store.read([path], stats)) == [{"n": 1}]
    assert stats.skipped == 1 and stats.lines == 2
    store.append(path, [{"n": 3}])  # the next run starts on a fresh line
    stats = store.ReadStats()
    assert list(store.read([path], stats)) == [{"n": 1}, {"n": 3}]
    assert stats.skipped == 1


def test_reads_gzip_and_skips_garbage(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "2024-02-16.jsonl.gz", "wt") as f:
        f.write(json.dumps({"old": True}) + "\n[1, 2]\n\x00garbage\n")
    (tmp_path / "notes.txt").write_text("ignored")
    stats = store.ReadStats()
    assert list(store.read([tmp_path], stats)) == [{"old": True}]
    assert stats.files == 1 and stats.skipped == 2
    assert stats.reasons == {"not a JSON object": 1, "torn or invalid JSON line": 1}


def test_truncated_gzip_is_counted_not_fatal(tmp_path: Path) -> None:
    data = gzip.compress(b'{"x": 1}\n' * 1000)
    (tmp_path / "a.jsonl.gz").write_bytes(data[: len(data) // 2])
    stats = store.ReadStats()
    list(store.read([tmp_path], stats))
    assert stats.skipped >= 1

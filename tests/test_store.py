"""Storage: append + fsync JSON lines; a torn last line is skipped, never fatal."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
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
    store.append(path, [{"n": 3}])  # the torn line, never complete, is cut away first
    stats = store.ReadStats()
    assert list(store.read([path], stats)) == [{"n": 1}, {"n": 3}]
    assert stats.skipped == 0
    assert path.read_bytes() == b'{"n":1}\n{"n":3}\n'


def test_a_torn_line_longer_than_a_read_chunk_and_a_file_of_only_a_torn_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "2024-02-17.jsonl"
    store.append(path, [{"n": 1}])
    with open(path, "ab") as f:
        f.write(b'{"body": "' + b"x" * 200_000)
    store.append(path, [{"n": 2}])
    assert path.read_bytes() == b'{"n":1}\n{"n":2}\n'
    alone = tmp_path / "2024-02-18.jsonl"
    alone.write_bytes(b'{"n": ')
    store.append(alone, [{"n": 3}])
    assert alone.read_bytes() == b'{"n":3}\n'


def test_sigkilled_appends_leave_only_complete_lines(tmp_path: Path) -> None:
    """A real writer killed at random points; every later append leaves a valid file."""
    path = tmp_path / "2024-02-17.jsonl"
    writer = (
        "import sys\nfrom pathlib import Path\nfrom probe import store\n"
        "while True:\n    store.append(Path(sys.argv[1]), [{'pad': 'x' * 50_000}] * 4)\n"
    )
    for delay in (0.05, 0.11, 0.17, 0.23, 0.31):
        process = subprocess.Popen([sys.executable, "-c", writer, str(path)])
        time.sleep(delay)
        process.kill()
        process.wait()
        store.append(path, [{"after": delay}])
    stats = store.ReadStats()
    lines = list(store.read([path], stats))
    assert stats.skipped == 0 and path.read_bytes().endswith(b"\n")
    assert [m["after"] for m in lines if "after" in m] == [0.05, 0.11, 0.17, 0.23, 0.31]


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

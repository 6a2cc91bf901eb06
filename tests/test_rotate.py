"""The results folder of a small device: compression, the disk cap, a full disk.

The full-disk tests mount a tiny tmpfs (root only): a real ENOSPC, not a mock.
"""

from __future__ import annotations

import calendar
import gzip
import json
import logging
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe import rotate, store
from probe.config import Config, Resolver, Storage
from probe.schedule import Runner

NOW = calendar.timegm((2024, 2, 17, 12, 0, 0))  # "today" is 2024-02-17


def day(directory: Path, name: str, rows: list[dict[str, int]]) -> Path:
    path = directory / f"{name}.jsonl"
    store.append(path, rows)
    return path


def test_past_days_are_compressed_and_today_is_left_alone(tmp_path: Path) -> None:
    day(tmp_path, "2024-02-15", [{"n": 1}, {"n": 2}])
    day(tmp_path, "2024-02-16", [{"n": 3}])
    day(tmp_path, "2024-02-17", [{"n": 4}])
    (tmp_path / "notes.txt").write_text("not a day")
    before = list(store.read([tmp_path]))
    written = rotate.compress_past_days(tmp_path, NOW)
    assert [p.name for p in written] == ["2024-02-15.jsonl.gz", "2024-02-16.jsonl.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2024-02-15.jsonl.gz",
        "2024-02-16.jsonl.gz",
        "2024-02-17.jsonl",
        "notes.txt",
    ]
    assert list(store.read([tmp_path])) == before
    assert rotate.compress_past_days(tmp_path, NOW) == []  # idempotent


def test_a_crash_between_rename_and_delete_does_not_duplicate(tmp_path: Path) -> None:
    plain = day(tmp_path, "2024-02-16", [{"n": 1}, {"n": 2}])
    (tmp_path / "2024-02-16.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()))
    rotate.compress_past_days(tmp_path, NOW)
    assert list(store.read([tmp_path])) == [{"n": 1}, {"n": 2}]


def test_a_late_write_to_a_compressed_day_is_kept_with_it(tmp_path: Path) -> None:
    (tmp_path / "2024-02-16.jsonl.gz").write_bytes(gzip.compress(b'{"n": 1}\n'))
    day(tmp_path, "2024-02-16", [{"n": 2}])
    rotate.compress_past_days(tmp_path, NOW)
    assert list(store.read([tmp_path])) == [{"n": 1}, {"n": 2}]
    assert not (tmp_path / "2024-02-16.jsonl").exists()


def test_a_damaged_compressed_day_keeps_what_can_be_read(tmp_path: Path) -> None:
    rows = [{"n": n, "x": "abc" * (n % 7)} for n in range(2000)]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    damaged = bytearray(gzip.compress(data, mtime=0))
    damaged[100] = 0xFF  # early in the deflate stream: zlib.error, which is no OSError
    (tmp_path / "2024-02-16.jsonl.gz").write_bytes(damaged)
    with pytest.raises(zlib.error):
        gzip.decompress(damaged)
    stats = store.ReadStats()
    assert list(store.read([tmp_path], stats)) == []
    assert stats.reasons == {"unreadable file: error": 1}
    day(tmp_path, "2024-02-16", [{"n": -1}])  # a late write to that day: merged, not a crash
    rotate.compress_past_days(tmp_path, NOW)
    assert list(store.read([tmp_path])) == [{"n": -1}]


def test_a_late_write_after_a_torn_compressed_tail_starts_on_a_line_of_its_own(
    tmp_path: Path,
) -> None:
    data = b"".join(json.dumps({"n": n, "pad": "x" * 50}).encode() + b"\n" for n in range(2000))
    whole = gzip.compress(data, mtime=0, compresslevel=1)
    (tmp_path / "2024-02-16.jsonl.gz").write_bytes(whole[: len(whole) // 2])  # ends mid-line
    day(tmp_path, "2024-02-16", [{"n": -1}])
    rotate.compress_past_days(tmp_path, NOW)
    stats = store.ReadStats()
    rows = list(store.read([tmp_path], stats))
    assert rows[-1] == {"n": -1} and [r["n"] for r in rows[:-1]] == list(range(len(rows) - 1))
    assert stats.skipped == 1  # the torn line alone, not glued to the late one


def test_the_cap_deletes_oldest_days_first_and_never_today(tmp_path: Path) -> None:
    for name in ("2024-02-14", "2024-02-15", "2024-02-16", "2024-02-17"):
        day(tmp_path, name, [{"pad": i} for i in range(100)])
    size = (tmp_path / "2024-02-17.jsonl").stat().st_size
    deleted = rotate.enforce_cap(tmp_path, 2 * size, NOW)
    assert [p.name for p in deleted] == ["2024-02-14.jsonl", "2024-02-15.jsonl"]
    assert [p.name for _, p in rotate.day_files(tmp_path)] == [
        "2024-02-16.jsonl",
        "2024-02-17.jsonl",
    ]
    rotate.enforce_cap(tmp_path, 0, NOW)
    assert [p.name for _, p in rotate.day_files(tmp_path)] == ["2024-02-17.jsonl"]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs root (mount a tmpfs) in CI")
        pytest.skip("needs root to mount a tiny tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill(disk: Path) -> None:
    """Write until the file system says ENOSPC (the filler keeps what fitted)."""
    with pytest.raises(OSError), open(disk / "filler", "wb", buffering=0) as f:
        while True:
            f.write(os.urandom(4096))


def test_a_full_disk_corrupts_nothing(tiny_disk: Path) -> None:
    rows = [{"n": i, "pad": os.urandom(32).hex()} for i in range(200)]
    plain = day(tiny_disk, "2024-02-16", rows)
    today = day(tiny_disk, "2024-02-17", [{"n": -1}])
    fill(tiny_disk)
    with pytest.raises(OSError):  # no room for the compressed copy
        rotate.compress_past_days(tiny_disk, NOW)
    assert list(store.read([plain])) == rows  # the original is untouched
    assert sorted(p.name for p in tiny_disk.iterdir()) == [
        "2024-02-16.jsonl",
        "2024-02-17.jsonl",
        "filler",
    ]  # no temporary left
    with pytest.raises(OSError):
        store.append(today, [{"n": i, "pad": "x" * 4096} for i in range(100)])
    assert next(iter(store.read([today]))) == {"n": -1}  # earlier lines survive a failed append
    assert rotate.low_disk(tiny_disk, 1)


def test_low_disk_stops_measuring_with_a_clear_line(
    tiny_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config(
        "c.toml",
        ("x.com",),
        ("www.example.com",),
        "www.example.com",
        (Resolver("udp", "127.0.0.1"),),
        storage=Storage(min_free_mb=1),
    )
    runner = Runner(config, tiny_disk, tiny_disk)
    logging.getLogger("probe").propagate = True  # a CLI test may have turned it off
    with caplog.at_level(logging.INFO, logger="probe"):
        assert runner.housekeeping(NOW) is False
        assert runner.housekeeping(NOW) is False  # said once, not on every campaign
        empty = Runner(config, tiny_disk.parent / "elsewhere", tiny_disk)
        assert empty.housekeeping(NOW) is True
    # The same record may reach caplog twice (its handler on both "probe" and the root logger,
    # depending on the pytest version): count distinct records.
    unique = {id(r): r for r in caplog.records}.values()
    stops = [r.message for r in unique if "measuring stops" in r.message]
    assert stops == [f"less than 1 MB free for {tiny_disk}: measuring stops until space is freed"]


def test_an_unusable_results_folder_is_not_called_a_full_disk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config("c.toml", ("x.com",), ("www.example.com",), "www.example.com",
                    (Resolver("udp", "127.0.0.1"),))  # fmt: skip
    (tmp_path / "file").write_text("where the results folder should be")
    runner = Runner(config, tmp_path / "file" / "results", tmp_path)
    logging.getLogger("probe").propagate = True  # a CLI test may have turned it off
    with caplog.at_level(logging.INFO, logger="probe"):
        assert runner.housekeeping(NOW) is False
    said = " ".join(r.message for r in caplog.records)
    assert "cannot use the results folder" in said and "free" not in said


def test_a_compression_killed_midway_leaves_a_temp_that_housekeeping_removes(
    tmp_path: Path,
) -> None:
    """A real SIGKILL during compression: the day is intact, the temp counts against the cap
    until the next housekeeping removes it."""
    past = day(tmp_path, "2024-02-16", [{"pad": os.urandom(512).hex()} for _ in range(40_000)])
    size = past.stat().st_size
    compress = (
        "import sys\nfrom pathlib import Path\nfrom probe import rotate\n"
        f"rotate.compress_past_days(Path(sys.argv[1]), {NOW})\n"
    )
    process = subprocess.Popen([sys.executable, "-c", compress, str(tmp_path)])
    deadline = time.monotonic() + 30
    while sum(t.stat().st_size for t in tmp_path.glob(".2024-02-16.jsonl.gz.*.tmp")) < 1 << 16:
        assert process.poll() is None and time.monotonic() < deadline, "no temp file seen"
        time.sleep(0.001)
    process.kill()
    process.wait()
    [temp] = tmp_path.glob(".2024-02-16.jsonl.gz.*.tmp")
    assert past.stat().st_size == size  # the original is untouched
    day(tmp_path, "2024-02-17", [{"today": 1}])
    # The temp counts: a cap that the day files alone would fit deletes the past day.
    assert rotate.enforce_cap(tmp_path, size + 30_000, NOW) == [past]
    config = Config("c.toml", ("x.com",), ("www.example.com",), "www.example.com",
                    (Resolver("udp", "127.0.0.1"),))  # fmt: skip
    assert Runner(config, tmp_path, tmp_path).housekeeping(NOW) is True
    assert not temp.exists()
    assert [p.name for _, p in rotate.day_files(tmp_path)] == ["2024-02-17.jsonl"]

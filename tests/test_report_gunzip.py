"""ISA-L inflating ``.gz`` files for DuckDB: only files that are one gzip member of the size
their trailer states are served; any other is read by DuckDB's own inflater, none is lost."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("duckdb", reason="the report needs the project's [report] extra")
pytest.importorskip("isal", reason="the report needs the project's [report] extra")
pytest.importorskip("fsspec", reason="the report needs the project's [report] extra")

from test_report import measurement

from probe.report import gunzip
from probe.report.engine import build


def lines(isp: str, runs: range) -> bytes:
    return b"".join(json.dumps(measurement(isp, r, "x.com", "blocked")).encode() + b"\n"
                    for r in runs)  # fmt: skip


def test_a_single_member_file_is_inflated_by_isal_as_its_trailer_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = lines("a", range(50))
    (tmp_path / "one.jsonl.gz").write_bytes(gzip.compress(data))
    path = tmp_path / "one.jsonl.gz"
    assert gunzip.claimed_size(path) == len(data)
    assert gunzip.served_name(path) == f"probe-gunzip://{tmp_path}/one.jsonl"
    assert gunzip.inflate(path)[0] == data
    inflated: list[Path] = []

    def spy(p: Path) -> tuple[bytes, os.stat_result]:
        inflated.append(p)
        return data, os.stat(p)

    monkeypatch.setattr(gunzip, "inflate", spy)
    assert build([tmp_path]).targets == 50
    assert inflated == [path]  # DuckDB read the file through ISA-L


def test_files_isal_cannot_serve_are_read_by_duckdb_itself(tmp_path: Path) -> None:
    first, second = lines("a", range(30)), lines("a", range(30, 60))
    two = tmp_path / "two-members.jsonl.gz"  # `cat a.gz b.gz`: the trailer tells b's size only
    two.write_bytes(gzip.compress(first) + gzip.compress(second))
    with pytest.raises(gunzip.Unfit):
        gunzip.inflate(two)
    whole = gzip.compress(lines("b", range(60)))
    torn = tmp_path / "torn.jsonl.gz"  # the trailer is gone: whatever its last 4 bytes say
    torn.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(gunzip.Unfit):
        gunzip.inflate(torn)
    report = build([tmp_path])
    assert report.targets == 60  # both members, nothing of the torn file
    assert report.skipped == {"unreadable file (IOException)": 1}


def test_a_file_claiming_more_than_fits_in_memory_is_not_served(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress(lines("a", range(5)))[:-4] + (1 << 30).to_bytes(4, "little"))
    assert gunzip.claimed_size(path) is None and gunzip.served_name(path) is None
    assert build([tmp_path]).targets == 5  # DuckDB's inflater does not check the trailer


def test_without_isal_duckdb_inflates_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "one.jsonl.gz").write_bytes(gzip.compress(lines("a", range(20))))
    monkeypatch.setattr(gunzip, "AbstractFileSystem", None)
    assert gunzip.served_name(tmp_path / "one.jsonl.gz") is None
    assert build([tmp_path]).targets == 20


def test_a_file_replaced_while_read_is_not_cut_to_the_new_size(tmp_path: Path) -> None:
    path = tmp_path / "day.jsonl.gz"
    path.write_bytes(gzip.compress(lines("a", range(8))))
    served = gunzip.served_name(path)
    assert served is not None
    fs = gunzip._Inflated()
    assert fs.info(served)["size"] == len(lines("a", range(8)))
    fs.open(served, "rb")  # as DuckDB does: then it asks the size
    replacement = tmp_path / "new.gz"
    replacement.write_bytes(gzip.compress(lines("a", range(5))))
    replacement.replace(path)  # as a volunteer's upload or the rotation would
    with pytest.raises(gunzip.Unfit):
        fs.info(served)  # DuckDB would read 8 lines' bytes as if 5 lines long

"""The write-time index: written with each measurement, a cache the report trusts only while
it matches its day file, rebuilt by ``probe reindex``; and the pipeline's verdict step."""

from __future__ import annotations

import copy
import gzip
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("duckdb", reason="the report needs the project's [report] extra (duckdb)")

from test_report import archive, measurement

from probe import index, rotate, store
from probe.__main__ import main
from probe.pipeline import scored
from probe.report.engine import build
from probe.report.scan import _FAMILY, _HOST, connect
from probe.verdict import ANALYSIS_VERSION


def indexed_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for day in store.iter_files([target]):
        index.rebuild(day)
    return target


def test_the_report_from_indexes_equals_the_report_from_raw_lines(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    raw = archive(tmp_path / "raw")
    with_indexes = indexed_copy(raw, tmp_path / "indexed")
    assert (with_indexes / "b.index.csv.gz").exists()  # a .gz day's index is compressed
    from_raw, from_index = build([raw], bucket=600), build([with_indexes], bucket=600)
    # the line of older rules was re-scored once, when indexed
    assert from_raw.rescored == 1 and from_index.rescored == 0
    assert replace(from_index, rescored=1) == from_raw


def test_an_index_behind_its_file_is_not_trusted(tmp_path: Path) -> None:
    day = tmp_path / "2024-02-17.jsonl"
    lines = [measurement("a", run, "x.com", "blocked") for run in range(3)]
    store.append(day, lines[:2])
    index.rebuild(day)
    with open(day, "ab") as f:  # appended by someone else: not in the index
        f.write(json.dumps(lines[2]).encode() + b"\n")
    assert build([tmp_path], bucket=600).targets == 3
    index.rebuild(day)
    (tmp_path / "2024-02-17.index.csv").write_text("uid,garbage\n")  # another version's
    assert build([tmp_path], bucket=600).targets == 3


def test_the_writer_indexes_each_line_and_catches_up_after_a_crash(tmp_path: Path) -> None:
    day = tmp_path / "2024-02-17.jsonl"
    ms = [measurement("a", run, "x.com", "blocked") for run in range(3)]
    [(start, length)] = store.append_lines(day, [ms[0]])
    index.append(day, ms[0], start, length)
    store.append(day, [ms[1]])  # a crash before its index row
    [(start, length)] = store.append_lines(day, [ms[2]])
    index.append(day, ms[2], start, length)  # the index is behind: rebuilt
    text = (tmp_path / "2024-02-17.index.csv").read_text().splitlines()
    assert text[0] == ",".join(index.COLUMNS) and len(text) == 4
    assert text[-1].endswith(f",{start},{length}")
    rows = [dict(zip(index.COLUMNS, line.split(","), strict=True)) for line in text[1:]]
    assert [r["uid"] for r in rows] == [m["measurement_uid"] for m in ms]
    assert rows[0]["time"] == "1708164000.000000" and rows[0]["family"] == "x.com"
    assert {r["status"] for r in rows} == {"blocked"}


def test_a_stale_row_is_re_scored_from_its_line(tmp_path: Path) -> None:
    m = measurement("a", 0, "x.com", "blocked")  # no observations: the rules say otherwise
    m["test_keys"]["x_analysis_version"] = "0"
    store.append(tmp_path / "2024-02-17.jsonl", [m])
    day = tmp_path / "2024-02-17.jsonl"
    index.rebuild(day)  # re-scored when indexed: the current rules' verdict
    fresh = build([tmp_path], bucket=600)
    text = (tmp_path / "2024-02-17.index.csv").read_text()
    fmt = m["x_format_version"]
    old = text.replace(f",{ANALYSIS_VERSION},{fmt},", f",0,{fmt},")
    old = old.replace(",inconclusive,", ",blocked,")
    assert old != text
    (tmp_path / "2024-02-17.index.csv").write_text(old)
    again = build([tmp_path], bucket=600)
    assert again.rescored == 1 and again.cells == fresh.cells


def test_compression_and_the_cap_take_the_index_along(tmp_path: Path) -> None:
    day = tmp_path / "2024-02-17.jsonl"
    ms = [measurement("a", run, "x.com", "blocked") for run in range(3)]
    for m in ms:
        [(start, length)] = store.append_lines(day, [m])
        index.append(day, m, start, length)
    report, size = build([tmp_path], bucket=600), day.stat().st_size
    rotate.compress_past_days(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2024-02-17.index.csv.gz",
                                                           "2024-02-17.jsonl.gz"]  # fmt: skip
    assert index.data_size(tmp_path / "2024-02-17.jsonl.gz") == size
    assert build([tmp_path], bucket=600) == report
    assert rotate.enforce_cap(tmp_path, 0) == [tmp_path / "2024-02-17.jsonl.gz",
                                               tmp_path / "2024-02-17.index.csv.gz"]  # fmt: skip


def test_probe_reindex_rebuilds_every_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "raw").mkdir()
    raw = archive(tmp_path / "raw")
    assert main(["reindex", str(raw)]) == 0
    assert (raw / "c" / "2024-02-17.index.csv").exists()
    assert "indexed" in capsys.readouterr().out


def test_one_family_for_the_index_and_the_report() -> None:
    urls = ["https://x.com/", "https://WWW.Dawn.com.pk/a", "https://pbs.twimg.com:443/",
            "http://[2001:db8::1]/", "https://203.0.113.9/", "https://localhost/", "nonsense",
            "https://a.b.co.uk/", "https://x.com./", "https://t.co?q"]  # fmt: skip
    con = connect()
    sql = f"SELECT (SELECT {_FAMILY} FROM (SELECT {_HOST} AS host)) FROM (SELECT $u AS input)"
    for url in urls:
        assert index.family(url) == con.execute(sql, {"u": url}).fetchone()[0], url  # type: ignore[index]


def test_the_verdict_step_returns_a_new_measurement() -> None:
    m: dict[str, Any] = measurement("a", 0, "x.com", None)
    del m["test_keys"]["x_verdict"]
    before = copy.deepcopy(m)
    out = scored(m)
    assert m == before
    assert {"x_analysis_version", "blocking", "accessible", "x_verdict"} <= set(out["test_keys"])


def test_gz_size_is_the_uncompressed_size(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress(b"a" * 1000))
    assert index.data_size(path) == 1000


def test_probe_run_writes_an_index_the_report_trusts(tmp_path: Path, probe_state: Path) -> None:
    from loopback import internet

    records = {"x.com": {"A": ["127.0.0.1"]}, "www.example.com": {"A": ["127.0.0.1"]}}
    out = tmp_path / "out"
    with internet(tmp_path, records) as net:
        config = tmp_path / "config.toml"
        config.write_text(net.config(["x.com"], ["www.example.com"]))
        for _ in range(2):
            assert main(["run", "--once", "--config", str(config), "--output", str(out)]) == 0
    [day] = store.iter_files([out])
    text = index.index_of(day).read_text().splitlines()
    assert len(text) == 5  # the header, 2 runs x (a target, a control)
    *_, start, length = text[-1].split(",")
    assert int(start) + int(length) == day.stat().st_size
    with_index = build([out], bucket=600)
    index.index_of(day).unlink()
    assert build([out], bucket=600) == with_index and with_index.targets == 2

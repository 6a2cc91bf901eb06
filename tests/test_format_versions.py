"""Files of every format version the probe ever wrote still read, with and without an index.

``tests/data/probe-formats/2024-02-17.jsonl`` was written once and is never regenerated: a
format-1 line (the lab's SNI-reset case), a format-2 line (keys sorted, verdict keys last, as
versions 1 and 2 wrote them) and a format-3 target and control (the key order format 3
promised) of a TCP reset.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("duckdb", reason="the report needs the project's [report] extra (duckdb)")

from probe import index
from probe.format.vocab import KNOWN_FORMAT_VERSIONS
from probe.report.engine import build
from probe.verdict import observations, verdict

DAY = Path(__file__).parent / "data" / "probe-formats" / "2024-02-17.jsonl"
LINES = [json.loads(line) for line in DAY.read_text().splitlines()]


def test_the_fixture_holds_every_old_version() -> None:
    assert [m["x_format_version"] for m in LINES] == ["1", "2", "3", "3"]
    assert {m["x_format_version"] for m in LINES} <= KNOWN_FORMAT_VERSIONS


@pytest.mark.parametrize("m", LINES[:3], ids=["format 1", "format 2", "format 3"])
def test_the_verdict_reads_every_old_version(m: dict[str, object]) -> None:
    assert observations(m).problems == ()
    v = verdict(m)
    assert (v.status, v.detail) == (
        ("blocked", "tls.sni_reset")
        if m["x_format_version"] == "1"
        else ("blocked", "tcp_ip.reset")
    )


@pytest.mark.parametrize("indexed", [False, True], ids=["raw lines", "index"])
def test_the_report_reads_every_old_version(tmp_path: Path, indexed: bool) -> None:
    day = tmp_path / DAY.name
    shutil.copyfile(DAY, day)
    if indexed:
        assert index.rebuild(day) == len(LINES)
        assert index.index_of(day).exists()
    report = build([tmp_path], bucket=86400)
    assert (report.targets, report.controls, dict(report.skipped)) == (3, 1, {})
    (every,) = [s for s in report.series if s.family == "X"]
    assert (every.measured, every.blocked) == (3, 3)

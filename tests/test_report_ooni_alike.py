"""The report scores OONI lines alike but for timings once (issue 16 item 7).

Lines whose :data:`probe.format.ooni.EVIDENCE_KEYS` differ only in
:data:`probe.format.ooni.TIMINGS` are one group in :mod:`probe.report.engine`, scored from
one of its lines; the figures must be those of scoring every line, the verdict must read
nothing else, and the timings must indeed decide nothing on OONI's data.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_report_ooni import cases

import probe.report.engine as engine
import probe.report.scan as scan
from probe.format.ooni import EVIDENCE_KEYS, TIMINGS
from probe.report.engine import build
from probe.verdict import verdict


def _retimed(m: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """``m`` with every step's t0/t and test_runtime drawn anew (as another run would have)."""
    text = json.dumps(m, separators=(",", ":"))
    timing = r'"(t0|t|test_runtime)":-?[0-9][0-9.eE+-]*'
    text = re.sub(timing, lambda x: f'"{x[1]}":{rng.uniform(0.001, 30.0):.6f}', text)
    return json.loads(text)  # type: ignore[no-any-return]


def _measurements() -> list[dict[str, Any]]:
    found = sorted(cases().glob("*/measurement.json"))
    return [json.loads(path.read_text()) for path in found]


def test_timings_decide_nothing_on_ooni_data() -> None:
    rng = random.Random(7)
    for m in _measurements():
        before = verdict(m)
        for _ in range(2):
            after = verdict(_retimed(m, rng))
            said = (after.status, after.method, after.detail, after.confidence)
            assert said == (before.status, before.method, before.detail, before.confidence)


def test_the_verdict_reads_only_the_evidence_keys() -> None:
    for m in _measurements():
        narrow = {k: m[k] for k in EVIDENCE_KEYS if k in m}
        assert verdict(narrow) == verdict(m), m["input"]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Every minipipeline case twice per network, each copy with its own timings, start time
    and report id, over 2 networks, in .jsonl.gz files."""
    rng = random.Random(1)
    for n, asn in enumerate(("AS64500", "AS64501")):
        lines = []
        for i, m in enumerate(_measurements() * 2):
            start = f"2024-02-{10 + i % 7} 1{i % 10}:00:00"
            m = _retimed(m, rng) | {"probe_asn": asn, "report_id": f"r{n}-{i}",
                                   "measurement_start_time": start}  # fmt: skip
            lines.append(json.dumps(m, separators=(",", ":")))
        (tmp_path / f"{asn}.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    return tmp_path


def test_alike_lines_are_scored_once_with_every_line_s_figures(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scored: list[str] = []
    score = engine._score

    def counted(line: str) -> tuple[str | None, str | None, str | None, str | None]:
        scored.append(line)
        return score(line)

    monkeypatch.setattr(engine, "_score", counted)
    monkeypatch.setattr(engine, "POOL_FROM", 10**9)  # count in this process
    grouped = build([archive])
    assert len(scored) == len(_measurements())  # one line per case: its copies are alike
    scored.clear()
    monkeypatch.setattr(scan, "TIMINGS", "a^")  # matches nothing: every line its own group
    each = build([archive])
    assert len(scored) == each.targets == grouped.targets == 2 * 2 * len(_measurements())
    assert grouped.cells == each.cells
    # a series' detail is the mode of its cells' details, whose ties DuckDB breaks by row order
    untied = [replace(x, detail=None) for x in grouped.series]
    assert untied == [replace(x, detail=None) for x in each.series]
    assert [x.blocked_by for x in grouped.series] == [x.blocked_by for x in each.series]
    assert (grouped.lines, grouped.duplicates, grouped.skipped) == (
        each.lines, each.duplicates, each.skipped)  # fmt: skip


def test_only_json_numbers_are_timings() -> None:
    """A malformed timing is evidence text: a broken line never groups with good ones."""
    for timing in ('"t":1.5', '"t0":0', '"t":-2e-3', '"t0":12'):
        assert re.fullmatch(TIMINGS, timing), timing
    for broken in ('"t":1.5.5', '"t":01', '"t":1e', '"t":+1', '"tt":1'):
        assert not re.fullmatch(TIMINGS, broken), broken

"""The HTML report's charts fill the page at any time span, and no label is cut or overlaps
another: checked on the page as headless Chromium lays it out (``--dump-dom`` after a script
wrote the boxes of the charts and their labels into the DOM), for a run of minutes and one of
weeks, in a wide and a narrow window. Skipped without Chromium, except in CI (see
test_report_html)."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("duckdb", reason="the report needs the project's [report] extra (duckdb)")

from test_report import T0, measurement
from test_report_html import browse

from probe.report.engine import build
from probe.report.html import render

LONG_NAME = "Pakistan Telecommunication Company Limited, a very long network name indeed"
TARGETS = ("x.com", "twitter.com", "pbs.twimg.com")

# Written into <body data-layout> once the page's own script has drawn the charts.
MEASURE = """<script>
const box = e => { const r = e.getBoundingClientRect();
  return {l: r.left, r: r.right, t: r.top, b: r.bottom, text: e.firstChild?.nodeValue}; };
const chart = id => { const svg = document.querySelector('#' + id + ' svg');
  return {svg: box(svg), texts: [...svg.querySelectorAll('text')].map(box),
          cells: [...svg.querySelectorAll('rect.cell')].map(box)}; };
document.body.dataset.layout = JSON.stringify({page: document.documentElement.clientWidth,
  heatmap: chart('heatmap'), timelines: chart('timelines')});
</script></body>"""


def archive(root: Path, runs: int, every: timedelta) -> Path:
    """Three ISPs: one with a very long name, one where x.com is blocked and twimg.com open."""
    lines = []
    for run in range(runs):
        for isp in ("a", "b", "c"):
            for domain in TARGETS:
                status = "ok" if isp == "c" or (isp == "b" and "twimg" in domain) else "blocked"
                m = measurement(isp, 0, domain, status)
                m["measurement_start_time"] = (T0 + run * every).strftime("%Y-%m-%d %H:%M:%S")
                m["measurement_uid"] = f"{isp}-{run}-{domain}"
                m["report_id"] = f"{isp}-{run}"  # one run
                if isp == "a":
                    m["probe_network_name"] = LONG_NAME
                lines.append(json.dumps(m))
    (root / "m.jsonl").write_text("\n".join(lines) + "\n")
    return root


def layout(tmp_path: Path, runs: int, every: timedelta, width: int) -> dict[str, Any]:
    (tmp_path / "archive").mkdir()
    root = archive(tmp_path / "archive", runs, every)
    page = tmp_path / "report.html"
    page.write_text(render(build([root])).replace("</body>", MEASURE), encoding="utf-8")
    dom = browse(page, tmp_path, "--dump-dom", f"--window-size={width},900").stdout
    assert "data-errors" not in dom
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found, "the page did not draw its charts"
    return json.loads(html.unescape(found.group(1)))  # type: ignore[no-any-return]


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["l"] < b["r"] - 0.5
        and b["l"] < a["r"] - 0.5
        and a["t"] < b["b"] - 0.5
        and (b["t"] < a["b"] - 0.5)
    )


@pytest.mark.parametrize(
    ("runs", "every", "width"),
    [
        (12, timedelta(seconds=20), 1400),  # four minutes: a handful of columns
        (3 * 7 * 24, timedelta(hours=1), 1400),  # three weeks
        (3 * 7 * 24, timedelta(hours=1), 700),  # ... in a narrow window
    ],
    ids=["minutes", "weeks", "weeks-narrow"],
)
def test_the_charts_fill_the_page_and_no_label_is_cut_or_overlaps(
    tmp_path: Path, runs: int, every: timedelta, width: int
) -> None:
    found = layout(tmp_path, runs, every, width)
    for name in ("heatmap", "timelines"):
        chart = found[name]
        svg, texts, cells = chart["svg"], chart["texts"], chart["cells"]
        assert svg["r"] - svg["l"] >= found["page"] / 2, f"{name} narrower than half the page"
        ticks = [t for t in texts if t["t"] > svg["t"] + 3 * 18]  # below the three rows
        assert len(ticks) >= 3, f"{name}: axis labels {ticks}"
        assert len({t["text"] for t in ticks}) == len(ticks), f"{name}: a label repeats"
        for i, a in enumerate(texts):
            assert svg["l"] - 0.5 <= a["l"] and a["r"] <= svg["r"] + 0.5, f"{name}: cut {a}"
            assert not [b for b in texts[i + 1 :] if overlap(a, b)], f"{name}: overlap at {a}"
            assert not [c for c in cells if overlap(a, c)], f"{name}: {a} over the cells"
    cells = found["heatmap"]["cells"]
    assert max(c["r"] for c in cells) - min(c["l"] for c in cells) >= found["page"] / 3
    labels = [t["text"] for t in found["heatmap"]["texts"][:3]]
    assert labels[0].startswith("AS64500 Pakistan Telecommunication")  # shortened, not cut
    assert labels[1:] == ["AS64501 Lab ISP B", "AS64502 Lab ISP C"]


def test_an_isp_with_an_open_family_is_not_100_percent_blocked(tmp_path: Path) -> None:
    text = render(build([archive(tmp_path, 12, timedelta(seconds=20))]))
    # As its sentence says it: "twitter.com, x.com blocked 100% ...; twimg.com open 100% ..."
    row = re.search(r"<tr><td>AS64501 Lab ISP B</td>(.*?)</tr>", text)
    assert row and "<td>twitter.com 100%, x.com 100%, twimg.com 0%</td>" in row.group(1)
    assert "twitter.com, x.com blocked 100% of the time by TLS SNI reset; twimg.com open" in text
    row = re.search(r"<tr><td>AS64502 Lab ISP C</td>(.*?)</tr>", text)
    assert row and "<td>0%</td>" in row.group(1)  # every family alike: one figure

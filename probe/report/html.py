"""The report as one self-contained HTML file: no network, no CDN, inline CSS, JS and SVG.

The words (sentences, sample sizes, method breakdown, caveats) are static
HTML, readable without JavaScript. The charts are drawn by a small inline
script from compact JSON embedded in the page: a heatmap (rows ISPs, columns
time buckets, colour the blocked share, a stripe of the method's colour,
hatching for no data, slate for outages) and per-ISP timelines of the open
windows, both for the domain family picked in a selector. Errors of the
script are written to ``<html data-errors>`` and a finished drawing sets
``<body data-rendered>``, so a headless browser test can check both.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any, Final

from probe.format.vocab import Method
from probe.report.model import ALL, METHODS, Report
from probe.report.text import (
    SOURCE_NAMES,
    blocked_time,
    by_isp,
    duration,
    isp_label,
    method_words,
    sentence,
    utc,
)

__all__ = ["render"]

_CSS: Final = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 8px;border-bottom:1px solid #ddd;
text-align:right}td:first-child,th:first-child{text-align:left}
.sent li{margin:3px 0}.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:12px;height:12px;vertical-align:middle;margin-right:4px;
border:1px solid #999}.bar{display:inline-block;height:10px;background:#1565c0}
.note{color:#555}svg text{font:11px system-ui,sans-serif;fill:#333}
"""
_COLOURS: Final[Mapping[str, str]] = {
    Method.DNS: "#6a1b9a", Method.TCP_IP: "#ef6c00", Method.TLS: "#1565c0",
    Method.HTTP: "#00838f", Method.THROTTLING: "#f9a825",
}  # fmt: skip
_JS: Final = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const NS = 'http://www.w3.org/2000/svg';
function el(name, attrs, parent, text) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function mix(share) {  // open (pale green) -> blocked (red)
  const a = [232, 245, 233], b = [198, 40, 40];
  return 'rgb(' + a.map((x, i) => Math.round(x + (b[i] - x) * share)).join(',') + ')';
}
function fmt(t) { return new Date(t * 1000).toISOString().slice(0, 16).replace('T', ' '); }
const ROW = 18, GAP = 14, PAD = 6;
// Ticks say no more than the buckets can tell apart: seconds for 10 s buckets, the day for
// days; the date of a short run is said once, at the axis' left.
function tick(t) {
  const iso = new Date(t * 1000).toISOString(), span = D.columns * D.bucket;
  if (D.bucket < 60) return iso.slice(11, 19);
  if (span <= 2 * 86400 && D.bucket < 86400) return iso.slice(11, 16);
  if (D.bucket < 86400) return iso.slice(5, 16).replace('T', ' ');
  return span > 300 * 86400 ? iso.slice(0, 10) : iso.slice(5, 10);
}
function textWidth(svg, text) {
  const t = el('text', {x: 0, y: -100}, svg, text);
  const w = t.getComputedTextLength();
  svg.removeChild(t);
  return w;
}
function fit(svg, text, room) {  // the text, shortened with an ellipsis to fit room px
  if (textWidth(svg, text) <= room) return text;
  let n = text.length;
  while (n > 1 && textWidth(svg, text.slice(0, n) + '\u2026') > room) n--;
  return text.slice(0, n) + '\u2026';
}
// An SVG as wide as its box (drawn 1:1, redrawn on resize): a label column as wide as the
// widest ISP label (at most 40% of the width), the plot in the rest.
function frame(id) {
  const box = document.getElementById(id);
  box.textContent = '';
  const width = Math.max(240, box.clientWidth), height = D.isps.length * ROW + 30;
  const svg = el('svg', {width: '100%', height: height, viewBox: '0 0 ' + width + ' ' + height,
                         role: 'img'}, box);
  const widest = Math.max(textWidth(svg, 'UTC 0000-00-00'),
                          ...D.isps.map(isp => textWidth(svg, isp.label)));
  const label = Math.min(Math.ceil(widest) + GAP, Math.floor(0.4 * width));
  D.isps.forEach((isp, r) => {
    const t = el('text', {x: 0, y: r * ROW + 13, class: 'label'}, svg,
                 fit(svg, isp.label, label - GAP));
    el('title', {}, t, isp.label);
  });
  return {svg: svg, x0: label, plot: width - label - PAD};
}
function axis(f) {
  const y = D.isps.length * ROW + 14, cw = f.plot / Math.max(1, D.columns);
  const span = D.columns * D.bucket;
  el('text', {x: 0, y: y, class: 'tick'}, f.svg,
     span <= 2 * 86400 ? 'UTC ' + new Date(D.start * 1000).toISOString().slice(0, 10) : 'UTC');
  const room = textWidth(f.svg, tick(D.start)) + GAP;  // every tick is as long as the first
  const step = Math.max(1, Math.ceil(room / cw));
  let last = '';
  for (let i = 0; i < D.columns; i += step) {
    const text = tick(D.start + i * D.bucket), x = f.x0 + i * cw;
    if (text === last || x + room - GAP > f.x0 + f.plot) continue;
    el('line', {x1: x, x2: x, y1: y - 11, y2: y - 8, stroke: '#777'}, f.svg);
    el('text', {x: x, y: y, class: 'tick'}, f.svg, text);
    last = text;
  }
}
function heatmap(family) {
  const f = frame('heatmap'), svg = f.svg, cw = f.plot / Math.max(1, D.columns);
  const defs = el('defs', {}, svg);
  const p = el('pattern', {id: 'nodata', width: 4, height: 4, patternUnits: 'userSpaceOnUse'},
               defs);
  el('rect', {width: 4, height: 4, fill: '#fafafa'}, p);
  el('path', {d: 'M0,4 L4,0', stroke: '#bbb', 'stroke-width': 1}, p);
  let cells = 0;
  D.isps.forEach((isp, r) => {
    const y = r * ROW;
    const row = isp.cells[family] || [];
    for (let i = 0; i < D.columns; i++) {
      const c = row[i];
      const x = f.x0 + i * cw;
      let fill = 'url(#nodata)', tip = fmt(D.start + i * D.bucket) + ': no data';
      if (c) {
        const [n, blocked, down, method] = c;
        tip = fmt(D.start + i * D.bucket) + ': ' + n + ' measured';
        if (down >= 50) { fill = '#37474f'; tip += ', network down ' + down + '%'; }
        else if (blocked < 0) { fill = '#bdbdbd'; tip += ', inconclusive'; }
        else { fill = mix(blocked / 100); tip += ', blocked ' + blocked + '%'; }
        if (method >= 0) tip += ' (' + D.details[method] + ')';
      }
      // A hair wider than the column: no seams of the background between fractional cells.
      const rect = el('rect', {x: x, y: y + 2, width: cw + 0.5, height: ROW - 3, fill: fill,
                               class: 'cell'}, svg);
      el('title', {}, rect, tip);
      if (c && c[3] >= 0 && c[1] > 0) {
        el('rect', {x: x, y: y + 2, width: cw, height: 3, fill: D.colours[c[3]]}, svg);
      }
      cells++;
    }
  });
  axis(f);
  return cells;
}
function timelines(family) {
  const f = frame('timelines'), svg = f.svg, width = f.plot;
  const span = Math.max(1, D.columns * D.bucket);
  let windows = 0;
  D.isps.forEach((isp, r) => {
    const y = r * ROW;
    const row = isp.cells[family] || [];
    for (let i = 0; i < D.columns; i++) {
      const c = row[i];
      const fill = !c ? '#eeeeee' : c[2] >= 50 ? '#37474f' : c[1] > 0 ? '#c62828' : '#a5d6a7';
      el('rect', {x: f.x0 + i * width / D.columns, y: y + 4, height: ROW - 7,
                  width: width / D.columns + 0.5, fill: fill}, svg);
    }
    for (const [a, b] of (isp.windows[family] || [])) {
      const x = f.x0 + (a - D.start) / span * width;
      const w = Math.min(Math.max(1.5, (b - a) / span * width), f.x0 + width - x);
      const rect = el('rect', {x: x, y: y + 2, width: w, height: ROW - 3, fill: '#2e7d32',
                               class: 'window'}, svg);
      el('title', {}, rect, 'open ' + fmt(a) + ' to ' + fmt(b));
      windows++;
    }
  });
  axis(f);
  return windows;
}
function draw() {
  const family = document.getElementById('family').value;
  const cells = heatmap(family), windows = timelines(family);
  document.body.dataset.rendered = cells + ' cells, ' + windows + ' windows';
}
document.getElementById('family').addEventListener('change', draw);
let resized = 0;
window.addEventListener('resize', () => {
  clearTimeout(resized);
  resized = setTimeout(draw, 100);
});
draw();
"""


def _data(report: Report) -> dict[str, Any]:
    start = report.start // report.bucket * report.bucket if report.start is not None else 0
    columns = ((report.end or 0) - start) // report.bucket + 1 if report.start is not None else 0
    details: list[str] = []
    colours: list[str] = []
    isps: dict[tuple[str, str], dict[str, Any]] = {}
    for s in report.series:
        isp = isps.setdefault((s.asn, s.source), {"label": isp_label(s), "cells": {},
                                                  "windows": {}})  # fmt: skip
        isp["cells"][s.family] = [0] * columns
        isp["windows"][s.family] = [[round(w.start), round(w.end)] for w in s.stats.windows]
    for c in report.cells:
        method = -1
        if c.detail is not None:
            if c.detail not in details:
                details.append(c.detail)
                colours.append(_COLOURS.get(c.detail.partition(".")[0], "#555"))
            method = details.index(c.detail)
        share = c.blocked_share
        isps[c.asn, c.source]["cells"][c.family][(c.bucket - start) // report.bucket] = [
            c.measured,
            -1 if share is None else round(100 * share),
            round(100 * c.down / c.measured) if c.measured else 0,
            method,
        ]
    return {"start": start, "bucket": report.bucket, "columns": columns,
            "details": [method_words(d) for d in details], "colours": colours,
            "isps": list(isps.values())}  # fmt: skip


def _families(report: Report) -> list[str]:
    return [ALL, *sorted({s.family for s in report.series} - {ALL})]


def _sample_table(report: Report) -> str:
    rows = []
    for group in by_isp(report):
        s = next(s for s in group if s.family == ALL)
        total = sum(s.blocked_by.values()) or 1
        bars = "".join(
            f"<td>{n} <span class=bar style='width:{60 * n // total}px;"
            f"background:{_COLOURS.get(m, '#555')}'></span></td>"
            for m, n in s.blocked_by.items() if m in METHODS
        )  # fmt: skip
        duty = html.escape(blocked_time(group))
        rows.append(
            f"<tr><td>{html.escape(isp_label(s))}</td><td>{s.measured}</td>"
            f"<td>{s.ok}</td><td>{s.blocked}</td><td>{s.down}</td><td>{s.inconclusive}</td>"
            f"<td>{duty}</td><td>{s.stats.switches}</td><td>{len(s.stats.windows)}</td>{bars}</tr>"
        )
    head = "".join(f"<th>{html.escape(method_words(m))}</th>" for m in METHODS)
    return (
        "<table><tr><th>ISP</th><th>measured</th><th>ok</th><th>blocked</th><th>down</th>"
        f"<th>inconclusive</th><th>blocked time</th><th>switches</th><th>open windows</th>{head}"
        f"</tr>{''.join(rows)}</table>"
    )


def _caveats(report: Report) -> list[str]:
    notes = [
        f"Verdicts are those of the current rules (version {report.analysis_version}): "
        f"{report.rescored} measurements written by older rules were re-scored; the others "
        "kept the verdict the same rules stored.",
        f"{report.duplicates} duplicate measurements (same measurement_uid) were counted once.",
        "A run is 'blocked' for a family when most of its targets were blocked. Open windows "
        "shorter than the time between runs can be missed; a window's ends are placed half "
        "way to the blocked runs around it, and windows at the edges of the data may be longer.",
        "An outage (the controls failed too) is 'down', never 'blocked'; inconclusive "
        "verdicts count as neither.",
    ]
    if "ooni" in report.sources:
        notes.append(
            "Rows marked (OONI data) are OONI's own web_connectivity measurements, scored by the "
            "same rules. OONI measures no control SNI on the same address, so TLS interference "
            "there reads 'TLS reset' or 'TLS stall': SNI filtering cannot be told from address "
            "filtering."
        )
    if report.skipped:
        parts = ", ".join(f"{n} {r}" for r, n in sorted(report.skipped.items()))
        notes.append(f"Skipped: {parts}.")
    return notes


def render(report: Report) -> str:
    """The whole page."""
    esc = html.escape
    items = "".join(f"<li>{esc(sentence(g))}</li>" for g in by_isp(report))
    per_source = ", ".join(f"{n} {SOURCE_NAMES.get(k, k)}" for k, n in report.sources.items())
    period = (
        f"{utc(report.start)} to {utc(report.end)}, buckets of {duration(report.bucket)}"
        if report.start is not None and report.end is not None
        else "no target measurements"
    )
    options = "".join(
        f"<option value='{esc(f)}'>{'every X target' if f == ALL else esc(f)}</option>"
        for f in _families(report)
    )
    legend = "".join(
        f"<span><i class=sw style='background:{c}'></i>{esc(method_words(m))}</span>"
        for m, c in _COLOURS.items()
    )
    # No "<" in a script at all: "</script>" would end it, "<!--<script>" hide the rest.
    data = json.dumps(_data(report), separators=(",", ":")).replace("<", "\\u003c")
    caveats = "".join(f"<li>{esc(c)}</li>" for c in _caveats(report))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>probe report: X reachability</title>
<script>window.onerror = function (m) {{
  const e = document.documentElement; e.dataset.errors = (e.dataset.errors || '') + m + ';'; }};
</script><style>{_CSS}</style></head><body>
<h1>X reachability by ISP</h1>
<p class=note>{esc(period)}. {report.targets} target measurements ({esc(per_source)}) from
{report.files} files.</p>
<h2>In one sentence per ISP</h2><ul class=sent>{items or "<li>No target measurements.</li>"}</ul>
<h2>Blocked share over time</h2>
<p><label>Domain family: <select id=family>{options}</select></label></p>
<p class=legend><span><i class=sw style='background:rgb(232,245,233)'></i>open</span>
<span><i class=sw style='background:rgb(198,40,40)'></i>blocked</span>
<span><i class=sw style='background:#37474f'></i>network down</span>
<span><i class=sw style='background:#bdbdbd'></i>inconclusive</span>
<span><i class=sw style='background:repeating-linear-gradient(45deg,#fafafa,#fafafa 2px,#bbb
3px)'></i>no data</span>
method stripe: {legend}</p>
<div id=heatmap></div>
<h2>Open windows</h2><p class=note>Green: open windows; red: blocked buckets; slate: network
down; grey: no data.</p><div id=timelines></div>
<h2>Sample sizes and methods (every X target)</h2>{_sample_table(report)}
<h2>Caveats</h2><ul>{caveats}</ul>
<script type="application/json" id=data>{data}</script>
<script>{_JS}</script>
</body></html>
"""

"""The lab evaluation's figures as ``probe lab eval`` prints them.

The confusion matrix, pooled recall, how the sporadic ISPs were scored (open windows seen,
onset and offset error), every wrong verdict with its evidence, the report's blocked share
of each switched ISP against the truth (:mod:`probe.lab.shares`), and PASS or FAIL.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from probe.lab import shares
from probe.lab.scoring import Evaluation, TruthWindow, as_asn, start_of
from probe.lab.windows import MIN_OPEN

__all__ = ["report", "shares_line"]


def report(directory: Path, r: Evaluation) -> str:
    lines = [
        f"lab evaluation of {directory}: {r.measured} measurements, every one scored against "
        f"the truth at its own time; {r.unreadable} unreadable; interval {r.interval:g} s",
        f"{'isp':<10} {'domain':<22} {'method':<11} {'tp':>5} {'fp':>4} {'fn':>4} {'tn':>5} "
        f"{'precision':>9} {'recall':>7}",
    ]
    for c in r.cells:
        lines.append(
            f"{c.isp:<10} {c.domain:<22} {c.method:<11} {c.tp:>5} {c.fp:>4} {c.fn:>4} {c.tn:>5} "
            f"{_percent(c.precision):>9} {_percent(c.recall):>7}"
        )
    pooled = ", ".join(f"{method} {value:.1%}" for method, value in r.recall.items())
    lines.append(f"recall by method: {pooled or 'nothing expected'}")
    lines += _sporadic_lines(r)
    lines.append(f"wrong verdicts: {len(r.errors)}")
    for e in r.errors:
        truth = ", ".join(e.active) or "open"
        lines.append(
            f"  {e.start} {e.isp} {e.domain} {e.uid}: {e.error}: truth {truth}; "
            f"got {e.status} {e.detail or ''}".rstrip()
        )
        lines.append(f"    {e.explanation}")
        lines.extend(f"    - {item}" for item in e.evidence[:6])
    lines.append("FAIL: " + "; ".join(r.failures) if r.failures else "PASS")
    return "\n".join(lines)


def _sporadic_lines(r: Evaluation) -> list[str]:
    """How the sporadic ISPs were scored, in plain words (issue 12: the demo says it)."""
    if not r.sporadic:
        return ["sporadic ISPs: none in this run"]
    w = r.windows
    isps = ", ".join(f"{isp} ({n} measurements)" for isp, n in r.sporadic.items())
    found = "-" if r.open_detected is None else f"{r.open_detected:.1%}"
    return [
        f"sporadic ISPs: {isps}: every measurement scored against the truth at its own start "
        f"time (x_measurement_start_time, the censor's switch times to the millisecond), none "
        f"left out; {r.straddling} ran across a switch and count as right when their verdict "
        f"matches the state on either side",
        f"open windows of >= {MIN_OPEN:g} s: {w.detected} of {w.open_windows} seen open "
        f"({found}); onset error {_seconds(w.onset_errors)}; "
        f"offset error {_seconds(w.offset_errors)}",
    ]


def _seconds(errors: Sequence[float]) -> str:
    if not errors:
        return "- (no switch timed)"
    return (
        f"median {statistics.median(errors):.1f} s, max {max(errors):.1f} s "
        f"over {len(errors)} switches"
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def shares_line(directory: Path, truth: Sequence[TruthWindow], rows: Sequence[Any]) -> str:
    """The report's blocked share of each ISP a censor switched on and off, and the truth's
    over the same span (:mod:`probe.lab.shares`)."""
    isp_of = {w.asn: w.isp for w in truth}
    switched: dict[str, tuple[str, list[tuple[datetime, datetime]]]] = {}
    for w in truth:
        if w.sporadic and w.method is not None:
            switched.setdefault(w.isp, (w.asn, []))[1].append((w.start, w.end))
    spans: dict[str, tuple[datetime, datetime]] = {}
    for m in filter(None, rows):
        isp, start = isp_of.get(as_asn(m.get("probe_asn", ""))), start_of(m)[0]
        if isp in switched and start is not None:
            first, last = spans.get(isp, (start, start))
            spans[isp] = (min(first, start), max(last, start))
    found = shares.compared(directory, switched, spans)
    if found is None:
        return "blocked share: no censor switched, or no DuckDB for the report ([report] extra)"
    return "blocked share in the report's sentence, of the same span in truth: " + ", ".join(
        s.shown() for s in found
    )

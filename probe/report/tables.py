"""The aggregate as CSV (one row per ASN x source x family x bucket) and as JSON (everything).

Times are UTC, ISO 8601 with a ``Z``; durations are seconds. The JSON holds the
summary counts, per ISP its sentence and per family the sporadic statistics
(duty cycle, switches, open windows, changepoints, method changes), and the
cells of the CSV.
"""

from __future__ import annotations

import csv
import io
import time
from typing import Any

from probe.report.model import METHODS, Cell, Report, Series
from probe.report.text import by_isp, sentence

__all__ = ["CSV_COLUMNS", "to_csv", "to_json"]

CSV_COLUMNS = (
    "asn", "network", "source", "family", "bucket_start", "bucket_seconds", "measured", "ok",
    "blocked", *(f"blocked_{m}" for m in METHODS), "blocked_other", "down", "inconclusive",
    "blocked_share", "detail",
)  # fmt: skip


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _share(cell: Cell) -> str:
    share = cell.blocked_share
    return "" if share is None else f"{share:.4f}"


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    networks = report.networks
    for c in report.cells:
        other = sum(n for m, n in c.blocked_by.items() if m not in METHODS)
        writer.writerow([
            c.asn, networks.get(c.asn, ""), c.source, c.family, iso(c.bucket), report.bucket,
            c.measured, c.ok, c.blocked, *(c.blocked_by.get(m, 0) for m in METHODS), other,
            c.down, c.inconclusive, _share(c), c.detail or "",
        ])  # fmt: skip
    return out.getvalue()


def _family(s: Series) -> dict[str, Any]:
    st = s.stats
    return {
        "family": s.family,
        "measured": s.measured,
        "ok": s.ok,
        "blocked": s.blocked,
        "blocked_by": dict(s.blocked_by),
        "down": s.down,
        "inconclusive": s.inconclusive,
        "detail": s.detail,
        "runs_decided": st.decided,
        "duty_cycle": st.duty_cycle,
        "duty_cycle_margin": st.duty_margin,
        "switches": st.switches,
        "open_windows": [
            {
                "start": iso(w.start),
                "end": iso(w.end),
                "seconds": w.length,
                "samples": w.samples,
                "censored": w.censored,
            }
            for w in st.windows
        ],
        "open_median_seconds": st.median_window,
        "open_longest_seconds": st.longest_window,
        "changepoints": [{"time": iso(c.t), "to": c.direction} for c in st.changepoints],
        "method_changes": [
            {"time": iso(c.t), "from": c.before, "to": c.after} for c in st.method_changes
        ],
    }


def to_json(report: Report) -> dict[str, Any]:
    return {
        "summary": {
            "files": report.files,
            "lines": report.lines,
            "targets": report.targets,
            "targets_by_source": dict(report.sources),
            "controls": report.controls,
            "duplicates": report.duplicates,
            "rescored": report.rescored,
            "filtered": report.filtered,
            "skipped": dict(report.skipped),
            "analysis_version": report.analysis_version,
            "bucket_seconds": report.bucket,
            "start": None if report.start is None else iso(report.start),
            "end": None if report.end is None else iso(report.end),
        },
        "isps": [
            {
                "asn": group[0].asn,
                "source": group[0].source,
                "network": group[0].network,
                "sentence": sentence(group),
                "families": [_family(s) for s in group],
            }
            for group in by_isp(report)
        ],
        "cells": [
            {
                "asn": c.asn,
                "source": c.source,
                "family": c.family,
                "bucket": iso(c.bucket),
                "measured": c.measured,
                "ok": c.ok,
                "blocked": c.blocked,
                "blocked_by": dict(c.blocked_by),
                "down": c.down,
                "inconclusive": c.inconclusive,
                "blocked_share": c.blocked_share,
                "detail": c.detail,
            }
            for c in report.cells
        ],
    }

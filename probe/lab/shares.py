"""The blocked share the report states for each switched ISP, against the lab's truth.

``probe report`` says of an ISP "X blocked 75% of the time": the duty cycle of its runs,
each owning half the gap to its neighbours (:mod:`probe.report.sporadic`), from runs at
Poisson times (PASTA: Poisson arrivals see time averages). For every ISP whose censor
switched (sporadic or periodic), the lab evaluation builds that report over the run's
files and states the figure next to the truth: the share of the same span (the ISP's
first to last measurement) during which a censor window was active. A short run has few
samples, so the two differ by chance; ``tests/test_report_share.py`` checks the estimate
over long synthetic streams.

The report needs DuckDB (the ``[report]`` extra): without it the figure is not stated.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["Share", "compared", "true_share"]


@dataclass(frozen=True, slots=True)
class Share:
    isp: str
    reported: float | None  # the report's duty cycle (None: no decided run)
    margin: float | None  # the report's 95% margin of it (probe.report.sporadic)
    truth: float  # the blocked share of the ISP's measured span

    def shown(self) -> str:
        said = "-" if self.reported is None else f"{round(100 * self.reported)}%"
        if self.margin:
            said += f" ±{round(100 * self.margin)}"
        return f"{self.isp} {said} (truth {self.truth:.1%})"


Window = tuple[datetime, datetime]  # (start, end)


def true_share(windows: Sequence[Window], start: datetime, end: datetime) -> float:
    """The share of [start, end] covered by at least one of ``windows`` (pure)."""
    if end <= start:
        return 0.0
    covered, reach = 0.0, start
    for w_start, w_end in sorted(windows):
        lo, hi = max(w_start, reach), min(w_end, end)
        if hi > lo:
            covered += (hi - lo).total_seconds()
            reach = hi
    return covered / (end - start).total_seconds()


def compared(
    directory: Path,
    switched: Mapping[str, tuple[str, Sequence[Window]]],
    spans: Mapping[str, tuple[datetime, datetime]],
) -> list[Share] | None:
    """The report's blocked share of each switched ISP (``switched``: ISP -> its ASN and
    censor windows; ``spans``: ISP -> its first and last measurement), or None without
    DuckDB."""
    if not switched or importlib.util.find_spec("duckdb") is None:
        return None
    from probe.report.engine import build  # the [report] extra
    from probe.report.model import ALL

    report = build([directory])
    stats = {s.asn: s.stats for s in report.series if s.family == ALL}
    return [
        Share(
            isp,
            stats[asn].duty_cycle if asn in stats else None,
            stats[asn].duty_margin if asn in stats else None,
            true_share(windows, *spans[isp]),
        )
        for isp, (asn, windows) in sorted(switched.items())
        if isp in spans
    ]

"""What a report holds: plain frozen records, shared by the engine and the renderers.

The engine (:mod:`probe.report.engine`) fills a :class:`Report`; the text, CSV,
JSON and HTML renderers only read it, so they never need DuckDB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from probe.format.vocab import Method
from probe.report.sporadic import Sporadic

__all__ = ["ALL", "BUCKETS", "METHODS", "Cell", "Report", "Series", "choose_bucket", "parse_bucket"]

#: The family label of "every X target together".
ALL: Final = "X"
#: The verdict methods of docs/format.md, in the order the outputs list them.
METHODS: Final = tuple(Method)
#: The bucket sizes AUTO chooses from, in seconds.
BUCKETS: Final = (10, 30, 60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400)
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_COLUMNS: Final = 240


@dataclass(frozen=True, slots=True)
class Cell:
    """One row of the aggregate: an ASN, a domain family and a time bucket."""

    asn: str
    source: str  # who measured: "probe" (ours) or "ooni" (OONI's probe)
    family: str  # a registrable domain ("x.com", "twimg.com") or ALL
    bucket: int  # start, seconds since the epoch (UTC)
    measured: int
    ok: int
    blocked: int
    down: int
    inconclusive: int
    blocked_by: Mapping[str, int]  # method -> blocked count (METHODS, plus any other seen)
    detail: str | None  # the most common blocking detail in the bucket, e.g. "tls.sni_reset"

    @property
    def blocked_share(self) -> float | None:
        """Blocked among the decided (ok or blocked) measurements; None: none decided."""
        decided = self.ok + self.blocked
        return self.blocked / decided if decided else None


@dataclass(frozen=True, slots=True)
class Series:
    """One ISP and one domain family over the whole period."""

    asn: str
    source: str
    network: str
    family: str
    measured: int
    ok: int
    blocked: int
    down: int
    inconclusive: int
    blocked_by: Mapping[str, int]
    detail: str | None  # the most common blocking detail over the period
    stats: Sporadic


@dataclass(frozen=True, slots=True)
class Report:
    files: int
    lines: int  # records read: lines, and the documents of whole-document (.json) files
    targets: int  # unique target measurements aggregated
    controls: int  # control rows read (no verdict needed, not aggregated)
    duplicates: int  # rows dropped because their measurement_uid was seen already
    rescored: int  # targets whose stored verdict was older than the current rules
    filtered: int  # unique measurements outside --since / --until
    skipped: Mapping[str, int]  # reason -> count of lines or files not used
    analysis_version: str
    bucket: int  # seconds
    start: int | None  # first and last measurement_start_time, seconds since the epoch
    end: int | None
    cells: tuple[Cell, ...]
    series: tuple[Series, ...]
    sources: Mapping[str, int]  # source -> targets aggregated (only the sources present)

    @property
    def networks(self) -> dict[str, str]:
        return {s.asn: s.network for s in self.series}


def parse_bucket(text: str) -> int | None:
    """``"5m"`` -> 300; ``"AUTO"`` -> None. Raises ValueError for anything else."""
    if text.upper() == "AUTO":
        return None
    number, unit = text[:-1], text[-1:].lower()
    if unit not in _UNITS or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"bucket must be AUTO or <n>s|m|h|d (e.g. 5m), not {text!r}")
    return int(number) * _UNITS[unit]


def choose_bucket(span: float, interval: float) -> int:
    """The smallest standard bucket that holds a run (``interval`` s apart) and keeps the
    heatmap within MAX_COLUMNS columns over ``span`` seconds."""
    for size in BUCKETS:
        if size >= interval and span / size <= MAX_COLUMNS:
            return size
    # Whole days beyond that (years of data, or a Pi without a clock that wrote 1970).
    day = BUCKETS[-1]
    return day * max(1, math.ceil(max(span / MAX_COLUMNS, interval) / day))

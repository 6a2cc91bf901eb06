"""Sporadic blocking as statistics: pure functions of a time series, no I/O.

The input is what the report's SQL hands over for one ISP and one domain
family: one :class:`Sample` per run (the state the majority of that family's
targets had in that run; ``unknown`` when none was decided because the network
was down or the verdicts were inconclusive), merged over every vantage point of
the ISP and sorted by time.

Time between samples is split at the midpoint: each decided sample "owns" half
of the gap to each decided neighbour, so a state change is placed half way
between the last sample of the old state and the first of the new one (the
best estimate of a change seen only at the sampling instants). A gap longer
than ``max_gap`` (a volunteer offline for a day) is no evidence of anything:
each side owns at most ``max_gap / 2`` of it. ``unknown`` samples are skipped:
an outage neither opens nor closes a window.

Changepoints come from a two-sided, state-aware CUSUM on the blocked share per
time bucket, the detector ooni/data runs on OONI's hourly buckets (Basseville
1993, 2.2.5): while *open* it accumulates evidence of a rise from ``mu_open``,
while *blocked* of a fall from ``mu_blocked``; the threshold is
``h = edd * (mu_blocked - mu_open) / 2`` for an expected detection delay of
``edd`` buckets. The first crossing from the initial *unknown* state only sets
the state: a series that starts blocked has no changepoint at its start.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

__all__ = [
    "Changepoint",
    "MethodChange",
    "Sample",
    "Sporadic",
    "Window",
    "cusum",
    "duty_cycle",
    "max_gap",
    "method_changes",
    "open_windows",
    "sporadic",
    "switches",
]

State = Literal["blocked", "open", "unknown"]


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the epoch (UTC)
    state: State


@dataclass(frozen=True, slots=True)
class Window:
    """A maximal stretch of ``open`` samples, with its estimated extent."""

    start: float  # midpoint to the blocked sample before (or the first open sample)
    end: float  # midpoint to the blocked sample after (or the last open sample)
    first_open: float
    last_open: float
    samples: int
    censored: bool  # touches the start or end of the series: the true window may be longer

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Changepoint:
    t: float  # the bucket where the detector crossed its threshold
    direction: Literal["blocked", "open"]  # the new state


@dataclass(frozen=True, slots=True)
class MethodChange:
    t: float
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class Sporadic:
    """Everything the report says about the sporadic behaviour of one series."""

    decided: int  # samples that were blocked or open
    duty_cycle: float | None  # share of the observed time blocked; None: nothing decided
    switches: int
    windows: tuple[Window, ...]
    changepoints: tuple[Changepoint, ...]
    method_changes: tuple[MethodChange, ...]

    @property
    def median_window(self) -> float | None:
        return statistics.median(w.length for w in self.windows) if self.windows else None

    @property
    def longest_window(self) -> float | None:
        return max(w.length for w in self.windows) if self.windows else None


def _decided(samples: Sequence[Sample]) -> list[Sample]:
    return [s for s in samples if s.state != "unknown"]


def _half_gap(a: float, b: float, max_gap: float) -> float:
    return min(b - a, max_gap) / 2


def max_gap(samples: Sequence[Sample], factor: float = 4.0, floor: float = 1.0) -> float:
    """The longest gap still taken as continuous observation: ``factor`` times the median
    interval between runs (at least ``floor`` seconds)."""
    gaps = [b.t - a.t for a, b in pairwise(samples) if b.t > a.t]
    return max(floor, factor * statistics.median(gaps)) if gaps else floor


def duty_cycle(samples: Sequence[Sample], max_gap: float) -> float | None:
    """Share of the observed time that was blocked (module docstring); None if nothing decided.

    With a single decided instant (no time to share) it is the share of blocked samples.
    """
    decided = _decided(samples)
    if not decided:
        return None
    owned = {"blocked": 0.0, "open": 0.0}
    for a, b in pairwise(decided):
        half = _half_gap(a.t, b.t, max_gap)
        owned[a.state] += half
        owned[b.state] += half
    total = owned["blocked"] + owned["open"]
    if total <= 0:
        return sum(s.state == "blocked" for s in decided) / len(decided)
    return owned["blocked"] / total


def switches(samples: Sequence[Sample]) -> int:
    """How many times the decided state flipped between blocked and open."""
    decided = _decided(samples)
    return sum(a.state != b.state for a, b in pairwise(decided))


def open_windows(samples: Sequence[Sample], max_gap: float) -> tuple[Window, ...]:
    """The open windows, each bounded by midpoints to the blocked samples around it."""
    decided = _decided(samples)
    windows = []
    i = 0
    while i < len(decided):
        if decided[i].state != "open":
            i += 1
            continue
        j = i
        while j + 1 < len(decided) and decided[j + 1].state == "open":
            j += 1
        first, last = decided[i].t, decided[j].t
        start = first - _half_gap(decided[i - 1].t, first, max_gap) if i > 0 else first
        after = j + 1 < len(decided)
        end = last + _half_gap(last, decided[j + 1].t, max_gap) if after else last
        windows.append(Window(start, end, first, last, j - i + 1, i == 0 or not after))
        i = j + 1
    return tuple(windows)


def cusum(
    buckets: Sequence[tuple[float, float, int]],
    mu_open: float = 0.0,
    mu_blocked: float = 0.7,
    edd: float = 5.0,
) -> tuple[Changepoint, ...]:
    """Changepoints of the blocked share; ``buckets`` are (t, blocked share, decided count).

    A bucket with no decided measurement (count 0) carries no evidence and is skipped.
    """
    v = mu_blocked - mu_open
    h = edd * v / 2
    state: State = "unknown"
    s_pos = s_neg = 0.0
    found = []
    for t, share, count in buckets:
        if count <= 0:
            continue
        if state != "blocked":  # evidence of a rise above the open level
            s_pos = max(0.0, s_pos + share - mu_open - v / 2)
        if state != "open":  # evidence of a fall below the blocked level
            s_neg = max(0.0, s_neg + mu_blocked - share - v / 2)
        new: Literal["blocked", "open"] | None = (
            "blocked" if s_pos > h else "open" if s_neg > h else None
        )
        if new is not None:
            if state != "unknown":
                found.append(Changepoint(t, new))
            state, s_pos, s_neg = new, 0.0, 0.0
    return tuple(found)


def method_changes(
    buckets: Sequence[tuple[float, str | None]], persist: int = 2
) -> tuple[MethodChange, ...]:
    """When the dominant blocking method changed; ``buckets`` are (t, method or None).

    Buckets without blocking are skipped; a new method must hold for ``persist``
    blocked buckets in a row to count, so a stray verdict is not a change.
    """
    seq = [(t, m) for t, m in buckets if m is not None]
    changes = []
    current: str | None = None
    for i, (t, m) in enumerate(seq):
        ahead = [x for _, x in seq[i : i + persist]]
        if current is None:
            current = m
        elif m != current and len(ahead) == persist and all(x == m for x in ahead):
            changes.append(MethodChange(t, current, m))
            current = m
    return tuple(changes)


def sporadic(
    samples: Sequence[Sample],
    buckets: Sequence[tuple[float, float, int]],
    methods: Sequence[tuple[float, str | None]],
    max_gap: float,
) -> Sporadic:
    """All the statistics of one series (samples per run; shares and methods per bucket)."""
    return Sporadic(
        decided=len(_decided(samples)),
        duty_cycle=duty_cycle(samples, max_gap),
        switches=switches(samples),
        windows=open_windows(samples, max_gap),
        changepoints=cusum(buckets),
        method_changes=method_changes(methods),
    )

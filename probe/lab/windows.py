"""A sporadic censor's open windows and switches against the samples that saw them (pure).

For one ISP and domain, the truth's sporadic windows (merged) are the blocked intervals;
the gaps between them, inside the span the samples cover, are the *open windows*. An open
window of at least ``min_open`` seconds is *detected* when one sample lay wholly inside it
and saw it open (verdict ``ok``): that is what shows a volunteer's data that access came
back. A switch is timed by the first sample that saw the new state: its start minus the
true switch time (0 for a sample that ran across the switch) is the *onset* error (a
blocked window's start) or the *offset* error (its end). A switch whose new state no
sample saw before the next switch is left untimed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

__all__ = ["MIN_OPEN", "Sample", "WindowStats", "analyse", "merge"]

MIN_OPEN: Final = 10.0  # seconds: shorter open windows are not counted (issue 14)

Interval = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class Sample:
    start: datetime
    end: datetime
    blocked: bool | None  # None: neither ok nor blocked (down, inconclusive)


@dataclass(frozen=True, slots=True)
class WindowStats:
    open_windows: int = 0  # true open windows >= MIN_OPEN inside the sampled span
    detected: int = 0  # ... of which a sample saw open
    onset_errors: tuple[float, ...] = ()  # seconds, one per timed onset
    offset_errors: tuple[float, ...] = ()

    def __add__(self, other: WindowStats) -> WindowStats:
        return WindowStats(
            self.open_windows + other.open_windows,
            self.detected + other.detected,
            self.onset_errors + other.onset_errors,
            self.offset_errors + other.offset_errors,
        )


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Overlapping or touching intervals joined, sorted."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def analyse(
    blocked: Iterable[Interval], samples: Sequence[Sample], min_open: float = MIN_OPEN
) -> WindowStats:
    """Open-window detection and switch timing of one ISP x domain (module docstring)."""
    if not samples:
        return WindowStats()
    windows = merge(blocked)
    first, last = min(s.start for s in samples), max(s.end for s in samples)
    edges = [first, *(t for w in windows for t in w), last]
    gaps = [(max(a, first), min(b, last)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    wide = [(a, b) for a, b in gaps if (b - a).total_seconds() >= min_open]
    detected = sum(
        any(s.blocked is False and a <= s.start and s.end <= b for s in samples) for a, b in wide
    )
    onsets, offsets = [], []
    for i, (start, end) in enumerate(windows):
        following = windows[i + 1][0] if i + 1 < len(windows) else last
        if first < start:
            onsets += _first_seen(samples, start, end, blocked=True)
        if end < last:
            offsets += _first_seen(samples, end, following, blocked=False)
    return WindowStats(len(wide), detected, tuple(onsets), tuple(offsets))


def _first_seen(
    samples: Sequence[Sample], switch: datetime, until: datetime, *, blocked: bool
) -> list[float]:
    # a sample that ran across the switch and saw the new state timed it to within its span
    seen = [s.start for s in samples if s.blocked is blocked and switch < s.end and s.start < until]
    return [max(0.0, (min(seen) - switch).total_seconds())] if seen else []

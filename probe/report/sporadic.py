"""Sporadic blocking as statistics: what they mean, and the ones over time buckets.

A *series* is one ISP, one source and one domain family: one sample per run
(the state the majority of that family's targets had in that run; ``unknown``
when none was decided because the network was down or the verdicts were
inconclusive), merged over every vantage point of the ISP and sorted by time.
The statistics over these samples are computed where the data is, as window
functions in the report's SQL (:func:`probe.report.engine.run_statistics`),
with these definitions:

* Time between samples is split at the midpoint: each decided sample "owns"
  half of the gap to each decided neighbour, so a state change is placed half
  way between the last sample of the old state and the first of the new one
  (the best estimate of a change seen only at the sampling instants). A gap
  longer than ``max_gap`` (4x the median interval between runs, at least 1 s:
  a volunteer offline for a day) is no evidence of anything: each side owns at
  most ``max_gap / 2`` of it. ``unknown`` samples are skipped: an outage
  neither opens nor closes a window.
* The *duty cycle* is the share of the owned time that was blocked (with a
  single decided instant, the share of blocked samples). Its *margin* is how far
  off the midpoint split may put it: each switch lies somewhere in the gap
  between the runs around it, so the split errs there by an amount uniform in
  +-h (h the half-gap), independent from switch to switch when runs come at
  random (Poisson) times. The margin is two standard deviations of their sum,
  ``2 * sqrt(sum(h^2) / 3)``, as a share of the owned time (about 95%): it is
  wide over few switches seen by sparse runs and narrows as the span grows
  (  A window that opened and closed between two runs is not in it: no run saw it.)
  *Switches* count the flips between consecutive decided samples; an *open window* is a maximal
  stretch of open samples, its ends half way to the blocked samples around it.

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
from typing import Literal

__all__ = ["Changepoint", "MethodChange", "Sporadic", "Window", "cusum", "method_changes"]

State = Literal["blocked", "open", "unknown"]


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
    duty_margin: float | None = None  # the duty cycle is right to within this (switch times)

    @property
    def median_window(self) -> float | None:
        return statistics.median(w.length for w in self.windows) if self.windows else None

    @property
    def longest_window(self) -> float | None:
        return max(w.length for w in self.windows) if self.windows else None


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

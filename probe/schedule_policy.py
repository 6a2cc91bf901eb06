"""When ``probe schedule`` measures: pure functions of numbers, tested without a network or a
clock (:mod:`probe.schedule` does the I/O).

* :func:`poisson_wait` (the default, ``sampling = "poisson"``): the waits between regular
  campaigns are exponential around the mean interval (shifted by a floor, capped), so
  campaign times form a (nearly) Poisson process. A censor that is periodic -- blocked
  20 s, open 10 s, or any period and duty -- cannot hide from it: with a non-lattice wait
  distribution the phase of each sample within the censor's cycle becomes uniform
  (Blackwell's renewal theorem), so the share of blocked samples converges to the
  censor's blocked share of time (PASTA: Poisson arrivals see time averages). A fixed
  interval, even jittered by +/- 10 %, samples the same phase again and again when the
  period divides the interval, and reads "blocked 100 %" for a censor open a third of
  the time.
* :func:`jittered` (``sampling = "regular"``): every wait is ``interval x (1 +/- jitter)``,
  uniform (RIPE Atlas's way), for comparisons with fixed-interval data.
* :func:`backoff`: after ``n`` consecutive failures of the probe itself (an exception,
  a campaign over its time budget) the wait doubles, up to ``max_backoff``.
* :func:`next_start`: a campaign that is late (an overrun, a suspend, a clock jumping
  forward) starts now, once: missed slots are skipped, never caught up in a burst;
  a plan implausibly far ahead (a clock jumping back) is pulled in to one wait from now.
* :func:`track`, :func:`bursting`, :func:`plan`: burst re-sampling. When a target's
  verdict flips between ``ok`` and ``blocked`` (``down`` and ``inconclusive`` say
  nothing about a censor's window and are ignored), that target (with the control
  sites, which every verdict needs) is re-measured every ``burst_interval`` for
  ``burst_duration`` after its last flip, so the opening and closing of a window are
  timed to within seconds instead of minutes.
* :func:`spotted`, :func:`spot_wait`: spot checks. A sporadic censor whose state never
  appears to flip in the regular samples (its open windows short against the interval)
  would never start a burst; so the targets last seen blocked are re-measured in short
  campaigns of their own at Poisson times (random offsets against any period): on average
  once per ``interval`` (``SPOT_STEADY``) while no target has ever flipped, four times as
  often (``SPOT_FLIPPED``) once one has (the network is sporadic). The first open sample
  flips the target and starts its burst.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from probe.config import Schedule
from probe.format.vocab import Status

__all__ = [
    "DECISIVE",
    "POISSON_CAP",
    "Step",
    "TargetState",
    "backoff",
    "bursting",
    "jittered",
    "next_start",
    "plan",
    "poisson_wait",
    "regular_wait",
    "spot_wait",
    "spotted",
    "track",
]

#: The statuses that say something about a censor's window (a flip between them starts a burst).
DECISIVE: Final = (Status.OK, Status.BLOCKED)
POISSON_FLOOR: Final = 0.1  # x interval: never two regular campaigns back to back
POISSON_CAP: Final = 5.0  # x interval: a volunteer's data never has a gap of hours


def poisson_wait(interval: float, u: float) -> float:
    """The wait for ``u`` uniform in [0, 1): ``interval x (FLOOR + (1 - FLOOR) x Exp(1))``,
    at most ``CAP x interval``; the mean is the interval (less the cap's 0.7 %)."""
    exponential = -math.log1p(-min(max(u, 0.0), 1.0 - 1e-12))
    return interval * min(POISSON_FLOOR + (1.0 - POISSON_FLOOR) * exponential, POISSON_CAP)


def regular_wait(schedule: Schedule, u: float) -> float:
    """The wait before the next regular campaign, by the configured ``sampling``."""
    if schedule.sampling == "poisson":
        return poisson_wait(schedule.interval, u)
    return jittered(schedule.interval, schedule.jitter, u)


def jittered(interval: float, jitter: float, u: float) -> float:
    """The wait for ``u`` uniform in [0, 1]: within ``interval x [1 - jitter, 1 + jitter]``."""
    return interval * (1.0 + jitter * (2.0 * min(max(u, 0.0), 1.0) - 1.0))


def backoff(delay: float, failures: int, cap: float) -> float:
    """``delay`` doubled per consecutive failure, at most ``cap`` (never below ``delay``)."""
    if failures <= 0:
        return delay
    return max(delay, min(cap, delay * 2.0 ** min(failures, 32)))


def next_start(planned: float, now: float, longest: float) -> float:
    """When to start a campaign planned for ``planned``; never later than ``longest`` from now.

    Late -> now (one campaign, not one per missed slot); too far ahead -> ``now + longest``.
    """
    return min(max(planned, now), now + longest)


@dataclass(frozen=True, slots=True)
class TargetState:
    status: str  # the last decisive verdict: "ok" or "blocked"
    burst_until: float  # re-measure often until then; 0.0 = no burst


def track(
    states: Mapping[str, TargetState], statuses: Mapping[str, str], now: float, duration: float
) -> dict[str, TargetState]:
    """The targets' states after a campaign's verdicts (``statuses``: target -> status)."""
    new = dict(states)
    for target, status in statuses.items():
        if status not in DECISIVE:
            continue
        previous = states.get(target)
        if previous is None:
            new[target] = TargetState(status, 0.0)
        elif previous.status != status:
            new[target] = TargetState(status, now + duration if duration > 0 else 0.0)
    return new


def bursting(states: Mapping[str, TargetState], now: float) -> tuple[str, ...]:
    """The targets being re-measured at the burst rate, sorted."""
    return tuple(sorted(t for t, s in states.items() if s.burst_until > now))


SPOT_STEADY: Final = 1.0  # x interval: mean wait between spot checks, no flip seen yet
SPOT_FLIPPED: Final = 0.25  # x interval: ... once a target of the network has flipped


def spotted(states: Mapping[str, TargetState], now: float) -> tuple[str, ...]:
    """The targets a spot check re-measures: last seen blocked and not bursting, sorted."""
    return tuple(
        sorted(t for t, s in states.items() if s.status == Status.BLOCKED and s.burst_until <= now)
    )


def spot_wait(states: Mapping[str, TargetState], interval: float, u: float) -> float:
    """The wait before the next spot check for ``u`` uniform in [0, 1): a Poisson wait
    (:func:`poisson_wait`) around ``interval x SPOT_FLIPPED`` once any target has flipped
    (a burst was ever started: ``burst_until`` > 0), else ``interval x SPOT_STEADY``."""
    flipped = any(s.burst_until > 0 for s in states.values())
    return poisson_wait(interval * (SPOT_FLIPPED if flipped else SPOT_STEADY), u)


@dataclass(frozen=True, slots=True)
class Step:
    at: float
    targets: tuple[str, ...] | None  # None: every target (a regular campaign)
    spot: bool = False  # a spot check of the targets last seen blocked


def plan(
    regular_at: float,
    burst_at: float,
    targets: Iterable[str],
    spot_at: float = math.inf,
    spots: Iterable[str] = (),
) -> Step:
    """The next campaign: the earliest due of a burst of ``targets``, a spot check of
    ``spots`` and the regular one (which measures them all anyway, so it wins a tie)."""
    burst, spot = tuple(targets), tuple(spots)
    step = Step(regular_at, None)
    if burst and burst_at < step.at:
        step = Step(burst_at, burst)
    if spot and spot_at < step.at:
        step = Step(spot_at, spot, spot=True)
    return step

"""The blocked share the report states for a periodic censor, over synthetic sample streams.

A periodic censor (blocked a share ``b`` of every period, at some phase) sampled the way
``probe schedule`` and ``probe lab run`` sample: regular runs at Poisson times (mean 20 s,
:func:`probe.schedule.poisson_wait`) and, once a flip was seen, spot checks at Poisson
times four times as often. Poisson arrivals see time averages (PASTA), and each run owns
half the gap to its neighbours, so the report's duty cycle (the SQL of
:func:`probe.report.aggregate.run_statistics`) must give the true share of the sampled
span within 10 points, whatever the period, share and phase. A fixed interval equal to
the period sees one phase only: the aliasing this sampling exists to avoid.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest

pytest.importorskip("duckdb", reason="the report needs the project's [report] extra (duckdb)")

import duckdb

from probe.report.aggregate import run_statistics
from probe.report.engine import Duck
from probe.schedule_policy import SPOT_FLIPPED, poisson_wait

INTERVAL = 20.0
SPAN = 1800.0  # half an hour of one ISP's runs


def blocked(t: float, period: float, share: float, phase: float) -> bool:
    return (t / period + phase) % 1.0 < share


def sampled(period: float, share: float, phase: float, rng: random.Random) -> list[float]:
    """Regular runs at Poisson times, and spot checks from the first flip seen on."""
    times, t = [], rng.uniform(0, INTERVAL)
    while t < SPAN:
        times.append(t)
        t += poisson_wait(INTERVAL, rng.random())
    flips = [b for a, b in itertools.pairwise(times)
             if blocked(a, period, share, phase) != blocked(b, period, share, phase)]  # fmt: skip
    t = flips[0] if flips else SPAN
    while (t := t + poisson_wait(INTERVAL * SPOT_FLIPPED, rng.random())) < SPAN:
        times.append(t)
    return sorted(times)


def duty_cycles(streams: list[tuple[list[float], list[bool]]]) -> list[float | None]:
    """The report's figure for each stream (one series each), through the engine's SQL."""
    con = duckdb.connect()
    con.execute("CREATE TABLE runs (asn VARCHAR, source VARCHAR, family VARCHAR, t DOUBLE, "
                "state VARCHAR)")  # fmt: skip
    rows = [(f"AS{i}", t, "blocked" if s else "open")
            for i, (times, states) in enumerate(streams)
            for t, s in zip(times, states, strict=True)]  # fmt: skip
    con.executemany("INSERT INTO runs VALUES (?, 'probe', 'X', ?, ?)", rows)
    found = run_statistics(Duck(con))
    return [found[f"AS{i}", "probe", "X"].duty_cycle for i in range(len(streams))]


def true_share(start: float, end: float, period: float, share: float, phase: float) -> float:
    """The blocked share of [start, end], exactly: cycles count ``share`` each."""

    def blocked_cycles(t: float) -> float:  # blocked time in cycles, from phase 0 to ``t``
        u = t / period + phase
        return math.floor(u) * share + min(u % 1.0, share)

    return (blocked_cycles(end) - blocked_cycles(start)) * period / (end - start)


def test_a_periodic_censors_share_within_10_points() -> None:
    cases = [
        (period, share, phase)
        for period in (20.0, 40.0, 60.0)  # 1-3x the interval, as the lab's periodic censor
        for share in (0.5, 0.65, 0.8)
        for phase in (0.0, 0.3, 0.7)
    ]
    streams = []
    for period, share, phase in cases:
        times = sampled(period, share, phase, random.Random(f"{period}/{share}/{phase}"))
        streams.append((times, [blocked(t, period, share, phase) for t in times]))
    for (period, share, phase), (times, _), found in zip(
        cases, streams, duty_cycles(streams), strict=True
    ):
        truth = true_share(times[0], times[-1], period, share, phase)
        assert found is not None and abs(found - truth) <= 0.10, (period, share, phase, found)


def test_a_fixed_interval_equal_to_the_period_aliases() -> None:
    # what Poisson times avoid: every sample at the same phase of the cycle
    times = [5.0 + 40.0 * i for i in range(45)]
    states = [blocked(t, 40.0, 0.65, 0.0) for t in times]
    assert duty_cycles([(times, states)]) == [1.0]  # truly 65%

"""The lab's policer draws its rate and burst from the seed (no network: start() only draws)."""

from __future__ import annotations

import asyncio

from probe.lab.censors import RouterContext
from probe.lab.censors.throttle import BURST, SPREAD, Throttle


def started(technique: Throttle, seed: int, isp: str = "isp11") -> Throttle:
    ctx = RouterContext(isp, "probelab-r-x", "down", "up", (), {}, "203.0.113.1", seed)
    asyncio.run(technique.start(ctx))
    return technique


def test_rate_and_burst_come_from_the_seed_within_their_ranges() -> None:
    drawn = [started(Throttle(128), seed) for seed in range(50)]
    assert len({t.rate_kbit for t in drawn}) > 20  # no detector can fit one rate
    for t in drawn:
        assert 128 * (1 - SPREAD) <= t.rate_kbit <= 128 * (1 + SPREAD)
        assert t.burst is not None
        assert max(3000, t.rate_kbit * 125 * BURST[0]) <= t.burst
        assert t.burst <= max(3000, t.rate_kbit * 125 * BURST[1])
    again = started(Throttle(128), 7)
    assert (again.rate_kbit, again.burst) == (drawn[7].rate_kbit, drawn[7].burst)
    other = started(Throttle(128), 7, isp="isp12")
    assert (other.rate_kbit, other.burst) != (again.rate_kbit, again.burst)


def test_undrawn_keeps_the_rate_and_tcs_default_burst() -> None:
    fixed = started(Throttle(800, drawn=False), 1)
    assert (fixed.rate_kbit, fixed.burst) == (800, None)

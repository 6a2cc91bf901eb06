"""The transfer-shape analysis (probe.verdict.throttling) against token-bucket flows.

The flows are drawn the way a policed TLS download reaches the probe: the
bucket's burst first, then the rate, delivered in whole TLS records, with a
dropping policer's TCP back-offs (pauses of up to a second, then a catch-up
burst) at random — seeded, so every run sees the same 1000 flows per rate.
"""

from __future__ import annotations

import random

import pytest

from probe.verdict import throttling

RECORD = 16 * 1024
PERIOD = 0.1  # the download primitive samples at most this often (probe.net.http)


def policed(rate_kbit: int, seconds: float, rng: random.Random) -> list[tuple[float, int]]:
    """Samples (t, bytes so far) of a download through a token bucket at ``rate_kbit``."""
    rate = rate_kbit * 1000 / 8
    start = rng.uniform(0.05, 0.6)  # connect, handshake, request
    burst = rng.choice((0, 4096, 16384, 65536))
    samples: list[tuple[float, int]] = [(0.0, 0)]
    sent = float(burst)  # bytes the bucket has let through by time t
    delivered = 0
    t = start
    while t < seconds:
        step = rng.uniform(0.1, 0.3)
        if rng.random() < 0.15:  # a TCP back-off after a policer drop: silence, then catch up
            step += rng.uniform(0.2, 1.0)
        t = min(seconds, t + step)
        sent = burst + rate * (t - start)
        whole = int(sent // RECORD) * RECORD  # TLS records arrive whole
        if whole > delivered and t - samples[-1][0] >= PERIOD:
            delivered = whole
            samples.append((round(t, 3), delivered))
    samples.append((seconds, delivered))
    return samples


@pytest.mark.parametrize("rate_kbit", [64, 96, 128, 256, 512, 1024])
def test_a_policer_is_a_plateau_in_at_least_98_percent(rate_kbit: int) -> None:
    rng = random.Random(rate_kbit)
    seconds = 10.0  # configs/x.toml's timeouts.throughput
    found = 0
    for _ in range(1000):
        shape = throttling.plateau(policed(rate_kbit, seconds, rng))
        if shape is not None and shape.steady:
            found += 1
            assert 0.5 < shape.rate * 8 / 1000 / rate_kbit < 2.0
    assert found >= 980, f"{rate_kbit} kbit/s: {found} of 1000"


def test_silence_has_no_shape() -> None:
    # zero bytes after the connect (or after the ServerHello: the download saw none)
    assert throttling.plateau([(0.0, 0), (10.0, 0)]) is None
    assert throttling.plateau([]) is None
    # one record and nothing else: too little to tell a rate from a stall
    assert throttling.plateau([(0.0, 0), (0.4, 16384), (10.0, 16384)]) is None


def test_a_download_that_stalls_is_no_plateau() -> None:
    # began at a good pace, then nothing for the last 6 s: cut, not policed
    samples = [(0.0, 0), *((0.2 * i, 16384 * i) for i in range(1, 20)), (10.0, 16384 * 19)]
    shape = throttling.plateau(samples)
    assert shape is not None and not shape.steady and shape.halves[1] == 0


def test_a_download_that_dies_away_is_no_plateau() -> None:
    # each second brings half the last one's bytes: a flow dying, not held at a rate
    samples, total = [(0.0, 0)], 0
    for second in range(1, 11):
        total += RECORD * 2 ** (10 - second)
        samples.append((float(second), total))
    shape = throttling.plateau(samples)
    assert shape is not None and not shape.steady


def test_mean_rate() -> None:
    assert throttling.mean_rate([(0.0, 0), (2.0, 5_000_000)]) == 2_500_000
    assert throttling.mean_rate([]) == 0.0
    assert throttling.mean_rate([(0.0, 0)]) == 0.0
    assert throttling.mean_rate([(0.0, 0), (1.0, 0)]) == 0.0


def test_the_control_rate_leaves_the_set_up_out() -> None:
    # a control on a loaded host (seen in the lab): 0.5 s of connect, handshake and request
    # (CPU), then 0.5 MiB in 0.2 s. Its path carries ~20 Mbit/s, not the 8 of the mean.
    control = [(0.0, 0), (0.5, 4096), (0.6, 262144), (0.7, 524288)]
    assert throttling.mean_rate(control) == pytest.approx((524288 - 4096) / 0.2)
    # a policer's rate is what it is whatever the set-up took: ~60 KB/s here
    policed = [(0.0, 0), (1.5, 16384), *((1.5 + i, 16384 + 60_000 * i) for i in range(1, 7))]
    assert throttling.mean_rate(policed) == pytest.approx(60_000)


def test_without_the_first_delivery_the_control_rate_is_the_whole_mean() -> None:
    # files written before the first delivery was sampled: most bytes in the first sample
    samples = [(0.0, 0), (0.1156, 466944), (0.1178, 524288)]
    assert throttling.mean_rate(samples) == pytest.approx(524288 / 0.1178)


def test_a_fast_transfer_that_ended_within_a_burst_or_two_is_no_plateau() -> None:
    # seen in the lab under load: 0.5 MiB in 0.4 s through a slow in-path proxy, 12x slower
    # than the control: halves of 408 and 100 KiB against a 216 KiB delivery
    samples = [(0.0, 0), (0.02, 4096), (0.1, 12288), (0.15, 233472), (0.25, 430080),
               (0.42, 532480)]  # fmt: skip
    shape = throttling.plateau(samples)
    assert shape is not None and not shape.steady
    assert (shape.halves, shape.quantum) == ((417792, 102400), 221184)


def test_a_transfer_over_in_under_a_second_is_no_plateau() -> None:
    # the lab under load again: 0.7 s at 5 Mbit/s, halves of one delivery each
    samples = [(0.0, 0), (0.1, 16384), (0.25, 208896), (0.45, 401408), (0.8, 638976)]
    shape = throttling.plateau(samples)
    assert shape is not None and shape.seconds < throttling.MIN_SPAN and not shape.steady

"""The sporadic statistics as pure functions: windows, duty cycle, switches, CUSUM, methods."""

from __future__ import annotations

import pytest

from probe.report.sporadic import (
    Changepoint,
    MethodChange,
    Sample,
    Window,
    cusum,
    duty_cycle,
    max_gap,
    method_changes,
    open_windows,
    sporadic,
    switches,
)


def series(states: str, step: float = 10.0) -> list[Sample]:
    """``"BBOU"`` -> blocked, blocked, open, unknown at 0, 10, 20, 30 s."""
    word = {"B": "blocked", "O": "open", "U": "unknown"}
    return [Sample(i * step, word[c]) for i, c in enumerate(states)]  # type: ignore[arg-type]


def test_open_windows_are_bounded_by_midpoints_to_the_blocked_runs() -> None:
    windows = open_windows(series("BBOOBOB"), max_gap=100)
    assert windows == (
        Window(start=15, end=35, first_open=20, last_open=30, samples=2, censored=False),
        Window(start=45, end=55, first_open=50, last_open=50, samples=1, censored=False),
    )
    assert [w.length for w in windows] == [20, 10]


def test_windows_at_the_edges_are_censored_and_unknown_runs_are_skipped() -> None:
    windows = open_windows(series("OOBUBOU"), max_gap=100)
    assert windows == (
        Window(start=0, end=15, first_open=0, last_open=10, samples=2, censored=True),
        Window(start=45, end=50, first_open=50, last_open=50, samples=1, censored=True),
    )


def test_a_long_gap_is_not_counted_as_open_or_blocked() -> None:
    samples = [Sample(0, "blocked"), Sample(1000, "open"), Sample(1010, "blocked")]
    (window,) = open_windows(samples, max_gap=20)
    assert (window.start, window.end) == (990, 1005)
    # owned time: blocked 10 (gap 1000 capped at 20) + 5; open 10 + 5
    assert duty_cycle(samples, max_gap=20) == pytest.approx(15 / 30)


def test_duty_cycle_shares_time_at_the_midpoints() -> None:
    assert duty_cycle(series("BBOB"), max_gap=100) == pytest.approx(20 / 30)
    assert duty_cycle(series("BBBB"), max_gap=100) == 1.0
    assert duty_cycle(series("OUOU"), max_gap=100) == 0.0
    assert duty_cycle(series("UU"), max_gap=100) is None
    assert duty_cycle([Sample(5, "blocked")], max_gap=100) == 1.0  # one instant: count share


def test_switches_count_flips_between_decided_states() -> None:
    assert switches(series("BBOOBUBOB")) == 4
    assert switches(series("UUU")) == 0


def test_max_gap_is_a_multiple_of_the_median_interval() -> None:
    assert max_gap(series("BBBB", step=30)) == 120
    assert max_gap([Sample(0, "open")]) == 1.0


def test_cusum_finds_the_onset_and_the_end_of_blocking_but_not_the_initial_state() -> None:
    buckets = [(float(i), 0.0 if i < 10 or i >= 20 else 1.0, 5) for i in range(30)]
    # A rise from 0 to 1 adds 0.65 a bucket, a fall from the blocked level 0.7 to 0 adds 0.35,
    # against h = 5 * 0.7 / 2 = 1.75: three buckets to see blocking start, six to see it end.
    assert cusum(buckets) == (Changepoint(12.0, "blocked"), Changepoint(25.0, "open"))
    starts_blocked = [(float(i), 1.0, 5) for i in range(10)]
    assert cusum(starts_blocked) == ()


def test_cusum_ignores_empty_buckets_and_short_blips() -> None:
    buckets = [(float(i), 0.0, 5) for i in range(10)]
    buckets += [(10.0, 1.0, 0), (11.0, 1.0, 5), (12.0, 0.0, 5)]  # no data, then one blip
    assert cusum(buckets) == ()


def test_method_changes_need_the_new_method_to_persist() -> None:
    buckets = [(0.0, "dns.blockpage"), (1.0, None), (2.0, "tls.sni_reset"), (3.0, "dns.blockpage"),
               (4.0, "tls.sni_reset"), (5.0, "tls.sni_reset")]  # fmt: skip
    assert method_changes(buckets) == (MethodChange(4.0, "dns.blockpage", "tls.sni_reset"),)
    assert method_changes([(0.0, "tls.sni_reset"), (1.0, "dns.blockpage")]) == ()


def test_sporadic_bundles_the_statistics() -> None:
    stats = sporadic(series("BBOOBB"), [(0.0, 1.0, 3)], [(0.0, "tls.sni_reset")], max_gap=100)
    assert (stats.decided, stats.switches, len(stats.windows)) == (6, 2, 1)
    assert stats.median_window == stats.longest_window == 20
    assert stats.duty_cycle == pytest.approx(30 / 50)

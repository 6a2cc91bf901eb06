"""The sporadic statistics: windows, duty cycle and switches (SQL over runs), CUSUM, methods."""

from __future__ import annotations

import pytest

pytest.importorskip("duckdb", reason="the report needs the project's [report] extra (duckdb)")

import duckdb

from probe.report.aggregate import RunStats, run_statistics
from probe.report.engine import Duck
from probe.report.sporadic import Changepoint, MethodChange, Sporadic, Window, cusum, method_changes

WORD = {"B": "blocked", "O": "open", "U": "unknown"}


def stats(states: str, step: float = 10.0, times: list[float] | None = None) -> RunStats | None:
    """``"BBOU"`` -> blocked, blocked, open, unknown runs at 0, 10, 20, 30 s (or ``times``),
    through the engine's SQL; None when the series has no decided run."""
    con = duckdb.connect()
    con.execute("CREATE TABLE runs (asn VARCHAR, source VARCHAR, family VARCHAR, t DOUBLE, "
                "state VARCHAR)")  # fmt: skip
    moments = times if times is not None else [i * step for i in range(len(states))]
    con.executemany("INSERT INTO runs VALUES ('AS1', 'probe', 'X', ?, ?)",
                    [(t, WORD[c]) for t, c in zip(moments, states, strict=True)])  # fmt: skip
    return run_statistics(Duck(con)).get(("AS1", "probe", "X"))


def test_open_windows_are_bounded_by_midpoints_to_the_blocked_runs() -> None:
    found = stats("BBOOBOB")
    assert found is not None
    assert found.windows == (
        Window(start=15, end=35, first_open=20, last_open=30, samples=2, censored=False),
        Window(start=45, end=55, first_open=50, last_open=50, samples=1, censored=False),
    )
    assert [w.length for w in found.windows] == [20, 10]


def test_windows_at_the_edges_are_censored_and_unknown_runs_are_skipped() -> None:
    found = stats("OOBUBOU")
    assert found is not None
    assert found.windows == (
        Window(start=0, end=15, first_open=0, last_open=10, samples=2, censored=True),
        Window(start=45, end=50, first_open=50, last_open=50, samples=1, censored=True),
    )


def test_a_long_gap_counts_for_at_most_four_median_intervals() -> None:
    # runs every 10 s, then a volunteer offline for 970 s: the gap counts as 40 s
    found = stats("BBBBOBB", times=[0, 10, 20, 30, 1000, 1010, 1020])
    assert found is not None
    (window,) = found.windows
    assert (window.start, window.end) == (980, 1005)
    # owned time: blocked 5 + 10 + 10 + (5 + 20) + 10 + 5 = 65; open 20 + 5 = 25
    assert found.duty_cycle == pytest.approx(65 / 90)


def test_duty_cycle_shares_time_at_the_midpoints() -> None:
    bbob = stats("BBOB")
    assert bbob is not None and bbob.duty_cycle == pytest.approx(20 / 30)
    assert stats("BBBB") == RunStats(4, 1.0, 0.0, 0, ())
    assert stats("OUOU") == RunStats(2, 0.0, 0.0, 0, (Window(0, 20, 0, 20, 2, True),))
    assert stats("UU") is None
    assert stats("B") == RunStats(1, 1.0, None, 0, ())  # one instant: the share of blocked runs


def test_the_duty_cycle_margin_is_two_sigma_of_the_switch_errors() -> None:
    # runs every 10 s: each of the 2 switches lies in a 10 s gap, its midpoint off by an error
    # uniform in +-5 s (variance 25/3); the margin is 2 sigma of their sum over 30 s owned
    bbob = stats("BBOB")
    assert bbob is not None and bbob.duty_margin == pytest.approx(2 * (50 / 3) ** 0.5 / 30)
    # three times the span, the same gaps around the 2 switches: a third of the margin
    long = stats("BBBBBOBBBB", times=list(range(0, 100, 10)))
    assert long is not None and long.duty_margin == pytest.approx(2 * (50 / 3) ** 0.5 / 90)


def test_switches_count_flips_between_decided_states() -> None:
    found = stats("BBOOBUBOB")
    assert found is not None and found.switches == 4


def test_series_are_kept_apart() -> None:
    con = duckdb.connect()
    con.execute("""CREATE TABLE runs AS SELECT * FROM (VALUES
        ('AS1', 'probe', 'X', 0.0, 'blocked'), ('AS1', 'probe', 'X', 10.0, 'open'),
        ('AS1', 'ooni', 'X', 0.0, 'open'), ('AS2', 'probe', 'x.com', 5.0, 'blocked'))
        AS runs(asn, source, family, t, state)""")  # fmt: skip
    found = run_statistics(Duck(con))
    assert {k: (v.decided, v.duty_cycle, v.switches) for k, v in found.items()} == {
        ("AS1", "probe", "X"): (2, 0.5, 1),
        ("AS1", "ooni", "X"): (1, 0.0, 0),
        ("AS2", "probe", "x.com"): (1, 1.0, 0),
    }


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


def test_the_median_and_longest_open_window() -> None:
    windows = (Window(0, 20, 0, 20, 2, True), Window(40, 50, 45, 45, 1, False))
    stats = Sporadic(3, 0.5, 2, windows, (), ())
    assert (stats.median_window, stats.longest_window) == (15, 20)
    assert Sporadic(0, None, 0, (), (), ()).median_window is None

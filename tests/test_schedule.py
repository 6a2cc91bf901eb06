"""The scheduler: its pure decisions, the run lock, the time budget, backoff and SIGTERM.

The decisions (jitter, backoff, clock jumps, burst re-sampling) are checked as pure
functions. The I/O is checked end to end on a loopback internet: ``probe run --once``
against a held lock and over its budget, and a real ``probe schedule`` subprocess that
gets SIGTERM in the middle of a campaign.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from loopback import internet

from probe import store
from probe.__main__ import main
from probe.schedule import BACKOFF_FILE, Lock, LockHeld, LockUnusable
from probe.schedule_policy import (
    Step,
    TargetState,
    backoff,
    bursting,
    jittered,
    next_start,
    plan,
    poisson_wait,
    spot_wait,
    spotted,
    track,
)

ROOT = Path(__file__).resolve().parent.parent
RECORDS = {"x.com": {"A": ["127.0.0.1"]}, "www.example.com": {"A": ["127.0.0.1"]}}

# -- pure decisions --------------------------------------------------------------------------


def test_jitter_stays_within_its_bounds() -> None:
    assert jittered(300, 0.1, 0.0) == pytest.approx(270)
    assert jittered(300, 0.1, 1.0) == pytest.approx(330)
    assert jittered(300, 0.1, 0.5) == pytest.approx(300)
    assert jittered(300, 0.0, 0.9) == 300
    rng = random.Random(7)
    waits = [jittered(300, 0.2, rng.random()) for _ in range(10_000)]
    assert 240 <= min(waits) < 245 and 355 < max(waits) <= 360
    assert jittered(300, 0.1, 7.0) == pytest.approx(330)  # out-of-range draws are clamped


def test_poisson_waits_average_the_interval_within_floor_and_cap() -> None:
    rng = random.Random(3)
    waits = [poisson_wait(300, rng.random()) for _ in range(100_000)]
    assert min(waits) >= 30 and max(waits) <= 1500
    assert sum(waits) / len(waits) == pytest.approx(300, rel=0.02)
    assert poisson_wait(300, 0.0) == 30 and poisson_wait(300, 1.0) == 1500  # clamped


def sampled_blocked_share(waits: list[float], period: float, blocked: float, phase: float) -> float:
    """Share of sample times inside the blocked part of a periodic censor's cycle."""
    t, hits = phase, 0
    for wait in waits:
        t += wait
        hits += (t % period) < blocked
    return hits / len(waits)


@pytest.mark.parametrize("period", [30.0, 15.0, 60.0, 27.0, 300.0, 100.0])
@pytest.mark.parametrize("phase", [1.4, 5.3, 17.0])
def test_a_periodic_censor_cannot_hide_from_poisson_sampling(period: float, phase: float) -> None:
    """Whatever its period (the interval itself, a divisor, a multiple, unrelated) and phase,
    the blocked share seen is the censor's blocked share of time (2/3), within 5 points;
    the old fixed interval with +/- 10 % jitter reads 100 % blocked when the period is the
    interval (the independent lab's finding)."""
    rng = random.Random(int(period * 10 + phase))
    waits = [poisson_wait(30, rng.random()) for _ in range(4_000)]
    assert sampled_blocked_share(waits, period, period * 2 / 3, phase) == pytest.approx(
        2 / 3, abs=0.05
    )
    if period == 30.0:
        regular = [jittered(30, 0.0, rng.random()) for _ in range(4_000)]
        assert sampled_blocked_share(regular, period, 20.0, phase) in (0.0, 1.0)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(300, n, 3600) for n in range(6)] == [300, 600, 1200, 2400, 3600, 3600]
    assert backoff(300, 10_000, 3600) == 3600  # no overflow
    assert backoff(300, 3, 100) == 300  # a cap below the interval never shortens it


def test_a_late_campaign_starts_once_and_a_backward_clock_is_bounded() -> None:
    assert next_start(1300, 1000, 3600) == 1300  # on time: as planned
    assert next_start(1300, 1400, 3600) == 1400  # overran by 100 s: now
    assert next_start(1300, 1000 - 86_400, 3600) == 1000 - 86_400 + 3600  # clock went back a day


def simulate(readings: list[float], interval: float) -> list[float]:
    """Campaign starts for a sequence of clock readings, each taken when the loop wakes."""
    starts, planned = [], readings[0]
    for now in readings:
        at = next_start(planned, now, interval)
        if at <= now:
            starts.append(now)
            planned = now + interval
    return starts


def test_a_forward_clock_jump_fires_one_campaign_not_a_burst() -> None:
    # Wake-ups every 60 s, then the clock leaps ten hours (suspend, NTP step), then 60 s again.
    readings = [0, 60, 120, 180, 240, 300, 36_300, 36_360, 36_420, 36_600]
    assert simulate(readings, 300) == [0, 300, 36_300, 36_600]


def test_verdict_flips_start_bursts_and_other_statuses_do_not() -> None:
    states = track({}, {"x.com": "blocked", "t.co": "ok", "api.x.com": "down"}, 0, 600)
    assert states == {"x.com": TargetState("blocked", 0.0), "t.co": TargetState("ok", 0.0)}
    assert bursting(states, 0) == ()
    # down / inconclusive say nothing about the censor's window
    states = track(states, {"x.com": "down", "t.co": "inconclusive"}, 300, 600)
    assert bursting(states, 300) == ()
    states = track(states, {"x.com": "ok", "t.co": "ok"}, 600, 600)  # x.com opened
    assert states["x.com"] == TargetState("ok", 1200)
    assert bursting(states, 600) == ("x.com",)
    states = track(states, {"x.com": "blocked"}, 610, 600)  # ... and closed 10 s later
    assert states["x.com"] == TargetState("blocked", 1210)
    assert bursting(states, 1209) == ("x.com",) and bursting(states, 1210) == ()
    no_bursts = track({"x.com": TargetState("ok", 0.0)}, {"x.com": "blocked"}, 5, 0)
    assert no_bursts["x.com"] == TargetState("blocked", 0.0)  # burst_duration = 0: none


def test_plan_prefers_a_burst_due_before_the_regular_campaign() -> None:
    assert plan(300, 10, ("x.com",)) == Step(10, ("x.com",))
    assert plan(300, 310, ("x.com",)) == Step(300, None)  # the regular one measures it anyway
    assert plan(300, 10, ()) == Step(300, None)


# -- the run lock ----------------------------------------------------------------------------


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    with Lock(tmp_path):
        assert (tmp_path / ".probe-run.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(LockHeld, match=f"pid {os.getpid()} holds"), Lock(tmp_path):
            pass
    with Lock(tmp_path):  # released on exit
        pass


def test_a_lock_file_that_cannot_be_opened_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file where the results folder should be")
    with pytest.raises(LockUnusable, match="cannot open the run lock"), Lock(tmp_path / "out"):
        pass


def test_a_garbled_lock_file_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / ".probe-run.lock").write_bytes(b"\x00\xffnot a pid" * 100)
    with Lock(tmp_path):
        assert (tmp_path / ".probe-run.lock").read_text() == f"{os.getpid()}\n"


@contextmanager
def silent_resolver() -> Iterator[int]:
    """A UDP port that swallows queries: every DNS step there costs its full timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def slow_config(config: str, port: int, dns_timeout: float, **schedule: float) -> str:
    config = config.replace("dns = 1.0", f"dns = {dns_timeout}")
    config += f"[[resolvers]]\nengine = 'udp'\naddress = '127.0.0.1'\nport = {port}\n"
    return config + "[schedule]\n" + "".join(f"{k} = {v}\n" for k, v in schedule.items())


def run_once(tmp_path: Path, config: str) -> tuple[int, list[dict[str, object]]]:
    path = tmp_path / "config.toml"
    path.write_text(config)
    code = main(["run", "--once", "--config", str(path), "--output", str(tmp_path / "out")])
    return code, list(store.read([tmp_path / "out"]))


def test_an_overlapping_run_exits_at_once(
    tmp_path: Path, probe_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with internet(tmp_path, RECORDS) as net, Lock(tmp_path / "out"):
        started = time.monotonic()
        code, measurements = run_once(tmp_path, net.config(["x.com"], ["www.example.com"]))
    assert code == 75 and measurements == []
    assert time.monotonic() - started < 1
    assert f"another probe run is measuring into {tmp_path / 'out'} (pid {os.getpid()}" in (
        capsys.readouterr().err
    )


def test_run_once_measures_and_logs_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with internet(tmp_path, RECORDS) as net:
        code, measurements = run_once(tmp_path, net.config(["x.com"], ["www.example.com"]))
    assert code == 0 and len(measurements) == 2
    assert {m["annotations"]["x_trigger"] for m in measurements} == {"cron"}  # type: ignore[index]
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert "probe INFO: campaign done: 1 targets (1 " in line and "2 measurements" in line


def test_budget_abandons_the_campaign_and_backs_off(
    tmp_path: Path, probe_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with internet(tmp_path, RECORDS) as net, silent_resolver() as port:
        config = slow_config(net.config(["x.com"], ["www.example.com"]), port, 3.0, budget=0.5)
        started = time.monotonic()
        code, measurements = run_once(tmp_path, config)
        assert time.monotonic() - started < 2.5  # the budget, not the 3 s DNS timeout
        assert code == 1 and measurements == []  # no measurement was complete by then
        assert "campaign failed (1 in a row): over its 0.5 s budget" in capsys.readouterr().err
        backoff_state = json.loads((probe_state / BACKOFF_FILE).read_text())
        assert backoff_state["failures"] == 1
        # The next cron run comes too soon: it backs off without measuring.
        code, _ = run_once(tmp_path, config)
        assert code == 0 and "backing off after 1 failures" in capsys.readouterr().err
        # A corrupt backoff file is no reason to stop measuring: it is rebuilt.
        (probe_state / BACKOFF_FILE).write_bytes(b"{not json")
        code, measurements = run_once(tmp_path, net.config(["x.com"], ["www.example.com"]))
    assert code == 0 and len(measurements) == 2
    assert not (probe_state / BACKOFF_FILE).exists()


# -- probe schedule under SIGTERM ------------------------------------------------------------


def wait_for(path: Path, text: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in the log:\n{content}")


def schedule_process(
    tmp_path: Path, config: str, log_name: str = "schedule.log"
) -> tuple[subprocess.Popen[bytes], Path]:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(config)
    log = tmp_path / log_name
    command = [
        sys.executable,
        "-m",
        "probe",
        "schedule",
        "--config",
        str(path),
        "--output",
        str(tmp_path / "out"),
    ]
    with open(log, "wb") as err:
        process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
    return process, log


@pytest.mark.parametrize(("grace", "finished"), [(10.0, True), (0.0, False)])
def test_sigterm_finishes_or_abandons_the_campaign_and_exits_0(
    tmp_path: Path, grace: float, finished: bool
) -> None:
    with internet(tmp_path, RECORDS) as net, silent_resolver() as port:
        config = slow_config(
            net.config(["x.com"], ["www.example.com"]), port, 1.5, interval=30, stop_grace=grace
        )
        process, log = schedule_process(tmp_path, config)
        try:
            wait_for(log, "campaign 1 (regular) started")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = log.read_text()
    stats = store.ReadStats()
    measurements = list(store.read([tmp_path / "out"], stats))
    assert stats.skipped == 0
    if finished:
        assert "campaign 1 done" in text and len(measurements) == 2
        assert len({m["report_id"] for m in measurements}) == 1
    else:
        # what an abandoned campaign finished is written (tests/test_stream.py); here, nothing
        assert "current campaign abandoned (what it finished is written)" in text
        assert measurements == []
    assert "stopped after 1 campaign(s)" in text
    assert "Traceback" not in text


def test_sigterm_while_waiting_stops_at_once(tmp_path: Path) -> None:
    with internet(tmp_path, RECORDS) as net:
        process, log = schedule_process(tmp_path, net.config(["x.com"], ["www.example.com"]))
        try:
            wait_for(log, "campaign 1 done")
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
            assert time.monotonic() - started < 2
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert len(list(store.read([tmp_path / "out"]))) == 2


def test_one_scheduler_per_results_folder_not_per_machine(tmp_path: Path) -> None:
    with internet(tmp_path, RECORDS) as net:
        config = net.config(["x.com"], ["www.example.com"])
        a, log_a = schedule_process(tmp_path / "a", config)
        b, log_b = schedule_process(tmp_path / "b", config)
        try:
            wait_for(log_a, "campaign 1 done")
            wait_for(log_b, "campaign 1 done")  # another folder: both run
            again, log_again = schedule_process(tmp_path / "a", config, "again.log")
            assert again.wait(timeout=10) == 75  # the same folder twice: refused
            for process in (a, b):
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=5) == 0
        finally:
            for process in (a, b):
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert f"another probe run is measuring into {tmp_path / 'a' / 'out'}" in log_again.read_text()
    for folder in ("a", "b"):
        assert len(list(store.read([tmp_path / folder / "out"]))) == 2


def test_schedule_exits_1_when_its_last_campaign_could_not_be_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (out / f"{time.strftime('%Y-%m-%d', time.gmtime())}.jsonl").mkdir(parents=True)  # unwritable
    with internet(tmp_path, RECORDS) as net:
        path = tmp_path / "config.toml"
        path.write_text(net.config(["x.com"], ["www.example.com"]))
        argv = ["schedule", "--max-campaigns", "1", "--config", str(path), "--output", str(out)]
        code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "campaign 1 could not be stored" in err and "the last 1 campaign(s) failed" in err


def test_spot_checks_sample_blocked_targets_at_random_offsets_more_once_a_flip_was_seen() -> None:
    steady = {"x.com": TargetState("blocked", 0.0), "t.co": TargetState("ok", 0.0)}
    assert spotted(steady, 0) == ("x.com",)  # the open one is measured by regular campaigns
    flipped = track(steady, {"t.co": "blocked"}, 100, 600)  # t.co flipped: bursting until 700
    assert spotted(flipped, 100) == ("x.com",) and spotted(flipped, 700) == ("t.co", "x.com")
    # Poisson waits around 1x the interval before any flip, 0.25x after one
    us = [i / 1000 for i in range(1000)]
    assert sum(spot_wait(steady, 300, u) for u in us) / 1000 == pytest.approx(300, rel=0.02)
    assert sum(spot_wait(flipped, 300, u) for u in us) / 1000 == pytest.approx(75, rel=0.02)
    assert len({round(spot_wait(flipped, 300, u), 6) for u in us[:990]}) == 990  # no lattice
    # the earliest due wins; the regular campaign wins a tie (it measures every target)
    assert plan(300, 10, (), 50, ("x.com",)) == Step(50, ("x.com",), spot=True)
    assert plan(300, 10, ("t.co",), 50, ("x.com",)) == Step(10, ("t.co",))
    assert plan(300, 310, (), 300, ("x.com",)) == Step(300, None)
    assert plan(300, 310, (), 50, ()) == Step(300, None)  # nothing blocked: no spot check

"""``probe lab run`` end to end, as a subprocess: a complete run, SIGTERM, and SIGKILL.

Whatever happens to the runner, the machine must end clean: no lab namespace, no
/etc/netns entry, no state directory, no daemon or probe process. After a SIGKILL the
runner cannot clean up itself; ``probe lab down`` must then find and remove everything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from labutil import ROOT, lab_leftovers, require_root

from probe.lab import runner, truth

pytestmark = pytest.mark.lab


def lab(*args: str) -> list[str]:
    return [sys.executable, "-m", "probe.lab.cli", *args]


@pytest.fixture(autouse=True)
def torn_down() -> Iterator[None]:
    """Whatever a test's assertions say, it leaves no lab behind for the next test: a run
    that a failing test left up is stopped here (and the test has already failed)."""
    yield
    if lab_leftovers():
        subprocess.run(lab("down"), cwd=ROOT, capture_output=True, timeout=120)


def start_run(output: Path, duration: float, interval: float) -> subprocess.Popen[str]:
    require_root()
    assert lab_leftovers() == [], "a lab is already up: run `probe lab down`"
    argv = lab(
        "run",
        "--scenario",
        "smoke",
        "--duration",
        str(duration),
        "--interval",
        str(interval),
        "--output",
        str(output),
    )
    return subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)


def wait_until_up(process: subprocess.Popen[str]) -> str:
    """Block until the runner says the lab is up (``up()`` has returned); that line."""
    assert process.stderr is not None
    line = process.stderr.readline()  # the runner's first line; EOF if it failed
    assert line.startswith("lab: up:"), line + process.communicate()[1]
    return line


def wait_until_daemon_ready(process: subprocess.Popen[str]) -> None:
    """Block until the lab daemon is ready: ``up()`` is then usually still writing the probe
    configs (the runner has not said "lab: up" yet)."""
    deadline = time.monotonic() + 30
    while not (runner.STATE_DIR / "ready").exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the lab did not come up in 30 s"
        time.sleep(0.01)


def test_complete_run_measures_every_isp_writes_the_truth_and_cleans_up(tmp_path: Path) -> None:
    # A duration shorter than a round: exactly one round, however slow the machine is
    # (a round always completes, and none starts after the duration).
    process = start_run(tmp_path, duration=0.5, interval=2)
    _, progress = process.communicate(timeout=120)
    assert process.returncode == 0, progress
    assert "lab: up: smoke, 2 ISPs" in progress
    assert "lab: round 1 done" in progress and "lab: down" in progress
    assert "lab: round 2" not in progress
    assert lab_leftovers() == []
    for isp in ("sni", "clean"):
        lines = [line for f in (tmp_path / isp).rglob("*.jsonl") for line in f.open()]
        assert lines, f"no measurement from {isp}"
        assert all(json.loads(line)["probe_asn"].startswith("AS6449") for line in lines)
    records = truth.read(tmp_path / "truth.jsonl")
    assert {(r.isp, r.technique, r.method) for r in records} == {("sni", "sni_reset", "tls")}
    described = json.loads((tmp_path / "lab.json").read_text())
    assert [i["asn"] for i in described["isps"]] == ["AS64496", "AS64497"]
    assert (tmp_path / "scenario.toml").exists()


def test_sigterm_tears_the_lab_down(tmp_path: Path) -> None:
    process = start_run(tmp_path, duration=300, interval=5)
    first = wait_until_up(process)
    process.send_signal(signal.SIGTERM)
    _, progress = process.communicate(timeout=30)
    progress = first + progress
    assert process.returncode == 1  # interrupted: the run is incomplete
    assert "interrupted" in progress and "lab: down" in progress
    assert lab_leftovers() == []
    # The daemon closed the open window at shutdown: the truth survives the interruption.
    techniques = {r.technique for r in truth.read(tmp_path / "truth.jsonl")}
    assert techniques == {"sni_reset"}, progress
    assert "lab smoke down (status 0)" in (tmp_path / "logs" / "daemon.log").read_text()


def test_sigterm_while_the_lab_comes_up_tears_it_down(tmp_path: Path) -> None:
    process = start_run(tmp_path, duration=300, interval=5)
    wait_until_daemon_ready(process)
    process.send_signal(signal.SIGTERM)
    _, progress = process.communicate(timeout=30)
    assert process.returncode == 1, progress
    assert "interrupted" in progress and "lab: down" in progress
    assert lab_leftovers() == []


def test_down_cleans_up_after_a_sigkilled_run(tmp_path: Path) -> None:
    process = start_run(tmp_path, duration=300, interval=5)
    wait_until_up(process)
    time.sleep(1.0)  # let a probe round start, so there are probe processes to find too
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert lab_leftovers() != []  # the killed runner could not clean up
    done = subprocess.run(lab("down"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "daemon" in done.stdout
    assert lab_leftovers() == []

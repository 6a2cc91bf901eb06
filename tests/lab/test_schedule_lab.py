"""``probe schedule`` in a sporadic lab ISP: bursts time the censor's windows to seconds.

One simulated ISP resets the TLS handshake of X names on and off (periods of 10-60 s,
from the scenario's seed). The scheduler runs in the vantage namespace as a volunteer
would run it (a regular campaign every 30 s, bursts every 5 s after a flip), with its
identity discovered from the lab's resolvers. Afterwards every flip of the verdict seen
during a burst must bracket an edge of a truth window within a few seconds, and SIGTERM
must have ended the scheduler with exit code 0.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from labutil import ROOT, lab_leftovers, require_root

from probe import store
from probe.lab import runner, truth
from probe.lab.topology import PUBLIC_RESOLVERS

pytestmark = pytest.mark.lab

SCENARIO = """
name = "burst"
seed = 11
ipv6 = false

[[isps]]
id = "spor"
asn = "AS64510"
cc = "PK"
name = "Simulated ISP (sporadic SNI reset), PK"
techniques = [{ technique = "sni_reset", schedule = "sporadic" }]
"""
RUN_SECONDS = 150.0
BURST = 5.0
SLACK = BURST + 2 * runner.LAB_TIMEOUT + 2.0  # a burst's period, a failed step, clock seconds


def seconds(text: str) -> float:
    """UNIX time of ``YYYY-MM-DD HH:MM:SS`` (measurements) or ISO 8601 with Z (truth)."""
    if "T" in text:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return datetime.fromisoformat(text + "+00:00").timestamp()


def probe_config(text: str) -> str:
    assert f'identity_resolver = "{PUBLIC_RESOLVERS[0]}"' in text  # lab configs discover
    text = re.sub(r"(?m)^x = .*$", 'x = ["x.com"]', text)
    text = re.sub(r"(?m)^throughput_path = .*$", 'throughput_path = ""', text)  # not timed here
    return text + (
        f"[schedule]\ninterval = 30\njitter = 0\nburst_interval = {BURST}\n"
        "burst_duration = 600\nstop_grace = 5\n"
    )


def test_bursts_time_sporadic_windows(tmp_path: Path) -> None:
    require_root()
    assert lab_leftovers() == [], "a lab is already up: run `probe lab down`"
    scenario = tmp_path / "burst.toml"
    scenario.write_text(SCENARIO)
    truth_file = tmp_path / "truth.jsonl"
    lab = runner.up(scenario, horizon=RUN_SECONDS + 120, truth=truth_file)
    try:
        [net] = lab.topology.isps
        config = tmp_path / "spor.toml"
        config.write_text(probe_config(lab.configs["spor"].read_text()))
        log = tmp_path / "schedule.log"
        argv = [
            "ip",
            "netns",
            "exec",
            net.vantage,
            sys.executable,
            "-m",
            "probe",
            "schedule",
            "--config",
            str(config),
            "--output",
            str(tmp_path / "out"),
        ]
        with log.open("wb") as err:
            process = subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        try:
            time.sleep(RUN_SECONDS)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        runner.down(lab.state)
    assert lab_leftovers() == []

    measurements = sorted(
        (m for m in store.read([tmp_path / "out"]) if m["input"] == "https://x.com/"),
        key=lambda m: m["measurement_start_time"],
    )
    assert measurements, log.read_text()
    first = measurements[0]
    assert (first["probe_asn"], first["probe_cc"]) == ("AS64510", "PK")  # discovered in the lab
    assert first["probe_network_name"] == "Simulated ISP (sporadic SNI reset)"
    assert all(m["annotations"]["network_type"] != "vpn" for m in measurements)
    assert "probe_ip" in first and net.vantage_address not in json.dumps(measurements)

    windows = [r for r in truth.read(truth_file) if r.domain == "x.com"]
    edges = sorted({seconds(w.start) for w in windows} | {seconds(w.end) for w in windows})
    samples = [
        (
            seconds(m["measurement_start_time"]),
            m["test_keys"]["x_verdict"]["status"],
            m["annotations"]["x_trigger"],
        )
        for m in measurements
    ]
    decisive = [s for s in samples if s[1] in ("ok", "blocked")]
    flips = [(a, b) for a, b in itertools.pairwise(decisive) if a[1] != b[1]]
    timed = [(a, b) for a, b in flips if b[2] == "burst"]
    assert any(s[2] == "burst" for s in samples), log.read_text()
    assert timed, f"no flip seen during a burst: {samples}"
    for a, b in timed:
        assert b[0] - a[0] <= SLACK, (a, b)  # the flip is bracketed within seconds ...
        assert any(a[0] - 2 <= edge <= b[0] + 2 for edge in edges), (a, b, edges)  # ... at an edge

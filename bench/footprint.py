"""Footprint of an unattended probe: ``probe schedule`` for N minutes on a loopback internet.

A campaign every 60 s against the default list's shape (12 X names and 2 control
sites, served on 127.0.0.1 by tests/loopback.py, one of them refusing connections).
The scheduler runs as a child process; its RSS (``/proc/<pid>/status`` VmRSS) is
sampled every few seconds and its CPU time (``/proc/<pid>/stat``) is divided by the
campaigns it logged. Targets: RSS flat over time and <= 60 MB.

Run: python bench/footprint.py [--minutes 30] [--sample 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from loopback import internet  # noqa: E402

from probe import consent  # noqa: E402

TARGETS = [f"x{i}.bench.example" for i in range(11)] + ["refused.bench.example"]
CONTROLS = ["control1.bench.example", "control2.bench.example"]
RSS_LIMIT_MB = 60.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="probe-footprint-"))
    state = tmp / "state"
    consent.record(state)
    records = {d: {"A": ["127.0.0.1"]} for d in TARGETS[:-1] + CONTROLS}
    records["refused.bench.example"] = {"A": ["127.0.0.3"]}  # nothing listens: refused
    with internet(tmp, records) as net:
        config = tmp / "bench.toml"
        config.write_text(net.config(TARGETS, CONTROLS) + "[schedule]\ninterval = 60\n")
        log = tmp / "schedule.log"
        env = {**os.environ, "PROBE_STATE_DIR": str(state)}
        command = [
            sys.executable,
            "-m",
            "probe",
            "schedule",
            "--config",
            str(config),
            "--output",
            str(tmp / "out"),
        ]
        with open(log, "wb") as err:
            child = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err
            )
        samples: list[tuple[float, float]] = []
        start = time.monotonic()
        try:
            while time.monotonic() - start < args.minutes * 60 and child.poll() is None:
                samples.append((time.monotonic() - start, rss_mb(child.pid)))
                time.sleep(args.sample)
            cpu = cpu_seconds(child.pid)
        finally:
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=30)
    campaigns = log.read_text().count(" done: ")
    print(
        f"probe schedule, {args.minutes:g} min, a campaign every 60 s "
        f"({len(TARGETS)} targets, {len(CONTROLS)} controls); exit code {code} after SIGTERM"
    )
    print("minute  RSS (MB)")
    step = max(1, len(samples) // 15)
    for t, mb in samples[::step] + samples[-1:]:
        print(f"{t / 60:6.1f}  {mb:8.1f}")
    settled = [mb for t, mb in samples if t >= 60] or [mb for _, mb in samples]
    peak = max(mb for _, mb in samples)
    print(
        f"peak RSS {peak:.1f} MB (target <= {RSS_LIMIT_MB:g}); after the first minute "
        f"{min(settled):.1f}-{max(settled):.1f} MB (growth {settled[-1] - settled[0]:+.1f} MB)"
    )
    print(
        f"{campaigns} campaigns, CPU {cpu:.2f} s in all, {cpu / max(campaigns, 1):.3f} s per "
        "campaign"
    )
    print(f"(files in {tmp})")


if __name__ == "__main__":
    main()

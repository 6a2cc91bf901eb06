"""Engine benchmark on loopback (issue: measurement engine), figures for the README.

(a) 60 targets of which 15 stall at the TLS handshake: the run's wall time
    against the TLS step timeout (target: <= 1.3x, not 15x);
(b) peak RSS of `probe run` (target: <= 60 MB);
(c) `probe --version` start-up (target: <= 0.3 s);
(d) CPU seconds of a run of the default list's shape (15 targets).

Everything runs on 127.0.0.0/8: a DNS server, a TLS+HTTP replica on
127.0.0.1, a TLS server that swallows every ClientHello on 127.0.0.2.
Run: python bench/engine.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from loopback import internet  # noqa: E402
from servers import StallServer  # noqa: E402

TLS_TIMEOUT = 4.0  # the default of configs/x.toml
CONCURRENCY = (64, 256)  # 256 is the default


def probe(*args: str) -> tuple[float, float, int]:
    """Run the probe CLI; return (wall seconds, CPU seconds, peak RSS in MB) of that child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "probe", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss // 1024


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="probe-bench-"))
    ok = [f"ok{i}.bench.example" for i in range(45)]
    stalled = [f"stall{i}.bench.example" for i in range(15)]
    records = {d: {"A": ["127.0.0.1"]} for d in ok} | {d: {"A": ["127.0.0.2"]} for d in stalled}
    records["control.bench.example"] = {"A": ["127.0.0.1"]}
    with internet(tmp, records) as net, StallServer(host="127.0.0.2", port=net.https_port):
        for concurrency in CONCURRENCY:
            config = tmp / "bench.toml"
            text = net.config(ok + stalled, ["control.bench.example"], concurrency=concurrency)
            config.write_text(text.replace("tls = 1.0", f"tls = {TLS_TIMEOUT}"))
            wall, cpu, rss = probe("run", "--config", str(config), "--output", str(tmp / "out"))
            print(
                f"(a) 60 targets, 15 stalled, concurrency {concurrency}: wall {wall:.2f} s = "
                f"{wall / TLS_TIMEOUT:.2f} x the TLS timeout ({TLS_TIMEOUT} s); CPU {cpu:.2f} s"
            )
            print(f"(b) peak RSS of that run: {rss} MB")
        small = tmp / "small.toml"
        small.write_text(net.config(ok[:15], ["control.bench.example"]))
        runs = [
            probe("run", "--config", str(small), "--output", str(tmp / "out")) for _ in range(3)
        ]
        cpu15 = min(r[1] for r in runs)
        print(
            f"(d) 15 targets: CPU {cpu15:.2f} s per run (best of 3), wall "
            f"{min(r[0] for r in runs):.2f} s, peak RSS {max(r[2] for r in runs)} MB"
        )
    version = min(probe("--version")[0] for _ in range(5))
    print(f"(c) probe --version: {version:.3f} s (best of 5)")


if __name__ == "__main__":
    main()

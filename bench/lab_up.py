"""Benchmark: how long ``probe lab up`` takes, and how much memory the running lab holds.

Run as root from the repository: ``python bench/lab_up.py [--scenario pakistan-2024]
[--repeat 3]``. Each repetition brings the lab up, measures the resident memory of every lab
process (the daemon and anything living in a lab namespace), and takes it down again.
Budgets: up <= 10 s, lab RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probe.lab import runner  # after the path set-up: the repository's probe, not another

UP_BUDGET = 10.0
RSS_BUDGET_MB = 300.0


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kib = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
    )
    return kib / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="pakistan-2024")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ups, downs, rss = [], [], []
    for _ in range(args.repeat):
        start = time.monotonic()
        lab = runner.up(args.scenario)
        ups.append(time.monotonic() - start)
        try:
            time.sleep(1.0)  # let the techniques settle (sniffers, proxies) before measuring
            pids = runner.lab_processes() | {lab.pid}
            rss.append(sum(rss_mb(pid) for pid in pids))
            print(f"up {ups[-1]:.2f} s; {len(lab.topology.namespaces)} namespaces; "
                  f"{len(pids)} lab process(es), RSS {rss[-1]:.1f} MB")  # fmt: skip
        finally:
            start = time.monotonic()
            runner.down()
            downs.append(time.monotonic() - start)
    print(f"{args.scenario}: up best {min(ups):.2f} s / worst {max(ups):.2f} s "
          f"(budget {UP_BUDGET:.0f} s); down worst {max(downs):.2f} s; "
          f"RSS worst {max(rss):.1f} MB (budget {RSS_BUDGET_MB:.0f} MB)")  # fmt: skip
    return 0 if max(ups) <= UP_BUDGET and max(rss) <= RSS_BUDGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())

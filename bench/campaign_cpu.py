"""CPU per campaign before and after control lines got a verdict (issue 14 item 6).

A campaign of the default list's shape writes 12 target lines and 2 control lines; each
line's verdict is computed once, as it is written (probe.pipeline.scored). Before
issue 14 only targets were judged; now controls are too (probe.verdict.control). This
times the judging of one campaign's lines both ways, in one run, over golden measurements
(targets: the golden cases in turn; controls: the control sites' own observations of a
golden run), and prints the ratio. Target: the new cost <= 1.5x the old.

Spot checks (probe.schedule_policy.spotted) add campaigns, not cost to one: a spot check
measures only the targets last seen blocked, so it costs at most a regular campaign.

Then the whole campaign: the CPU seconds of ``probe run`` (one campaign of 12 targets and
2 controls, the default config's steps, on a loopback internet: tests/loopback.py) of this
tree and of the commit before issue 14's work (:data:`BEFORE`, unpacked with ``git
archive``), alternated in one run, the median of ``--runs`` each. The commits in between
also hold other issues' work, so the ratio bounds issue 14's share from above.
Target: <= 1.5x.

Run: python bench/campaign_cpu.py [--campaigns 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from probe.pipeline import scored
from probe.verdict import summary_keys, verdict
from probe.verdict.control import control_verdict

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
BEFORE = "8c85e31"  # the last commit before issue 14's first (47a3202, throttling shape)
sys.path.insert(0, str(ROOT / "tests"))

from loopback import internet  # noqa: E402


def control_line(m: dict[str, Any], site: str) -> dict[str, Any]:
    line = copy.deepcopy(m)
    line["annotations"]["x_role"] = "control"
    line["input"] = f"https://{site}/"
    tk = line["test_keys"]
    line["test_keys"] = {
        key: [e for e in tk.get(key, []) if "control_site" in e.get("tags", ())]
        for key in ("queries", "tcp_connect", "tls_handshakes", "requests", "network_events")
    }
    return line


def old_way(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Before: a verdict for target lines only."""
    return [
        m | {"test_keys": summary_keys(verdict(m)) | m["test_keys"]}
        if m["annotations"]["x_role"] == "target"
        else m
        for m in lines
    ]


def run_cpu(tree: Path, config: Path, output: Path) -> float:
    """CPU seconds (user + system) of one ``probe run`` with the code of ``tree``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-m", "probe", "run", "--config", str(config), "--output", str(output)],
        check=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_campaign(runs: int) -> None:
    """``probe run`` of this tree against the one at :data:`BEFORE` (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="probe-bench-cpu-") as folder:
        _whole_campaign(Path(folder), runs)


def _whole_campaign(tmp: Path, runs: int) -> None:
    archive = subprocess.run(["git", "archive", BEFORE, "probe"], cwd=ROOT, check=True,
                             capture_output=True).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp / "before", filter="data")
    targets = [f"t{i}.bench.example" for i in range(12)]
    controls = ["c1.bench.example", "c2.bench.example"]
    with internet(tmp, {d: {"A": ["127.0.0.1"]} for d in targets + controls}) as net:
        config = tmp / "bench.toml"
        text = net.config(targets, controls)
        config.write_text(text.replace("[vantage]\n", "[vantage]\nconsent = true\n", 1))
        cpu: dict[str, list[float]] = {f"before ({BEFORE})": [], "now": []}
        for i in range(runs):  # alternated: load from other work hits both alike
            for (name, seconds), tree in zip(cpu.items(), (tmp / "before", ROOT), strict=True):
                seconds.append(run_cpu(tree, config, tmp / f"out-{name[:3]}-{i}"))
    for name, seconds in cpu.items():
        print(f"probe run {name:<18} {statistics.median(seconds):6.2f} s CPU per campaign "
              f"(median of {runs}; {min(seconds):.2f}-{max(seconds):.2f})")  # fmt: skip
    old, now = (statistics.median(v) for v in cpu.values())
    print(f"ratio now/before, whole campaign: {now / old:.2f} (target <= 1.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5, help="probe runs of each tree")
    args = parser.parse_args()
    cases = sorted(p for p in GOLDEN.iterdir() if (p / "measurement.json").is_file())
    targets = [json.loads((c / "measurement.json").read_text()) for c in cases]
    for m in targets:
        m["test_keys"].pop("x_verdict", None)
    ok = json.loads((GOLDEN / "ok" / "measurement.json").read_text())
    controls = [control_line(ok, "www.example.com"), control_line(ok, "www.wikipedia.org")]
    campaigns = [
        [*(targets[(i + k) % len(targets)] for k in range(12)), *controls]
        for i in range(args.campaigns)
    ]
    timings: dict[str, float] = {}
    for _ in range(3):  # alternated, best of three: warm-up and noise hit both alike
        for name, judge in (
            ("targets only (before)", old_way),
            ("every line (now)", lambda lines: [scored(m) for m in lines]),
        ):
            work = copy.deepcopy(campaigns)
            began = time.process_time()
            for lines in work:
                judge(lines)
            seconds = (time.process_time() - began) / len(work)
            timings[name] = min(timings.get(name, seconds), seconds)
    before, now = timings.values()
    for name, seconds in timings.items():
        print(f"{name:<24} {seconds * 1e3:8.2f} ms CPU per campaign (12 targets, 2 controls)")
    print(f"ratio now/before: {now / before:.2f} (target <= 1.5)")
    control, target = controls[0], targets[0]
    for name, line, judge in (("control", control, control_verdict), ("target", target, verdict)):
        began = time.process_time()
        for _ in range(500):
            judge(line)
        print(f"one {name} verdict: {(time.process_time() - began) / 500 * 1e3:.3f} ms CPU")
    whole_campaign(args.runs)


if __name__ == "__main__":
    main()

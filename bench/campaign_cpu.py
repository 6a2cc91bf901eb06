"""CPU per campaign before and after control lines got a verdict (issue 14 item 6).

A campaign of the default list's shape writes 12 target lines and 2 control lines; each
line's verdict is computed once, as it is written (probe.pipeline.scored). Before
issue 14 only targets were judged; now controls are too (probe.verdict.control). This
times the judging of one campaign's lines both ways, in one run, over golden measurements
(targets: the golden cases in turn; controls: the control sites' own observations of a
golden run), and prints the ratio. Target: the new cost <= 1.5x the old.

Spot checks (probe.schedule_policy.spotted) add campaigns, not cost to one: a spot check
measures only the targets last seen blocked, so it costs at most a regular campaign.

Run: python bench/campaign_cpu.py [--campaigns 200]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

from probe.pipeline import scored
from probe.verdict import summary_keys, verdict
from probe.verdict.control import control_verdict

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=200)
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


if __name__ == "__main__":
    main()

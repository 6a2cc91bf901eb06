"""Synthetic OONI archives for the report benchmark on OONI data (issue 16 item 7).

Writes what OONI's probes would have uploaded from many networks: ``web_connectivity`` 0.5
lines (one ``.jsonl.gz`` per ASN and UTC day), each built from a measurement of probe-cli's
minipipeline test data (``../shared/data/ooni-samples``: a real probe's output against a
simulated network) with the input's domain put in its place. Each ASN has a known truth: every
X target open, or blocked by one method (DNS NXDOMAIN or bogon, TCP timeout, TLS reset, an HTTP
page that differs, HTTP reset), always or in about half of the runs (sporadic); the control
sites (2 of 9 inputs, ~22% of the lines, as in the issue's generator) are always reachable.
Every line has its own timings (every step's ``t0``/``t``), start time and report id, so no two
lines are the same text; what the measurements show (answers, failures, pages) repeats, as it
does across the volunteers of one network.

Deterministic for a given seed. Run: ``python bench/synth_ooni.py OUT [--rows N]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
#: probe-cli's minipipeline cases in ../shared (beside the checkout, or beside its worktrees).
SAMPLES = (
    next(
        (p for p in (_ROOT.parent / "shared", _ROOT.parent.parent / "shared") if p.is_dir()),
        _ROOT.parent / "shared",
    )
    / "data/ooni-samples/ooni-probe-cli/minipipeline-generated"
)
TARGETS = ("x.com", "twitter.com", "www.twitter.com", "api.x.com", "t.co", "abs.twimg.com",
           "pbs.twimg.com")  # fmt: skip
CONTROLS = ("www.wikipedia.org", "www.example.org")
START = datetime(2024, 2, 17, tzinfo=UTC)
#: The truth of an ASN's X targets -> the minipipeline case its lines are copied from.
CASES = {
    "ok": "successWithHTTPS",
    "dns.nxdomain": "dnsBlockingNXDOMAIN",
    "dns.bogon": "dnsBlockingBOGON",
    "tcp_ip.timeout": "tcpBlockingConnectTimeout",
    "tls.reset": "tlsBlockingConnectionResetWithConsistentDNS",
    "http.diff": "httpDiffWithConsistentDNS",
    "http.reset": "httpBlockingConnectionReset",
}
_META = ("@@ASN@@", "@@NET@@", "@@START@@", "@@REPORT@@")


def template(case: str, domain: str) -> list[str]:
    """The case's measurement for ``domain`` as compact JSON, split around its timings and
    the per-line keys (:data:`_META`): the text between them."""
    text = (SAMPLES / case / "measurement.json").read_text().replace("www.example.com", domain)
    m = json.loads(text)
    m |= {"probe_asn": _META[0], "probe_network_name": _META[1], "report_id": _META[3],
          "measurement_start_time": _META[2], "test_start_time": _META[2]}  # fmt: skip
    line = json.dumps(m, separators=(",", ":"))
    return re.split(r'("(?:t0|t|test_runtime)":)-?[0-9.eE+-]+', line)


def fill(parts: list[str], rng: random.Random, meta: dict[str, str]) -> str:
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a timing key: a fresh number
            out.append(f"{part}{rng.uniform(0.001, 3.0):.6f}")
        else:
            for key, value in meta.items():
                part = part.replace(key, value)
            out.append(part)
    return "".join(out)


def truths(asns: int) -> list[tuple[str, bool]]:
    """Per ASN: the truth of its X targets, and whether it blocks only in about half the runs."""
    plan = list(CASES)
    return [(plan[i % len(plan)], i % 3 == 2 and plan[i % len(plan)] != "ok")
            for i in range(asns)]  # fmt: skip


def generate(out: Path, rows: int = 1_000_000, asns: int = 50, days: int = 30,
             seed: int = 20240217) -> int:  # fmt: skip
    """Write about ``rows`` lines under ``out``; return how many were written."""
    rng = random.Random(seed)
    parts = {(case, d): template(case, d) for case in CASES.values() for d in TARGETS + CONTROLS}
    inputs = TARGETS + CONTROLS
    runs = max(1, rows // (asns * len(inputs)))
    written = 0
    for i, (truth, sporadic) in enumerate(truths(asns)):
        asn = f"AS{64500 + i}"
        files: dict[str, list[str]] = {}
        for r in range(runs):
            moment = START + timedelta(seconds=(r + rng.random()) * days * 86400 / runs)
            blocked = not sporadic or rng.random() < 0.5
            meta = {"@@ASN@@": asn, "@@NET@@": f"Synthetic ISP {i + 1} ({truth})",
                    "@@START@@": moment.strftime("%Y-%m-%d %H:%M:%S"),
                    "@@REPORT@@": f"{rng.getrandbits(64):016x}"}  # fmt: skip
            lines = files.setdefault(moment.strftime("%Y-%m-%d"), [])
            for domain in inputs:
                case = CASES[truth if blocked and domain in TARGETS else "ok"]
                lines.append(fill(parts[case, domain], rng, meta))
        folder = out / asn.lower()
        folder.mkdir(parents=True, exist_ok=True)
        for day, lines in files.items():
            with gzip.open(folder / f"{day}.jsonl.gz", "wt", compresslevel=1) as f:
                f.write("\n".join(lines) + "\n")
            written += len(lines)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{generate(args.out, args.rows)} lines written under {args.out}")


if __name__ == "__main__":
    main()

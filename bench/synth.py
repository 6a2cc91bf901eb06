"""Synthetic measurement archives for the report benchmark (issue: probe report).

Writes what many volunteers would upload: per volunteer one ``.jsonl.gz`` file per UTC day,
one line per target (12 X targets) and per control (2 sites) per run. The ISPs have the
shapes the lab has: always blocked by an SNI reset, blocked by DNS / IP / an HTTP blockpage,
only the main names blocked (the image CDN open), sporadic blocking with open windows of
minutes, throttling, a method change half way, clean networks, and outages on every network.

Every line holds the keys ``probe run`` writes (the verdict keys ``x_analysis_version``,
``x_verdict`` as the probe wrote it for the golden case, evidence and explanation included,
``blocking``, ``accessible``); no reader relies on their order. Its
observations (``queries``, ``tcp_connect``, ``tls_handshakes``, ``requests``, ...) are either
those of the lab measurement with the same verdict (``observations="lab"``: the golden cases
under ``tests/golden``, written by the probe in the lab, ~8.5 KB a line, as a volunteer's file
holds) or empty arrays (``observations="empty"``: ~1.5 KB a line, the report's fixed cost per
line laid bare). A few lines carry an old ``x_analysis_version`` (the report re-scores them), a
few are duplicated in a second upload, and 30% of the files end with a torn line.

Deterministic for a given seed. Run: ``python bench/synth.py OUT [--rows N] [--observations
lab|empty]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from probe.format.vocab import FORMAT_VERSION
from probe.verdict import summary_keys, verdict

TARGETS = (
    "x.com", "www.x.com", "twitter.com", "www.twitter.com", "mobile.twitter.com", "api.x.com",
    "api.twitter.com", "upload.twitter.com", "t.co", "abs.twimg.com", "pbs.twimg.com",
    "video.twimg.com",
)  # fmt: skip
CONTROLS = ("www.wikipedia.org", "www.example.com")
MEDIA = frozenset(t for t in TARGETS if t.endswith("twimg.com"))
START = datetime(2024, 2, 17, tzinfo=UTC)
STALE_SHARE = 0.005  # rows written by older rules: re-scored by the report
DUPLICATE_SHARE = 0.002  # rows uploaded twice (same measurement_uid in another file)

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"
#: verdict detail (or status) -> the golden lab case whose observations a line gets.
LAB_CASES = {
    "ok": "ok", "down": "outage", "tls.sni_reset": "sni_reset", "dns.blockpage": "dns_blockpage",
    "tcp_ip.timeout": "ip_blackhole", "http.blockpage": "http_blockpage", "throttling": "throttle",
}  # fmt: skip
_OBSERVED = '"x_observations":0'  # stands for the observations in a line, until spliced in


@dataclass(frozen=True, slots=True)
class Isp:
    asn: str
    name: str
    shape: str  # always | partial | sporadic | switch | clean | flaky
    detail: str  # the blocking detail while blocked
    volunteers: int


def isps(count: int, rng: random.Random) -> list[Isp]:
    """``count`` ISPs cycling through the shapes (about a third sporadic)."""
    plan = [
        ("always", "tls.sni_reset"), ("sporadic", "tls.sni_reset"), ("clean", ""),
        ("always", "dns.blockpage"), ("sporadic", "tls.sni_reset"), ("partial", "tls.sni_reset"),
        ("always", "tcp_ip.timeout"), ("clean", ""), ("sporadic", "tls.sni_reset"),
        ("always", "http.blockpage"), ("switch", "dns.blockpage"), ("always", "throttling"),
        ("flaky", ""), ("sporadic", "dns.blockpage"),
    ]  # fmt: skip
    out = []
    for i in range(count):
        shape, detail = plan[i % len(plan)]
        out.append(Isp(f"AS{64500 + i}", f"Synthetic ISP {i + 1} ({shape})", shape, detail,
                       rng.choice((1, 2, 3))))  # fmt: skip
    return out


def spells(
    rng: random.Random, days: int, mean_on: float, mean_off: float
) -> list[tuple[float, float]]:
    """Alternating (start, end) seconds of "on" spells, exponential lengths."""
    out, t, horizon = [], rng.expovariate(1 / mean_off), days * 86400.0
    while t < horizon:
        length = rng.expovariate(1 / mean_on)
        out.append((t, t + length))
        t += length + rng.expovariate(1 / mean_off)
    return out


def inside(t: float, windows: list[tuple[float, float]]) -> bool:
    return any(a <= t < b for a, b in windows)


def golden(case: str, domain: str) -> dict[str, Any]:
    """The golden lab measurement of ``case`` (measured for x.com), with ``domain`` put in
    x.com's place."""
    text = (GOLDEN / case / "measurement.json").read_text()
    text = text.replace('"x.com"', f'"{domain}"').replace("//x.com/", f"//{domain}/")
    measurement: dict[str, Any] = json.loads(text.replace("CN=x.com", f"CN={domain}"))
    return measurement


def observations(kind: str) -> dict[tuple[str, str], str]:
    """(verdict detail or status, domain) -> the JSON members of the observation arrays of
    its lines: the golden case's, or empty arrays."""
    if kind not in ("lab", "empty"):
        raise ValueError(f"observations: 'lab' or 'empty', not {kind!r}")
    arrays = ("queries", "tcp_connect", "tls_handshakes", "requests")
    empty: dict[str, list[Any]] = {k: [] for k in arrays}
    return {(key, domain): json.dumps(golden(case, domain)["test_keys"] if kind == "lab"
                                      else empty, separators=(",", ":"))[1:-1]
            for key, case in LAB_CASES.items() for domain in TARGETS + CONTROLS}  # fmt: skip


def verdicts() -> dict[tuple[str, str], dict[str, Any]]:
    """(verdict detail or status, domain) -> the verdict keys the probe wrote for the golden
    case (``x_verdict`` with its evidence and explanation: ~1 KB of a line)."""
    out = {}
    for key, case in LAB_CASES.items():
        for domain in TARGETS:
            keys = summary_keys(verdict(golden(case, domain)))
            assert key in (keys["x_verdict"]["detail"], keys["x_verdict"]["status"]), (key, domain)
            out[key, domain] = keys
    return out


def generate(out: Path, rows: int = 1_000_000, asns: int = 50, days: int = 30,
             seed: int = 20240217, version: str = "1", kind: str = "lab") -> int:  # fmt: skip
    """Write about ``rows`` measurements under ``out`` with ``kind`` observations
    (:func:`observations`); return how many lines were written."""
    observed, verdict_keys = observations(kind), verdicts()
    rng = random.Random(seed)
    per_run = len(TARGETS) + len(CONTROLS)
    runs_per_isp = max(1, rows // (asns * per_run))
    written = 0
    for isp in isps(asns, rng):
        outages = spells(rng, days, 3 * 3600, 4 * 86400 if isp.shape != "flaky" else 10 * 3600)
        # Sporadic: blocked for hours, open for minutes ("access came back for a few minutes").
        opens = spells(rng, days, 20 * 60, 3 * 3600) if isp.shape == "sporadic" else []
        interval = days * 86400.0 / runs_per_isp * isp.volunteers
        for v in range(isp.volunteers):
            written += _volunteer(out, rng, isp, v, days, interval, outages, opens, version,
                                  observed, verdict_keys)  # fmt: skip
    return written


def _volunteer(out: Path, rng: random.Random, isp: Isp, v: int, days: int, interval: float,
               outages: list[tuple[float, float]], opens: list[tuple[float, float]],
               version: str, observed: dict[tuple[str, str], str],
               verdict_keys: dict[tuple[str, str], dict[str, Any]]) -> int:  # fmt: skip
    files: dict[str, list[str]] = {}
    t = rng.uniform(0, interval)
    while t < days * 86400:
        run_id = f"{rng.getrandbits(64):016x}"
        moment = START + timedelta(seconds=t)
        stamp = moment.strftime("%Y-%m-%d %H:%M:%S")
        lines = files.setdefault(moment.strftime("%Y-%m-%d"), [])
        down = inside(t, outages)
        for domain in TARGETS + CONTROLS:
            control = domain in CONTROLS
            status, detail = _state(isp, domain, t, days, down, opens)
            found = None if control else verdict_keys[detail or status, domain]
            m = _measurement(isp, run_id, stamp, domain, found, rng, version)
            line = json.dumps(m, separators=(",", ":"))  # the few keys; the arrays spliced in
            lines.append(line.replace(_OBSERVED, observed[detail or status, domain], 1))
        t += interval * rng.uniform(0.8, 1.2)
    count = 0
    folder = out / isp.asn.lower() / f"volunteer{v}"
    folder.mkdir(parents=True, exist_ok=True)
    for day, lines in files.items():
        dupes = [x for x in lines if rng.random() < DUPLICATE_SHARE]
        body = "\n".join(lines) + "\n"
        if rng.random() < 0.3:  # a crash left a torn last line
            body += lines[-1][: len(lines[-1]) // 2]
        with gzip.open(folder / f"{day}.jsonl.gz", "wt", compresslevel=1) as f:
            f.write(body)
        if dupes:  # the volunteer uploaded part of the day again
            with gzip.open(folder / f"{day}.reupload.jsonl.gz", "wt", compresslevel=1) as f:
                f.write("\n".join(dupes) + "\n")
        count += len(lines) + len(dupes)
    return count


def _state(isp: Isp, domain: str, t: float, days: int, down: bool,
           opens: list[tuple[float, float]]) -> tuple[str, str]:  # fmt: skip
    if domain in CONTROLS:
        return ("down" if down else "ok"), ""
    if down:
        return "down", ""
    blocked = {
        "always": True,
        "partial": domain not in MEDIA,
        "sporadic": not inside(t, opens),
        "switch": True,
        "clean": False,
        "flaky": False,
    }[isp.shape]
    if not blocked:
        return "ok", ""
    if isp.shape == "switch" and t > days * 86400 / 2:
        return "blocked", "tls.sni_reset"
    return "blocked", isp.detail


def _measurement(isp: Isp, run_id: str, stamp: str, domain: str,
                 verdict_keys: dict[str, Any] | None, rng: random.Random,
                 version: str) -> dict[str, object]:  # fmt: skip
    """A line as ``probe run`` writes it, its observations to be spliced in for
    ``_OBSERVED``."""
    test_keys: dict[str, object] = {}
    if verdict_keys is not None:
        stale = rng.random() < STALE_SHARE
        test_keys |= verdict_keys | {"x_analysis_version": "0" if stale else version}
    role = "control" if verdict_keys is None else "target"
    return {
        "annotations": {
            "x_role": role,
            "engine_name": "probe",
            "platform": "linux",
            "network_type": "unknown",
        },
        "input": f"https://{domain}/",
        "measurement_start_time": stamp,
        "measurement_uid": f"{rng.getrandbits(128):032x}",
        "probe_asn": isp.asn,
        "probe_network_name": isp.name,
        "report_id": run_id,
        "software_name": "probe",
        "test_name": "x_reachability",
        "test_keys": test_keys | {"x_observations": 0},  # _OBSERVED
        "data_format_version": "0.2.0",
        "extensions": {"dnst": 0, "httpt": 0, "netevents": 0, "tcpconnect": 0, "tlshandshake": 0},
        "options": [],
        "probe_cc": "PK",
        "probe_ip": "127.0.0.1",
        "resolver_asn": isp.asn,
        "resolver_ip": "",
        "resolver_network_name": isp.name,
        "software_version": "0.1.0",
        "test_helpers": {},
        "test_runtime": round(rng.uniform(0.2, 8.0), 6),
        "test_start_time": stamp,
        "test_version": "0.1.0",
        "x_format_version": FORMAT_VERSION,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--observations", choices=("lab", "empty"), default="lab")
    args = parser.parse_args()
    lines = generate(args.out, args.rows, kind=args.observations)
    print(f"{lines} lines written under {args.out}")


if __name__ == "__main__":
    main()

"""The facts stage on its own: every golden measurement's named facts against its golden.

The verdict is observations -> facts -> decisions (probe.verdict.rules); each
golden case (tests/golden/<case>/) holds the measurement, its verdict
(``verdict.json``, tests/test_verdict.py) and its facts (``facts.json``, here):
each observation cited by its ``ref``, sets sorted. A change that moves a fact
shows up here even when the verdict stays the same.

Regenerate after a deliberate change of the facts (then read the diff):
``PROBE_REGENERATE_GOLDENS=1 .venv/bin/python -m pytest tests/test_facts.py
tests/test_verdict.py`` rewrites ``facts.json`` and ``verdict.json`` of every case.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from probe.verdict import observations
from probe.verdict.bogons import default_bogons
from probe.verdict.facts import facts, to_json
from probe.verdict.fingerprints import default_fingerprints

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "measurement.json").is_file())
REGENERATE = os.environ.get("PROBE_REGENERATE_GOLDENS") == "1"


def _facts(case: str) -> dict[str, object]:
    measurement = json.loads((GOLDEN / case / "measurement.json").read_text())
    found = facts(observations(measurement), default_fingerprints(), default_bogons())
    result: dict[str, object] = json.loads(json.dumps(to_json(found)))
    return result


@pytest.mark.parametrize("case", CASES)
def test_facts_golden(case: str) -> None:
    got = _facts(case)
    path = GOLDEN / case / "facts.json"
    if REGENERATE:
        path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n")
    assert got == json.loads(path.read_text())


def test_facts_name_the_finding_of_each_family() -> None:
    """The named facts a decision rests on, on the cases that show each censor."""
    dns = _facts("dns_injection")["dns"]
    assert isinstance(dns, dict) and dns["raced"] and dns["raced"][0][1]
    tcp = _facts("ip_blackhole")["tcp"]
    assert isinstance(tcp, dict) and tcp["every_failed"] and tcp["controls_ok"]
    tls = _facts("sni_reset")["tls"]
    assert isinstance(tls, dict) and tls["resets"] and not tls["stalls"]
    http = _facts("http_blockpage")["http"]
    assert isinstance(http, dict) and [fp for _, fp in http["blockpages"]]
    throughput = _facts("throttle")["throughput"]
    assert isinstance(throughput, dict) and throughput["slow_downloads"]
    health = _facts("outage")["health"]
    assert isinstance(health, dict) and health["state"] == "down"

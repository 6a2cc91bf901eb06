"""The two DNS questions of issue #13, as pure rules over variants of a golden case.

An on-path injector races the resolver: one UDP query, two different answers,
the forged one first (tests/golden/dns_injection: the DoH control confirms the
later one). And a resolver that floods an answer with thousands of addresses
(``x_oversized``). The loopback servers that do both are in tests/test_hostile.py;
here each decision is pinned against the variants a real network can produce.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from probe.verdict import verdict

CASE = Path(__file__).parent / "golden" / "dns_injection" / "measurement.json"
FORGED, GENUINE = "198.51.100.66", "203.0.113.10"


def _injected() -> dict[str, Any]:
    m: dict[str, Any] = json.loads(CASE.read_text())
    return m


def _without_doh(m: dict[str, Any]) -> dict[str, Any]:
    """The DoH control blocked: only plain-DNS controls, which the injector reaches too."""
    m = copy.deepcopy(m)
    for q in m["test_keys"]["queries"]:
        if q["engine"] == "doh":
            q.update(failure="generic_timeout_error", answers=[])
    return m


def _flood(m: dict[str, Any], *, controls: bool = False, count: int = 4000) -> dict[str, Any]:
    """The system resolver (UDP and getaddrinfo; with ``controls`` the plain-DNS controls
    too) answers ``count`` addresses; no race."""
    m = copy.deepcopy(m)
    queries = [q for q in m["test_keys"]["queries"] if "late_response" not in q["tags"]]
    flood = [{"answer_type": "A", "ipv4": f"198.18.{i // 250}.{i % 250 + 1}", "ttl": 60}
             for i in range(count)]  # fmt: skip
    for q in queries:
        plain = "resolver_control" not in q["tags"] or (controls and q["engine"] != "doh")
        if q["hostname"] == "x.com" and plain:
            q.update(answers=flood, x_oversized=True)
    m["test_keys"]["queries"] = queries
    keys = m["test_keys"]
    keys["tcp_connect"] = [c for c in keys["tcp_connect"] if "target" not in c["tags"]] + [
        {**keys["tcp_connect"][2], "ip": f"198.18.0.{i}", "status": {
            "failure": "connection_refused", "success": False, "blocked": None}}
        for i in (1, 2)
    ]  # fmt: skip
    # no handshake at the genuine address either: the flood's addresses were all that was tried
    keys["tls_handshakes"] = [h for h in keys["tls_handshakes"] if "control_site" in h["tags"]]
    keys["requests"] = [r for r in keys.get("requests", []) if "x.com" not in r["request"]["url"]]
    return m


def test_a_forged_first_answer_the_doh_control_refutes_is_injection() -> None:
    v = verdict(_injected())
    assert (v.status, v.detail, v.address, v.confidence) == (
        "blocked",
        "dns.injected",
        FORGED,
        0.95,
    )


def test_without_a_secure_control_the_tls_proof_tells_the_forged_answer() -> None:
    """The plain control was raced too; the later answer's address validates TLS for the name,
    the first answer's does not: the first is forged."""
    v = verdict(_without_doh(_injected()))
    assert (v.status, v.detail, v.confidence) == ("blocked", "dns.injected", 0.9)
    assert f"whose {GENUINE} completed a valid TLS handshake" in v.explanation


def test_a_first_answer_that_validates_is_no_injection_but_is_said() -> None:
    """The injector forged a working address: two answers, but the first reaches the site."""
    m = _without_doh(_injected())
    for q in m["test_keys"]["queries"]:
        for a in q.get("answers") or []:
            a["ipv4"] = {FORGED: GENUINE, GENUINE: FORGED}.get(a["ipv4"], a["ipv4"])
    v = verdict(m)
    assert (v.status, v.confidence) == ("ok", 0.7)
    assert "got two different answers" in v.explanation


def test_a_flood_against_a_normal_doh_answer_is_dns_tampering() -> None:
    v = verdict(_flood(_injected()))
    assert (v.status, v.method, v.detail) == ("blocked", "dns", "dns.oversized")
    assert "4000 address records" in v.explanation and len(v.explanation) < 300


def test_a_flood_against_a_normal_plain_dns_answer_is_dns_tampering_too() -> None:
    v = verdict(_flood(_without_doh(_injected())))
    assert (v.status, v.detail) == ("blocked", "dns.oversized")
    assert f"the DNS control gives {FORGED}" in v.explanation


def test_a_flood_with_nothing_to_compare_is_never_tcp_ip_blocking() -> None:
    """Every resolver floods (the DoH control is blocked) and the few addresses tried refuse:
    the resolver chose them, so their refusals are no IP blocking."""
    v = verdict(_flood(_without_doh(_injected()), controls=True))
    assert (v.status, v.method) == ("inconclusive", None)
    assert "oversized DNS answer" in v.explanation

"""The public surface stays small and deliberate: every ``__all__`` is checked here.

Adding a name to a module's public API is a decision; this test makes it a
visible one (as encode/httpx does).
"""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "probe": ["__version__"],
    "probe.records": ["Certificate", "Clock", "DnsAnswer", "DnsQuery", "HttpRequest",
                      "NetworkEvent", "Observation", "TcpConnect", "Throughput", "TlsHandshake"],
    "probe.failures": ["FAILURES", "classify", "detail",
                       "failure_and_detail", "failure_for_rcode", "scrub_addresses"],
    "probe.net.dns": ["doh_client", "lookup_system", "query_doh", "query_tcp", "query_udp"],
    "probe.net.tcp": ["connect", "dial", "new_socket"],
    "probe.net.tls": ["handshake", "make_context"],
    "probe.net.http": ["ALPN", "download", "get"],
    "probe.campaign": ["CampaignResult", "DomainResult", "Sink", "run", "stream"],
    "probe.format.writer": ["TEST_NAME", "TEST_VERSION", "holds_address",
                            "identity_of", "measurement", "measurements", "new_report_id", "utc"],
    "probe.verdict": ["ANALYSIS_VERSION", "Fingerprints", "Observations", "Verdict", "judge",
                      "load_fingerprints", "observations", "summary_keys", "verdict"],
    "probe.format.ooni": ["EVIDENCE_KEYS", "SUPPORTED_VERSIONS", "TIMINGS", "chain", "is_ooni",
                          "parse_text", "skip_reason", "unwrap"],
    "probe.verdict.agreement": ["AGREEING_METHODS", "FLAG_METHODS", "OoniVerdict", "agrees",
                                "ooni_verdict"],
    "probe.format.vocab": ["FORMAT_VERSION", "KNOWN_FORMAT_VERSIONS", "Blocking", "FormatVersion",
                           "Method", "Operation", "Role", "Status", "Tag", "Trigger"],
    "probe.lab.censors": ["EXPECTED_METHOD", "DnsPolicy", "RouterContext", "Technique",
                          "make_technique"],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is exported but missing"


def test_every_failure_string_is_ooni_shaped() -> None:
    from probe.failures import FAILURES

    assert all(f == f.lower() and " " not in f for f in FAILURES)
    assert {"connection_reset", "generic_timeout_error", "dns_nxdomain_error"} <= FAILURES

"""The verdict rules against golden measurements, fingerprints, bogons and malformed input."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from probe.lab.censors import EXPECTED_METHOD
from probe.verdict import (
    ANALYSIS_VERSION,
    Verdict,
    load_fingerprints,
    observations,
    summary_keys,
    verdict,
)
from probe.verdict.bogons import default_bogons

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "measurement.json").is_file())
#: PROBE_REGENERATE_GOLDENS=1 rewrites every case's verdict.json (tests/test_facts.py: and
#: facts.json); only after a deliberate change of the rules, and read the diff.
REGENERATE = os.environ.get("PROBE_REGENERATE_GOLDENS") == "1"
OONI_FINGERPRINTS = Path("/work/shared/data/ooni-samples/ooni-backend/fastpath-fingerprints")

#: lab technique -> the golden case that shows what it looks like to the probe
TECHNIQUE_CASE = {
    "dns_nxdomain": "dns_nxdomain",
    "dns_servfail": "dns_servfail",
    "dns_refused": "dns_refused",
    "dns_bogon": "dns_bogon",
    "dns_blockpage": "dns_blockpage",
    "dns_injection": "dns_injection",
    "ip_blackhole": "ip_blackhole",
    "tcp_reset": "tcp_reset",
    "sni_reset": "sni_reset",
    "sni_stall": "sni_stall",
    "sni_rst_injection": "sni_rst_injection",
    "http_blockpage": "http_blockpage",
    "throttle": "throttle",
    "throttle_96": "throttle_bursty",
    "throttle_512": "throttle",
    "residual": "tls_residual",
    "http_blockpage_unknown": "http_page_unknown",
    "silent_server": "silent_after_connect",
    "outage": "outage",
    "lossy": "lossy",
}

#: where OONI's verdicts went wrong (anchors.md): what ours must say instead
OONI_WRONG = {
    "cdn_other_asn": "ok",  # another network's answer that validates TLS is genuine
    "nxdomain_both": "down",  # NXDOMAIN from system and DoH: the name is gone
    "truncated_body": "ok",  # a truncated body is no diff
    "doh_blocked": "inconclusive",  # the DNS control itself blocked
    "outage": "down",
    "lossy": "ok",
    "ip_blackhole_lossy": "inconclusive",
    "dns_localhost": "blocked",  # 127.0.0.1 is a bogon
}


def load(case: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((GOLDEN / case / "measurement.json").read_text())
    return result


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    got = json.loads(json.dumps(summary_keys(verdict(load(case)))["x_verdict"]))
    path = GOLDEN / case / "verdict.json"
    if REGENERATE:
        path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n")
    assert got == json.loads(path.read_text())


def test_every_technique_has_a_golden_case_with_its_method() -> None:
    assert set(TECHNIQUE_CASE) == set(EXPECTED_METHOD)
    for technique, method in EXPECTED_METHOD.items():
        v = verdict(load(TECHNIQUE_CASE[technique]))
        if method is None:
            assert v.status != "blocked", technique
        else:
            assert (v.status, v.method) == ("blocked", method), technique


@pytest.mark.parametrize(("case", "status"), sorted(OONI_WRONG.items()))
def test_where_ooni_went_wrong(case: str, status: str) -> None:
    v = verdict(load(case))
    assert v.status == status
    if case == "dns_localhost":
        assert (v.method, v.detail, v.address) == ("dns", "dns.bogon", "127.0.0.1")
    if case == "doh_blocked":
        assert summary_keys(v)["accessible"] is None


def test_golden_measurements_follow_the_format() -> None:
    schema = json.loads((ROOT / "probe" / "schema" / "measurement.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for case in CASES:
        m = load(case)
        validator.validate(m)
        assert m["x_format_version"] == "1" and m["probe_ip"] == "127.0.0.1", case
        assert observations(m).problems == (), case
        for key in ("queries", "tcp_connect", "tls_handshakes", "requests", "x_throughput"):
            for entry in m["test_keys"][key]:
                assert 0 <= entry["t0"] <= entry["t"], (case, key)


def test_verdicts_are_explained_and_bounded() -> None:
    for case in CASES:
        v = verdict(load(case))
        assert 0.0 <= v.confidence <= 1.0
        assert v.explanation.startswith(f"{v.status}: ")
        assert "\n" not in v.explanation
        if v.status == "blocked":
            assert v.method in {"dns", "tcp_ip", "tls", "http", "throttling"}
            assert v.detail is not None and v.detail.split(".")[0] == v.method
            assert v.evidence and v.step is not None


def test_sni_reset_names_where_and_how() -> None:
    v = verdict(load("sni_reset"))
    assert (v.method, v.detail, v.step, v.address) == (
        "tls",
        "tls.sni_reset",
        "tls_handshake",
        "203.0.113.10:443",
    )
    assert v.confidence >= 0.9
    assert any("control_sni" in line for line in v.evidence)
    assert any("control_address" in line for line in v.evidence)


def test_sni_reset_on_both_names_is_not_sni_filtering() -> None:
    m = load("sni_reset")
    sni = m["test_keys"]["tls_handshakes"][1]  # control SNI on the target's address
    sni.update(failure="connection_reset", x_failed_operation="tls_handshake", x_certificates=[])
    m["test_keys"]["tls_handshakes"][2].update(failure="ssl_invalid_hostname")  # control address ok
    v = verdict(m)
    assert (v.status, v.method, v.detail) == ("blocked", "tcp_ip", "tcp_ip.reset")
    m["test_keys"]["tls_handshakes"].pop(2)  # no control address: cannot tell
    assert verdict(m).status == "inconclusive"


def test_control_failure_is_never_blocked() -> None:
    for case in ("sni_reset", "ip_blackhole", "dns_nxdomain", "tcp_reset"):
        m = load(case)
        m["test_keys"]["tcp_connect"][1]["status"]["failure"] = "generic_timeout_error"
        v = verdict(m)
        assert v.status == "inconclusive", case


def test_throttling_does_not_depend_on_the_sampling_rate() -> None:
    m = load("throttle")
    target = m["test_keys"]["x_throughput"][0]
    # the same policed transfer, sampled at every 1448-byte segment instead of every 0.5 s
    burst, rate = 48_000, 16_000
    samples, total, t = [], 0, 0.0
    while t < 8.0:
        t = round(t + 1448 / rate, 4)
        total += 1448
        samples.append([t, total + (burst if t > 0.5 else 0)])
    target["samples"], target["num_bytes"] = samples, samples[-1][1]
    v = verdict(m)
    assert (v.status, v.method) == ("blocked", "throttling")


def test_fingerprints_match_body_header_and_dns() -> None:
    fps = load_fingerprints()
    assert fps.match_dns("203.82.48.83") is not None
    assert fps.match_dns("203.0.113.10") is None
    body = "<p>As per your subscription of Nayatel Safeweb service, the site is blocked</p>"
    found = fps.match_http(body, ())
    assert found is not None and found.name == "pk.nayatel_safeweb"
    found = fps.match_http("", (("SERVER", "V2R2C00-IAE/1.0"),))
    assert found is not None and found.name == "pk.huawei_iae_server"
    assert fps.match_http("", (("Server", "V2R2C00-IAE/1.0 extra"),)) is None  # "full" match
    assert fps.match_http("redirect.wi-tribe.net.pk/alert/?x", ()) is not None


def test_fingerprint_index_keeps_the_file_order_and_prefers_conclusive(tmp_path: Path) -> None:
    entries = [  # (name, location, type, pattern, scope)
        ("vague", "body", "contains", "Access Denied", "vbw"),
        ("fp", "header.server", "prefix", "cloudflare", "fp"),
        ("page", "body", "regexp", "Den[a-z]+d", ""),
        ("also", "body", "contains", "Denied", ""),
        ("exact", "header.location", "full", "http://block/", ""),
        ("dns", "dns", "full", "198.51.100.9", ""),
    ]
    path = tmp_path / "fps.json"
    keys = ("name", "location_found", "pattern_type", "pattern", "scope")
    path.write_text(json.dumps([dict(zip(keys, e, strict=True)) for e in entries]))
    fps = load_fingerprints(path, include_default=False)

    def name(body: str, *headers: tuple[str, str]) -> str | None:
        found = fps.match_http(body, headers)
        return None if found is None else found.name

    assert name("Access Denied") == "page"  # the first conclusive one, not the earlier vague one
    assert name("Access denied") is None
    assert name("x", ("Server", "cloudflare-nginx")) == "fp"  # only inconclusive: reported
    assert name("Access Denied", ("Server", "cloudflare")) == "page"
    assert name("", ("LOCATION", "http://block/")) == "exact"
    assert name("", ("Location", "http://block/x")) is None
    assert fps.match_dns("198.51.100.9") == fps.dns[0] and fps.match_dns("198.51.100.90") is None


@pytest.mark.skipif(not OONI_FINGERPRINTS.is_dir(), reason="OONI samples not present")
def test_loads_ooni_fastpath_fingerprint_files() -> None:
    fps = load_fingerprints(
        OONI_FINGERPRINTS / "fingerprints_dns.json",
        OONI_FINGERPRINTS / "fingerprints_http.json",
        include_default=False,
    )
    assert len(fps.dns) == 150 and len(fps.http) == 1699
    dns = fps.match_dns("203.82.48.86")
    assert dns is not None and dns.name == "ooni.pk_4"
    body = "this is prohibited for viewership from within Pakistan."
    http = fps.match_http(body, ())
    assert http is not None and http.name == "cp.b_nat_pak_isp_common_blockpage"
    regexp = fps.match_http("You don't have permission to access /x on this server.<P>", ())
    assert regexp is not None and regexp.pattern_type == "regexp"


def test_user_fingerprints_extend_the_shipped_ones(tmp_path: Path) -> None:
    mine = tmp_path / "mine.json"
    mine.write_text(
        json.dumps(
            [
                {
                    "name": "lab.isp_a",
                    "location_found": "body",
                    "pattern_type": "contains",
                    "pattern": "Blocked by Lab ISP A",
                }
            ]
        )
    )
    fps = load_fingerprints(mine)
    assert fps.match_dns("203.82.48.86") is not None  # the shipped ones are still there
    m = load("ok")
    m["test_keys"]["requests"][1]["response"].update(code=200, body="<h1>Blocked by Lab ISP A</h1>")
    assert verdict(m).status == "ok"  # unknown blockpage on :80 under a 200, same title: no diff
    v = verdict(m, fingerprints=fps)
    assert (v.status, v.detail, v.fingerprint) == ("blocked", "http.blockpage", "lab.isp_a")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{}", "expected a JSON list"),
        ("[1]", "expected an object"),
        (
            '[{"name": "a", "location_found": "body", "pattern_type": "glob", "pattern": "x"}]',
            "glob",
        ),
        (
            '[{"name": "a", "location_found": "footer", "pattern_type": "full", "pattern": "x"}]',
            "footer",
        ),
        (
            '[{"name": "a", "location_found": "body", "pattern_type": "regexp", "pattern": "("}]',
            "regexp",
        ),
        ("[", "not JSON"),
    ],
)
def test_malformed_fingerprint_files_are_rejected(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_fingerprints(path)


def test_bogons() -> None:
    bogons = default_bogons()
    assert bogons.reason("127.0.0.1") == "loopback (RFC 1122)"
    assert bogons.reason("10.10.34.35") is not None
    assert bogons.reason("::ffff:192.168.1.1") is not None
    assert bogons.reason("fe80::1") is not None
    for public in ("203.0.113.10", "198.51.100.20", "100.64.1.1", "2001:db8::10", "8.8.8.8"):
        assert bogons.reason(public) is None, public
    assert bogons.reason("x.com") is None


def test_summary_keys() -> None:
    def keys(case: str) -> tuple[Any, Any]:
        k = summary_keys(verdict(load(case)))
        assert k["x_analysis_version"] == ANALYSIS_VERSION
        return k["blocking"], k["accessible"]

    assert keys("ok") == (False, True)
    assert keys("sni_reset") == ("http-failure", False)  # OONI's words; x_verdict is finer
    assert keys("ip_blackhole") == ("tcp_ip", False)
    assert keys("http_blockpage") == ("http-diff", False)
    assert keys("throttle") == ("http-failure", False)
    assert keys("outage") == (False, False)
    assert keys("doh_blocked") == (None, None)
    reset = Verdict("blocked", "http", "http.reset", "http", None, (), 0.7, "blocked: x")
    assert summary_keys(reset)["blocking"] == "http-failure"


BAD_VALUES: list[Any] = [None, 5, "x", [], {}, True, -1.5]


def mutations(m: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every key of the measurement and of each test_keys entry removed or given a wrong type."""
    out = []
    for key in list(m):
        for value in ["<delete>", *BAD_VALUES]:
            mutated = copy.deepcopy(m)
            if value == "<delete>":
                del mutated[key]
            else:
                mutated[key] = value
            out.append((f"{key}={value!r}", mutated))
    for name, entries in m["test_keys"].items():
        for i, entry in enumerate(entries):
            paths: list[tuple[str, ...]] = [(k,) for k in entry]
            paths += [
                (k, sub)
                for k in ("status", "response")
                if isinstance(entry.get(k), dict)
                for sub in entry[k]
            ]
            for path in paths:
                for value in ["<delete>", *BAD_VALUES]:
                    mutated = copy.deepcopy(m)
                    target = mutated["test_keys"][name][i]
                    for step in path[:-1]:
                        target = target[step]
                    if value == "<delete>":
                        del target[path[-1]]
                    else:
                        target[path[-1]] = value
                    out.append((f"{name}[{i}].{'.'.join(path)}={value!r}", mutated))
    return out


@pytest.mark.parametrize("case", ["ok", "sni_reset", "dns_injection", "throttle"])
def test_malformed_measurements_never_raise_nor_invent_blocking(case: str) -> None:
    original = verdict(load(case))
    for label, mutated in mutations(load(case)):
        v = verdict(mutated)
        assert isinstance(v, Verdict), label
        if v.status == "blocked":
            assert v.method == original.method, label


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m.update(x_format_version="9"), "unknown x_format_version '9'"),
        (lambda m: m.pop("x_format_version"), "unknown x_format_version None"),
        (lambda m: m.pop("test_keys"), "test_keys is missing"),
        (lambda m: m.update(input="not a url"), "is not a URL"),
        (lambda m: m["test_keys"].update(queries="x"), "test_keys.queries is not a list"),
        (lambda m: m["test_keys"]["queries"][0].update(failure=5), "queries[0]: 'failure' is int"),
        (lambda m: m["test_keys"]["tls_handshakes"][0].pop("failure"), "missing 'failure'"),
        (lambda m: m["test_keys"]["tls_handshakes"][0].update(address="x"), "is not ip:port"),
        (lambda m: m["test_keys"]["tcp_connect"][0].update(port=True), "'port' is bool"),
        (lambda m: m["test_keys"]["requests"][1]["response"].update(code="200"), "'code' is str"),
    ],
)
def test_unreadable_measurements_are_inconclusive_with_the_reason(change: Any, reason: str) -> None:
    m = load("sni_reset")
    change(m)
    v = verdict(m)
    assert v.status == "inconclusive"
    assert reason in v.explanation


@pytest.mark.parametrize("location", ["http://[evil]/", "http://[scrubbed]/", "http://[::1/"])
def test_a_redirect_to_no_url_is_the_servers_bug_not_a_rule_failure(location: str) -> None:
    m = load("http_diff_redirect")
    response = m["test_keys"]["requests"][1]["response"]
    response.update(headers={"Location": location}, headers_list=[["Location", location]])
    assert summary_keys(verdict(m))["x_verdict"] == {
        "status": "ok", "method": None, "detail": None, "step": None,
        "address": "203.0.113.10:443",
        "evidence": [
            "tls_handshakes[0]: TLS x.com @ 203.0.113.10:443 (target) -> ok after 0.028 s",
            "requests[0]: GET https://x.com/ @ 203.0.113.10:443 (target) -> 200",
        ],
        "confidence": 0.9,
        "explanation": "ok: x.com completed a valid TLS handshake and an HTTPS response on "
        "203.0.113.10:443",
        "fingerprint": None,
    }  # fmt: skip


@pytest.mark.parametrize("thing", [None, [], "measurement", 42])
def test_not_a_measurement_at_all(thing: Any) -> None:
    v = verdict(thing)
    assert v.status == "inconclusive" and v.method is None


def test_a_blocked_doh_control_is_no_outage() -> None:
    m = load("sni_reset")
    doh = copy.deepcopy(m["test_keys"]["queries"][2])
    doh.update(hostname="www.example.com", tags=["control_site", "resolver_control"], answers=[])
    doh.update(failure="connection_reset", rcode=None, raw_response=None, x_dns_id=None)
    m["test_keys"]["queries"].append(doh)
    v = verdict(m)
    assert (v.status, v.detail) == ("blocked", "tls.sni_reset")


def test_a_control_sites_own_measurement_is_judged_as_its_target() -> None:
    m = load("ok")
    m["input"], m["annotations"]["x_role"] = "https://www.example.com/", "control"
    tk = m["test_keys"]
    for key in ("queries", "tcp_connect", "tls_handshakes", "requests", "x_throughput"):
        tk[key] = [e for e in tk[key] if e["tags"] == ["control_site"]]
    v = verdict(m)
    assert v.status == "ok" and v.address == "198.51.100.20:443"
    tk["tcp_connect"][0]["status"]["failure"] = "generic_timeout_error"
    tk["tls_handshakes"][0].update(failure="generic_timeout_error", x_failed_operation="connect")
    tk["requests"][0].update(failure="generic_timeout_error", x_failed_operation="connect")
    assert verdict(m).status == "inconclusive"  # no other control site to tell an outage


def test_throughput_address_may_be_a_bare_ip_or_an_endpoint() -> None:
    m = load("throttle")
    assert verdict(m).address == "203.0.113.10"
    m["test_keys"]["x_throughput"][0]["address"] = "[2001:db8::10]:443"
    assert observations(m).transfers[0].ip == "2001:db8::10"


def eai_again(case: str) -> dict[str, Any]:
    """``case`` with the system resolver's lookup of x.com failing with getaddrinfo's
    EAI_AGAIN (which a resolver that never answered gives, as well as a SERVFAIL) and the
    control site's handshake succeeding."""
    m = load(case)
    system = next(q for q in m["test_keys"]["queries"]
                  if q["engine"] == "getaddrinfo" and q["tags"] == ["target"])  # fmt: skip
    system |= {"failure": "dns_temporary_failure", "answers": []}
    for h in m["test_keys"]["tls_handshakes"]:
        if h["tags"] == ["control_site"]:
            h["failure"] = None
    return m


def test_eai_again_is_blocking_only_on_a_link_without_loss() -> None:
    clean, lossy = verdict(eai_again("ok")), verdict(eai_again("lossy"))
    assert (clean.status, clean.detail) == ("blocked", "dns.error")
    assert lossy.status == "inconclusive" and "packet loss" in lossy.explanation


def test_format_1_rcode_names_and_format_2_numbers_read_alike() -> None:
    old = load("dns_nxdomain")
    new = json.loads(json.dumps(old)) | {"x_format_version": "2"}
    for q in new["test_keys"]["queries"]:
        if isinstance(q["rcode"], str):
            q["rcode"] = {"NOERROR": 0, "SERVFAIL": 2, "NXDOMAIN": 3, "REFUSED": 5}[q["rcode"]]
    assert any(q["rcode"] == 3 for q in new["test_keys"]["queries"])
    assert verdict(new) == verdict(old)


def test_blocking_only_the_https_port_is_tcp_ip_blocking() -> None:
    m = load("ip_blackhole")  # every connect to x.com's address times out
    [plain] = [r for r in m["test_keys"]["requests"] if r["request"]["url"] == "http://x.com/"]
    plain |= {"failure": None, "x_failed_operation": None}  # port 80 answers: a redirect
    plain["response"] |= {"code": 301, "headers": {"Location": "https://x.com/"},
                          "headers_list": [["Location", "https://x.com/"]]}  # fmt: skip
    v = verdict(m)
    assert (v.status, v.method, v.detail) == ("blocked", "tcp_ip", "tcp_ip.timeout")
    assert "on port 443 failed with generic_timeout_error" in v.explanation


def test_an_answer_that_validates_tls_is_no_dns_tampering_even_if_the_control_denies_it() -> None:
    """Issue 16 item 5 in our own format: a secure control that says NXDOMAIN (a stale or
    geo-limited view) never outweighs a valid TLS handshake for the name at the address."""
    m = load("cdn_other_asn")
    for q in m["test_keys"]["queries"]:
        if "resolver_control" in q["tags"]:
            q.update(failure="dns_nxdomain_error", rcode="NXDOMAIN", answers=[])
    v = verdict(m)
    assert (v.status, v.method) == ("ok", None)

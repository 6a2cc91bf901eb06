"""The hostile suite: the real ``probe run``, in a subprocess, against a corpus of hostile
loopback servers (tests/hostile.py), one scenario a row (like probe-cli's netemx).

For every scenario the probe must exit 0 without a traceback, stay under ``RSS_LIMIT`` of
peak resident memory (the child's ``VmHWM``, see loopback.probe_run), write the exact failure
string on the step the server attacks and the verdict that failure means, and honour its
deadlines within 10%: a step that times out took its timeout (+10% at most), one that a cap
ends ends within it, and the target's whole measurement within its steps' timeouts.

The target (x.com) lives on 127.0.0.2, where the scenario's servers listen on the ports of
the loopback internet (tests/loopback.py), which serves the control site on 127.0.0.1
honestly: the verdict has a healthy network to compare with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hostile
import pytest
from loopback import PAGE, Internet, internet, probe_run
from servers import Behaviour, Handler, HttpServer, TlsServer, fixed_response

from probe.campaign import MAX_ADDRESSES_PER_FAMILY
from probe.lab.dnsserver import Handler as DnsHandler
from probe.lab.dnsserver import Zone
from probe.lab.pki import Authority, Issued

TARGET, CONTROL, HOSTILE_IP = "x.com", "www.example.com", "127.0.0.2"
RECORDS = {TARGET: {"A": [HOSTILE_IP]}, CONTROL: {"A": ["127.0.0.1"]}}
#: the zone of a resolver that sends the target where nothing listens
DEAD_RECORDS = {TARGET: {"A": ["127.0.0.9"]}, CONTROL: {"A": ["127.0.0.1"]}}
TIMEOUTS = {"dns": 1.0, "connect": 1.0, "tls": 1.0, "http": 1.5}
LATE_WINDOW = 0.05  # the loopback config's dns_late_window
#: Peak RSS of one ``probe run`` (bytes): an honest run takes about 50 MB.
RSS_LIMIT = 120 * 2**20
SLACK = 1.1  # a deadline is honoured within 10%
STEP_TIMEOUT = {"queries": "dns", "tls_handshakes": "tls", "requests": "http"}

Entry = Mapping[str, Any]


def _expired(ca: Authority) -> Issued:
    past = datetime.now(UTC) - timedelta(days=30)
    return ca.issue([TARGET, CONTROL], not_before=past - timedelta(days=90), not_after=past)


def _wrong_name(ca: Authority) -> Issued:
    return ca.issue(["other.example"])


def _unknown_root(_ca: Authority) -> Issued:
    return Authority.create("self-signed root nobody trusts").issue([TARGET, CONTROL])


def _target_query(engine: str) -> Callable[[Entry], bool]:
    return lambda e: (
        (e["hostname"], e["query_type"], e["engine"]) == (TARGET, "A", engine)
        and ("late_response" not in e["tags"])
    )


def _own(e: Entry) -> bool:
    return "target" in e["tags"]


def _request(scheme: str) -> Callable[[Entry], bool]:
    return lambda e: _own(e) and e["request"]["url"].startswith(f"{scheme}://")


@dataclass(frozen=True)
class Case:
    name: str
    step: str  # the test_keys array of the attacked step
    pick: Callable[[Entry], bool]  # its entries
    failure: str | None  # what each of them says
    verdict: tuple[str, str | None]  # the target's (status, method)
    timed_out: bool = False  # the step's timeout ends it (else a cap or the server does)
    dns: Callable[[Zone], DnsHandler] | None = None
    tls: Behaviour = "ok"
    cert: Callable[[Authority], Issued] | None = None
    https: Handler | None = None
    http: Handler | None = None
    doh: Handler | None = None  # a DoH resolver (a control) with this behaviour
    timeouts: Mapping[str, float] = field(default_factory=lambda: TIMEOUTS)
    detail: str | None = None  # the verdict's detail, when it matters
    says: str = ""  # words of the verdict's explanation


def _entries(m: Entry, step: str) -> list[Entry]:
    return list(m["test_keys"][step])


CASES = [
    Case("dns_garbage_udp", "queries", _target_query("udp"), "generic_timeout_error",
         ("inconclusive", None), True, dns=hostile.dns_garbage),
    Case("dns_garbage_tcp", "queries", _target_query("tcp"), "dns_server_misbehaving",
         ("inconclusive", None), dns=hostile.dns_garbage),
    Case("dns_wrong_id", "queries", _target_query("udp"), "generic_timeout_error",
         ("inconclusive", None), True, dns=hostile.dns_wrong_id),
    Case("dns_truncated", "queries", _target_query("tcp"), "dns_server_misbehaving",
         ("inconclusive", None), dns=hostile.dns_truncated),
    # the forged address (nothing listens there) comes first, the real one later (and it
    # validates TLS for the name): an application takes the first, so DNS injection, although
    # the injector forged the plain-DNS control's answer too
    Case("dns_injector", "queries", _target_query("udp"), None,
         ("blocked", "dns"), dns=lambda zone: hostile.dns_injector(zone, "127.0.0.9"),
         detail="dns.injected", says="forged DNS answer (127.0.0.9)"),
    # the injector forges the site's working address (the resolver's own answer is a dead
    # one): two answers to one query, but the first reaches the site: ok, and it says so
    Case("dns_injector_forging_a_working_address", "queries", _target_query("udp"), None,
         ("ok", None), dns=lambda _zone: hostile.dns_injector(Zone(DEAD_RECORDS), HOSTILE_IP),
         says="got two different answers"),
    # 4,000 addresses (dnspython shuffles them on the wire): at most 4 are connected to, and
    # nothing listens on (almost) any of them while the control site works. The plain-DNS
    # control gets the same flood, so nothing tells the name's real answer: inconclusive,
    # never TCP/IP blocking of addresses the resolver chose (the query says x_oversized)
    Case("dns_4000_addresses", "queries", _target_query("udp"), None,
         ("inconclusive", None), dns=hostile.dns_flood,
         timeouts={**TIMEOUTS, "dns": 5.0},  # dnspython parses 4,000 records slowly
         says="only to addresses an oversized DNS answer named"),
    # the same flood against an honest DoH control's one address: DNS tampering
    Case("dns_4000_addresses_doh_control", "queries", _target_query("udp"), None,
         ("blocked", "dns"), dns=hostile.dns_flood, doh=hostile.doh_zone(Zone(RECORDS)),
         timeouts={**TIMEOUTS, "dns": 5.0}, detail="dns.oversized", says="4000 address records"),
    Case("https_1_gib_body", "requests", _request("https"), None,
         ("ok", None), https=hostile.one_gib()),
    Case("https_endless_chunked", "requests", _request("https"), None,
         ("ok", None), https=hostile.endless_chunked()),
    Case("http_1_gib_body", "requests", _request("http"), None,
         ("ok", None), http=hostile.one_gib()),
    Case("http_endless_chunked", "requests", _request("http"), None,
         ("ok", None), http=hostile.endless_chunked()),
    Case("http_gzip_bomb", "requests", _request("http"), None,
         ("ok", None), http=hostile.gzip_bomb_response()),
    Case("http_trickle_1_byte_a_second", "requests", _request("http"), "generic_timeout_error",
         ("ok", None), True, http=hostile.trickle()),
    Case("http_huge_headers", "requests", _request("http"), "unknown_failure",
         ("ok", None), http=hostile.huge_headers()),
    Case("http_redirect_loop", "requests", _request("http"), None,
         ("ok", None), http=hostile.redirect_loop(f"http://{TARGET}/")),
    Case("tls_stall_after_accept", "tls_handshakes", _own, "generic_timeout_error",
         ("down", None), True, tls="stall"),
    Case("tls_stall_after_server_hello", "tls_handshakes", _own, "generic_timeout_error",
         ("down", None), True, tls="stall_after_server_hello"),
    Case("tls_expired_certificate", "tls_handshakes", _own, "ssl_invalid_certificate",
         ("down", None), cert=_expired),
    Case("tls_wrong_name", "tls_handshakes", _own, "ssl_invalid_hostname",
         ("blocked", "tls"), cert=_wrong_name),
    Case("tls_self_signed_root", "tls_handshakes", _own, "ssl_unknown_authority",
         ("blocked", "tls"), cert=_unknown_root),
    Case("doh_gzip_bomb", "queries", _target_query("doh"), "dns_server_misbehaving",
         ("ok", None), doh=hostile.graceful(hostile.gzip_bomb_response("application/dns-message"))),
    Case("doh_1_gib_body", "queries", _target_query("doh"), "dns_server_misbehaving",
         ("ok", None), doh=hostile.one_gib()),
    Case("doh_endless_chunked", "queries", _target_query("doh"), "dns_server_misbehaving",
         ("ok", None), doh=hostile.endless_chunked()),
]  # fmt: skip


@contextmanager
def scenario(tmp: Path, case: Case) -> Iterator[tuple[Internet, str]]:
    """The loopback internet, the scenario's servers on 127.0.0.2, and the config text."""
    with internet(tmp, RECORDS, dns=case.dns(Zone(RECORDS)) if case.dns else None) as net, \
            ExitStack() as stack:  # fmt: skip
        ca = net.authority
        cert = case.cert(ca) if case.cert else ca.issue([TARGET, CONTROL])
        page = fixed_response(PAGE, headers=[("Content-Type", "text/html")])
        https = case.https or page
        stack.enter_context(
            TlsServer(cert, case.tls, handler=https, host=HOSTILE_IP, port=net.https_port)
        )
        stack.enter_context(HttpServer(case.http or page, host=HOSTILE_IP, port=net.http_port))
        resolvers = ""
        if case.doh is not None:
            doh = stack.enter_context(TlsServer(ca.issue(["dns.test"]), handler=case.doh))
            resolvers = (
                f'[[resolvers]]\nengine = "doh"\nurl = "https://dns.test:{doh.port}/dns-query"\n'
                'address = "127.0.0.1"\n'
            )
        yield net, net.config([TARGET], [CONTROL], timeouts=case.timeouts, resolvers=resolvers)


def _budget(t: Mapping[str, float]) -> float:
    """The longest a target's measurement may take: its steps' timeouts, in sequence (DNS,
    connect, the control SNI then the target SNI, HTTP then HTTPS)."""
    return t["dns"] + LATE_WINDOW + t["connect"] + 2 * (t["connect"] + t["tls"]) + 2 * t["http"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_server(tmp_path: Path, case: Case) -> None:
    with scenario(tmp_path, case) as (_, config):
        path = tmp_path / "config.toml"
        path.write_text(config)
        run = probe_run(path, tmp_path / "results")
    print(f"{case.name}: peak RSS {run.max_rss / 2**20:.1f} MB, wall {run.wall:.2f} s")
    assert (run.code, "Traceback" in run.stderr) == (0, False), run.stderr
    assert run.max_rss <= RSS_LIMIT
    m = run.measurements[f"https://{TARGET}/"]
    entries = [e for e in _entries(m, case.step) if case.pick(e)]
    failures = {e["failure"] if "failure" in e else e["status"]["failure"] for e in entries}
    assert entries and failures == {case.failure}, entries
    v = m["test_keys"]["x_verdict"]
    assert (v["status"], v["method"]) == case.verdict, v
    assert case.detail in (None, v["detail"]) and case.says in v["explanation"], v
    timeout = case.timeouts[STEP_TIMEOUT[case.step]]
    for e in entries:  # the step's deadline holds, and is what ended it, or was not needed
        took = e["t"] - e["t0"]
        assert (timeout <= took if case.timed_out else True) and took <= timeout * SLACK, took
    assert m["test_runtime"] <= _budget(case.timeouts) * SLACK
    # whatever a resolver answered, a few addresses per family were connected to, each on 2 ports
    connects = [c for c in m["test_keys"]["tcp_connect"] if _own(c)]
    assert len(connects) <= 2 * MAX_ADDRESSES_PER_FAMILY
    for e in entries:  # a surprise is kept apart, bounded (probe.failures.detail)
        detail = e.get("x_failure_detail")
        assert (detail is not None) == (case.failure == "unknown_failure")
        assert detail is None or 0 < len(detail) <= 200

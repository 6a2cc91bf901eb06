"""Records -> OONI-format measurements (data format 0.2.0, docs/format.md).

One measurement per target per campaign. The control sites' observations are
copied into every target's ``test_keys`` (tagged ``control_site``) so each
measurement is self-contained: its verdict is a pure function of it alone.

The probe's own public address never leaves the machine: ``probe_ip`` is
always ``127.0.0.1`` and each of the ``scrub`` addresses is removed from the whole
measurement in every form a server can echo it in (:mod:`probe.scrub`): dotted, dashed,
reversed, packed, base64, inside DNS packets, certificates and binary bodies.

Who measured (``probe_asn``, ``probe_cc``, ``probe_network_name``, ``resolver_*``)
is the ``identity`` discovered before the campaign (:mod:`probe.identity`), else
what the config declares.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

import dns.rcode

from probe import __version__
from probe.campaign import CampaignResult, DomainResult
from probe.config import Config
from probe.format.vocab import FORMAT_VERSION, Role
from probe.identity import Identity
from probe.records import (
    Certificate,
    DnsQuery,
    HttpRequest,
    NetworkEvent,
    Observation,
    TcpConnect,
    Throughput,
    TlsHandshake,
)
from probe.scrub import Scrubber

__all__ = [
    "TEST_NAME",
    "TEST_VERSION",
    "holds_address",
    "identity_of",
    "measurement",
    "measurements",
    "new_report_id",
    "utc",
]

TEST_NAME: Final = "x_reachability"
TEST_VERSION: Final = "0.1.0"
#: More address records than any real name has (large CDNs answer a handful): an answer past
#: this is flagged ``x_oversized`` as evidence of a misbehaving resolver.
OVERSIZED_ANSWER: Final = 64


def utc(timestamp: float) -> str:
    """OONI's timestamp format: ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def utc_precise(timestamp: float) -> str:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC: OONI's whole seconds cannot time a censor's
    window edges to less than a second, nor order a burst's samples."""
    return f"{utc(timestamp)}.{round(timestamp % 1 * 1e6) % 1_000_000:06d}"


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _common(o: DnsQuery | TcpConnect | TlsHandshake | HttpRequest | Throughput) -> dict[str, Any]:
    """The keys every OONI entry shares: timing, role tags, transaction."""
    return {"t0": o.t0, "t": o.t, "tags": list(o.tags), "transaction_id": o.transaction_id}


def _query(q: DnsQuery) -> dict[str, Any]:
    answers = []
    for a in q.answers:
        key = {"A": "ipv4", "AAAA": "ipv6", "CNAME": "hostname", "TXT": "txt"}.get(
            a.answer_type, "hostname"
        )
        answers.append(
            {"answer_type": a.answer_type, key: a.value, "ttl": a.ttl, "asn": 0, "as_org_name": ""}
            | ({"x_owner": a.owner} if a.owner is not None else {})
        )
    return {
        "answers": answers,
        "engine": q.engine,
        "failure": q.failure,
        "x_failure_detail": q.failure_detail,
        "hostname": q.hostname,
        "query_type": q.query_type,
        "raw_response": _b64(q.raw_response) if q.raw_response is not None else None,
        "rcode": None if q.rcode is None else int(dns.rcode.from_text(q.rcode)),  # as OONI
        "resolver_address": q.resolver_address,
        **_common(q),
        "x_dns_id": q.dns_id,
        "x_truncated": q.truncated,
        "x_oversized": sum(a.answer_type in ("A", "AAAA") for a in q.answers) > OVERSIZED_ANSWER,
    }


def _tcp(c: TcpConnect) -> dict[str, Any]:
    return {
        "ip": c.ip,
        "port": c.port,
        "status": {"failure": c.failure, "success": c.failure is None, "blocked": None},
        "x_failure_detail": c.failure_detail,
        **_common(c),
    }


def _certificate(c: Certificate) -> dict[str, Any]:
    return {
        "sha256": c.sha256,
        "subject": c.subject,
        "issuer": c.issuer,
        "sans": list(c.sans),
        "not_before": c.not_before,
        "not_after": c.not_after,
    }


def _tls(h: TlsHandshake) -> dict[str, Any]:
    return {
        "network": "tcp",
        "address": _endpoint(h.ip, h.port),
        "server_name": h.server_name,
        "cipher_suite": h.cipher_suite,
        "tls_version": h.tls_version,
        "negotiated_protocol": h.negotiated_protocol,
        "no_tls_verify": h.no_tls_verify,
        "peer_certificates": [
            {"format": "der", "data": _b64(c.der)} for c in h.peer_certificates if c.der is not None
        ],
        "x_certificates": [_certificate(c) for c in h.peer_certificates],
        "failure": h.failure,
        "x_failed_operation": h.failed_operation,
        "x_failure_detail": h.failure_detail,
        **_common(h),
    }


def _body(data: bytes) -> str | dict[str, str]:
    """UTF-8 text when it is text, else OONI's ``{"format": "base64"}`` object."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"format": "base64", "data": _b64(data)}


def _http(r: HttpRequest) -> dict[str, Any]:
    return {
        "network": "tcp",
        "address": _endpoint(r.ip, r.port),
        "alpn": r.alpn,
        "failure": r.failure,
        "x_failed_operation": r.failed_operation,
        "x_failure_detail": r.failure_detail,
        "request": {
            "url": r.url,
            "method": r.method,
            "headers": dict(r.request_headers),
            "headers_list": [list(h) for h in r.request_headers],
            "body": "",
            "body_is_truncated": False,
        },
        "response": {
            "code": r.status_code,
            "headers": dict(r.response_headers),
            "headers_list": [list(h) for h in r.response_headers],
            "body": _body(r.body),
            "body_is_truncated": r.body_is_truncated,
            "x_body_length": r.body_length,
            "x_body_sha256": r.body_sha256,
            "x_title": r.title,
        },
        **_common(r),
    }


def _throughput(d: Throughput) -> dict[str, Any]:
    return {
        "url": d.url,
        "address": d.ip,
        "host": d.host,
        "failure": d.failure,
        "num_bytes": d.num_bytes,
        "samples": [list(s) for s in d.samples],
        **_common(d),
    }


def _event(e: NetworkEvent) -> dict[str, Any]:
    return {
        "address": e.address,
        "failure": e.failure,
        "num_bytes": e.num_bytes,
        "operation": e.operation,
        "proto": e.proto,
        "t0": e.t0,
        "t": e.t,
        "transaction_id": e.transaction_id,
    }


_ARRAYS: Final = (
    "queries",
    "tcp_connect",
    "tls_handshakes",
    "requests",
    "x_throughput",
    "network_events",
)


def _entry(o: Observation) -> tuple[str, dict[str, Any]]:
    """The ``test_keys`` array an observation goes to, and its OONI shape."""
    match o:
        case DnsQuery():
            return "queries", _query(o)
        case TcpConnect():
            return "tcp_connect", _tcp(o)
        case TlsHandshake():
            return "tls_handshakes", _tls(o)
        case HttpRequest():
            return "requests", _http(o)
        case Throughput():
            return "x_throughput", _throughput(o)
        case NetworkEvent():
            return "network_events", _event(o)


def group_test_keys(observations: Iterable[Observation]) -> dict[str, list[dict[str, Any]]]:
    """Observations grouped into OONI's ``test_keys`` arrays."""
    keys: dict[str, list[dict[str, Any]]] = {name: [] for name in _ARRAYS}
    for o in observations:
        name, entry = _entry(o)
        keys[name].append(entry)
    return keys


def new_report_id(start_time: float, who: Identity) -> str:
    """OONI's shape: ``<start>_<test>_<cc>_<asn number>_n1_<random>``."""
    start = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(start_time))
    return f"{start}_{TEST_NAME}_{who.cc}_{who.asn.removeprefix('AS')}_n1_{secrets.token_hex(8)}"


def identity_of(config: Config, identity: Identity | None = None) -> Identity:
    """Who measured: the discovered ``identity``, else what the config declares."""
    v = config.vantage
    return identity or Identity(v.asn, v.cc, v.network_name)


def measurement(
    d: DomainResult,
    controls: Iterable[DomainResult],
    start_time: float,
    who: Identity,
    report_id: str,
    *,
    annotations: Mapping[str, str] | None = None,
    scrub: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The OONI-format measurement of one domain; a target's holds the control sites' too."""
    observed: list[Observation] = list(d.observations)
    if d.role == Role.TARGET:
        observed += [o for c in controls for o in c.observations]
    out = _measurement(d, observed, start_time, who, report_id, annotations or {})
    scrubbed: dict[str, Any] = Scrubber(scrub).measurement(out)
    return scrubbed


def measurements(
    result: CampaignResult,
    config: Config,
    *,
    report_id: str | None = None,
    annotations: Mapping[str, str] | None = None,
    scrub: frozenset[str] = frozenset(),
    identity: Identity | None = None,
) -> list[dict[str, Any]]:
    """One OONI-format measurement per domain (targets and control sites) of a whole result."""
    who = identity_of(config, identity)
    rid = report_id or new_report_id(result.start_time, who)
    return [
        measurement(d, result.controls, result.start_time, who, rid,
                    annotations=annotations, scrub=scrub)
        for d in result.domains
    ]  # fmt: skip


def holds_address(measurement: Mapping[str, Any], scrub: frozenset[str]) -> bool:
    """Whether the measurement still holds the probe's address: a ``probe_ip`` other than
    127.0.0.1, or one of ``scrub`` in any form the scrub would replace (the upload's last
    check)."""
    if measurement.get("probe_ip") != "127.0.0.1":
        return True
    return bool(Scrubber(scrub).measurement(measurement) != measurement)


def _measurement(
    d: DomainResult,
    observed: list[Observation],
    start_time: float,
    who: Identity,
    report_id: str,
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    defaults = {"engine_name": "probe", "platform": "linux", "network_type": "unknown"}
    return {
        "annotations": defaults | dict(annotations) | {"x_role": d.role},  # never overridden
        "input": f"https://{d.domain}/",
        "measurement_start_time": utc(start_time),
        "measurement_uid": secrets.token_hex(16),
        "probe_asn": who.asn,
        "probe_network_name": who.network_name,
        "report_id": report_id,
        "software_name": "probe",
        "test_name": TEST_NAME,
        "test_keys": group_test_keys(observed),
        "data_format_version": "0.2.0",
        "extensions": {"dnst": 0, "httpt": 0, "netevents": 0, "tcpconnect": 0, "tlshandshake": 0},
        "options": [],
        "probe_cc": who.cc,
        "probe_ip": "127.0.0.1",
        "resolver_asn": who.resolver_asn,
        "resolver_ip": who.resolver_ip,
        "resolver_network_name": who.resolver_network_name,
        "software_version": __version__,
        "test_helpers": {},
        "test_runtime": round(d.t - d.t0, 6),
        "test_start_time": utc(start_time),
        "test_version": TEST_VERSION,
        "x_measurement_start_time": utc_precise(start_time),
        "x_format_version": FORMAT_VERSION,
    }

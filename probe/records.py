"""What the network did: immutable records, one per observation.

Primitives in :mod:`probe.net` return these; the writer (:mod:`probe.format.writer`) turns them into
OONI's JSON shapes; nothing downstream ever sees an exception.

Every record carries ``t0``/``t`` (seconds since the measurement started, so
records from concurrent steps line up on one time axis), a ``failure``
(``None`` on success, else a string from :mod:`probe.failures`), a
``transaction_id`` shared by the steps of one attempt, and ``tags``, the role
of the observation in the experiment (:class:`probe.format.vocab.Tag`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from probe.format.vocab import Operation

__all__ = [
    "Certificate",
    "Clock",
    "DnsAnswer",
    "DnsQuery",
    "HttpRequest",
    "NetworkEvent",
    "Observation",
    "TcpConnect",
    "Throughput",
    "TlsHandshake",
]


class Clock:
    """Seconds since the measurement started, from a monotonic clock."""

    __slots__ = ("_origin",)

    def __init__(self) -> None:
        self._origin = time.perf_counter()

    def now(self) -> float:
        return round(time.perf_counter() - self._origin, 6)


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    answer_type: str  # "A", "AAAA", "CNAME", "TXT"
    value: str  # an address, a hostname or the TXT text
    ttl: int | None
    # The record's owner name when it is neither the query's name nor on its CNAME chain:
    # not an answer to the question (kept as evidence, never connected to). None otherwise.
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class DnsQuery:
    hostname: str
    query_type: str  # "A", "AAAA", "ANY" (getaddrinfo), "TXT"
    engine: str  # "getaddrinfo", "udp", "tcp", "doh"
    resolver_address: str  # "ip:port", a DoH URL, or "" for the system resolver
    answers: tuple[DnsAnswer, ...]
    rcode: str | None  # "NOERROR", "NXDOMAIN", ...; None when no response arrived
    raw_response: bytes | None
    failure: str | None
    t0: float
    t: float
    transaction_id: int
    tags: tuple[str, ...] = ()
    dns_id: int | None = None  # the DNS message ID of the response
    # Some of this query's addresses were not connected to: the name had more than
    # the campaign's cap in their family (set by the campaign, not by the primitive).
    truncated: bool = False
    failure_detail: str | None = None  # what an unknown_failure said (probe.failures.detail)


@dataclass(frozen=True, slots=True)
class TcpConnect:
    ip: str
    port: int
    failure: str | None
    t0: float
    t: float
    transaction_id: int
    tags: tuple[str, ...] = ()
    failure_detail: str | None = None  # what an unknown_failure said (probe.failures.detail)


@dataclass(frozen=True, slots=True)
class Certificate:
    sha256: str  # hex fingerprint of the DER
    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: str  # ISO 8601 UTC
    not_after: str
    der: bytes | None = None  # only kept when the config asks for full certificates


@dataclass(frozen=True, slots=True)
class TlsHandshake:
    ip: str
    port: int
    server_name: str
    failure: str | None
    failed_operation: Operation | None  # "connect" or "tls_handshake" when failed
    t0: float
    t: float
    transaction_id: int
    tags: tuple[str, ...] = ()
    tls_version: str | None = None
    cipher_suite: str | None = None
    negotiated_protocol: str | None = None
    peer_certificates: tuple[Certificate, ...] = ()
    no_tls_verify: bool = False
    failure_detail: str | None = None  # what an unknown_failure said (probe.failures.detail)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    method: str
    ip: str
    port: int
    host: str
    failure: str | None
    failed_operation: Operation | None
    t0: float
    t: float
    transaction_id: int
    tags: tuple[str, ...] = ()
    request_headers: tuple[tuple[str, str], ...] = ()
    status_code: int | None = None
    response_headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""  # at most the configured cap
    body_length: int = 0  # bytes received (equal to len(body) unless truncated)
    body_sha256: str | None = None
    body_is_truncated: bool = False
    title: str | None = None
    alpn: str | None = None
    failure_detail: str | None = None  # what an unknown_failure said (probe.failures.detail)


@dataclass(frozen=True, slots=True)
class Throughput:
    """A timed download: the steady rate separates a policer from congestion."""

    url: str
    ip: str
    host: str
    failure: str | None
    t0: float
    t: float
    transaction_id: int
    tags: tuple[str, ...] = ()
    num_bytes: int = 0
    samples: tuple[tuple[float, int], ...] = ()  # (seconds since t0, bytes so far)


@dataclass(frozen=True, slots=True)
class NetworkEvent:
    operation: Operation
    address: str
    proto: str  # "tcp" or "udp"
    failure: str | None
    t0: float
    t: float
    transaction_id: int
    num_bytes: int = 0


Observation = DnsQuery | TcpConnect | TlsHandshake | HttpRequest | Throughput | NetworkEvent

"""The observations view: the few typed records the verdict reads, whoever wrote the data.

A reader turns one measurement into :class:`Observations` (flat tuples of small
frozen records, each remembering where it came from: ``ref``, e.g.
``"tls_handshakes[3]"``, so evidence can point back at the data): ours in
:mod:`probe.format.reader`, OONI's web_connectivity in
:mod:`probe.format.ooni`. The facts (:mod:`probe.verdict.facts`) and the
decisions read only these records, never the raw JSON. Roles: ``target``,
``control_sni``, ``control_address``, ``control_site``, ``residual`` (ours),
``remote`` (OONI's test helper) and ``other`` (read by no rule).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Connect",
    "DnsResponse",
    "Handshake",
    "HttpExchange",
    "Observations",
    "Transfer",
    "unreadable",
]


@dataclass(frozen=True, slots=True)
class DnsResponse:
    ref: str
    hostname: str
    engine: str  # "getaddrinfo", "udp", "tcp", "doh", "dot"
    resolver: str
    failure: str | None
    rcode: str | None
    addresses: tuple[str, ...]  # A/AAAA answers
    names: tuple[str, ...]  # CNAME targets
    transaction_id: int | None
    role: str  # "target" or "control_site"
    control: bool  # tagged resolver_control: the DNS control
    late: bool  # tagged late_response: a further UDP response to the same query
    oversized: bool = False  # x_oversized: more address records than any real name has


@dataclass(frozen=True, slots=True)
class Connect:
    """One TCP connect, from ``tcp_connect`` or the connect step of a handshake or request."""

    ref: str
    ip: str
    port: int
    failure: str | None
    role: str
    duration: float


@dataclass(frozen=True, slots=True)
class Handshake:
    """One TLS handshake, from ``tls_handshakes`` or the TLS step of an HTTPS request."""

    ref: str
    ip: str
    port: int
    server_name: str
    failure: str | None
    failed_operation: str | None  # "connect" or "tls_handshake" when it failed
    role: str
    t0: float
    duration: float


@dataclass(frozen=True, slots=True)
class HttpExchange:
    ref: str
    url: str
    ip: str
    port: int
    failure: str | None
    failed_operation: str | None
    role: str
    status: int | None
    headers: tuple[tuple[str, str], ...]
    body: str
    body_is_truncated: bool
    title: str | None  # x_title, else the body's <title>
    t0: float
    duration: float
    body_sha256: str | None = None  # x_body_sha256: of the whole body received


@dataclass(frozen=True, slots=True)
class Transfer:
    """A timed download (``x_throughput``)."""

    ref: str
    ip: str
    failure: str | None
    role: str
    num_bytes: int
    samples: tuple[tuple[float, int], ...]  # (seconds since t0, bytes so far)


@dataclass(frozen=True, slots=True)
class Observations:
    domain: str
    dns: tuple[DnsResponse, ...]
    connects: tuple[Connect, ...]
    handshakes: tuple[Handshake, ...]
    http: tuple[HttpExchange, ...]
    transfers: tuple[Transfer, ...]
    problems: tuple[str, ...]  # non-empty: the measurement cannot be judged
    # Entries left out of an OONI measurement (an optional field missing or broken): less
    # evidence, said in the verdict's evidence, never a measurement that cannot be judged.
    notes: tuple[str, ...] = ()
    # OONI's x_blocking_flags (web_connectivity 0.5), None elsewhere: its own finer verdict,
    # read only as support when nothing else in the measurement can confirm a finding.
    flags: int | None = None


def unreadable(problem: str) -> Observations:
    """A view with nothing in it but why: the rules refuse to judge it."""
    return Observations("", (), (), (), (), (), (problem,))

"""The facts layer: observations -> named facts, the verdict's middle stage.

Built the way OONI's probe-cli builds its analysis (``internal/minipipeline``:
observations, then a ``WebAnalysis`` of named sets such as
``DNSLookupSuccessWithInvalidAddresses`` or ``TCPConnectUnexpectedFailure``,
then the classic verdict from those sets): :func:`facts` reads one
:class:`~probe.format.view.Observations` into :class:`Facts`, small frozen
records of named sets of observations, one record per family (health here,
DNS in :mod:`probe.verdict.facts_dns`, TCP/TLS/HTTP/throughput in
:mod:`probe.verdict.facts_steps`); the decisions (``decide_*``, the gate)
read them and decide. Facts are pure and decide nothing, so they are
serialisable (:func:`to_json`: each observation as its ``ref``) and have
their own goldens (``tests/golden/*/facts.json``, ``tests/test_facts.py``).

**Health** (the controls): the ``control_site`` observations say whether the
network works: none failed -> *up*; all failed -> *down*; some -> *degraded*
(a lossy link); none measured -> *unknown*. ``dns_no_answer``, IPv6 "no
route" failures (a network without IPv6) and the DNS control's own queries
(a blocked DoH resolver) are not failures of the network; DNS answers alone
never show it down (an ISP resolver answers from its cache in an outage).
``lossy``: the controls show packet loss (a control connect that needed a SYN
retransmission, or a resolver or control endpoint that answered some attempts
and ignored others): loss is random, censorship is not.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from probe.format.view import Connect, DnsResponse, Handshake, HttpExchange, Observations, Transfer
from probe.format.vocab import Operation, Tag
from probe.verdict.bogons import Bogons
from probe.verdict.evidence import addr, reference, show_connect, show_dns, show_http, show_tls
from probe.verdict.facts_dns import DnsFacts, dns_facts
from probe.verdict.facts_steps import (
    REACHED,
    SLOW_SECONDS,
    TIMEOUT,
    HttpFacts,
    TcpFacts,
    ThroughputFacts,
    TlsFacts,
    http_facts,
    no_ipv6,
    tcp_facts,
    throughput_facts,
    tls_facts,
)
from probe.verdict.fingerprints import Fingerprint, Fingerprints
from probe.verdict.throttling import Plateau

__all__ = ["Context", "Facts", "Health", "facts", "to_json"]


@dataclass(frozen=True, slots=True)
class Health:
    state: Literal["up", "degraded", "down", "unknown"]
    lossy: bool  # the controls show packet loss
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Facts:
    health: Health
    dns: DnsFacts
    tcp: TcpFacts
    tls: TlsFacts
    http: HttpFacts
    throughput: ThroughputFacts


@dataclass(frozen=True, slots=True)
class Context:
    """What a decision reads: the observations (for evidence), the data, the facts."""

    obs: Observations
    fingerprints: Fingerprints
    bogons: Bogons
    facts: Facts
    notes: list[str]  # why nothing was decided, collected on the way

    def cite_control(self) -> str:
        """The DNS control's answer (or why there is none), as evidence."""
        return reference(self.facts.dns.reference, self.facts.dns.control_failures)


def facts(obs: Observations, fingerprints: Fingerprints, bogons: Bogons) -> Facts:
    """Every named fact of one observations view (module docstring)."""
    return Facts(
        health(obs),
        dns_facts(obs, bogons),
        tcp_facts(obs),
        tls_facts(obs),
        http_facts(obs, fingerprints),
        throughput_facts(obs),
    )


def health(obs: Observations) -> Health:
    # DNS alone cannot show the network up: an ISP resolver answers from its cache in an outage
    lookups: list[tuple[str, str | None]] = [
        (show_dns(q), q.failure)
        for q in obs.dns
        if q.role == Tag.CONTROL_SITE
        and not (q.late or q.control)  # a blocked DoH control is a DNS matter, not an outage
        and q.failure != "dns_no_answer"
    ]
    transport: list[tuple[str, str | None]] = []  # (evidence, failure)
    for c in obs.connects:
        if c.role == Tag.CONTROL_SITE and not no_ipv6(c.ip, c.failure):
            transport.append((show_connect(c), c.failure))
    # a handshake or request that failed to connect is already one of the connects
    for h in obs.handshakes:
        if h.role == Tag.CONTROL_SITE and h.failed_operation != Operation.CONNECT:
            transport.append((show_tls(h), None if h.failure in REACHED else h.failure))
    for x in obs.http:
        if x.role == Tag.CONTROL_SITE and x.failed_operation != Operation.CONNECT:
            transport.append((show_http(x), x.failure))
    slow = _loss_signs(obs)
    results = lookups + transport
    failed = tuple(shown for shown, failure in results if failure is not None)
    if not results:
        return Health("unknown", bool(slow), ("no control-site observations",))
    if not failed:
        return Health("up", bool(slow), slow)
    decisive = transport or lookups
    down = all(failure is not None for _, failure in decisive)
    return Health("down" if down else "degraded", bool(slow), failed + slow)


def _loss_signs(obs: Observations) -> tuple[str, ...]:
    """Evidence of packet loss among the controls: retransmitted or sporadically lost packets."""
    signs = [
        f"{show_connect(c)} took {c.duration:.2f} s (retransmitted: packet loss)"
        for c in obs.connects
        if c.role in (Tag.CONTROL_SITE, Tag.CONTROL_ADDRESS)
        and c.failure is None
        and c.duration >= SLOW_SECONDS
    ]
    outcomes: dict[str, list[str | None]] = {}
    for q in obs.dns:
        if q.role == Tag.CONTROL_SITE and not q.late and q.engine != "getaddrinfo":
            outcomes.setdefault(f"resolver {q.resolver}", []).append(q.failure)
    for c in obs.connects:
        if c.role in (Tag.CONTROL_SITE, Tag.CONTROL_ADDRESS):
            outcomes.setdefault(f"control {addr(c.ip, c.port)}", []).append(c.failure)
    signs += [
        f"{where}: {seen.count(TIMEOUT)} of {len(seen)} attempts timed out (sporadic loss)"
        for where, seen in outcomes.items()
        if TIMEOUT in seen and any(f != TIMEOUT for f in seen)
    ]
    return tuple(signs)


_RECORDS = (Connect, DnsResponse, Handshake, HttpExchange, Transfer)


def to_json(value: Facts) -> dict[str, Any]:
    """The facts as JSON: an observation as its ``ref``, a set sorted, a fingerprint by name."""
    out = _json(value)
    assert isinstance(out, dict)
    return out


def _json(value: object) -> object:
    if isinstance(value, _RECORDS):
        return value.ref
    if isinstance(value, Fingerprint):
        return value.name
    if isinstance(value, Plateau):
        return value.shown()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    return value

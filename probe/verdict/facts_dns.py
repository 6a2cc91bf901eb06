"""DNS facts: what the resolvers said about the target's name, against the DNS control.

Target responses are split into the *system* ones (getaddrinfo and plain DNS
to the ISP) and the *control* (tag ``resolver_control``). A DoH control that
answered is the *reference* (``secure_reference``; NXDOMAIN or no address
from every secure control is an answer too: the name has none, ``negative``);
plain-DNS controls are then *suspects* themselves (on-path tampering reaches
them too), else they are the reference, unless an injector raced them. An
address is *validated* when it completed a valid TLS handshake for the name:
genuine whoever gave it.

The named facts (each a set of observations, serialised as their refs):

* ``raced``: one UDP query got two or more different responses (a later one
  tagged ``late_response``): the on-path injector's signature (OONI's
  ``x_dns_duplicate_responses``), first response with the later ones;
* ``inconsistent``: the system answers' addresses when none of them is in the
  reference or validated ("DNS answer inconsistent with control");
* ``bogons``: suspect answers that are special-purpose addresses
  (``bogons.json``) the reference does not give;
* ``oversized`` / ``reference_oversized``: suspect answers (the reference)
  with more address records than any real name has (``x_oversized``);
  ``flooded``: every such response, of any name; ``flood_only``: the
  addresses only such answers named (the resolver's choice, not the site's).

Facts decide nothing; :mod:`probe.verdict.decide_dns` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from probe.format.view import DnsResponse, Observations
from probe.format.vocab import Tag
from probe.verdict.bogons import Bogons

__all__ = ["NEGATIVE", "RESOLVER_ERRORS", "SECURE_ENGINES", "DnsFacts", "dns_facts"]

RESOLVER_ERRORS: Final[Mapping[str, str]] = {
    "dns_nxdomain_error": "dns.nxdomain",
    "dns_servfail_error": "dns.servfail",
    "dns_refused_error": "dns.refused",
    "dns_temporary_failure": "dns.error",  # getaddrinfo's EAI_AGAIN: SERVFAIL/REFUSED behind it
    "dns_non_recoverable_failure": "dns.error",
    "dns_server_misbehaving": "dns.error",
    "android_dns_cache_no_data": "dns.error",  # Android's getaddrinfo: the lookup found nothing
}
# th: OONI's test helper, whose answers reach the probe over HTTPS from another network
SECURE_ENGINES: Final = frozenset({"doh", "dot", "th"})
# an answer that the name has no address (not a resolver that failed to answer)
NEGATIVE: Final = frozenset({"dns_nxdomain_error", "dns_no_answer"})


@dataclass(frozen=True, slots=True)
class DnsFacts:
    system: tuple[DnsResponse, ...]  # first responses not from the DNS control
    suspects: tuple[DnsResponse, ...]  # responses the positive rules inspect
    reference: frozenset[str]  # addresses the trusted control gave
    secure_reference: bool  # the trusted control is a secure one (DoH, DoT, OONI's helper)
    reference_names: frozenset[str]  # CNAME targets the trusted control gave
    control_failures: tuple[DnsResponse, ...]
    validated: frozenset[str]  # addresses with a valid TLS handshake for the domain
    raced: tuple[tuple[DnsResponse, tuple[DnsResponse, ...]], ...]  # (first, later ones)
    negative: bool  # the secure control answered that the name has no address
    inconsistent: frozenset[str]  # system addresses neither the control nor TLS confirms
    bogons: tuple[tuple[DnsResponse, str, str], ...]  # (response, address, why)
    oversized: tuple[DnsResponse, ...]  # suspect answers with absurdly many records
    reference_oversized: bool  # the trusted control's own answer is absurd
    flooded: tuple[DnsResponse, ...]  # every response flagged x_oversized
    flood_only: frozenset[str]  # addresses only oversized answers named


def dns_facts(obs: Observations, bogons: Bogons) -> DnsFacts:
    target = [q for q in obs.dns if q.role == Tag.TARGET and q.hostname == obs.domain]
    firsts = [q for q in target if not q.late]
    later: dict[int, list[DnsResponse]] = {}
    for q in target:
        if q.late and q.transaction_id is not None:
            later.setdefault(q.transaction_id, []).append(q)
    raced = tuple(
        (q, tuple(later[q.transaction_id]))
        for q in firsts
        if q.transaction_id in later
        and any(
            set(late.addresses) != set(q.addresses) or late.failure != q.failure
            for late in later[q.transaction_id]
        )
    )
    raced_ids = {q.transaction_id for q, _ in raced}
    system = tuple(q for q in firsts if not q.control)
    secure = [q for q in firsts if q.control and q.engine in SECURE_ENGINES]
    plain = [q for q in firsts if q.control and q.engine not in SECURE_ENGINES]
    # every secure answer says the name has no address: that is an answer, not a failure
    # (OONI's test helper says so with no failure and no address)
    negative = bool(secure) and all(
        q.failure in NEGATIVE or (q.engine == "th" and q.failure is None and not q.addresses)
        for q in secure
    )
    secure_reference = negative or any(q.failure is None and q.addresses for q in secure)
    if secure_reference:
        trusted, suspects = secure, system + tuple(plain)
    else:
        trusted, suspects = [q for q in plain if q.transaction_id not in raced_ids], system
    reference = frozenset(a for q in trusted if q.failure is None for a in q.addresses)
    validated = frozenset(
        h.ip for h in obs.handshakes if h.server_name == obs.domain and h.failure is None
    )
    answered = {a for q in system if q.failure is None for a in q.addresses}
    normal = {a for q in target if not q.oversized for a in q.addresses}
    return DnsFacts(
        system=system,
        suspects=suspects,
        reference=reference,
        secure_reference=secure_reference,
        reference_names=frozenset(n for q in trusted if q.failure is None for n in q.names),
        control_failures=tuple(q for q in trusted if q.failure is not None),
        validated=validated,
        raced=raced,
        negative=negative,
        inconsistent=frozenset() if answered & (reference | validated) else frozenset(answered),
        bogons=tuple(
            (q, a, why)
            for q in suspects
            for a in q.addresses
            if a not in reference and (why := bogons.reason(a)) is not None
        ),
        oversized=tuple(q for q in suspects if q.oversized),
        reference_oversized=any(q.oversized for q in trusted),
        flooded=tuple(q for q in obs.dns if q.oversized),
        flood_only=frozenset(a for q in target if q.oversized for a in q.addresses) - normal,
    )

"""DNS decisions: which DNS facts mean tampering, in this order (the first that decides wins).

1. ``dns.injected``: one UDP query got two different responses (an on-path
   injector's signature) and the first, which an application uses, is forged:
   it disagrees with the reference (answer disjoint from it, or an error), or
   only a later response's address completed a valid TLS handshake for the
   name (the injector reaches plain-DNS controls too). A first response whose
   address validates reaches the site: not blocked, and the verdict says so.
   Without a reference or a validated address the race is noted, undecided.
1b. ``dns.oversized``: an answer with more address records than any real name
   has (``x_oversized``) while the trusted control's answer is normal-sized:
   tampering. Without such a control nothing is decided, and the TCP rule
   never reads connects to addresses only such an answer named as blocking.
2. ``dns.blockpage``: an answer matches a conclusive DNS fingerprint the
   control does not give (a special-purpose address is left to rule 3).
3. ``dns.bogon``: an answer is a special-purpose address (``bogons.json``)
   the control does not give (a name may really point at 127.0.0.1).
4. ``dns.nxdomain`` / ``dns.servfail`` / ``dns.refused`` / ``dns.error``: a
   resolver error while the control resolves the name. NXDOMAIN from the
   control too: the name is gone -> ``down``, unless a remote vantage point
   fetched the site (then both answers here are wrong). The control failed
   too: DNS cannot be judged (never "accessible" on that basis).
   The secure control says the name has no address: an address from the
   system for a name that does not exist is made up (``dns.inconsistent``);
   no address anywhere -> ``down``.
5. ``dns.inconsistent``: no system address is consistent and the control
   resolved; ``dns.blockpage`` instead if such an address serves a
   fingerprinted page. Control failed and nothing validated: undecided. An
   answer naming the same canonical name (CNAME) as the control's is a CDN's
   answer for this network (ooni/probe#2517, iCloud Private Relay in PK), not
   tampering; a failed handshake raises the confidence only when TLS for the
   name does not fail the same way from the remote vantage point.

An address is *consistent* when the control gave it too, or when it completed
a valid TLS handshake for the domain: never judged by ASN (a CDN answer in
another network is fine). An address that completes a valid TLS handshake for
the name is genuine for every DNS rule but the bogon one (rules 2, 4's
nameless case and 5). The facts are :mod:`probe.verdict.facts_dns`'s.
"""

from __future__ import annotations

from probe.format.vocab import Method, Status
from probe.verdict.evidence import show_dns, show_http, show_tls, shown
from probe.verdict.facts import Context
from probe.verdict.facts_dns import RESOLVER_ERRORS
from probe.verdict.facts_steps import TIMEOUT
from probe.verdict.facts_steps import kind as failure_kind
from probe.verdict.outcome import Finding, Kind, Verdict

__all__ = ["dns_stage"]


def dns_stage(ctx: Context) -> Finding | Verdict | None:
    rules = (
        _dns_injected,
        _dns_oversized,
        _dns_fingerprint,
        _dns_bogon,
        _dns_error,
        _dns_nameless,
        _dns_inconsistent,
    )
    for rule in rules:
        result = rule(ctx)
        if result is not None:
            return result
    return None


def _dns_injected(ctx: Context) -> Finding | None:
    """One UDP query, two different answers: an on-path injector raced the resolver.

    A resolver sends one response to a query; an injector on the path (the
    GFW's way) sends its own first and the genuine one arrives after it. An
    application takes the first, so the first decides. It is forged when the
    trusted DNS control disagrees with it, or when only a later answer's
    address completed a valid TLS handshake for the name (the injector
    reaches plain-DNS controls too, so their agreement with the first proves
    nothing). A first answer whose address validates TLS for the name reaches
    the site whoever sent it: said, not blocked.
    """
    dns = ctx.facts.dns
    known = dns.reference | dns.validated
    for first, later in dns.raced:
        forged = ", ".join(shown(first.addresses)) or first.failure or "nothing"
        genuine = ", ".join(shown([a for late in later for a in late.addresses])) or "an error"
        resolver = first.resolver or "the system resolver"
        evidence = (show_dns(first), *map(show_dns, later), ctx.cite_control())
        works = sorted(set(first.addresses) & dns.validated) if first.failure is None else []
        if works:
            ctx.notes.append(
                f"one query for {ctx.obs.domain} to {resolver} got two different answers "
                f"({forged}, then {genuine}: an injector's signature), but the first answer's "
                f"{works[0]} completed a valid TLS handshake for the name: it reaches the site"
            )
            continue
        proven = sorted({a for late in later for a in late.addresses} & dns.validated)
        polluted = set(first.addresses) & dns.reference
        refuted = bool(dns.reference) and not (first.failure is None and polluted)
        if proven and not refuted and not (polluted and dns.secure_reference):
            return Finding(
                Method.DNS, "dns.injected", "dns", first.addresses[0] if first.addresses else None,
                (*evidence, *_validating(ctx, proven[0])), 0.9,
                f"a forged DNS answer ({forged}) for {ctx.obs.domain} from {resolver} raced "
                f"the genuine one ({genuine}), whose {proven[0]} completed a valid TLS "
                "handshake for the name; an application takes the first answer"
                + ("; the plain-DNS control got the forged answer too" if polluted else ""),
                "active",
            )  # fmt: skip
        if known and not (first.failure is None and set(first.addresses) & known):
            return Finding(
                Method.DNS, "dns.injected", "dns", first.addresses[0] if first.addresses else None,
                evidence, 0.95,
                f"a forged DNS answer ({forged}) for {ctx.obs.domain} from {resolver} raced "
                f"the genuine one ({genuine}), which the DNS control confirms",
                "active",
            )  # fmt: skip
        if not known:
            ctx.notes.append(
                f"one query for {ctx.obs.domain} to {resolver} got two different answers "
                f"({forged}, then {genuine}: an injector's signature), but neither the DNS "
                "control nor a valid TLS handshake tells which one is forged"
            )
    return None


def _validating(ctx: Context, ip: str) -> tuple[str, ...]:
    """The handshake that shows ``ip`` serves the name, as evidence."""
    shown = (
        show_tls(h)
        for h in ctx.obs.handshakes
        if h.ip == ip and h.server_name == ctx.obs.domain and h.failure is None
    )
    return tuple(shown)[:1]


def _dns_oversized(ctx: Context) -> Finding | None:
    """An answer with more address records than any real name has, against a normal one.

    Thousands of addresses are no answer: a client picks one the resolver
    chose, most likely dead (a tarpit), and a probe can try only a few. That
    is evidence about DNS, never about the addresses: it is tampering when the
    trusted DNS control gives a normal-sized answer (which then differs);
    without one nothing is decided here, and the TCP rule leaves connects to
    addresses only such an answer named alone (:mod:`.decide_transport`).
    """
    dns = ctx.facts.dns
    if not dns.oversized or not dns.reference or dns.reference_oversized:
        return None
    q = dns.oversized[0]
    return Finding(
        Method.DNS, "dns.oversized", "dns", q.resolver or None,
        (show_dns(q), ctx.cite_control()), 0.8,
        f"the resolver answered {ctx.obs.domain} with {len(q.addresses)} address records, more "
        f"than any real name has, where the DNS control gives "
        f"{', '.join(shown(sorted(dns.reference)))}: an oversized answer, not the name's",
        "active",
    )  # fmt: skip


def _dns_fingerprint(ctx: Context) -> Finding | None:
    for q in ctx.facts.dns.suspects:
        for value in q.addresses + q.names:
            fp = ctx.fingerprints.match_dns(value)
            # the control's own answer is no forgery; a special-purpose address (10.10.34.35)
            # names a censor only in its own country: the bogon rule judges it anywhere
            if (
                fp is None
                or not fp.conclusive
                or value in ctx.facts.dns.reference | ctx.facts.dns.validated
            ):
                continue  # (an address that validates TLS for the name serves the real site)
            if ctx.bogons.reason(value) is not None:
                continue
            return Finding(
                Method.DNS, "dns.blockpage", "dns", value, (show_dns(q),), 0.95,
                f"the resolver answered {ctx.obs.domain} with {value}, a known blockpage "
                f"address ({fp.name})",
                "positive", fp.name,
            )  # fmt: skip
    return None


def _dns_bogon(ctx: Context) -> Finding | None:
    dns = ctx.facts.dns
    for q, address, why in dns.bogons[:1]:
        return Finding(
            Method.DNS, "dns.bogon", "dns", address, (show_dns(q), ctx.cite_control()),
            0.9 if dns.reference else 0.85,
            f"the resolver answered {ctx.obs.domain} with {address}, a {why} address",
            "active",
        )  # fmt: skip
    return None


def _dns_error(ctx: Context) -> Finding | Verdict | None:
    errors = [q for q in ctx.facts.dns.suspects if q.failure in RESOLVER_ERRORS]
    if not errors:
        timeouts = [q for q in ctx.facts.dns.system if q.failure == TIMEOUT]
        if timeouts:
            ctx.notes.append(f"the system resolver timed out for {ctx.obs.domain}")
        return None
    # the most specific first: a real rcode beats getaddrinfo's catch-all
    details = list(RESOLVER_ERRORS.values())
    q = min(
        errors, key=lambda e: (details.index(RESOLVER_ERRORS[e.failure or ""]), e.rcode is None)
    )
    detail = RESOLVER_ERRORS[q.failure or ""]
    said = q.rcode or q.failure
    # getaddrinfo's EAI_AGAIN is also what a resolver that never answered gives: loss can fake it
    kind: Kind = "silent" if q.failure == "dns_temporary_failure" else "active"
    if ctx.facts.dns.reference:
        return Finding(
            Method.DNS, detail, "dns", q.resolver or None, (show_dns(q), ctx.cite_control()),
            0.9 if detail != "dns.error" else 0.8,
            f"the resolver answered {said} for {ctx.obs.domain} while the DNS control "
            f"resolved it to {', '.join(shown(sorted(ctx.facts.dns.reference)))}",
            kind,
        )  # fmt: skip
    control_nx = [c for c in ctx.facts.dns.control_failures if c.failure == "dns_nxdomain_error"]
    fetched = ctx.facts.http.remote_fetched
    failed = ", ".join(c.failure or "" for c in ctx.facts.dns.control_failures) or "no answer"
    if fetched is not None:  # the name resolves elsewhere: both answers here are wrong
        return Finding(
            Method.DNS, detail, "dns", q.resolver or None,
            (show_dns(q), *map(show_dns, ctx.facts.dns.control_failures), show_http(fetched)), 0.7,
            f"the resolver answered {said} for {ctx.obs.domain} and the DNS control failed "
            f"too ({failed}), but the remote vantage point fetched the site",
            kind,
        )  # fmt: skip
    valid = sorted({a for r in ctx.facts.dns.system for a in r.addresses} & ctx.facts.dns.validated)
    if valid:  # the name exists: an address of it completed a valid TLS handshake for it
        ctx.notes.append(
            f"{q.resolver or 'a resolver'} answered {said} for {ctx.obs.domain}, but "
            f"{valid[0]} completed a valid TLS handshake for the name"
        )
        return None
    if detail == "dns.nxdomain" and control_nx:
        return Verdict(
            Status.DOWN, None, None, "dns", None, (show_dns(q), *map(show_dns, control_nx)), 0.8,
            f"down: {ctx.obs.domain} does not exist: NXDOMAIN from the system resolver and "
            "the DNS control alike",
        )  # fmt: skip
    ctx.notes.append(
        f"the resolver answered {said} for {ctx.obs.domain} but the DNS control failed too "
        f"({failed}): a blocked name cannot be told from a missing one"
    )
    return None


def _dns_nameless(ctx: Context) -> Finding | Verdict | None:
    """The secure DNS control answered that the name has no address (NXDOMAIN, no A/AAAA)."""
    if not ctx.facts.dns.negative:
        return None
    answers = [q for q in ctx.facts.dns.system if q.failure is None and q.addresses]
    addresses = sorted({a for q in answers for a in q.addresses})
    gone = [c for c in ctx.facts.dns.control_failures if c.failure == "dns_nxdomain_error"]
    if set(addresses) & ctx.facts.dns.validated:
        return None  # a valid TLS handshake for the name there: the control's view is wrong
    if addresses and gone:  # an address for a name that does not exist is made up
        return Finding(
            Method.DNS, "dns.inconsistent", "dns", addresses[0],
            (*map(show_dns, answers), *map(show_dns, gone)), 0.75,
            f"the resolver answered {ctx.obs.domain} with {', '.join(shown(addresses))}, a "
            "name that does not exist for the DNS control (NXDOMAIN)",
            "active",
        )  # fmt: skip
    if addresses:
        return None
    if ctx.facts.http.remote_fetched is not None:
        return None  # the remote fetched it: the negative answer is not the whole story
    return Verdict(
        Status.DOWN, None, None, "dns", None,
        (*map(show_dns, ctx.facts.dns.system), ctx.cite_control()),
        0.8, f"down: {ctx.obs.domain} has no address, for the DNS control too",
    )  # fmt: skip


def _dns_inconsistent(ctx: Context) -> Finding | None:
    answers = [q for q in ctx.facts.dns.system if q.failure is None and q.addresses]
    addresses = ctx.facts.dns.inconsistent
    if not addresses:
        return None
    if not ctx.facts.dns.reference:
        ctx.notes.append(
            f"the system resolver's answer ({', '.join(shown(sorted(addresses)))}) could not be "
            "checked: the DNS control failed and no TLS handshake validated it"
        )
        return None
    listed = ", ".join(shown(sorted(addresses)))
    same_chain = sorted({n for q in answers for n in q.names} & ctx.facts.dns.reference_names)
    if same_chain:  # a CDN answering this network with its own servers (ooni/probe#2517)
        ctx.notes.append(
            f"the resolver's answer for {ctx.obs.domain} ({listed}) differs from the DNS "
            f"control's but names the same canonical name ({', '.join(same_chain)}): a CDN's "
            "answer for this network, not judged as tampering"
        )
        return None
    alike = _alike(ctx, addresses)
    if alike is not None:
        ctx.notes.append(
            f"the resolver's answer for {ctx.obs.domain} ({listed}) differs from the DNS "
            f"control's, but TLS for the name ends the same way ({alike}) at both sets of "
            "addresses, from the remote vantage point too: it cannot be told from a genuine "
            "answer and is not judged as tampering"
        )
        return None
    evidence = (*map(show_dns, answers), ctx.cite_control())
    control = ", ".join(shown(sorted(ctx.facts.dns.reference)))
    for x in ctx.obs.http:
        fp = ctx.fingerprints.match_http(x.body, x.headers) if x.ip in addresses else None
        if fp is not None and fp.conclusive:
            return Finding(
                Method.DNS, "dns.blockpage", "dns", x.ip, (*evidence, show_http(x)), 0.95,
                f"the resolver sent {ctx.obs.domain} to {x.ip}, which serves a blockpage "
                f"({fp.name}); the DNS control says {control}",
                "positive", fp.name,
            )  # fmt: skip
    tried = [h for h in ctx.obs.handshakes if h.ip in addresses and h.server_name == ctx.obs.domain]
    # TLS for the name failing the same way from elsewhere says nothing about these addresses
    elsewhere = {
        failure_kind(h.failure) or h.failure
        for h in ctx.obs.handshakes
        if h.role == "remote" and h.server_name == ctx.obs.domain and h.failure
    }
    telling = [h for h in tried if (failure_kind(h.failure) or h.failure) not in elsewhere]
    return Finding(
        Method.DNS, "dns.inconsistent", "dns", sorted(addresses)[0],
        evidence + tuple(map(show_tls, tried)), 0.85 if telling else 0.7,
        f"the resolver answered {ctx.obs.domain} with {listed}, which "
        f"neither the DNS control ({control}) nor a valid TLS "
        "handshake confirms",
        "active",
    )  # fmt: skip


def _alike(ctx: Context, addresses: frozenset[str]) -> str | None:
    """The one outcome TLS for the name has at the resolver's addresses and at the DNS
    control's alike, seen from the remote vantage point (which reached both over TCP), or
    None. A censor's address answers TLS for the name unlike the site's own (a blockpage
    server, a sinkhole, an unreachable private address); a site that ends every handshake
    the same way everywhere (iCloud Private Relay's TCP port, ooni/probe#2517) does not."""
    remote = [
        h for h in ctx.obs.handshakes if h.role == "remote" and h.server_name == ctx.obs.domain
    ]
    here = {h.failure for h in remote if h.ip in addresses}
    there = {h.failure for h in remote if h.ip in ctx.facts.dns.reference}
    if len(here) != 1 or here != there:
        return None
    (outcome,) = here
    return outcome or "a valid handshake"

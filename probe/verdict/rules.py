"""The verdict: what blocked a target, where, how, and how sure — one pure function.

:func:`verdict` reads a measurement into the observations view
(:mod:`probe.verdict.observations`) and :func:`judge` applies the rules below,
in this order; the first rule that finds blocking decides. Every verdict
carries the evidence (references into ``test_keys``) and one plain sentence.

**Health gate (controls).** The ``control_site`` observations say whether the
network works: none failed -> *up*; all failed -> *down*; some -> *degraded*
(a lossy link); none measured -> *unknown*. ``dns_no_answer``, IPv6 "no
route" failures (a network without IPv6) and the DNS control's own queries
(a blocked DoH resolver) are not failures of the network; DNS answers alone
never show it down (an ISP resolver answers from its cache in an outage).
A finding is reported as ``blocked`` only when the network is up; otherwise
the status is ``down`` (network down) or ``inconclusive``. Findings that rest
on silence (timeouts, a slow download) further need the controls to show no
packet loss, since loss alone can fake a timeout: no control connect that took
>= 0.9 s (a SYN retransmission), no resolver or control endpoint that answered
some attempts and ignored others. A fingerprint match
(a known blockpage) is exempt: no outage writes a blockpage.

**DNS.** Target responses are split into the *system* ones (getaddrinfo and
plain DNS to the ISP) and the *control* (tag ``resolver_control``). A DoH
control that answered is the reference (NXDOMAIN or no address from every
secure control is an answer too: the name has none); plain-DNS controls are
then suspects themselves (on-path tampering reaches them too), else they are
the reference.
An address is *consistent* when the control gave it too, or when it completed a
valid TLS handshake for the domain — never judged by ASN: a CDN answer in
another network is fine.

1. ``dns.injected``: one UDP query got two different responses and the first
   disagrees with the reference (answer disjoint from it, or an error).
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

An address that completes a valid TLS handshake for the name is genuine for
every DNS rule but the bogon one (rules 2, 4's nameless case and 5).

**TCP** (``tcp_ip``): every connect to the target's addresses (roles
``target``/``control_sni``) failed the same way: ``tcp_ip.timeout``
(silence), ``tcp_ip.refused`` (a RST to the SYN, as Linux reports it),
``tcp_ip.reset``, ``tcp_ip.unreachable``. Some addresses working is not
blocking.

**TLS** (target SNI handshakes that got past connect):

* reset / EOF after the ClientHello (``tls.sni_reset``) or a handshake timeout
  (``tls.sni_stall``, all target handshakes must stall) while the control SNI
  reaches the same server (a certificate error counts: the server answered),
  or the target SNI fails the same way at a control address -> SNI filtering;
  both -> the highest confidence. Resets are active, so a few successful
  handshakes (racy RST injection) lower the confidence but not the verdict.
* a reset for the control SNI too on that address, while the target SNI
  reaches a control address -> the address is blocked (``tcp_ip.reset``).
* a stall on a slow path (below) is left to the throttling rules.
* ``ssl_unknown_authority`` / ``ssl_invalid_hostname`` on an address the DNS
  control confirms, while a control site validates (the trust store works)
  -> ``tls.interception``.
* nothing to compare with (no control handshake, no remote vantage point: OONI's
  ``control: {}``): every handshake for the SNI reset (stalled) after its TCP connect
  succeeded -> ``tls.reset`` (``tls.stall``) at confidence 0.5 (0.4), +0.05 when OONI's
  ``x_blocking_flags`` say TLS; the connect shows the path works, so no control site is
  needed (the gate still refuses a down or lossy network); the explanation says it rests
  on the measurement alone. :mod:`probe.verdict.ooni_aggregate` confirms or withdraws
  these across the lines of one run.
* ``residual`` re-tests (the control SNI again, ``residual_delay`` s after a
  failed handshake) that fail after the control SNI had passed before the
  target SNI: the censor blocks the address for every name for a while
  after a trigger -> ``tls.residual``, its own finding (the campaign sends the
  control SNI first, so its own trigger cannot fail it).

**Blockpages first** (before the TCP rule, which would call a censor that
drops the HTTPS port and answers plain HTTP itself "IP blackholing"): a
response (body or header) matching an HTTP fingerprint -> ``http.blockpage``,
the strongest evidence; every connect to the TLS port failed while plain HTTP
at a DNS-confirmed address answered with a page (2xx, not a redirect) that
no reference contradicts -> ``http.diff`` with the page's title and hash
(:mod:`probe.verdict.pages`; it rests on the TLS port's silence too, so it is
gated like a timeout).

**HTTP**: plain-HTTP requests reset after connecting while HTTPS to
the target works -> ``http.reset`` (OONI's http-failure). ``http.diff`` is
otherwise narrow, because the only control body in a measurement is the HTTPS
page of the same URL: a plain-HTTP redirect to another site over plain HTTP, or
a plain-HTTP page whose title differs from the HTTPS page's. Bodies are never
compared, so a truncated body can never make a diff.

**Throttling** (a shaper queues; a filter selects):

* the target download holds a rate plateau (:mod:`probe.verdict.throttling`:
  bytes flowing in both halves of its settled part at a similar pace, record
  granularity allowed for) >= 10x below the control download's rate over the
  same path; a control that is as slow is congestion, never throttling;
* or target steps time out on a *slow path*: a step to the target's addresses
  that succeeded took >= 0.9 s and >= 5x the slowest control step (no control
  step: no baseline, no claim).
* Silence is never throttling: a server that accepts and never speaks, or
  stalls after the ServerHello (TLS stalls for every name, zero bytes) is a
  timeout, judged by the TLS rules or left inconclusive.

**A remote vantage point** (role ``remote``: OONI's test helper, see
:mod:`probe.verdict.ooni`) did the same steps from another network. It
stands in for the controls our probe measures itself, weaker: it proves the
site works from elsewhere, never which name or address a filter keys on.
Its DNS answers (engine ``th``, over HTTPS) are a trusted DNS control; its
successful handshake (or HTTPS fetch) with the target SNI makes a TLS reset or
stall on this path a ``tls.reset`` / ``tls.stall`` finding (lower confidence
than SNI proof); its fetch is the control page for ``http.diff``, the proof
for ``http.reset`` / ``http.timeout``, and a download that began and stalled
while it fetched the page is ``throttling``. When its own fetch failed too, a
TCP, TLS or HTTP failure here is the site's, not the path's: ``down``.

**Otherwise**: a valid TLS handshake for the domain (and a response when a
request was attempted: HTTPS when tried, else plain HTTP) -> ``ok``; the
network down, the site failing from the remote vantage point too, or a name
the DNS control too points only at special-purpose addresses (127.0.0.1) ->
``down``; else ``inconclusive`` with the reasons collected on the way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from probe.verdict import ooni, pages, throttling
from probe.verdict.bogons import Bogons, default_bogons
from probe.verdict.fingerprints import Fingerprints, default_fingerprints
from probe.verdict.observations import (
    Connect,
    DnsResponse,
    Handshake,
    HttpExchange,
    Observations,
    observations,
    parse_url,
)

__all__ = [
    "ALONE_CONFIDENCE",
    "ALONE_FLAG_BONUS",
    "ANALYSIS_VERSION",
    "Verdict",
    "judge",
    "summary_keys",
    "verdict",
]

#: The version of these rules; bump it whenever a rule changes.
ANALYSIS_VERSION: Final = "8"  # 8: the control's download rate once its bytes flow

Status = Literal["ok", "blocked", "down", "inconclusive"]

RESET: Final = frozenset({"connection_reset", "eof_error", "connection_aborted"})
TIMEOUT: Final = "generic_timeout_error"
CERT_INVALID: Final = frozenset({"ssl_unknown_authority", "ssl_invalid_hostname"})
# A handshake that ended in a certificate error reached the server: it answered.
REACHED: Final = frozenset({*CERT_INVALID, "ssl_invalid_certificate"})
NO_ROUTE: Final = frozenset(
    {"network_unreachable", "host_unreachable", "address_family_not_supported"}
)
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
SLOW_SECONDS: Final = 0.9  # just under the 1 s initial SYN RTO: a retransmit, or a deep queue
SLOW_FACTOR: Final = 5.0  # the target's path this many times slower than the controls'
#: A TLS reset / stall with no control handshake and no remote vantage point (OONI with
#: ``control: {}``): the measurement alone shows it, so it is worth less than any control's
#: proof (0.7 and up). probe.verdict.ooni_aggregate reads these tiers across lines.
ALONE_CONFIDENCE: Final[Mapping[str, float]] = {"reset": 0.5, "stall": 0.4}
ALONE_FLAG_BONUS: Final = 0.05  # OONI's own x_blocking_flags say TLS too (4)

Kind = Literal["positive", "active", "silent"]


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    method: str | None  # "dns" | "tcp_ip" | "tls" | "http" | "throttling"
    detail: str | None  # e.g. "tls.sni_reset"
    step: str | None  # "dns" | "tcp_connect" | "tls_handshake" | "http" | "throughput"
    address: str | None
    evidence: tuple[str, ...]
    confidence: float
    explanation: str
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class _Finding:
    """A candidate "blocked", before the health gate."""

    method: str
    detail: str
    step: str
    address: str | None
    evidence: tuple[str, ...]
    confidence: float
    explanation: str  # without the leading "blocked: "
    kind: Kind  # positive: a fingerprint; active: someone answered; silent: timeouts
    fingerprint: str | None = None
    # the step's own TCP connect succeeded: the path works, so no control site is needed to
    # rule out an outage (only a down or lossy network refuses it)
    connected: bool = False


@dataclass(frozen=True, slots=True)
class _Health:
    state: Literal["up", "degraded", "down", "unknown"]
    lossy: bool  # the controls show packet loss
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Dns:
    system: tuple[DnsResponse, ...]  # first responses not from the DNS control
    suspects: tuple[DnsResponse, ...]  # responses the positive rules inspect
    reference: frozenset[str]  # addresses the trusted control gave
    reference_names: frozenset[str]  # CNAME targets the trusted control gave
    control_failures: tuple[DnsResponse, ...]
    validated: frozenset[str]  # addresses with a valid TLS handshake for the domain
    injected: tuple[tuple[DnsResponse, tuple[DnsResponse, ...]], ...]  # (first, later ones)
    negative: bool  # the secure control answered that the name has no address


@dataclass(frozen=True, slots=True)
class _Context:
    obs: Observations
    fingerprints: Fingerprints
    bogons: Bogons
    dns: _Dns
    notes: list[str]  # why nothing was decided, collected on the way


Stage = Callable[[_Context], _Finding | Verdict | None]


def verdict(measurement: Mapping[str, Any], *, fingerprints: Fingerprints | None = None) -> Verdict:
    """The verdict on one measurement (docs/format.md, or OONI's web_connectivity); never raises.

    An OONI measurement is a chain: the input's domain, then each domain a
    redirect led to; the chain is as good as its first hop that is not ok.
    """
    try:
        if not ooni.is_ooni(measurement):
            return judge(observations(measurement), fingerprints)
        first, *hops = ooni.chain(measurement)
        result = judge(first, fingerprints)
        for hop in hops:
            if result.status != "ok":
                break
            then = judge(hop, fingerprints)
            if then.status != "ok":
                said = then.explanation.split(": ", 1)[-1]
                result = replace(
                    then,
                    explanation=f"{then.status}: {first.domain} redirects to {hop.domain}; {said}",
                )
                break
        # entries left out (probe.verdict.ooni): the evidence says what was not read
        return replace(result, evidence=result.evidence + first.notes)
    except Exception as exc:  # a rule bug must cost one verdict, not a whole report
        return _inconclusive(f"the rules failed on this measurement ({type(exc).__name__})", ())


def judge(
    obs: Observations, fingerprints: Fingerprints | None = None, bogons: Bogons | None = None
) -> Verdict:
    """The rules (module docstring) over an observations view."""
    if obs.problems:
        reason = "; ".join(obs.problems[:3]) + ("; ..." if len(obs.problems) > 3 else "")
        return _inconclusive(f"the measurement cannot be read: {reason}", obs.problems)
    # an absurd answer (thousands of records) decides nothing, but the verdict says so
    absurd = [
        f"{q.ref}: {q.engine} {q.resolver or 'system'} answered {len(q.addresses)} address "
        f"records for {q.hostname}, more than any real name has"
        for q in obs.dns
        if q.oversized
    ]
    ctx = _Context(
        obs, fingerprints or default_fingerprints(), bogons or default_bogons(), _dns_facts(obs),
        absurd,
    )  # fmt: skip
    health = _health(obs)
    held: Verdict | None = None  # a finding the gate refused: later, only fingerprints may win
    stages: tuple[Stage, ...] = (
        _dns_stage, _page_stage, _tcp_stage, _tls_stage, _http_stage, _throttle_stage
    )  # fmt: skip
    for stage in stages:
        result = stage(ctx)
        if isinstance(result, Verdict):
            return held or result
        if result is None or (held is not None and result.kind != "positive"):
            continue
        broken = _broken_elsewhere(ctx)
        if broken is not None and result.method != "dns" and result.kind != "positive":
            return held or Verdict(
                "down", None, None, result.step, result.address,
                (*result.evidence, _show_http(broken)), 0.7,
                f"down: {result.explanation}, but the remote vantage point cannot fetch the "
                f"site either ({broken.failure}): the site itself is down or broken",
            )  # fmt: skip
        gated = _gate(result, health)
        if gated.status == "blocked":
            return gated
        held = held or gated
    return held or _unblocked(ctx, health)


def summary_keys(v: Verdict) -> dict[str, Any]:
    """OONI's summary keys (``blocking``, ``accessible``) plus ours, for ``test_keys``.

    ``blocking`` keeps OONI's words (web_connectivity's: a TLS failure or a stall after the
    connect is an ``http-failure``) so OONI's tools read it; ``x_verdict`` has the finer method.
    """
    blocking: str | bool | None
    if v.status == "blocked":
        blocking = v.method
        if v.method in ("http", "tls", "throttling"):
            blocking = (
                "http-diff" if v.detail in ("http.blockpage", "http.diff") else "http-failure"
            )
    else:
        blocking = {"ok": False, "down": False}.get(v.status)
    accessible = {"ok": True, "blocked": False, "down": False}.get(v.status)
    # This order is format 3's: a report reads a line up to x_verdict's "step" (docs/format.md).
    return {
        "x_analysis_version": ANALYSIS_VERSION,
        "x_verdict": {
            "status": v.status,
            "method": v.method,
            "detail": v.detail,
            "step": v.step,
            "address": v.address,
            "evidence": list(v.evidence),
            "confidence": v.confidence,
            "explanation": v.explanation,
            "fingerprint": v.fingerprint,
        },
        "blocking": blocking,
        "accessible": accessible,
    }


# --- health -------------------------------------------------------------------------------


def _health(obs: Observations) -> _Health:
    # DNS alone cannot show the network up: an ISP resolver answers from its cache in an outage
    lookups: list[tuple[str, str | None]] = [
        (_show_dns(q), q.failure)
        for q in obs.dns
        if q.role == "control_site"
        and not (q.late or q.control)  # a blocked DoH control is a DNS matter, not an outage
        and q.failure != "dns_no_answer"
    ]
    transport: list[tuple[str, str | None]] = []  # (evidence, failure)
    for c in obs.connects:
        if c.role == "control_site" and not _no_ipv6(c.ip, c.failure):
            transport.append((_show_connect(c), c.failure))
    # a handshake or request that failed to connect is already one of the connects
    for h in obs.handshakes:
        if h.role == "control_site" and h.failed_operation != "connect":
            transport.append((_show_tls(h), None if h.failure in REACHED else h.failure))
    for x in obs.http:
        if x.role == "control_site" and x.failed_operation != "connect":
            transport.append((_show_http(x), x.failure))
    slow = _loss_signs(obs)
    results = lookups + transport
    failed = tuple(shown for shown, failure in results if failure is not None)
    if not results:
        return _Health("unknown", bool(slow), ("no control-site observations",))
    if not failed:
        return _Health("up", bool(slow), slow)
    decisive = transport or lookups
    down = all(failure is not None for _, failure in decisive)
    return _Health("down" if down else "degraded", bool(slow), failed + slow)


def _loss_signs(obs: Observations) -> tuple[str, ...]:
    """Evidence of packet loss among the controls: retransmitted or sporadically lost packets.

    Loss is random, censorship is not: a control connect that needed a SYN
    retransmission, or one resolver (one control endpoint) that answered some
    queries (connects) and ignored others, shows a lossy path.
    """
    signs = [
        f"{_show_connect(c)} took {c.duration:.2f} s (retransmitted: packet loss)"
        for c in obs.connects
        if c.role in ("control_site", "control_address")
        and c.failure is None
        and c.duration >= SLOW_SECONDS
    ]
    outcomes: dict[str, list[str | None]] = {}
    for q in obs.dns:
        if q.role == "control_site" and not q.late and q.engine != "getaddrinfo":
            outcomes.setdefault(f"resolver {q.resolver}", []).append(q.failure)
    for c in obs.connects:
        if c.role in ("control_site", "control_address"):
            outcomes.setdefault(f"control {_addr(c.ip, c.port)}", []).append(c.failure)
    signs += [
        f"{where}: {seen.count(TIMEOUT)} of {len(seen)} attempts timed out (sporadic loss)"
        for where, seen in outcomes.items()
        if TIMEOUT in seen and any(f != TIMEOUT for f in seen)
    ]
    return tuple(signs)


def _gate(f: _Finding, health: _Health) -> Verdict:
    """``blocked`` only when the controls show a working network (module docstring)."""
    works = health.state == "up" or (f.connected and health.state == "unknown")
    if f.kind == "positive" or (works and not (f.kind == "silent" and health.lossy)):
        return Verdict(
            "blocked",
            f.method,
            f.detail,
            f.step,
            f.address,
            f.evidence,
            f.confidence,
            f"blocked: {f.explanation}",
            f.fingerprint,
        )
    evidence = f.evidence + health.evidence
    if health.state == "down":
        return Verdict(
            "down", None, None, f.step, f.address, evidence, 0.8,
            f"down: {f.explanation}, but every control site fails too: the network is down",
        )  # fmt: skip
    why = {
        "degraded": "some control-site observations fail too (a lossy or partial network)",
        "unknown": "there are no control-site observations to rule out an outage",
        "up": "the controls show packet loss, and loss can fake a timeout",
    }[health.state]
    return _inconclusive(f"{f.explanation}, but {why}", evidence)


def _unblocked(ctx: _Context, health: _Health) -> Verdict:
    obs = ctx.obs
    valid = [
        h
        for h in obs.handshakes
        if h.role == "target" and h.server_name == obs.domain and h.failure is None
    ]
    target = [x for x in obs.http if x.role == "target"]
    https = [x for x in target if x.url.startswith("https://")]
    fetches = https or target  # judged by HTTPS when it was tried, else by plain HTTP
    answered = [x for x in fetches if x.failure is None]
    broken = _broken_elsewhere(ctx)
    failed = [
        *(
            (_show_connect(c), c.failure)
            for c in obs.connects
            if c.role == "target" and c.failure and not _no_ipv6(c.ip, c.failure)
        ),
        *((_show_tls(h), h.failure) for h in obs.handshakes if h.role == "target" and h.failure),
        *((_show_http(x), x.failure) for x in target if x.failure),
    ]
    if broken is not None and failed:
        return Verdict(
            "down", None, None, None, None,
            (*(shown for shown, _ in failed[:2]), _show_http(broken)), 0.7,
            f"down: {obs.domain} fails here ({failed[0][1]}) and the remote vantage point "
            f"cannot fetch it either ({broken.failure}): the site itself is down or broken",
        )  # fmt: skip
    if valid and (answered or not fetches):
        shown = [_show_tls(valid[0])] + [_show_http(x) for x in answered[:1]]
        doubts = ctx.notes + ([] if health.state == "up" else list(health.evidence))
        kind = "HTTPS" if https else "HTTP"
        what = "a valid TLS handshake" + (f" and an {kind} response" if answered else "")
        return Verdict(
            "ok", None, None, None, _addr(valid[0].ip, valid[0].port),
            tuple(shown + doubts), 0.9 if not doubts else 0.7,
            f"ok: {obs.domain} completed {what} on {_addr(valid[0].ip, valid[0].port)}"
            + (f" ({doubts[0]})" if doubts else ""),
        )  # fmt: skip
    legacy = _plain_http_only(ctx, answered)
    if legacy is not None:
        return legacy
    nowhere = _nowhere(ctx)
    if nowhere is not None:
        return nowhere
    if health.state == "down":
        return Verdict(
            "down", None, None, None, None, health.evidence, 0.8,
            f"down: {obs.domain} was not reached and every control site fails too: "
            "the network is down",
        )  # fmt: skip
    if valid:
        kind = "HTTPS" if https else "HTTP"
        ctx.notes.append(f"TLS to {obs.domain} works but every {kind} request failed")
    reason = "; ".join(ctx.notes) or f"{obs.domain} was not reached and no rule explains why"
    return _inconclusive(reason, tuple(ctx.notes) + health.evidence)


def _plain_http_only(ctx: _Context, answered: list[HttpExchange]) -> Verdict | None:
    """OONI web_connectivity before 0.4 records no TLS handshake: a response that passed the
    HTTP rules while the remote fetched the site too is ok, at a lower confidence."""
    remote = _remote_fetched(ctx)
    if not answered or remote is None or any(h.role == "target" for h in ctx.obs.handshakes):
        return None
    x = answered[0]
    return Verdict(
        "ok", None, None, None, _addr(x.ip, x.port) if x.ip else None,
        (_show_http(x), _show_http(remote)), 0.7,
        f"ok: {ctx.obs.domain} answered {x.url} ({x.status}) as the remote vantage point saw "
        "it (no TLS handshake recorded: less proof that it is the real site)",
    )  # fmt: skip


def _nowhere(ctx: _Context) -> Verdict | None:
    """Not reached, and the DNS control too points the name at special-purpose addresses."""
    reference = sorted(ctx.dns.reference)
    whys = [ctx.bogons.reason(a) for a in reference]
    answers = [q for q in ctx.dns.system if q.failure is None and q.addresses]
    if not (reference and all(whys)) or {a for q in answers for a in q.addresses} - set(reference):
        return None
    return Verdict(
        "down", None, None, "dns", reference[0], (_reference(ctx), *map(_show_dns, answers)), 0.8,
        f"down: {ctx.obs.domain} points at {', '.join(reference)} ({whys[0]}) for the DNS "
        "control too: it is no site on the internet",
    )  # fmt: skip


def _inconclusive(reason: str, evidence: tuple[str, ...]) -> Verdict:
    return Verdict("inconclusive", None, None, None, None, evidence, 0.0, f"inconclusive: {reason}")


# --- DNS -----------------------------------------------------------------------------------


def _dns_facts(obs: Observations) -> _Dns:
    target = [q for q in obs.dns if q.role == "target" and q.hostname == obs.domain]
    firsts = [q for q in target if not q.late]
    later: dict[int, list[DnsResponse]] = {}
    for q in target:
        if q.late and q.transaction_id is not None:
            later.setdefault(q.transaction_id, []).append(q)
    injected = tuple(
        (q, tuple(later[q.transaction_id]))
        for q in firsts
        if q.transaction_id in later
        and any(
            set(late.addresses) != set(q.addresses) or late.failure != q.failure
            for late in later[q.transaction_id]
        )
    )
    raced = {q.transaction_id for q, _ in injected}
    system = tuple(q for q in firsts if not q.control)
    secure = [q for q in firsts if q.control and q.engine in SECURE_ENGINES]
    plain = [q for q in firsts if q.control and q.engine not in SECURE_ENGINES]
    # every secure answer says the name has no address: that is an answer, not a failure
    # (OONI's test helper says so with no failure and no address)
    negative = bool(secure) and all(
        q.failure in NEGATIVE or (q.engine == "th" and q.failure is None and not q.addresses)
        for q in secure
    )
    if negative or any(q.failure is None and q.addresses for q in secure):
        trusted, suspects = secure, system + tuple(plain)
    else:
        trusted, suspects = [q for q in plain if q.transaction_id not in raced], system
    reference = frozenset(a for q in trusted if q.failure is None for a in q.addresses)
    names = frozenset(n for q in trusted if q.failure is None for n in q.names)
    validated = frozenset(
        h.ip for h in obs.handshakes if h.server_name == obs.domain and h.failure is None
    )
    failures = tuple(q for q in trusted if q.failure is not None)
    return _Dns(system, suspects, reference, names, failures, validated, injected, negative)


def _dns_stage(ctx: _Context) -> _Finding | Verdict | None:
    rules = (
        _dns_injected,
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


def _dns_injected(ctx: _Context) -> _Finding | None:
    known = ctx.dns.reference | ctx.dns.validated
    for first, later in ctx.dns.injected:
        if not known or (first.failure is None and set(first.addresses) & known):
            continue
        forged = ", ".join(first.addresses) or first.failure or "nothing"
        genuine = ", ".join(a for late in later for a in late.addresses) or "an error"
        resolver = first.resolver or "the system resolver"
        return _Finding(
            "dns", "dns.injected", "dns", first.addresses[0] if first.addresses else None,
            (_show_dns(first), *map(_show_dns, later), _reference(ctx)), 0.95,
            f"a forged DNS answer ({forged}) for {ctx.obs.domain} from {resolver} raced the "
            f"genuine one ({genuine}), which the DNS control confirms",
            "active",
        )  # fmt: skip
    return None


def _dns_fingerprint(ctx: _Context) -> _Finding | None:
    for q in ctx.dns.suspects:
        for value in q.addresses + q.names:
            fp = ctx.fingerprints.match_dns(value)
            # the control's own answer is no forgery; a special-purpose address (10.10.34.35)
            # names a censor only in its own country: the bogon rule judges it anywhere
            if fp is None or not fp.conclusive or value in ctx.dns.reference | ctx.dns.validated:
                continue  # (an address that validates TLS for the name serves the real site)
            if ctx.bogons.reason(value) is not None:
                continue
            return _Finding(
                "dns", "dns.blockpage", "dns", value, (_show_dns(q),), 0.95,
                f"the resolver answered {ctx.obs.domain} with {value}, a known blockpage "
                f"address ({fp.name})",
                "positive", fp.name,
            )  # fmt: skip
    return None


def _dns_bogon(ctx: _Context) -> _Finding | None:
    for q in ctx.dns.suspects:
        for address in q.addresses:
            why = ctx.bogons.reason(address)
            if why is not None and address not in ctx.dns.reference:
                return _Finding(
                    "dns", "dns.bogon", "dns", address, (_show_dns(q), _reference(ctx)),
                    0.9 if ctx.dns.reference else 0.85,
                    f"the resolver answered {ctx.obs.domain} with {address}, a {why} address",
                    "active",
                )  # fmt: skip
    return None


def _dns_error(ctx: _Context) -> _Finding | Verdict | None:
    errors = [q for q in ctx.dns.suspects if q.failure in RESOLVER_ERRORS]
    if not errors:
        timeouts = [q for q in ctx.dns.system if q.failure == TIMEOUT]
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
    if ctx.dns.reference:
        return _Finding(
            "dns", detail, "dns", q.resolver or None, (_show_dns(q), _reference(ctx)),
            0.9 if detail != "dns.error" else 0.8,
            f"the resolver answered {said} for {ctx.obs.domain} while the DNS control "
            f"resolved it to {', '.join(sorted(ctx.dns.reference))}",
            kind,
        )  # fmt: skip
    control_nx = [c for c in ctx.dns.control_failures if c.failure == "dns_nxdomain_error"]
    fetched = _remote_fetched(ctx)
    failed = ", ".join(c.failure or "" for c in ctx.dns.control_failures) or "no answer"
    if fetched is not None:  # the name resolves elsewhere: both answers here are wrong
        return _Finding(
            "dns", detail, "dns", q.resolver or None,
            (_show_dns(q), *map(_show_dns, ctx.dns.control_failures), _show_http(fetched)), 0.7,
            f"the resolver answered {said} for {ctx.obs.domain} and the DNS control failed "
            f"too ({failed}), but the remote vantage point fetched the site",
            kind,
        )  # fmt: skip
    valid = sorted({a for r in ctx.dns.system for a in r.addresses} & ctx.dns.validated)
    if valid:  # the name exists: an address of it completed a valid TLS handshake for it
        ctx.notes.append(
            f"{q.resolver or 'a resolver'} answered {said} for {ctx.obs.domain}, but "
            f"{valid[0]} completed a valid TLS handshake for the name"
        )
        return None
    if detail == "dns.nxdomain" and control_nx:
        return Verdict(
            "down", None, None, "dns", None, (_show_dns(q), *map(_show_dns, control_nx)), 0.8,
            f"down: {ctx.obs.domain} does not exist: NXDOMAIN from the system resolver and "
            "the DNS control alike",
        )  # fmt: skip
    ctx.notes.append(
        f"the resolver answered {said} for {ctx.obs.domain} but the DNS control failed too "
        f"({failed}): a blocked name cannot be told from a missing one"
    )
    return None


def _dns_nameless(ctx: _Context) -> _Finding | Verdict | None:
    """The secure DNS control answered that the name has no address (NXDOMAIN, no A/AAAA)."""
    if not ctx.dns.negative:
        return None
    answers = [q for q in ctx.dns.system if q.failure is None and q.addresses]
    addresses = sorted({a for q in answers for a in q.addresses})
    gone = [c for c in ctx.dns.control_failures if c.failure == "dns_nxdomain_error"]
    if set(addresses) & ctx.dns.validated:
        return None  # a valid TLS handshake for the name there: the control's view is wrong
    if addresses and gone:  # an address for a name that does not exist is made up
        return _Finding(
            "dns", "dns.inconsistent", "dns", addresses[0],
            (*map(_show_dns, answers), *map(_show_dns, gone)), 0.75,
            f"the resolver answered {ctx.obs.domain} with {', '.join(addresses)}, a name that "
            "does not exist for the DNS control (NXDOMAIN)",
            "active",
        )  # fmt: skip
    if addresses:
        return None
    if _remote_fetched(ctx) is not None:
        return None  # the remote fetched it: the negative answer is not the whole story
    return Verdict(
        "down", None, None, "dns", None, (*map(_show_dns, ctx.dns.system), _reference(ctx)),
        0.8, f"down: {ctx.obs.domain} has no address, for the DNS control too",
    )  # fmt: skip


def _dns_inconsistent(ctx: _Context) -> _Finding | None:
    answers = [q for q in ctx.dns.system if q.failure is None and q.addresses]
    addresses = {a for q in answers for a in q.addresses}
    if not addresses or addresses & (ctx.dns.reference | ctx.dns.validated):
        return None
    if not ctx.dns.reference:
        ctx.notes.append(
            f"the system resolver's answer ({', '.join(sorted(addresses))}) could not be "
            "checked: the DNS control failed and no TLS handshake validated it"
        )
        return None
    shown = ", ".join(sorted(addresses))
    same_chain = sorted({n for q in answers for n in q.names} & ctx.dns.reference_names)
    if same_chain:  # a CDN answering this network with its own servers (ooni/probe#2517)
        ctx.notes.append(
            f"the resolver's answer for {ctx.obs.domain} ({shown}) differs from the DNS "
            f"control's but names the same canonical name ({', '.join(same_chain)}): a CDN's "
            "answer for this network, not judged as tampering"
        )
        return None
    alike = _alike(ctx, addresses)
    if alike is not None:
        ctx.notes.append(
            f"the resolver's answer for {ctx.obs.domain} ({shown}) differs from the DNS "
            f"control's, but TLS for the name ends the same way ({alike}) at both sets of "
            "addresses, from the remote vantage point too: it cannot be told from a genuine "
            "answer and is not judged as tampering"
        )
        return None
    evidence = (*map(_show_dns, answers), _reference(ctx))
    for x in ctx.obs.http:
        fp = ctx.fingerprints.match_http(x.body, x.headers) if x.ip in addresses else None
        if fp is not None and fp.conclusive:
            return _Finding(
                "dns", "dns.blockpage", "dns", x.ip, (*evidence, _show_http(x)), 0.95,
                f"the resolver sent {ctx.obs.domain} to {x.ip}, which serves a blockpage "
                f"({fp.name}); the DNS control says {', '.join(sorted(ctx.dns.reference))}",
                "positive", fp.name,
            )  # fmt: skip
    tried = [h for h in ctx.obs.handshakes if h.ip in addresses and h.server_name == ctx.obs.domain]
    # TLS for the name failing the same way from elsewhere says nothing about these addresses
    elsewhere = {
        _kind(h.failure) or h.failure
        for h in ctx.obs.handshakes
        if h.role == "remote" and h.server_name == ctx.obs.domain and h.failure
    }
    telling = [h for h in tried if (_kind(h.failure) or h.failure) not in elsewhere]
    return _Finding(
        "dns", "dns.inconsistent", "dns", sorted(addresses)[0],
        evidence + tuple(map(_show_tls, tried)), 0.85 if telling else 0.7,
        f"the resolver answered {ctx.obs.domain} with {shown}, which "
        f"neither the DNS control ({', '.join(sorted(ctx.dns.reference))}) nor a valid TLS "
        "handshake confirms",
        "active",
    )  # fmt: skip


def _alike(ctx: _Context, addresses: set[str]) -> str | None:
    """The one outcome TLS for the name has at the resolver's addresses and at the DNS
    control's alike, seen from the remote vantage point (which reached both over TCP), or
    None. A censor's address answers TLS for the name unlike the site's own (a blockpage
    server, a sinkhole, an unreachable private address); a site that ends every handshake
    the same way everywhere (iCloud Private Relay's TCP port, ooni/probe#2517) does not."""
    remote = [
        h for h in ctx.obs.handshakes if h.role == "remote" and h.server_name == ctx.obs.domain
    ]
    here = {h.failure for h in remote if h.ip in addresses}
    there = {h.failure for h in remote if h.ip in ctx.dns.reference}
    if len(here) != 1 or here != there:
        return None
    (outcome,) = here
    return outcome or "a valid handshake"


# --- TCP -----------------------------------------------------------------------------------


def _tcp_stage(ctx: _Context) -> _Finding | None:
    attempts = [
        c
        for c in ctx.obs.connects
        if c.role in ("target", "control_sni") and not _no_ipv6(c.ip, c.failure)
    ]
    if not attempts:
        ctx.notes.append(f"no connection to {ctx.obs.domain} was attempted")
        return None
    # X is reached over HTTPS: every connect to the TLS port failing is blocking, even
    # when plain HTTP (port 80, a redirect to HTTPS) still connects.
    port = next((h.port for h in ctx.obs.handshakes), 443)  # where the probe speaks TLS
    https = [c for c in attempts if c.port == port]
    others_work = any(c.failure is None for c in attempts if c.port != port)
    only_https = bool(https) and all(c.failure for c in https) and others_work
    if only_https:
        attempts = https
    failed = [c for c in attempts if c.failure is not None]
    if len(failed) < len(attempts):
        if failed:
            ctx.notes.append(f"{len(failed)} of {len(attempts)} connects to the target failed")
        return None
    counts = Counter(c.failure for c in failed)
    failure = counts.most_common(1)[0][0] or ""
    detail = {
        TIMEOUT: "tcp_ip.timeout",
        "connection_refused": "tcp_ip.refused",
        "connection_reset": "tcp_ip.reset",
        "host_unreachable": "tcp_ip.unreachable",
        "network_unreachable": "tcp_ip.unreachable",
    }.get(failure)
    if detail is None:
        ctx.notes.append(f"every connect to {ctx.obs.domain} failed ({failure})")
        return None
    ips = sorted({c.ip for c in failed})
    controls = [c for c in ctx.obs.connects if c.role in ("control_site", "control_address")]
    working = [c for c in controls if c.failure is None][:2]
    endpoints = {(c.ip, c.port) for c in failed}
    remote = [
        _show_connect(c)
        for c in ctx.obs.connects
        if c.role == "remote" and c.failure is None and (c.ip, c.port) in endpoints
    ][:1]
    fetched = _remote_fetched(ctx)
    if not remote and fetched is not None:
        remote = [_show_http(fetched)]
    proof = (
        " while connects to the control sites succeeded"
        if working
        else " while the remote vantage point reached the site"
        if remote
        else ""
    )
    return _Finding(
        "tcp_ip", detail, "tcp_connect", _addr(failed[0].ip, failed[0].port),
        (*map(_show_connect, failed + working), *([] if working else remote)),
        {TIMEOUT: 0.85, "connection_refused": 0.8}.get(failure, 0.85) if proof else 0.6,
        f"every TCP connect to {ctx.obs.domain}'s addresses ({', '.join(ips)})"
        f"{f' on port {port}' if only_https else ''} failed with {failure}{proof}",
        "silent" if TIMEOUT in counts else "active",
    )  # fmt: skip


# --- TLS -----------------------------------------------------------------------------------


def _kind(failure: str | None) -> str | None:
    if failure in RESET:
        return "reset"
    return "stall" if failure == TIMEOUT else None


def _tls_stage(ctx: _Context) -> _Finding | None:
    obs = ctx.obs

    def handshakes(role: str) -> list[Handshake]:
        return [h for h in obs.handshakes if h.role == role and h.failed_operation != "connect"]

    target = [h for h in handshakes("target") if h.server_name == obs.domain]
    failed = [h for h in target if h.failure is not None]
    if not failed:
        return None
    # a residual re-test refused at connect counts: residual blocking often drops the SYN
    residual = tuple(
        _show_tls(h)
        for h in obs.handshakes
        if h.role == "residual" and h.failure and h.failure not in REACHED
    )
    resets = [h for h in failed if _kind(h.failure) == "reset"]
    stalls = [h for h in failed if _kind(h.failure) == "stall"]
    if resets or (stalls and len(stalls) == len(target)):
        return _tls_interference(ctx, target, resets or stalls, residual)
    certs = [h for h in failed if h.failure in CERT_INVALID]
    if certs and not resets and not stalls:
        return _tls_interception(ctx, target, certs)
    ctx.notes.append(
        f"{len(failed)} of {len(target)} TLS handshakes for {obs.domain} failed "
        f"({', '.join(sorted({h.failure or '' for h in failed}))})"
    )
    return None


def _tls_interference(
    ctx: _Context, target: list[Handshake], bad: list[Handshake], residual: tuple[str, ...]
) -> _Finding | None:
    obs = ctx.obs
    kind = _kind(bad[0].failure)
    ips = {h.ip for h in bad}
    sni = [h for h in obs.handshakes if h.role == "control_sni" and h.ip in ips]
    sni_reached = [h for h in sni if h.failure is None or h.failure in REACHED]
    sni_same = [h for h in sni if _kind(h.failure) == kind]
    others = [
        h for h in obs.handshakes if h.role == "control_address" and h.failed_operation != "connect"
    ]
    other_same = [h for h in others if _kind(h.failure) == kind]
    other_reached = [h for h in others if h.failure is None or h.failure in REACHED]
    what = "reset after the ClientHello" if kind == "reset" else "stalled after the ClientHello"
    first = bad[0]
    mixed = len(bad) < len(target)
    if kind == "stall" and _slow_path(ctx) is not None:
        ctx.notes.append(f"TLS for {obs.domain} stalled on a slow path to {first.ip}")
        return None  # a queue, not a filter: the throttling stage judges it
    if sni_reached or other_same:
        proofs = []
        if sni_reached:
            proofs.append(f"the same server answers the control SNI {sni_reached[0].server_name}")
        if other_same:
            proofs.append(f"the same SNI is {what.split()[0]} at a control address too")
        confidence = (0.95 if sni_reached and other_same else 0.85) - (0.1 if mixed else 0.0)
        # the control SNI passed before the trigger and fails after it: the censor holds
        # the address for every name for a while (residual blocking), its own finding
        lasting = bool(sni_reached and residual)
        if lasting:
            proofs.append("afterwards the control SNI fails there too (residual blocking)")
        return _Finding(
            "tls", "tls.residual" if lasting else f"tls.sni_{kind}", "tls_handshake",
            _addr(first.ip, first.port),
            (*map(_show_tls, bad), *map(_show_tls, sni_reached[:1] + other_same[:1]), *residual),
            confidence,
            f"TLS connection {what} for SNI {obs.domain} on {first.ip}"
            + (f" ({len(bad)} of {len(target)} handshakes)" if mixed else "")
            + "; " + " and ".join(proofs),
            "active" if kind == "reset" else "silent",
        )  # fmt: skip
    remote = _remote_tls(ctx, ips)
    if remote is not None:
        return _Finding(
            "tls", f"tls.{kind}", "tls_handshake", _addr(first.ip, first.port),
            (*map(_show_tls, bad), remote, *residual), 0.7 - (0.1 if mixed else 0.0),
            f"TLS connection {what} for SNI {obs.domain} on {first.ip}"
            + (f" ({len(bad)} of {len(target)} handshakes)" if mixed else "")
            + " while the remote vantage point completed it; with no control SNI on that "
            "address, SNI filtering cannot be told from address filtering",
            "active" if kind == "reset" else "silent",
        )  # fmt: skip
    alone = _tls_alone(ctx, target, bad, kind or "reset", what)
    if alone is not None:
        return alone
    if sni_same and other_reached and kind == "reset":
        return _Finding(
            "tcp_ip", "tcp_ip.reset", "tls_handshake",
            _addr(first.ip, first.port),
            (*map(_show_tls, bad[:2] + sni_same[:1] + other_reached[:1]), *residual),
            0.7,
            f"TLS to {first.ip} is {what} for any name (the control SNI too) while "
            f"{obs.domain} passes at a control address: the address is blocked",
            "active",
        )  # fmt: skip
    ctx.notes.append(
        f"TLS for {obs.domain} was {what} on {first.ip} but no control handshake tells SNI "
        "filtering from address blocking"
    )
    return None


def _tls_alone(
    ctx: _Context, target: list[Handshake], bad: list[Handshake], kind: str, what: str
) -> _Finding | None:
    """Every handshake for the SNI reset (or stalled) after its TCP connect succeeded, and
    nothing to compare with: no control handshake, no remote vantage point (OONI's
    ``control: {}``). The measurement alone shows a path that carries TCP to the address and
    kills TLS for the name; a server refusing the name itself is not ruled out, so the
    confidence is low and the explanation says so."""
    obs = ctx.obs
    compared = [h for h in obs.handshakes if h.role in ("control_sni", "control_address", "remote")]
    if compared or _remote_fetch(ctx) is not None or len(bad) < len(target):
        return None
    flagged = obs.flags is not None and bool(obs.flags & 4)
    confidence = ALONE_CONFIDENCE[kind] + (ALONE_FLAG_BONUS if flagged else 0.0)
    ips = sorted({h.ip or "an unrecorded address" for h in bad})
    first = bad[0]
    return _Finding(
        "tls", f"tls.{kind}", "tls_handshake", _addr(first.ip, first.port) if first.ip else None,
        tuple(map(_show_tls, bad)), confidence,
        f"TLS connection {what} for SNI {obs.domain} on {', '.join(ips)} (every handshake for "
        "that name) after the TCP connect succeeded; with no test-helper result and no "
        "control handshake this rests on the measurement alone (lower confidence: the server "
        "refusing the name is not ruled out)"
        + ("; OONI's x_blocking_flags say TLS too" if flagged else ""),
        "active" if kind == "reset" else "silent",
        connected=True,
    )  # fmt: skip


def _tls_interception(
    ctx: _Context, target: list[Handshake], certs: list[Handshake]
) -> _Finding | None:
    confirmed = [h for h in certs if h.ip in ctx.dns.reference]
    valid_ips = {h.ip for h in target if h.failure is None}
    intercepted = [h for h in confirmed if h.ip not in valid_ips]
    # a control site that validates shows the trust store works: the fault is on the path
    trusted = [h for h in ctx.obs.handshakes if h.role == "control_site" and h.failure is None]
    if not intercepted or not trusted:
        ctx.notes.append(
            f"the certificate for {ctx.obs.domain} is invalid ({certs[0].failure}), but no "
            "DNS-confirmed address and validating control site show an interception"
        )
        return None
    h = intercepted[0]
    return _Finding(
        "tls", "tls.interception", "tls_handshake", _addr(h.ip, h.port),
        (*map(_show_tls, intercepted), _reference(ctx), _show_tls(trusted[0])), 0.8,
        f"the TLS certificate for {ctx.obs.domain} on {h.ip} is not valid ({h.failure}) "
        "although the DNS control gives that address: the connection is intercepted",
        "active",
    )  # fmt: skip


# --- HTTP ----------------------------------------------------------------------------------


def _page_stage(ctx: _Context) -> _Finding | None:
    """Before the TCP rule: a known blockpage, or a page served in the site's place.

    A censor that drops the HTTPS port and answers plain HTTP itself shows its
    hand in that answer: a fingerprint (the strongest evidence), or a page of
    its own at the DNS-confirmed address (:mod:`probe.verdict.pages`).
    """
    target = [x for x in ctx.obs.http if x.role == "target"]
    for x in target:
        fp = ctx.fingerprints.match_http(x.body, x.headers) if x.status is not None else None
        if fp is not None and fp.conclusive:
            return _Finding(
                "http", "http.blockpage", "http", _addr(x.ip, x.port), (_show_http(x),), 0.95,
                f"the response to {x.url}{f' from {x.ip}' if x.ip else ''} is a blockpage "
                f"({fp.name})",
                "positive", fp.name,
            )  # fmt: skip
    remote = _remote_fetched(ctx)
    reference = remote if remote is not None and remote.status and remote.status < 300 else None
    port = next((h.port for h in ctx.obs.handshakes), 443)  # where the probe speaks TLS
    sub = pages.substitute_page(ctx.obs.connects, target, port, ctx.dns.reference, reference)
    if sub is None:
        return None
    x = sub.exchange
    unreachable = [c for c in ctx.obs.connects if c.role == "target" and c.port == port]
    return _Finding(
        "http", "http.diff", "http", _addr(x.ip, x.port),
        (sub.shown(), _show_http(x), *map(_show_connect, unreachable[:2]), _reference(ctx)), 0.7,
        f"the plain-HTTP response for {x.url} from {x.ip} {sub.why}: a page served in the "
        "site's place",
        "silent",  # it rests on the HTTPS port's silence too: loss must not fake it
    )  # fmt: skip


def _http_stage(ctx: _Context) -> _Finding | None:
    target = [x for x in ctx.obs.http if x.role == "target"]
    plain = [x for x in target if x.url.startswith("http://")]
    https_ok = [x for x in target if x.url.startswith("https://") and x.failure is None]
    fetched = _remote_fetched(ctx)
    works = https_ok[:1] or ([fetched] if fetched is not None else [])
    where = "HTTPS to it works" if https_ok else "the remote vantage point fetched it"
    reset = [x for x in plain if x.failure in RESET and x.failed_operation != "connect"]
    if reset and len(reset) == len(plain) and works:
        x = reset[0]
        return _Finding(
            "http", "http.reset", "http", _addr(x.ip, x.port),
            (*map(_show_http, reset), _show_http(works[0])), 0.75,
            f"plain-HTTP requests to {ctx.obs.domain} are reset ({x.failure}) after the "
            f"request while {where}",
            "active",
        )  # fmt: skip
    silent = [
        x
        for x in plain
        if x.failure == TIMEOUT and x.status is None and x.failed_operation != "connect"
    ]
    if silent and len(silent) == len(plain) and fetched is not None:
        x = silent[0]
        return _Finding(
            "http", "http.timeout", "http", _addr(x.ip, x.port),
            (*map(_show_http, silent), _show_http(fetched)), 0.6,
            f"plain-HTTP requests to {ctx.obs.domain} got no response (timeout) after "
            "connecting while the remote vantage point fetched it",
            "silent",
        )  # fmt: skip
    return _http_diff(ctx, plain, works)


def _http_diff(
    ctx: _Context, plain: list[HttpExchange], works: list[HttpExchange]
) -> _Finding | None:
    """The plain-HTTP page is not the HTTPS page, or the remote vantage point's page.

    Narrow on purpose: a redirect to HTTPS or within the site is the normal
    answer; only a redirect elsewhere over plain HTTP, or a page whose title
    differs from the reference page's, counts. Bodies are never compared (a
    truncated body proves nothing).
    """
    reference = next((x for x in works if x.status is not None and x.status < 300), None)
    for x in plain:
        if x.status is None:
            continue
        if 300 <= x.status < 400:
            location = next((v for k, v in x.headers if k.lower() == "location"), "")
            parts = parse_url(location)
            # no host (a broken Location) is the server's own bug, not another site
            if parts is None or parts.scheme != "http" or not parts.host:
                continue
            if _same_site(parts.host, ctx.obs.domain):
                continue
            why = f"redirects to {location}"
        elif reference is not None and x.title and reference.title and x.title != reference.title:
            there = "HTTPS" if reference.role == "target" else "the remote vantage point"
            why = f"is titled {x.title!r} where {there} shows {reference.title!r}"
        else:
            continue
        shown = (_show_http(x),) + ((_show_http(reference),) if reference else ())
        return _Finding(
            "http", "http.diff", "http", _addr(x.ip, x.port), shown, 0.6,
            f"the plain-HTTP response for {x.url} from {x.ip} {why}", "active",
        )  # fmt: skip
    return None


def _same_site(host: str, domain: str) -> bool:
    """Same registrable-looking suffix (x.com ~ www.x.com ~ api.x.com)."""
    return host.rstrip(".").lower().split(".")[-2:] == domain.split(".")[-2:]


# --- throttling ----------------------------------------------------------------------------


def _throttle_stage(ctx: _Context) -> _Finding | None:
    return _steady_download(ctx) or _starved_path(ctx) or _cut_download(ctx)


def _steady_download(ctx: _Context) -> _Finding | None:
    """A target download held at a plateau far below the control's (:mod:`.throttling`)."""
    controls = [t for t in ctx.obs.transfers if t.role == "control_site"]
    control_rate = max((throttling.mean_rate(t.samples) for t in controls), default=0.0)
    if control_rate <= 0:
        return None
    for t in ctx.obs.transfers:
        shape = throttling.plateau(t.samples) if t.role == "target" else None
        if shape is None or shape.rate * throttling.RATIO > control_rate:
            continue
        shown = f"{t.ref}: {shape.shown()} vs control {control_rate * 8 / 1000:.0f} kbit/s"
        if not shape.steady:
            ctx.notes.append(
                f"the download from {ctx.obs.domain} was slow but not steady ({shown})"
            )
            continue
        return _Finding(
            "throttling", "throttling", "throughput", t.ip or None, (shown,), 0.8,
            f"downloads from {ctx.obs.domain} hold a steady {shape.rate * 8 / 1000:.0f} kbit/s, "
            f"{control_rate / max(shape.rate, 1e-9):.0f}x slower than from the control site",
            "silent",
        )  # fmt: skip
    return None


def _cut_download(ctx: _Context) -> _Finding | None:
    """A download that began and stalled until timeout while the remote fetched the page."""
    fetched = _remote_fetched(ctx)
    cut = [
        x
        for x in ctx.obs.http
        if x.role == "target" and x.failure == TIMEOUT and x.status is not None
    ]
    if fetched is None or not cut:
        return None
    x = cut[0]
    return _Finding(
        "throttling", "throttling", "http", _addr(x.ip, x.port),
        (_show_http(x), _show_http(fetched)), 0.5,
        f"the download of {x.url} began ({x.status}) and then stalled until it timed out while "
        "the remote vantage point fetched the page: it is throttled or cut",
        "silent",
    )  # fmt: skip


def _starved_path(ctx: _Context) -> _Finding | None:
    """Timeouts on a path that is measurably slow: a shaper's queue.

    A shaper queues: what gets through to the target's addresses is slow, what
    waits too long times out, whatever the name. Timeouts alone are not
    throttling: a server (or a filter) that accepts the connection and then
    stays silent, or stalls after the ServerHello, delivers no bytes at all,
    and throttling needs bytes flowing at a low rate.
    """
    obs = ctx.obs
    stalled = [
        h
        for h in obs.handshakes
        if h.role in ("target", "control_sni")
        and h.failed_operation != "connect"
        and h.failure == TIMEOUT
    ]
    fetches = [x for x in obs.http if x.role == "target" and x.failure == TIMEOUT]
    slow = _slow_path(ctx) if stalled or fetches else None
    if slow is None:
        return None
    shown = tuple(map(_show_tls, stalled[:2])) + tuple(map(_show_http, fetches[:2]))
    return _Finding(
        "throttling", "throttling", "throughput", None, (slow, *shown), 0.6,
        f"the path to {obs.domain}'s addresses is slow ({slow.split(': ', 1)[1]}) and "
        f"{len(stalled) + len(fetches)} step(s) timed out: it is throttled",
        "silent",
    )  # fmt: skip


def _slow_path(ctx: _Context) -> str | None:
    """Evidence that what reaches the target's addresses is slow, or None."""
    obs = ctx.obs

    def durations(roles: tuple[str, ...]) -> list[float]:  # of the steps that succeeded
        connects = [c.duration for c in obs.connects if c.role in roles and c.failure is None]
        handshakes = [
            h.duration
            for h in obs.handshakes
            if h.role in roles and (h.failure is None or h.failure in REACHED)
        ]
        return connects + handshakes

    target = durations(("target", "control_sni"))
    control = durations(("control_site", "control_address"))
    if not target or not control:
        return None  # no baseline: slow compared with nothing says nothing
    slowest, reference = max(target), max(control, default=0.0)
    if slowest < SLOW_SECONDS or slowest < SLOW_FACTOR * reference:
        return None
    return f"slow path: up to {slowest:.2f} s to the target, {reference:.2f} s to the controls"


# --- evidence ------------------------------------------------------------------------------

_SHOWN: Final = 8  # the answer values one evidence line lists: a flood of records stays short


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _no_ipv6(ip: str, failure: str | None) -> bool:
    """An IPv6 attempt on a network without IPv6: says nothing about blocking."""
    return ":" in ip and failure in NO_ROUTE


def _reference(ctx: _Context) -> str:
    if ctx.dns.reference:
        return f"DNS control: {', '.join(sorted(ctx.dns.reference))}"
    failed = ", ".join(f"{c.ref} {c.failure}" for c in ctx.dns.control_failures)
    return f"DNS control: no answer ({failed or 'none measured'})"


def _show_dns(q: DnsResponse) -> str:
    values = q.addresses + q.names
    shown = values if len(values) <= _SHOWN else (*values[:_SHOWN], f"{len(values) - _SHOWN} more")
    said = q.failure or ", ".join(shown) or "no answer"
    return f"{q.ref}: {q.engine} {q.resolver or 'system'} {q.hostname} -> {said}"


def _show_connect(c: Connect) -> str:
    return f"{c.ref}: connect {_addr(c.ip, c.port)} ({c.role}) -> {c.failure or 'ok'}"


def _show_tls(h: Handshake) -> str:
    return (
        f"{h.ref}: TLS {h.server_name} @ {_addr(h.ip, h.port)} ({h.role}) -> "
        f"{h.failure or 'ok'} after {h.duration:.3f} s"
    )


def _show_http(x: HttpExchange) -> str:
    said = x.failure or f"{x.status}" + (" (truncated body)" if x.body_is_truncated else "")
    where = f" @ {_addr(x.ip, x.port)}" if x.ip else ""
    return f"{x.ref}: GET {x.url}{where} ({x.role}) -> {said}"


# --- the remote vantage point --------------------------------------------------------------


def _remote_fetch(ctx: _Context) -> HttpExchange | None:
    """The remote vantage point's fetch of the site (it follows redirects), if any."""
    return next((x for x in ctx.obs.http if x.role == "remote"), None)


def _remote_fetched(ctx: _Context) -> HttpExchange | None:
    """That fetch, when it got a response: the site works from elsewhere."""
    x = _remote_fetch(ctx)
    return x if x is not None and x.failure is None and x.status is not None else None


def _remote_tls(ctx: _Context, ips: set[str]) -> str | None:
    """Evidence that the remote completed TLS for the target SNI (at the same address first)."""
    same = [
        h
        for h in ctx.obs.handshakes
        if h.role == "remote"
        and h.ip in ips
        and h.server_name == ctx.obs.domain
        and h.failure is None
    ]
    if same:
        return _show_tls(same[0])
    fetched = _remote_fetched(ctx)
    return _show_http(fetched) if fetched is not None and fetched.url.startswith("https") else None


def _broken_elsewhere(ctx: _Context) -> HttpExchange | None:
    """The remote fetch, when it failed: the site is down or broken from elsewhere too."""
    x = _remote_fetch(ctx)
    return x if x is not None and x.failure is not None else None

"""The verdict: what blocked a target, where, how, and how sure: one pure function.

:func:`verdict` reads a measurement into the observations view (ours:
:mod:`probe.format.reader`; OONI's web_connectivity:
:mod:`probe.format.ooni`) and :func:`judge` runs the pipeline OONI's
probe-cli runs in ``internal/minipipeline``: observations -> named **facts**
(:mod:`probe.verdict.facts`: health, and per family ``facts_dns``,
``facts_steps``; serialisable, with goldens of their own) -> **decisions**,
stage by stage in this order, the first stage that finds blocking deciding:

1. DNS (:mod:`probe.verdict.decide_dns`): injection, oversized answers,
   blockpage addresses, bogons, resolver errors, inconsistent answers;
2. pages (:mod:`probe.verdict.decide_http`): a known blockpage, or a page
   served in the site's place while its HTTPS port is unreachable;
3. TCP and 4. TLS (:mod:`probe.verdict.decide_transport`);
5. HTTP and 6. throttling (:mod:`probe.verdict.decide_http`).

Every finding then passes the health gate (:mod:`probe.verdict.gate`: no
``blocked`` unless the controls show a working network); when no stage finds
blocking, the gate's :func:`~probe.verdict.gate.unblocked` says ``ok``,
``down`` or ``inconclusive``. Every verdict carries the evidence (references
into ``test_keys``, :mod:`probe.verdict.evidence`) and one plain sentence.

**A remote vantage point** (role ``remote``: OONI's test helper, see
:mod:`probe.format.ooni`) did the same steps from another network. It
stands in for the controls our probe measures itself, weaker: it proves the
site works from elsewhere, never which name or address a filter keys on.
Its DNS answers (engine ``th``, over HTTPS) are a trusted DNS control; its
successful handshake (or HTTPS fetch) with the target SNI makes a TLS reset or
stall on this path a ``tls.reset`` / ``tls.stall`` finding (lower confidence
than SNI proof); its fetch is the control page for ``http.diff``, the proof
for ``http.reset`` / ``http.timeout``, and a download that began and stalled
while it fetched the page is ``throttling``. When its own fetch failed too, a
TCP, TLS or HTTP failure here is the site's, not the path's: ``down``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Final

from probe.format.ooni import chain, is_ooni
from probe.format.reader import observations
from probe.format.view import Observations
from probe.format.vocab import Blocking, Method, Status
from probe.verdict.bogons import Bogons, default_bogons
from probe.verdict.decide_dns import dns_stage
from probe.verdict.decide_http import http_stage, page_stage, throttle_stage
from probe.verdict.decide_transport import ALONE_CONFIDENCE, ALONE_FLAG_BONUS, tcp_stage, tls_stage
from probe.verdict.evidence import show_http
from probe.verdict.facts import Context, facts
from probe.verdict.fingerprints import Fingerprints, default_fingerprints
from probe.verdict.gate import gate, unblocked
from probe.verdict.outcome import Finding, Verdict, inconclusive

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
#: 8: injected and oversized DNS answers; 9: the control's download rate once its bytes flow.
ANALYSIS_VERSION: Final = "9"

Stage = Callable[[Context], Finding | Verdict | None]
STAGES: Final[tuple[Stage, ...]] = (
    dns_stage, page_stage, tcp_stage, tls_stage, http_stage, throttle_stage
)  # fmt: skip


def verdict(measurement: Mapping[str, Any], *, fingerprints: Fingerprints | None = None) -> Verdict:
    """The verdict on one measurement (docs/format.md, or OONI's web_connectivity); never raises.

    An OONI measurement is a chain: the input's domain, then each domain a
    redirect led to; the chain is as good as its first hop that is not ok.
    """
    try:
        if not is_ooni(measurement):
            return judge(observations(measurement), fingerprints)
        first, *hops = chain(measurement)
        result = judge(first, fingerprints)
        for hop in hops:
            if result.status != Status.OK:
                break
            then = judge(hop, fingerprints)
            if then.status != Status.OK:
                said = then.explanation.split(": ", 1)[-1]
                result = replace(
                    then,
                    explanation=f"{then.status}: {first.domain} redirects to {hop.domain}; {said}",
                )
                break
        # entries left out (probe.format.ooni): the evidence says what was not read
        return replace(result, evidence=result.evidence + first.notes)
    except Exception as exc:  # a rule bug must cost one verdict, not a whole report
        return inconclusive(f"the rules failed on this measurement ({type(exc).__name__})", ())


def judge(
    obs: Observations, fingerprints: Fingerprints | None = None, bogons: Bogons | None = None
) -> Verdict:
    """The rules (module docstring) over an observations view."""
    if obs.problems:
        reason = "; ".join(obs.problems[:3]) + ("; ..." if len(obs.problems) > 3 else "")
        return inconclusive(f"the measurement cannot be read: {reason}", obs.problems)
    fingerprints = fingerprints or default_fingerprints()
    bogons = bogons or default_bogons()
    found = facts(obs, fingerprints, bogons)
    # an absurd answer (thousands of records) decides nothing, but the verdict says so
    absurd = [
        f"{q.ref}: {q.engine} {q.resolver or 'system'} answered {len(q.addresses)} address "
        f"records for {q.hostname}, more than any real name has"
        for q in found.dns.flooded
    ]
    ctx = Context(obs, fingerprints, bogons, found, absurd)
    held: Verdict | None = None  # a finding the gate refused: later, only fingerprints may win
    for stage in STAGES:
        result = stage(ctx)
        if isinstance(result, Verdict):
            return held or result
        if result is None or (held is not None and result.kind != "positive"):
            continue
        broken = found.http.broken_elsewhere
        if broken is not None and result.method != Method.DNS and result.kind != "positive":
            return held or Verdict(
                Status.DOWN, None, None, result.step, result.address,
                (*result.evidence, show_http(broken)), 0.7,
                f"down: {result.explanation}, but the remote vantage point cannot fetch the "
                f"site either ({broken.failure}): the site itself is down or broken",
            )  # fmt: skip
        gated = gate(result, found.health)
        if gated.status == Status.BLOCKED:
            return gated
        held = held or gated
    return held or unblocked(ctx)


def summary_keys(v: Verdict) -> dict[str, Any]:
    """OONI's summary keys (``blocking``, ``accessible``) plus ours, for ``test_keys``.

    ``blocking`` keeps OONI's words (web_connectivity's: a TLS failure or a stall after the
    connect is an ``http-failure``) so OONI's tools read it; ``x_verdict`` has the finer method.
    The vocabularies' members leave as plain strings: what a measurement holds is JSON's, and
    a reader that pickles it (Spark's workers) knows no enum.
    """
    blocking: str | bool | None
    if v.status == Status.BLOCKED:
        blocking = _plain(v.method)
        if v.method in (Method.HTTP, Method.TLS, Method.THROTTLING):
            diff = v.detail in ("http.blockpage", "http.diff")
            blocking = str(Blocking.HTTP_DIFF if diff else Blocking.HTTP_FAILURE)
    else:
        blocking = {Status.OK: False, Status.DOWN: False}.get(v.status)
    accessible = {Status.OK: True, Status.BLOCKED: False, Status.DOWN: False}.get(v.status)
    return {
        "x_analysis_version": ANALYSIS_VERSION,
        "x_verdict": {
            "status": str(v.status),
            "method": _plain(v.method),
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


def _plain(value: str | None) -> str | None:
    return None if value is None else str(value)

"""The health gate, and what is said when no rule found blocking.

**The gate.** A finding is reported as ``blocked`` only when the network is up
(the health facts, :mod:`probe.verdict.facts`); otherwise the status is
``down`` (network down) or ``inconclusive``. Findings that rest on silence
(timeouts, a slow download: kind ``silent``) further need the controls to
show no packet loss, since loss alone can fake a timeout: no control connect
that took >= 0.9 s (a SYN retransmission), no resolver or control endpoint
that answered some attempts and ignored others. A fingerprint match (a known
blockpage, kind ``positive``) is exempt: no outage writes a blockpage. A
finding whose own TCP connect succeeded (``connected``) shows the path works,
so an unknown health (no control site) does not refuse it.

**Otherwise** (:func:`unblocked`): a valid TLS handshake for the domain (and a
response when a request was attempted: HTTPS when tried, else plain HTTP) ->
``ok``; the network down, the site failing from the remote vantage point too,
or a name the DNS control too points only at special-purpose addresses
(127.0.0.1) -> ``down``; else ``inconclusive`` with the reasons collected on
the way.
"""

from __future__ import annotations

from probe.format.view import HttpExchange
from probe.format.vocab import Status, Tag
from probe.verdict.evidence import addr, show_connect, show_dns, show_http, show_tls, shown
from probe.verdict.facts import Context, Health
from probe.verdict.facts_steps import no_ipv6
from probe.verdict.outcome import Finding, Verdict, inconclusive

__all__ = ["gate", "unblocked"]


def gate(f: Finding, health: Health) -> Verdict:
    """``blocked`` only when the controls show a working network (module docstring)."""
    works = health.state == "up" or (f.connected and health.state == "unknown")
    if f.kind == "positive" or (works and not (f.kind == "silent" and health.lossy)):
        return Verdict(
            Status.BLOCKED,
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
            Status.DOWN, None, None, f.step, f.address, evidence, 0.8,
            f"down: {f.explanation}, but every control site fails too: the network is down",
        )  # fmt: skip
    why = {
        "degraded": "some control-site observations fail too (a lossy or partial network)",
        "unknown": "there are no control-site observations to rule out an outage",
        "up": "the controls show packet loss, and loss can fake a timeout",
    }[health.state]
    return inconclusive(f"{f.explanation}, but {why}", evidence)


def unblocked(ctx: Context) -> Verdict:
    obs, health = ctx.obs, ctx.facts.health
    valid = [
        h
        for h in obs.handshakes
        if h.role == Tag.TARGET and h.server_name == obs.domain and h.failure is None
    ]
    target = [x for x in obs.http if x.role == Tag.TARGET]
    https = [x for x in target if x.url.startswith("https://")]
    fetches = https or target  # judged by HTTPS when it was tried, else by plain HTTP
    answered = [x for x in fetches if x.failure is None]
    broken = ctx.facts.http.broken_elsewhere
    failed = [
        *(
            (show_connect(c), c.failure)
            for c in obs.connects
            if c.role == Tag.TARGET and c.failure and not no_ipv6(c.ip, c.failure)
        ),
        *((show_tls(h), h.failure) for h in obs.handshakes if h.role == Tag.TARGET and h.failure),
        *((show_http(x), x.failure) for x in target if x.failure),
    ]
    if broken is not None and failed:
        return Verdict(
            Status.DOWN, None, None, None, None,
            (*(shown for shown, _ in failed[:2]), show_http(broken)), 0.7,
            f"down: {obs.domain} fails here ({failed[0][1]}) and the remote vantage point "
            f"cannot fetch it either ({broken.failure}): the site itself is down or broken",
        )  # fmt: skip
    if valid and (answered or not fetches):
        shown = [show_tls(valid[0])] + [show_http(x) for x in answered[:1]]
        doubts = ctx.notes + ([] if health.state == "up" else list(health.evidence))
        kind = "HTTPS" if https else "HTTP"
        what = "a valid TLS handshake" + (f" and an {kind} response" if answered else "")
        return Verdict(
            Status.OK, None, None, None, addr(valid[0].ip, valid[0].port),
            tuple(shown + doubts), 0.9 if not doubts else 0.7,
            f"ok: {obs.domain} completed {what} on {addr(valid[0].ip, valid[0].port)}"
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
            Status.DOWN, None, None, None, None, health.evidence, 0.8,
            f"down: {obs.domain} was not reached and every control site fails too: "
            "the network is down",
        )  # fmt: skip
    if valid:
        kind = "HTTPS" if https else "HTTP"
        ctx.notes.append(f"TLS to {obs.domain} works but every {kind} request failed")
    reason = "; ".join(ctx.notes) or f"{obs.domain} was not reached and no rule explains why"
    return inconclusive(reason, tuple(ctx.notes) + health.evidence)


def _plain_http_only(ctx: Context, answered: list[HttpExchange]) -> Verdict | None:
    """OONI web_connectivity before 0.4 records no TLS handshake: a response that passed the
    HTTP rules while the remote fetched the site too is ok, at a lower confidence."""
    remote = ctx.facts.http.remote_fetched
    if not answered or remote is None or any(h.role == Tag.TARGET for h in ctx.obs.handshakes):
        return None
    x = answered[0]
    return Verdict(
        Status.OK, None, None, None, addr(x.ip, x.port) if x.ip else None,
        (show_http(x), show_http(remote)), 0.7,
        f"ok: {ctx.obs.domain} answered {x.url} ({x.status}) as the remote vantage point saw "
        "it (no TLS handshake recorded: less proof that it is the real site)",
    )  # fmt: skip


def _nowhere(ctx: Context) -> Verdict | None:
    """Not reached, and the DNS control too points the name at special-purpose addresses
    (an oversized control answer says nothing about the name)."""
    if ctx.facts.dns.reference_oversized:
        return None
    reference = sorted(ctx.facts.dns.reference)
    whys = [ctx.bogons.reason(a) for a in reference]
    answers = [q for q in ctx.facts.dns.system if q.failure is None and q.addresses]
    if not (reference and all(whys)) or {a for q in answers for a in q.addresses} - set(reference):
        return None
    return Verdict(
        Status.DOWN, None, None, "dns", reference[0],
        (ctx.cite_control(), *map(show_dns, answers)), 0.8,
        f"down: {ctx.obs.domain} points at {', '.join(shown(reference))} ({whys[0]}) for the DNS "
        "control too: it is no site on the internet",
    )  # fmt: skip

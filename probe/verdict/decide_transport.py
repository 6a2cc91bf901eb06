"""TCP and TLS decisions: connects that fail everywhere, handshakes killed by name.

**TCP** (``tcp_ip``): every connect to the target's addresses (roles
``target``/``control_sni``) failed the same way: ``tcp_ip.timeout``
(silence), ``tcp_ip.refused`` (a RST to the SYN, as Linux reports it),
``tcp_ip.reset``, ``tcp_ip.unreachable``. Some addresses working is not
blocking; nor are failed connects only to addresses an oversized DNS answer
named (thousands of records: the resolver chose them, the DNS rules judge it).

**TLS** (target SNI handshakes that got past connect):

* reset / EOF after the ClientHello (``tls.sni_reset``) or a handshake timeout
  (``tls.sni_stall``, all target handshakes must stall) while the control SNI
  reaches the same server (a certificate error counts: the server answered),
  or the target SNI fails the same way at a control address -> SNI filtering;
  both -> the highest confidence. Resets are active, so a few successful
  handshakes (racy RST injection) lower the confidence but not the verdict.
* a reset for the control SNI too on that address, while the target SNI
  reaches a control address -> the address is blocked (``tcp_ip.reset``).
* a stall on a slow path is left to the throttling rules.
* ``ssl_unknown_authority`` / ``ssl_invalid_hostname`` on an address the DNS
  control confirms, while a control site validates (the trust store works)
  -> ``tls.interception``.
* the remote vantage point completed TLS for the name: a reset or stall here
  is ``tls.reset`` / ``tls.stall`` (lower confidence than SNI proof: it cannot
  tell SNI from address filtering).
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

The facts are :mod:`probe.verdict.facts_steps`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Final

from probe.format.view import Handshake
from probe.format.vocab import Method, Operation, Tag
from probe.verdict.evidence import addr, show_connect, show_http, show_tls
from probe.verdict.facts import Context
from probe.verdict.facts_steps import REACHED, TIMEOUT
from probe.verdict.facts_steps import kind as failure_kind
from probe.verdict.outcome import Finding

__all__ = ["ALONE_CONFIDENCE", "ALONE_FLAG_BONUS", "tcp_stage", "tls_stage"]

#: A TLS reset / stall with no control handshake and no remote vantage point (OONI with
#: ``control: {}``): the measurement alone shows it, so it is worth less than any control's
#: proof (0.7 and up). probe.verdict.ooni_aggregate reads these tiers across lines.
ALONE_CONFIDENCE: Final[Mapping[str, float]] = {"reset": 0.5, "stall": 0.4}
ALONE_FLAG_BONUS: Final = 0.05  # OONI's own x_blocking_flags say TLS too (4)


def tcp_stage(ctx: Context) -> Finding | None:
    tcp = ctx.facts.tcp
    if not tcp.attempts:
        ctx.notes.append(f"no connection to {ctx.obs.domain} was attempted")
        return None
    failed, port = list(tcp.failed), tcp.tls_port
    if not tcp.every_failed:
        if failed:
            ctx.notes.append(f"{len(failed)} of {len(tcp.attempts)} connects to the target failed")
        return None
    flood = ctx.facts.dns.flood_only
    if flood and all(c.ip in flood for c in failed):
        ctx.notes.append(
            f"every TCP connect to {ctx.obs.domain} failed, but only to addresses an oversized "
            "DNS answer named (the resolver's choice, not the site's): a DNS matter, not IP "
            "blocking"
        )
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
    working = list(tcp.controls_ok[:2])
    endpoints = {(c.ip, c.port) for c in failed}
    remote = [
        show_connect(c)
        for c in ctx.obs.connects
        if c.role == "remote" and c.failure is None and (c.ip, c.port) in endpoints
    ][:1]
    fetched = ctx.facts.http.remote_fetched
    if not remote and fetched is not None:
        remote = [show_http(fetched)]
    proof = (
        " while connects to the control sites succeeded"
        if working
        else " while the remote vantage point reached the site"
        if remote
        else ""
    )
    return Finding(
        Method.TCP_IP, detail, "tcp_connect", addr(failed[0].ip, failed[0].port),
        (*map(show_connect, failed + working), *([] if working else remote)),
        {TIMEOUT: 0.85, "connection_refused": 0.8}.get(failure, 0.85) if proof else 0.6,
        f"every TCP connect to {ctx.obs.domain}'s addresses ({', '.join(ips)})"
        f"{f' on port {port}' if tcp.only_tls_port else ''} failed with {failure}{proof}",
        "silent" if TIMEOUT in counts else "active",
    )  # fmt: skip


def tls_stage(ctx: Context) -> Finding | None:
    obs, tls = ctx.obs, ctx.facts.tls
    target, failed = list(tls.target), tls.failed
    if not failed:
        return None
    residual = tuple(map(show_tls, tls.residual))
    resets, stalls = list(tls.resets), list(tls.stalls)
    if resets or (stalls and len(stalls) == len(target)):
        return _tls_interference(ctx, target, resets or stalls, residual)
    if tls.cert_invalid and not resets and not stalls:
        return _tls_interception(ctx, target, list(tls.cert_invalid))
    ctx.notes.append(
        f"{len(failed)} of {len(target)} TLS handshakes for {obs.domain} failed "
        f"({', '.join(sorted({h.failure or '' for h in failed}))})"
    )
    return None


def _tls_interference(
    ctx: Context, target: list[Handshake], bad: list[Handshake], residual: tuple[str, ...]
) -> Finding | None:
    obs = ctx.obs
    kind = failure_kind(bad[0].failure)
    ips = {h.ip for h in bad}
    sni = [h for h in obs.handshakes if h.role == Tag.CONTROL_SNI and h.ip in ips]
    sni_reached = [h for h in sni if h.failure is None or h.failure in REACHED]
    sni_same = [h for h in sni if failure_kind(h.failure) == kind]
    others = [
        h
        for h in obs.handshakes
        if h.role == Tag.CONTROL_ADDRESS and h.failed_operation != Operation.CONNECT
    ]
    other_same = [h for h in others if failure_kind(h.failure) == kind]
    other_reached = [h for h in others if h.failure is None or h.failure in REACHED]
    what = "reset after the ClientHello" if kind == "reset" else "stalled after the ClientHello"
    first = bad[0]
    mixed = len(bad) < len(target)
    if kind == "stall" and ctx.facts.tls.slow_path is not None:
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
        return Finding(
            Method.TLS, "tls.residual" if lasting else f"tls.sni_{kind}", "tls_handshake",
            addr(first.ip, first.port),
            (*map(show_tls, bad), *map(show_tls, sni_reached[:1] + other_same[:1]), *residual),
            confidence,
            f"TLS connection {what} for SNI {obs.domain} on {first.ip}"
            + (f" ({len(bad)} of {len(target)} handshakes)" if mixed else "")
            + "; " + " and ".join(proofs),
            "active" if kind == "reset" else "silent",
        )  # fmt: skip
    remote = _remote_tls(ctx, ips)
    if remote is not None:
        return Finding(
            Method.TLS, f"tls.{kind}", "tls_handshake", addr(first.ip, first.port),
            (*map(show_tls, bad), remote, *residual), 0.7 - (0.1 if mixed else 0.0),
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
        return Finding(
            Method.TCP_IP, "tcp_ip.reset", "tls_handshake",
            addr(first.ip, first.port),
            (*map(show_tls, bad[:2] + sni_same[:1] + other_reached[:1]), *residual),
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
    ctx: Context, target: list[Handshake], bad: list[Handshake], kind: str, what: str
) -> Finding | None:
    """Every handshake for the SNI reset (or stalled) after its TCP connect succeeded, and
    nothing to compare with: no control handshake, no remote vantage point (OONI's
    ``control: {}``). The measurement alone shows a path that carries TCP to the address and
    kills TLS for the name; a server refusing the name itself is not ruled out, so the
    confidence is low and the explanation says so."""
    obs = ctx.obs
    compared = [
        h for h in obs.handshakes if h.role in (Tag.CONTROL_SNI, Tag.CONTROL_ADDRESS, "remote")
    ]
    if compared or ctx.facts.http.remote_fetch is not None or len(bad) < len(target):
        return None
    flagged = obs.flags is not None and bool(obs.flags & 4)
    confidence = ALONE_CONFIDENCE[kind] + (ALONE_FLAG_BONUS if flagged else 0.0)
    ips = sorted({h.ip or "an unrecorded address" for h in bad})
    first = bad[0]
    return Finding(
        Method.TLS, f"tls.{kind}", "tls_handshake",
        addr(first.ip, first.port) if first.ip else None,
        tuple(map(show_tls, bad)), confidence,
        f"TLS connection {what} for SNI {obs.domain} on {', '.join(ips)} (every handshake for "
        "that name) after the TCP connect succeeded; with no test-helper result and no "
        "control handshake this rests on the measurement alone (lower confidence: the server "
        "refusing the name is not ruled out)"
        + ("; OONI's x_blocking_flags say TLS too" if flagged else ""),
        "active" if kind == "reset" else "silent",
        connected=True,
    )  # fmt: skip


def _tls_interception(
    ctx: Context, target: list[Handshake], certs: list[Handshake]
) -> Finding | None:
    confirmed = [h for h in certs if h.ip in ctx.facts.dns.reference]
    valid_ips = {h.ip for h in target if h.failure is None}
    intercepted = [h for h in confirmed if h.ip not in valid_ips]
    # a control site that validates shows the trust store works: the fault is on the path
    trusted = [h for h in ctx.obs.handshakes if h.role == Tag.CONTROL_SITE and h.failure is None]
    if not intercepted or not trusted:
        ctx.notes.append(
            f"the certificate for {ctx.obs.domain} is invalid ({certs[0].failure}), but no "
            "DNS-confirmed address and validating control site show an interception"
        )
        return None
    h = intercepted[0]
    return Finding(
        Method.TLS, "tls.interception", "tls_handshake", addr(h.ip, h.port),
        (*map(show_tls, intercepted), ctx.cite_control(), show_tls(trusted[0])), 0.8,
        f"the TLS certificate for {ctx.obs.domain} on {h.ip} is not valid ({h.failure}) "
        "although the DNS control gives that address: the connection is intercepted",
        "active",
    )  # fmt: skip


def _remote_tls(ctx: Context, ips: set[str]) -> str | None:
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
        return show_tls(same[0])
    fetched = ctx.facts.http.remote_fetched
    return show_http(fetched) if fetched is not None and fetched.url.startswith("https") else None

"""Page, HTTP and throttling decisions: what the site's answer, or its speed, shows.

**Blockpages first** (before the TCP rule, which would call a censor that
drops the HTTPS port and answers plain HTTP itself "IP blackholing"): a
response (body or header) matching an HTTP fingerprint -> ``http.blockpage``,
the strongest evidence; every connect to the TLS port failed while plain HTTP
at a DNS-confirmed address answered with a page (2xx, not a redirect) that
no reference contradicts -> ``http.diff`` with the page's title and hash
(:mod:`probe.verdict.pages`; it rests on the TLS port's silence too, so it is
gated like a timeout).

**HTTP**: plain-HTTP requests reset after connecting while HTTPS to
the target works (or the remote vantage point fetched it) -> ``http.reset``
(OONI's http-failure); silent after connecting while the remote fetched it ->
``http.timeout``. ``http.diff`` is otherwise narrow, because the only control
body in a measurement is the HTTPS page of the same URL (or the remote's): a
plain-HTTP redirect to another site over plain HTTP, or a plain-HTTP page whose
title differs from the reference page's. Bodies are never compared, so a
truncated body can never make a diff.

**Throttling** (a shaper queues; a filter selects):

* the target download holds a rate plateau (:mod:`probe.verdict.throttling`:
  bytes flowing in both halves of its settled part at a similar pace, record
  granularity allowed for) >= 10x below the control download's rate over the
  same path; a control that is as slow is congestion, never throttling;
* or target steps time out on a *slow path*: a step to the target's addresses
  that succeeded took >= 0.9 s and >= 5x the slowest control step (no control
  step: no baseline, no claim);
* or a download that began and stalled until its timeout while the remote
  vantage point fetched the page.
* Silence is never throttling: a server that accepts and never speaks, or
  stalls after the ServerHello (TLS stalls for every name, zero bytes) is a
  timeout, judged by the TLS rules or left inconclusive.

The facts are :mod:`probe.verdict.facts_steps`'s.
"""

from __future__ import annotations

from probe.format.fields import parse_url
from probe.format.view import HttpExchange
from probe.format.vocab import Method, Tag
from probe.verdict.evidence import addr, show_connect, show_http, show_tls
from probe.verdict.facts import Context
from probe.verdict.outcome import Finding
from probe.verdict.pages import substitute_page

__all__ = ["http_stage", "page_stage", "throttle_stage"]


def page_stage(ctx: Context) -> Finding | None:
    """Before the TCP rule: a known blockpage, or a page served in the site's place.

    A censor that drops the HTTPS port and answers plain HTTP itself shows its
    hand in that answer: a fingerprint (the strongest evidence), or a page of
    its own at the DNS-confirmed address (:mod:`probe.verdict.pages`).
    """
    target = [x for x in ctx.obs.http if x.role == Tag.TARGET]
    for x, fp in ctx.facts.http.blockpages[:1]:
        return Finding(
            Method.HTTP, "http.blockpage", "http", addr(x.ip, x.port), (show_http(x),), 0.95,
            f"the response to {x.url}{f' from {x.ip}' if x.ip else ''} is a blockpage "
            f"({fp.name})",
            "positive", fp.name,
        )  # fmt: skip
    remote = ctx.facts.http.remote_fetched
    reference = remote if remote is not None and remote.status and remote.status < 300 else None
    port = ctx.facts.tcp.tls_port
    sub = substitute_page(ctx.obs.connects, target, port, ctx.facts.dns.reference, reference)
    if sub is None:
        return None
    x = sub.exchange
    unreachable = [c for c in ctx.obs.connects if c.role == Tag.TARGET and c.port == port]
    return Finding(
        Method.HTTP, "http.diff", "http", addr(x.ip, x.port),
        (sub.shown(), show_http(x), *map(show_connect, unreachable[:2]), ctx.cite_control()), 0.7,
        f"the plain-HTTP response for {x.url} from {x.ip} {sub.why}: a page served in the "
        "site's place",
        "silent",  # it rests on the HTTPS port's silence too: loss must not fake it
    )  # fmt: skip


def http_stage(ctx: Context) -> Finding | None:
    http = ctx.facts.http
    fetched = http.remote_fetched
    works = list(http.https_ok[:1]) or ([fetched] if fetched is not None else [])
    where = "HTTPS to it works" if http.https_ok else "the remote vantage point fetched it"
    reset, silent = http.plain_reset, http.plain_silent
    if reset and works:
        x = reset[0]
        return Finding(
            Method.HTTP, "http.reset", "http", addr(x.ip, x.port),
            (*map(show_http, reset), show_http(works[0])), 0.75,
            f"plain-HTTP requests to {ctx.obs.domain} are reset ({x.failure}) after the "
            f"request while {where}",
            "active",
        )  # fmt: skip
    if silent and fetched is not None:
        x = silent[0]
        return Finding(
            Method.HTTP, "http.timeout", "http", addr(x.ip, x.port),
            (*map(show_http, silent), show_http(fetched)), 0.6,
            f"plain-HTTP requests to {ctx.obs.domain} got no response (timeout) after "
            "connecting while the remote vantage point fetched it",
            "silent",
        )  # fmt: skip
    return _http_diff(ctx, list(http.plain), works)


def _http_diff(
    ctx: Context, plain: list[HttpExchange], works: list[HttpExchange]
) -> Finding | None:
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
            there = "HTTPS" if reference.role == Tag.TARGET else "the remote vantage point"
            why = f"is titled {x.title!r} where {there} shows {reference.title!r}"
        else:
            continue
        shown = (show_http(x),) + ((show_http(reference),) if reference else ())
        return Finding(
            Method.HTTP, "http.diff", "http", addr(x.ip, x.port), shown, 0.6,
            f"the plain-HTTP response for {x.url} from {x.ip} {why}", "active",
        )  # fmt: skip
    return None


def _same_site(host: str, domain: str) -> bool:
    """Same registrable-looking suffix (x.com ~ www.x.com ~ api.x.com)."""
    return host.rstrip(".").lower().split(".")[-2:] == domain.split(".")[-2:]


def throttle_stage(ctx: Context) -> Finding | None:
    return _steady_download(ctx) or _starved_path(ctx) or _cut_download(ctx)


def _steady_download(ctx: Context) -> Finding | None:
    """A target download held at a plateau far below the control's (:mod:`.throttling`)."""
    control_rate = ctx.facts.throughput.control_rate
    for t, shape in ctx.facts.throughput.slow_downloads:
        shown = f"{t.ref}: {shape.shown()} vs control {control_rate * 8 / 1000:.0f} kbit/s"
        if not shape.steady:
            ctx.notes.append(
                f"the download from {ctx.obs.domain} was slow but not steady ({shown})"
            )
            continue
        return Finding(
            Method.THROTTLING, "throttling", "throughput", t.ip or None, (shown,), 0.8,
            f"downloads from {ctx.obs.domain} hold a steady {shape.rate * 8 / 1000:.0f} kbit/s, "
            f"{control_rate / max(shape.rate, 1e-9):.0f}x slower than from the control site",
            "silent",
        )  # fmt: skip
    return None


def _cut_download(ctx: Context) -> Finding | None:
    """A download that began and stalled until timeout while the remote fetched the page."""
    fetched, cut = ctx.facts.http.remote_fetched, ctx.facts.throughput.cut
    if fetched is None or not cut:
        return None
    x = cut[0]
    return Finding(
        Method.THROTTLING, "throttling", "http", addr(x.ip, x.port),
        (show_http(x), show_http(fetched)), 0.5,
        f"the download of {x.url} began ({x.status}) and then stalled until it timed out while "
        "the remote vantage point fetched the page: it is throttled or cut",
        "silent",
    )  # fmt: skip


def _starved_path(ctx: Context) -> Finding | None:
    """Timeouts on a path that is measurably slow: a shaper's queue.

    A shaper queues: what gets through to the target's addresses is slow, what
    waits too long times out, whatever the name. Timeouts alone are not
    throttling: a server (or a filter) that accepts the connection and then
    stays silent, or stalls after the ServerHello, delivers no bytes at all,
    and throttling needs bytes flowing at a low rate.
    """
    obs, throughput = ctx.obs, ctx.facts.throughput
    stalled, fetches = throughput.stalled, throughput.fetch_timeouts
    slow = ctx.facts.tls.slow_path if stalled or fetches else None
    if slow is None:
        return None
    shown = tuple(map(show_tls, stalled[:2])) + tuple(map(show_http, fetches[:2]))
    return Finding(
        Method.THROTTLING, "throttling", "throughput", None, (slow, *shown), 0.6,
        f"the path to {obs.domain}'s addresses is slow ({slow.split(': ', 1)[1]}) and "
        f"{len(stalled) + len(fetches)} step(s) timed out: it is throttled",
        "silent",
    )  # fmt: skip

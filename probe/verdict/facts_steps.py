"""Transport and application facts: what the TCP, TLS and HTTP steps and the downloads showed.

Each fact is a named set of observations (serialised as their refs), computed
once from the observations view, never a decision:

* TCP: ``attempts`` (connects to the target's addresses, IPv6 on a network
  without IPv6 left out; only the TLS port's when every connect there failed
  while another port connects), ``failed``, and ``every_failed`` ("TCP connect
  failed on every address"); ``controls_ok``: control connects that worked;
* TLS: ``target`` (handshakes for the target's SNI that got past connect),
  ``resets`` ("TLS reset after the ClientHello": reset or EOF), ``stalls``
  (a handshake timeout), ``cert_invalid``; ``residual``: the delayed re-tests
  of the control SNI that failed; ``slow_path``: evidence that whatever reaches
  the target's addresses is slow (a shaper's queue), else None;
* HTTP: ``blockpages`` ("blockpage fingerprint matched": target responses
  matching a conclusive HTTP fingerprint), ``plain_reset`` / ``plain_silent``
  (every plain-HTTP request reset, or silent, after connecting), ``https_ok``;
  the remote vantage point's fetch (``remote_fetch``), when it worked
  (``remote_fetched``) or failed (``broken_elsewhere``);
* throughput: ``control_rate`` and ``slow_downloads`` ("download plateau": a
  target download whose settled rate is >= ``throttling.RATIO`` x
  below the control's, steady or not), ``cut`` (a download that began and then
  timed out), ``stalled`` (handshakes and fetches that timed out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from probe.format.view import Connect, Handshake, HttpExchange, Observations, Transfer
from probe.format.vocab import Operation, Tag
from probe.verdict.fingerprints import Fingerprint, Fingerprints
from probe.verdict.throttling import RATIO, Plateau, mean_rate, plateau

__all__ = [
    "CERT_INVALID",
    "REACHED",
    "RESET",
    "SLOW_FACTOR",
    "SLOW_SECONDS",
    "TIMEOUT",
    "HttpFacts",
    "TcpFacts",
    "ThroughputFacts",
    "TlsFacts",
    "http_facts",
    "kind",
    "no_ipv6",
    "tcp_facts",
    "throughput_facts",
    "tls_facts",
]

RESET: Final = frozenset({"connection_reset", "eof_error", "connection_aborted"})
TIMEOUT: Final = "generic_timeout_error"
CERT_INVALID: Final = frozenset({"ssl_unknown_authority", "ssl_invalid_hostname"})
# A handshake that ended in a certificate error reached the server: it answered.
REACHED: Final = frozenset({*CERT_INVALID, "ssl_invalid_certificate"})
NO_ROUTE: Final = frozenset(
    {"network_unreachable", "host_unreachable", "address_family_not_supported"}
)
SLOW_SECONDS: Final = 0.9  # just under the 1 s initial SYN RTO: a retransmit, or a deep queue
SLOW_FACTOR: Final = 5.0  # the target's path this many times slower than the controls'


def kind(failure: str | None) -> str | None:
    """ "reset" (someone ended it), "stall" (silence), or None."""
    if failure in RESET:
        return "reset"
    return "stall" if failure == TIMEOUT else None


def no_ipv6(ip: str, failure: str | None) -> bool:
    """An IPv6 attempt on a network without IPv6: says nothing about blocking."""
    return ":" in ip and failure in NO_ROUTE


@dataclass(frozen=True, slots=True)
class TcpFacts:
    attempts: tuple[Connect, ...]
    failed: tuple[Connect, ...]
    every_failed: bool
    tls_port: int  # where the probe speaks TLS
    only_tls_port: bool  # the TLS port's connects all failed while another port connects
    controls_ok: tuple[Connect, ...]


@dataclass(frozen=True, slots=True)
class TlsFacts:
    target: tuple[Handshake, ...]
    failed: tuple[Handshake, ...]
    resets: tuple[Handshake, ...]
    stalls: tuple[Handshake, ...]
    cert_invalid: tuple[Handshake, ...]
    residual: tuple[Handshake, ...]
    slow_path: str | None


@dataclass(frozen=True, slots=True)
class HttpFacts:
    blockpages: tuple[tuple[HttpExchange, Fingerprint], ...]
    plain: tuple[HttpExchange, ...]
    https_ok: tuple[HttpExchange, ...]
    plain_reset: tuple[HttpExchange, ...]  # every plain request reset after connecting
    plain_silent: tuple[HttpExchange, ...]  # every plain request silent after connecting
    remote_fetch: HttpExchange | None
    remote_fetched: HttpExchange | None
    broken_elsewhere: HttpExchange | None


@dataclass(frozen=True, slots=True)
class ThroughputFacts:
    control_rate: float  # bytes/s, the fastest control download's mean
    slow_downloads: tuple[tuple[Transfer, Plateau], ...]
    cut: tuple[HttpExchange, ...]
    stalled: tuple[Handshake, ...]
    fetch_timeouts: tuple[HttpExchange, ...]


def tcp_facts(obs: Observations) -> TcpFacts:
    attempts = [
        c
        for c in obs.connects
        if c.role in (Tag.TARGET, Tag.CONTROL_SNI) and not no_ipv6(c.ip, c.failure)
    ]
    # X is reached over HTTPS: every connect to the TLS port failing is blocking, even
    # when plain HTTP (port 80, a redirect to HTTPS) still connects.
    port = next((h.port for h in obs.handshakes), 443)
    https = [c for c in attempts if c.port == port]
    others_work = any(c.failure is None for c in attempts if c.port != port)
    only_https = bool(https) and all(c.failure for c in https) and others_work
    if only_https:
        attempts = https
    failed = [c for c in attempts if c.failure is not None]
    controls = [c for c in obs.connects if c.role in (Tag.CONTROL_SITE, Tag.CONTROL_ADDRESS)]
    return TcpFacts(
        tuple(attempts),
        tuple(failed),
        bool(attempts) and len(failed) == len(attempts),
        port,
        only_https,
        tuple(c for c in controls if c.failure is None),
    )


def tls_facts(obs: Observations) -> TlsFacts:
    target = [
        h
        for h in obs.handshakes
        if h.role == Tag.TARGET
        and h.failed_operation != Operation.CONNECT
        and h.server_name == obs.domain
    ]
    failed = [h for h in target if h.failure is not None]
    return TlsFacts(
        tuple(target),
        tuple(failed),
        tuple(h for h in failed if kind(h.failure) == "reset"),
        tuple(h for h in failed if kind(h.failure) == "stall"),
        tuple(h for h in failed if h.failure in CERT_INVALID),
        # a residual re-test refused at connect counts: residual blocking often drops the SYN
        tuple(
            h
            for h in obs.handshakes
            if h.role == Tag.RESIDUAL and h.failure and h.failure not in REACHED
        ),
        slow_path(obs),
    )


def http_facts(obs: Observations, fingerprints: Fingerprints) -> HttpFacts:
    target = [x for x in obs.http if x.role == Tag.TARGET]
    plain = [x for x in target if x.url.startswith("http://")]
    reset = [x for x in plain if x.failure in RESET and x.failed_operation != Operation.CONNECT]
    silent = [
        x
        for x in plain
        if x.failure == TIMEOUT and x.status is None and x.failed_operation != Operation.CONNECT
    ]
    remote = next((x for x in obs.http if x.role == "remote"), None)
    fetched = remote is not None and remote.failure is None and remote.status is not None
    blockpages = []
    for x in target:
        fp = fingerprints.match_http(x.body, x.headers) if x.status is not None else None
        if fp is not None and fp.conclusive:
            blockpages.append((x, fp))
    return HttpFacts(
        tuple(blockpages),
        tuple(plain),
        tuple(x for x in target if x.url.startswith("https://") and x.failure is None),
        tuple(reset) if reset and len(reset) == len(plain) else (),
        tuple(silent) if silent and len(silent) == len(plain) else (),
        remote,
        remote if fetched else None,
        remote if remote is not None and remote.failure is not None else None,
    )


def throughput_facts(obs: Observations) -> ThroughputFacts:
    controls = [t for t in obs.transfers if t.role == Tag.CONTROL_SITE]
    control_rate = max((mean_rate(t.samples) for t in controls), default=0.0)
    slow = []
    for t in obs.transfers if control_rate > 0 else ():
        shape = plateau(t.samples) if t.role == Tag.TARGET else None
        if shape is not None and shape.rate * RATIO <= control_rate:
            slow.append((t, shape))
    return ThroughputFacts(
        control_rate,
        tuple(slow),
        tuple(
            x
            for x in obs.http
            if x.role == Tag.TARGET and x.failure == TIMEOUT and x.status is not None
        ),
        tuple(
            h
            for h in obs.handshakes
            if h.role in (Tag.TARGET, Tag.CONTROL_SNI)
            and h.failed_operation != Operation.CONNECT
            and h.failure == TIMEOUT
        ),
        tuple(x for x in obs.http if x.role == Tag.TARGET and x.failure == TIMEOUT),
    )


def slow_path(obs: Observations) -> str | None:
    """Evidence that what reaches the target's addresses is slow, or None."""

    def durations(roles: tuple[Tag, ...]) -> list[float]:  # of the steps that succeeded
        connects = [c.duration for c in obs.connects if c.role in roles and c.failure is None]
        handshakes = [
            h.duration
            for h in obs.handshakes
            if h.role in roles and (h.failure is None or h.failure in REACHED)
        ]
        return connects + handshakes

    target = durations((Tag.TARGET, Tag.CONTROL_SNI))
    control = durations((Tag.CONTROL_SITE, Tag.CONTROL_ADDRESS))
    if not target or not control:
        return None  # no baseline: slow compared with nothing says nothing
    slowest, reference = max(target), max(control, default=0.0)
    if slowest < SLOW_SECONDS or slowest < SLOW_FACTOR * reference:
        return None
    return f"slow path: up to {slowest:.2f} s to the target, {reference:.2f} s to the controls"

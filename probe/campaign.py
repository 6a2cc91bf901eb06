"""One campaign: every target and control site measured once, concurrently.

For each domain the steps run in order (resolve -> connect -> TLS -> HTTP),
while all domains, resolvers and addresses run concurrently under one
semaphore (``measurement.concurrency``), at most ``concurrency / TARGET_OPERATIONS``
targets at a time (memory does not grow with the target list). Each step has its own timeout inside
its primitive, so a blackholed target costs at most its timeouts and delays
nothing else. A name's addresses are the resolvers' answers (never a record
owned off the query's CNAME chain), at most ``MAX_ADDRESSES_PER_FAMILY`` per
family: a resolver cannot make the probe connect wherever it likes.

The differential controls that separate the techniques are measured here:

* every resolver in the config (the system resolver is what the volunteer's
  apps use; DoH and public resolvers are the DNS control),
* the control SNI on each address of a target (``control_sni``), always
  before the target SNI there: SNI filtering resets the target name but not
  the control name,
* the target SNI on a control site's address (``control_address``): a dedicated
  address (``measurement.control_address``), else a control site's once every
  control site has been measured, so a censor that blocks an address after a
  trigger cannot poison the health check,
* a delayed re-test with the control SNI after a failed handshake
  (``residual``), when ``residual_delay`` > 0.

The campaign hands each domain's records to a ``sink`` as soon as they are complete
(:func:`stream`): a control site's when every control site is done, a target's when it
and the control sites are (its verdict needs them), so a caller can write it at once and
keep nothing: memory does not grow with the target list. It does not write, judge or print.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import Final, TypeVar
from urllib.parse import urlsplit

import httpx

from probe.config import Config, Resolver
from probe.net import dns, http, tcp, tls
from probe.records import Clock, DnsQuery, Observation, TcpConnect, TlsHandshake

__all__ = ["CampaignResult", "DomainResult", "Sink", "run", "stream"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DomainResult:
    domain: str
    role: str  # "target" or "control"
    observations: tuple[Observation, ...]
    t0: float
    t: float


@dataclass(frozen=True, slots=True)
class CampaignResult:
    start_time: float  # UNIX time when the campaign started
    domains: tuple[DomainResult, ...]
    runtime: float

    @property
    def targets(self) -> tuple[DomainResult, ...]:
        return tuple(d for d in self.domains if d.role == "target")

    @property
    def controls(self) -> tuple[DomainResult, ...]:
        return tuple(d for d in self.domains if d.role == "control")


#: Takes one domain's result (and, for a target, the control sites'), e.g. to write it.
Sink = Callable[[DomainResult, tuple[DomainResult, ...]], Awaitable[None]]


def _usable(address: str, versions: Iterable[int]) -> bool:
    """An address worth connecting to: the right family, and unicast.

    Bogons such as 127.0.0.1 are connected to on purpose: what answers there
    is evidence (a DNS hijack to localhost), and the verdict flags them anyway.
    """
    ip = ipaddress.ip_address(address)
    return ip.version in versions and not (ip.is_unspecified or ip.is_multicast)


#: The addresses of one name connected to, per family (OONI connects to a few too). A
#: resolver's answer is not bounded: one answering 4,000 A records made a campaign open
#: 96,024 connections to addresses of its choosing. The first ones in answer order are kept.
MAX_ADDRESSES_PER_FAMILY: Final = 4

#: The operations one target has in flight at once, about (a query per resolver and type).
TARGET_OPERATIONS: Final = 4


def addresses_of(queries: Iterable[DnsQuery], versions: Iterable[int]) -> tuple[str, ...]:
    """Distinct A/AAAA answers of all queries, in first-seen order, at most
    :data:`MAX_ADDRESSES_PER_FAMILY` per family; off-chain answers (``owner``) are skipped."""
    usable = [a for a in _candidates(queries) if _usable(a, tuple(versions))]
    kept: list[str] = []
    for version in (4, 6):
        family = [a for a in usable if ipaddress.ip_address(a).version == version]
        kept += family[:MAX_ADDRESSES_PER_FAMILY]
    return tuple(a for a in usable if a in kept)


def _candidates(queries: Iterable[DnsQuery]) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(
            a.value
            for q in queries
            for a in q.answers
            if a.answer_type in ("A", "AAAA") and a.owner is None
        )
    )


def _truncated(
    queries: tuple[DnsQuery, ...], kept: tuple[str, ...], versions: Iterable[int]
) -> tuple[DnsQuery, ...]:
    """The queries, each marked ``truncated`` if some of its usable addresses were not kept."""
    wanted = tuple(versions)
    return tuple(
        replace(q, truncated=True)
        if any(a not in kept for a in _candidates((q,)) if _usable(a, wanted))
        else q
        for q in queries
    )


class _Campaign:
    def __init__(self, config: Config, doh_client: httpx.AsyncClient) -> None:
        self.config = config
        self.clock = Clock()
        ca_bundle = config.measurement.ca_bundle or None
        self.context = tls.make_context(ca_bundle)
        # httpcore rewrites the ALPN list of the context it is given: HTTP gets its own.
        self.http_context = tls.make_context(ca_bundle, alpn=http.ALPN)
        self.doh_client = doh_client
        self.limit = asyncio.Semaphore(config.measurement.concurrency)
        # The targets measured at once. Each holds its records until it is written; with
        # every target started together, the first step of all of them runs before the second
        # of any, and a campaign held them all (169 MB RSS for 2,000 targets). A target keeps
        # about TARGET_OPERATIONS operations busy, so this still fills ``concurrency``.
        self.targets = asyncio.Semaphore(
            max(1, config.measurement.concurrency // TARGET_OPERATIONS)
        )
        self.ids = itertools.count(1)
        # The control sites' DNS, awaited by targets for their control_address handshake.
        self.control_dns: dict[str, asyncio.Task[tuple[DnsQuery, ...]]] = {}
        self.controls_done = asyncio.Event()  # every control site measured (see spare())
        self.control_sni: dict[str, asyncio.Future[TlsHandshake]] = {}  # by address

    async def step(self, call: Callable[[int], Awaitable[T]]) -> T:
        """Run one primitive under the concurrency limit with a fresh transaction id."""
        async with self.limit:
            return await call(next(self.ids))

    async def resolve(self, domain: str, role: tuple[str, ...]) -> tuple[DnsQuery, ...]:
        calls = [
            self.query(domain, r, qtype, role)
            for r in self.config.resolvers
            for qtype in (("ANY",) if r.engine == "system" else ("A", "AAAA"))
        ]
        results = await asyncio.gather(*calls)
        return tuple(q for group in results for q in group)

    async def query(
        self, domain: str, r: Resolver, qtype: str, role: tuple[str, ...]
    ) -> tuple[DnsQuery, ...]:
        timeout, clock = self.config.timeouts.dns, self.clock
        tags = (*role, "resolver_control") if r.control else role
        if r.engine == "udp":  # the one engine that can return several responses
            late = self.config.measurement.dns_late_window
            return await self.step(
                lambda tid: dns.query_udp(
                    domain, qtype, r.address, port=r.port, late_window=late,
                    clock=clock, timeout=timeout, transaction_id=tid, tags=tags,
                )
            )  # fmt: skip
        single: Callable[..., Awaitable[DnsQuery]]
        if r.engine == "system":
            single = partial(dns.lookup_system, domain)
        elif r.engine == "tcp":
            single = partial(dns.query_tcp, domain, qtype, r.address, port=r.port)
        else:
            single = partial(dns.query_doh, domain, qtype, r.url, client=self.doh_client)
        return (
            await self.step(
                lambda tid: single(clock=clock, timeout=timeout, transaction_id=tid, tags=tags)
            ),
        )

    async def connect(self, ip: str, port: int, tags: tuple[str, ...]) -> TcpConnect:
        return await self.step(
            lambda tid: tcp.connect(
                ip,
                port,
                clock=self.clock,
                timeout=self.config.timeouts.connect,
                transaction_id=tid,
                tags=tags,
            )
        )

    async def handshake(self, ip: str, sni: str, tags: tuple[str, ...]) -> TlsHandshake:
        m, t = self.config.measurement, self.config.timeouts
        return await self.step(
            lambda tid: tls.handshake(
                ip,
                m.https_port,
                sni,
                context=self.context,
                clock=self.clock,
                connect_timeout=t.connect,
                timeout=t.tls,
                transaction_id=tid,
                tags=tags,
                keep_der=m.keep_certificates,
            )
        )

    async def fetch(self, scheme: str, domain: str, ip: str, tags: tuple[str, ...]) -> Observation:
        m = self.config.measurement
        port = m.https_port if scheme == "https" else m.http_port
        default = 443 if scheme == "https" else 80
        url = f"{scheme}://{domain}/" if port == default else f"{scheme}://{domain}:{port}/"
        return await self.step(
            lambda tid: http.get(
                url,
                ip,
                context=self.http_context,
                clock=self.clock,
                timeout=self.config.timeouts.http,
                body_cap=m.body_cap,
                transaction_id=tid,
                tags=tags,
            )
        )

    async def measure(self, domain: str, role: str) -> DomainResult:
        t0 = self.clock.now()
        tag = ("target",) if role == "target" else ("control_site",)
        m = self.config.measurement
        queries = await (
            self.control_dns[domain] if role == "control" else self.resolve(domain, tag)
        )
        addresses = addresses_of(queries, m.ip_versions)
        queries = _truncated(queries, addresses, m.ip_versions)
        connects = await asyncio.gather(
            *(
                self.connect(ip, port, tag)
                for ip in addresses
                for port in (m.https_port, m.http_port)
            )
        )
        open_443 = [c.ip for c in connects if c.port == m.https_port and c.failure is None]
        open_80 = [c.ip for c in connects if c.port == m.http_port and c.failure is None]
        steps: list[Awaitable[Observation | tuple[Observation, ...]]] = []
        if role == "target":
            # the control SNI first, then the target SNI: a stateful censor that blocks an
            # address after a trigger must not fail the control with the target's doing
            steps += [self.sni_pair(ip, domain) for ip in open_443]
            steps += [self.handshake(ip, domain, ("control_address",)) for ip in await self.spare()]
        else:
            steps += [self.handshake(ip, domain, tag) for ip in open_443]
        if m.http:
            steps += [self.fetch("http", domain, ip, tag) for ip in open_80]
        observed = [
            o for r in await asyncio.gather(*steps) for o in (r if isinstance(r, tuple) else (r,))
        ]
        handshakes = [o for o in observed if isinstance(o, TlsHandshake) and o.tags == tag]
        working = [h.ip for h in handshakes if h.failure is None]
        if m.http:
            observed += await asyncio.gather(
                *(self.fetch("https", domain, ip, tag) for ip in working)
            )
        if m.throughput_path and working:
            observed.append(await self.download(domain, working[0], tag))
        if role == "target":
            observed += await self.residual(handshakes)
        return DomainResult(domain, role, (*queries, *connects, *observed), t0, self.clock.now())

    async def measure_controls(self, sink: Sink) -> tuple[DomainResult, ...]:
        try:
            controls = tuple(
                await asyncio.gather(*(self.measure(d, "control") for d in self.config.controls))
            )
        finally:
            self.controls_done.set()
        for c in controls:
            await sink(c, ())
        return controls

    async def measure_target(
        self, domain: str, controls: asyncio.Future[tuple[DomainResult, ...]], sink: Sink
    ) -> None:
        async with self.targets:
            result = await self.measure(domain, "target")
            await sink(result, await asyncio.shield(controls))

    async def download(self, domain: str, ip: str, tags: tuple[str, ...]) -> Observation:
        """A timed download of the configured fixed-size object (the throttling test)."""
        m = self.config.measurement
        url = f"https://{domain}:{m.https_port}{m.throughput_path}"
        return await self.step(
            lambda tid: http.download(
                url,
                ip,
                context=self.http_context,
                clock=self.clock,
                timeout=self.config.timeouts.throughput,
                max_bytes=m.throughput_bytes,
                transaction_id=tid,
                tags=tags,
            )
        )

    async def sni_pair(self, ip: str, domain: str) -> tuple[TlsHandshake, TlsHandshake]:
        """The control SNI on a target's address, then (only then) the target SNI.

        X's names share addresses: the control SNI runs once per address and every
        target there waits for it, so no target's SNI reaches an address before its
        control handshake (another target's trigger would fail it).
        """
        task = self.control_sni.get(ip)
        if task is None:
            task = asyncio.ensure_future(
                self.handshake(ip, self.config.control_sni, ("control_sni",))
            )
            self.control_sni[ip] = task
        control = await asyncio.shield(task)
        return control, await self.handshake(ip, domain, ("target",))

    async def spare(self) -> tuple[str, ...]:
        """Where the target SNI is sent as a control: never a control site while it is checked.

        A censor that blocks an address for a while after a target SNI (residual
        blocking) would fail the control site's own checks, and the health gate
        would call the network degraded. A dedicated ``control_address`` is never
        checked; without one, the first control site's address is used once
        every control site has been measured in this campaign.
        """
        dedicated = self.config.measurement.control_address
        if dedicated:
            return (dedicated,)
        await self.controls_done.wait()
        for task in self.control_dns.values():
            found = addresses_of(await task, self.config.measurement.ip_versions)
            if found:
                return found[:1]
        return ()

    async def residual(self, handshakes: list[TlsHandshake]) -> list[Observation]:
        """After a failed handshake, wait and retry the address with the control SNI."""
        delay = self.config.measurement.residual_delay
        failed = [h.ip for h in handshakes if h.failure is not None]
        if not failed or delay <= 0:
            return []
        await asyncio.sleep(delay)
        return list(
            await asyncio.gather(
                *(self.handshake(ip, self.config.control_sni, ("residual",)) for ip in failed)
            )
        )


async def stream(config: Config, sink: Sink) -> None:
    """Measure every target and control site of ``config`` once, each handed to ``sink``
    (with the control sites, for a target) as soon as it can be judged."""
    doh_context = tls.make_context(config.measurement.ca_bundle or None, alpn=http.ALPN)
    pins = {
        urlsplit(r.url).hostname or "": r.address
        for r in config.resolvers
        if r.engine == "doh" and r.address
    }
    async with dns.doh_client(doh_context, pins) as doh_client:
        campaign = _Campaign(config, doh_client)
        campaign.control_dns = {
            d: asyncio.create_task(campaign.resolve(d, ("control_site",))) for d in config.controls
        }
        controls = asyncio.ensure_future(campaign.measure_controls(sink))
        await asyncio.gather(
            controls, *(campaign.measure_target(d, controls, sink) for d in config.targets)
        )


async def run(config: Config) -> CampaignResult:
    """Measure every target and control site of ``config`` once, and keep every record
    (for tests and small campaigns; :func:`stream` keeps none)."""
    start = time.time()
    domains: list[DomainResult] = []

    async def keep(d: DomainResult, controls: tuple[DomainResult, ...]) -> None:
        domains.append(d)

    await stream(config, keep)
    order = {d: n for n, d in enumerate((*config.controls, *config.targets))}
    domains.sort(key=lambda d: order[d.domain])
    return CampaignResult(start, tuple(domains), round(time.time() - start, 6))

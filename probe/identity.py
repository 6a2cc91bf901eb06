"""Who and where the probe is: ASN, country, network name, resolver; and whether via a VPN.

Declared in the config (``[vantage] asn/cc/network_name``) or discovered over DNS when
``[vantage] identity_resolver`` is set, re-checked before every regular campaign (bursts
reuse it):

1. the public address: A ``myip.opendns.com`` (OpenDNS's resolvers answer with the
   asker's address), else TXT ``o-o.myaddr.l.google.com`` (Google's authoritative
   servers do), both asked of the identity resolver;
2. Team Cymru's DNS: TXT ``<reversed-ip>.origin.asn.cymru.com`` (``origin6`` for IPv6)
   -> ``"ASN | prefix | CC | registry | date"``, then TXT ``AS<n>.asn.cymru.com`` ->
   ``"ASN | CC | registry | date | HANDLE - Name, CC"``;
3. the resolver: TXT ``o-o.myaddr.l.google.com`` asked of the ISP's resolver (the
   config's first non-control udp/tcp resolver, else the system's) gives the address
   the resolver asks from, then steps 2 for its ASN and name. ``resolver_ip`` is kept
   only outside the probe's own ASN: inside it, it could be the volunteer's own
   machine (a local recursive resolver).

The public address lives in memory only (:attr:`Discovery.address`, for the
writer's ``scrub``): never logged, never written. The cache file
(``identity.json`` in the state dir) holds AS names by ASN and the last identity
without any address or prefix (the names, which come from DNS, are scrubbed of the address
in every form before they are written); a corrupt cache is ignored and rewritten. When
discovery fails the identity falls back to the declared values, then to a cache
younger than :data:`CACHE_TTL`, then to ``AS0``/``ZZ``, each time with a warning.
The primitives are :mod:`probe.net.dns`'s; every failure is a warning, never an exception.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from probe import store, vpn
from probe.config import Config, Vantage, is_ip
from probe.net import dns
from probe.records import Clock
from probe.scrub import Scrubber

__all__ = ["CACHE_FILE", "CACHE_TTL", "Discovery", "Identity", "discover", "isp_resolver"]

CACHE_FILE: Final = "identity.json"
CACHE_TTL: Final = 12 * 3600.0
MYIP: Final = "myip.opendns.com"
WHOAMI: Final = "o-o.myaddr.l.google.com"
RESOLV_CONF: Final = Path("/etc/resolv.conf")
_MAX_NAMES: Final = 32  # AS names kept in the cache


@dataclass(frozen=True, slots=True)
class Identity:
    asn: str = "AS0"
    cc: str = "ZZ"
    network_name: str = ""
    resolver_asn: str = "AS0"
    resolver_ip: str = ""
    resolver_network_name: str = ""
    source: str = "unknown"  # "discovered", "config", "cache" or "unknown"


@dataclass(frozen=True, slots=True)
class Discovery:
    identity: Identity
    address: str | None  # the public address: memory only, for scrubbing
    vpn: str | None  # why this looks like a VPN, or None
    warnings: tuple[str, ...]

    @property
    def scrub(self) -> frozenset[str]:
        return frozenset({self.address} if self.address else ())

    @property
    def annotations(self) -> dict[str, str]:
        return {"network_type": "vpn"} if self.vpn else {}


@dataclass(frozen=True, slots=True)
class _Origin:
    asn: str
    cc: str


class _Asker:
    """One DNS server, asked with :func:`probe.net.dns.query_udp`; answers as strings."""

    def __init__(self, server: str, port: int, timeout: float) -> None:
        self.server, self.port, self.timeout = server, port, timeout
        self.clock = Clock()
        self.ids = 0
        self.replied = False  # whether the server answered the last question at all

    async def values(self, name: str, qtype: str) -> list[str]:
        self.ids += 1
        record, *_ = await dns.query_udp(
            name,
            qtype,
            self.server,
            port=self.port,
            clock=self.clock,
            timeout=self.timeout,
            late_window=0.0,
            transaction_id=self.ids,
        )
        self.replied = record.rcode is not None
        return [a.value for a in record.answers if a.answer_type == qtype]

    async def address(self, name: str, qtype: str) -> str | None:
        """The first answer that is an IP address (a TXT may also carry an ECS subnet)."""
        for value in await self.values(name, qtype):
            if is_ip(value):
                return value
        return None

    async def origin(self, address: str) -> _Origin | None:
        ip = ipaddress.ip_address(address)
        reverse = ip.reverse_pointer.rsplit(".", 2)[0]  # without in-addr.arpa / ip6.arpa
        zone = "origin6" if ip.version == 6 else "origin"
        for value in await self.values(f"{reverse}.{zone}.asn.cymru.com", "TXT"):
            fields = [f.strip() for f in value.split("|")]  # ASN | prefix | CC | registry | date
            asns = fields[0].split()  # several when more than one AS originates the prefix
            if len(fields) >= 3 and asns and asns[0].isdigit():
                cc = fields[2].upper()
                return _Origin(f"AS{asns[0]}", cc if len(cc) == 2 and cc.isalpha() else "ZZ")
        return None

    async def as_name(self, asn: str, names: dict[str, str]) -> str:
        """The AS's name, from ``names`` (the cache) or Cymru; "" when unknown."""
        if asn not in names:
            for value in await self.values(f"{asn}.asn.cymru.com", "TXT"):
                fields = [f.strip() for f in value.split("|")]  # ASN | CC | reg | date | NAME
                if len(fields) >= 5:
                    names[asn] = _as_name(fields[4], fields[1])
                    break
        return names.get(asn, "")


def _as_name(text: str, cc: str) -> str:
    """``HANDLE - Name, CC`` -> ``Name``; ``HANDLE Name, CC`` -> ``HANDLE Name``."""
    name = text.split(" - ", 1)[1] if " - " in text else text
    return name.removesuffix(f", {cc}").strip()


def _read_cache(state: Path) -> dict[str, Any]:
    try:
        data = json.loads((state / CACHE_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(
    state: Path, identity: Identity, names: Mapping[str, str], now: float, address: str
) -> None:
    # The names come from DNS answers: a server could write the address into them, in any form.
    scrubber = Scrubber({address})
    kept = {asn: scrubber.text(n) for asn, n in list(names.items())[-_MAX_NAMES:]}
    data = {"checked": now, "identity": scrubber.measurement(asdict(identity)), "names": kept}
    store.atomic_write(state / CACHE_FILE, json.dumps(data, sort_keys=True).encode() + b"\n")


def _cached_identity(cache: Mapping[str, Any], now: float) -> Identity | None:
    checked, data = cache.get("checked"), cache.get("identity")
    if not isinstance(checked, (int, float)) or not isinstance(data, dict):
        return None
    if not 0 <= now - checked <= CACHE_TTL:
        return None
    try:
        return replace(Identity(**data), source="cache")
    except TypeError:  # a cache of another shape: ignore it
        return None


def isp_resolver(config: Config, resolv_conf: Path = RESOLV_CONF) -> tuple[str, int] | None:
    """The resolver the volunteer's apps use: a non-control udp/tcp one, else the system's."""
    for r in config.resolvers:
        if r.engine in ("udp", "tcp") and not r.control:
            return r.address, r.port
    if not any(r.engine == "system" for r in config.resolvers):
        return None
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and is_ip(parts[1].split("%")[0]):
            return parts[1].split("%")[0], 53
    return None


def _declared(vantage: Vantage) -> Identity:
    known = vantage.asn != "AS0"
    return Identity(
        vantage.asn, vantage.cc, vantage.network_name, source="config" if known else "unknown"
    )


async def discover(
    config: Config,
    state: Path,
    *,
    now: float | None = None,
    resolv_conf: Path = RESOLV_CONF,
    routes: Callable[[], str | None] = vpn.route_reason,
) -> Discovery:
    """The identity, the public address (memory only), VPN signs and warnings (module doc)."""
    now = time.time() if now is None else now
    identity, address, warnings = await _identity(config, state, now, resolv_conf)
    discovered = identity.asn if identity.source == "discovered" else "AS0"
    reason = routes() or vpn.asn_mismatch(config.vantage.asn, discovered)
    return Discovery(identity, address, reason, tuple(warnings))


async def _identity(
    config: Config, state: Path, now: float, resolv_conf: Path
) -> tuple[Identity, str | None, list[str]]:
    v, warnings = config.vantage, []
    declared = _declared(v)
    if not v.identity_resolver:
        if declared.source == "unknown":
            warnings.append(
                "the network is unknown (AS0/ZZ): set [vantage] asn and cc, "
                "or identity_resolver to discover them"
            )
        return declared, None, warnings
    cache = _read_cache(state)
    cached = cache.get("names")
    names = {str(k): str(n) for k, n in cached.items()} if isinstance(cached, dict) else {}
    asker = _Asker(v.identity_resolver, v.identity_port, config.timeouts.dns)
    address = await asker.address(MYIP, "A")
    if address is None and asker.replied:
        # A server that does not serve myip.opendns.com (Google's name servers refuse it).
        # Not one that stayed silent: if OpenDNS's resolver answered the whoami name, the
        # address would be the resolver's own, the one Google's servers see asking.
        address = await asker.address(WHOAMI, "TXT")
    origin = await asker.origin(address) if address else None
    if origin is None or address is None:  # (the second for mypy: no origin without address)
        fallback = declared if declared.source == "config" else _cached_identity(cache, now)
        fallback = fallback or declared
        step = "the public address" if address is None else "the network of the public address"
        warnings.append(
            f"could not discover {step} from {v.identity_resolver}; "
            f"using {fallback.source} values ({fallback.asn}/{fallback.cc})"
        )
        return fallback, address, warnings
    name = await asker.as_name(origin.asn, names)
    identity = Identity(origin.asn, origin.cc, name, source="discovered")
    resolver = isp_resolver(config, resolv_conf)
    if resolver is not None:
        seen = await _Asker(*resolver, config.timeouts.dns).address(WHOAMI, "TXT")
        where = await asker.origin(seen) if seen else None
        if seen and where:
            same = ipaddress.ip_address(seen) == ipaddress.ip_address(address)  # any spelling
            public = where.asn != origin.asn and not same
            resolver_name = await asker.as_name(where.asn, names)
            identity = replace(
                identity,
                resolver_asn=where.asn,
                resolver_ip=seen if public else "",
                resolver_network_name=resolver_name,
            )
    _write_cache(state, identity, names, now, address)
    return identity, address, warnings

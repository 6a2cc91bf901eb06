"""The types every censor technique shares (:class:`RouterContext`, :class:`Technique`,
:data:`DnsPolicy`), in a module of their own: the technique modules import them from here,
never from the package, whose ``__init__`` imports the techniques (no import cycle).
:mod:`probe.lab.censors` re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import dns.message

__all__ = ["DnsPolicy", "RouterContext", "Technique"]

#: A DNS policy of the ISP resolver: return a response to override the real
#: answer, or None to let the query through. Consulted in order.
DnsPolicy = Callable[[dns.message.Message], dns.message.Message | None]


@dataclass(slots=True)
class RouterContext:
    """What a technique needs to know about the router it runs in."""

    isp: str  # short ISP id from the scenario, e.g. "isp1"
    netns: str  # the router's namespace name (the thread already runs inside it)
    downlink: str  # router interface toward the vantage point
    uplink: str  # router interface toward the core ("the internet")
    vantage_prefixes: tuple[str, ...]  # the vantage point's networks, e.g. ("100.64.1.0/30",)
    addresses: Mapping[str, tuple[str, ...]]  # domain -> the lab addresses of its replica
    blockpage_address: str  # where DNS blockpage redirects point (a core-served address)
    seed: int  # for any randomness (lossy links), so runs are reproducible
    dns_policies: list[DnsPolicy] = field(default_factory=list)  # the ISP resolver reads these


class Technique(Protocol):
    """One censor technique in one router."""

    name: str

    async def start(self, ctx: RouterContext) -> None: ...

    async def set_active(self, domains: frozenset[str]) -> None: ...

    async def stop(self) -> None: ...

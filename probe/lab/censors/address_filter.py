"""``ip_blackhole`` and ``tcp_reset``: the router filters packets to the targets' addresses.

Both are one rule per address family in the router's forward chain, on the
lab addresses of the active domains (v4 and v6): ``drop`` makes the probe's
SYN vanish (``generic_timeout_error``), ``reject with tcp reset`` answers it
with an RST that seems to come from the server (the kernel reads an RST to
its SYN as ``connection_refused``). Only forwarded traffic is filtered: the
router's own resolver and the other ISPs are untouched, as with a real
ISP-level IP block.
"""

from __future__ import annotations

from probe.lab.censors._nft import FILTER_FORWARD, NftTable, addresses, match_daddr
from probe.lab.censors._types import RouterContext

__all__ = ["AddressFilter", "IpBlackhole", "TcpReset"]


class AddressFilter:
    """Apply one nft statement to forwarded packets bound to the active domains' addresses."""

    name: str
    statement: str

    def __init__(self) -> None:
        self._table = NftTable(self.name, {"forward": FILTER_FORWARD})
        self._ctx: RouterContext | None = None

    async def start(self, ctx: RouterContext) -> None:
        self._ctx = ctx
        await self._table.create()

    async def set_active(self, domains: frozenset[str]) -> None:
        if self._ctx is None:
            raise RuntimeError(f"{self.name}: set_active before start")
        targets = addresses(self._ctx, domains)
        await self._table.replace({"forward": match_daddr(targets, self.statement)})

    async def stop(self) -> None:
        await self._table.delete()


class IpBlackhole(AddressFilter):
    name = "ip_blackhole"
    statement = "drop"


class TcpReset(AddressFilter):
    name = "tcp_reset"
    statement = "meta l4proto tcp reject with tcp reset"

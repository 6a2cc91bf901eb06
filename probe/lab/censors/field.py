"""Censors seen in the field that the first lab lacked (issue 14), each a transparent proxy.

* ``residual``: SNI filtering with residual blocking. A ClientHello naming an active
  domain is reset, and its destination address is then blocked for *every* name (each
  ClientHello to it reset) for a penalty of 30-90 s drawn from the seed, as censors that
  punish a trigger do: the probe must send the control SNI before the target SNI and
  report ``tls.residual`` without poisoning its own controls.
* ``silent_server``: a broken site, not a censor: the active domains' servers accept the
  TCP connection on 443 and never send a byte. The probe must not call it blocked (no
  throttling, no TLS filtering: silence for every name at the site's own address).
* ``http_blockpage_unknown``: plain HTTP for an active Host answered with a page matching
  no known fingerprint while the HTTPS port of its addresses is dropped (nft): an HTTP
  blockpage to find by difference (``http.diff``), not IP blackholing.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Final

from probe.lab.censors._nft import FILTER_FORWARD, NftTable, addresses, match_daddr
from probe.lab.censors._redirect import RedirectCensor, RedirectProxy, reset, splice
from probe.lab.censors._types import RouterContext
from probe.lab.censors.clienthello import read_hello
from probe.lab.censors.http_blockpage import HttpBlockpage

__all__ = ["Residual", "SilentServer", "UnknownBlockpage"]

_TLS_PORT: Final = 443
_CHUNK: Final = 65536
_EARLY_NAT: Final = "type nat hook prerouting priority dstnat - 10; policy accept;"
PENALTY: Final = (30.0, 90.0)  # seconds an address stays blocked after a trigger


class Residual(RedirectCensor):
    name = "residual"

    def __init__(self) -> None:
        super().__init__(_TLS_PORT)
        self._blocked: dict[str, float] = {}  # address -> monotonic time its penalty ends
        self._penalty = PENALTY[0]

    async def start(self, ctx: RouterContext) -> None:
        self._penalty = random.Random(f"{ctx.seed}/{ctx.isp}/residual").uniform(*PENALTY)
        await super().start(ctx)

    async def set_active(self, domains: frozenset[str]) -> None:
        if not domains:
            self._blocked.clear()  # switched off: no penalty outlives the window
        await super().set_active(domains)

    async def handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        destination: tuple[str, int],
    ) -> None:
        if (read := await read_hello(reader)) is None:
            return
        hello, data = read
        now = time.monotonic()
        if hello.server_name in self.active:
            self._blocked[destination[0]] = now + self._penalty
            reset(writer)
        elif self._blocked.get(destination[0], 0.0) > now:
            reset(writer)  # residual: every name at a punished address
        else:
            await splice((reader, writer), destination, data)


class SilentServer:
    """Redirects only the silent sites' addresses, in a chain hooked before the other
    redirecting censors' (``dstnat - 10``): a router may also run an SNI proxy on 443,
    which then gets every other connection."""

    name = "silent_server"

    def __init__(self) -> None:
        self._proxy = RedirectProxy(self.name, _TLS_PORT, self._handle, _EARLY_NAT)
        self._ctx: RouterContext | None = None

    async def start(self, ctx: RouterContext) -> None:
        self._ctx = ctx
        await self._proxy.start(ctx)

    async def set_active(self, domains: frozenset[str]) -> None:
        assert self._ctx is not None
        targets = addresses(self._ctx, domains)
        await self._proxy.redirect(bool(targets), targets)

    async def stop(self) -> None:
        await self._proxy.stop()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: tuple[str, int]
    ) -> None:
        while await reader.read(_CHUNK):
            pass  # accepted, and never a byte back


class UnknownBlockpage(HttpBlockpage):
    name = "http_blockpage_unknown"

    def __init__(self) -> None:
        super().__init__("unknown")
        self._drop = NftTable(f"{self.name}_https", {"forward": FILTER_FORWARD})  # own table
        self._ctx: RouterContext | None = None

    async def start(self, ctx: RouterContext) -> None:
        self._ctx = ctx
        await self._drop.create()
        await super().start(ctx)

    async def set_active(self, domains: frozenset[str]) -> None:
        assert self._ctx is not None
        rules = match_daddr(addresses(self._ctx, domains), f"tcp dport {_TLS_PORT} drop")
        await self._drop.replace({"forward": rules})
        await super().set_active(domains)

    async def stop(self) -> None:
        await self._drop.delete()
        await super().stop()

"""``sni_reset`` and ``sni_stall``: an in-path box reads the SNI and kills the handshake.

While active, the router redirects the vantage point's port-443 connections
to a transparent proxy (:mod:`probe.lab.censors._redirect`). The proxy
accepts (the probe's TCP connect succeeds), reads the ClientHello, and if
its SNI is an active name it either resets the connection (``sni_reset``:
the probe sees ``connection_reset`` at the TLS step) or swallows everything
and never answers (``sni_stall``: ``generic_timeout_error``; the socket is
closed only when the client leaves or the technique stops). Any other SNI,
including the probe's control SNI on the target's own address, is spliced
to the original destination untouched. All port-443 traffic goes through
the box, whatever the address: the SNI is the only trigger, as in the
field (the probe's "target SNI to a control address" test relies on it).
"""

from __future__ import annotations

import asyncio
from typing import Final, Literal

from probe.lab.censors._redirect import RedirectCensor, reset, splice
from probe.lab.censors.clienthello import read_hello

__all__ = ["SniProxy"]

_TLS_PORT: Final = 443
_CHUNK: Final = 65536


class SniProxy(RedirectCensor):
    def __init__(self, name: Literal["sni_reset", "sni_stall"]) -> None:
        self.name = name
        super().__init__(_TLS_PORT)

    async def handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        destination: tuple[str, int],
    ) -> None:
        if (read := await read_hello(reader)) is None:
            return  # the client left before finishing its hello
        hello, data = read
        if hello.server_name not in self.active:
            await splice((reader, writer), destination, data)
        elif self.name == "sni_reset":
            reset(writer)
        else:
            while await reader.read(_CHUNK):
                pass  # sni_stall: swallow, never answer

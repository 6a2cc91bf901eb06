"""An in-path transparent TCP proxy in the router, fed by an nft redirect.

While its technique is active, nft redirects the vantage point's connections
to one port (``redirect`` in a ``nat prerouting`` chain) where this proxy
accepts them: the client believes it is talking to the server. The handler
reads what it needs (a ClientHello, a request head) and then either acts as
the censor or :func:`splice`-s the connection to the original destination
(``SO_ORIGINAL_DST`` from conntrack), connecting from the router itself.
While inactive there is no redirect at all, so the path is exactly the
uncensored one; only a connection's SYN is redirected, so a switch never moves a
connection already under way (:data:`_FIRST_SEGMENT`).

One listener per family on its own ephemeral port, each with its own rule,
because ``SO_ORIGINAL_DST`` must be asked in the socket's own family.
Every connection's task is tracked, so stop() leaves no socket open.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Final

from probe.lab.censors._nft import NAT_PREROUTING, NftTable
from probe.lab.censors._types import RouterContext

__all__ = [
    "Connection",
    "RedirectCensor",
    "RedirectProxy",
    "close",
    "original_destination",
    "reset",
    "splice",
]

_SO_ORIGINAL_DST: Final = 80  # linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST has the same value
_CONNECT_TIMEOUT: Final = 10.0
_CHUNK: Final = 65536
#: Only a connection's opening SYN is redirected. Without this, switching the redirect on
#: caught later segments of connections begun just before (issue 14: control-SNI handshakes
#: in flight at a periodic censor's switch): the router's kernel, holding no socket for them
#: at the proxy's port, answered RST, a reset of flows no censor would block. A switch is a
#: change of policy for new connections, never of the path of one already under way.
_FIRST_SEGMENT: Final = "tcp flags & (syn | ack) == syn"

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
#: handler(reader, writer, (original ip, original port)) -> None; the proxy closes the writer.
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, tuple[str, int]], Awaitable[None]]


class RedirectProxy:
    """Listeners in the router plus the nft table redirecting ``port`` to them."""

    def __init__(
        self, technique: str, port: int, handler: Handler, hook: str = NAT_PREROUTING
    ) -> None:
        self._port = port
        self._handler = handler
        self._table = NftTable(technique, {"prerouting": hook})
        self._servers: dict[str, asyncio.Server] = {}  # nft family -> listener
        self._tasks: set[asyncio.Task[None]] = set()
        self._downlink = ""

    async def start(self, ctx: RouterContext) -> None:
        self._downlink = ctx.downlink
        await self._table.create()
        for family, host in (("ipv4", "0.0.0.0"), ("ipv6", "::")):
            self._servers[family] = await asyncio.start_server(self._accept, host, 0)

    async def redirect(self, on: bool, only: tuple[str, ...] = ()) -> None:
        """Switch the redirect of new connections on or off (live ones carry on); ``only``:
        of connections to these addresses (default: to any)."""
        v4, v6 = [a for a in only if ":" not in a], [a for a in only if ":" in a]
        match = {
            "ipv4": f"ip daddr {{ {', '.join(v4)} }} " if v4 else "",
            "ipv6": f"ip6 daddr {{ {', '.join(v6)} }} " if v6 else "",
        }
        rules = [
            f'iifname "{self._downlink}" meta nfproto {family} {match[family]}'
            f"tcp dport {self._port} {_FIRST_SEGMENT} "
            f"redirect to :{server.sockets[0].getsockname()[1]}"
            for family, server in self._servers.items()
            if not only or match[family]
        ]
        await self._table.replace({"prerouting": rules if on else []})

    async def stop(self) -> None:
        await self._table.delete()
        for server in self._servers.values():
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers.values():
            await server.wait_closed()
        self._servers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # a stream handler always runs in a task
        self._tasks.add(task)
        try:
            await self._handler(reader, writer, original_destination(writer))
        except OSError:
            pass  # the client went away: nothing to censor any more
        finally:
            self._tasks.discard(task)
            await close(writer)


class RedirectCensor:
    """A technique that is a :class:`RedirectProxy` on ``port`` plus a set of active names.

    Subclasses implement :meth:`handle` (read what the censor reads, then act
    or :func:`splice`) and consult ``active``; the redirect is on while any
    name is active.
    """

    name: str

    def __init__(self, port: int) -> None:
        self.active: frozenset[str] = frozenset()
        self._proxy = RedirectProxy(self.name, port, self.handle)

    async def start(self, ctx: RouterContext) -> None:
        await self._proxy.start(ctx)

    async def set_active(self, domains: frozenset[str]) -> None:
        self.active = frozenset(d.lower().rstrip(".") for d in domains)
        await self._proxy.redirect(bool(self.active))

    async def stop(self) -> None:
        await self._proxy.stop()

    async def handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        destination: tuple[str, int],
    ) -> None:
        raise NotImplementedError


def original_destination(writer: asyncio.StreamWriter) -> tuple[str, int]:
    """Where the client meant to connect before the redirect (conntrack's record)."""
    sock = writer.get_extra_info("socket")
    if sock.family == socket.AF_INET6:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, _SO_ORIGINAL_DST, 28)  # sockaddr_in6
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack("!H", raw[2:4])[0]
    raw = sock.getsockopt(socket.SOL_IP, _SO_ORIGINAL_DST, 16)  # sockaddr_in
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack("!H", raw[2:4])[0]


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a censoring middlebox does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def close(writer: asyncio.StreamWriter) -> None:
    """Close gracefully (what was written is flushed first); a no-op after :func:`reset`."""
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def splice(client: Connection, destination: tuple[str, int], first: bytes) -> None:
    """Forward the connection to ``destination``, ``first`` (already read) included.

    An upstream that cannot be reached resets the client: its connect had
    already succeeded (the proxy answered it), so an RST is the closest
    signal to what it would have seen. A reset on either side resets both.
    """
    reader, writer = client
    try:
        async with asyncio.timeout(_CONNECT_TIMEOUT):
            up_reader, up_writer = await asyncio.open_connection(*destination)
    except OSError:
        reset(writer)
        return
    try:
        up_writer.write(first)
        async with asyncio.TaskGroup() as group:
            group.create_task(_pump(reader, up_writer))
            group.create_task(_pump(up_reader, writer))
    except* OSError:
        reset(writer)
        reset(up_writer)
    finally:
        await close(up_writer)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (half-close), so either side may finish first."""
    while chunk := await reader.read(_CHUNK):
        writer.write(chunk)
        await writer.drain()
    if not writer.is_closing():
        writer.write_eof()

"""A small asyncio DNS server (UDP, TCP and plain or TLS DoH) for tests and the lab.

Behaviour is a :data:`Handler`: given the parsed query and the client's
address it returns the replies to send, each after its own delay. That one
shape covers an honest resolver (one reply), silence (no reply), garbage or a
wrong ID (raw bytes) and on-path injection (a forged reply at once, the real
one later). :class:`Zone` is the honest resolver: a static map of names, plus
"whoami" TXT names whose value is computed from the client's address. A zone
is itself a handler.

Standalone, for a lab namespace::

    python -m probe.lab.dnsserver --listen ADDR --port 53 --zone FILE.json

with ``FILE.json`` like ``{"ttl": 300, "records": {"x.com": {"A": ["203.0.113.10"]}},
"whoami": ["o-o.myaddr.l.google.com"]}``. It prints ``listening ADDR PORT`` once both
UDP and TCP are bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.TXT import TXT

__all__ = ["DnsServer", "Handler", "Reply", "Zone", "client_address", "error", "serve", "serve_doh"]

Client = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Reply:
    delay: float  # seconds after the query arrived
    payload: bytes | dns.message.Message | None  # None: say nothing


Handler = Callable[[dns.message.Message, Client], Awaitable[Sequence[Reply]]]

_BIND_ATTEMPTS: Final = 8


def client_address(client: Client) -> list[str]:
    """The whoami value: the address the query came from (as a resolver sees its client)."""
    return [client[0]]


def error(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    """An empty response to ``query`` with ``rcode`` (SERVFAIL, REFUSED, ...)."""
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    return response


@dataclass(frozen=True, slots=True)
class Zone:
    """Names (lowercase, no final dot) -> {"A"|"AAAA"|"TXT"|"CNAME": [values]}; a handler."""

    records: Mapping[str, Mapping[str, Sequence[str]]]
    ttl: int = 300
    dynamic: Mapping[str, Callable[[Client], list[str]]] = field(default_factory=dict)

    def answer(self, query: dns.message.Message, client: Client) -> dns.message.Message:
        """NOERROR with the records, NOERROR empty if the name lacks the type, else NXDOMAIN."""
        response = dns.message.make_response(query)
        question = query.question[0]
        name, rdtype = question.name, question.rdtype
        for _ in range(8):  # follow CNAMEs inside the zone, bounded against loops
            key = name.to_text(omit_final_dot=True).lower()
            if key not in self.records and key not in self.dynamic:
                if not response.answer:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                break
            rtypes = self.records.get(key, {})
            values = list(rtypes.get(dns.rdatatype.to_text(rdtype), ()))
            if key in self.dynamic and rdtype == dns.rdatatype.TXT:
                values = self.dynamic[key](client)
            if not values and "CNAME" in rtypes:
                cname = rtypes["CNAME"][0]
                response.answer.append(self._rrset(name, dns.rdatatype.CNAME, [cname]))
                name = dns.name.from_text(cname)
                continue
            if values:
                response.answer.append(self._rrset(name, rdtype, values))
            break
        return response

    async def __call__(self, query: dns.message.Message, client: Client) -> Sequence[Reply]:
        return [Reply(0.0, self.answer(query, client))]

    def _rrset(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, values: Sequence[str]
    ) -> dns.rrset.RRset:
        return dns.rrset.from_rdata_list(name, self.ttl, [_rdata(rdtype, v) for v in values])

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Zone:
        """A zone from its JSON form (see the module docstring); whoami names echo the client."""
        records = data.get("records", {})
        whoami = data.get("whoami", [])
        ttl = data.get("ttl", 300)
        if not isinstance(records, dict) or not isinstance(whoami, list):
            raise ValueError("zone: 'records' must be an object and 'whoami' a list")
        if not isinstance(ttl, int):
            raise ValueError("zone: 'ttl' must be an integer")
        dynamic = {str(name).lower().rstrip("."): client_address for name in whoami}
        return cls({k.lower().rstrip("."): v for k, v in records.items()}, ttl, dynamic)


class DnsServer:
    """Listeners sharing one port; ``await close()`` or use as an async context manager."""

    def __init__(
        self,
        port: int,
        servers: list[asyncio.Server],
        transport: asyncio.DatagramTransport | None,
        tasks: set[asyncio.Task[None]],
    ) -> None:
        self.port = port
        self._servers = servers
        self._transport = transport
        self._tasks = tasks  # replies still pending and open TCP connections

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    async def __aenter__(self) -> DnsServer:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def serve(host: str, port: int, handler: Handler) -> DnsServer:
    """Serve DNS on UDP and TCP at ``host``; port 0 picks one free for both protocols."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    attempts = 1
    while True:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(handler, tasks), local_addr=(host, port)
        )
        bound = int(transport.get_extra_info("sockname")[1])
        try:
            tcp = await asyncio.start_server(
                lambda r, w: _serve_tcp(r, w, handler, tasks), host, bound
            )
        except OSError:  # the ephemeral UDP port is taken on TCP: try another one
            transport.close()
            if port != 0 or attempts == _BIND_ATTEMPTS:
                raise
            attempts += 1
            continue
        return DnsServer(bound, [tcp], transport, tasks)


async def serve_doh(
    host: str,
    port: int,
    handler: Handler,
    *,
    path: str = "/dns-query",
    tls: ssl.SSLContext | None = None,
) -> DnsServer:
    """Serve RFC 8484 POST DoH over HTTP/1.1 (TLS when ``tls`` is given).

    Another method or path gets 404, a body that is not a DNS query 400; when the
    handler says nothing the server hangs up without a response.
    """
    tasks: set[asyncio.Task[None]] = set()
    server = await asyncio.start_server(
        lambda r, w: _serve_http(r, w, handler, path, tasks), host, port, ssl=tls
    )
    return DnsServer(int(server.sockets[0].getsockname()[1]), [server], None, tasks)


def _rdata(rdtype: dns.rdatatype.RdataType, value: str) -> dns.rdata.Rdata:
    if rdtype == dns.rdatatype.TXT:  # raw text, split in the 255-byte strings TXT holds
        data = value.encode()
        return TXT(dns.rdataclass.IN, rdtype, [data[i : i + 255] for i in range(0, len(data), 255)])
    if rdtype == dns.rdatatype.CNAME:
        value = dns.name.from_text(value).to_text()  # absolute, as the wire needs
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, value)


def _wire(payload: bytes | dns.message.Message) -> bytes:
    return payload if isinstance(payload, bytes) else payload.to_wire()


async def _replies(
    handler: Handler, wire: bytes, client: Client
) -> list[tuple[float, bytes]] | None:
    """The (delay, bytes) to send, in time order; None when ``wire`` is not a DNS query."""
    try:
        query = dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError):
        return None
    replies = await handler(query, client)
    return sorted((r.delay, _wire(r.payload)) for r in replies if r.payload is not None)


async def _send_in_time(replies: list[tuple[float, bytes]], send: Callable[[bytes], None]) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for delay, wire in replies:
        await asyncio.sleep(max(0.0, start + delay - loop.time()))
        send(wire)


def _track(tasks: set[asyncio.Task[None]]) -> None:
    task = asyncio.current_task()
    assert task is not None
    tasks.add(task)
    task.add_done_callback(tasks.discard)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler, tasks: set[asyncio.Task[None]]) -> None:
        self._handler = handler
        self._tasks = tasks
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A DatagramTransport by contract (CPython 3.11's class does not inherit it).
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        task = asyncio.ensure_future(self._answer(data, (str(addr[0]), int(addr[1]))))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, data: bytes, client: Client) -> None:
        replies = await _replies(self._handler, data, client)
        transport = self._transport
        if replies is not None and transport is not None:
            await _send_in_time(replies, lambda wire: transport.sendto(wire, client))


async def _serve_tcp(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    tasks: set[asyncio.Task[None]],
) -> None:
    _track(tasks)
    peer = writer.get_extra_info("peername")
    client = (str(peer[0]), int(peer[1]))
    try:
        while True:  # RFC 7766: several queries may share a connection
            size = int.from_bytes(await reader.readexactly(2), "big")
            replies = await _replies(handler, await reader.readexactly(size), client)
            if replies is None:
                break
            await _send_in_time(replies, lambda w: writer.write(len(w).to_bytes(2, "big") + w))
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
        # The client went away, or close() cancelled us: end quietly, since on 3.11 the
        # stream machinery logs an error for a connection task that ends cancelled.
        pass
    finally:
        writer.close()


async def _serve_http(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    path: str,
    tasks: set[asyncio.Task[None]],
) -> None:
    """One POST per connection (``Connection: close``): all a DoH test endpoint needs."""
    _track(tasks)
    peer = writer.get_extra_info("peername")
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head.split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method != "POST" or target != path:
            status, content = "404 Not Found", b""
        else:
            replies = await _replies(handler, body, (str(peer[0]), int(peer[1])))
            if replies is None:
                status, content = "400 Bad Request", b""
            elif not replies:
                return  # the handler says nothing: hang up (finally closes)
            else:
                await asyncio.sleep(replies[0][0])  # the earliest reply: HTTP carries one
                status, content = "200 OK", replies[0][1]
        writer.write(
            f"HTTP/1.1 {status}\r\ncontent-type: application/dns-message\r\n"
            f"content-length: {len(content)}\r\nconnection: close\r\n\r\n".encode()
            + content
        )
        await writer.drain()
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass  # a broken request: just hang up
    except asyncio.CancelledError:
        pass  # close() cancelled us: end quietly (see _serve_tcp)
    finally:
        writer.close()


async def _run(listen: str, port: int, zone: Zone) -> None:
    server = await serve(listen, port, zone)
    print(f"listening {listen} {server.port}", flush=True)
    async with server:
        await asyncio.Event().wait()  # until the lab kills the process


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m probe.lab.dnsserver", description=__doc__)
    parser.add_argument("--listen", required=True, help="address to bind (IPv4 or IPv6)")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--zone", type=Path, required=True, help="zone as JSON")
    args = parser.parse_args(argv)
    zone = Zone.from_json(json.loads(args.zone.read_text(encoding="utf-8")))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args.listen, args.port, zone))


if __name__ == "__main__":
    main()

"""A corpus of hostile servers' behaviours, for the hostile suite (tests/test_hostile.py) and
the DoH tests: DNS handlers (:mod:`probe.lab.dnsserver`) and HTTP handlers (tests/servers.py)
that send what no honest server would: garbage, floods, bombs, endless or dripping bodies.

Each DNS handler misbehaves for one name (``VICTIM``) and answers every other name from an
honest zone, so a campaign's control sites stay healthy and its verdict has something to
compare with.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import zlib
from collections.abc import Callable, Sequence

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
from servers import Handler

from probe.lab.dnsserver import Handler as DnsHandler
from probe.lab.dnsserver import Reply, Zone

__all__ = [
    "GIB",
    "dns_flood",
    "dns_garbage",
    "dns_injector",
    "dns_truncated",
    "dns_wrong_id",
    "doh_zone",
    "endless",
    "endless_chunked",
    "graceful",
    "gzip_bomb",
    "gzip_bomb_response",
    "huge_headers",
    "one_gib",
    "redirect_loop",
    "trickle",
]

GIB = 1 << 30
_GIB_ZEROS_CRC32 = 0x5B64C2B0  # zlib.crc32(bytes(GIB)): a constant, computing it takes a second
VICTIM = dns.name.from_text("x.com")


def gzip_bomb() -> bytes:
    """About 1 MB of gzip that inflates to 1 GiB of zeros, built in milliseconds.

    After a full flush deflate starts afresh, so every MiB of zeros compresses to
    the same bytes: one block, repeated.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: we write the gzip frame
    block = deflate.compress(bytes(1 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", _GIB_ZEROS_CRC32, GIB & 0xFFFFFFFF)
    return header + block * (GIB >> 20) + deflate.flush() + trailer


def graceful(handler: Handler) -> Handler:
    """``handler``, then a FIN and a wait for the client's: closing with a request body
    unread would send an RST, which could discard the response before it is read."""

    def wrapped(request: bytes, conn: socket.socket) -> None:
        handler(request, conn)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass

    return wrapped


def endless(head: bytes, piece: bytes) -> Handler:
    """Send ``head``, then ``piece`` until the client goes away."""

    def handler(_request: bytes, conn: socket.socket) -> None:
        conn.sendall(head)
        while True:
            conn.sendall(piece)

    return handler


def one_gib() -> Handler:
    """A body that says it is 1 GiB long, and is (until the client goes away)."""
    return endless(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % GIB, bytes(65536))


def endless_chunked() -> Handler:
    """A chunked body with no last chunk."""
    chunk = bytes(4096)
    return endless(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"%x\r\n%s\r\n" % (len(chunk), chunk),
    )


def gzip_bomb_response(content_type: str = "text/html") -> Handler:
    """A 200 whose ~1 MB body inflates to 1 GiB (``Content-Encoding: gzip``)."""
    bomb = gzip_bomb()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(bomb)}\r\n\r\n"
    ).encode()

    def handler(_request: bytes, conn: socket.socket) -> None:
        conn.sendall(head + bomb)

    return handler


def trickle(every: float = 1.0) -> Handler:
    """A prompt head, then the body one byte every ``every`` seconds (1 byte/s): each read
    is quick, the whole never ends in time."""

    def handler(_request: bytes, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            time.sleep(every)
            conn.sendall(b"x")

    return handler


def huge_headers() -> Handler:
    """A status line, then header lines without end."""
    return endless(b"HTTP/1.1 200 OK\r\n", b"X-Filler: " + b"a" * 8000 + b"\r\n")


def redirect_loop(location: str) -> Handler:
    """A redirect to ``location``, which redirects to itself, forever."""
    head = f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"

    def handler(_request: bytes, conn: socket.socket) -> None:
        conn.sendall(head.encode())

    return handler


def doh_zone(zone: Zone) -> Handler:
    """An honest DoH resolver (RFC 8484 POST) answering from ``zone``: the secure DNS control
    the verdict judges a hostile resolver's answers against."""

    def handler(request: bytes, conn: socket.socket) -> None:
        head, _, body = request.partition(b"\r\n\r\n")
        fields = (line.partition(b":") for line in head.split(b"\r\n")[1:])
        length = next((int(v) for k, _, v in fields if k.strip().lower() == b"content-length"), 0)
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                return
            body += chunk
        wire = zone.answer(dns.message.from_wire(body[:length]), ("127.0.0.1", 0)).to_wire()
        ok = "HTTP/1.1 200 OK\r\nContent-Type: application/dns-message\r\n"
        conn.sendall(f"{ok}Content-Length: {len(wire)}\r\n\r\n".encode() + wire)

    return graceful(handler)


def _hostile(zone: Zone, misbehave: Callable[[dns.message.Message], Sequence[Reply]]) -> DnsHandler:
    """``misbehave`` for the victim's questions, ``zone`` for the others."""

    async def handler(query: dns.message.Message, client: tuple[str, int]) -> Sequence[Reply]:
        if query.question and query.question[0].name == VICTIM:
            return misbehave(query)
        return await zone(query, client)

    return handler


def dns_garbage(zone: Zone) -> DnsHandler:
    """Random bytes instead of an answer."""
    return _hostile(zone, lambda _query: [Reply(0.0, os.urandom(512))])


def dns_wrong_id(zone: Zone) -> DnsHandler:
    """The right answer under another message ID."""

    def misbehave(query: dns.message.Message) -> Sequence[Reply]:
        response = zone.answer(query, ("127.0.0.1", 0))
        response.id = (query.id + 1) & 0xFFFF
        return [Reply(0.0, response)]

    return _hostile(zone, misbehave)


def dns_truncated(zone: Zone) -> DnsHandler:
    """The right answer cut in the middle of its answer section."""

    def misbehave(query: dns.message.Message) -> Sequence[Reply]:
        wire = zone.answer(query, ("127.0.0.1", 0)).to_wire()
        return [Reply(0.0, wire[: len(wire) - 7])]

    return _hostile(zone, misbehave)


def dns_injector(zone: Zone, forged: str) -> DnsHandler:
    """An on-path injector: a forged A record at once, the resolver's own answer later."""

    def misbehave(query: dns.message.Message) -> Sequence[Reply]:
        real = zone.answer(query, ("127.0.0.1", 0))
        fake = dns.message.make_response(query)
        if query.question[0].rdtype == dns.rdatatype.A:
            fake.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", forged))
        return [Reply(0.0, fake), Reply(0.02, real)]

    return _hostile(zone, misbehave)


def dns_flood(zone: Zone, count: int = 4000) -> DnsHandler:
    """``count`` A records in one answer (built once: dnspython takes a while over it)."""
    flood = dns.message.make_query(VICTIM, "A")
    response = dns.message.make_response(flood)
    addresses = ("127.0.0.2", *(f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count - 1)))
    response.answer.append(dns.rrset.from_text_list(VICTIM, 60, "IN", "A", list(addresses)))
    wire = response.to_wire()

    def misbehave(query: dns.message.Message) -> Sequence[Reply]:
        if query.question[0].rdtype == dns.rdatatype.A:
            return [Reply(0.0, query.id.to_bytes(2, "big") + wire[2:])]
        return [Reply(0.0, zone.answer(query, ("127.0.0.1", 0)))]

    return _hostile(zone, misbehave)

"""Find the SNI in the first bytes a TLS client sends (RFC 8446 4.1.2, RFC 6066 3).

A censor sees the ClientHello as it arrives: possibly split over several
reads (TCP segments) and, rarely, over several TLS records. :func:`parse_hello`
reassembles the handshake message from consecutive handshake records and
says whether more bytes are needed (None), or what the hello names.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

__all__ = ["Hello", "parse_hello", "read_hello"]

_HANDSHAKE: Final = 22
_CLIENT_HELLO: Final = 1
_SERVER_NAME: Final = 0
_HOST_NAME: Final = 0
_RECORD_HEADER: Final = 5
_MAX_HELLO: Final = 1 << 16  # a larger "hello" is not one a client would send


@dataclass(frozen=True, slots=True)
class Hello:
    server_name: str | None  # lowercase; None: no SNI, or not a TLS ClientHello at all


async def read_hello(reader: asyncio.StreamReader) -> tuple[Hello, bytes] | None:
    """Read a connection's ClientHello: what it names and the bytes read (to forward);
    None if the client left before finishing it."""
    data = b""
    while (hello := parse_hello(data)) is None:
        chunk = await reader.read(_MAX_HELLO)
        if not chunk:
            return None
        data += chunk
    return hello, data


def parse_hello(data: bytes) -> Hello | None:
    """What the ClientHello at the start of ``data`` names; None if it is still incomplete."""
    message = bytearray()
    pos = 0
    while len(message) < 4 or len(message) < 4 + int.from_bytes(message[1:4], "big"):
        if len(data) < pos + _RECORD_HEADER:
            return None
        if data[pos] != _HANDSHAKE or (message and message[0] != _CLIENT_HELLO):
            return Hello(None)
        size = int.from_bytes(data[pos + 3 : pos + 5], "big")
        message += data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + size]
        if len(data) < pos + _RECORD_HEADER + size:  # the record itself is cut
            if len(message) >= 4 and int.from_bytes(message[1:4], "big") > _MAX_HELLO:
                return Hello(None)
            return None
        pos += _RECORD_HEADER + size
    if message[0] != _CLIENT_HELLO:
        return Hello(None)
    try:
        return Hello(_server_name(bytes(message[4 : 4 + int.from_bytes(message[1:4], "big")])))
    except IndexError:  # a truncated or garbled body: treat like a hello without SNI
        return Hello(None)


def _server_name(body: bytes) -> str | None:
    """The host_name of the server_name extension in a ClientHello body, if any."""

    def u16(at: int) -> int:
        return int.from_bytes(body[at : at + 2], "big")

    pos = 2 + 32  # legacy_version, random
    pos += 1 + body[pos]  # legacy_session_id
    pos += 2 + u16(pos)  # cipher_suites
    pos += 1 + body[pos]  # legacy_compression_methods
    end = min(len(body), pos + 2 + u16(pos))
    pos += 2
    while pos + 4 <= end:
        kind, size = u16(pos), u16(pos + 2)
        if kind == _SERVER_NAME and body[pos + 6] == _HOST_NAME:  # the list's first entry
            name_size = u16(pos + 7)
            return body[pos + 9 : pos + 9 + name_size].decode("ascii", "replace").lower()
        pos += 4 + size
    return None

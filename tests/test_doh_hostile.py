"""A hostile DoH server cannot blow the probe's memory or its deadline.

Real loopback servers (tests/servers.py) answer the probe's own DoH client
with a gzip bomb, an oversized or endless body, or a one-byte-at-a-time drip.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import socket
import struct
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import httpx

from probe.lab.pki import Authority
from probe.net.dns import doh_client, query_doh
from probe.net.tls import make_context
from probe.records import Clock, DnsQuery
from tests.servers import Behaviour, Handler, HttpServer, TlsServer, fixed_response

_GIB = 1 << 30
_GIB_ZEROS_CRC32 = 0x5B64C2B0  # zlib.crc32(bytes(_GIB)): a constant, computing it takes a second
TIMEOUT = 1.0


def _gzip_bomb() -> bytes:
    """About 1 MB of gzip that inflates to 1 GiB of zeros, built in milliseconds.

    After a full flush deflate starts afresh, so every MiB of zeros compresses to
    the same bytes: one block, repeated.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: we write the gzip frame
    block = deflate.compress(bytes(1 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", _GIB_ZEROS_CRC32, _GIB & 0xFFFFFFFF)
    return header + block * (_GIB >> 20) + deflate.flush() + trailer


def _graceful(handler: Handler) -> Handler:
    """``handler``, then a FIN and a wait for the client's: closing with the POST body
    unread would send an RST, which could discard the response before it is read."""

    def graceful(request: bytes, conn: socket.socket) -> None:
        handler(request, conn)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass

    return graceful


def _endless(head: bytes, piece: bytes) -> Handler:
    """Send ``head``, then ``piece`` until the client goes away."""

    def handler(_request: bytes, conn: socket.socket) -> None:
        conn.sendall(head)
        while True:
            conn.sendall(piece)

    return handler


def _trickle(_request: bytes, conn: socket.socket) -> None:
    """A prompt head, then the body one byte every 0.2 s: each read is quick, the whole is not."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
    for _ in range(40):
        time.sleep(0.2)
        conn.sendall(b"\0")


def _ask_http(handler: Handler) -> tuple[DnsQuery, float]:
    async def main() -> DnsQuery:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await query_doh(
                "x.com", "A", f"http://127.0.0.1:{server.port}/dns-query", client=client,
                clock=Clock(), timeout=TIMEOUT, transaction_id=1,
            )  # fmt: skip

    with HttpServer(handler) as server:
        start = time.monotonic()
        record = asyncio.run(main())
        return record, time.monotonic() - start


def _ask_https(
    handler: Handler, tmp_path: Path, behaviour: Behaviour = "ok"
) -> tuple[DnsQuery, float]:
    """Through the probe's own client, pinned to loopback, over TLS."""
    authority = Authority.create()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(authority.cert_pem)

    async def main() -> DnsQuery:
        pins = {"dns.test": "127.0.0.1"}
        async with doh_client(make_context(str(ca_file), alpn=("http/1.1",)), pins) as client:
            return await query_doh(
                "x.com", "A", f"https://dns.test:{server.port}/dns-query", client=client,
                clock=Clock(), timeout=TIMEOUT, transaction_id=1,
            )  # fmt: skip

    with TlsServer(authority.issue(["dns.test"]), behaviour, handler=handler) as server:
        start = time.monotonic()
        record = asyncio.run(main())
        return record, time.monotonic() - start


def test_a_gzip_bomb_is_refused_not_inflated(tmp_path: Path) -> None:
    bomb = _gzip_bomb()
    headers = [("Content-Type", "application/dns-message"), ("Content-Encoding", "gzip")]
    handler = _graceful(fixed_response(bomb, headers=headers))
    tracemalloc.start()
    try:
        record, elapsed = _ask_https(handler, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (record.failure, record.rcode, record.raw_response) == (
        "dns_server_misbehaving", None, None,
    )  # fmt: skip
    assert peak < 50 * 2**20  # the bomb itself is 1 MB, allocated before tracing
    assert elapsed < TIMEOUT * 1.1


def test_a_small_compressed_body_is_refused_too() -> None:
    """Under the cap, gzip would still be inflated by a decoder: refused, not parsed
    (a parsed body would be kept as ``raw_response``)."""
    headers = [("Content-Type", "application/dns-message"), ("Content-Encoding", "gzip")]
    record, _ = _ask_http(_graceful(fixed_response(gzip.compress(bytes(1 << 20)), headers=headers)))
    assert (record.failure, record.raw_response) == ("dns_server_misbehaving", None)


def test_a_body_longer_than_a_dns_message_is_refused() -> None:
    declared = _endless(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % _GIB, bytes(65536))
    record, elapsed = _ask_http(declared)
    assert (record.failure, record.raw_response) == ("dns_server_misbehaving", None)
    assert elapsed < TIMEOUT * 1.1


def test_an_endless_chunked_body_is_cut_at_64_kib() -> None:
    chunk = bytes(4096)
    chunked = _endless(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"%x\r\n%s\r\n" % (len(chunk), chunk),
    )
    record, elapsed = _ask_http(chunked)
    assert (record.failure, record.raw_response) == ("dns_server_misbehaving", None)
    assert elapsed < TIMEOUT * 1.1


def test_a_trickle_meets_one_deadline_for_the_whole_exchange(tmp_path: Path) -> None:
    record, elapsed = _ask_https(_trickle, tmp_path)
    assert (record.failure, record.raw_response) == ("generic_timeout_error", None)
    assert TIMEOUT <= elapsed < TIMEOUT * 1.1


def test_a_stalled_handshake_meets_the_deadline_and_its_socket_is_closed(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        record, elapsed = _ask_https(fixed_response(), tmp_path, "stall")
        gc.collect()  # an unclosed transport says so when collected
    assert (record.failure, record.raw_response) == ("generic_timeout_error", None)
    assert TIMEOUT <= elapsed < TIMEOUT * 1.1
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []

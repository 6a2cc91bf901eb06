"""A hostile DoH server cannot blow the probe's memory or its deadline.

Real loopback servers (tests/servers.py) answer the probe's own DoH client
with a gzip bomb, an oversized or endless body, or a one-byte-at-a-time drip.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import time
import tracemalloc
import warnings
from pathlib import Path

import httpx
from hostile import endless_chunked, graceful, gzip_bomb, one_gib, trickle
from servers import Behaviour, Handler, HttpServer, TlsServer, fixed_response

from probe.lab.pki import Authority
from probe.net.dns import doh_client, query_doh
from probe.net.tls import make_context
from probe.records import Clock, DnsQuery

TIMEOUT = 1.0


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
    bomb = gzip_bomb()
    headers = [("Content-Type", "application/dns-message"), ("Content-Encoding", "gzip")]
    handler = graceful(fixed_response(bomb, headers=headers))
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
    record, _ = _ask_http(graceful(fixed_response(gzip.compress(bytes(1 << 20)), headers=headers)))
    assert (record.failure, record.raw_response) == ("dns_server_misbehaving", None)


def test_a_body_longer_than_a_dns_message_is_refused() -> None:
    record, elapsed = _ask_http(one_gib())
    assert (record.failure, record.raw_response) == ("dns_server_misbehaving", None)
    assert elapsed < TIMEOUT * 1.1


def test_an_endless_chunked_body_is_cut_at_64_kib() -> None:
    record, elapsed = _ask_http(endless_chunked())
    assert (record.failure, record.raw_response) == ("dns_server_misbehaving", None)
    assert elapsed < TIMEOUT * 1.1


def test_a_trickle_meets_one_deadline_for_the_whole_exchange(tmp_path: Path) -> None:
    record, elapsed = _ask_https(trickle(0.2), tmp_path)
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

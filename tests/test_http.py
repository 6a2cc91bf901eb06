"""probe.net.http against real loopback servers: what the record says for each outcome.

The servers come from ``tests/servers.py``; the handlers here script the
response byte by byte (a dripping body, a 1 GB stream, a close without answer,
a paced download).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import itertools
import socket
import ssl
import time
import tracemalloc
import warnings
from pathlib import Path

import pytest
from servers import (
    Handler,
    HttpServer,
    StallServer,
    TlsServer,
    fixed_response,
    refusing_port,
    reset,
)

from probe.format import writer
from probe.lab.pki import Authority
from probe.net.http import ALPN, download, get
from probe.net.tls import make_context
from probe.records import Clock, HttpRequest, Throughput

BLOCKPAGE = (
    b"<html><head><title>Site Blocked</title></head><body>This URL has been blocked under "
    b"instructions of a competent authority. The site you are trying to access contains "
    b"content that is prohibited for viewership from within Pakistan.</body></html>"
)
GIB = 1 << 30
CHUNK = 1 << 16


def head(length: int, status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {length}\r\n\r\n".encode()


def stream(total: int, chunk: int, pause: float = 0.0) -> Handler:
    """Announce ``total`` bytes and send them ``chunk`` at a time (never built in memory)."""

    def handler(_request: bytes, conn: socket.socket) -> None:
        conn.sendall(head(total))
        block = b"x" * chunk
        for _ in range(total // chunk):
            conn.sendall(block)
            time.sleep(pause)

    return handler


def reset_after(data: bytes) -> Handler:
    """Send ``data``, then close with an RST."""

    def handler(_request: bytes, conn: socket.socket) -> None:
        conn.sendall(data)
        time.sleep(0.05)  # let the bytes reach the probe before the RST
        reset(conn)

    return handler


def hosts(server: HttpServer | TlsServer) -> list[str]:
    """The Host header of every request the server received."""
    return [
        line.split(b":", 1)[1].strip().decode()
        for request in server.requests
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"host:")
    ]


def fetch(
    server: HttpServer | TlsServer | StallServer,
    *,
    context: ssl.SSLContext | None = None,
    host: str | None = None,
    body_cap: int = CHUNK,
    timeout: float = 5.0,
) -> HttpRequest:
    scheme = "https" if isinstance(server, TlsServer) else "http"
    with server:
        return asyncio.run(
            get(
                f"{scheme}://x.com:{server.port}/path?q=1",
                server.host,
                context=context or make_context(None, alpn=ALPN),
                clock=Clock(),
                timeout=timeout,
                body_cap=body_cap,
                transaction_id=7,
                tags=("target",),
                host=host,
            )
        )


def fetch_throughput(
    server: HttpServer | StallServer, *, max_bytes: int, timeout: float
) -> Throughput:
    with server:
        return asyncio.run(
            download(
                f"http://pbs.twimg.com:{server.port}/media/big.jpg",
                server.host,
                context=make_context(None, alpn=ALPN),
                clock=Clock(),
                timeout=timeout,
                max_bytes=max_bytes,
                transaction_id=3,
                tags=("target",),
            )
        )


# --- plain HTTP ---------------------------------------------------------------------------------


def test_plain_200_records_everything() -> None:
    body = b"<html><head><TITLE lang=en>\n  Hello &amp;\n\t World </title></head></html>"
    server = HttpServer(fixed_response(body, headers=[("Server", "lab"), ("X-Trace", "a")]))
    record = fetch(server)
    assert (record.failure, record.failed_operation, record.status_code) == (None, None, 200)
    assert record.response_headers == (
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        ("Server", "lab"),
        ("X-Trace", "a"),
    )
    assert record.body == body
    assert record.body_length == len(body)
    assert record.body_sha256 == hashlib.sha256(body).hexdigest()
    assert not record.body_is_truncated
    assert record.title == "Hello & World"
    assert record.alpn == "http/1.1"
    assert (record.url, record.method) == (f"http://x.com:{server.port}/path?q=1", "GET")
    assert (record.ip, record.port) == ("127.0.0.1", server.port)
    assert record.host == f"x.com:{server.port}"
    assert (record.transaction_id, record.tags) == (7, ("target",))
    assert 0 <= record.t0 <= record.t
    assert server.requests[0].startswith(b"GET /path?q=1 HTTP/1.1\r\n")
    assert hosts(server) == [f"x.com:{server.port}"]
    sent = dict(record.request_headers)
    assert sent["Host"] == f"x.com:{server.port}"
    assert sent["User-Agent"].startswith("Mozilla/5.0")
    assert sent["Accept"].startswith("text/html")


def test_blockpage_fetched_with_host_override() -> None:
    server = HttpServer(fixed_response(BLOCKPAGE))
    record = fetch(server, host="x.com")
    assert hosts(server) == ["x.com"]
    assert record.host == "x.com"
    assert b"prohibited for viewership from within Pakistan" in record.body
    assert record.title == "Site Blocked"
    assert record.failure is None


def test_ipv6_address_is_bracketed() -> None:
    server = HttpServer(fixed_response(b"ok"), host="::1")
    record = fetch(server)
    assert (record.ip, record.status_code, record.body) == ("::1", 200, b"ok")
    assert hosts(server) == [f"x.com:{server.port}"]


def test_no_title_is_none() -> None:
    record = fetch(HttpServer(fixed_response(b"<html><body>no title here</body></html>")))
    assert record.title is None


def test_redirect_is_recorded_not_followed() -> None:
    location = "https://x.com/i/flow/login"
    server = HttpServer(fixed_response(b"", status=302, headers=[("Location", location)]))
    record = fetch(server)
    assert record.status_code == 302
    assert ("Location", location) in record.response_headers
    assert record.failure is None
    assert len(server.requests) == 1


def test_gigabyte_body_is_capped_fast_and_in_bounded_memory() -> None:
    cap = 100_000
    started = time.perf_counter()
    record = fetch(HttpServer(stream(GIB, CHUNK)), body_cap=cap)
    assert time.perf_counter() - started < 1.0
    assert record.failure is None
    assert len(record.body) == cap
    assert cap < record.body_length < cap + 2 * CHUNK
    assert record.body_is_truncated
    assert record.body_sha256 == hashlib.sha256(b"x" * cap).hexdigest()
    # Measured on a second run, once imports and CA loading are behind us: the peak
    # (probe and server together) stays a few reads above the cap, nowhere near a gigabyte.
    already_tracing = tracemalloc.is_tracing()  # python -X tracemalloc
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        before, _ = tracemalloc.get_traced_memory()
        fetch(HttpServer(stream(GIB, CHUNK)), body_cap=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not already_tracing:
            tracemalloc.stop()
    assert peak - before < 2_000_000


def test_body_exactly_at_cap_is_not_truncated() -> None:
    record = fetch(HttpServer(fixed_response(b"y" * 1000)), body_cap=1000)
    assert (record.body_length, record.body_is_truncated, record.failure) == (1000, False, None)


def test_slow_body_ends_at_the_deadline_keeping_what_arrived() -> None:
    started = time.perf_counter()
    record = fetch(HttpServer(stream(100, 1, pause=0.2)), timeout=1.0)
    assert 0.9 < time.perf_counter() - started < 1.6
    assert 0.9 < record.t - record.t0 < 1.2
    assert (record.failure, record.failed_operation) == ("generic_timeout_error", "read")
    assert record.status_code == 200
    assert 3 <= len(record.body) <= 6
    assert record.body == b"x" * record.body_length
    assert record.body_is_truncated


def test_no_response_ends_at_the_deadline() -> None:
    record = fetch(StallServer(), timeout=0.5)
    assert (record.failure, record.failed_operation) == ("generic_timeout_error", "http_round_trip")
    assert record.status_code is None
    assert record.body_sha256 is None
    assert not record.body_is_truncated


def test_connection_refused() -> None:
    with refusing_port() as endpoint:
        record = asyncio.run(
            get(
                f"http://x.com:{endpoint.port}/",
                endpoint.host,
                context=make_context(None, alpn=ALPN),
                clock=Clock(),
                timeout=5.0,
                body_cap=CHUNK,
                transaction_id=1,
            )
        )
    assert (record.failure, record.failed_operation) == ("connection_refused", "connect")
    assert record.status_code is None
    assert record.request_headers  # what would have been sent is recorded all the same


def test_close_without_response_is_eof() -> None:
    record = fetch(HttpServer(lambda _request, _conn: None))
    assert (record.failure, record.failed_operation) == ("eof_error", "http_round_trip")


def test_a_broken_status_line_is_unknown_failure_with_the_detail_apart() -> None:
    def handler(_request: bytes, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n")

    record = fetch(HttpServer(handler))
    assert (record.failure, record.failed_operation) == ("unknown_failure", "http_round_trip")
    assert record.failure_detail == (
        "RemoteProtocolError: illegal status line: bytearray(b'HTTP/1.1 2OO OK')"
    )
    assert writer._http(record)["x_failure_detail"] == record.failure_detail


def test_reset_before_response() -> None:
    record = fetch(HttpServer(lambda _request, conn: reset(conn)))
    assert (record.failure, record.failed_operation) == ("connection_reset", "http_round_trip")


def test_reset_during_body_keeps_the_partial_body() -> None:
    record = fetch(HttpServer(reset_after(head(1000) + b"z" * 100)))
    assert (record.failure, record.failed_operation) == ("connection_reset", "read")
    assert (record.status_code, record.body) == (200, b"z" * 100)
    assert record.body_is_truncated


@pytest.mark.parametrize(
    ("url", "ip"), [("ftp://x.com/", "127.0.0.1"), ("http://x.com/", "x.com"), ("x.com", "::1")]
)
def test_bad_input_raises(url: str, ip: str) -> None:
    with pytest.raises(ValueError):
        asyncio.run(
            get(
                url,
                ip,
                context=make_context(None, alpn=ALPN),
                clock=Clock(),
                timeout=1.0,
                body_cap=1,
                transaction_id=1,
            )
        )


# --- HTTPS --------------------------------------------------------------------------------------


def trusting(tmp_path: Path, authority: Authority) -> ssl.SSLContext:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(authority.cert_pem)
    return make_context(str(ca_file), alpn=ALPN)


def test_https_sends_the_url_name_as_sni_and_verifies_it(tmp_path: Path) -> None:
    authority = Authority.create()
    server = TlsServer(authority.issue(["x.com"]), handler=fixed_response(b"<title>X</title>"))
    record = fetch(server, context=trusting(tmp_path, authority))
    assert (record.failure, record.status_code, record.title) == (None, 200, "X")
    assert server.server_names == ["x.com"]
    assert hosts(server) == [f"x.com:{server.port}"]
    assert record.alpn == "http/1.1"


@pytest.mark.skipif("h2" in ALPN, reason="the loopback TLS server speaks HTTP/1.1 only")
def test_https_does_not_offer_h2_without_the_h2_package(tmp_path: Path) -> None:
    authority = Authority.create()
    server = TlsServer(authority.issue(["x.com"]), alpn=("h2", "http/1.1"))
    record = fetch(server, context=trusting(tmp_path, authority))
    assert (record.failure, record.status_code) == (None, 200)
    assert record.alpn == "http/1.1"  # the server prefers h2 but was not offered it


def test_https_wrong_name(tmp_path: Path) -> None:
    authority = Authority.create()
    server = TlsServer(authority.issue(["example.org"]))
    record = fetch(server, context=trusting(tmp_path, authority))
    assert (record.failure, record.failed_operation) == ("ssl_invalid_hostname", "tls_handshake")
    assert server.server_names == ["x.com"]
    assert record.status_code is None
    assert server.requests == []


def test_https_unknown_authority(tmp_path: Path) -> None:
    server = TlsServer(Authority.create().issue(["x.com"]))
    record = fetch(server, context=trusting(tmp_path, Authority.create()))
    assert (record.failure, record.failed_operation) == ("ssl_unknown_authority", "tls_handshake")


def test_https_reset_after_client_hello(tmp_path: Path) -> None:
    authority = Authority.create()
    server = TlsServer(authority.issue(["x.com"]), "reset_after_client_hello")
    record = fetch(server, context=trusting(tmp_path, authority))
    assert (record.failure, record.failed_operation) == ("connection_reset", "tls_handshake")
    assert server.server_names == ["x.com"]


# --- download -----------------------------------------------------------------------------------


def rate(samples: tuple[tuple[float, int], ...]) -> float:
    """Bytes per second between the first and the last sample."""
    (t_first, b_first), (t_last, b_last) = samples[0], samples[-1]
    return (b_last - b_first) / (t_last - t_first)


def test_download_measures_a_paced_rate() -> None:
    # 20 kB every 100 ms: 200 kB/s, for longer than the 1.2 s deadline.
    server = HttpServer(stream(10_000_000, 20_000, pause=0.1))
    record = fetch_throughput(server, max_bytes=10_000_000, timeout=1.2)
    assert record.failure is None  # the deadline ends a download that got data
    times = [t for t, _ in record.samples]
    counts = [n for _, n in record.samples]
    assert times == sorted(times) and counts == sorted(counts)
    assert all(b - a >= 0.1 for a, b in itertools.pairwise(times[:-1]))  # the end is off-beat
    assert counts[-1] == record.num_bytes
    assert 0 < counts[0] <= 20_000 and times[0] < 0.1  # the first delivery: the set-up's end
    assert len(record.samples) >= 8
    assert 150_000 < rate(record.samples) < 250_000
    assert (record.ip, record.host) == ("127.0.0.1", f"pbs.twimg.com:{server.port}")
    assert 1.1 < record.t - record.t0 < 1.4


def test_download_stops_at_max_bytes() -> None:
    record = fetch_throughput(HttpServer(stream(GIB, CHUNK)), max_bytes=500_000, timeout=5.0)
    assert record.failure is None
    assert 500_000 <= record.num_bytes < 500_000 + CHUNK
    assert record.t - record.t0 < 1.0


def test_download_refused() -> None:
    with refusing_port() as endpoint:
        record = asyncio.run(
            download(
                f"http://x.com:{endpoint.port}/",
                endpoint.host,
                context=make_context(None, alpn=ALPN),
                clock=Clock(),
                timeout=5.0,
                max_bytes=1000,
                transaction_id=1,
            )
        )
    assert (record.failure, record.num_bytes) == ("connection_refused", 0)
    assert [n for _, n in record.samples] == [0]


def test_download_reset_midway_is_a_failure_with_its_bytes() -> None:
    server = HttpServer(reset_after(head(100_000) + b"z" * 50_000))
    record = fetch_throughput(server, max_bytes=100_000, timeout=5.0)
    assert (record.failure, record.num_bytes) == ("connection_reset", 50_000)


def test_download_silence_is_a_timeout() -> None:
    record = fetch_throughput(StallServer(), max_bytes=1000, timeout=0.5)
    assert (record.failure, record.num_bytes) == ("generic_timeout_error", 0)


def test_close_during_body_is_eof_keeping_the_partial_body() -> None:
    record = fetch(HttpServer(lambda _request, conn: conn.sendall(head(1000) + b"z" * 100)))
    assert (record.failure, record.failed_operation) == ("eof_error", "read")
    assert (record.status_code, record.body, record.body_is_truncated) == (200, b"z" * 100, True)


def test_https_close_after_client_hello_is_eof(tmp_path: Path) -> None:
    authority = Authority.create()
    server = TlsServer(authority.issue(["x.com"]), "close_after_client_hello")
    record = fetch(server, context=trusting(tmp_path, authority))
    assert (record.failure, record.failed_operation) == ("eof_error", "tls_handshake")


def test_https_stalled_handshake_ends_at_the_deadline_and_closes_its_socket(
    tmp_path: Path,
) -> None:
    authority = Authority.create()
    server = TlsServer(authority.issue(["x.com"]), "stall")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        record = fetch(server, context=trusting(tmp_path, authority), timeout=0.5)
        gc.collect()  # an unclosed socket warns when collected
    assert (record.failure, record.failed_operation) == ("generic_timeout_error", "tls_handshake")
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []

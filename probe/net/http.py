"""HTTP(S) GET and a timed download, sent to a given address (no DNS of our own).

Both primitives share :func:`_exchange`: httpx sends one ``GET`` to
``scheme://ip:port/path`` with the ``Host`` header of the name we measure,
and for https the request extension ``sni_hostname`` makes httpcore send that
name as SNI and verify the certificate against it (``ssl`` checks the hostname
given to ``wrap_bio``). Redirects are never followed: the 3xx and its
``Location`` are the observation. No proxy or environment settings apply.

httpcore sets the ALPN list of the ``context`` it is given to what it can
speak (:data:`ALPN`) at every connect, so give these primitives a context of
their own, ``tls.make_context(ca_bundle, alpn=http.ALPN)``: sharing one with
the TLS handshakes would silently change the ClientHello those send.

One deadline (``asyncio.timeout``) bounds the whole exchange, connect to last
byte, so a server dripping a byte at a time cannot hold the probe past it.
An httpx trace hook tells which operation was running when something failed,
and hands us the TCP stream so that we close it whatever happened.

The body is streamed and folded chunk by chunk by the caller's sink, so memory
is bounded by the cap plus one network read, whatever the server sends. We
ask for ``Accept-Encoding: identity`` for the same reason: a decoder can expand
one read a thousandfold, and the kept bytes are then the page as served.

Decisions on partial outcomes:

- ``get``: a failure while reading the body (timeout, reset) sets ``failure``
  and ``failed_operation="read"`` and keeps the bytes that arrived, marked
  ``body_is_truncated`` (as OONI does: the partial body is evidence, the
  failure says it is incomplete).
- ``download``: the download is time-boxed by design, so reaching the
  deadline after some bytes arrived is not a failure: the samples hold the
  rate. A deadline with no byte, or any other error, is a failure; the samples
  taken before it are kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import importlib.util
import ipaddress
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpcore
import httpx

from probe.failures import GENERIC_TIMEOUT, failure_and_detail
from probe.format.vocab import Operation
from probe.records import Clock, HttpRequest, Throughput

__all__ = ["ALPN", "download", "get"]

#: Headers of a common desktop browser, so the request looks like any other.
REQUEST_HEADERS: Final[tuple[tuple[str, str], ...]] = (
    (
        "User-Agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    ),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Accept-Encoding", "identity"),
)

#: Throughput sampling period, in seconds.
SAMPLE_PERIOD: Final = 0.1

#: What httpcore offers (and writes into the context): h2 only when the optional
#: ``h2`` package is installed, since a server that picks h2 must then be spoken to in h2.
ALPN: Final[tuple[str, ...]] = (
    ("http/1.1", "h2") if importlib.util.find_spec("h2") is not None else ("http/1.1",)
)

# httpcore trace events that start each operation (see httpcore's Trace names).
_PHASES: Final[dict[str, Operation]] = {
    "connection.connect_tcp.started": Operation.CONNECT,
    "connection.start_tls.started": Operation.TLS_HANDSHAKE,
    "http11.send_request_headers.started": Operation.HTTP_ROUND_TRIP,
    "http2.send_connection_init.started": Operation.HTTP_ROUND_TRIP,
    "http2.send_request_headers.started": Operation.HTTP_ROUND_TRIP,
}

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)

#: Receives each chunk of the body; returns True to stop reading.
Sink = Callable[[bytes], bool]


@dataclass(slots=True)
class _Exchange:
    """What one GET produced, filled in as it progresses."""

    request_headers: tuple[tuple[str, str], ...] = ()
    status_code: int | None = None
    response_headers: tuple[tuple[str, str], ...] = ()
    alpn: str | None = None
    operation: Operation = Operation.CONNECT
    failure: str | None = None
    failed_operation: Operation | None = None
    failure_detail: str | None = None
    tcp: httpcore.AsyncNetworkStream | None = None  # the connection, closed whatever happens

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.tcp = info["return_value"]
        self.operation = _PHASES.get(event, self.operation)


@dataclass(frozen=True, slots=True)
class _Target:
    address_url: httpx.URL  # the URL with the host replaced by the IP
    ip: str
    port: int
    host: str  # the Host header
    server_name: str  # SNI and the name the certificate must match


def _target(url: str, ip: str, host: str | None) -> _Target:
    """Validate the input (raising ValueError) and aim the URL at ``ip``."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    address = str(ipaddress.ip_address(ip))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return _Target(
        address_url=parsed.copy_with(host=address, port=port),
        ip=address,
        port=port,
        host=host if host is not None else parsed.netloc.decode("ascii"),
        server_name=parsed.host,
    )


async def _exchange(
    target: _Target, context: ssl.SSLContext, timeout: float, sink: Sink
) -> _Exchange:
    """GET ``target`` and feed its body to ``sink``; never raises for a network outcome."""
    result = _Exchange()
    request = httpx.Request(
        "GET",
        target.address_url,
        headers=(("Host", target.host), *REQUEST_HEADERS),
        extensions={"sni_hostname": target.server_name, "trace": result.trace},
    )
    result.request_headers = _decoded(request.headers)
    transport = httpx.AsyncHTTPTransport(verify=context, http2="h2" in ALPN, trust_env=False)
    async with httpx.AsyncClient(transport=transport, timeout=None, trust_env=False) as client:
        try:
            async with asyncio.timeout(timeout):
                response = await client.send(request, stream=True)
                try:
                    result.status_code = response.status_code
                    result.response_headers = _decoded(response.headers)
                    result.alpn = _alpn(response)
                    result.operation = Operation.READ
                    async for chunk in response.aiter_raw():
                        if sink(chunk):
                            break
                finally:
                    await response.aclose()
        except (httpx.HTTPError, OSError) as exc:  # TimeoutError and ssl errors are OSErrors
            result.failure, result.failure_detail = failure_and_detail(exc)
            result.failed_operation = result.operation
    if result.tcp is not None:
        # httpcore leaks the socket when a TLS handshake is cancelled (by our deadline);
        # closing it again after a normal close is harmless.
        await result.tcp.aclose()
    return result


def _decoded(headers: httpx.Headers) -> tuple[tuple[str, str], ...]:
    """Header fields in wire order and spelling (httpx's own views lowercase the names)."""
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers.raw)


def _alpn(response: httpx.Response) -> str:
    """The ALPN protocol the server chose, else the HTTP version used, as an ALPN token."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
    return str(chosen) if chosen else {"HTTP/2": "h2"}.get(response.http_version, "http/1.1")


def _title(body: bytes) -> str | None:
    match = _TITLE.search(body)
    if match is None:
        return None
    text = html.unescape(match.group(1).decode("utf-8", errors="replace"))
    return " ".join(text.split())


async def get(
    url: str,
    ip: str,
    *,
    context: ssl.SSLContext,
    clock: Clock,
    timeout: float,
    body_cap: int,
    transaction_id: int,
    tags: tuple[str, ...] = (),
    host: str | None = None,
) -> HttpRequest:
    """GET ``url`` from ``ip`` (Host: ``host`` or the URL's), keeping at most ``body_cap`` bytes."""
    if body_cap < 0:
        raise ValueError(f"negative body_cap: {body_cap}")
    target = _target(url, ip, host)
    body = bytearray()
    received = 0

    def keep(chunk: bytes) -> bool:
        nonlocal received
        received += len(chunk)
        body.extend(chunk[: body_cap - len(body)])
        return received > body_cap  # one byte past the cap proves there was more

    t0 = clock.now()
    result = await _exchange(target, context, timeout, keep)
    kept = bytes(body)
    answered = result.status_code is not None
    return HttpRequest(
        url=url,
        method="GET",
        ip=target.ip,
        port=target.port,
        host=target.host,
        failure=result.failure,
        failed_operation=result.failed_operation,
        failure_detail=result.failure_detail,
        t0=t0,
        t=clock.now(),
        transaction_id=transaction_id,
        tags=tags,
        request_headers=result.request_headers,
        status_code=result.status_code,
        response_headers=result.response_headers,
        body=kept,
        body_length=received,
        body_sha256=hashlib.sha256(kept).hexdigest() if answered else None,
        body_is_truncated=received > body_cap or (answered and result.failure is not None),
        title=_title(kept),
        alpn=result.alpn,
    )


async def download(
    url: str,
    ip: str,
    *,
    context: ssl.SSLContext,
    clock: Clock,
    timeout: float,
    max_bytes: int,
    transaction_id: int,
    tags: tuple[str, ...] = (),
) -> Throughput:
    """Download ``url`` from ``ip`` until ``max_bytes`` or ``timeout``, sampling progress.

    ``samples`` holds (seconds since ``t0``, bytes so far) at the first delivery, then
    at most every :data:`SAMPLE_PERIOD` while data flows, and one last sample at the end.
    ``num_bytes`` counts every byte received (the last read may pass ``max_bytes``).
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive: {max_bytes}")
    target = _target(url, ip, None)
    samples: list[tuple[float, int]] = []
    received = 0

    def count(chunk: bytes) -> bool:
        nonlocal received
        received += len(chunk)
        elapsed = round(clock.now() - t0, 6)
        # the first delivery always: where the set-up ends and the transfer's own rate begins
        if not samples or elapsed - samples[-1][0] >= SAMPLE_PERIOD:
            samples.append((elapsed, received))
        return received >= max_bytes

    t0 = clock.now()
    result = await _exchange(target, context, timeout, count)
    t = clock.now()
    samples.append((round(t - t0, 6), received))  # the end: shows a final stall, too
    timed_out_with_data = result.failure == GENERIC_TIMEOUT and received > 0
    return Throughput(
        url=url,
        ip=target.ip,
        host=target.host,
        failure=None if timed_out_with_data else result.failure,
        t0=t0,
        t=t,
        transaction_id=transaction_id,
        tags=tags,
        num_bytes=received,
        samples=tuple(samples),
    )

"""DNS measurement primitives: the system resolver, UDP, TCP and DoH.

Each function sends one query and returns what came back as :class:`DnsQuery`
records; a network outcome is a ``failure`` string (via :mod:`probe.failures`),
never an exception. Only bad input (an unsupported query type, a malformed
name, a resolver that is not an IP literal) raises ``ValueError``.

UDP is where censors inject: an on-path box races a forged answer and the real
one arrives later. So :func:`query_udp` takes the first valid response, then
keeps reading the same socket for ``late_window`` seconds and records every
further valid response, tagged ``late_response``. Datagrams that do not parse,
or do not answer our question under our ID, are ignored (as a stub resolver
does); if nothing valid arrives the failure is ``generic_timeout_error``, as in
OONI. The UDP socket is connected, so an ICMP port unreachable surfaces as
``connection_refused``.

DoH is bounded whatever the server does: one deadline covers connect, TLS,
request and body; we ask for ``Accept-Encoding: identity`` and read the raw
bytes, so nothing is ever inflated; a body that is compressed anyway, or longer
than a DNS message can be (64 KiB), is ``dns_server_misbehaving`` and is not
read further. Memory stays at the cap plus one network read. An httpx trace
hook hands us the TCP stream, closed after any failure: httpcore would leak the
socket of a TLS handshake that the deadline cut.

``raw_response`` keeps the bytes as received; the probe's own address is
scrubbed later by the writer (:mod:`probe.format.writer`), not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import httpcore
import httpx
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.TXT import TXT

from probe.failures import DNS_MISBEHAVING, DNS_NO_ANSWER, failure_and_detail, failure_for_rcode
from probe.records import Clock, DnsAnswer, DnsQuery

__all__ = ["doh_client", "lookup_system", "query_doh", "query_tcp", "query_udp"]

QUERY_TYPES: Final = frozenset({"A", "AAAA", "TXT"})
_ANSWER_TYPES: Final = frozenset({"A", "AAAA", "CNAME", "TXT"})
_MAX_MESSAGE: Final = 65535
_DOH_TYPE: Final = "application/dns-message"


async def lookup_system(
    hostname: str, *, clock: Clock, timeout: float, transaction_id: int, tags: tuple[str, ...] = ()
) -> DnsQuery:
    """Resolve ``hostname`` with the system's getaddrinfo (what an ordinary app sees)."""
    loop = asyncio.get_running_loop()
    blank = _blank(hostname, "ANY", "getaddrinfo", "", clock.now(), transaction_id, tags)
    try:
        async with asyncio.timeout(timeout):
            infos = await _getaddrinfo(loop, hostname)
    except OSError as exc:  # socket.gaierror and TimeoutError are both OSError
        return _failed(blank, exc, clock.now())
    addresses = dict.fromkeys((info[0], str(info[4][0])) for info in infos)  # ordered, distinct
    answers = tuple(
        DnsAnswer("A" if family == socket.AF_INET else "AAAA", address, None)
        for family, address in addresses
    )
    return replace(
        blank, answers=answers, failure=None if answers else DNS_NO_ANSWER, t=clock.now()
    )


async def _getaddrinfo(loop: asyncio.AbstractEventLoop, hostname: str) -> list[Any]:
    """``getaddrinfo`` in a daemon thread of its own. It cannot be cancelled, and a resolver
    that never answers holds it for its whole retry schedule (20 s and more): in the loop's
    default executor that would hold the process at exit, long past ``stop_grace``."""
    future: asyncio.Future[list[Any]] = loop.create_future()

    def settle(result: list[Any] | None, error: Exception | None) -> None:
        if future.done():  # timed out and cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or [])

    def work() -> None:
        try:
            result, error = socket.getaddrinfo(hostname, None, type=socket.SOCK_STREAM), None
        except Exception as exc:  # raised in the caller, as loop.getaddrinfo would
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed while we waited: nobody asks
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=f"getaddrinfo {hostname}", daemon=True).start()
    return await future


async def query_udp(
    hostname: str,
    query_type: str,
    resolver: str,
    *,
    port: int = 53,
    clock: Clock,
    timeout: float,
    late_window: float,
    transaction_id: int,
    tags: tuple[str, ...] = (),
) -> tuple[DnsQuery, ...]:
    """Query over UDP; the first record is the answer, any further ones are late responses."""
    query = _make_query(hostname, query_type)
    family, endpoint = _endpoint(resolver, port)
    loop = asyncio.get_running_loop()
    blank = _blank(hostname, query_type, "udp", endpoint, clock.now(), transaction_id, tags)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.connect((resolver, port))
            await loop.sock_sendall(sock, query.to_wire())
            wire, response = await _receive_udp(loop, sock, query, timeout)
        except OSError as exc:  # includes TimeoutError and ICMP-reported errors
            return (_failed(blank, exc, clock.now()),)
        records = [_answered(blank, wire, response, clock.now())]
        late = replace(blank, tags=(*tags, "late_response"))
        deadline = loop.time() + late_window
        while True:
            try:
                wire, response = await _receive_udp(loop, sock, query, deadline - loop.time())
            except OSError:  # the window closed (or the socket errored): stop listening
                break
            records.append(_answered(late, wire, response, clock.now()))
    return tuple(records)


async def query_tcp(
    hostname: str,
    query_type: str,
    resolver: str,
    *,
    port: int = 53,
    clock: Clock,
    timeout: float,
    transaction_id: int,
    tags: tuple[str, ...] = (),
) -> DnsQuery:
    """Query over TCP (RFC 1035 4.2.2: each message is prefixed by its 2-byte length)."""
    query = _make_query(hostname, query_type)
    _, endpoint = _endpoint(resolver, port)
    blank = _blank(hostname, query_type, "tcp", endpoint, clock.now(), transaction_id, tags)
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(resolver, port)
            wire = query.to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
            size = int.from_bytes(await reader.readexactly(2), "big")
            wire = await reader.readexactly(size)
    except (OSError, EOFError) as exc:  # EOFError: asyncio.IncompleteReadError
        return _failed(blank, exc, clock.now())
    finally:
        if writer is not None:
            writer.close()
    return _checked(blank, query, wire, clock.now())


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """Connects to a fixed IP for some host names, keeping Host and SNI the name's."""

    def __init__(self, pins: Mapping[str, str], context: ssl.SSLContext) -> None:
        super().__init__(verify=context, trust_env=False)
        self._pins = dict(pins)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ip = self._pins.get(request.url.host)
        if ip is not None:  # the Host header was already set from the name
            request.extensions = {**request.extensions, "sni_hostname": request.url.host}
            request.url = request.url.copy_with(host=ip)
        return await super().handle_async_request(request)


def doh_client(context: ssl.SSLContext, pins: Mapping[str, str]) -> httpx.AsyncClient:
    """An httpx client for :func:`query_doh`.

    ``pins`` maps a DoH server's host name to the IP to connect to: the
    bootstrap address, so that the DoH control needs no (tamperable) lookup.
    """
    return httpx.AsyncClient(transport=_PinnedTransport(pins, context), trust_env=False)


async def query_doh(
    hostname: str,
    query_type: str,
    url: str,
    *,
    client: httpx.AsyncClient,
    clock: Clock,
    timeout: float,
    transaction_id: int,
    tags: tuple[str, ...] = (),
) -> DnsQuery:
    """Query over DNS-over-HTTPS (RFC 8484 POST) with the caller's client."""
    query = _make_query(hostname, query_type)
    query.id = 0  # RFC 8484 4.1: ID 0 keeps the request cache-friendly
    blank = _blank(hostname, query_type, "doh", url, clock.now(), transaction_id, tags)
    headers = {"content-type": _DOH_TYPE, "accept": _DOH_TYPE, "accept-encoding": "identity"}
    streams: list[httpcore.AsyncNetworkStream] = []

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            streams.append(info["return_value"])

    request = client.build_request(
        "POST", url, content=query.to_wire(), headers=headers, extensions={"trace": trace}
    )
    try:
        async with asyncio.timeout(timeout):
            response = await client.send(request, stream=True)
            try:
                wire = await _doh_body(response)
            finally:
                await response.aclose()  # mid-body, this drops the connection: never reused
    except (OSError, httpx.HTTPError) as exc:
        for stream in streams:  # httpcore leaks the socket of a TLS handshake our deadline cut
            await stream.aclose()
        return _failed(blank, exc, clock.now())
    if wire is None:
        return replace(blank, failure=DNS_MISBEHAVING, t=clock.now())
    return _checked(blank, query, wire, clock.now())


async def _doh_body(response: httpx.Response) -> bytes | None:
    """The raw body of a 200, or None for anything that cannot be one DNS message.

    Raw: a megabyte of gzip inflates to a gigabyte, so a compressed body is
    refused, not decoded (we asked for identity). Reading stops one read past the cap.
    """
    if response.status_code != httpx.codes.OK:
        return None
    if response.headers.get("content-encoding", "identity").strip().lower() != "identity":
        return None
    length = response.headers.get("content-length", "0")
    if not length.isdigit() or int(length) > _MAX_MESSAGE:  # refused before a byte is read
        return None
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > _MAX_MESSAGE:
            return None
    return bytes(body)


def _make_query(hostname: str, query_type: str) -> dns.message.QueryMessage:
    if query_type not in QUERY_TYPES:
        raise ValueError(f"unsupported DNS query type {query_type!r}")
    try:
        return dns.message.make_query(hostname, query_type)
    except dns.exception.DNSException as exc:
        raise ValueError(f"bad DNS name {hostname!r}: {exc}") from exc


def _endpoint(resolver: str, port: int) -> tuple[socket.AddressFamily, str]:
    """The socket family and the ``ip:port`` text (``[ip]:port`` for IPv6)."""
    address = ipaddress.ip_address(resolver)  # ValueError unless an IP literal
    if address.version == 6:
        return socket.AF_INET6, f"[{address}]:{port}"
    return socket.AF_INET, f"{address}:{port}"


def _blank(
    hostname: str,
    query_type: str,
    engine: str,
    resolver_address: str,
    t0: float,
    transaction_id: int,
    tags: tuple[str, ...],
) -> DnsQuery:
    """The record before anything came back; outcomes fill it in with ``replace``."""
    return DnsQuery(
        hostname, query_type, engine, resolver_address, answers=(), rcode=None,
        raw_response=None, failure=None, t0=t0, t=t0, transaction_id=transaction_id, tags=tags,
    )  # fmt: skip


async def _receive_udp(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    query: dns.message.Message,
    timeout: float,
) -> tuple[bytes, dns.message.Message]:
    """The next datagram that answers ``query``; garbage and wrong IDs are skipped."""
    async with asyncio.timeout(timeout):
        while True:
            wire = await loop.sock_recv(sock, _MAX_MESSAGE)
            response = _parse(query, wire)
            if response is not None:
                return wire, response


def _parse(query: dns.message.Message, wire: bytes) -> dns.message.Message | None:
    """The response in ``wire`` if it answers ``query`` (same ID and question), else None."""
    try:
        response = dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError):
        return None
    return response if query.is_response(response) else None


def _checked(blank: DnsQuery, query: dns.message.Message, wire: bytes, t: float) -> DnsQuery:
    """The record of a stream (TCP, DoH) response: a bad one means a misbehaving server."""
    response = _parse(query, wire)
    if response is None:
        return replace(blank, raw_response=wire, failure=DNS_MISBEHAVING, t=t)
    return _answered(blank, wire, response, t)


def _failed(blank: DnsQuery, exc: BaseException, t: float) -> DnsQuery:
    failure, detail = failure_and_detail(exc)
    return replace(blank, failure=failure, failure_detail=detail, t=t)


def _answered(blank: DnsQuery, wire: bytes, response: dns.message.Message, t: float) -> DnsQuery:
    chain = _chain(blank.hostname, response)
    answers = tuple(
        DnsAnswer(
            dns.rdatatype.to_text(rrset.rdtype), _value(rdata), rrset.ttl,
            None if _name(rrset.name) in chain else _name(rrset.name),
        )
        for rrset in response.answer
        if dns.rdatatype.to_text(rrset.rdtype) in _ANSWER_TYPES
        for rdata in rrset
    )  # fmt: skip
    rcode = dns.rcode.to_text(response.rcode())
    failure = failure_for_rcode(rcode)
    if failure is None and all(
        a.answer_type != blank.query_type or a.owner is not None for a in answers
    ):
        failure = DNS_NO_ANSWER
    return replace(
        blank, answers=answers, rcode=rcode, raw_response=wire, failure=failure, t=t,
        dns_id=response.id,
    )  # fmt: skip


def _name(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _chain(hostname: str, response: dns.message.Message) -> set[str]:
    """The query's name and every name its CNAMEs lead to: the owners an answer may have.

    A record of another owner (a resolver slipping in an unrelated name's address) does
    not answer the question, whatever its type.
    """
    chain = {hostname.rstrip(".").lower()}
    cnames = [r for r in response.answer if r.rdtype == dns.rdatatype.CNAME]
    grew = True
    while grew:  # at most one pass per CNAME: each pass adds a name or stops
        grew = False
        for rrset in cnames:
            if _name(rrset.name) in chain:
                for rdata in rrset:
                    target = _name(rdata.target)
                    if target not in chain:
                        chain.add(target)
                        grew = True
    return chain


def _value(rdata: dns.rdata.Rdata) -> str:
    """An address, a CNAME target without the final dot, or the TXT strings joined."""
    if isinstance(rdata, TXT):
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if isinstance(rdata, CNAME):
        return rdata.target.to_text(omit_final_dot=True)
    return rdata.to_text()

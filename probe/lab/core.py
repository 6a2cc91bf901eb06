"""The core's servers ("the internet" of the lab) and the zone every lab resolver answers from.

* :func:`lab_zone`: A/AAAA of every domain's replica, the DoH server's name, and the identity
  names a probe uses to learn who it is: TXT ``o-o.myaddr.l.google.com`` (client address),
  Team Cymru's ``<reversed-ip>.origin[6].asn.cymru.com`` and ``AS<n>.asn.cymru.com`` for every
  vantage and core address. A ``myip.opendns.com`` A query is answered by :class:`LabResolver`
  (the zone's dynamic names are TXT only).
* :func:`serve`: public resolver stand-ins (UDP+TCP 53), and one small HTTP/1.1 server on
  80 and (TLS, lab CA) 443: a page with a ``<title>`` per domain, ``/x-bytes/<n>`` returning
  n bytes for throughput tests, the DoH endpoint (RFC 8484 GET and POST on ``/dns-query``,
  answered by the same zone) and the blockpage address.

Every listener binds its own addresses: a replica address must not answer DNS (a probe
takes an answer from an address that runs no resolver as proof of injection).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

import dns.exception
import dns.message
import dns.rdatatype

from probe.lab import dnsserver
from probe.lab.dnsserver import Client, Reply, Zone
from probe.lab.scenario import Isp
from probe.lab.topology import (
    BLOCKPAGE,
    CONTROL_ADDRESS,
    DOH,
    DOH_NAME,
    PUBLIC_RESOLVERS,
    Topology,
)

__all__ = ["CORE_ASN", "LabResolver", "lab_zone", "serve"]

CORE_ASN: Final = 65536  # RFC 5398 documentation ASN for the lab's "hosting" addresses
WHOAMI: Final = "o-o.myaddr.l.google.com"
MYIP: Final = "myip.opendns.com"
BLOCKPAGE_BODY: Final = (
    b"<html><head><title>Access denied</title></head><body>"
    b"<p>This site is prohibited for viewership from within Pakistan.</p>"
    b"<p>(probe lab blockpage)</p></body></html>"
)
MAX_BYTES: Final = 64 << 20  # cap of /x-bytes/<n>
_CHUNK: Final = 4 << 10  # small TLS records: a slow download still shows its pace
_DATE: Final = "2024-01-01"


@dataclass(frozen=True, slots=True)
class LabResolver:
    """The zone plus ``myip.opendns.com`` A/AAAA -> the client's address; a dnsserver handler."""

    zone: Zone

    def answer(self, query: dns.message.Message, client: Client) -> dns.message.Message:
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        version = ipaddress.ip_address(client[0]).version
        wanted = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(question.rdtype)
        if name == MYIP and wanted is not None:
            rdtype = dns.rdatatype.to_text(question.rdtype)
            records = {MYIP: {rdtype: [client[0]] if wanted == version else []}}
            return Zone(records, self.zone.ttl).answer(query, client)
        return self.zone.answer(query, client)

    async def __call__(self, query: dns.message.Message, client: Client) -> Sequence[Reply]:
        return [Reply(0.0, self.answer(query, client))]


def lab_zone(topology: Topology) -> Zone:
    """The lab's DNS truth (what an honest resolver answers), identity names included."""
    records: dict[str, dict[str, list[str]]] = {}
    for domain, addresses in topology.addresses.items():
        records[domain] = {"A": [a for a in addresses if ":" not in a]}
        records[domain]["AAAA"] = [a for a in addresses if ":" in a]
    records[DOH_NAME] = {"A": [DOH]}
    core = [a for addresses in topology.addresses.values() for a in addresses]
    core += [*PUBLIC_RESOLVERS, DOH, BLOCKPAGE, CONTROL_ADDRESS]
    origins = [(a, f"{a}/32" if ":" not in a else f"{a}/128", CORE_ASN, "ZZ") for a in core]
    for net in topology.isps:
        origins.append((net.vantage_address, net.prefix, net.isp.asn, net.isp.cc))
        origins.append((net.router_down, net.prefix, net.isp.asn, net.isp.cc))
        if net.vantage_address6 is not None and net.prefix6 is not None:
            origins.append((net.vantage_address6, net.prefix6, net.isp.asn, net.isp.cc))
        records[f"as{net.isp.asn}.asn.cymru.com"] = {
            "TXT": [f"{net.isp.asn} | {net.isp.cc} | lab | {_DATE} | {_as_name(net.isp)}"]
        }
    for address, prefix, asn, cc in origins:
        records[_origin_name(address)] = {"TXT": [f"{asn} | {prefix} | {cc} | lab | {_DATE}"]}
    records[f"as{CORE_ASN}.asn.cymru.com"] = {
        "TXT": [f"{CORE_ASN} | ZZ | lab | {_DATE} | LAB-CORE - Simulated internet core, ZZ"]
    }
    return Zone(records, dynamic={WHOAMI: dnsserver.client_address})


def _as_name(isp: Isp) -> str:
    """Cymru's ``HANDLE - Description, CC``, e.g. ``LAB-ISP1 - Simulated ISP 1, PK``."""
    suffix = "" if isp.name.endswith(f", {isp.cc}") else f", {isp.cc}"
    return f"LAB-{isp.id.upper()} - {isp.name}{suffix}"


def _origin_name(address: str) -> str:
    """``2.1.64.100.origin.asn.cymru.com`` / ``<nibbles>.origin6.asn.cymru.com``."""
    ip = ipaddress.ip_address(address)
    reverse = ip.reverse_pointer.rsplit(".", 2)[0]  # drop in-addr.arpa / ip6.arpa
    return f"{reverse}.origin{'6' if ip.version == 6 else ''}.asn.cymru.com"


async def serve(
    topology: Topology, tls: ssl.SSLContext, resolver: LabResolver
) -> list[Callable[[], Awaitable[None]]]:
    """Start every core server; return their closers."""
    closers: list[Callable[[], Awaitable[None]]] = []
    for address in PUBLIC_RESOLVERS:
        closers.append((await dnsserver.serve(address, 53, resolver)).close)
    replicas = {a: d for d, addresses in topology.addresses.items() for a in addresses}
    site = _Site(replicas, resolver)
    for port, context, hosts in (
        (80, None, [*replicas, DOH, BLOCKPAGE]),
        (443, tls, [*replicas, DOH, CONTROL_ADDRESS]),
    ):
        server = await asyncio.start_server(site.handle, hosts, port, ssl=context)
        closers.append(_closer(server))
    return closers


def _closer(server: asyncio.Server) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        server.close()
        with contextlib.suppress(asyncio.TimeoutError):  # open keep-alive connections
            await asyncio.wait_for(server.wait_closed(), 1.0)

    return close


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    host: str
    body: bytes
    close: bool


@dataclass(frozen=True, slots=True)
class _Site:
    """The core's HTTP(S) server; what it serves depends on the local address asked."""

    replicas: dict[str, str]  # local address -> domain
    resolver: LabResolver

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        local = str(writer.get_extra_info("sockname")[0])
        peer = writer.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1]))
        try:
            while True:  # keep-alive: one request after another on the connection
                request = await _read_request(reader)
                if request is None:
                    break
                await self._respond(writer, local, client, request)
                if request.close:
                    break
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a broken or reset connection (the censors make many): just hang up
        finally:
            writer.close()

    async def _respond(
        self, writer: asyncio.StreamWriter, local: str, client: Client, request: _Request
    ) -> None:
        if local == DOH:
            status, kind, body = self._doh(request, client)
        elif local == BLOCKPAGE:
            status, kind, body = 200, "text/html", BLOCKPAGE_BODY
        elif request.path.startswith("/x-bytes/"):
            await _send_bytes(writer, request)
            return
        else:
            host = request.host or self.replicas.get(local, local)
            page = f"<html><head><title>{host} (probe lab replica)</title></head><body>"
            status, kind, body = 200, "text/html", f"{page}<p>{host}</p></body></html>".encode()
        _head(writer, status, kind, len(body), request.close)
        if request.method != "HEAD":
            writer.write(body)
        await writer.drain()

    def _doh(self, request: _Request, client: Client) -> tuple[int, str, bytes]:
        """RFC 8484: POST with the message as body, or GET with ``?dns=<base64url>``."""
        url = urlsplit(request.path)
        if url.path != "/dns-query":
            return 404, "text/plain", b"not found\n"
        wire = request.body
        if request.method == "GET":
            value = parse_qs(url.query).get("dns", [""])[0]
            try:
                wire = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            except (binascii.Error, ValueError):
                return 400, "text/plain", b"bad dns parameter\n"
        try:
            query = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError):
            return 400, "text/plain", b"not a DNS query\n"
        return 200, "application/dns-message", self.resolver.answer(query, client).to_wire()


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """The next request on the connection, or None when the client is done."""
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    except asyncio.IncompleteReadError:
        return None
    request_line, *lines = head.rstrip("\r\n").split("\r\n")
    method, target, version = request_line.split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    connection = headers.get("connection", "").lower()
    close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
    host = headers.get("host", "")
    host = "" if host.startswith("[") else host.split(":", 1)[0]  # an IP literal names no site
    return _Request(method, target, host.lower(), body, close)


def _head(writer: asyncio.StreamWriter, status: int, kind: str, length: int, close: bool) -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    connection = "close" if close else "keep-alive"
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nServer: probe-lab\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {length}\r\nConnection: {connection}\r\n\r\n".encode()
    )


async def _send_bytes(writer: asyncio.StreamWriter, request: _Request) -> None:
    """``/x-bytes/<n>``: n bytes of ``x``, in chunks (never all in memory)."""
    text = request.path.removeprefix("/x-bytes/")
    if not text.isdigit() or int(text) > MAX_BYTES:
        _head(writer, 404, "text/plain", 0, request.close)
        await writer.drain()
        return
    left = int(text)
    _head(writer, 200, "application/octet-stream", left, request.close)
    chunk = b"x" * _CHUNK
    while left > 0 and request.method != "HEAD":
        writer.write(chunk[: min(left, _CHUNK)])
        left -= _CHUNK
        await writer.drain()
    await writer.drain()

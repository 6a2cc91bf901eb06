"""``sni_rst_injection``: an on-path box sees the SNI and injects RSTs both ways.

A sniffer on the router's downlink watches the vantage point's port-443
segments. When a ClientHello names an active SNI, it sends the client an
RST spoofed from the server (sequence number = the server's next one, the
client's ``ack``: the only value a modern kernel accepts, RFC 5961), then
releases the real ClientHello to the server, then sends the server an RST
spoofed from the client (sequence number right after the ClientHello). The
client sees ``connection_reset`` during the handshake; the real packets
still flow, and the server's late answer meets a closed socket.

What makes it reliable is the hold of :mod:`probe.lab.censors._onpath`:
while active, segments that start a ClientHello (a handshake record,
``0x16``, whose message type is ``0x01``) are dropped from the kernel's
forward path and the sniffer releases each one itself, after the RST for a
blocked name, at once for any other. A real injector needs no hold because
its server is tens of milliseconds away; the lab's is not. Only the first
segment of a ClientHello is inspected: a hello whose SNI falls in a later
segment passes, as it does through many real middleboxes.
"""

from __future__ import annotations

import socket
from typing import Any, Final

from scapy.layers.inet import TCP

from probe.lab.censors._nft import FILTER_FORWARD, NftTable
from probe.lab.censors._onpath import RawSender, Sniffer, hold_rules, reply_header, same_header
from probe.lab.censors._types import RouterContext
from probe.lab.censors.clienthello import parse_hello

__all__ = ["SniRstInjection"]

_TLS_PORT: Final = 443
_HANDSHAKE_RECORD: Final = 0x16
_CLIENT_HELLO: Final = 0x01
# nft: the transport payload starts with a handshake record holding a ClientHello.
_HELLO_MATCH: Final = f"tcp dport {_TLS_PORT} @ih,0,8 {_HANDSHAKE_RECORD} @ih,40,8 {_CLIENT_HELLO}"


class SniRstInjection:
    name = "sni_rst_injection"

    def __init__(self) -> None:
        self._active: frozenset[str] = frozenset()
        self._table = NftTable(self.name, {"forward": FILTER_FORWARD})
        self._downlink = ""
        self._sender: RawSender | None = None
        self._sniffer: Sniffer | None = None

    async def start(self, ctx: RouterContext) -> None:
        self._downlink = ctx.downlink
        await self._table.create()
        self._sender = RawSender()
        self._sniffer = Sniffer(ctx.downlink, socket.IPPROTO_TCP, _TLS_PORT, self._on_segment)

    async def set_active(self, domains: frozenset[str]) -> None:
        active = frozenset(d.lower().rstrip(".") for d in domains)
        if active:  # release before hold: a held segment is never left unreleased
            self._active = active
        hold = hold_rules(self._downlink, _HELLO_MATCH) if active else []
        await self._table.replace({"forward": hold})
        self._active = active

    async def stop(self) -> None:
        await self._table.delete()  # first, so nothing stays held once the sniffer is gone
        if self._sniffer is not None:
            self._sniffer.close()
        if self._sender is not None:
            self._sender.close()
        self._sniffer = self._sender = None

    def _on_segment(self, packet: Any, raw: bytes) -> None:
        """Sniffer thread: for a held ClientHello, maybe inject, then release it."""
        active, sender = self._active, self._sender
        tcp = packet[TCP]
        payload = bytes(tcp.payload)
        held = payload[:1] == bytes([_HANDSHAKE_RECORD]) and payload[5:6] == bytes([_CLIENT_HELLO])
        if not active or sender is None or not held:
            return  # not held: the kernel forwards it by itself
        hello = parse_hello(payload)
        if hello is None or hello.server_name not in active:
            sender.send(raw)
            return
        to_client = TCP(sport=tcp.dport, dport=tcp.sport, flags="R", seq=tcp.ack)
        sender.send(bytes(reply_header(packet) / to_client))
        sender.send(raw)
        to_server = TCP(
            sport=tcp.sport, dport=tcp.dport, flags="R", seq=(tcp.seq + len(payload)) % 2**32
        )
        sender.send(bytes(same_header(packet) / to_server))

"""``dns_injection``: an on-path box races a forged answer ahead of the real one.

A sniffer on the router's downlink sees every UDP query of the vantage point,
to the ISP resolver (the router itself) and to the public resolvers in the
core alike. For a query whose name is active it sends the client a forged
answer spoofed from the queried server (``address``: the lab's blockpage
address unless given), then releases the real query, whose real answer
arrives later on the same socket: the probe records both, the second
tagged ``late_response``. The release after the forgery is what makes the
order certain in a lab where the resolver is microseconds away (see
:mod:`probe.lab.censors._onpath`). A query of the other family's type
(AAAA for an IPv4 forgery) is not forged: it gets only the real answer.
"""

from __future__ import annotations

import socket
from typing import Any

import dns.exception
import dns.message
from scapy.layers.inet import UDP
from scapy.packet import Raw

from probe.lab.censors._nft import FILTER_FORWARD, FILTER_INPUT, NftTable
from probe.lab.censors._onpath import RawSender, Sniffer, hold_rules, reply_header
from probe.lab.censors._types import RouterContext
from probe.lab.censors.dns_resolver import blocked_answer, question_name

__all__ = ["DnsInjection"]

_DNS_PORT = 53


class DnsInjection:
    name = "dns_injection"

    def __init__(self, address: str | None = None) -> None:
        self._address = address
        self._forged = ""
        self._active: frozenset[str] = frozenset()
        self._table = NftTable(self.name, {"forward": FILTER_FORWARD, "input": FILTER_INPUT})
        self._downlink = ""
        self._sender: RawSender | None = None
        self._sniffer: Sniffer | None = None

    async def start(self, ctx: RouterContext) -> None:
        self._forged = self._address or ctx.blockpage_address
        self._downlink = ctx.downlink
        await self._table.create()
        self._sender = RawSender()
        self._sniffer = Sniffer(ctx.downlink, socket.IPPROTO_UDP, _DNS_PORT, self._on_query)

    async def set_active(self, domains: frozenset[str]) -> None:
        active = frozenset(d.lower().rstrip(".") for d in domains)
        if active:  # release before hold: a held query is never left unreleased
            self._active = active
        hold = hold_rules(self._downlink, f"udp dport {_DNS_PORT}") if active else []
        await self._table.replace({"forward": hold, "input": hold})
        self._active = active

    async def stop(self) -> None:
        await self._table.delete()  # first, so no query stays held once the sniffer is gone
        if self._sniffer is not None:
            self._sniffer.close()
        if self._sender is not None:
            self._sender.close()
        self._sniffer = self._sender = None

    def _on_query(self, packet: Any, raw: bytes) -> None:
        """Sniffer thread: forge if the name is active, then release the held query."""
        active, sender = self._active, self._sender
        if not active or sender is None:
            return  # nothing is held while inactive: the kernel forwards the query itself
        try:
            self._forge(packet, active, sender)
        finally:
            sender.send(raw)

    def _forge(self, packet: Any, active: frozenset[str], sender: RawSender) -> None:
        udp = packet[UDP]
        try:
            query = dns.message.from_wire(bytes(udp.payload))
        except (dns.exception.DNSException, ValueError):
            return  # not DNS: nothing to forge, the query is just released
        if question_name(query) not in active:
            return
        answer = blocked_answer(query, self._forged)
        if answer.answer:
            forged = reply_header(packet) / UDP(sport=udp.dport, dport=udp.sport)
            sender.send(bytes(forged / Raw(answer.to_wire())))

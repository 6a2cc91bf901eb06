"""What an on-path injector needs in the router: a sniffer, a raw sender, a hold.

Sniffer: an ``AF_PACKET`` socket on the router's downlink with a classic BPF
program attached, so the kernel hands Python only the packets of interest
(IPv4/IPv6, one L4 protocol, one destination port, no fragments). scapy's
``AsyncSniffer`` would need libpcap or tcpdump to compile its filter, which
the lab machines do not have; without a filter it would dissect every
packet of every throughput test in Python. The socket is made in the caller
(the router thread, so it lives in the router's namespace); one reader
thread calls the handler, which must not block.

Sender: raw IP sockets (``IPPROTO_RAW``, header included) opened once. The
router's routing table delivers what they send, spoofed source included,
and locally sent packets skip the forward chain, so they pass the hold.

Hold: a real injector wins the race because the real server is far away;
in the lab the core is microseconds from the router, so the real answer
could beat Python's forged one. While a technique is active, nft drops the
trigger packets from the kernel's path (:func:`hold_rules`) and the handler
*releases* each one itself, right after its injection (or at once if it
injects nothing). Every real packet still reaches its destination, only
after the forgery: on-path semantics, made deterministic. Switching is
ordered so a held packet is never lost: the handler releases whenever the
technique is active, the hold exists only while it is active; at worst a
packet of the switching instant is delivered twice.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, Final

from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

__all__ = ["RawSender", "Sniffer", "hold_rules", "reply_header", "same_header"]

_log = logging.getLogger(__name__)

_ETH_P_ALL: Final = 0x0003
_SO_ATTACH_FILTER: Final = 26
_PACKET_OUTGOING: Final = 4
_POLL: Final = 0.1  # seconds: how long stop() may wait for the reader to notice
_ETH_HEADER: Final = 14
_IPV6_HEADER: Final = 40
_CHECKSUM_OFFSET: Final = {socket.IPPROTO_TCP: 16, socket.IPPROTO_UDP: 6}


def hold_rules(downlink: str, match: str) -> list[str]:
    """The nft rules holding packets from the vantage point that match ``match``."""
    return [f'iifname "{downlink}" {match} drop']


def _bpf(proto: int, port: int) -> bytes:
    """``tcpdump -dd '<proto> dst port <port>'`` for IPv4 and IPv6, as a sock_filter array."""
    program = [
        (0x28, 0, 0, 12),  # ldh [12]: ethertype
        (0x15, 0, 4, 0x86DD),  # IPv6?
        (0x30, 0, 0, 20),  # ldb [20]: next header
        (0x15, 0, 11, proto),
        (0x28, 0, 0, 56),  # ldh [56]: destination port after a 40-byte header
        (0x15, 8, 9, port),
        (0x15, 0, 8, 0x0800),  # IPv4?
        (0x30, 0, 0, 23),  # ldb [23]: protocol
        (0x15, 0, 6, proto),
        (0x28, 0, 0, 20),  # ldh [20]: flags and fragment offset
        (0x45, 4, 0, 0x1FFF),  # a non-first fragment has no ports
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf): IPv4 header length
        (0x48, 0, 0, 16),  # ldh [x+16]: destination port
        (0x15, 0, 1, port),
        (0x06, 0, 0, 0x40000),  # accept the whole frame
        (0x06, 0, 0, 0),  # reject
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


class Sniffer:
    """Frames arriving on ``iface`` for ``proto``/``port``, handed to ``handler`` in a thread.

    The handler gets the IP layer (scapy ``IP`` or ``IPv6``) and the raw IP
    packet; its exceptions are logged, never fatal: one odd packet must not
    take the censor down.
    """

    def __init__(
        self, iface: str, proto: int, port: int, handler: Callable[[Any, bytes], None]
    ) -> None:
        self._handler = handler
        # Protocol 0 receives nothing until bind(): the filter is in place before any frame.
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        program = ctypes.create_string_buffer(_bpf(proto, port))
        fprog = struct.pack("HL", len(program.raw) // 8, ctypes.addressof(program))
        self._sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
        self._sock.bind((iface, _ETH_P_ALL))
        self._sock.settimeout(_POLL)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"sniff-{iface}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the reader thread and close the socket."""
        self._stopping.set()
        self._thread.join()
        self._sock.close()

    def _read(self) -> None:
        while not self._stopping.is_set():
            try:
                frame, address = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            if address[2] == _PACKET_OUTGOING:  # our own injections leaving the router
                continue
            try:
                packet = Ether(frame).payload
                self._handler(packet, _ip_bytes(frame, packet))
            except Exception:  # see the class docstring: one odd packet is not fatal
                _log.exception("on-path handler failed on a packet from %s", address[0])


def _ip_bytes(frame: bytes, packet: Any) -> bytes:
    """The IP packet inside ``frame``, without any Ethernet padding."""
    size = packet.len if isinstance(packet, IP) else _IPV6_HEADER + packet.plen
    return frame[_ETH_HEADER : _ETH_HEADER + size]


class RawSender:
    """Send whole IP packets (header included) through the router's routing table.

    The TCP/UDP checksum is recomputed on the way out: a packet sniffed on a
    veth may carry a partial one (checksum offload: the kernel that forwards
    it knows, a copy re-sent from user space does not, and the receiver
    would silently drop it).
    """

    def __init__(self) -> None:
        self._v4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._v6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def send(self, packet: bytes) -> None:
        """Send ``packet``; a routing error is logged (the real network would lose it too)."""
        packet = _with_l4_checksum(packet)
        try:
            if packet[0] >> 4 == 4:
                self._v4.sendto(packet, (socket.inet_ntop(socket.AF_INET, packet[16:20]), 0))
            else:
                self._v6.sendto(packet, (socket.inet_ntop(socket.AF_INET6, packet[24:40]), 0))
        except OSError:
            _log.exception("raw send failed")

    def close(self) -> None:
        self._v4.close()
        self._v6.close()


def _with_l4_checksum(packet: bytes) -> bytes:
    """``packet`` with its TCP or UDP checksum computed afresh (RFC 793, 768, 8200 8.1)."""
    if packet[0] >> 4 == 4:
        header, proto = (packet[0] & 0x0F) * 4, packet[9]
        pseudo = packet[12:20] + struct.pack("!BBH", 0, proto, len(packet) - header)
    else:  # the lab's IPv6 packets carry no extension headers
        header, proto = _IPV6_HEADER, packet[6]
        pseudo = packet[8:40] + struct.pack("!I3xB", len(packet) - header, proto)
    offset = _CHECKSUM_OFFSET.get(proto)
    if offset is None:
        return packet
    segment = bytearray(packet[header:])
    segment[offset : offset + 2] = b"\0\0"
    data = pseudo + segment + b"\0" * (len(segment) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF
    if proto == socket.IPPROTO_UDP and checksum == 0:
        checksum = 0xFFFF  # 0 means "no checksum" in UDP
    segment[offset : offset + 2] = checksum.to_bytes(2, "big")
    return packet[:header] + bytes(segment)


def reply_header(packet: Any) -> Any:
    """A fresh IP header from ``packet``'s destination back to its source (a spoofed reply)."""
    if isinstance(packet, IPv6):
        return IPv6(src=packet.dst, dst=packet.src)
    return IP(src=packet.dst, dst=packet.src)


def same_header(packet: Any) -> Any:
    """A fresh IP header with ``packet``'s own source and destination (spoofing its sender)."""
    if isinstance(packet, IPv6):
        return IPv6(src=packet.src, dst=packet.dst)
    return IP(src=packet.src, dst=packet.dst)

"""TCP connect: does a SYN to ``ip:port`` get a handshake, a reset, or nothing?

The measurement is the three-way handshake alone: :func:`connect` opens the
connection, records how it went and closes it at once, sending no payload.
The socket is created outside the timed region (so ``t - t0`` is the
handshake) and closed by a ``with`` block whatever happens, cancellation
included. :func:`new_socket` and :func:`dial` are the two halves, shared
with :mod:`probe.net.tls`, which connects the same way before its handshake.

Only IP literals are accepted: resolution is a separate, recorded step.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from probe.failures import failure_and_detail
from probe.records import Clock, TcpConnect

__all__ = ["connect", "dial", "new_socket"]


def new_socket(ip: str, port: int) -> socket.socket:
    """A non-blocking TCP socket of ``ip``'s family.

    Raises ValueError if ``ip`` is not an IPv4/IPv6 literal or ``port`` is not 1-65535.
    """
    address = ipaddress.ip_address(ip)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


async def dial(sock: socket.socket, ip: str, port: int, *, timeout: float) -> None:
    """Connect ``sock`` to ``ip:port`` within ``timeout`` seconds.

    Raises what the connect raised (OSError, TimeoutError): the caller classifies it.
    """
    async with asyncio.timeout(timeout):
        await asyncio.get_running_loop().sock_connect(sock, (ip, port))


async def connect(
    ip: str,
    port: int,
    *,
    clock: Clock,
    timeout: float,
    transaction_id: int,
    tags: tuple[str, ...] = (),
) -> TcpConnect:
    """Connect to ``ip:port``, close, and record the outcome (ValueError on a non-IP)."""
    with new_socket(ip, port) as sock:
        t0 = clock.now()
        failure: str | None = None
        failure_detail: str | None = None
        try:
            await dial(sock, ip, port, timeout=timeout)
        except Exception as exc:  # every network outcome becomes a failure string
            failure, failure_detail = failure_and_detail(exc)
        t = clock.now()
    return TcpConnect(ip, port, failure, t0, t, transaction_id, tags, failure_detail)

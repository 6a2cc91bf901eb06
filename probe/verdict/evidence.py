"""The evidence text: how an observation is cited in a verdict (one line each, bounded).

Every verdict lists the observations it rests on as short lines that point
back at the data (``tls_handshakes[3]: TLS x.com @ 203.0.113.5:443 (target)
-> connection_reset after 0.012 s``), so a reader can check it against the
measurement. Written once here, read by the facts (the health evidence) and
every decision; a flood of records stays short (:data:`SHOWN` values a line).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from probe.format.view import Connect, DnsResponse, Handshake, HttpExchange

__all__ = [
    "SHOWN",
    "addr",
    "reference",
    "show_connect",
    "show_dns",
    "show_http",
    "show_tls",
    "shown",
]

SHOWN: Final = 8  # the answer values one evidence line lists


def addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def shown(values: Sequence[str]) -> Sequence[str]:
    """At most :data:`SHOWN` values, and how many more there are."""
    return values if len(values) <= SHOWN else (*values[:SHOWN], f"{len(values) - SHOWN} more")


def reference(addresses: frozenset[str], failures: Iterable[DnsResponse]) -> str:
    """The DNS control's answer, or why there is none."""
    if addresses:
        return f"DNS control: {', '.join(shown(sorted(addresses)))}"
    failed = ", ".join(f"{c.ref} {c.failure}" for c in failures)
    return f"DNS control: no answer ({failed or 'none measured'})"


def show_dns(q: DnsResponse) -> str:
    said = q.failure or ", ".join(shown(q.addresses + q.names)) or "no answer"
    return f"{q.ref}: {q.engine} {q.resolver or 'system'} {q.hostname} -> {said}"


def show_connect(c: Connect) -> str:
    return f"{c.ref}: connect {addr(c.ip, c.port)} ({c.role}) -> {c.failure or 'ok'}"


def show_tls(h: Handshake) -> str:
    return (
        f"{h.ref}: TLS {h.server_name} @ {addr(h.ip, h.port)} ({h.role}) -> "
        f"{h.failure or 'ok'} after {h.duration:.3f} s"
    )


def show_http(x: HttpExchange) -> str:
    said = x.failure or f"{x.status}" + (" (truncated body)" if x.body_is_truncated else "")
    where = f" @ {addr(x.ip, x.port)}" if x.ip else ""
    return f"{x.ref}: GET {x.url}{where} ({x.role}) -> {said}"

"""A tiny lab per censor test: client -- router -- server, each in its own namespace.

:func:`build` (behind the ``lab`` fixture of conftest.py) makes three
namespaces named ``probelab-t<random>-{c,r,s}`` (never one of the real
lab's names, so neither cleans up the other), links
them with veths on 100.64.0.0/10, gives the server the "internet" addresses
(two X-like replicas on 203.0.113.0/24, a public resolver on 198.51.100.53),
and starts:

* in the server: an HTTP server on :80 (``/bytes/<n>`` sends n bytes), the
  same over TLS on :443 with a certificate from a throwaway lab CA for every
  test name, and an honest DNS server;
* in the router: the ISP resolver on the router's downlink address, which,
  like the lab daemon's, consults ``ctx.dns_policies`` before its zone.

The router and the server each run one persistent asyncio loop in a thread
that entered its namespace (:class:`NsLoop`); the client side runs the
probe's own primitives through ``labutil.in_netns``. Everything is torn down
in :func:`build`'s ``finally``, techniques a failed test left running included.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import dns.message
from labutil import in_netns

from probe.lab import dnsserver, netns
from probe.lab.censors import RouterContext, Technique
from probe.lab.dnsserver import Client, Reply, Zone
from probe.lab.pki import Authority, write_pair

T = TypeVar("T")

CLIENT: Final = "100.64.1.2"
ROUTER: Final = "100.64.1.1"  # the ISP resolver listens here
X: Final = "203.0.113.10"  # x.com's replica
CONTROL: Final = "203.0.113.20"  # control.example's replica
PUBLIC_RESOLVER: Final = "198.51.100.53"
BLOCKPAGE: Final = "203.0.113.99"
NAMES: Final = {"x.com": X, "control.example": CONTROL}
REAL_PAGE: Final = b"<html><title>real page</title></html>"

#: Every tiny lab's namespaces start with this (the real lab's never do).
PREFIX: Final = "probelab-t"


class NsLoop:
    """A thread that entered ``name`` and runs an asyncio loop until :meth:`close`."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        entered = threading.Event()
        errors: list[OSError] = []

        def body() -> None:
            try:
                netns.enter(name)
            except OSError as exc:
                errors.append(exc)
                return
            finally:
                entered.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=body, name=f"nsloop-{name}")
        self._thread.start()
        entered.wait()
        if errors:
            self._thread.join()
            raise errors[0]

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop (so inside the namespace) and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@dataclass
class Lab:
    ctx: RouterContext
    router: NsLoop
    server: NsLoop
    client_ns: str
    ca_file: str
    _techniques: list[Technique] = field(default_factory=list)

    def client(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` in a fresh thread of the client namespace (the vantage point)."""
        return in_netns(self.client_ns, make)

    def start(self, technique: Technique) -> None:
        self._techniques.append(technique)
        self.router.run(technique.start(self.ctx))

    def set_active(self, technique: Technique, *domains: str) -> None:
        self.router.run(technique.set_active(frozenset(domains)))

    def stop(self, technique: Technique) -> None:
        self._techniques.remove(technique)
        self.router.run(technique.stop())

    def stop_all(self) -> None:
        for technique in list(self._techniques):
            with contextlib.suppress(Exception):  # tear-down after a failure: best effort
                self.stop(technique)


def _topology(c: str, r: str, s: str) -> None:
    netns.ip_batch(f"netns add {name}" for name in (c, r, s))
    netns.ip_batch(
        [
            "link set lo up",
            f"link add downlink type veth peer name eth0 netns {c}",
            f"link add uplink type veth peer name eth0 netns {s}",
            f"addr add {ROUTER}/30 dev downlink",
            "addr add 100.64.2.1/30 dev uplink",
            "link set downlink up",
            "link set uplink up",
            "route add 203.0.113.0/24 via 100.64.2.2",
            "route add 198.51.100.0/24 via 100.64.2.2",
        ],
        r,
    )
    netns.ip_batch(
        [
            "link set lo up",
            f"addr add {CLIENT}/30 dev eth0",
            "link set eth0 up",
            f"route add default via {ROUTER}",
        ],
        c,
    )
    netns.ip_batch(
        ["link set lo up", "addr add 100.64.2.2/30 dev eth0", "link set eth0 up"]
        + [f"addr add {a}/32 dev eth0" for a in (X, CONTROL, PUBLIC_RESOLVER)]
        + ["route add default via 100.64.2.1"],
        s,
    )
    netns.set_sysctl(r, {"net.ipv4.ip_forward": "1"})


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One request: ``/bytes/<n>`` gets n bytes, anything else the real page."""
    with contextlib.suppress(OSError, EOFError):
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        body = b"x" * int(path[7:]) if path.startswith("/bytes/") else REAL_PAGE
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
    writer.close()


async def _serve(tls: ssl.SSLContext) -> None:
    """The server namespace's services; they live until the loop is closed."""
    zone = Zone({name: {"A": [address]} for name, address in NAMES.items()})
    await dnsserver.serve(PUBLIC_RESOLVER, 53, zone)
    await asyncio.start_server(_http, "0.0.0.0", 80)
    await asyncio.start_server(_http, "0.0.0.0", 443, ssl=tls)


async def _serve_isp_resolver(ctx: RouterContext) -> None:
    zone = Zone({name: {"A": [address]} for name, address in NAMES.items()})

    async def answer(query: dns.message.Message, client: Client) -> list[Reply]:
        for policy in ctx.dns_policies:
            response = policy(query)
            if response is not None:
                return [Reply(0.0, response)]
        return [Reply(0.0, zone.answer(query, client))]

    await dnsserver.serve(ROUTER, 53, answer)


@contextlib.contextmanager
def build(tmp_path: Path) -> Iterator[Lab]:
    """The tiny lab, torn down on exit whatever happened (call require_root() first)."""
    tag = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    c, r, s = f"{tag}-c", f"{tag}-r", f"{tag}-s"
    authority = Authority.create()
    cert, key = write_pair(authority.issue(list(NAMES)), tmp_path, "server")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(authority.cert_pem)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    loops: list[NsLoop] = []
    lab: Lab | None = None
    try:
        _topology(c, r, s)
        router, server = NsLoop(r), NsLoop(s)
        loops += [router, server]
        ctx = RouterContext(
            "t", r, "downlink", "uplink", ("100.64.1.0/30",),
            {"x.com": (X, "2001:db8::10"), "control.example": (CONTROL,)}, BLOCKPAGE, seed=7,
        )  # fmt: skip
        server.run(_serve(tls))
        router.run(_serve_isp_resolver(ctx))
        lab = Lab(ctx, router, server, c, str(ca_file))
        yield lab
    finally:
        if lab is not None:
            lab.stop_all()
        for loop in loops:
            loop.close()
        netns.remove([c, r, s])

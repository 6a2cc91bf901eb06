"""The lab's network: one core namespace ("the internet") and, per simulated ISP, a router and a
vantage point behind it.

::

    probelab-v-<isp> eth0 ── downlink probelab-r-<isp> uplink ── r-<isp> probelab-core (lo)

:func:`plan` is pure: scenario -> every name and address. :func:`create` builds it with one
``ip -batch`` for the root namespace (namespaces, and veth pairs created directly inside
their namespaces, so the root never holds a lab interface) plus one per namespace; routes
exist only inside the lab. :func:`destroy` removes everything with the ``probelab-`` prefix,
including leftovers of a killed run.

Addresses (documentation and shared ranges only):

* ISP ``i`` (1-based): uplink 100.64.0.(4i+1)/30 (core) - .(4i+2) (router); downlink
  100.64.i.0/24, router .1 (the ISP resolver), vantage .2. IPv6: 2001:db8:ff:i::/64 up,
  2001:db8:64:i::/64 down.
* One replica address per domain, on the core's loopback: 203.0.113.(10+k) and
  2001:db8:113::(10+k).
* 198.51.100.0/24 on the core: public resolver stand-ins (.1 for 1.1.1.1, .8, .9), DoH (.53),
  blockpage (.80), control address (.81: HTTPS only).
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from probe.lab import netns
from probe.lab.scenario import Isp, Scenario

__all__ = [
    "BLOCKPAGE",
    "CONTROL_ADDRESS",
    "CORE",
    "DOH",
    "DOH_NAME",
    "PREFIX",
    "PUBLIC_RESOLVERS",
    "IspNet",
    "Topology",
    "create",
    "destroy",
    "plan",
]

PREFIX: Final = "probelab-"
CORE: Final = f"{PREFIX}core"
# Only these are the topology's: other lab users (the censor tests) share the "probelab-" prefix.
OWN_PREFIXES: Final = (CORE, f"{PREFIX}r-", f"{PREFIX}v-")
ETC_NETNS: Final = Path("/etc/netns")
PUBLIC_RESOLVERS: Final = ("198.51.100.1", "198.51.100.8", "198.51.100.9")
DOH: Final = "198.51.100.53"
DOH_NAME: Final = "dns.lab.invalid"  # .invalid (RFC 6761): can never leak to a real resolver
BLOCKPAGE: Final = "198.51.100.80"
# a TLS server of its own for the probe's "target SNI on a control address" step
# (measurement.control_address): a censor that blocks an address after a trigger (residual)
# then never blocks a control site's
CONTROL_ADDRESS: Final = "198.51.100.81"
_REPLICA_BASE: Final = 10


@dataclass(frozen=True, slots=True)
class IspNet:
    """One simulated ISP's part of the network."""

    isp: Isp
    router: str  # namespace names
    vantage: str
    core_if: str  # the core's interface toward this router
    core_address: str  # uplink, core side
    router_up: str  # uplink, router side (the router's default gateway is core_address)
    router_down: str  # downlink, router side: the vantage's gateway and ISP resolver
    vantage_address: str
    prefix: str  # the vantage's network (what whois-like lookups attribute to the ISP)
    core_address6: str | None  # IPv6 equivalents, None when the scenario has no IPv6
    router_up6: str | None
    router_down6: str | None
    vantage_address6: str | None
    prefix6: str | None

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.prefix,) if self.prefix6 is None else (self.prefix, self.prefix6)


@dataclass(frozen=True, slots=True)
class Topology:
    scenario: Scenario
    isps: tuple[IspNet, ...]
    addresses: Mapping[str, tuple[str, ...]]  # domain -> its replica's addresses (v4 first)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (CORE, *(n for net in self.isps for n in (net.router, net.vantage)))


def plan(scenario: Scenario) -> Topology:
    """Every namespace, interface and address of the scenario's lab (pure)."""
    v6 = scenario.ipv6
    nets = tuple(
        IspNet(
            isp=isp,
            router=f"{PREFIX}r-{isp.id}",
            vantage=f"{PREFIX}v-{isp.id}",
            core_if=f"r-{isp.id}",
            core_address=f"100.64.0.{4 * i + 1}",
            router_up=f"100.64.0.{4 * i + 2}",
            router_down=f"100.64.{i}.1",
            vantage_address=f"100.64.{i}.2",
            prefix=f"100.64.{i}.0/24",
            core_address6=f"2001:db8:ff:{i}::1" if v6 else None,
            router_up6=f"2001:db8:ff:{i}::2" if v6 else None,
            router_down6=f"2001:db8:64:{i}::1" if v6 else None,
            vantage_address6=f"2001:db8:64:{i}::2" if v6 else None,
            prefix6=f"2001:db8:64:{i}::/64" if v6 else None,
        )
        for i, isp in enumerate(scenario.isps, start=1)
    )
    addresses = {
        domain: (f"203.0.113.{_REPLICA_BASE + k}",)
        + ((f"2001:db8:113::{_REPLICA_BASE + k}",) if v6 else ())
        for k, domain in enumerate(scenario.domains)
    }
    return Topology(scenario, nets, addresses)


def create(topology: Topology) -> None:
    """Build the namespaces, links, addresses, routes and resolv.conf files."""
    netns.ip_batch(f"netns add {name}" for name in topology.namespaces)
    for name in topology.namespaces:
        # No duplicate address detection, link-local addresses included (they take the
        # namespace's default when the veth appears): a tentative link-local address stalls
        # neighbour discovery, so a probe started at once would see IPv6 SYNs lost for ~1 s.
        netns.set_sysctl(name, {"net.ipv6.conf.default.accept_dad": "0"})
    root = []
    for net in topology.isps:
        root.append(
            f"link add {net.core_if} netns {CORE} type veth peer name uplink netns {net.router}"
        )
        root.append(
            f"link add downlink netns {net.router} type veth peer name eth0 netns {net.vantage}"
        )
    netns.ip_batch(root)
    netns.ip_batch(_core_commands(topology), CORE)
    for net in topology.isps:
        netns.ip_batch(_router_commands(net), net.router)
        netns.ip_batch(_vantage_commands(net), net.vantage)
        netns.set_sysctl(
            net.router, {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
        )
        directory = ETC_NETNS / net.vantage  # `ip netns exec` bind-mounts it over /etc
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "resolv.conf").write_text(f"nameserver {net.router_down}\n")


def destroy() -> list[str]:
    """Remove the lab's namespaces and /etc/netns entries (also a killed run's); return them."""
    removed = [name for name in netns.names(PREFIX) if name.startswith(OWN_PREFIXES)]
    netns.remove(removed)
    if ETC_NETNS.is_dir():
        for directory in ETC_NETNS.iterdir():
            if directory.name.startswith(OWN_PREFIXES):
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(str(directory))
        with contextlib.suppress(OSError):  # only if empty: other users may have entries
            ETC_NETNS.rmdir()
    return removed


def _host(address: str) -> str:
    """``addr/len`` for ``ip addr add`` of a single host address."""
    return f"{address}/{ipaddress.ip_address(address).max_prefixlen}"


def _core_commands(topology: Topology) -> list[str]:
    local = [a for addresses in topology.addresses.values() for a in addresses]
    local += [*PUBLIC_RESOLVERS, DOH, BLOCKPAGE, CONTROL_ADDRESS]
    commands = ["link set lo up", *(f"addr add {_host(a)} dev lo" for a in local)]
    for net in topology.isps:
        commands += [
            f"link set {net.core_if} up",
            f"addr add {net.core_address}/30 dev {net.core_if}",
            f"route add {net.prefix} via {net.router_up}",
        ]
        if net.core_address6 is not None:
            commands += [
                f"addr add {net.core_address6}/64 dev {net.core_if} nodad",
                f"route add {net.prefix6} via {net.router_up6}",
            ]
    return commands


def _router_commands(net: IspNet) -> list[str]:
    commands = [
        "link set lo up",
        "link set uplink up",
        "link set downlink up",
        f"addr add {net.router_up}/30 dev uplink",
        f"addr add {net.router_down}/24 dev downlink",
        f"route add default via {net.core_address}",
    ]
    if net.router_up6 is not None:
        commands += [
            f"addr add {net.router_up6}/64 dev uplink nodad",
            f"addr add {net.router_down6}/64 dev downlink nodad",
            f"route add default via {net.core_address6}",
        ]
    return commands


def _vantage_commands(net: IspNet) -> list[str]:
    commands = [
        "link set lo up",
        "link set eth0 up",
        f"addr add {net.vantage_address}/24 dev eth0",
        f"route add default via {net.router_down}",
    ]
    if net.vantage_address6 is not None:
        commands += [
            f"addr add {net.vantage_address6}/64 dev eth0 nodad",
            f"route add default via {net.router_down6}",
        ]
    return commands

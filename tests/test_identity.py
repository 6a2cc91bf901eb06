"""Vantage identity over DNS against loopback resolvers, and VPN detection.

The identity resolver and the "ISP resolver" are :mod:`probe.lab.dnsserver` zones
on 127.0.0.1 serving ``myip.opendns.com``, the ``o-o.myaddr.l.google.com`` whoami
and Team Cymru's names, so no real resolver is ever asked. VPN detection reads
route and sysfs files the tests write, and, as root, the routes of a network
namespace the test creates with a tun device as its default route.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import dns.message
import pytest
from loopback import BackgroundLoop

from probe import vpn
from probe.campaign import CampaignResult, DomainResult
from probe.config import Config, Resolver, Vantage
from probe.format.writer import measurements
from probe.identity import CACHE_FILE, MYIP, Discovery, Identity, discover, isp_resolver
from probe.lab.core import LabResolver
from probe.lab.dnsserver import Client, Reply, Zone, client_address, serve
from probe.records import DnsAnswer, DnsQuery

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = "203.0.113.77"  # the address myip.opendns.com gives (never written anywhere)
RESOLVER_EGRESS = "198.51.100.53"  # where the ISP resolver asks from, per its whoami
CYMRU = {
    "77.113.0.203.origin.asn.cymru.com": {"TXT": ["64500 | 203.0.113.0/24 | PK | apnic | 2024"]},
    "1.0.0.127.origin.asn.cymru.com": {"TXT": ["64500 | 127.0.0.0/8 | PK | apnic | 2024"]},
    "as64500.asn.cymru.com": {"TXT": ["64500 | PK | apnic | 2024 | LOOP-ISP - Loopback ISP, PK"]},
    "53.100.51.198.origin.asn.cymru.com": {"TXT": ["64501 64502 | 198.51.100.0/24 | SG | x | y"]},
    "as64501.asn.cymru.com": {"TXT": ["64501 | SG | apnic | 2024 | PUBDNS Public DNS Ltd, SG"]},
}
IDENTITY_ZONE = Zone({"myip.opendns.com": {"A": [PUBLIC]}, **CYMRU})
WHOAMI_ONLY_ZONE = Zone(CYMRU, dynamic={"o-o.myaddr.l.google.com": client_address})
ISP_ZONE = Zone({"o-o.myaddr.l.google.com": {"TXT": [RESOLVER_EGRESS, "edns0-client-subnet x"]}})


@contextmanager
def resolvers(*zones: object) -> Iterator[list[int]]:
    """Serve each handler on its own loopback port."""
    background = BackgroundLoop()
    servers = [background.call(serve("127.0.0.1", 0, zone)) for zone in zones]  # type: ignore[arg-type]
    try:
        yield [s.port for s in servers]
    finally:
        for s in servers:
            background.call(s.close())
        background.close()


def config(identity_port: int | None, isp_port: int | None = None, **vantage: str) -> Config:
    v = Vantage(**vantage)  # type: ignore[arg-type]
    if identity_port is not None:
        v = replace(v, identity_resolver="127.0.0.1", identity_port=identity_port)
    isp = [Resolver("udp", "127.0.0.1", port=isp_port, control=False)] if isp_port else []
    return Config(
        "test.toml",
        ("x.com",),
        ("www.example.com",),
        "www.example.com",
        (*isp, Resolver("udp", "127.0.0.1", port=9)),
        v,
    )


def run(c: Config, state: Path, **kwargs: object) -> Discovery:
    kwargs.setdefault("routes", lambda: None)
    return asyncio.run(discover(c, state, **kwargs))  # type: ignore[arg-type]


def test_discovers_asn_country_name_and_resolver(tmp_path: Path) -> None:
    with resolvers(IDENTITY_ZONE, ISP_ZONE) as (identity_port, isp_port):
        found = run(config(identity_port, isp_port), tmp_path)
    assert found.identity == Identity(
        "AS64500",
        "PK",
        "Loopback ISP",
        "AS64501",
        RESOLVER_EGRESS,
        "PUBDNS Public DNS Ltd",
        source="discovered",
    )
    assert found.address == PUBLIC and found.scrub == {PUBLIC}
    assert found.vpn is None and found.warnings == () and found.annotations == {}
    cache = (tmp_path / CACHE_FILE).read_text()
    assert PUBLIC not in cache and "203.0.113" not in cache  # neither address nor prefix
    assert json.loads(cache)["identity"]["asn"] == "AS64500"


def test_whoami_txt_when_myip_fails_and_names_come_from_the_cache(tmp_path: Path) -> None:
    with resolvers(WHOAMI_ONLY_ZONE) as (port,):
        first = run(config(port), tmp_path)
    assert first.address == "127.0.0.1" and first.identity.network_name == "Loopback ISP"
    # The AS name is cached: a server that no longer knows it still yields the name.
    names_gone = Zone(
        {k: v for k, v in CYMRU.items() if not k.startswith("as64500")},
        dynamic={"o-o.myaddr.l.google.com": client_address},
    )
    with resolvers(names_gone) as (port,):
        again = run(config(port), tmp_path)
    assert again.identity.network_name == "Loopback ISP"


def test_whoami_is_not_asked_of_a_resolver_that_did_not_answer_myip(tmp_path: Path) -> None:
    class Silent:  # a resolver that drops the myip query (loss) but answers the whoami name
        async def __call__(self, query: dns.message.Message, client: Client) -> Sequence[Reply]:
            if query.question[0].name.to_text().startswith(MYIP):
                return []
            return await WHOAMI_ONLY_ZONE(query, client)

    with resolvers(Silent()) as (port,):
        c = config(port)
        found = run(replace(c, timeouts=replace(c.timeouts, dns=0.3)), tmp_path)
    assert found.address is None and found.identity.source == "unknown"
    assert "could not discover the public address" in found.warnings[0]


def test_a_scoped_address_in_an_answer_is_no_address(tmp_path: Path) -> None:
    # On-path injection can answer anything; ipaddress cannot reverse fe80::1%x (it crashed).
    scoped = Zone({**CYMRU, "o-o.myaddr.l.google.com": {"TXT": ["fe80::1%x"]}})
    with resolvers(scoped) as (port,):
        found = run(config(port), tmp_path)
    assert found.address is None and "could not discover the public address" in found.warnings[0]


def test_resolver_ip_inside_the_probes_own_asn_is_not_kept(tmp_path: Path) -> None:
    isp = Zone({"o-o.myaddr.l.google.com": {"TXT": ["127.0.0.1"]}})
    with resolvers(IDENTITY_ZONE, isp) as (identity_port, isp_port):
        found = run(config(identity_port, isp_port), tmp_path)
    assert found.identity.resolver_asn == "AS64500" and found.identity.resolver_ip == ""


def test_the_cache_never_holds_the_address_even_when_the_names_echo_it(tmp_path: Path) -> None:
    # A hostile Cymru answer names the AS after the asker: dashed, reversed, base64.
    echo = "ISP ec2-203-0-113-77 77.113.0.203.in-addr.arpa MjAzLjAuMTEzLjc3"
    hostile = {**CYMRU, "as64500.asn.cymru.com": {"TXT": [f"64500 | PK | x | y | {echo}, PK"]}}
    with resolvers(Zone({"myip.opendns.com": {"A": [PUBLIC]}, **hostile})) as (port,):
        found = run(config(port), tmp_path)
    assert found.identity.network_name == echo  # in memory; the measurement scrubs it
    cache = (tmp_path / CACHE_FILE).read_text()
    for form in ("203.0.113", "203-0-113-77", "77.113.0.203", "MjAzLjAuMTEzLjc3"):
        assert form not in cache
    assert (
        json.loads(cache)["names"]["AS64500"]
        == "ISP ec2-[scrubbed] [scrubbed].in-addr.arpa [scrubbed]"
    )


def test_the_lab_resolver_serves_the_identity_names(tmp_path: Path) -> None:
    with resolvers(LabResolver(WHOAMI_ONLY_ZONE)) as (port,):
        found = run(config(port), tmp_path)
    assert found.address == "127.0.0.1" and found.identity.asn == "AS64500"


def test_nothing_discoverable_falls_back_with_a_warning(tmp_path: Path) -> None:
    empty = Zone({})
    with resolvers(empty) as (port,):
        declared = run(config(port, asn="AS64496", cc="PK", network_name="Declared"), tmp_path)
        unknown = run(config(port), tmp_path)
    assert declared.identity == Identity("AS64496", "PK", "Declared", source="config")
    assert "could not discover the public address" in declared.warnings[0]
    assert unknown.identity == Identity() and unknown.identity.source == "unknown"
    assert "using unknown values (AS0/ZZ)" in unknown.warnings[0]
    no_discovery = run(config(None), tmp_path)
    assert no_discovery.identity == Identity() and "set [vantage] asn" in no_discovery.warnings[0]


def test_a_fresh_cache_stands_in_and_a_corrupt_one_is_rebuilt(tmp_path: Path) -> None:
    with resolvers(IDENTITY_ZONE) as (good,), resolvers(Zone({})) as (empty,):
        run(config(good), tmp_path, now=1000.0)
        cached = run(config(empty), tmp_path, now=2000.0)
        stale = run(config(empty), tmp_path, now=1000.0 + 13 * 3600)
        (tmp_path / CACHE_FILE).write_bytes(b"\x00garbage")
        rebuilt = run(config(good), tmp_path, now=3000.0)
    assert (
        cached.identity == replace(Identity("AS64500", "PK", "Loopback ISP"), source="cache")
        and cached.address is None
    )
    assert stale.identity == Identity()
    assert rebuilt.identity.asn == "AS64500"
    assert json.loads((tmp_path / CACHE_FILE).read_text())["checked"] == 3000.0


def test_a_discovered_asn_unlike_the_declared_one_is_a_vpn(tmp_path: Path) -> None:
    with resolvers(IDENTITY_ZONE) as (port,):
        found = run(config(port, asn="AS64496"), tmp_path)
        via_route = run(config(port, asn="AS64500"), tmp_path, routes=lambda: "through wg0")
    assert found.vpn == "the network is AS64500, not the declared AS64496"
    assert found.annotations == {"network_type": "vpn"}
    assert via_route.vpn == "through wg0"


def test_the_measurement_carries_the_identity_and_never_the_address(tmp_path: Path) -> None:
    with resolvers(IDENTITY_ZONE, ISP_ZONE) as (identity_port, isp_port):
        found = run(config(identity_port, isp_port, asn="AS64496"), tmp_path)
    q = DnsQuery(
        "x.com",
        "TXT",
        "udp",
        "127.0.0.1:53",
        (DnsAnswer("TXT", PUBLIC, 60),),
        "NOERROR",
        None,
        None,
        0.0,
        0.1,
        1,
    )
    result = CampaignResult(0.0, (DomainResult("x.com", "target", (q,), 0.0, 0.1),), 0.1)
    [m] = measurements(
        result,
        config(identity_port),
        annotations=found.annotations,
        scrub=found.scrub,
        identity=found.identity,
    )
    assert PUBLIC not in json.dumps(m)
    assert (m["probe_asn"], m["probe_cc"], m["probe_network_name"]) == (
        "AS64500",
        "PK",
        "Loopback ISP",
    )
    assert (m["resolver_asn"], m["resolver_ip"]) == ("AS64501", RESOLVER_EGRESS)
    assert m["annotations"]["network_type"] == "vpn"


def test_isp_resolver_is_the_non_control_one_or_the_systems(tmp_path: Path) -> None:
    assert isp_resolver(config(None, 5353)) == ("127.0.0.1", 5353)
    conf = tmp_path / "resolv.conf"
    conf.write_text("# generated\nsearch lan\nnameserver fe80::1%eth0\nnameserver 127.0.0.53\n")
    system = replace(config(None), resolvers=(Resolver("system", control=False),))
    assert isp_resolver(system, conf) == ("fe80::1", 53)
    assert isp_resolver(config(None), conf) is None  # only control resolvers: do not guess


# -- VPN: routes ---------------------------------------------------------------------------

ROUTE_HEADER = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
)
NO_V6_DEFAULT = (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
)


def routes(
    tmp_path: Path, v4: str, v6: str = NO_V6_DEFAULT, types: dict[str, int] | None = None
) -> tuple[Path, Path, Path]:
    route, route6, sys_net = tmp_path / "route", tmp_path / "ipv6_route", tmp_path / "net"
    route.write_text(ROUTE_HEADER + v4)
    route6.write_text(v6)
    for name, kind in (types or {}).items():
        (sys_net / name).mkdir(parents=True)
        (sys_net / name / "type").write_text(f"{kind}\n")
    return route, route6, sys_net


def test_default_route_through_a_tunnel_is_a_vpn(tmp_path: Path) -> None:
    v4 = (
        "eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "vpn0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n"
    )
    paths = routes(tmp_path, v4, types={"eth0": 1, "vpn0": 65534})
    assert vpn.default_interfaces(*paths[:2]) == ("vpn0",)
    assert vpn.route_reason(*paths) == "the default route goes through vpn0"


def test_ethernet_default_route_is_not_a_vpn_and_garbage_is_no_sign(tmp_path: Path) -> None:
    v4 = "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    assert vpn.route_reason(*routes(tmp_path, v4, types={"eth0": 1})) is None
    (tmp_path / "route").write_bytes(b"\xff\x00 garbage")
    assert vpn.route_reason(tmp_path / "route", tmp_path / "nope", tmp_path / "net") is None


def test_ipv6_default_via_wireguard_by_name(tmp_path: Path) -> None:
    v6 = NO_V6_DEFAULT + (
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 00000400 00000001 00000000 00000001      wg0\n"
    )
    paths = routes(tmp_path, "", v6)  # no sysfs entry: the name decides
    assert vpn.route_reason(*paths) == "the default route goes through wg0"


def test_a_tun_default_route_in_a_namespace_is_a_vpn() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs root (a network namespace) in CI")
        pytest.skip("needs root to create a network namespace")
    ns = f"probelab-t-vpn{os.getpid()}"
    ip = ["ip", "-n", ns]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for args in (
            ["tuntap", "add", "dev", "tun7", "mode", "tun"],
            ["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
            ["addr", "add", "100.64.7.2/24", "dev", "tun7"],
            ["addr", "add", "100.64.8.2/24", "dev", "eth0"],
            ["link", "set", "tun7", "up"],
            ["link", "set", "eth0", "up"],
            ["link", "set", "eth1", "up"],
            ["route", "add", "default", "dev", "tun7"],
        ):
            subprocess.run([*ip, *args], check=True)
        code = "from probe import vpn; print(vpn.route_reason())"
        ask = ["ip", "netns", "exec", ns, sys.executable, "-c", code]
        out = subprocess.run(ask, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        assert out.strip() == "the default route goes through tun7"
        subprocess.run([*ip, "route", "replace", "default", "dev", "eth0"], check=True)
        out = subprocess.run(ask, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        assert out.strip() == "None"
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)

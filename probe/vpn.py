"""Is this run going through a VPN? Then it does not measure the volunteer's ISP.

Two signs, either one enough:

* the default route (IPv4 ``/proc/net/route``, IPv6 ``/proc/net/ipv6_route``) leaves
  through a tunnel: an interface whose ARP hardware type is a tunnel's
  (``/sys/class/net/<if>/type``: none for tun and WireGuard, PPP, IP-in-IP, GRE, SIT)
  or whose name says so (``tun*``, ``wg*``, ``ppp*``, ...). A USB modem on ``ppp0`` is
  caught too: such a volunteer sets ``[schedule] skip_vpn = false``;
* the ASN discovered over DNS differs from the one the volunteer declared.

The readers take their paths as arguments, so tests can point them at files of
their own, and a probe in a network namespace reads its namespace's routes
(``ip netns exec`` remounts ``/sys``). Unreadable or garbled files mean "no sign".
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = [
    "ROUTE",
    "ROUTE6",
    "SYS_NET",
    "asn_mismatch",
    "default_interfaces",
    "is_tunnel",
    "route_reason",
]

ROUTE: Final = Path("/proc/net/route")
ROUTE6: Final = Path("/proc/net/ipv6_route")
SYS_NET: Final = Path("/sys/class/net")
# ARPHRD_PPP, _TUNNEL, _TUNNEL6, _SIT, _IPGRE, _IP6GRE, _NONE (tun, wireguard): linux/if_arp.h
TUNNEL_TYPES: Final = frozenset({512, 768, 769, 776, 778, 823, 65534})
TUNNEL_NAMES: Final = (
    "tun",
    "tap",
    "wg",
    "ppp",
    "ipsec",
    "vti",
    "utun",
    "nordlynx",
    "proton",
    "tailscale",
    "zt",
)
_RTF_UP: Final = 0x0001
_RTF_REJECT: Final = 0x0200


def _rows(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError):
        return []


def _flag(value: str, bit: int) -> bool:
    try:
        return bool(int(value, 16) & bit)
    except ValueError:
        return False


def default_interfaces(route: Path = ROUTE, route6: Path = ROUTE6) -> tuple[str, ...]:
    """The interfaces that default routes (IPv4, then IPv6) leave through, distinct."""
    found = []
    for row in _rows(route)[1:]:  # Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        if len(row) >= 8 and row[1] == row[7] == "00000000" and _flag(row[3], _RTF_UP):
            found.append(row[0])
    for row in _rows(route6):  # dest plen src splen gateway metric refcnt use flags iface
        default = len(row) >= 10 and row[0] == "0" * 32 and row[1] == "00"
        if default and _flag(row[8], _RTF_UP) and not _flag(row[8], _RTF_REJECT):
            found.append(row[9])
    return tuple(dict.fromkeys(found))


def is_tunnel(interface: str, sys_net: Path = SYS_NET) -> bool:
    """A tunnel by its hardware type, or else by its name."""
    try:
        if int((sys_net / interface / "type").read_text()) in TUNNEL_TYPES:
            return True
    except (OSError, ValueError):
        pass
    return interface.startswith(TUNNEL_NAMES)


def route_reason(route: Path = ROUTE, route6: Path = ROUTE6, sys_net: Path = SYS_NET) -> str | None:
    """Why the default route looks like a VPN, or None."""
    tunnels = [i for i in default_interfaces(route, route6) if is_tunnel(i, sys_net)]
    return f"the default route goes through {', '.join(tunnels)}" if tunnels else None


def asn_mismatch(declared: str, discovered: str) -> str | None:
    """Why a discovered ASN other than the declared one looks like a VPN, or None."""
    if "AS0" in (declared, discovered) or declared == discovered:
        return None
    return f"the network is {discovered}, not the declared {declared}"

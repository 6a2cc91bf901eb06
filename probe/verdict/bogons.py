"""Bogon addresses: where no public name points, as data (``bogons.json``).

A censor's resolver often answers a blocked name with a loopback or private
address. The list is RFC 6890's special-purpose ranges minus those the lab
uses as its public internet (the file says which and why), so it is data a
reviewer can read, not a literal buried in a rule.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["Bogons", "default_bogons"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Bogons:
    ranges: tuple[tuple[Network, str], ...]  # (network, why it is special)

    def reason(self, address: str) -> str | None:
        """Why ``address`` is a bogon (e.g. "loopback (RFC 1122)"), or None if it is not."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None  # not an address (a CNAME target): not a bogon
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return next((why for net, why in self.ranges if ip in net), None)


@cache
def default_bogons() -> Bogons:
    """The bogon list shipped as ``probe/verdict/bogons.json``."""
    text = resources.files("probe.verdict").joinpath("bogons.json").read_text("utf-8")
    data = json.loads(text)
    return Bogons(tuple((ipaddress.ip_network(r["prefix"]), str(r["why"])) for r in data["ranges"]))

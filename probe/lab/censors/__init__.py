"""Censor techniques of the lab, one small module each, behind one interface.

A technique lives in a simulated ISP's *router* namespace. The lab daemon runs
one thread per namespace (the thread ``setns``-es into it once, so every socket
and subprocess it makes belongs there) with its own asyncio loop, and drives
each technique of that router through :class:`Technique`:

* ``start(ctx)`` once when the lab comes up (listeners, nft tables, sniffers),
* ``set_active(domains)`` whenever the scenario switches it on (the domains it
  targets) or off (an empty set) — sporadic blocking is just this call on a
  schedule,
* ``stop()`` once at tear-down; it must leave nothing behind.

The names in :data:`EXPECTED_METHOD` are the closed set of technique names
that scenarios and ``truth.jsonl`` use; the value is the verdict ``method``
the probe must report for it (``None``: the probe must NOT say "blocked").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from probe.format.vocab import Method
from probe.lab.censors._types import DnsPolicy, RouterContext, Technique

__all__ = ["EXPECTED_METHOD", "DnsPolicy", "RouterContext", "Technique", "make_technique"]

#: technique name -> the verdict method it must be detected as (None: never "blocked").
EXPECTED_METHOD: Final[Mapping[str, Method | None]] = {
    "dns_nxdomain": Method.DNS,
    "dns_servfail": Method.DNS,
    "dns_refused": Method.DNS,
    "dns_bogon": Method.DNS,
    "dns_blockpage": Method.DNS,  # ISP resolver answers a blockpage address
    "dns_injection": Method.DNS,  # on-path forged answer racing the real one
    "ip_blackhole": Method.TCP_IP,  # nft drop
    "tcp_reset": Method.TCP_IP,  # nft reject with tcp reset on SYN
    "sni_reset": Method.TLS,  # in-path proxy resets after the ClientHello
    "sni_stall": Method.TLS,  # in-path proxy swallows the ClientHello
    "sni_rst_injection": Method.TLS,  # on-path: scapy injects RSTs, real packets still flow
    "http_blockpage": Method.HTTP,  # Host-header triggered blockpage on port 80
    "throttle": Method.THROTTLING,  # tc policer on X's addresses, 128 kbit/s
    "throttle_96": Method.THROTTLING,  # the same at 96 kbit/s
    "throttle_512": Method.THROTTLING,  # the same at 512 kbit/s
    "residual": Method.TLS,  # SNI reset, then the address blocked for every name for a while
    "http_blockpage_unknown": Method.HTTP,  # a page of no known fingerprint, HTTPS dropped
    "silent_server": None,  # a broken site: accepts, never speaks; never "blocked"
    "outage": None,  # the ISP's uplink drops everything: "down", never "blocked"
    "lossy": None,  # random loss of 20-30% of packets: never "blocked"
}


def _registry() -> Mapping[str, Callable[[], Technique]]:
    # Imported here: scapy (on-path techniques) is only loaded by whoever asks for techniques.
    from probe.lab.censors.address_filter import IpBlackhole, TcpReset
    from probe.lab.censors.dns_injection import DnsInjection
    from probe.lab.censors.dns_resolver import DnsResolverCensor
    from probe.lab.censors.field import Residual, SilentServer, UnknownBlockpage
    from probe.lab.censors.http_blockpage import HttpBlockpage
    from probe.lab.censors.link_failure import Lossy, Outage
    from probe.lab.censors.sni_proxy import SniProxy
    from probe.lab.censors.sni_rst_injection import SniRstInjection
    from probe.lab.censors.throttle import Throttle

    return {
        "dns_nxdomain": lambda: DnsResolverCensor("dns_nxdomain"),
        "dns_servfail": lambda: DnsResolverCensor("dns_servfail"),
        "dns_refused": lambda: DnsResolverCensor("dns_refused"),
        "dns_bogon": lambda: DnsResolverCensor("dns_bogon"),
        "dns_blockpage": lambda: DnsResolverCensor("dns_blockpage"),
        "dns_injection": DnsInjection,
        "ip_blackhole": IpBlackhole,
        "tcp_reset": TcpReset,
        "sni_reset": lambda: SniProxy("sni_reset"),
        "sni_stall": lambda: SniProxy("sni_stall"),
        "sni_rst_injection": SniRstInjection,
        "http_blockpage": HttpBlockpage,
        "throttle": Throttle,
        "throttle_96": lambda: Throttle(96, "throttle_96"),
        "throttle_512": lambda: Throttle(512, "throttle_512"),
        "residual": Residual,
        "http_blockpage_unknown": UnknownBlockpage,
        "silent_server": SilentServer,
        "outage": Outage,
        "lossy": Lossy,
    }


def make_technique(name: str) -> Technique:
    """A new technique of ``name`` (a key of :data:`EXPECTED_METHOD`) with its default options.

    Raises KeyError for an unknown name. For options (blockpage style,
    throttle rate, loss percent), build the class from its module directly.
    """
    return _registry()[name]()

"""``throttle``: traffic to and from the targets' addresses is capped at a low rate.

An ``htb`` qdisc on each router interface, with one class per active
address at ``rate_kbit`` (rate = ceil, so it never borrows) and a ``u32``
filter sending it that address's packets: by source on the downlink (what
the vantage point downloads), by destination on the uplink (what it
uploads). One class per address, not one for all: Russia's policer capped
each flow to Twitter, not Twitter as a whole, and a shared class would make
the probe's concurrent handshakes time out instead of showing a slow,
steady transfer. Unclassified traffic takes HTB's direct path, unshaped. The probe
sees a steady low rate, the signature of a policer (Russia capped Twitter
at ~130-150 kbit/s in 2021). Scenarios pick the rate by name: ``throttle``
(~128 kbit/s), ``throttle_96`` and ``throttle_512``, so the detector is
checked at several rates, not tuned to one; and each lab draws the exact rate
(within :data:`SPREAD` of the name's) and the bucket's depth (the burst a flow
gets at line rate: :data:`BURST` seconds' worth of the rate, at least two
full-size packets) from the scenario's seed, so no detector can fit one lab's
numbers. Inactive: no qdisc at all. Every change is one ``tc -batch`` run.
"""

from __future__ import annotations

import random
from typing import Final

from probe.lab.censors._command import run
from probe.lab.censors._nft import addresses
from probe.lab.censors._types import RouterContext

__all__ = ["Throttle"]

_FIRST_CLASS: Final = 0x10
SPREAD: Final = 0.25  # the drawn rate is the nominal one x (1 +- SPREAD)
BURST: Final = (0.05, 1.5)  # seconds of the rate the bucket holds (a policer's usual range)
_MIN_BURST: Final = 3000  # bytes: two full-size packets, so HTB never stalls a packet


class Throttle:
    name = "throttle"

    def __init__(self, rate_kbit: int = 128, name: str = "throttle", drawn: bool = True) -> None:
        """``drawn``: the rate and burst are drawn from the seed at start (module
        docstring); False keeps exactly ``rate_kbit`` and tc's default burst."""
        if rate_kbit <= 0:
            raise ValueError(f"rate must be positive: {rate_kbit} kbit/s")
        self.name = name
        self.rate_kbit = rate_kbit
        self.burst: int | None = None  # bytes; None: tc's default
        self._drawn = drawn
        self._ctx: RouterContext | None = None
        self._installed = False

    async def start(self, ctx: RouterContext) -> None:
        self._ctx = ctx
        if self._drawn:
            rng = random.Random(f"{ctx.seed}/{ctx.isp}/{self.name}")
            self.rate_kbit = round(self.rate_kbit * rng.uniform(1 - SPREAD, 1 + SPREAD))
            self.burst = max(_MIN_BURST, round(self.rate_kbit * 125 * rng.uniform(*BURST)))
            self._drawn = False  # drawn once: a restart keeps them

    async def set_active(self, domains: frozenset[str]) -> None:
        if self._ctx is None:
            raise RuntimeError("throttle: set_active before start")
        targets = addresses(self._ctx, domains)
        commands = self._remove() if self._installed else []
        for device, field in ((self._ctx.downlink, "src"), (self._ctx.uplink, "dst")):
            commands += self._shape(device, field, targets) if targets else []
        await _tc(commands)
        self._installed = bool(targets)

    async def stop(self) -> None:
        if self._installed:
            await _tc(self._remove())
        self._installed = False

    def _remove(self) -> list[str]:
        assert self._ctx is not None  # only called once started
        return [f"qdisc del dev {dev} root" for dev in (self._ctx.downlink, self._ctx.uplink)]

    def _shape(self, device: str, field: str, targets: tuple[str, ...]) -> list[str]:
        rate = f"{self.rate_kbit}kbit"
        bucket = "" if self.burst is None else f" burst {self.burst} cburst {self.burst}"
        # A deep direct queue: unclassified traffic (the controls) must never be dropped here.
        commands = [f"qdisc add dev {device} root handle 1: htb direct_qlen 10000"]
        for number, address in enumerate(targets, _FIRST_CLASS):
            classid = f"1:{number:x}"
            # Filters sharing a priority must share a protocol: one priority per family.
            protocol, match, prefix, prio = (
                ("ipv6", "ip6", 128, 2) if ":" in address else ("ip", "ip", 32, 1)
            )
            commands += [
                f"class add dev {device} parent 1: classid {classid} "
                f"htb rate {rate} ceil {rate}{bucket}",
                f"filter add dev {device} parent 1: protocol {protocol} prio {prio} "
                f"u32 match {match} {field} {address}/{prefix} flowid {classid}",
            ]
        return commands


async def _tc(commands: list[str]) -> None:
    if commands:
        await run("tc", "-batch", "-", stdin="".join(f"{c}\n" for c in commands))

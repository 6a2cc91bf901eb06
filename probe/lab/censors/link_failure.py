"""``outage`` and ``lossy``: the ISP's whole network fails, for every destination.

Neither is censorship, and the probe must never call it "blocked": they are
the controls that keep the verdict honest. Both filter what the router
forwards (both directions) and what reaches the router itself (so the ISP
resolver fails too); loopback is spared, it is the router's own plumbing.

``outage`` drops everything. ``lossy`` drops N% of packets. The kernel's
``numgen random`` cannot be seeded, so the loss pattern is a seeded choice
of N residues out of 100 matched against ``numgen inc`` (a per-rule packet
counter shared by every flow): the loss rate and its spread (like random loss,
not bursts) are the same on every run, but which flow loses which packet
depends on how the probe's concurrent flows interleave, which varies.
"""

from __future__ import annotations

import random
from typing import Final

from probe.lab.censors._nft import FILTER_FORWARD, FILTER_INPUT, NftTable
from probe.lab.censors._types import RouterContext

__all__ = ["Lossy", "Outage"]

_NOT_LOOPBACK: Final = 'iifname != "lo"'


class _LinkFailure:
    """Network-wide: any non-empty domain set switches ``self._rule`` on."""

    name: str

    def __init__(self) -> None:
        self._table = NftTable(self.name, {"forward": FILTER_FORWARD, "input": FILTER_INPUT})

    async def start(self, ctx: RouterContext) -> None:
        await self._table.create()

    async def set_active(self, domains: frozenset[str]) -> None:
        rules = [f"{_NOT_LOOPBACK} {self._rule()}"] if domains else []
        await self._table.replace({"forward": rules, "input": rules})

    async def stop(self) -> None:
        await self._table.delete()

    def _rule(self) -> str:
        raise NotImplementedError


class Outage(_LinkFailure):
    name = "outage"

    def _rule(self) -> str:
        return "drop"


class Lossy(_LinkFailure):
    name = "lossy"

    def __init__(self, percent: int = 25) -> None:
        if not 0 < percent < 100:
            raise ValueError(f"loss percent must be 1-99: {percent}")
        self._percent = percent
        self._residues: tuple[int, ...] = ()
        super().__init__()

    async def start(self, ctx: RouterContext) -> None:
        self._residues = tuple(sorted(random.Random(ctx.seed).sample(range(100), self._percent)))
        await super().start(ctx)

    def _rule(self) -> str:
        return f"numgen inc mod 100 {{ {', '.join(map(str, self._residues))} }} drop"

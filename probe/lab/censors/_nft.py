"""Each technique's own nftables table in the router, its rules swapped atomically.

A technique owns one ``inet`` table (``probelab_<technique>``) whose chains
are hooked once at start; switching on or off flushes the chains and adds
the new rules in ONE ``nft -f -`` transaction, so no packet ever sees a
half-installed censor. Tables are separate per technique: a ``drop`` in any
table is final, and deleting one table at stop cannot touch another's rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from probe.lab.censors._command import run
from probe.lab.censors._types import RouterContext

__all__ = [
    "FILTER_FORWARD",
    "FILTER_INPUT",
    "NAT_PREROUTING",
    "NftTable",
    "addresses",
    "match_daddr",
    "nft",
]

FILTER_FORWARD: Final = "type filter hook forward priority filter; policy accept;"
FILTER_INPUT: Final = "type filter hook input priority filter; policy accept;"
NAT_PREROUTING: Final = "type nat hook prerouting priority dstnat; policy accept;"


async def nft(ruleset: str) -> None:
    """Apply ``ruleset`` as one transaction (``nft -f -``); CommandError on failure."""
    await run("nft", "-f", "-", stdin=ruleset)


class NftTable:
    """An ``inet`` table with fixed chains whose rules are replaced as a whole."""

    def __init__(self, technique: str, chains: Mapping[str, str]) -> None:
        self.name = f"probelab_{technique}"
        self._chains = dict(chains)  # chain name -> its hook declaration

    async def create(self) -> None:
        """Create the table and its (empty) chains, replacing a leftover of a crashed run."""
        # Declaring the table first makes the delete valid whether or not it existed.
        chains = "".join(f"  chain {c} {{ {spec} }}\n" for c, spec in self._chains.items())
        await nft(
            f"table inet {self.name}\ndelete table inet {self.name}\n"
            f"table inet {self.name} {{\n{chains}}}\n"
        )

    async def replace(self, rules: Mapping[str, Sequence[str]]) -> None:
        """Make ``rules[chain]`` the whole content of each chain (missing chain: empty)."""
        lines = [f"flush chain inet {self.name} {chain}" for chain in self._chains]
        lines += [
            f"add rule inet {self.name} {chain} {rule}"
            for chain in self._chains
            for rule in rules.get(chain, ())
        ]
        await nft("\n".join(lines) + "\n")

    async def delete(self) -> None:
        await nft(f"delete table inet {self.name}\n")


def addresses(ctx: RouterContext, domains: Iterable[str]) -> tuple[str, ...]:
    """The lab addresses of ``domains``, sorted; ValueError for a domain the lab does not host."""
    unknown = sorted(d for d in domains if d not in ctx.addresses)
    if unknown:
        raise ValueError(f"no lab addresses for {', '.join(unknown)}")
    return tuple(sorted({a for d in domains for a in ctx.addresses[d]}))


def match_daddr(addresses: Sequence[str], statement: str) -> list[str]:
    """Rules applying ``statement`` to packets to ``addresses`` (one rule per family present)."""
    v4 = [a for a in addresses if ":" not in a]
    v6 = [a for a in addresses if ":" in a]
    return [
        f"{family} daddr {{ {', '.join(group)} }} {statement}"
        for family, group in (("ip", v4), ("ip6", v6))
        if group
    ]

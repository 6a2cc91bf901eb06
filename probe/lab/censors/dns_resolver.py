"""The ISP resolver lies: ``dns_nxdomain``, ``dns_servfail``, ``dns_refused``, ``dns_bogon``,
``dns_blockpage``.

These censor the ISP's own recursive resolver, the one the vantage point
gets by default, so each technique is a :data:`DnsPolicy` the lab's ISP
resolver consults before answering honestly; nothing touches packets. The
public resolvers in the core are not affected (the probe's DNS control).

Names match exactly (lowercase, no final dot): blocking ``x.com`` leaves
``www.x.com`` alone unless the scenario lists it too, so the truth file
says precisely which names were censored.

Answers: an error rcode for the first three; for ``dns_bogon`` a
non-routable address (127.0.0.2 by default, 0.0.0.0 is the other common
one); for ``dns_blockpage`` the lab's blockpage server (in Pakistan, Nayatel
answered 203.82.48.83/.86, which the lab must not use). An address answers
only the query type of its family: the AAAA query of a name blocked with
an IPv4 address gets an empty NOERROR, as from a zone with no AAAA record.
"""

from __future__ import annotations

import ipaddress
from typing import Final, Literal

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from probe.lab.censors._types import RouterContext
from probe.lab.dnsserver import error

__all__ = ["DnsResolverCensor", "blocked_answer", "question_name"]

Kind = Literal["dns_nxdomain", "dns_servfail", "dns_refused", "dns_bogon", "dns_blockpage"]

_RCODES: Final[dict[str, dns.rcode.Rcode]] = {
    "dns_nxdomain": dns.rcode.NXDOMAIN,
    "dns_servfail": dns.rcode.SERVFAIL,
    "dns_refused": dns.rcode.REFUSED,
}
_TTL: Final = 300


def question_name(query: dns.message.Message) -> str | None:
    """The queried name, lowercase without the final dot (None for a question-less message)."""
    if not query.question:
        return None
    return query.question[0].name.to_text(omit_final_dot=True).lower()


def blocked_answer(query: dns.message.Message, address: str) -> dns.message.Message:
    """A NOERROR response to ``query`` carrying ``address`` if its family fits the query type."""
    response = dns.message.make_response(query)
    rdtype = dns.rdatatype.AAAA if ipaddress.ip_address(address).version == 6 else dns.rdatatype.A
    question = query.question[0]
    if question.rdtype == rdtype:
        response.answer.append(
            dns.rrset.from_text(question.name, _TTL, dns.rdataclass.IN, rdtype, address)
        )
    return response


class DnsResolverCensor:
    """One lying-resolver technique; ``name`` picks the lie."""

    def __init__(self, name: Kind, *, bogon: str = "127.0.0.2") -> None:
        self.name: str = name
        self._bogon = bogon
        self._active: frozenset[str] = frozenset()
        self._ctx: RouterContext | None = None

    async def start(self, ctx: RouterContext) -> None:
        self._ctx = ctx
        ctx.dns_policies.append(self.policy)

    async def set_active(self, domains: frozenset[str]) -> None:
        self._active = frozenset(d.lower().rstrip(".") for d in domains)

    async def stop(self) -> None:
        if self._ctx is not None and self.policy in self._ctx.dns_policies:
            self._ctx.dns_policies.remove(self.policy)
        self._ctx = None

    def policy(self, query: dns.message.Message) -> dns.message.Message | None:
        """The :data:`DnsPolicy`: the lie for an active name, None (answer honestly) otherwise."""
        if self._ctx is None or question_name(query) not in self._active:
            return None
        if self.name in _RCODES:
            return error(query, _RCODES[self.name])
        address = self._bogon if self.name == "dns_bogon" else self._ctx.blockpage_address
        return blocked_answer(query, address)

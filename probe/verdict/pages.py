"""A page served in the site's place on plain HTTP while its HTTPS port is unreachable.

A censor that blocks a site by address often does two things at once: it
drops (or resets) the HTTPS port, where it cannot show anything, and answers
plain HTTP itself with a page of its own, so the user sees why. Pages change
and most match no fingerprint. The TCP rule alone would call this IP
blackholing; the plain-HTTP answer says more, and is the better verdict:

* every connect to the target's TLS port failed (the site's HTTPS is out of
  reach, so no TLS-validated page can be had from here);
* a plain-HTTP request for the name got a page (2xx with a body; a redirect
  is what an HTTPS site itself answers on port 80) from an address the DNS
  control confirms (else the DNS rules judge it);
* no reference contradicts it: when a reference page exists (the remote
  vantage point's fetch) the titles must differ.

Known fingerprints stay the strongest evidence: the rules test them first.
The page's title and a hash of its (capped) body are the evidence, so pages
of one censor can be grouped across measurements.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from probe.format.view import Connect, HttpExchange
from probe.format.vocab import Tag

__all__ = ["Substitute", "substitute_page"]


@dataclass(frozen=True, slots=True)
class Substitute:
    exchange: HttpExchange
    sha256: str  # x_body_sha256 (the whole body), else of the body kept
    why: str

    def shown(self) -> str:
        title = repr(self.exchange.title) if self.exchange.title else "no title"
        return (
            f"{self.exchange.ref}: page {title}, {len(self.exchange.body)} characters, "
            f"sha256 {self.sha256[:16]}"
        )


def substitute_page(
    connects: Sequence[Connect],
    http: Sequence[HttpExchange],
    tls_port: int,
    confirmed: frozenset[str],
    reference: HttpExchange | None,
) -> Substitute | None:
    """The plain-HTTP page served instead of the site (module docstring), or None."""
    https = [c for c in connects if c.role in (Tag.TARGET, Tag.CONTROL_SNI) and c.port == tls_port]
    if not https or any(c.failure is None for c in https):
        return None
    for x in http:
        if x.role != Tag.TARGET or not x.url.startswith("http://") or x.ip not in confirmed:
            continue
        if x.status is None or not 200 <= x.status < 300 or not x.body:
            continue
        if reference is not None and (not x.title or x.title == reference.title):
            continue
        why = (
            f"is titled {x.title!r} where the remote vantage point shows {reference.title!r}"
            if reference is not None
            else "is a page of its own, while HTTPS to the same address is unreachable"
        )
        digest = x.body_sha256 or hashlib.sha256(x.body.encode("utf-8", "replace")).hexdigest()
        return Substitute(x, digest, why)
    return None

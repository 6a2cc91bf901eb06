"""Whether our verdict says what OONI's own analysis of the same measurement says.

OONI's web_connectivity summarises a measurement as ``blocking`` (false, or the layer:
``dns``, ``tcp_ip``, ``http-failure``, ``http-diff``), ``accessible`` and, since 0.5,
``x_blocking_flags`` (bits naming the layers). :func:`agrees` maps them onto our statuses and
methods; the definition and its reasoning are in docs/ooni-agreement.md, which
bench/ooni_agreement.py writes from the real OONI measurements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from probe.format.ooni_reader import flags
from probe.verdict.outcome import Verdict

__all__ = ["AGREEING_METHODS", "FLAG_METHODS", "OoniVerdict", "agrees", "ooni_verdict"]

#: OONI's summary keys -> the verdict methods that agree with them (docs/ooni-agreement.md).
AGREEING_METHODS: Final[Mapping[str, frozenset[str]]] = {
    "dns": frozenset({"dns"}),
    "tcp_ip": frozenset({"tcp_ip"}),
    "http-failure": frozenset({"tls", "http", "throttling"}),
    "http-diff": frozenset({"http"}),
}
#: ``x_blocking_flags`` bits (web_connectivity 0.5) -> the verdict methods that agree.
FLAG_METHODS: Final[Mapping[int, frozenset[str]]] = {
    1: frozenset({"dns"}),
    2: frozenset({"tcp_ip"}),
    4: frozenset({"tls"}),
    8: frozenset({"http", "throttling"}),
    16: frozenset({"http"}),
}


@dataclass(frozen=True, slots=True)
class OoniVerdict:
    """OONI's own summary of a web_connectivity measurement."""

    blocking: str | bool | None
    accessible: bool | None
    flags: int | None  # x_blocking_flags (0.5), None in 0.4


def ooni_verdict(m: Mapping[str, Any]) -> OoniVerdict:
    keys = m.get("test_keys")
    keys = keys if isinstance(keys, dict) else {}
    return OoniVerdict(keys.get("blocking"), keys.get("accessible"), flags(keys))


def agrees(ooni: OoniVerdict, ours: Verdict) -> bool:
    """Whether our verdict says what OONI's says (the definition is in docs/ooni-agreement.md)."""
    if isinstance(ooni.blocking, str):
        methods = set(AGREEING_METHODS.get(ooni.blocking, frozenset()))
        for bit, bit_methods in FLAG_METHODS.items():
            if (ooni.flags or 0) & bit:
                methods |= bit_methods
        return ours.status == "blocked" and ours.method in methods
    expected = {(False, True): "ok", (False, False): "down", (None, None): "inconclusive"}
    return expected.get((ooni.blocking, ooni.accessible)) == ours.status

"""What the decisions produce: a finding before the health gate, a verdict after it.

A decision rule (:mod:`probe.verdict.decide_dns`, ``decide_transport``,
``decide_http``) reads the facts and returns a :class:`Finding` (a candidate
"blocked": method, detail, where, evidence, confidence, and the *kind* of
evidence the health gate weighs), a :class:`Verdict` when it settles the
matter itself (a name that does not exist is ``down``), or None. The gate
(:mod:`probe.verdict.gate`) turns a finding into the final :class:`Verdict`.
This module imports nothing of the verdict package, so every module can use
it without a cycle; statuses and methods are the format's vocabularies
(:mod:`probe.format.vocab`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from probe.format.vocab import Method, Status

__all__ = ["Finding", "Kind", "Status", "Verdict", "inconclusive"]

#: positive: a fingerprint; active: someone answered; silent: timeouts (loss can fake them)
Kind = Literal["positive", "active", "silent"]


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    method: Method | None
    detail: str | None  # e.g. "tls.sni_reset"
    step: str | None  # "dns" | "tcp_connect" | "tls_handshake" | "http" | "throughput"
    address: str | None
    evidence: tuple[str, ...]
    confidence: float
    explanation: str
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """A candidate "blocked", before the health gate."""

    method: Method
    detail: str
    step: str
    address: str | None
    evidence: tuple[str, ...]
    confidence: float
    explanation: str  # without the leading "blocked: "
    kind: Kind
    fingerprint: str | None = None
    # the step's own TCP connect succeeded: the path works, so no control site is needed to
    # rule out an outage (only a down or lossy network refuses it)
    connected: bool = False


def inconclusive(reason: str, evidence: tuple[str, ...]) -> Verdict:
    return Verdict(
        Status.INCONCLUSIVE, None, None, None, None, evidence, 0.0, f"inconclusive: {reason}"
    )

"""The shape of a transfer: does it show a policer's rate plateau? Pure, no I/O.

A policer or shaper (a token bucket: tc tbf/htb, a DPI box's per-flow limit)
lets a burst through, then holds the flow at its rate for as long as the flow
lasts: bytes keep arriving, and over any long enough stretch the flow gets the
same share. What it looks like at the probe is lumpy at short time scales —
TLS records arrive whole (a 16 KiB record once a second at 128 kbit/s), a
dropping policer makes TCP back off and burst again — so a short-span
steadiness test (a coefficient of variation over 0.5 s spans) rejects real
policers. This module compares long stretches instead, allowing one
*quantum* (the largest single delivery seen) of slack:

* the flow is cut at the end of its first quarter (connection set-up, slow
  start and the bucket's initial burst are left out), the rest in two halves;
* it is a plateau when both halves delivered bytes and their byte counts
  differ by at most half their sum plus one quantum (capped at a quarter of
  the sum): a 3:1 ratio at most, apart from record granularity; a flow that
  stalls, dies or only began late is not one;
* each half holds at least one quantum, and the settled part lasts at least
  :data:`MIN_SPAN`: the flow was *held*, over several deliveries and over time.
  A transfer that ended within a burst or two (0.5 MiB in 0.4 s through a slow
  in-path box, halves of 100 and 400 KB against a 200 KB quantum) shows no plateau,
  however its rate compares with the control's;
* it needs at least :data:`MIN_ARRIVALS` separate deliveries: silence (zero
  bytes after the connect or the ServerHello) is a timeout, never throttling.

Slow alone proves nothing: the rules compare the plateau rate with a control
download over the same path (congestion slows the control alike), at the control's
rate once its bytes flow (:func:`mean_rate`: a loaded host's slow handshake is not a
slow path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["MIN_ARRIVALS", "MIN_SPAN", "RATIO", "Plateau", "mean_rate", "plateau"]

#: the target's plateau this many times below the control's mean rate
RATIO: Final = 10.0
#: separate deliveries of bytes a transfer needs before its shape says anything
MIN_ARRIVALS: Final = 3
#: seconds the settled part must last: a hold shows over time, not within a burst
MIN_SPAN: Final = 1.0
_SETTLE: Final = 0.25  # the leading share of the flow's time left out


@dataclass(frozen=True, slots=True)
class Plateau:
    rate: float  # bytes per second after the settling quarter
    steady: bool  # both halves delivered, at a similar pace
    halves: tuple[int, int]  # bytes delivered in each half
    quantum: int  # the largest single delivery (a TLS record, a burst)
    seconds: float  # the span measured

    def shown(self) -> str:
        return (
            f"{self.rate * 8 / 1000:.0f} kbit/s over {self.seconds:.1f} s, halves "
            f"{self.halves[0]} and {self.halves[1]} bytes (quantum {self.quantum})"
        )


def mean_rate(samples: Sequence[tuple[float, int]]) -> float:
    """Bytes per second once the bytes flow: from the first delivery to the end.

    The set-up before the first byte (DNS-free connect, TLS handshake, request) is no
    measure of the path's capacity: it is a few round trips, and on a loaded host mostly
    CPU (the handshake's crypto), so it can take longer than a fast transfer itself and
    would make a healthy control look as slow as a policed target. The download primitive
    samples the first delivery; when the samples do not show it (the part after the first
    sample holds under half the bytes: older files sampled only every 0.1 s), the mean over
    the whole transfer, set-up included, is the (lower, so cautious) figure.
    """
    points = sorted(samples)
    if not points:
        return 0.0
    end, total = points[-1]
    first = next(((t, n) for t, n in points if n > 0), None)
    if first is not None and end > first[0] and (total - first[1]) * 2 >= total:
        return (total - first[1]) / (end - first[0])
    return total / end if end > 0 else 0.0


def _total_at(points: Sequence[tuple[float, int]], when: float) -> tuple[float, int]:
    """The last sample at or before ``when``: (its time, bytes received by then)."""
    found = (0.0, 0)
    for point in points:
        if point[0] > when:
            break
        found = point
    return found


def plateau(samples: Sequence[tuple[float, int]]) -> Plateau | None:
    """The transfer's settled rate and whether it is a plateau; None when too little flowed."""
    points = sorted(samples)
    arrivals: list[tuple[float, int]] = []
    for t, n in points:
        if n > (arrivals[-1][1] if arrivals else 0):
            arrivals.append((t, n))
    if len(arrivals) < MIN_ARRIVALS:
        return None
    first, end = arrivals[0][0], points[-1][0]
    if end <= first:
        return None
    settle = first + (end - first) * _SETTLE
    middle = settle + (end - settle) / 2
    (since, base), (_, at_middle), total = (
        _total_at(points, settle),
        _total_at(points, middle),
        points[-1][1],
    )
    # the largest delivery once settled (the initial burst is no measure of granularity)
    after = [n for t, n in arrivals if t > since]
    quantum = max((b - a for a, b in zip([base, *after], after, strict=False)), default=0)
    halves = (at_middle - base, total - at_middle)
    slack = min(quantum, sum(halves) / 4)  # record granularity, never more than a quarter
    # each half holds at least one whole quantum: a hold over several deliveries, not a
    # fast transfer that ended within a burst or two (a slow in-path box, a loaded host)
    seconds = end - since  # from the sample the count starts at, so the rate is not biased
    steady = (
        seconds >= MIN_SPAN
        and min(halves) >= max(quantum, 1)
        and abs(halves[0] - halves[1]) <= sum(halves) / 2 + slack
    )
    return Plateau((total - base) / seconds, steady, halves, quantum, round(seconds, 3))

"""Across the lines of one run: confirm or withdraw what an OONI line shows alone.

An OONI line without a test-helper result (``control: {}``) whose every TLS handshake for
the name reset or stalled after a successful connect is ``tls.reset`` / ``tls.stall`` at a
low confidence (:data:`probe.verdict.rules.ALONE_CONFIDENCE`): one line cannot tell a filter
from the server refusing the name, nor (for a stall) from a network losing packets. The
other names the same probe measured in the same run can, as OONI's own analysis does over
its hourly buckets: a censor keys on the name, an outage or a broken probe hits every name.

:func:`corroborate` is pure, over :class:`Row` s (one per scored line):

* another name of the run was reached (``ok``): the network carried TLS then, so the lone
  finding stands, its confidence raised by :data:`CONFIRMED_BONUS` (still below the 0.7 of
  a test helper's proof) and the note says by how many names;
* every other name of the run failed too (none ``ok``): nothing shows the network worked,
  the finding is withdrawn (``inconclusive``), and the note says why;
* no other name in the run: the line is left as it is.

A run is OONI's ``report_id`` (one probe session over a test list); without one, the
probe's ASN and the hour of ``measurement_start_time`` (:func:`row`).

Where the report calls it (not yet wired: the report scores only target rows, and this
needs the control sites' statuses too): in ``probe/report/engine.py`` after the rows are
re-scored, over the OONI rows (``source = 'ooni'``, targets and controls both scored),
grouped by ``asn`` and ``run``, writing the returned status back before the counts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from probe.format.fields import domain_of
from probe.format.vocab import Status
from probe.verdict.decide_transport import ALONE_CONFIDENCE, ALONE_FLAG_BONUS
from probe.verdict.outcome import Verdict

__all__ = ["CONFIRMED_BONUS", "Row", "corroborate", "is_alone", "row"]

#: What another name reached in the same run adds to a finding that rests on one line.
CONFIRMED_BONUS: Final = 0.1
_LONE_DETAILS: Final = {f"tls.{kind}": c for kind, c in ALONE_CONFIDENCE.items()}


@dataclass(frozen=True, slots=True)
class Row:
    """One scored line: where it belongs (its run), the name, and the verdict's key facts."""

    run: str
    domain: str
    status: str
    detail: str | None
    confidence: float
    note: str = ""  # set by corroborate: why the status or confidence changed


def row(measurement: Mapping[str, Any], v: Verdict) -> Row:
    """The row of one OONI measurement and its verdict."""
    report = measurement.get("report_id")
    start = str(measurement.get("measurement_start_time") or "")
    run = (
        report
        if isinstance(report, str) and report
        else f"{measurement.get('probe_asn')}@{start[:13]}"
    )
    return Row(run, domain_of(measurement.get("input")) or "", v.status, v.detail, v.confidence)


def is_alone(r: Row) -> bool:
    """A finding that rests on its own line (rules.ALONE_CONFIDENCE, with or without the
    bonus of OONI's flags): no control's proof ever gives so low a confidence to a TLS one."""
    base = _LONE_DETAILS.get(r.detail or "")
    return (
        r.status == Status.BLOCKED and base is not None and r.confidence <= base + ALONE_FLAG_BONUS
    )


def corroborate(rows: Sequence[Row]) -> list[Row]:
    """The rows, in order, with each lone finding confirmed or withdrawn by its run."""
    by_run: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_run[r.run].append(r)
    out = []
    for r in rows:
        if not is_alone(r):
            out.append(r)
            continue
        others = [o for o in by_run[r.run] if o.domain != r.domain]
        reached = sorted({o.domain for o in others if o.status == Status.OK})
        if reached:
            out.append(
                replace(
                    r,
                    confidence=round(r.confidence + CONFIRMED_BONUS, 2),
                    note=f"{len(reached)} other name(s) of the same run were reached "
                    f"({', '.join(reached[:3])}): the network worked, the name was singled out",
                )
            )
        elif others:
            out.append(
                replace(
                    r,
                    status="inconclusive",
                    detail=None,
                    confidence=0.0,
                    note=f"every other name of the same run failed too ({len(others)} lines): "
                    "the probe's network, not a filter on this name, may be at fault",
                )
            )
        else:
            out.append(r)
    return out

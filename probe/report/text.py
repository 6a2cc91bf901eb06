"""The report in words: one plain sentence per ISP, and the terminal summary.

A sentence speaks of "X" when every domain family of the ISP behaved alike,
else of each group of families that did (``x.com, twitter.com, t.co blocked
100% of the time by TLS SNI reset; twimg.com open 100% of the time``). A
family is *blocked* when it was blocked at least 5% of the observed time,
*open* below that, *undecided* when no run gave a verdict (the network down,
or inconclusive verdicts). Outages and inconclusive shares are said, never
folded into blocking.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Final

from probe.format.vocab import Method
from probe.printable import printable
from probe.report.model import ALL, Report, Series

__all__ = [
    "SOURCE_NAMES",
    "blocked_time",
    "by_isp",
    "duration",
    "isp_label",
    "method_words",
    "sentence",
    "sentences",
    "summary",
    "utc",
]

BLOCKED_AT: Final = 0.05  # duty cycle from which a family counts as blocked
_ORDER: Final = ("blocked", "open", "undecided")  # the order of the clauses of a sentence

_DETAILS: Final = {
    "tls.sni_reset": "TLS SNI reset",
    "tls.sni_stall": "TLS SNI stall (ClientHello dropped)",
    "tls.reset": "TLS reset (SNI or address filtering)",
    "tls.stall": "TLS stall (SNI or address filtering)",
    "tls.residual": "TLS SNI filtering with residual blocking of the address",
    "tls.interception": "TLS interception",
    "dns.injected": "DNS injection",
    "dns.oversized": "oversized DNS answers",
    "dns.blockpage": "DNS blockpage",
    "dns.bogon": "DNS bogon answers",
    "dns.nxdomain": "DNS NXDOMAIN",
    "dns.servfail": "DNS SERVFAIL",
    "dns.refused": "DNS REFUSED",
    "dns.error": "DNS errors",
    "dns.inconsistent": "inconsistent DNS answers",
    "tcp_ip.timeout": "IP blackholing (TCP timeout)",
    "tcp_ip.refused": "TCP reset to the SYN",
    "tcp_ip.reset": "TCP reset",
    "tcp_ip.unreachable": "unreachable addresses",
    "http.blockpage": "HTTP blockpage",
    "http.diff": "HTTP page difference",
    "http.reset": "HTTP reset",
    "http.timeout": "HTTP timeout (no response)",
}
#: How a source is named; OONI's rows are marked so they are never taken for ours.
SOURCE_NAMES: Final = {"probe": "probe", "ooni": "OONI"}
_METHODS: Final[Mapping[str, str]] = {
    Method.DNS: "DNS tampering",
    Method.TCP_IP: "TCP/IP blocking",
    Method.TLS: "TLS interference",
    Method.HTTP: "HTTP interference",
    Method.THROTTLING: "throttling",
}


def method_words(detail: str | None) -> str:
    """``"tls.sni_reset"`` -> ``"TLS SNI reset"``; a bare method or an unknown detail too."""
    if detail is None:
        return "an unknown method"
    if detail in _DETAILS:
        return _DETAILS[detail]
    method, _, rest = detail.partition(".")
    words = _METHODS.get(method, method)
    return f"{words} ({rest})" if rest else words


def duration(seconds: float) -> str:
    """A short human duration: ``"45 s"``, ``"9 min"``, ``"2.5 h"``, ``"3.0 days"``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _pct(share: float) -> str:
    return f"{round(100 * share)}%"


def _kind(s: Series) -> tuple[str, str | None]:
    """How a family behaved, coarsely: families of one kind share a clause."""
    duty = s.stats.duty_cycle
    if duty is None:
        return "undecided", None
    if duty < BLOCKED_AT:
        return "open", None
    return "blocked", s.detail


def _methods(s: Series) -> str:
    """``by A`` or, when the method changed, ``by A until T, then by B``."""
    changes = s.stats.method_changes
    if not changes:
        return f"by {method_words(s.detail)}"
    text = f"by {method_words(changes[0].before)}"
    for change in changes:
        text += f" until {utc(change.t)}, then by {method_words(change.after)}"
    return text


def _clause(s: Series) -> str:
    """What happened to one family, without its name."""
    st = s.stats
    kind, _ = _kind(s)
    if st.duty_cycle is None:
        return "no verdict (every run was down or inconclusive)"
    if kind == "open":
        return f"open {_pct(1 - st.duty_cycle)} of the time"
    margin = f" (±{round(100 * st.duty_margin)} points, 95%)" if st.duty_margin else ""
    text = f"blocked {_pct(st.duty_cycle)} of the time{margin} {_methods(s)}"
    if st.windows and st.duty_cycle < 1:
        n = len(st.windows)
        median, longest = duration(st.median_window or 0), duration(st.longest_window or 0)
        text += f"; open {n} time{'s' if n != 1 else ''}, median {median}, longest {longest}"
    return text


def _notes(s: Series) -> str:
    notes = []
    if s.measured and s.down / s.measured >= 0.05:
        notes.append(f"the network was down in {_pct(s.down / s.measured)} of measurements")
    if s.measured and s.inconclusive / s.measured >= 0.05:
        notes.append(f"{_pct(s.inconclusive / s.measured)} inconclusive")
    return f"; {', '.join(notes)}" if notes else ""


def sentence(series: Sequence[Series]) -> str:
    """The sentence for one ISP, from its series (every family, and ALL)."""
    overall = next(s for s in series if s.family == ALL)
    families = [s for s in series if s.family != ALL]
    kinds: dict[tuple[str, str | None], list[Series]] = {}
    for s in families:
        kinds.setdefault(_kind(s), []).append(s)
    head = isp_label(overall)
    if len(kinds) <= 1:
        body = f"X {_clause(overall)}"
    else:  # each kind in the words of its best-measured family
        body = "; ".join(
            f"{', '.join(s.family for s in group)} {_clause(max(group, key=lambda s: s.measured))}"
            for _, group in sorted(kinds.items(), key=lambda kv: _ORDER.index(kv[0][0]))
        )
    return f"{head}: {body}{_notes(overall)} ({overall.measured} measurements)"


def blocked_time(series: Sequence[Series]) -> str:
    """An ISP's share of time blocked, split as its sentence splits it: one figure when every
    family behaved alike (``"75%"``), else one per family (``"x.com 100%, twimg.com 0%"``):
    "X" is blocked in a run when most of its targets are, so one figure would hide an open
    family. ``"-"`` for no verdict."""
    overall = next(s for s in series if s.family == ALL)
    families = [s for s in series if s.family != ALL]

    def share(s: Series) -> str:
        return "-" if s.stats.duty_cycle is None else _pct(s.stats.duty_cycle)

    if len({_kind(s) for s in families}) <= 1:
        return share(overall)
    ordered = sorted(families, key=lambda s: _ORDER.index(_kind(s)[0]))  # as in the sentence
    return ", ".join(f"{s.family} {share(s)}" for s in ordered)


def isp_label(s: Series) -> str:
    """``AS64500 Lab ISP A``, and ``(OONI data)`` after the series of OONI's measurements."""
    label = f"{s.asn} {s.network}".rstrip()
    return (
        label if s.source == "probe" else f"{label} ({SOURCE_NAMES.get(s.source, s.source)} data)"
    )


def by_isp(report: Report) -> list[list[Series]]:
    """The series of each ISP and source, in the report's order."""
    groups: dict[tuple[str, str], list[Series]] = {}
    for s in report.series:
        groups.setdefault((s.asn, s.source), []).append(s)
    return list(groups.values())


def sentences(report: Report) -> list[str]:
    return [sentence(group) for group in by_isp(report)]


def summary(report: Report) -> str:
    """The terminal summary: what was read, one sentence per ISP, what was skipped.

    Each line is :func:`~probe.printable.printable`: network names and families come
    from measurement files, and their escape sequences must not reach the terminal.
    """
    per_source = ", ".join(
        f"{n} {SOURCE_NAMES.get(source, source)}" for source, n in report.sources.items()
    )
    lines = [
        f"Read {report.lines} records from {report.files} files: {report.targets} target "
        f"measurements{f' ({per_source})' if per_source else ''}, {report.controls} control "
        f"rows; {report.duplicates} duplicates dropped; {report.rescored} re-scored with the "
        f"current rules (version {report.analysis_version})."
    ]
    if report.filtered:
        lines.append(f"{report.filtered} measurements outside --since/--until left out.")
    if report.skipped:
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(report.skipped.items()))
        lines.append(f"Skipped: {parts}.")
    if not report.targets or report.start is None or report.end is None:
        lines.append("No target measurements to report.")
        return "\n".join(map(printable, lines))
    lines.append(f"From {utc(report.start)} to {utc(report.end)}, buckets of "
                 f"{duration(report.bucket)}:")  # fmt: skip
    lines += [f"  {s}" for s in sentences(report)]
    return "\n".join(map(printable, lines))

"""The lab evaluation: the verdicts of a lab run scored against the lab's truth.

``probe lab eval DIR`` reads a run directory: ``DIR/truth.jsonl`` (one line
per window in which a technique was active: ``{"isp", "asn", "domain",
"technique", "method", "start", "end"}``, UTC ISO 8601, ``method`` the
verdict method the technique must be reported as, null for an outage or a
lossy link; a null or ``"*"`` domain means every domain) and the measurements
``DIR/<isp>/*.jsonl``. Each measurement is re-scored with
:func:`probe.verdict.verdict` (the rules under test, not the verdict stored
at the time; a control site's line with :func:`probe.verdict.control.control_verdict`,
as it is written) and matched to the truth by ``probe_asn``, the input's domain and
its time span: ``x_measurement_start_time`` (microseconds; files without it:
``measurement_start_time`` +-1 s for its whole seconds) + ``test_runtime``.

Scoring (pure: :func:`evaluate`):

* a blocked verdict whose method no window active during the measurement
  has is an error: ``false_positive`` (truth open, outage or lossy) or
  ``wrong_method``; precision must be 100%, so any such error fails.
* every measurement is scored against the truth at its own time span, none is
  left out. One whose span contains a switch (a sporadic window's edge) *straddles*
  it: its verdict is right when it matches the state on either side (a blocked
  verdict with the method of a window active during part of it counts as a true
  positive; ``ok`` as a true negative).
* a method of a window active during the whole span not reported is ``missed``;
  recall is pooled per method over every ISP and domain and must be >= 98%.
* a sporadic censor (:mod:`probe.lab.windows`): the fraction of its true open windows
  of >= 10 s in which a measurement saw the target open must be >= 90%; the onset and
  offset errors (from a switch to the first measurement that saw the new state) are
  reported.

The confusion matrix is per ISP x domain x method. Unreadable lines (a torn
last line) are skipped and counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from probe import store
from probe.format.vocab import Method, Status
from probe.lab import shares
from probe.lab.windows import MIN_OPEN, Sample, WindowStats, analyse
from probe.verdict.control import control_verdict
from probe.verdict.observations import domain_of
from probe.verdict.rules import Verdict, verdict

__all__ = [
    "Cell",
    "Evaluation",
    "Scored",
    "TruthWindow",
    "evaluate",
    "infer_interval",
    "main",
]

METHODS: Final = tuple(Method)
MIN_RECALL: Final = 0.98
#: Whether a random sample lands in a 10 s window is a matter of chance (about 1 - e^(-10/mean
#: interval) per window, more with spot checks): a statistical figure over a run of many
#: windows (the demo's), not a gate for a run of a few rounds.
MIN_OPEN_DETECTED: Final = 0.9
CLOCK_SLACK: Final = timedelta(seconds=1)  # measurement_start_time has whole seconds


@dataclass(frozen=True, slots=True)
class TruthWindow:
    isp: str
    asn: str
    domain: str | None  # None: every domain of the ISP
    technique: str
    method: str | None  # None: the probe must not say "blocked"
    start: datetime
    end: datetime
    sporadic: bool = True  # its edges are switches; files without the key: assume so

    @classmethod
    def from_json(cls, line: Mapping[str, Any]) -> TruthWindow:
        """One truth line; ``ValueError`` naming the key when it is malformed."""
        try:
            domain = line.get("domain")
            return cls(
                isp=str(line["isp"]),
                asn=_asn(line["asn"]),
                domain=None if domain in (None, "", "*") else str(domain).lower(),
                technique=str(line["technique"]),
                method=None if line["method"] is None else str(line["method"]),
                start=_utc(str(line["start"])),
                end=_utc(str(line["end"])),
                sporadic=bool(line.get("sporadic", True)),
            )
        except KeyError as exc:
            raise ValueError(f"truth line without {exc}: {dict(line)}") from exc


@dataclass(frozen=True, slots=True)
class Scored:
    """One measurement's verdict against the truth."""

    uid: str
    isp: str
    domain: str
    start: str
    active: tuple[str, ...]  # techniques active while it ran
    expected: tuple[str, ...]  # methods to report (empty: not blocked)
    allowed: tuple[str, ...]  # methods of windows active during part of it (a straddler)
    straddles: bool  # a switch happened while it ran
    status: str
    method: str | None
    detail: str | None
    explanation: str
    evidence: tuple[str, ...]
    error: str | None  # "false_positive" | "wrong_method" | "missed"


@dataclass(slots=True)
class Cell:
    isp: str
    domain: str
    method: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass(frozen=True, slots=True)
class Evaluation:
    interval: float
    measured: int
    straddling: int
    unreadable: int
    cells: tuple[Cell, ...]
    recall: Mapping[str, float]  # pooled per method, for methods the truth expects
    errors: tuple[Scored, ...]
    failures: tuple[str, ...] = field(default=())  # why the run fails
    sporadic: Mapping[str, int] = field(default_factory=dict)  # ISP -> measurements scored
    windows: WindowStats = field(default_factory=WindowStats)

    @property
    def open_detected(self) -> float | None:
        """The fraction of true open windows >= 10 s that a measurement saw open."""
        w = self.windows
        return w.detected / w.open_windows if w.open_windows else None

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "measured": self.measured,
            "straddling": self.straddling,
            "unreadable": self.unreadable,
            "cells": [
                {**asdict(c), "precision": c.precision, "recall": c.recall} for c in self.cells
            ],
            "recall": dict(self.recall),
            "errors": [asdict(e) for e in self.errors],
            "sporadic": dict(self.sporadic),
            "windows": {**asdict(self.windows), "open_detected": self.open_detected},
            "failures": list(self.failures),
            "exit_code": self.exit_code,
        }


def evaluate(
    measurements: Iterable[Mapping[str, Any] | None],
    truth: Sequence[TruthWindow],
    interval: float,
    min_open_detected: float = MIN_OPEN_DETECTED,
) -> Evaluation:
    """Score every measurement against ``truth`` (module docstring); pure.

    A None in ``measurements`` is a line that could not be read; it is counted.
    ``min_open_detected``: the share of open windows a passing run saw open (0: not a
    gate, for runs too short to sample many windows: see :data:`MIN_OPEN_DETECTED`).
    """
    isp_of = {w.asn: w.isp for w in truth}
    scored: list[Scored] = []
    spans: dict[tuple[str, str], list[Sample]] = {}
    unreadable = 0
    for m in measurements:
        pair = None if m is None else _score(m, truth, isp_of)
        if pair is None:
            unreadable += 1
            continue
        scored.append(pair[0])
        spans.setdefault((pair[0].isp, pair[0].domain), []).append(pair[1])
    # one cell per ISP x domain x method the truth expects there or a verdict reported there
    keys = {
        (s.isp, s.domain, method) for s in scored for method in (*s.expected, s.method) if method
    }
    keys |= {
        (isp_of[w.asn], s.domain, w.method)
        for w in truth
        for s in scored
        if w.method and isp_of[w.asn] == s.isp and w.domain in (None, s.domain)
    }
    cells = {key: Cell(*key) for key in keys}
    for s in scored:
        _count(cells, s)
    errors = [s for s in scored if s.error is not None]
    measured, straddling = len(scored), sum(s.straddles for s in scored)
    windows, sporadic = _windows(truth, spans, isp_of)
    ordered = tuple(sorted(cells.values(), key=lambda c: (c.isp, c.domain, c.method)))
    recall: dict[str, float] = {}
    for method in METHODS:
        tp = sum(c.tp for c in ordered if c.method == method)
        fn = sum(c.fn for c in ordered if c.method == method)
        if tp + fn:
            recall[method] = tp / (tp + fn)
    silent = sorted(set(isp_of.values()) - {s.isp for s in scored})  # nothing to judge there
    failures = (
        _failures(errors, recall, windows, min_open_detected)
        + (("no measurement to evaluate",) if not measured else ())
        + tuple(f"no measurement from {isp}, which the truth describes" for isp in silent)
    )
    return Evaluation(
        interval, measured, straddling, unreadable, ordered, recall, tuple(errors), failures,
        sporadic, windows,
    )  # fmt: skip


def _windows(
    truth: Sequence[TruthWindow],
    spans: Mapping[tuple[str, str], Sequence[Sample]],
    isp_of: Mapping[str, str],
) -> tuple[WindowStats, dict[str, int]]:
    """Open-window detection and switch timing over every ISP x domain a sporadic censor
    switched (:mod:`probe.lab.windows`), and how many measurements each such ISP has."""
    total, sporadic = WindowStats(), dict[str, int]()
    for (isp, domain), samples in sorted(spans.items()):
        mine = [w for w in truth if isp_of[w.asn] == isp and w.domain in (None, domain)]
        switched = [w for w in mine if w.sporadic and w.method is not None]
        if not switched or any(not w.sporadic and w.method is not None for w in mine):
            continue  # never switched, or blocked all along by another technique
        total += analyse([(w.start, w.end) for w in switched], samples, MIN_OPEN)
        sporadic[isp] = sporadic.get(isp, 0) + len(samples)
    return total, sporadic


def infer_interval(measurements: Iterable[Mapping[str, Any] | None]) -> float:
    """The median gap between consecutive measurements of one ISP and domain (0 if unknown)."""
    times: dict[tuple[str, str], list[datetime]] = {}
    for m in filter(None, measurements):
        start, domain = _start(m)[0], domain_of(m.get("input"))
        if start is not None and domain is not None:
            times.setdefault((str(m.get("probe_asn")), domain), []).append(start)
    gaps = [
        (b - a).total_seconds()
        for series in times.values()
        for a, b in zip(sorted(series), sorted(series)[1:], strict=False)
        if b > a
    ]
    return statistics.median(gaps) if gaps else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    """``probe lab eval DIR [--interval S] [--json FILE]``; non-zero when the run fails."""
    parser = argparse.ArgumentParser(
        prog="probe lab eval", description="Score a lab run's verdicts against its truth."
    )
    parser.add_argument("dir", type=Path, help="the lab run directory (truth.jsonl, <isp>/*.jsonl)")
    parser.add_argument(
        "--interval", type=float, help="seconds between runs (default: inferred from the data)"
    )
    parser.add_argument("--json", type=Path, help="also write the full evaluation here")
    parser.add_argument(
        "--min-open-detected",
        type=float,
        default=MIN_OPEN_DETECTED,
        metavar="FRACTION",
        help="the share of true open windows a passing run saw open (default: "
        f"{MIN_OPEN_DETECTED:g}; 0 for a run too short to sample many windows)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.min_open_detected <= 1:
        parser.error("--min-open-detected must be between 0 and 1")
    truth_path = args.dir / "truth.jsonl"
    if not truth_path.is_file():
        print(f"probe lab eval: {truth_path} not found", file=sys.stderr)
        return 2
    try:
        truth = [TruthWindow.from_json(line) for line in store.read([truth_path])]
    except ValueError as exc:
        print(f"probe lab eval: {truth_path}: {exc}", file=sys.stderr)
        return 2
    stats = store.ReadStats()
    rows = list(store.read(sorted(args.dir.glob("*/*.jsonl*")), stats))
    interval = args.interval if args.interval is not None else infer_interval(rows)
    result = evaluate(
        [*rows, *[None] * stats.skipped], truth, interval, args.min_open_detected
    )  # None: unreadable
    scores, outcome = _report(args.dir, result).rsplit("\n", 1)
    print(scores, _shares(args.dir, truth, rows), outcome, sep="\n")  # PASS / FAIL last
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return result.exit_code


def _shares(directory: Path, truth: Sequence[TruthWindow], rows: Sequence[Any]) -> str:
    """The report's blocked share of each ISP a censor switched on and off, and the truth's
    over the same span (:mod:`probe.lab.shares`)."""
    isp_of = {w.asn: w.isp for w in truth}
    switched: dict[str, tuple[str, list[tuple[datetime, datetime]]]] = {}
    for w in truth:
        if w.sporadic and w.method is not None:
            switched.setdefault(w.isp, (w.asn, []))[1].append((w.start, w.end))
    spans: dict[str, tuple[datetime, datetime]] = {}
    for m in filter(None, rows):
        isp, start = isp_of.get(_asn(m.get("probe_asn", ""))), _start(m)[0]
        if isp in switched and start is not None:
            first, last = spans.get(isp, (start, start))
            spans[isp] = (min(first, start), max(last, start))
    found = shares.compared(directory, switched, spans)
    if found is None:
        return "blocked share: no censor switched, or no DuckDB for the report ([report] extra)"
    return "blocked share in the report's sentence, of the same span in truth: " + ", ".join(
        s.shown() for s in found
    )


# --- scoring -------------------------------------------------------------------------------


def _score(
    m: Mapping[str, Any], truth: Sequence[TruthWindow], isp_of: Mapping[str, str]
) -> tuple[Scored, Sample] | None:
    start, precise = _start(m)
    domain = domain_of(m.get("input"))
    if start is None or domain is None:
        return None
    asn = _asn(m.get("probe_asn", ""))
    isp = isp_of.get(asn, asn)
    runtime = m.get("test_runtime")
    seconds = float(runtime) if isinstance(runtime, int | float) and runtime > 0 else 0.0
    slack = timedelta(0) if precise else CLOCK_SLACK
    span_start, span_end = start - slack, start + timedelta(seconds=seconds) + slack
    mine = [w for w in truth if w.asn == asn and w.domain in (None, domain)]
    active = [w for w in mine if w.start < span_end and w.end > span_start]
    whole = [w for w in active if w.start <= span_start and w.end >= span_end]
    straddles = any(
        span_start < edge < span_end for w in mine if w.sporadic for edge in (w.start, w.end)
    )
    methods = {w.method for w in active if w.method is not None}
    expected = tuple(sorted({w.method for w in whole if w.method is not None}))
    v = _judge(m)
    got = v.method if v.status == "blocked" else None
    error = None
    if got is not None and got not in methods:
        error = "wrong_method" if methods else "false_positive"
    elif expected and got not in expected:
        error = "missed"
    seen = {"ok": False, "blocked": True}.get(v.status)
    return Scored(
        uid=str(m.get("measurement_uid", "")),
        isp=isp,
        domain=domain,
        start=str(m.get("measurement_start_time")),
        active=tuple(sorted({w.technique for w in active})),
        expected=expected,
        allowed=tuple(sorted(methods - set(expected))),
        straddles=straddles,
        status=v.status,
        method=v.method,
        detail=v.detail,
        explanation=v.explanation,
        evidence=v.evidence,
        error=error,
    ), Sample(span_start, span_end, seen)


def _judge(m: Mapping[str, Any]) -> Verdict:
    """The verdict a line gets as it is written (:func:`probe.pipeline.scored`): a control
    site's line its own (never blocked: a control that timed out on a loaded host has no
    control of its own to tell it from a filter), a target's the rules'."""
    annotations = m.get("annotations")
    role = annotations.get("x_role") if isinstance(annotations, Mapping) else None
    return control_verdict(m) if role == "control" else verdict(m)


def _count(cells: Mapping[tuple[str, str, str], Cell], s: Scored) -> None:
    got = s.method if s.status == Status.BLOCKED else None
    for method in METHODS:
        cell = cells.get((s.isp, s.domain, method))
        if cell is None:
            continue
        expected, said = method in s.expected, got == method
        # right, or right on one side of the switch it ran across
        if said and (expected or method in s.allowed):
            cell.tp += 1
        elif said:
            cell.fp += 1
        elif expected:
            cell.fn += 1
        else:
            cell.tn += 1


def _failures(
    errors: Sequence[Scored],
    recall: Mapping[str, float],
    windows: WindowStats,
    min_open_detected: float,
) -> tuple[str, ...]:
    failures = []
    false_positive = sum(e.error == "false_positive" for e in errors)
    wrong = sum(e.error == "wrong_method" for e in errors)
    if false_positive:
        failures.append(
            f"{false_positive} blocked verdict(s) where the truth says open, outage or lossy"
        )
    if wrong:
        failures.append(f"{wrong} blocked verdict(s) name the wrong method")
    failures += [
        f"recall of {method} is {value:.1%} (< {MIN_RECALL:.0%})"
        for method, value in recall.items()
        if value < MIN_RECALL
    ]
    if windows.open_windows and windows.detected / windows.open_windows < min_open_detected:
        failures.append(
            f"{windows.detected} of {windows.open_windows} open windows of >= {MIN_OPEN:g} s "
            f"detected (< {min_open_detected:.0%})"
        )
    return tuple(failures)


def _report(directory: Path, r: Evaluation) -> str:
    lines = [
        f"lab evaluation of {directory}: {r.measured} measurements, every one scored against "
        f"the truth at its own time; {r.unreadable} unreadable; interval {r.interval:g} s",
        f"{'isp':<10} {'domain':<22} {'method':<11} {'tp':>5} {'fp':>4} {'fn':>4} {'tn':>5} "
        f"{'precision':>9} {'recall':>7}",
    ]
    for c in r.cells:
        lines.append(
            f"{c.isp:<10} {c.domain:<22} {c.method:<11} {c.tp:>5} {c.fp:>4} {c.fn:>4} {c.tn:>5} "
            f"{_percent(c.precision):>9} {_percent(c.recall):>7}"
        )
    pooled = ", ".join(f"{method} {value:.1%}" for method, value in r.recall.items())
    lines.append(f"recall by method: {pooled or 'nothing expected'}")
    lines += _sporadic_lines(r)
    lines.append(f"wrong verdicts: {len(r.errors)}")
    for e in r.errors:
        truth = ", ".join(e.active) or "open"
        lines.append(
            f"  {e.start} {e.isp} {e.domain} {e.uid}: {e.error}: truth {truth}; "
            f"got {e.status} {e.detail or ''}".rstrip()
        )
        lines.append(f"    {e.explanation}")
        lines.extend(f"    - {item}" for item in e.evidence[:6])
    lines.append("FAIL: " + "; ".join(r.failures) if r.failures else "PASS")
    return "\n".join(lines)


def _sporadic_lines(r: Evaluation) -> list[str]:
    """How the sporadic ISPs were scored, in plain words (issue 12: the demo says it)."""
    if not r.sporadic:
        return ["sporadic ISPs: none in this run"]
    w = r.windows
    isps = ", ".join(f"{isp} ({n} measurements)" for isp, n in r.sporadic.items())
    found = "-" if r.open_detected is None else f"{r.open_detected:.1%}"
    return [
        f"sporadic ISPs: {isps}: every measurement scored against the truth at its own start "
        f"time (x_measurement_start_time, the censor's switch times to the millisecond), none "
        f"left out; {r.straddling} ran across a switch and count as right when their verdict "
        f"matches the state on either side",
        f"open windows of >= {MIN_OPEN:g} s: {w.detected} of {w.open_windows} seen open "
        f"({found}); onset error {_seconds(w.onset_errors)}; "
        f"offset error {_seconds(w.offset_errors)}",
    ]


def _seconds(errors: Sequence[float]) -> str:
    if not errors:
        return "- (no switch timed)"
    return (
        f"median {statistics.median(errors):.1f} s, max {max(errors):.1f} s "
        f"over {len(errors)} switches"
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _asn(value: object) -> str:
    text = str(value).upper()
    return text if text.startswith("AS") else f"AS{text}"


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _start(m: Mapping[str, Any]) -> tuple[datetime | None, bool]:
    """The start time, and whether it is precise (``x_measurement_start_time``)."""
    for key, form, precise in (
        ("x_measurement_start_time", "%Y-%m-%d %H:%M:%S.%f", True),
        ("measurement_start_time", "%Y-%m-%d %H:%M:%S", False),
    ):
        try:
            return datetime.strptime(str(m.get(key)), form).replace(tzinfo=UTC), precise
        except ValueError:
            continue
    return None, False

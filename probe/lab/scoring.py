"""One lab measurement scored against the truth at its own time span (pure).

The truth (:class:`TruthWindow`, one line of a run's ``truth.jsonl``) and one measurement's
score (:class:`Scored`): its verdict re-judged by the rules under test, the truth's methods
active during the whole of its span (``expected``) and during part of it (``allowed``: it ran
across a switch), and its error if any. :func:`count` adds a score to the confusion matrix
(:class:`Cell`); :class:`Evaluation` holds a whole run's. The rules are stated in
:mod:`probe.lab.evaluate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from probe.format.fields import domain_of
from probe.format.vocab import Method, Status
from probe.lab.windows import Sample, WindowStats
from probe.verdict.control import control_verdict
from probe.verdict.rules import Verdict, verdict

__all__ = [
    "METHODS",
    "Cell",
    "Evaluation",
    "Scored",
    "TruthWindow",
    "as_asn",
    "count",
    "score",
    "start_of",
]

METHODS: Final = tuple(Method)
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
                asn=as_asn(line["asn"]),
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


def score(
    m: Mapping[str, Any], truth: Sequence[TruthWindow], isp_of: Mapping[str, str]
) -> tuple[Scored, Sample] | None:
    start, precise = start_of(m)
    domain = domain_of(m.get("input"))
    if start is None or domain is None:
        return None
    asn = as_asn(m.get("probe_asn", ""))
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
    got = v.method if v.status == Status.BLOCKED else None
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


def count(cells: Mapping[tuple[str, str, str], Cell], s: Scored) -> None:
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


def as_asn(value: object) -> str:
    text = str(value).upper()
    return text if text.startswith("AS") else f"AS{text}"


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def start_of(m: Mapping[str, Any]) -> tuple[datetime | None, bool]:
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

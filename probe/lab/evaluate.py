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
last line) are skipped and counted. One measurement's score is :mod:`probe.lab.scoring`;
the printed figures are :mod:`probe.lab.figures`.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from probe import store
from probe.format.fields import domain_of
from probe.lab import figures
from probe.lab.scoring import (
    METHODS,
    Cell,
    Evaluation,
    Scored,
    TruthWindow,
    count,
    score,
    start_of,
)
from probe.lab.windows import MIN_OPEN, Sample, WindowStats, analyse

__all__ = [
    "Cell",
    "Evaluation",
    "Scored",
    "TruthWindow",
    "evaluate",
    "infer_interval",
    "judge_run",
]

MIN_RECALL: Final = 0.98
#: Whether a random sample lands in a 10 s window is a matter of chance (about 1 - e^(-10/mean
#: interval) per window, more with spot checks): a statistical figure over a run of many
#: windows (the demo's), not a gate for a run of a few rounds.
MIN_OPEN_DETECTED: Final = 0.9


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
        pair = None if m is None else score(m, truth, isp_of)
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
        count(cells, s)
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
        start, domain = start_of(m)[0], domain_of(m.get("input"))
        if start is not None and domain is not None:
            times.setdefault((str(m.get("probe_asn")), domain), []).append(start)
    gaps = [
        (b - a).total_seconds()
        for series in times.values()
        for a, b in zip(sorted(series), sorted(series)[1:], strict=False)
        if b > a
    ]
    return statistics.median(gaps) if gaps else 0.0


def judge_run(
    directory: Path,
    *,
    interval: float | None = None,
    json_path: Path | None = None,
    min_open_detected: float | None = None,
) -> int:
    """``probe lab eval``: score a lab run's folder against its truth, print the figures
    (PASS / FAIL last), optionally write the whole evaluation as JSON; the exit code (2: no
    readable truth). ``interval``: seconds between runs, else inferred from the data;
    ``min_open_detected``: the open-window gate, else :data:`MIN_OPEN_DETECTED`."""
    truth_path = directory / "truth.jsonl"
    if not truth_path.is_file():
        print(f"probe lab eval: {truth_path} not found", file=sys.stderr)
        return 2
    try:
        truth = [TruthWindow.from_json(line) for line in store.read([truth_path])]
    except ValueError as exc:
        print(f"probe lab eval: {truth_path}: {exc}", file=sys.stderr)
        return 2
    stats = store.ReadStats()
    rows = list(store.read(sorted(directory.glob("*/*.jsonl*")), stats))
    interval = interval if interval is not None else infer_interval(rows)
    result = evaluate(
        [*rows, *[None] * stats.skipped],  # None: unreadable
        truth,
        interval,
        MIN_OPEN_DETECTED if min_open_detected is None else min_open_detected,
    )
    scores, outcome = figures.report(directory, result).rsplit("\n", 1)
    shares = figures.shares_line(directory, truth, rows)
    print(scores, shares, outcome, sep="\n")  # PASS / FAIL last
    if json_path is not None:
        json_path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return result.exit_code


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

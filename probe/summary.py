"""What ``probe run`` shows a volunteer: one row per target, one plain word per step.

Pure functions of measurement dicts (read, never changed), so the same words come out of a
live run and of stored files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from probe.format.vocab import Role, Status, Tag
from probe.printable import printable

__all__ = ["Row", "row", "step_words", "table"]

_STEPS = (
    ("DNS", "queries"),
    ("TCP", "tcp_connect"),
    ("TLS", "tls_handshakes"),
    ("HTTP", "requests"),
)


def _failure(entry: Mapping[str, Any]) -> str | None:
    status = entry.get("status")
    if isinstance(status, Mapping):
        return status.get("failure")
    return entry.get("failure")


def step_words(test_keys: Mapping[str, Any]) -> dict[str, str]:
    """For each step, "ok", the first failure string among the target's own tries, or "-"."""
    words = {}
    for name, key in _STEPS:
        own = [
            e
            for e in test_keys.get(key, [])
            if Tag.TARGET in e.get("tags", ())
            or (key == "queries" and e.get("engine") == "getaddrinfo")
        ]
        if not own:
            words[name] = "-"
            continue
        failures = [f for f in map(_failure, own) if f is not None]
        words[name] = "ok" if len(failures) < len(own) else failures[0]
    return words


@dataclass(frozen=True, slots=True)
class Row:
    """What the table shows of one target: all a run keeps of a measurement once written."""

    domain: str
    words: tuple[str, ...]  # one per step of _STEPS
    status: str  # the verdict's, "-" without one
    explanation: str


def row(m: Mapping[str, Any]) -> Row | None:
    """The table row of a target's measurement; None for a control site's."""
    if m.get("annotations", {}).get("x_role") != Role.TARGET:
        return None
    tk = m["test_keys"]
    words = step_words(tk)
    v = tk.get("x_verdict") or {}
    domain = str(m.get("input", "")).removeprefix("https://").rstrip("/")
    return Row(
        domain,
        tuple(words[s] for s, _ in _STEPS),
        str(v.get("status", "-")),
        str(v.get("explanation", "")),
    )


def table(rows: Iterable[Row]) -> str:
    """A fixed-width table: target, DNS, TCP, TLS, HTTP, verdict; printable (for a terminal)."""
    cells: list[tuple[str, ...]] = [("TARGET", "DNS", "TCP", "TLS", "HTTP", "VERDICT")]
    notes = []
    for r in rows:
        domain = printable(r.domain)
        cells.append((domain, *map(printable, (*r.words, r.status))))
        if r.status not in ("-", Status.OK):
            notes.append(f"{domain}: {printable(r.explanation)}")
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines + (["", *notes] if notes else []))

"""The lab's ground truth: when which ISP applied which technique to which domain.

``truth.jsonl`` holds one JSON object per (window, domain)::

    {"isp": "isp1", "asn": "AS64496", "domain": "x.com", "technique": "sni_reset",
     "method": "tls", "start": "2024-02-17T10:00:00.000Z", "end": "2024-02-17T10:00:42.125Z",
     "sporadic": false}

``method`` is :data:`probe.lab.censors.EXPECTED_METHOD` of the technique: what the probe's
verdict must say (null: it must not say "blocked"). A window is appended when it closes, or
at shutdown if still open, and each line is flushed and fsynced at once: a crash loses only
the windows still open. Several namespace threads share one :class:`TruthLog`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from probe import store
from probe.lab.censors import EXPECTED_METHOD

__all__ = ["TruthLog", "TruthRecord", "read", "timestamp"]


@dataclass(frozen=True, slots=True)
class TruthRecord:
    isp: str
    asn: str  # "AS<n>", as in the probe's probe_asn
    domain: str
    technique: str
    method: str | None
    start: str  # UTC, ISO 8601 with milliseconds and "Z"
    end: str
    sporadic: bool  # switched on a schedule: its start and end are switches


def timestamp(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds, e.g. ``2024-02-17T10:00:00.000Z``."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


class TruthLog:
    """Appends windows to ``truth.jsonl``; safe to call from any thread."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8")

    def window(
        self,
        isp: str,
        asn: int,
        technique: str,
        domains: Iterable[str],
        start: datetime,
        end: datetime,
        *,
        sporadic: bool,
    ) -> None:
        """Record that ``technique`` was active on ``domains`` from ``start`` to ``end``."""
        lines = "".join(
            json.dumps(
                asdict(
                    TruthRecord(
                        isp,
                        f"AS{asn}",
                        domain,
                        technique,
                        EXPECTED_METHOD[technique],
                        timestamp(start),
                        timestamp(end),
                        sporadic,
                    )
                )
            )
            + "\n"
            for domain in domains
        )
        with self._lock:
            self._file.write(lines)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read(path: Path) -> list[TruthRecord]:
    """The records of a truth file; a torn last line (a crash mid-write) is skipped."""
    records = []
    for line in store.read([path]):
        with contextlib.suppress(TypeError):  # not a truth record: another shape of object
            records.append(TruthRecord(**line))
    return records

"""One measurement's way to disk: measure -> write -> verdict -> store + index.

:mod:`probe.campaign` measures and hands each domain's records, the moment they are complete,
to a :class:`Writer`, which

1. writes them as a measurement (:func:`probe.format.writer.measurement`),
2. adds the verdict (:func:`scored`: a new measurement, the input is not touched),
3. appends it (fsynced) to the day file (:mod:`probe.store`) and its row to the day's index
   (:mod:`probe.index`), then to the upload outbox,
4. keeps only its table row (:mod:`probe.summary`), so memory does not grow with the list.

``probe run``, ``probe schedule`` and ``probe run --once`` (and so the lab, which runs
``probe run`` in each simulated ISP) go through it; the table printer only reads its rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe import campaign, index, store, upload
from probe.config import Config
from probe.format import writer
from probe.format.vocab import Role, Status, Trigger
from probe.identity import Discovery
from probe.summary import Row, row
from probe.verdict import summary_keys, verdict
from probe.verdict.control import control_verdict

__all__ = ["Outcome", "Writer", "scored"]


def scored(m: Mapping[str, Any]) -> dict[str, Any]:
    """The measurement with its verdict keys (``blocking``, ``accessible``, ``x_verdict``,
    ``x_analysis_version``) in its ``test_keys``: a target's verdict, or a control site's
    (:mod:`probe.verdict.control`: ok, down or inconclusive, never blocked), so any scorer
    reads every line alike. A new dict: ``m`` is not changed."""
    target = m.get("annotations", {}).get("x_role") == Role.TARGET
    new = summary_keys(verdict(m) if target else control_verdict(m))
    return dict(m) | {"test_keys": m["test_keys"] | new}


@dataclass(frozen=True, slots=True)
class Outcome:
    count: int  # measurements written
    path: Path
    rows: tuple[Row, ...]  # the targets', in the config's order: what `probe run` prints

    @property
    def statuses(self) -> dict[str, str]:
        """Target domain -> verdict status ("inconclusive" when there is no verdict)."""
        return {r.domain: Status.INCONCLUSIVE if r.status == "-" else r.status for r in self.rows}


def _store(path: Path, m: Mapping[str, Any]) -> None:
    """The line, then its index row: the index never names a line that is not on disk."""
    [(start, length)] = store.append_lines(path, [m])
    index.append(path, m, start, length)


class Writer:
    """A campaign's sink (:data:`probe.campaign.Sink`): each domain's measurement, with its
    verdict, stored and indexed the moment it is complete, and put in the upload outbox."""

    def __init__(
        self,
        config: Config,
        found: Discovery,
        trigger: Trigger,
        output: Path,
        outbox: upload.Batch | None,
        each: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.config, self.found, self.outbox, self.each = config, found, outbox, each
        self.start = time.time()
        self.who = writer.identity_of(config, found.identity)
        self.report_id = writer.new_report_id(self.start, self.who)
        self.annotations = {**found.annotations, "x_trigger": trigger}
        self.path = store.day_file(output, self.start)
        self.count = 0
        self.rows: dict[str, Row] = {}
        self.error: OSError | None = None  # the first failure to store: the campaign's
        self._lock = asyncio.Lock()  # one append at a time (each repairs the file's tail)

    async def __call__(
        self, d: campaign.DomainResult, controls: tuple[campaign.DomainResult, ...]
    ) -> None:
        if self.error is not None:
            return
        m = scored(
            writer.measurement(
                d, controls, self.start, self.who, self.report_id,
                annotations=self.annotations, scrub=self.found.scrub,
            )
        )  # fmt: skip
        async with self._lock:
            try:  # fsync off the event loop: a slow disk must not stall the timed steps
                await asyncio.to_thread(_store, self.path, m)
                if self.outbox is not None:
                    self.outbox.add(m)
            except OSError as exc:
                self.error = exc
                return
        self.count += 1
        if (r := row(m)) is not None:
            self.rows[r.domain] = r
        if self.each is not None:
            self.each(m)

    def outcome(self) -> Outcome:
        if self.error is not None:
            raise self.error
        rows = tuple(self.rows[t] for t in self.config.targets if t in self.rows)
        return Outcome(self.count, self.path, rows)

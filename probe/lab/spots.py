"""Spot checks in ``probe lab run``: what ``probe schedule`` does between regular campaigns.

``lab run`` measures every ISP in rounds; a sporadic censor's open windows are often shorter
than a round. So, as :mod:`probe.schedule` does for a volunteer, the runner follows each
ISP's verdicts (the ``x_verdict`` of the target lines its probe wrote) with
:func:`probe.schedule_policy.track`, and once a target of an ISP has flipped, re-measures that
ISP's targets last seen blocked (:func:`probe.schedule_policy.spotted`) and the ones bursting, with
``probe run --only``, at Poisson times (:func:`probe.schedule_policy.spot_wait`), whenever no probe
of that ISP runs. An ISP that never flipped gets no spot check here: the lab's rounds already
sample it at the regular rate, and the load of the lab's one daemon is the limit.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from probe.format.fields import domain_of
from probe.format.vocab import Role
from probe.schedule_policy import TargetState, bursting, spot_wait, spotted, track

__all__ = ["Spots", "statuses"]

Launch = Callable[[str, tuple[str, ...]], subprocess.Popen[bytes]]


def statuses(text: str) -> dict[str, str]:
    """Target domain -> its verdict's status, from measurement lines (last one wins)."""
    found = {}
    for line in text.splitlines():
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            m = json.loads(line)
            if m["annotations"]["x_role"] == Role.TARGET:
                domain = domain_of(m["input"])
                if domain is not None:
                    found[domain] = str(m["test_keys"]["x_verdict"]["status"])
    return found


class Spots:
    """The spot checks of one ``lab run`` (module docstring)."""

    def __init__(self, output: Path, interval: float, burst: float, rng: random.Random) -> None:
        self._output, self._interval, self._burst, self._rng = output, interval, burst, rng
        self._states: dict[str, dict[str, TargetState]] = {}
        self._read: dict[Path, int] = {}  # file -> bytes already read
        self._due: dict[str, float] = {}
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.launched = 0

    def busy(self) -> bool:
        return any(p.poll() is None for p in self.running.values())

    def step(self, isps: list[str], idle: Callable[[str], bool], launch: Launch) -> None:
        """Follow the verdicts of every idle ISP; launch the spot checks that are due."""
        now = time.monotonic()
        for isp in isps:
            if not idle(isp) or (isp in self.running and self.running[isp].poll() is None):
                continue
            states = track(self._states.get(isp, {}), self._new_statuses(isp), now, self._burst)
            self._states[isp] = states
            if not any(s.burst_until > 0 for s in states.values()):
                continue  # never flipped
            targets = tuple(sorted({*spotted(states, now), *bursting(states, now)}))
            due = self._due.setdefault(isp, now)
            if targets and now >= due:
                self.running[isp] = launch(isp, targets)
                self.launched += 1
                self._due[isp] = now + spot_wait(states, self._interval, self._rng.random())

    def _new_statuses(self, isp: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for path in sorted((self._output / isp).glob("*.jsonl")):
            with contextlib.suppress(OSError), path.open("rb") as f:
                f.seek(self._read.get(path, 0))
                data = f.read()
                complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
                self._read[path] = self._read.get(path, 0) + len(complete)
                found |= statuses(complete.decode("utf-8", "replace"))
        return found

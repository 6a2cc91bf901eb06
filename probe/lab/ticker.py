"""What a ``lab run`` is doing between its log lines, on one line of a terminal.

A round of probes takes about as long as the slowest ISP's ``probe run`` and is followed
by a wait for the next round: silent tens of seconds. On a terminal, stderr's last line
says which (``lab: round 2: 9 of 13 ISPs measured``, ``lab: round 3 in 12 s``) and is
cleared before the next log line. Not a terminal (a log file, CI): nothing extra is written.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["countdown", "finished"]

TICK = 0.5  # seconds between updates of the line


def finished(probes: Sequence[subprocess.Popen[bytes]], what: str) -> list[int]:
    """The exit codes of ``probes``, once all are done; meanwhile how many are."""
    while sys.stderr.isatty() and (done := sum(p.poll() is not None for p in probes)) < len(probes):
        _line(f"lab: {what}: {done} of {len(probes)} ISPs measured")
        time.sleep(TICK)
    _line("")
    return [p.wait() for p in probes]


def countdown(seconds: float, what: str) -> None:
    """Sleep ``seconds``; meanwhile the seconds left before ``what``."""
    end = time.monotonic() + seconds
    while sys.stderr.isatty() and (left := end - time.monotonic()) > 0:
        _line(f"lab: {what} in {math.ceil(left)} s")
        time.sleep(min(TICK, left))
    _line("")
    time.sleep(max(0.0, end - time.monotonic()))


def _line(text: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\x1b[K{text}")
        sys.stderr.flush()

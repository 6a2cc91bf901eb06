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
from collections.abc import Sequence

__all__ = ["clear", "measuring", "waiting"]


def measuring(probes: Sequence[subprocess.Popen[bytes]], what: str) -> None:
    """How many of ``probes`` are done."""
    done = sum(p.poll() is not None for p in probes)
    _line(f"lab: {what}: {done} of {len(probes)} ISPs measured")


def waiting(seconds: float, what: str) -> None:
    """The seconds left before ``what``."""
    _line(f"lab: {what} in {math.ceil(seconds)} s" if seconds > 0 else "")


def clear() -> None:
    """Before the next log line."""
    _line("")


def _line(text: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\x1b[K{text}")
        sys.stderr.flush()

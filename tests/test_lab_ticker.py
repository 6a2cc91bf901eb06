"""``lab run`` on a terminal says what it waits for between its log lines; elsewhere nothing."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from probe.lab import ticker


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def sleeper(seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def test_on_a_terminal_the_round_and_the_wait_are_said_then_cleared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    done, running = sleeper(0), sleeper(5)
    done.wait()
    ticker.measuring([done, running], "round 2")
    running.kill()
    running.wait()
    ticker.waiting(1.2, "round 3")
    ticker.waiting(-0.1, "round 3")  # late: the line is cleared, no negative seconds
    ticker.clear()
    text = err.getvalue()
    assert "\r\x1b[Klab: round 2: 1 of 2 ISPs measured" in text
    assert "\r\x1b[Klab: round 3 in 2 s" in text and " in -" not in text
    assert text.endswith("\r\x1b[K")  # the next log line starts on a clean line


def test_elsewhere_nothing_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    p = sleeper(0)
    p.wait()
    ticker.measuring([p], "round 1")
    ticker.waiting(3.0, "the end")
    ticker.clear()
    assert err.getvalue() == ""

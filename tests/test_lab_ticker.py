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
    monkeypatch.setattr(ticker, "TICK", 0.05)
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    done = sleeper(0)
    done.wait()  # one of two already measured when the line is first written
    assert ticker.finished([done, sleeper(0.4)], "round 2") == [0, 0]
    ticker.countdown(1.2, "round 3")
    text = err.getvalue()
    assert "\r\x1b[Klab: round 2: 1 of 2 ISPs measured" in text
    assert "\r\x1b[Klab: round 3 in 2 s" in text and "\r\x1b[Klab: round 3 in 1 s" in text
    assert text.endswith("\r\x1b[K")  # the next log line starts on a clean line


def test_elsewhere_nothing_is_written_and_the_wait_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert ticker.finished([sleeper(0)], "round 1") == [0]
    ticker.countdown(-1.0, "the end")  # already late: no wait, no error
    assert err.getvalue() == ""

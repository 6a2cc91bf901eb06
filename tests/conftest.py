"""Fixtures of every test: a private probe state dir, with consent on record.

``probe run`` refuses to measure without recorded consent when it cannot ask
(tests are not a terminal). Each test gets its own ``$PROBE_STATE_DIR`` with
consent recorded, so no test reads or writes the real state dir, and
subprocesses (``probe schedule``, the lab's probes) inherit it. Tests of the
consent itself point ``$PROBE_STATE_DIR`` elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from probe import consent


@pytest.fixture(autouse=True)
def probe_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path_factory.mktemp("state")
    consent.record(state)
    monkeypatch.setenv("PROBE_STATE_DIR", str(state))
    return state

"""Fixtures of the lab tests: ``lab``, a tiny client -- router -- server lab per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from labutil import lab_leftovers, require_root
from minilab import PREFIX, Lab, build

from probe.lab import netns, runner


@pytest.fixture(scope="session", autouse=True)
def no_leftover_tiny_labs() -> None:
    """A killed test run leaves its tiny labs' namespaces (veths, nft rules) behind; their
    threads died with it, so they are only clutter: remove them before the first test."""
    if os.geteuid() == 0:
        netns.remove(netns.names(PREFIX))
    # A full lab left by a killed run would fail every lab test; on a CI machine nobody's
    # lab can be in use, so take it down (elsewhere the tests refuse, naming `probe lab down`).
    if os.geteuid() == 0 and os.environ.get("CI") == "true" and lab_leftovers():
        runner.down()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    require_root()  # skips without root, fails in CI
    with build(tmp_path) as built:
        yield built

"""Fixtures of the lab tests: ``lab``, a tiny client -- router -- server lab per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from labutil import require_root
from minilab import Lab, build


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    require_root()  # skips without root, fails in CI
    with build(tmp_path) as built:
        yield built

"""The HTML report renders in a real browser: headless Chromium, no network, no errors.

Needs Debian's ``chromium`` package. Without it the test is skipped with the reason,
except in CI (``CI=true``), where a skip would hide a broken page: there it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("duckdb", reason="the report needs the project's [report] extra (duckdb)")

from test_report import EXPECTED, archive

from probe.report.engine import build
from probe.report.html import render

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run",
         "--enable-logging=stderr", "--v=0")  # fmt: skip


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "headless Chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot check the HTML report in CI: {reason}")
        pytest.skip(reason)
    return path


def browse(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = archive(tmp_path_factory.mktemp("archive"))
    path = root.parent / "report.html"
    path.write_text(render(build([root])), encoding="utf-8")
    return path


def test_the_page_is_one_file_that_loads_nothing(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(http" not in text


def test_a_network_name_cannot_break_the_page(tmp_path: Path) -> None:
    report = build([archive(tmp_path)])
    hostile = "ISP <!--<script></script>"  # "<!--<script>" in a script hides the rest of the page
    series = tuple(replace(s, network=hostile) for s in report.series)
    text = render(replace(report, series=series))
    assert "<!--" not in text and "<script></script>" not in text


def test_the_charts_render_in_chromium_without_errors(page: Path, tmp_path: Path) -> None:
    done = browse(page, tmp_path, "--dump-dom")
    dom = done.stdout
    # 4 ISPs x 60 buckets; open windows: B's two, and C open all along.
    assert 'data-rendered="240 cells, 3 windows"' in dom
    assert "data-errors" not in dom
    assert "Uncaught" not in done.stderr and ":CONSOLE" not in done.stderr
    assert dom.count('class="cell"') == 240
    assert dom.count('class="window"') == 3
    assert all(s in dom for s in EXPECTED)


def test_the_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1400,1200")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000  # a white page is ~5 KB

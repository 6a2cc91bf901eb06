"""probe lab run's spot checks: verdicts followed from the lines written, no network."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

from probe.lab.spots import Spots, statuses


def line(domain: str, status: str, role: str = "target") -> str:
    m = {"annotations": {"x_role": role}, "input": f"https://{domain}/",
         "test_keys": {"x_verdict": {"status": status}}}  # fmt: skip
    return json.dumps(m) + "\n"


def test_statuses_read_targets_only_and_skip_broken_lines() -> None:
    text = line("x.com", "blocked") + line("www.example.com", "ok", "control") + "{torn"
    assert statuses(text + "\n" + line("x.com", "ok") + line("t.co", "down")) == {
        "x.com": "ok",
        "t.co": "down",
    }


def test_a_flipped_isp_gets_spot_checks_of_its_blocked_targets(tmp_path: Path) -> None:
    (tmp_path / "isp6").mkdir()
    (tmp_path / "isp1").mkdir()
    day6, day1 = tmp_path / "isp6" / "d.jsonl", tmp_path / "isp1" / "d.jsonl"
    day6.write_text(line("x.com", "blocked") + line("t.co", "blocked"))
    day1.write_text(line("x.com", "blocked"))
    launched: list[tuple[str, tuple[str, ...]]] = []

    def launch(isp: str, only: tuple[str, ...]) -> subprocess.Popen[bytes]:
        launched.append((isp, only))
        return subprocess.Popen(["true"])

    spots = Spots(tmp_path, 20.0, 600.0, random.Random(1))
    spots.step(["isp1", "isp6"], lambda isp: True, launch)
    assert launched == []  # no flip seen yet: the rounds sample it
    with day6.open("a") as f:
        f.write(line("x.com", "ok") + '{"half a line')  # x.com opened; a line being written
    spots.step(["isp1", "isp6"], lambda isp: True, launch)
    # isp6 flipped: its blocked target (t.co) and the one bursting (x.com) are re-measured
    assert launched == [("isp6", ("t.co", "x.com"))] and spots.launched == 1
    spots.running["isp6"].wait()
    spots.step(["isp1", "isp6"], lambda isp: False, launch)  # a round probe runs there
    assert len(launched) == 1

"""``probe config show`` prints the config a run would use: every key after defaults, which file
and why, and TOML that loads back to the same config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from test_config import MINIMAL, ROOT

from probe.__main__ import main
from probe.config import load


def show(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["config", "show", *args])
    out, err = capsys.readouterr()
    return code, out, err


def reloaded(tmp_path: Path, text: str, original: Path) -> None:
    """The printed TOML is a config, and the same one as ``original``'s."""
    again = tmp_path / "shown.toml"
    again.write_text(text)
    assert replace(load(again), path="") == replace(load(original), path="")


def test_a_file_with_only_the_required_keys_shows_every_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(MINIMAL + "[schedule]\ninterval = 60\n")
    code, out, err = show(capsys, "--config", str(path))
    assert (code, err) == (0, "")
    assert f"# Read from {path} (--config)." in out
    lines = out.splitlines()
    assert "interval = 60.0" in lines  # set in the file: no mark
    assert 'sampling = "poisson"  # default' in lines
    assert "tls = 4.0  # default" in lines
    assert 'control_sni = "www.example.com"  # default' in lines  # "": the first control site
    resolver = ["[[resolvers]]", 'engine = "udp"', 'address = "127.0.0.1"', 'url = ""',
                "port = 53", "control = true"]  # fmt: skip
    assert lines[-6:] == resolver
    reloaded(tmp_path, out, path)


def test_the_default_config_says_where_it_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROBE_CONFIG", raising=False)
    monkeypatch.chdir(ROOT)
    code, out, _ = show(capsys)
    assert code == 0
    assert f"{ROOT / 'configs' / 'x.toml'} (configs/x.toml in the working folder)" in out
    reloaded(tmp_path, out, ROOT / "configs" / "x.toml")
    monkeypatch.chdir(tmp_path)  # no checkout here: the installed copy
    code, out, _ = show(capsys)
    assert code == 0 and "(the copy installed with the package)." in out
    monkeypatch.setenv("PROBE_CONFIG", str(ROOT / "configs" / "x.toml"))
    code, out, _ = show(capsys)
    assert code == 0 and "(x.toml" not in out and "($PROBE_CONFIG)." in out


def test_an_unusable_config_says_why_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL + "[schedule]\ninterval = 5\n")
    code, out, err = show(capsys, "--config", str(path))
    assert (code, out) == (2, "")
    why = "schedule.interval: must be in [30, 86400], got 5.0"
    assert err == f"probe: config error: {path}: {why}\n"

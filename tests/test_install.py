"""An installed probe (a wheel, no checkout) finds its packaged config and lab scenarios.

The wheel is built from a copy of the checkout (setuptools writes build/ and *.egg-info next
to the sources) and installed into a fresh venv without pip; the dev venv's site-packages
reach it through a ``.pth`` line, after its own, so the dependencies need no download and
the probe imported is the wheel's, not the checkout's (the editable install's own ``.pth``
is not read there). Nothing brings a lab up: ``probe lab scenarios`` and
``find``/``load`` only read files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from probe.lab import scenario

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a venv with the probe installed from a wheel."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(REPO / "probe", src / "probe", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "configs", src / "configs", symlinks=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", tmp / "dist", src], check=True)
    wheel = next((tmp / "dist").glob("probe-*.whl"))
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / "bin"
    site = Path(
        sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)})
    )
    (site / "dev.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    install = ["--python", bin_dir / "python", "install", "--no-deps", "--no-index", wheel]
    subprocess.run([*pip, *install], check=True)
    return bin_dir


def _run(bin_dir: Path, *argv: str | Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROBE_CONFIG")}
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


def test_installed_probe_resolves_scenarios_by_name(installed: Path, tmp_path: Path) -> None:
    packaged = installed.parent / "lib"  # the venv's site-packages lie under it
    assert "--scenario NAME" in _run(
        installed, installed / "probe", "lab", "run", "--help", cwd=tmp_path
    )
    listing = _run(installed, installed / "probe", "lab", "scenarios", cwd=tmp_path)
    names = dict(line.split("\t") for line in listing.splitlines())
    assert set(names) == {"pakistan-2024", "smoke"}
    assert all(Path(p).is_relative_to(packaged) for p in names.values())
    code = (
        "import probe; from probe.lab.scenario import find, load; s = load(find('smoke')); "
        "print(probe.__file__, s.name, len(s.isps), sep='\\n')"
    )
    where, name, isps = _run(installed, installed / "python", "-c", code, cwd=tmp_path).split()
    assert Path(where).is_relative_to(packaged)
    assert (name, isps) == ("smoke", "2")


def test_working_folder_scenarios_come_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "configs" / "scenarios"
    own.mkdir(parents=True)
    (own / "smoke.toml").write_text((REPO / "configs/scenarios/smoke.toml").read_text())
    (own / "mine.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    assert scenario.find("smoke").absolute() == own / "smoke.toml"
    assert scenario.find("pakistan-2024") == scenario.PACKAGED / "scenarios/pakistan-2024.toml"
    assert list(scenario.known()) == ["mine", "pakistan-2024", "smoke"]
    with pytest.raises(scenario.ScenarioError, match=r"no such scenario \(known: mine, pak"):
        scenario.load(scenario.find("nowhere"))

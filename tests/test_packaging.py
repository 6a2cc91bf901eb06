"""What a volunteer installs besides the package: the systemd units and the Dockerfile.

The units are checked with ``systemd-analyze verify`` after the substitution
docs/volunteers.md gives for a probe installed elsewhere than /opt/probe (the command
is taken from the docs and run as written). Without systemd-analyze (a container
without the ``systemd`` package) that test is skipped, with the reason; .ci/run
installs the package so CI runs it.

The Dockerfile is checked statically (no registry is reachable here, so it is never
built by the tests): a pinned base image, a non-root user, ``probe`` as PID 1 in exec
form running a command that measures nothing without recorded consent, COPY sources
that exist and are not ignored, and pip installing this project.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from probe.cli import _parser, cmd_schedule

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
DOCS = (ROOT / "docs" / "volunteers.md").read_text(encoding="utf-8")
SHIPPED = "/opt/probe/venv/bin/probe"  # where the units and the cron line expect the probe


# ---- systemd units ----------------------------------------------------------------------


# docs/volunteers.md writes each unit with this command, in the checkout, for a probe installed
# elsewhere than /opt/probe/venv ($probe: its path; $unit: the unit's file name).
SUBSTITUTE = 'sed "s|/opt/probe/venv/bin/probe|$probe|g" "packaging/$unit"'


def test_the_units_name_the_documented_path() -> None:
    for unit in [*PACKAGING.glob("*.service"), PACKAGING / "probe.cron"]:
        assert f"{SHIPPED} " in unit.read_text(), unit
    assert f"sudo {SHIPPED.removesuffix('probe')}pip install /opt/probe" in DOCS
    assert SUBSTITUTE in DOCS


def test_systemd_analyze_verifies_every_unit(tmp_path: Path) -> None:
    """In CI without the systemd package this skips (said): .ci/run installs it."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; .ci/run adds it)")
    probe = Path(sys.executable).with_name("probe")  # this venv's: an executable that exists
    assert probe.exists()
    units = sorted([*PACKAGING.glob("*.service"), *PACKAGING.glob("*.timer")])
    assert {u.name for u in units} == {
        "probe.service",
        "probe-once.service",
        "probe-once.timer",
        "probe-collector.service",
    }
    for unit in units:
        script = f"probe={shlex.quote(str(probe))}; unit={unit.name}; {SUBSTITUTE}"
        written = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
        )
        assert SHIPPED not in written.stdout
        assert str(probe) in written.stdout or unit.suffix == ".timer"
        (tmp_path / unit.name).write_text(written.stdout)
    done = subprocess.run(
        [analyze, "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    # verify exits 0 on some problems (an unknown key is "ignoring"): any output is one.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_cron_line_runs_once_as_the_probe_user() -> None:
    [line] = [
        ln
        for ln in (PACKAGING / "probe.cron").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    minute, hour, dom, month, dow, user, *command = line.split()
    assert (minute, hour, dom, month, dow, user) == ("*/5", "*", "*", "*", "*", "probe")
    assert "run" in command and "--once" in command


# ---- Dockerfile ---------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    lines = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    # As docker reads it: comment lines go first (a "\\" ending one continues nothing).
    joined = re.sub(r"\\\n", " ", "\n".join(x for x in lines if not x.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def one(name: str) -> str:
    found = [rest for word, rest in instructions() if word == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def test_the_base_image_is_pinned_and_fits_the_project() -> None:
    image = one("FROM")
    # A full version and a Debian release (a digest may follow): a rebuild gets the same base.
    pinned = re.fullmatch(r"python:(\d+)\.(\d+)\.\d+-slim-([a-z]+)(@sha256:[0-9a-f]{64})?", image)
    assert pinned, f"FROM {image}: not pinned"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    low = re.fullmatch(r">=(\d+)\.(\d+)", project["requires-python"])
    assert low and (int(pinned[1]), int(pinned[2])) >= (int(low[1]), int(low[2]))
    assert pinned[3] == "bookworm"
    assert image.split("@")[0] in DOCS  # the docs name the same image


def test_it_runs_as_an_unprivileged_user_the_image_creates() -> None:
    user = [rest for word, rest in instructions() if word == "USER"]
    assert user and user[-1] not in ("root", "0") and not user[-1].startswith("0:")
    words = [word for word, _ in instructions()]
    assert words.index("USER") < words.index("CMD")
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert re.search(rf"useradd [^&]*--uid \d{{4,}}[^&]* {user[-1]}\b", runs), runs


def test_pip_installs_this_project_from_what_was_copied() -> None:
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert re.search(r'pip install "\.(\$\{EXTRAS:\+\[\$EXTRAS\]\})?"', runs), runs
    workdir = PurePosixPath(one("WORKDIR"))
    copied: set[str] = set()
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for word, rest in instructions():
        if word != "COPY":
            continue
        *sources, target = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the checkout"
            assert not any(fnmatch.fnmatch(source, p) for p in ignored), f"{source} ignored"
            copied.add(source)
        assert target in ("./", f"./{sources[0]}") or target.endswith("/"), rest
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {"pyproject.toml", project["readme"], "probe"} <= copied
    # probe/configs holds links into configs/: they must resolve inside the image too.
    for link in (ROOT / "probe").rglob("*"):
        if link.is_symlink():
            target = (link.parent / link.readlink()).resolve().relative_to(ROOT)
            assert target.parts[0] in copied, f"{link} -> {target}: not copied"
    assert str(workdir) == "/opt/probe"


def test_the_command_is_the_probe_and_measures_nothing_without_consent() -> None:
    cmd = one("CMD")
    assert cmd.startswith("["), "CMD in exec form: the probe is PID 1 and gets docker's SIGTERM"
    argv = [a.strip().strip('"') for a in cmd.strip("[]").split(",")]
    assert not [rest for word, rest in instructions() if word == "ENTRYPOINT"]
    assert argv[0] == "probe"
    args = _parser().parse_args(argv[1:])
    # `probe schedule` never asks: without consent on record it measures nothing, exits 2.
    assert args.handler is cmd_schedule
    volumes = one("VOLUME")
    env = dict(
        pair.split("=", 1)
        for word, rest in instructions()
        if word == "ENV"
        for pair in shlex.split(rest)
    )
    assert f'"{args.output}"' in volumes and f'"{env["PROBE_STATE_DIR"]}"' in volumes
    config = PurePosixPath(env["PROBE_CONFIG"]).relative_to(one("WORKDIR"))
    assert (ROOT / config).is_file()


def test_the_docs_say_how_to_build_and_run_it_on_arm64_too() -> None:
    for needed in (
        "docker build -t probe .",
        "docker buildx build --platform linux/arm64",
        "probe probe consent",
        "-v probe-state:/var/lib/probe -v probe-results:/results",
    ):
        assert needed in DOCS, needed
    assert "--cap-add" not in DOCS.replace("no `--cap-add`", "")  # it needs no capability

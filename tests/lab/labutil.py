"""Helpers shared by the lab topology and lab run tests.

The lab needs root. Without it a lab test is skipped with the reason, except in CI
(``CI=true``), where a skipped lab test would hide a broken lab: there it fails.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from probe.lab import netns, runner, topology

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def require_root() -> None:
    """Skip (fail in CI) unless we can create network namespaces."""
    reason = None
    if os.geteuid() != 0:
        reason = "the lab needs root (network namespaces)"
    elif not Path("/proc/self/ns/net").exists():
        reason = "no network namespace support"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"lab test cannot run in CI: {reason}")
    pytest.skip(reason)


def in_netns(name: str, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make()`` on a fresh loop in a thread that lives in namespace ``name``."""
    result: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            netns.enter(name)
            result.append(asyncio.run(make()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def lab_leftovers() -> list[str]:
    """Everything a lab can leave behind; empty when the machine is clean."""
    left = [n for n in netns.names(topology.PREFIX) if n.startswith(topology.OWN_PREFIXES)]
    if topology.ETC_NETNS.is_dir():
        left += [
            str(p) for p in topology.ETC_NETNS.iterdir() if p.name.startswith(topology.OWN_PREFIXES)
        ]
    if runner.STATE_DIR.exists():
        left.append(str(runner.STATE_DIR))
    left += [f"process {pid}" for pid in runner.lab_processes()]
    left += [f"daemon {pid}" for pid in _daemons()]
    return left


def _daemons() -> list[int]:
    """Running lab daemons, found by command line (the namespaces may already be gone)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
            state = (Path(f"/proc/{cmdline.parent.name}/stat").read_text()).rsplit(")", 1)[1]
        except OSError:
            continue
        if b"probe.lab.daemon" in argv and state.split()[0] != "Z":
            pids.append(int(cmdline.parent.name))
    return pids

"""Network-namespace primitives of the lab: enter one, run ``ip`` in batches, list, delete.

Design: the lab creates many namespaces, links and addresses, and must come up
in seconds, so configuration is sent to ``ip -batch -`` (one process per
namespace, not one per command). A thread that must *live* in a namespace
calls :func:`enter` once: ``setns(2)`` changes only the calling thread, and
every socket, thread or subprocess it creates afterwards belongs to that
namespace. Python 3.11 has no ``os.setns``, hence the ``ctypes`` fallback.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Final

__all__ = ["NETNS_DIR", "IpError", "enter", "ip_batch", "names", "remove", "set_sysctl"]

NETNS_DIR: Final = Path("/run/netns")  # where `ip netns add` pins namespaces
_CLONE_NEWNET: Final = 0x40000000


class IpError(RuntimeError):
    """An ``ip`` batch failed; the message holds its stderr (which names the failing line)."""


def enter(name: str) -> None:
    """Move the calling thread into the named namespace (``/run/netns/<name>``)."""
    fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns = getattr(os, "setns", None)
        if setns is not None:  # Python >= 3.12
            setns(fd, _CLONE_NEWNET)
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def ip_batch(commands: Iterable[str], netns: str | None = None) -> None:
    """Run ``ip`` commands (without the leading ``ip``) in one process, in ``netns`` if given."""
    script = "".join(f"{command}\n" for command in commands)
    if not script:
        return
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    done = subprocess.run(argv, input=script, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        where = f" in {netns}" if netns else ""
        raise IpError(f"ip -batch{where} failed: {done.stderr.strip()}")


def names(prefix: str) -> list[str]:
    """The pinned namespaces whose name starts with ``prefix``."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def remove(namespaces: Iterable[str]) -> None:
    """Delete namespaces (their interfaces go with them); missing ones are fine."""
    existing = set(names(""))
    ip_batch(f"netns delete {name}" for name in namespaces if name in existing)


def set_sysctl(netns: str, settings: dict[str, str]) -> None:
    """Write ``/proc/sys`` keys (``net.ipv4.ip_forward``...) inside ``netns``.

    ``/proc/sys/net`` shows the namespace of the thread that opens it, so a
    short-lived thread enters the namespace and writes: no subprocess needed.
    """
    errors: list[BaseException] = []

    def write() -> None:
        try:
            enter(netns)
            for key, value in settings.items():
                Path("/proc/sys", *key.split(".")).write_text(value)
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=write, name=f"sysctl-{netns}")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]

"""Where the probe keeps its own state (consent, identity cache, backoff, upload outbox).

Not the measurements: those go to the results folder (``--output``). One state folder per
user on a machine; everything in it is small and written atomically (:mod:`probe.store`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["state_dir"]


def state_dir() -> Path:
    """``$PROBE_STATE_DIR``; else ``/var/lib/probe`` for root; else ``~/.local/state/probe``."""
    if os.environ.get("PROBE_STATE_DIR"):
        return Path(os.environ["PROBE_STATE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/probe")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "probe"

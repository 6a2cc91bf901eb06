"""A collector in a subprocess on 127.0.0.1 (``probe collector serve``), for tests and the bench."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from probe import store

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = json.loads((ROOT / "tests/golden/dns_bogon/measurement.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collector:
    def __init__(self, data: Path, *extra: str) -> None:
        self.data, self.extra, self.port = data, extra, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, scheme: str = "http", ca: str = "") -> Collector:
        command = [sys.executable, "-m", "probe", "collector", "serve", "--data", str(self.data),
                   "--port", str(self.port), *self.extra]  # fmt: skip
        self.proc = subprocess.Popen(command, cwd=ROOT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                health = f"{scheme}://127.0.0.1:{self.port}/health"
                verify = ssl.create_default_context(cafile=ca) if ca else True
                if httpx.get(health, timeout=1, verify=verify).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("the collector did not come up")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def archived(self) -> list[dict[str, Any]]:
        """Every measurement in the archive (each line once, as ``probe report`` reads it)."""
        stats = store.ReadStats()
        found = list(store.read([self.data / "archive"], stats))
        assert stats.skipped == 0, stats.reasons
        return found

    def indexed(self) -> int:
        with sqlite3.connect(self.data / "index.sqlite") as db:
            return int(db.execute("SELECT count(*) FROM measurements").fetchone()[0])


def measurement(asn: str = "AS64500", report_id: str = "r1", **changes: Any) -> dict[str, Any]:
    """A valid measurement (a golden one) with a fresh uid."""
    m = json.loads(json.dumps(GOLDEN))
    m.update(probe_asn=asn, probe_cc="PK", report_id=report_id,
             measurement_uid=secrets.token_hex(16), **changes)  # fmt: skip
    return m

"""A campaign writes each measurement as soon as it is complete, not when the campaign ends.

A real ``probe run --once`` subprocess on the loopback internet, with one target whose
HTTPS server accepts and never answers (its TLS steps cost their whole timeout): the
fast target's line, with its verdict, is on disk while the slow one is still measured,
and a SIGKILL then (a crash, a power cut) loses none of what was complete.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loopback import internet
from servers import StallServer

from probe import store

ROOT = Path(__file__).resolve().parent.parent
RECORDS = {
    "x.com": {"A": ["127.0.0.1"]},
    "slow.x.com": {"A": ["127.0.0.2"]},
    "www.example.com": {"A": ["127.0.0.1"]},
}


def test_a_complete_measurement_is_on_disk_while_another_is_pending(
    tmp_path: Path, probe_state: Path
) -> None:
    out = tmp_path / "out"
    with internet(tmp_path, RECORDS) as net, StallServer("127.0.0.2", net.https_port):
        config = tmp_path / "config.toml"
        text = net.config(["x.com", "slow.x.com"], ["www.example.com"], residual_delay=0.0)
        config.write_text(text.replace("tls = 1.0", "tls = 10.0"))
        command = [sys.executable, "-m", "probe", "run", "--once", "--config", str(config),
                   "--output", str(out)]  # fmt: skip
        null = subprocess.DEVNULL
        process = subprocess.Popen(command, cwd=ROOT, stdin=null, stdout=null, stderr=null)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                written = {m["input"]: m for m in store.read([out])}
                if "https://x.com/" in written:
                    break
                time.sleep(0.02)
            assert process.poll() is None  # slow.x.com is still in its TLS handshake
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    stats = store.ReadStats()
    written = {m["input"]: m for m in store.read([out], stats)}
    assert stats.skipped == 0
    # the control site first (every verdict needs it), then the fast target with its verdict
    assert list(written) == ["https://www.example.com/", "https://x.com/"]
    assert written["https://x.com/"]["test_keys"]["x_verdict"]["status"] == "ok"

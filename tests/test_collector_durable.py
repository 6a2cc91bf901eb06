"""Group commit keeps the collector's promise: no 200 before the fsync that covers the line.

The collector's app is served by uvicorn in a thread of the test (real sockets on
127.0.0.1) so that ``os.fdatasync`` can be watched: each call records how many bytes of
which archive file it made durable. Every 200 must come after an fsync that covered its
line, and submissions made at once must share fsyncs.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from collectorlib import free_port, measurement

from probe.collector.app import Limits, create_app

SUBMISSIONS = 96
CONNECTIONS = 16


class Watched:
    """The app, counting the submissions it holds, and an ``os.fdatasync`` that records the
    bytes it made durable once the real one returned. That one first waits (at most 2 s)
    until every submission still to come is in the app, as a slow disk would: so grouping
    is tested, not the speed of this machine's client."""

    def __init__(self, app: Any) -> None:
        self.app, self.real, self.lock = app, os.fdatasync, threading.Lock()
        self.held = self.answered = self.calls = 0
        self.durable = dict[str, int]()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        counted = scope["type"] == "http" and scope["path"].count("/") == 2
        self.held += counted
        try:
            await self.app(scope, receive, send)
        finally:
            self.held -= counted
            self.answered += counted

    def fdatasync(self, fd: int) -> None:
        deadline = time.monotonic() + 2
        while self.held < min(CONNECTIONS, SUBMISSIONS - self.answered):
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        self.real(fd)
        with self.lock:
            self.calls += 1
            self.durable[os.readlink(f"/proc/self/fd/{fd}")] = os.fstat(fd).st_size

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.durable)


@pytest.fixture
def watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Watched, str]]:
    watched = Watched(create_app(tmp_path / "data", Limits(rate=1e9, burst=1e9)))
    monkeypatch.setattr(os, "fdatasync", watched.fdatasync)
    config = uvicorn.Config(watched, host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    yield watched, f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(10)


async def submit_all(url: str, watched: Watched) -> list[tuple[str, dict[str, int]]]:
    """SUBMISSIONS measurements at once over CONNECTIONS connections: for each, its uid and
    what was durable when its 200 arrived."""
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONNECTIONS)) as client:
        m = measurement()
        keys = ("probe_asn", "probe_cc", "test_name", "software_name", "software_version",
                "test_version", "data_format_version")  # fmt: skip
        opened = await client.post(f"{url}/report", json={k: m[k] for k in keys})
        report = opened.json()["report_id"]

        async def one() -> tuple[str, dict[str, int]]:
            m = measurement(report_id=report)
            r = await client.post(f"{url}/report/{report}", json={"content": m}, timeout=30)
            assert r.status_code == 200, r.text
            return str(m["measurement_uid"]), watched.snapshot()

        return await asyncio.gather(*(one() for _ in range(SUBMISSIONS)))


def test_each_200_follows_the_fsync_of_its_line_and_fsyncs_are_shared(
    tmp_path: Path, watched: tuple[Watched, str]
) -> None:
    acked = asyncio.run(submit_all(watched[1], watched[0]))
    ends: dict[str, tuple[str, int]] = {}  # uid -> (archive file, offset past its line)
    for path in (tmp_path / "data" / "archive").rglob("*.jsonl"):
        offset = 0
        for line in path.read_bytes().splitlines(keepends=True):
            offset += len(line)
            ends[orjson.loads(line)["measurement_uid"]] = (str(path.resolve()), offset)
    assert len(ends) == SUBMISSIONS == len({uid for uid, _ in acked})
    for uid, durable in acked:
        path, end = ends[uid]
        assert end <= durable.get(path, 0), f"{uid} answered before an fsync covered its line"
    # group commit: one fsync for many submissions (one each would be SUBMISSIONS)
    assert watched[0].calls <= SUBMISSIONS // 4, watched[0].calls

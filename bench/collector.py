"""Collector ingest benchmark (loopback only): measurements/s and acknowledgement latency.

Starts ``probe collector serve`` (``--workers N``) on 127.0.0.1 with a fresh data folder,
opens one report per simulated probe, then sends ``--count`` measurements (a golden lab
measurement, ~8.6 KB of JSON, each with its own uid; gzip bodies built beforehand so the
client costs little) over ``--connections`` keep-alive connections with a minimal HTTP/1.1
client. Latency is from the first byte of a request to the last of its 200 (the line is
fsynced in the archive by then). At the end the archive and the index must hold exactly
``--count`` measurements. Client and server share this machine's cores, and so do whatever
else runs on it: the CPU time the server's processes (and the client) used per measurement
is printed too (the client's ~0.03 ms, ~10% of the total: one core of it drives
~30,000/s, so it is not the bottleneck), and what the server's usable cores (at most one a
worker process: the GIL) could ingest at that cost, figures that depend less on the
neighbours than the wall rate.

Run: ``python bench/collector.py [--count 20000] [--workers 2] [--connections 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from collectorlib import Collector, measurement  # noqa: E402


def request(port: int, path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json"
            f"\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


async def connection(port: int, requests: list[bytes], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for data in requests:
        t0 = time.perf_counter()
        writer.write(data)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))  # fmt: skip
        body = await reader.readexactly(length)
        latencies.append(time.perf_counter() - t0)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{head[:40]!r} {body[:200]!r}")
    writer.close()


async def drive(port: int, work: list[bytes], connections: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    shares = [work[i::connections] for i in range(connections)]
    t0 = time.perf_counter()
    await asyncio.gather(*(connection(port, share, latencies) for share in shares))
    return time.perf_counter() - t0, latencies


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and its living descendants (uvicorn's workers)."""
    tick, stats = os.sysconf("SC_CLK_TCK"), {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, total = {root}, 0
    for _ in range(3):  # the worker processes are children of the supervisor
        tree |= {pid for pid, (ppid, _) in stats.items() if ppid in tree}
    total = sum(stats[pid][1] for pid in tree if pid in stats)
    return total / tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--probes", type=int, default=100, help="reports (one per probe)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        c = Collector(Path(tmp) / "data", "--workers", str(args.workers), "--rate", "1e9")
        c.start()
        try:
            first = measurement()
            keys = ("probe_asn", "probe_cc", "test_name", "software_name", "software_version",
                    "test_version", "data_format_version")  # fmt: skip
            opening = {"format": "json", **{k: first[k] for k in keys}}
            reports = [
                httpx.post(f"{c.url}/report", json=opening).json()["report_id"]
                for _ in range(args.probes)
            ]
            work, size = [], 0
            for i in range(args.count):
                report = reports[i % len(reports)]
                content = json.dumps({"format": "json", "content": measurement(report_id=report)})
                size += len(content)
                work.append(
                    request(c.port, f"/report/{report}", gzip.compress(content.encode(), 5))
                )
            assert c.proc is not None
            cpu0, client0 = cpu_seconds(c.proc.pid), time.process_time()
            seconds, latencies = asyncio.run(drive(c.port, work, args.connections))
            server_cpu = cpu_seconds(c.proc.pid) - cpu0
            client_cpu = time.process_time() - client0
            archived, indexed = len(c.archived()), c.indexed()
        finally:
            c.stop()
    latencies.sort()
    usable = min(args.workers, os.cpu_count() or 1)
    q = statistics.quantiles(latencies, n=100)
    print(json.dumps({
        "measurements": args.count, "workers": args.workers, "connections": args.connections,
        "cores": os.cpu_count(), "mean_json_bytes": round(size / args.count),
        "seconds": round(seconds, 2), "per_second": round(args.count / seconds),
        "ack_ms_p50": round(q[49] * 1000, 1), "ack_ms_p99": round(q[98] * 1000, 1),
        "ack_ms_max": round(latencies[-1] * 1000, 1), "archived": archived, "indexed": indexed,
        "server_cpu_ms_per_measurement": round(server_cpu / args.count * 1000, 3),
        # one worker process is bound by its GIL to about one core
        "server_capacity_per_second": round(usable * args.count / server_cpu),
        "client_cpu_ms_per_measurement": round(client_cpu / args.count * 1000, 3),
        "server_share_of_cpu": round(server_cpu / (server_cpu + client_cpu), 2),
        "both_on_2_cores_per_second": round(2 * args.count / (server_cpu + client_cpu)),
        "load_average_after": os.getloadavg()[0],
    }, indent=1))  # fmt: skip
    if archived != args.count or indexed != args.count:
        raise SystemExit("the store does not hold exactly the measurements sent")


if __name__ == "__main__":
    main()

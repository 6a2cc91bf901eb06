"""Random SIGKILLs of ``probe schedule`` mid-run: nothing torn, nothing lost, nothing left.

A loopback internet (tests/loopback.py) with 12 targets; ``probe schedule`` starts its
first campaign at once, so each cycle starts it and SIGKILLs it after a random delay
(during start-up, housekeeping, measuring, appending or compressing). Every few cycles a
past day's file of a few MB is planted beside today's, so that housekeeping's compression
is killed too. After every kill:

* every complete line (ending in ``\\n``) of every results file parses as JSON (a torn
  tail without ``\\n`` is allowed: the next start truncates it; it was never complete);
* no day lost a complete line: its count (the ``.jsonl``, or its ``.gz`` when compressed)
  never decreases;
* when the killed run got through a campaign, no temporary file older than that run's
  start is left (the run removed its predecessors').

At the end one run goes to completion, then every file must be whole JSONL and no
temporary file may exist. Figures: kills, lines, temp files seen, time per kill.

Run: python bench/kills.py [--kills 1000] [--max-delay 6.0]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from loopback import internet  # noqa: E402

from probe import consent  # noqa: E402

TARGETS = [f"x{i}.bench.example" for i in range(11)] + ["refused.bench.example"]
CONTROLS = ["control1.bench.example", "control2.bench.example"]
PAST_DAY = "2026-01-01.jsonl"


def complete_lines(path: Path) -> list[bytes]:
    """The complete lines of a results file (a torn, unterminated tail left out)."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.split(b"\n")[:-1]


class Checker:
    """Checks every results file after each kill, parsing only what changed since the last.

    Re-parsing every file after every kill made a kill cost O(lines so far) (9.7 s a kill
    after 250). A plain file whose first ``offset`` bytes still hash the same is parsed from
    ``offset`` on; a ``.gz`` (rewritten whole when it changes) is re-read only when its size
    or mtime changed. Any change to an already-checked prefix is re-checked in full.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}  # day -> complete lines
        self.gz: dict[str, tuple[tuple[int, int], int]] = {}  # file -> (size, mtime), lines
        self.plain: dict[str, tuple[int, bytes, int]] = {}  # file -> offset, digest, lines

    def lines_of(self, path: Path) -> int:
        if path.suffix == ".gz":
            stat = path.stat()
            key = (stat.st_size, stat.st_mtime_ns)
            if path.name in self.gz and self.gz[path.name][0] == key:
                return self.gz[path.name][1]
            lines = complete_lines(path)
            for line in lines:
                json.loads(line)  # raises on a torn line sealed into the file
            self.gz[path.name] = (key, len(lines))
            return len(lines)
        data = path.read_bytes()
        offset, digest, count = self.plain.get(path.name, (0, b"", 0))
        if len(data) < offset or hashlib.sha1(data[:offset]).digest() != digest:
            offset, count = 0, 0  # the checked prefix changed: check it all again
        end = max(offset, data.rfind(b"\n") + 1)
        for line in data[offset:end].split(b"\n")[:-1]:
            json.loads(line)
            count += 1
        self.plain[path.name] = (end, hashlib.sha1(data[:end]).digest(), count)
        return count

    def check(self, out: Path, *, final: bool) -> int:
        """Check every results file; no day's complete-line count may fall; lines in all."""
        days: dict[str, int] = {}
        for path in sorted(out.glob("*.jsonl*")):
            if path.name.startswith("."):  # a temporary file (pathlib's glob matches them)
                continue
            lines = self.lines_of(path)
            if final and path.suffix == ".jsonl" and path.read_bytes()[-1:] not in (b"", b"\n"):
                raise AssertionError(f"{path.name}: a torn tail after a clean run")
            day = path.name.split(".")[0]
            days[day] = max(days.get(day, 0), lines)  # .jsonl and .gz both: the same lines
        for day, before in self.counts.items():
            if days.get(day, 0) < before:
                raise AssertionError(f"{day}: {before} complete lines, now {days.get(day, 0)}")
        self.counts.update(days)
        return sum(days.values())


def temps(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def plant_past_day(out: Path, sample: bytes, megabytes: int) -> None:
    """A past day's plain file, for housekeeping to compress (and be killed doing it)."""
    path = out / PAST_DAY
    if not path.exists() and sample:
        path.write_bytes(sample * max(1, (megabytes << 20) // len(sample)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--max-delay", type=float, default=6.0, help="seconds (uniform)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    records = {n: {"A": ["127.0.0.1"]} for n in (*TARGETS[:-1], *CONTROLS)}
    records["refused.bench.example"] = {"A": ["127.0.0.3"]}
    with tempfile.TemporaryDirectory() as directory, internet(Path(directory), records) as net:
        tmp = Path(directory)
        state = tmp / "state"
        consent.record(state)
        env = {**os.environ, "PROBE_STATE_DIR": str(state)}
        out = tmp / "out"
        out.mkdir()
        config = tmp / "bench.toml"
        config.write_text(net.config(TARGETS, CONTROLS) + "[schedule]\ninterval = 30\n")
        command = [sys.executable, "-m", "probe", "schedule", "--config", str(config)]
        command += ["--output", str(out)]
        checker = Checker()
        seen_temps = completed = planted = 0
        started = time.monotonic()
        for kill in range(1, args.kills + 1):
            if kill % 5 == 0:
                today = sorted(out.glob("*.jsonl"))
                sample = complete_lines(today[-1])[0] + b"\n" if today else b""
                if sample and not (out / PAST_DAY).exists():
                    plant_past_day(out, sample, rng.choice((1, 4, 8)))
                    planted += 1
            log = tmp / "schedule.log"
            run_start = time.time()
            with open(log, "wb") as err:
                child = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=err,
                )  # fmt: skip
                time.sleep(rng.uniform(0.0, args.max_delay))
                got_through = "campaign 1 done" in log.read_text()
                left = temps(out)
                child.send_signal(signal.SIGKILL)
                child.wait()
            if "Traceback" in log.read_text():
                raise AssertionError(log.read_text())
            seen_temps += len(left)
            if got_through:
                completed += 1
                old = [p for p in left if p.stat().st_mtime < run_start - 0.01]
                if old:
                    raise AssertionError(f"kill {kill}: stale temps survived a run: {old}")
            lines = checker.check(out, final=False)
            if kill % 50 == 0:
                print(f"{kill} kills, {lines} complete lines, {time.monotonic() - started:.0f} s")
        elapsed = time.monotonic() - started
        subprocess.run(
            [*command, "--max-campaigns", "1"], cwd=ROOT, env=env, check=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        lines = checker.check(out, final=True)
        left = temps(out)
        if left:
            raise AssertionError(f"temporary files after a clean run: {left}")
    print(
        f"{args.kills} SIGKILLs in {elapsed:.0f} s ({elapsed / args.kills:.2f} s a kill; "
        f"{elapsed / args.kills * 1000 / 60:.0f} min for 1,000): {completed} after a whole "
        f"campaign, {planted} past days planted for compression, {seen_temps} temp files seen "
        f"at a kill; after a clean run: {lines} complete lines, all valid JSON, none lost, "
        "no temp file left"
    )


if __name__ == "__main__":
    main()

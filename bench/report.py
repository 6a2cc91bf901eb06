"""Report benchmark (issue: probe report), figures for the README.

On a synthetic archive (bench/synth.py: ~1M measurements, 50 ASNs, 30 days, one
.jsonl.gz per volunteer and day, lines shaped as `probe run` writes them, format 4; each with
the observations of the lab measurement of its verdict, ~8.5 KB, or with --observations empty,
empty arrays, ~1.5 KB):

(a) `probe report DIR` as a user runs it (the terminal summary): wall time and peak RSS
    (targets: <= 10 s, <= 1.5 GB on the 2-core machine), over the .jsonl.gz archive and
    over the same archive as plain .jsonl (what `probe run` stores);
(b) a plain-Python loop (gzip + json.loads per line, a set of uids, a dict of counters,
    the verdict for stale rows) computing the same per ASN x family x bucket counts, in
    this same run: the report must be >= 5x faster; the two aggregates must be equal;
(c) `probe export --parquet` once, then the report over the Parquet file;
(e) the same reports with the write-time index beside every file (`probe reindex`, timed once,
    as the probe's writer would have written them): >= 10x faster than the plain loop, <= 1 GB
    RSS; (a) is the same files without their indexes (target there: >= 3x);
(d) the floor: DuckDB's scan alone (read every line, extract the report's keys from the whole
    line; no aggregation) against the plain loop: no report over JSONL can beat
    that ratio; and reading the lines alone (decompressing, splitting; no JSON), the floor of
    DuckDB's readers.

The archive (its verdicts written by the current rules, as a volunteer's fresh data is) is
generated once into $TMPDIR/probe-bench-report-<observations>-<rows>-v<rules>-f<format> and
reused; every archive is read once, untimed, before its timed runs, so that all of them find it
in the page cache.
Run: python bench/report.py [--rows N] [--observations lab|empty]
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synth import generate  # noqa: E402

from probe import store  # noqa: E402
from probe.format.vocab import FORMAT_VERSION, KNOWN_FORMAT_VERSIONS  # noqa: E402
from probe.report.engine import build  # noqa: E402
from probe.report.scan import _FAST, _names, connect, reader_sql  # noqa: E402
from probe.verdict import ANALYSIS_VERSION, summary_keys, verdict  # noqa: E402

BUCKET = 3 * 3600  # what AUTO picks for 30 days


_CHILD = (
    "import resource, sys\n"
    "from probe.__main__ import main\n"
    "code = main(sys.argv[1:])\n"
    "usage = [resource.getrusage(r).ru_maxrss // 1024 for r in (resource.RUSAGE_SELF, "
    "resource.RUSAGE_CHILDREN)]\n"
    "print(*usage, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


CPU: dict[str, float] = {}  # the CPU seconds of the last cli() child (this machine may be busy)


def cli(*args: str) -> tuple[float, int, int]:
    """Run the probe CLI in a fresh child; return (wall seconds, its own peak RSS in MB, the
    peak RSS of its largest worker process in MB); its CPU seconds go to ``CPU["last"]``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], check=True, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["last"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    own, worker = done.stderr.split()[-2:]
    return time.perf_counter() - start, int(own), int(worker)


def scan_only(folder: Path, column: str) -> float:
    """Seconds for DuckDB's fast reader (``.gz`` inflated by ISA-L, as the report reads it) to
    give ``column`` of every line (no aggregate):
    ``k[1]`` reads, checks and extracts the keys; ``line`` only reads the lines (DuckDB
    prunes the unused extraction)."""
    con = connect()
    start = time.perf_counter()
    con.execute(f"SELECT count({column}) FROM ({reader_sql(_FAST)})",
                {"files": _names(list(store.iter_files([folder])), serve=True)})  # fmt: skip
    return time.perf_counter() - start


def warm(folder: Path) -> None:
    """Read every file of ``folder`` once, untimed: this machine pages idle page cache out
    within a minute or two (DAMON), so the first timed reader would otherwise pay the disk
    and the ones after it would not."""
    for path in folder.rglob("*.jsonl*"):
        path.read_bytes()
    for path in folder.rglob("*.index.csv*"):
        path.read_bytes()


def family(url: str) -> str:
    host = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    return ".".join(host.split(".")[-2:])


def plain_python(folder: Path) -> dict[tuple[str, str, int], list[int]]:
    """The baseline: (asn, family, bucket) -> [measured, ok, blocked, down, inconclusive]."""
    seen: set[str] = set()
    counts: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0] * 5)
    index = {"ok": 1, "blocked": 2, "down": 3}
    for path in store.iter_files([folder]):
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as f:
            for line in f:
                try:
                    m = json.loads(line)
                except ValueError:
                    continue
                if (m.get("test_name") != "x_reachability"
                        or m.get("x_format_version") not in KNOWN_FORMAT_VERSIONS
                        or m["annotations"].get("x_role") != "target"):  # fmt: skip
                    continue
                uid = m["measurement_uid"]
                if uid in seen:
                    continue
                seen.add(uid)
                tk = m["test_keys"]
                v = tk.get("x_verdict") or {}
                if tk.get("x_analysis_version") != ANALYSIS_VERSION or not v.get("status"):
                    v = summary_keys(verdict(m))["x_verdict"]
                t = datetime.fromisoformat(m["measurement_start_time"] + "+00:00").timestamp()
                row = counts[m["probe_asn"], family(m["input"]), int(t) // BUCKET * BUCKET]
                row[0] += 1
                row[index.get(v["status"], 4)] += 1
    return counts


def archives(rows: int, kind: str) -> tuple[Path, Path]:
    """The .jsonl.gz archive and the same as plain .jsonl (as volunteers store it), generated
    on first use."""
    name = f"probe-bench-report-{kind}-{rows}-v{ANALYSIS_VERSION}-f{FORMAT_VERSION}"
    folder = Path(tempfile.gettempdir()) / name
    if not (folder / "done").exists():
        start = time.perf_counter()
        lines = generate(folder, rows, version=ANALYSIS_VERSION, kind=kind)
        (folder / "done").write_text(str(lines))
        print(f"generated {lines} lines in {time.perf_counter() - start:.0f} s under {folder}")
    plain = folder.with_name(folder.name + "-plain")
    if not (plain / "done").exists():
        for path in folder.rglob("*.jsonl.gz"):
            target = plain / path.relative_to(folder).with_suffix("")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.decompress(path.read_bytes()))
        (plain / "done").write_text((folder / "done").read_text())
    return folder, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--observations", choices=("lab", "empty"), default="lab")
    parser.add_argument(
        "--index-only",
        action="store_true",
        help="only (a), (b) and (e), over the .jsonl.gz archive (a busy machine)",
    )
    args = parser.parse_args()
    folder, plain = archives(args.rows, args.observations)
    size = sum(p.stat().st_size for p in folder.rglob("*.gz")) / 1e6
    rows = (folder / "done").read_text().strip()
    print(f"archive: {rows} lines, {size:.0f} MB of .jsonl.gz; the same as plain .jsonl")
    forms = (
        [(".jsonl.gz", folder)]
        if args.index_only
        else [("plain .jsonl", plain), (".jsonl.gz", folder)]
    )
    for label, where in forms:
        warm(where)
        wall, rss, worker = cli("report", str(where), "--bucket", "3h")
        cpu = CPU["last"]
        print(f"(a) probe report over {label}: {wall:.2f} s wall ({cpu:.1f} s CPU), peak RSS "
              f"{rss} MB, largest re-scoring worker {worker} MB (targets: <= 10 s, "
              f"<= 1536 MB)")  # fmt: skip
        start, start_cpu = time.perf_counter(), time.process_time()
        baseline = plain_python(where)
        python_s, python_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        report = build([where], bucket=BUCKET)
        ours = {(c.asn, c.family, c.bucket): [c.measured, c.ok, c.blocked, c.down, c.inconclusive]
                for c in report.cells if c.family != "X"}  # fmt: skip
        same = "equal" if ours == dict(baseline) else "DIFFERENT"
        print(f"(b) plain-Python json.loads loop over {label}: {python_s:.2f} s "
              f"({python_cpu:.1f} s CPU); the report is {python_s / wall:.1f}x faster "
              f"({python_cpu / cpu:.1f}x in CPU) (target >= 3x without indexes); aggregates "
              f"{same}")  # fmt: skip
        index_s, _, _ = cli("reindex", str(where))
        warm(where)
        wall_i, rss_i, worker_i = cli("report", str(where), "--bucket", "3h")
        cpu_i = CPU["last"]
        indexed = build([where], bucket=BUCKET)  # its stale lines were re-scored when indexed
        same_i = "equal" if replace(indexed, rescored=report.rescored) == report else "DIFFERENT"
        print(f"(e) with indexes (probe reindex: {index_s:.1f} s, once): probe report over "
              f"{label}: {wall_i:.2f} s wall ({cpu_i:.1f} s CPU), peak RSS {rss_i} MB (worker "
              f"{worker_i} MB); {python_s / wall_i:.1f}x faster than the plain loop "
              f"({python_cpu / cpu_i:.1f}x in CPU) (target >= 10x, <= 1024 MB); report "
              f"{same_i} to the one without indexes")  # fmt: skip
        for path in where.rglob("*.index.csv*"):  # the archive stays as generated
            path.unlink()
        if args.index_only:
            continue
        warm(where)
        lines_s, scan_s = scan_only(where, "line"), scan_only(where, "k[1]")
        print(f"(d) DuckDB's scan alone over {label}: {scan_s:.2f} s, so no report over it can "
              f"be more than {python_s / scan_s:.1f}x faster than the plain loop; reading "
              f"the lines alone (no JSON): {lines_s:.2f} s")  # fmt: skip
    if args.index_only:
        return
    with tempfile.TemporaryDirectory() as tmp:
        parquet = Path(tmp) / "archive.parquet"
        export_s, _, _ = cli("export", str(folder), "--parquet", str(parquet))
        wall_p, rss_p, _ = cli("report", str(parquet), "--bucket", "3h")
        print(f"(c) probe export --parquet: {export_s:.2f} s ({parquet.stat().st_size / 1e6:.0f} "
              f"MB); report over it: {wall_p:.2f} s, peak RSS {rss_p} MB; "
              f"{python_s / wall_p:.1f}x faster than the plain loop over .jsonl.gz")  # fmt: skip


if __name__ == "__main__":
    main()

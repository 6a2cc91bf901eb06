"""Peak memory of ``probe run``: 15 targets, 2,000 targets, and a DoH gzip bomb.

Everything on loopback (tests/loopback.py): one DNS server answers every name with
127.0.0.1, where one TLS and one HTTP server serve them all (a wildcard certificate).
Each run is a child process; its peak RSS is its ``VmHWM`` (see tests/loopback.py probe_run).
Targets: <= 60 MB for 15 targets, <= 80 MB for 2,000, <= 60 MB against a DoH resolver
answering with a gzip bomb (1 MB that inflates to 1 GiB).

Run: python bench/memory.py [--targets 15 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hostile import graceful, gzip_bomb_response  # noqa: E402
from loopback import internet, probe_run  # noqa: E402
from servers import TlsServer  # noqa: E402

from probe import consent  # noqa: E402

DOMAIN = "bench.example"
CONTROLS = [f"control{i}.{DOMAIN}" for i in (1, 2)]
LIMITS_MB = {"15 targets": 60.0, "2000 targets": 80.0, "DoH gzip bomb": 60.0}


def measure(tmp: Path, targets: int, *, doh_bomb: bool = False) -> tuple[float, float, int]:
    """Peak RSS (MB), wall time (s) and lines written of one ``probe run``."""
    names = [f"t{i}.{DOMAIN}" for i in range(targets)]
    records = {n: {"A": ["127.0.0.1"]} for n in (*names, *CONTROLS)}
    with internet(tmp, records, cert_names=[f"*.{DOMAIN}", "dns.test"]) as net:
        resolvers = ""
        if doh_bomb:
            bomb = graceful(gzip_bomb_response("application/dns-message"))
            doh = TlsServer(net.authority.issue(["dns.test"]), handler=bomb).__enter__()
            resolvers = (
                f'[[resolvers]]\nengine = "doh"\nurl = "https://dns.test:{doh.port}/dns-query"\n'
                'address = "127.0.0.1"\n'
            )
        config = tmp / "bench.toml"
        timeouts = {"dns": 4.0, "connect": 4.0, "tls": 4.0, "http": 8.0}
        config.write_text(net.config(names, CONTROLS, timeouts=timeouts, resolvers=resolvers))
        run = probe_run(config, tmp / "results")
        if doh_bomb:
            doh.__exit__(None, None, None)
    if run.code != 0 or "Traceback" in run.stderr:
        raise SystemExit(f"probe run failed ({run.code}): {run.stderr[-2000:]}")
    return run.max_rss / 2**20, run.wall, len(run.measurements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, nargs="+", default=[15, 2000])
    args = parser.parse_args()
    cases = [(f"{n} targets", n, False) for n in args.targets] + [("DoH gzip bomb", 15, True)]
    with tempfile.TemporaryDirectory() as directory:
        state = Path(directory) / "state"
        consent.record(state)
        os.environ["PROBE_STATE_DIR"] = str(state)
        over = []
        for label, targets, bomb in cases:
            tmp = Path(directory) / label.replace(" ", "_")
            tmp.mkdir()
            rss, wall, lines = measure(tmp, targets, doh_bomb=bomb)
            limit = LIMITS_MB.get(label)
            verdict = "" if limit is None else (" ok" if rss <= limit else " OVER")
            print(
                f"{label:>14}: peak RSS {rss:5.1f} MB (target <= {limit or '-'} MB){verdict}, "
                f"{lines} measurements in {wall:.1f} s"
            )  # fmt: skip
            if limit is not None and rss > limit:
                over.append(label)
    if over:
        raise SystemExit(f"over the target: {', '.join(over)}")


if __name__ == "__main__":
    main()

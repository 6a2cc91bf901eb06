"""``probe collector serve``: the collector on uvicorn (see docs/collector.md).

Settings reach the app through ``PROBE_COLLECTOR`` (JSON) so that uvicorn's worker
processes (``--workers N``) build the same app from :func:`factory`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

from probe.extras import needs_extra

__all__ = ["add_parser", "factory"]

_ENV = "PROBE_COLLECTOR"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    collector = subparsers.add_parser("collector", help="receive measurements from probes")
    sub = collector.add_subparsers(dest="collector_command", metavar="COMMAND", required=True)
    serve = sub.add_parser("serve", help="serve the collector API (OONI's protocol)")
    serve.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder of the archive (DATA/archive) and index (DATA/index.sqlite)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate (chain) for HTTPS")
    serve.add_argument("--tls-key", type=Path, help="PEM private key for HTTPS")
    serve.add_argument(
        "--tokens", type=Path, help="file of probe tokens, one a line: then only they may submit"
    )
    serve.add_argument("--max-body", type=int, default=1 << 20, help="bytes on the wire")
    serve.add_argument("--max-inflated", type=int, default=4 << 20, help="bytes once inflated")
    serve.add_argument(
        "--rate", type=float, default=50.0, help="measurements a second per report (per worker)"
    )
    serve.add_argument(
        "--burst",
        type=float,
        default=200.0,
        help="measurements a report may send at once before --rate applies (default 200)",
    )
    serve.set_defaults(handler=cmd_serve)  # fmt: skip


def _tokens(path: Path | None) -> list[str]:
    from probe.collector.app import token_hash

    if path is None:
        return []
    lines = path.read_text().splitlines()
    return [token_hash(line.split()[-1]) for line in lines if line.strip() and line[0] != "#"]


def factory() -> Any:
    """The app of the settings in ``$PROBE_COLLECTOR`` (uvicorn's ``--factory``)."""
    from probe.collector.app import Limits, create_app

    s = json.loads(os.environ[_ENV])
    limits = Limits(s["max_body"], s["max_inflated"], s["rate"], s["burst"])
    app = create_app(Path(s["data"]), limits, frozenset(s["tokens"]))
    # Each measurement parsed is a few hundred dicts and lists: the collector triggers a
    # collection every few requests, and its full collections walked every object of every
    # module imported (~15% of the CPU a measurement). Those stay for the process's life,
    # so they are moved out of the collector's sight.
    gc.freeze()
    return app


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print(needs_extra("the collector needs uvicorn", "collector"), file=sys.stderr)
        return 2
    if (args.tls_cert is None) != (args.tls_key is None):
        print("probe: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if min(args.max_body, args.max_inflated, args.workers) < 1 or not args.rate > 0:
        print("probe: limits and --workers must be positive", file=sys.stderr)
        return 2
    args.data.mkdir(parents=True, exist_ok=True)
    os.environ[_ENV] = json.dumps({
        "data": str(args.data.resolve()), "max_body": args.max_body,
        "max_inflated": args.max_inflated, "rate": args.rate, "burst": args.burst,
        "tokens": _tokens(args.tokens),
    })  # fmt: skip
    uvicorn.run(
        "probe.collector.cli:factory", factory=True, host=args.host, port=args.port,
        workers=args.workers, ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
        log_level="warning", access_log=False, http="httptools",
        proxy_headers=False,  # no client address is used (nor logged): no X-Forwarded-For pass
    )  # fmt: skip
    return 0

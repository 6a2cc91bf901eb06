"""A whole fake internet on loopback for end-to-end tests of ``probe run``.

A DNS server (UDP+TCP, :mod:`probe.lab.dnsserver`) runs on its own event loop in
a background thread, beside the threaded TLS and HTTP servers of
``tests/servers.py``, so the probe under test can own the main thread's loop
(``asyncio.run`` inside ``probe run``). Everything binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from servers import Behaviour, HttpServer, TlsServer, fixed_response
from servers import Handler as Page

from probe.lab.dnsserver import DnsServer, Handler, Zone, serve
from probe.lab.pki import Authority

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent

#: The steps' timeouts of :meth:`Internet.config` (seconds), unless it is given others.
TIMEOUTS: Mapping[str, float] = {"dns": 1.0, "connect": 1.0, "tls": 1.0, "http": 2.0}
PAGE = b"<html><head><title>X replica</title></head><body>hello</body></html>"


class BackgroundLoop:
    """An asyncio loop in a daemon thread; ``call`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


@dataclass(frozen=True, slots=True)
class Internet:
    dns_port: int
    https_port: int
    http_port: int
    ca_file: Path
    tls: TlsServer
    http: HttpServer
    authority: Authority  # the CA of ``ca_file``: more servers of this internet use it

    def config(
        self,
        targets: list[str],
        controls: list[str],
        *,
        timeouts: Mapping[str, float] = TIMEOUTS,
        resolvers: str = "",
        **measurement: Any,
    ) -> str:
        """A probe config (TOML text) pointing at this loopback internet; ``resolvers`` is
        more ``[[resolvers]]`` TOML after its own two."""
        extra = "".join(f"{k} = {v!r}\n" for k, v in measurement.items())
        deadlines = "".join(f"{k} = {v!r}\n" for k, v in timeouts.items())
        return f"""
[vantage]
asn = "AS64500"
cc = "PK"
network_name = "Loopback ISP"
[targets]
x = {targets!r}
controls = {controls!r}
[measurement]
https_port = {self.https_port}
http_port = {self.http_port}
ip_versions = [4]
ca_bundle = "{self.ca_file}"
dns_late_window = 0.05
{extra}
[timeouts]
{deadlines}
[[resolvers]]
engine = "udp"
address = "127.0.0.1"
port = {self.dns_port}
control = false
[[resolvers]]
engine = "tcp"
address = "127.0.0.1"
port = {self.dns_port}
{resolvers}"""


@contextmanager
def internet(
    tmp: Path,
    records: Mapping[str, Mapping[str, list[str]]],
    tls: Behaviour = "ok",
    *,
    dns: Handler | None = None,
    https_page: Page | None = None,
    http_page: Page | None = None,
    cert_ips: Sequence[str] = ("127.0.0.1",),
    cert_names: Sequence[str] = (),
) -> Iterator[Internet]:
    """Serve ``records`` over DNS and every name over HTTPS (``tls``) and HTTP on 127.0.0.1,
    with the X replica page unless another is given; the certificate names every name of
    ``records`` and ``cert_ips``. ``dns`` answers instead of the zone of ``records`` (a
    misbehaving resolver). ``cert_names`` (e.g. a wildcard) replace the names of ``records``
    in the certificate."""
    ca = Authority.create()
    ca_file = tmp / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    cert = ca.issue(list(cert_names) or sorted(records), ip_addresses=list(cert_ips))
    page = fixed_response(PAGE, headers=[("Content-Type", "text/html")])
    background = BackgroundLoop()
    with ExitStack() as stack:
        stack.callback(background.close)
        tls_server = stack.enter_context(TlsServer(cert, tls, handler=https_page or page))
        http = stack.enter_context(HttpServer(http_page or page))
        server: DnsServer = background.call(serve("127.0.0.1", 0, dns or Zone(records)))
        stack.callback(lambda: background.call(server.close()))
        yield Internet(server.port, tls_server.port, http.port, ca_file, tls_server, http, ca)


@dataclass(frozen=True, slots=True)
class Run:
    code: int
    stderr: str
    max_rss: int  # bytes
    wall: float
    measurements: dict[str, dict[str, Any]]  # by input


def probe_run(config: Path, output: Path) -> Run:
    """``probe run`` in a child process, with its own peak RSS.

    The peak is the child's ``VmHWM`` (/proc), polled until it exits: ``ru_maxrss``
    would not do, Linux carries the RSS of the process that forked the child (this one,
    a test runner or a bench holding a thousand servers) across ``exec`` into it.
    """
    command = [sys.executable, "-m", "probe", "run", "--config", str(config), "--output"]
    command.append(str(output))
    start = time.monotonic()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
        peak = 0
        while child.poll() is None:
            peak = max(peak, _high_water(child.pid))
            time.sleep(0.01)
        wall = time.monotonic() - start
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    lines = [json.loads(line) for f in output.glob("*.jsonl") for line in f.open()]
    by_input = {m["input"]: m for m in lines}
    return Run(child.returncode, stderr, peak, wall, by_input)


def _high_water(pid: int) -> int:
    """The peak RSS (bytes) of a live process; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0

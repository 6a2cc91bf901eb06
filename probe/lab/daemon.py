"""The lab daemon: every server and censor of the lab, in ONE process.

``python -m probe.lab.daemon STATE_DIR`` reads ``STATE_DIR/lab.json`` (written by
:mod:`probe.lab.runner`: scenario path, seed, horizon, truth path), creates the lab CA, then
runs one thread per namespace. Each thread enters its namespace once (:func:`netns.enter`:
only that thread moves, and what it creates lives there) and runs its own asyncio loop:

* the core thread runs :func:`probe.lab.core.serve`;
* each router thread runs the ISP resolver (the lab zone behind ``ctx.dns_policies``) and
  the ISP's techniques: ``start`` once, then ``set_active`` following the schedule.

When every thread is listening and every technique due at the start is on, the daemon
writes ``STATE_DIR/ready`` (so a probe never sees an uncensored moment the truth does not
record); the schedule's clock starts then. Waits end early at shutdown, but a switch in
progress always completes, so the truth matches what the techniques did.
A thread that fails to start writes ``STATE_DIR/failed`` and the daemon exits
1. SIGTERM (or SIGINT) stops the techniques, writes the windows still open to the truth,
closes everything and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Final, Protocol

import dns.message

from probe.lab import censors, core, netns, topology
from probe.lab.censors import RouterContext, Technique
from probe.lab.dnsserver import Client, Reply, serve
from probe.lab.pki import Authority, write_pair
from probe.lab.scenario import Window, load, schedule
from probe.lab.topology import BLOCKPAGE, CORE, DOH_NAME, IspNet, Topology
from probe.lab.truth import TruthLog

__all__ = ["Settings", "main"]

log = logging.getLogger("probe.lab.daemon")
START_TIMEOUT: Final = 30.0  # seconds for every namespace thread to come up
CA_FILE: Final = "ca.pem"


@dataclass(frozen=True, slots=True)
class Settings:
    """``lab.json``: what the runner tells the daemon."""

    scenario: str  # path of the scenario file
    seed: int  # overrides the scenario's
    horizon: float  # seconds the schedule covers
    truth: str  # path of truth.jsonl

    @classmethod
    def read(cls, state: Path) -> Settings:
        return cls(**json.loads((state / "lab.json").read_text(encoding="utf-8")))


class Service(Protocol):
    """What runs in one namespace thread."""

    async def start(self) -> None: ...

    def begin(self, t0: float) -> None: ...

    async def stop(self) -> None: ...


class NamespaceThread(threading.Thread):
    """A thread living in one namespace, running ``service`` on its own loop."""

    def __init__(self, name: str, service: Service, failed: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.service = service
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._failed = failed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._quit: asyncio.Event | None = None

    def run(self) -> None:
        try:
            netns.enter(self.name)
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the main thread, which exits
            log.exception("%s failed", self.name)
            self.error = exc
            self._failed.set()
            self.ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._quit = asyncio.Event()
        try:
            await self.service.start()
            self.ready.set()
            await self._quit.wait()
        finally:  # also after a failed start: undo what did start
            await self.service.stop()

    def begin(self, t0: float) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.service.begin, t0)

    def stop(self) -> None:
        if self._loop is not None and self._quit is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._quit.set)


class CoreService:
    def __init__(self, lab: Topology, tls: ssl.SSLContext) -> None:
        self._lab = lab
        self._tls = tls
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def start(self) -> None:
        self._closers = await core.serve(
            self._lab, self._tls, core.LabResolver(core.lab_zone(self._lab))
        )

    def begin(self, t0: float) -> None:
        pass  # the core has no schedule

    async def stop(self) -> None:
        for close in self._closers:
            await close()


class RouterService:
    """One ISP's router: its resolver and techniques, switched on and off by the schedule."""

    def __init__(
        self,
        lab: Topology,
        net: IspNet,
        windows: Sequence[Window],
        truth: TruthLog,
        failed: threading.Event,
    ) -> None:
        self._net = net
        self._windows = windows
        self._truth = truth
        self._failed = failed
        self._resolver = core.LabResolver(core.lab_zone(lab))
        self.ctx = RouterContext(
            net.isp.id,
            net.router,
            "downlink",
            "uplink",
            net.prefixes,
            lab.addresses,
            BLOCKPAGE,
            lab.scenario.seed,
        )
        self._techniques: dict[str, Technique] = {}
        self._open: dict[str, tuple[Window, datetime]] = {}  # technique -> active window
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def start(self) -> None:
        for address in (self._net.router_down, self._net.router_down6):
            if address is not None:
                self._closers.append((await serve(address, 53, self._answer)).close)
        for spec in self._net.isp.techniques:
            technique = censors.make_technique(spec.technique)
            await technique.start(self.ctx)
            self._techniques[spec.technique] = technique
            first = next((w for w in self._windows if w.technique == spec.technique), None)
            if first is not None and first.start <= 0:  # on before `ready`: no uncensored gap
                await self._switch_on(technique, first)

    async def _answer(self, query: dns.message.Message, client: Client) -> Sequence[Reply]:
        """The ISP resolver: the first policy with an opinion wins, else the honest zone."""
        for policy in self.ctx.dns_policies:
            response = policy(query)
            if response is not None:
                return [Reply(0.0, response)]
        return await self._resolver(query, client)

    def begin(self, t0: float) -> None:
        for name, technique in self._techniques.items():
            windows = [w for w in self._windows if w.technique == name]
            task = asyncio.create_task(self._follow(technique, windows, t0), name=name)
            task.add_done_callback(self._done)
            self._tasks.append(task)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s %s failed", self._net.isp.id, task.get_name(), exc_info=task.exception())
            self._failed.set()

    async def _switch_on(self, technique: Technique, window: Window) -> None:
        await technique.set_active(frozenset(window.domains))
        self._open[window.technique] = (window, datetime.now(UTC))
        log.info("%s %s on: %s", self._net.isp.id, window.technique, ",".join(window.domains))

    async def _follow(self, technique: Technique, windows: Sequence[Window], t0: float) -> None:
        """Apply ``windows`` (seconds after ``t0``, in loop time); end early when stopping."""
        for window in windows:
            if window.technique not in self._open:  # else switched on at start-up
                if not await self._until(t0 + window.start):
                    return
                await self._switch_on(technique, window)
            if not await self._until(t0 + window.end):
                return
            await technique.set_active(frozenset())
            self._close(window.technique)
            log.info("%s %s off", self._net.isp.id, window.technique)

    async def _until(self, moment: float) -> bool:
        """Wait until ``moment``; False if the router stops first (never mid-switch)."""
        delay = max(0.0, moment - asyncio.get_running_loop().time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        return not self._stopping.is_set()

    def _close(self, technique: str) -> None:
        window, start = self._open.pop(technique)
        isp = self._net.isp
        self._truth.window(
            isp.id,
            isp.asn,
            technique,
            window.domains,
            start,
            datetime.now(UTC),
            sporadic=window.sporadic,
        )

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for name in list(self._open):
            self._close(name)
        for technique in self._techniques.values():
            try:
                await technique.stop()
            except Exception:  # one broken technique must not leave the others running
                log.exception("%s %s: stop failed", self._net.isp.id, technique.name)
        for close in self._closers:
            await close()


def _tls(state: Path, lab: Topology) -> ssl.SSLContext:
    """A fresh lab CA (``ca.pem``) and one server certificate for every lab name."""
    authority = Authority.create("probe lab CA")
    (state / CA_FILE).write_bytes(authority.cert_pem)
    cert, key = write_pair(authority.issue([*lab.addresses, DOH_NAME]), state, "server")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


def run(state: Path) -> int:
    """Bring every namespace thread up, follow the schedule until SIGTERM; the exit status."""
    settings = Settings.read(state)
    scenario = replace(load(settings.scenario), seed=settings.seed)
    lab = topology.plan(scenario)
    windows = schedule(scenario, settings.horizon)
    truth = TruthLog(Path(settings.truth))
    failed, stopping = threading.Event(), threading.Event()
    services: list[tuple[str, Service]] = [(CORE, CoreService(lab, _tls(state, lab)))]
    for net in lab.isps:
        own = [w for w in windows if w.isp == net.isp.id]
        services.append((net.router, RouterService(lab, net, own, truth, failed)))
    threads = [NamespaceThread(name, service, failed) for name, service in services]

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    for thread in threads:
        thread.ready.wait(max(0.0, deadline - time.monotonic()))
    status = 0
    if failed.is_set() or not all(t.ready.is_set() for t in threads):
        reasons = [f"{t.name}: {t.error!r}" for t in threads if t.error or not t.ready.is_set()]
        (state / "failed").write_text("\n".join(reasons) + "\n", encoding="utf-8")
        status = 1
    else:
        t0 = time.monotonic()
        for thread in threads:
            thread.begin(t0)
        (state / "ready").write_text(f"{datetime.now(UTC).isoformat()}\n", encoding="utf-8")
        log.info("lab %s up: %d namespaces", scenario.name, len(threads))
        while not stopping.wait(0.2):
            if failed.is_set():
                status = 1
                break
    for thread in threads:
        thread.stop()
    for thread in threads:
        thread.join(10.0)
    truth.close()
    log.info("lab %s down (status %d)", scenario.name, status)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m probe.lab.daemon STATE_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(threadName)s %(levelname)s %(message)s"
    )
    return run(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())

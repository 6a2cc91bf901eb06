"""Bring the lab up and down, and run the probe in every simulated ISP on an interval.

State lives in :data:`STATE_DIR` (``/run/probelab``: tmpfs, gone at reboot): ``lab.json`` for
the daemon, its pid file and log, the lab CA, and one probe config per vantage point.

:func:`down` is idempotent and needs no state: it finds the daemon through the pid file and
every other lab process by its network namespace (any process with a thread in a lab
namespace), stops them by pid, then deletes the namespaces. So it also cleans up after a
``lab run`` that was SIGKILLed. :func:`run` always ends with :func:`down`: on return, on an
exception, on Ctrl-C and on SIGTERM.

The probe runs in a vantage namespace exactly as a user would run it:
``ip netns exec probelab-v-<isp> python -m probe run --config FILE --output DIR``; only the
generated config (:func:`probe_config`) knows it is in a lab.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Final

from probe.lab import netns, ticker, topology
from probe.lab.daemon import CA_FILE, Settings
from probe.lab.scenario import REPO, find, load, schedule
from probe.lab.spots import Spots
from probe.lab.topology import (
    CONTROL_ADDRESS,
    DOH,
    DOH_NAME,
    PUBLIC_RESOLVERS,
    IspNet,
    Topology,
)
from probe.schedule_policy import poisson_wait

__all__ = [
    "STATE_DIR",
    "Lab",
    "LabError",
    "down",
    "lab_processes",
    "probe_config",
    "run",
    "status",
    "up",
]

STATE_DIR: Final = Path("/run/probelab")
DEFAULT_HORIZON: Final = 7 * 86400.0  # schedule length of `lab up` (no duration given)
READY_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0
LAB_TIMEOUT: Final = 4.0  # the probe's step timeouts in the lab: every host is one hop away,
# but the machine is shared: at a load of 10 on 2 cores, handshakes took over 2 s, and a
# control that times out (the health gate: "loss") left throttled ISPs inconclusive
THROUGHPUT_BYTES: Final = 512 << 10  # the timed download: 0.5 MiB, ~30 ms unthrottled
# long enough for a policer's plateau at the lab's lowest rate (probe.verdict.throttling)
THROUGHPUT_TIMEOUT: Final = 8.0
RESIDUAL_DELAY: Final = 1.0  # re-test a failed handshake's address (residual blocking)
SPOT_BURST: Final = 600.0  # seconds a flipped target stays spot-checked after its last flip
PID_FILE: Final = "daemon.pid"

Progress = Callable[[str], None]


class LabError(RuntimeError):
    """The lab cannot be brought up (already up, not root, a start-up failure...)."""


class Interrupted(BaseException):
    """SIGTERM arrived during ``lab run`` (a BaseException, like KeyboardInterrupt: no
    ``except Exception`` on the way may swallow it)."""


@dataclass(frozen=True, slots=True)
class Lab:
    topology: Topology
    state: Path
    pid: int  # the daemon's
    configs: dict[str, Path]  # ISP id -> the probe config of its vantage point


def stderr(message: str) -> None:
    print(f"lab: {message}", file=sys.stderr, flush=True)


def _env() -> dict[str, str]:
    """The environment of lab subprocesses: they import this very ``probe`` package."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def up(
    scenario: str | Path,
    *,
    seed: int | None = None,
    horizon: float = DEFAULT_HORIZON,
    truth: Path | None = None,
    state: Path = STATE_DIR,
    keep_log: Path | None = None,
) -> Lab:
    """Create the namespaces, start the daemon, wait until every server listens.

    On any failure (an interruption included) the lab is torn down again, the
    daemon's log saved to ``keep_log`` first.
    """
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces)")
    loaded = load(find(str(scenario)).absolute())  # the daemon re-reads it
    if seed is not None:
        loaded = replace(loaded, seed=seed)
    if any(name.startswith(topology.OWN_PREFIXES) for name in netns.names(topology.PREFIX)):
        raise LabError("a lab is already up: run `probe lab down` first")
    lab = topology.plan(loaded)
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    truth_path = (truth or state / "truth.jsonl").absolute()
    settings = Settings(loaded.path, loaded.seed, horizon, str(truth_path))
    (state / "lab.json").write_text(json.dumps(asdict(settings)), encoding="utf-8")
    try:
        topology.create(lab)
        with (state / "daemon.log").open("ab") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "probe.lab.daemon", str(state)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=_env(),
                start_new_session=True,  # Ctrl-C on the terminal is for the runner, not it
            )
        (state / PID_FILE).write_text(f"{daemon.pid}\n", encoding="utf-8")
        _wait_ready(state, daemon)
        configs = {}
        (state / "configs").mkdir()
        for net in lab.isps:
            configs[net.isp.id] = state / "configs" / f"{net.isp.id}.toml"
            configs[net.isp.id].write_text(probe_config(lab, net, state / CA_FILE))
    except BaseException:
        with _uninterrupted():
            down(state, keep_log=keep_log)
        raise
    return Lab(lab, state, daemon.pid, configs)


def _wait_ready(state: Path, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not (state / "ready").exists():
        if daemon.poll() is not None or time.monotonic() > deadline:
            failed = state / "failed"
            why = failed.read_text() if failed.exists() else _tail(state / "daemon.log")
            raise LabError(f"the lab daemon did not come up:\n{why}")
        time.sleep(0.02)


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def probe_config(lab: Topology, net: IspNet, ca_bundle: Path) -> str:
    """The probe config of one vantage point: configs/x.toml's targets, lab resolvers and CA."""
    isp, scenario = net.isp, lab.scenario
    resolvers = [{"engine": "system"}]
    resolvers += [{"engine": "udp", "address": a} for a in PUBLIC_RESOLVERS]
    resolvers += [{"engine": "tcp", "address": PUBLIC_RESOLVERS[0]}]
    resolvers += [{"engine": "doh", "url": f"https://{DOH_NAME}/dns-query", "address": DOH}]
    text = [
        f"# Generated by `probe lab` for the SIMULATED ISP {isp.id} of scenario {scenario.name}.",
        "[vantage]",
        f"asn = {_toml(f'AS{isp.asn}')}",
        f"cc = {_toml(isp.cc)}",
        f"network_name = {_toml(isp.name)}",
        "consent = true  # the lab's probe reaches only lab hosts: no volunteer takes a risk",
        f"identity_resolver = {_toml(PUBLIC_RESOLVERS[0])}  # the lab serves whoami, Cymru",
        "[targets]",
        f"x = {_toml(list(scenario.targets))}",
        f"controls = {_toml(list(scenario.controls))}",
        "[measurement]",
        f"ip_versions = {[4, 6] if scenario.ipv6 else [4]}",
        f"ca_bundle = {_toml(str(ca_bundle))}",
        f"throughput_path = {_toml(f'/x-bytes/{THROUGHPUT_BYTES}')}",
        f"throughput_bytes = {THROUGHPUT_BYTES}",
        f"residual_delay = {RESIDUAL_DELAY}",
        f"control_address = {_toml(CONTROL_ADDRESS)}",
        "[timeouts]",
        *(f"{step} = {LAB_TIMEOUT}" for step in ("dns", "connect", "tls")),
        f"throughput = {THROUGHPUT_TIMEOUT}",
        f"http = {2 * LAB_TIMEOUT}",
    ]
    for resolver in resolvers:
        text += ["[[resolvers]]", *(f"{k} = {_toml(v)}" for k, v in resolver.items())]
    return "\n".join(text) + "\n"


def _toml(value: str | list[str]) -> str:
    """A TOML string or array of strings (JSON's escapes are valid TOML basic strings)."""
    return json.dumps(value)


def lab_processes() -> set[int]:
    """Pids of processes with a thread in one of the lab's namespaces (the daemon, probes)."""
    inodes = set()
    for name in netns.names(topology.PREFIX):
        if name.startswith(topology.OWN_PREFIXES):
            with contextlib.suppress(OSError):
                inodes.add(os.stat(netns.NETNS_DIR / name).st_ino)
    pids = set()
    for link in Path("/proc").glob("[0-9]*/task/[0-9]*/ns/net"):
        with contextlib.suppress(OSError, ValueError):
            if int(os.readlink(link).removeprefix("net:[").rstrip("]")) in inodes:
                pids.add(int(link.parts[2]))
    pids.discard(os.getpid())
    return pids


def _alive(pid: int) -> bool:
    """Running (a zombie has finished: its parent just has not reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _daemon_pid(state: Path) -> int | None:
    """The daemon's pid from the pid file, if that process is still the lab daemon."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((state / PID_FILE).read_text())
        if b"probe.lab.daemon" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    return None


def _stop(pids: set[int], timeout: float) -> None:
    """SIGTERM, then SIGKILL what is left after ``timeout``; reap our own children."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def down(state: Path = STATE_DIR, *, keep_log: Path | None = None) -> list[str]:
    """Stop every lab process and remove the lab (or a killed run's leftovers); what went.

    ``keep_log``: where to save the daemon's log before the state directory goes.
    """
    removed = []
    daemon = _daemon_pid(state)
    if daemon is not None:  # first, and alone: it writes the open truth windows on SIGTERM
        _stop({daemon}, STOP_TIMEOUT)
        removed.append(f"daemon {daemon}")
    if keep_log is not None and (state / "daemon.log").exists():
        keep_log.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(state / "daemon.log", keep_log)
    stray = lab_processes()
    _stop(stray, 2.0)
    removed += [f"process {pid}" for pid in sorted(stray)]
    removed += topology.destroy()
    if state.exists():
        shutil.rmtree(state, ignore_errors=True)
        removed.append(str(state))
    return removed


def status(state: Path = STATE_DIR) -> str:
    """A human summary of the lab: up or not, scenario, daemon, namespaces."""
    names = [n for n in netns.names(topology.PREFIX) if n.startswith(topology.OWN_PREFIXES)]
    daemon = _daemon_pid(state)
    if not names and daemon is None:
        return "lab: down"
    lines = [f"lab: up ({len(names)} namespaces), daemon {daemon or 'NOT RUNNING'}"]
    with contextlib.suppress(OSError, ValueError, TypeError):
        settings = Settings.read(state)
        lines.append(f"scenario {settings.scenario} seed {settings.seed} truth {settings.truth}")
    for config in sorted((state / "configs").glob("*.toml")):
        lines.append(
            f"  ip netns exec {topology.PREFIX}v-{config.stem} {sys.executable} -m probe run "
            f"--config {config} --output DIR"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM: a second Ctrl-C must not leave a half-removed lab."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Interrupted` (Ctrl-C is KeyboardInterrupt already)."""

    def handler(signum: int, _: FrameType | None) -> None:
        raise Interrupted(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    scenario: str | Path,
    *,
    duration: float,
    interval: float,
    output: Path,
    seed: int | None = None,
    progress: Progress = stderr,
) -> int:
    """Up, probe every ISP in rounds ``interval`` s apart on average (Poisson) for
    ``duration`` s, down; rounds that failed."""
    output = output.absolute()  # the probes get it as an argument
    output.mkdir(parents=True, exist_ok=True)
    failures = 0
    probes: list[subprocess.Popen[bytes]] = []
    spots: Spots | None = None
    lab: Lab | None = None  # set once up: a lab that was already up is not this run's to tear down
    interrupted = False
    with _sigterm_raises():
        try:
            started = time.monotonic()
            lab = up(
                scenario,
                seed=seed,
                horizon=duration + 600.0,
                truth=output / "truth.jsonl",
                keep_log=output / "logs" / "daemon.log",
            )
            _describe(lab, output, duration, interval)
            progress(
                f"up: {lab.topology.scenario.name}, {len(lab.topology.isps)} ISPs "
                f"in {time.monotonic() - started:.1f} s; output {output}"
            )
            t0, round_number = time.monotonic(), 0
            rng = random.Random(f"{lab.topology.scenario.seed}/rounds")  # a replayable run
            spots = Spots(output, interval, SPOT_BURST, random.Random(f"{rng.random()}/spots"))
            ids = [n.isp.id for n in lab.topology.isps]
            nets = {n.isp.id: n for n in lab.topology.isps}
            current: dict[str, subprocess.Popen[bytes]] = {}  # this round's, once started

            def follow(until: float, what: str = "") -> None:
                """Spot checks of the ISPs whose probe is done (probe.lab.spots) until
                ``until``, while the round's probes start and run (on a terminal, the
                seconds left before ``what``)."""
                while True:
                    if what:
                        ticker.waiting(until - time.monotonic(), what)
                    spots.step(
                        ids,
                        lambda isp: isp not in current or current[isp].poll() is not None,
                        lambda isp, only: _probe(lab, nets[isp], output, only),
                    )
                    if time.monotonic() >= until:
                        return
                    time.sleep(0.1)

            while time.monotonic() - t0 < duration:
                round_number += 1
                began = time.monotonic()
                probes = []
                current.clear()
                for net in lab.topology.isps:
                    if net.isp.id in spots.running:  # never two probes of one ISP at once
                        spots.running[net.isp.id].wait()
                    current[net.isp.id] = _probe(lab, net, output)
                    probes.append(current[net.isp.id])
                    # Staggered over half the interval, as independent volunteers would be:
                    # a synchronized start of every probe only measures the lab's own load.
                    follow(time.monotonic() + interval / 2 / len(lab.topology.isps))
                # The round ends when its probes are done, with spot checks while they run
                # (an ISP's next probe waits for its own). Not until the spot checks are
                # done: each one started meanwhile kept the round going, without end on a
                # loaded host (a 725 s round: load flips verdicts, a flip starts spot checks).
                while any(p.poll() is None for p in probes):
                    follow(time.monotonic())
                    ticker.measuring(probes, f"round {round_number}")
                    time.sleep(0.1)
                ticker.clear()
                codes = [p.wait() for p in probes]
                failed = [n.isp.id for n, c in zip(lab.topology.isps, codes, strict=True) if c]
                failures += bool(failed)
                progress(
                    f"round {round_number} done in {time.monotonic() - began:.1f} s"
                    + (f"; probe failed in {', '.join(failed)}" if failed else "")
                )
                if _daemon_pid(lab.state) is None:  # its techniques and servers went with it
                    progress("the lab daemon died: see logs/daemon.log; stopping")
                    failures += 1
                    break
                # Rounds at Poisson times, as `probe schedule` samples: a fixed interval
                # would alias with a periodic censor (probe.schedule_policy.poisson_wait).
                wait = poisson_wait(interval, rng.random())
                following = (
                    f"round {round_number + 1}" if began + wait < t0 + duration else "the end"
                )
                follow(min(began + wait, t0 + duration), following)
                ticker.clear()
            while spots.busy():  # the last ones finish their lines
                time.sleep(0.1)
            if spots.launched:
                progress(f"{spots.launched} spot checks of targets seen blocked on sporadic ISPs")
        except (KeyboardInterrupt, Interrupted) as exc:
            progress(f"interrupted ({exc.__class__.__name__}): tearing down")
            interrupted = True
            failures += 1
        finally:
            with _uninterrupted():
                live = [*probes, *(spots.running.values() if spots else ())]
                _stop({p.pid for p in live if p.poll() is None}, 2.0)
                if lab is not None:
                    down(keep_log=output / "logs" / "daemon.log")
                if lab is not None or interrupted:  # interrupted in up(): it tore itself down
                    progress("down")
    return failures


def _probe(
    lab: Lab, net: IspNet, output: Path, only: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    logs = output / "logs"
    logs.mkdir(exist_ok=True)
    argv = [
        "ip",
        "netns",
        "exec",
        net.vantage,
        sys.executable,
        "-m",
        "probe",
        "run",
        "--config",
        str(lab.configs[net.isp.id]),
        "--output",
        str(output / net.isp.id),
        *(("--only", *only) if only else ()),
    ]
    with (logs / f"{net.isp.id}.log").open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            # Each vantage point keeps its own probe state (identity cache, consent) inside
            # the lab's state directory: never the volunteer's, never another ISP's.
            env={**_env(), "PROBE_STATE_DIR": str(lab.state / "probes" / net.isp.id)},
            start_new_session=True,
        )


def _describe(lab: Lab, output: Path, duration: float, interval: float) -> None:
    """``lab.json`` of the run: the scenario, each ISP's network and the planned schedule."""
    scenario = lab.topology.scenario
    shutil.copyfile(scenario.path, output / "scenario.toml")
    description = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "duration": duration,
        "interval": interval,
        "isps": [
            {
                "id": n.isp.id,
                "asn": f"AS{n.isp.asn}",
                "cc": n.isp.cc,
                "name": n.isp.name,
                "vantage": [a for a in (n.vantage_address, n.vantage_address6) if a],
                "techniques": [asdict(t) for t in n.isp.techniques],
            }
            for n in lab.topology.isps
        ],
        "addresses": lab.topology.addresses,
        "schedule": [asdict(w) for w in schedule(scenario, duration)],
    }
    (output / "lab.json").write_text(json.dumps(description, indent=1), encoding="utf-8")

"""Issue 17's end to end: the lab's vantage points upload to a collector that is SIGKILLed
and restarted mid-campaign; its store then holds exactly what the probes made, and ``probe
report`` over it tells each simulated ISP's story.

The collector runs inside the lab's core namespace ("the internet") on a documentation
address of the core's loopback, with HTTPS from a CA the probes pin: the probes reach it as
they reach every lab server, through their ISP's router, and the root namespace has no
route to it. Every wait is on a condition (a socket listening, a process ending, an outbox
empty), with generous bounds.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labutil import ROOT, lab_leftovers, require_root

from probe import store
from probe.lab import runner, topology
from probe.lab.censors import EXPECTED_METHOD
from probe.lab.pki import Authority, write_pair
from probe.lab.scenario import load
from probe.upload import pending

pytestmark = pytest.mark.lab

ADDRESS = "198.51.100.99"  # on the core's loopback, as the lab's other servers
PORT = 8443
SCENARIO = """
name = "collect"
seed = 17
ipv6 = false

[[isps]]
id = "sni"
asn = "AS64496"
cc = "PK"
name = "Simulated ISP A (SNI reset), PK"
techniques = [{ technique = "sni_reset", schedule = "always" }]

[[isps]]
id = "dns"
asn = "AS64497"
cc = "PK"
name = "Simulated ISP B (DNS blockpage), PK"
techniques = [{ technique = "dns_blockpage", schedule = "always" }]

[[isps]]
id = "clean"
asn = "AS64498"
cc = "PK"
name = "Simulated ISP C (clean), PK"
techniques = []
"""


def in_netns(namespace: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


def wait(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class LabCollector:
    def __init__(self, data: Path, cert: Path, key: Path) -> None:
        self.argv = in_netns(
            topology.CORE, sys.executable, "-m", "probe", "collector", "serve",
            "--data", str(data), "--host", ADDRESS, "--port", str(PORT),
            "--tls-cert", str(cert), "--tls-key", str(key),
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def listening(self) -> bool:
        ss = in_netns(topology.CORE, "ss", "-Hltn", f"src {ADDRESS}:{PORT}")
        return bool(subprocess.run(ss, capture_output=True, text=True, check=True).stdout)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdin=subprocess.DEVNULL)
        wait(self.listening, "the collector to listen")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)  # `ip netns exec` exec'd python: this is it
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_lab_probes_upload_through_a_collector_killed_mid_campaign(tmp_path: Path) -> None:
    require_root()
    assert lab_leftovers() == [], "a lab is already up: run `probe lab down`"
    scenario = tmp_path / "collect.toml"
    scenario.write_text(SCENARIO)
    ca = Authority.create("lab collector CA")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    cert, key = write_pair(ca.issue([], ip_addresses=[ADDRESS]), tmp_path, "collector")
    collector = LabCollector(tmp_path / "collector", cert, key)
    lab = runner.up(scenario, horizon=600, truth=tmp_path / "truth.jsonl")
    try:
        subprocess.run(
            ["ip", "-n", topology.CORE, "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True
        )
        collector.start()
        states = {net.isp.id: tmp_path / "state" / net.isp.id for net in lab.topology.isps}
        configs = {}
        for net in lab.topology.isps:
            text = lab.configs[net.isp.id].read_text()
            text = re.sub(r"(?m)^x = .*$", 'x = ["x.com", "twitter.com"]', text)
            text = re.sub(r"(?m)^throughput_path = .*$", 'throughput_path = ""', text)
            text += (
                f'[upload]\nurl = "https://{ADDRESS}:{PORT}"\n'
                f'ca_bundle = "{tmp_path / "ca.pem"}"\nmax_time = 3\ntimeout = 2\n'
            )
            configs[net.isp.id] = tmp_path / f"{net.isp.id}.toml"
            configs[net.isp.id].write_text(text)

        def probes(command: str) -> list[subprocess.Popen[bytes]]:
            once = ["--once"] if command == "run" else []
            running = []
            for net in lab.topology.isps:
                argv = in_netns(net.vantage, sys.executable, "-m", "probe", command, *once,
                                "--config", str(configs[net.isp.id]),
                                "--output", str(tmp_path / "out" / net.isp.id))  # fmt: skip
                env = {**runner._env(), "PROBE_STATE_DIR": str(states[net.isp.id])}
                quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
                running.append(subprocess.Popen(argv, cwd=ROOT, env=env, **quiet))
            return running

        def finish(running: list[subprocess.Popen[bytes]]) -> list[int]:
            return [p.wait(timeout=120) for p in running]

        assert finish(probes("run")) == [0, 0, 0]
        assert not any(pending(s) for s in states.values())  # each campaign acknowledged
        campaign = probes("run")
        collector.kill()  # mid-campaign: the probes are measuring, their upload will fail
        finish(campaign)
        assert all(pending(s) for s in states.values())  # kept in each outbox
        collector.start()
        assert finish(probes("run")) == [0, 0, 0]  # sends the backlog with its own campaign
        for _ in range(20):  # bounded; normally the campaign above emptied every outbox
            if not any(pending(s) for s in states.values()):
                break
            finish(probes("upload"))
        assert not any(pending(s) for s in states.values())
    finally:
        collector.stop()
        runner.down(lab.state)
    assert lab_leftovers() == []

    made = [m["measurement_uid"] for m in store.read([tmp_path / "out"])]
    archived = [m["measurement_uid"] for m in store.read([collector_data(tmp_path)])]
    assert len(made) == len(set(made)) > 0
    assert sorted(archived) == sorted(made)  # no loss, no duplicate

    out = tmp_path / "report.json"
    report = subprocess.run(
        [sys.executable, "-m", "probe", "report", str(collector_data(tmp_path)),
         "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    data = json.loads(out.read_text())
    series = {s["asn"]: {f["family"]: f for f in s["families"]} for s in data["isps"]}
    for isp in load(scenario).isps:
        x = series[f"AS{isp.asn}"]["X"]
        assert x["measured"] == 3 * 2, isp.id  # 3 campaigns of 2 X names
        methods = {EXPECTED_METHOD[t.technique] for t in isp.techniques}
        if not methods:
            assert x["blocked"] == 0 and x["ok"] == x["measured"], isp.id
        else:
            (method,) = methods
            assert x["blocked"] == x["measured"] == x["blocked_by"][method], isp.id


def collector_data(tmp_path: Path) -> Path:
    return tmp_path / "collector" / "archive"

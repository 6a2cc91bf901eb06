"""The lab's scenarios, schedule and topology.

Scenario and schedule tests are pure. The topology tests bring the smoke lab up once (root,
real namespaces, the real daemon) and talk to it from the vantage namespaces with the
probe's own primitives: the ISP and public resolvers, whoami, DoH, TLS to the x.com replica
with the lab CA (and its reset by the SNI-filtering ISP), then check that ``down`` leaves
nothing behind and that the truth was written.
"""

from __future__ import annotations

import base64
import itertools
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dns.message
import httpx
import pytest
from labutil import in_netns, lab_leftovers, require_root

from probe.lab import runner, truth
from probe.lab.scenario import DEFAULT_INTERVAL, PERIOD, ScenarioError, find, load, schedule
from probe.net.dns import query_tcp, query_udp
from probe.net.tls import handshake, make_context
from probe.records import Clock, DnsQuery, TlsHandshake

SNI, CLEAN = "probelab-v-sni", "probelab-v-clean"  # the smoke scenario's vantage points
X = "203.0.113.10"  # x.com's replica: the first domain of configs/x.toml


# --- scenarios and schedule (pure) ---------------------------------------------------------


def test_shipped_scenarios_load() -> None:
    pakistan = load(find("pakistan-2024"))
    assert len(pakistan.isps) >= 7
    techniques = {t.technique for isp in pakistan.isps for t in isp.techniques}
    assert {"sni_reset", "dns_blockpage", "ip_blackhole", "outage", "lossy"} <= techniques
    assert any(t.schedule == "sporadic" for isp in pakistan.isps for t in isp.techniques)
    assert any(not isp.techniques for isp in pakistan.isps)  # a clean ISP
    assert all(64496 <= isp.asn <= 64511 and isp.cc == "PK" for isp in pakistan.isps)
    smoke = load(find("smoke"))
    assert [(i.id, [t.technique for t in i.techniques]) for i in smoke.isps] == [
        ("sni", ["sni_reset"]),
        ("clean", []),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('technique = "sni_rest"', "isps[0].techniques[0].technique: unknown technique 'sni_rest'"),
        ('technique = "sni_reset", domains = ["x.org"]', "isps[0].techniques[0].domains: unknown"),
        ('technique = "sni_reset", schedule = "daily"', "isps[0].techniques[0].schedule: expected"),
    ],
)
def test_bad_technique_names_file_and_key(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        f'seed = 1\n[[isps]]\nid = "a"\nasn = "AS64496"\ncc = "PK"\nname = "n"\n'
        f"techniques = [{{ {line} }}]\n"
    )
    with pytest.raises(ScenarioError) as raised:
        load(path)
    assert str(raised.value).startswith(f"{path}: {message}")


def test_asn_outside_documentation_range_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('seed = 1\n[[isps]]\nid = "a"\nasn = "AS17557"\ncc = "PK"\nname = "n"\n')
    with pytest.raises(ScenarioError, match=rf"^{path}: isps\[0\].asn: expected a documentation"):
        load(path)


def test_unknown_scenario_name_lists_the_known_ones() -> None:
    with pytest.raises(ScenarioError, match=r"no such scenario .*pakistan-2024"):
        load(find("atlantis"))


def test_schedule_is_deterministic_and_sporadic_windows_last_10_to_60_s() -> None:
    pakistan = load(find("pakistan-2024"))
    windows = schedule(pakistan, 3600.0)
    assert windows == schedule(pakistan, 3600.0)
    assert schedule(replace(pakistan, seed=pakistan.seed + 1), 3600.0) != windows
    sporadic = [w for w in windows if w.isp == "isp6"]
    assert len(sporadic) > 10
    for window in sporadic[:-1]:  # the last one may be cut by the horizon
        assert PERIOD[0] <= window.end - window.start <= PERIOD[1]
    gaps = [b.start - a.end for a, b in itertools.pairwise(sporadic)]
    assert all(PERIOD[0] <= gap <= PERIOD[1] for gap in gaps)  # off periods too
    always = [w for w in windows if w.isp == "isp1"]
    assert [(w.technique, w.start, w.end) for w in always] == [("sni_reset", 0.0, 3600.0)]


def test_periodic_windows_cycle_on_a_multiple_of_the_interval_varied_by_seed() -> None:
    pakistan = load(find("pakistan-2024"))
    shapes = set()
    for seed in range(8):
        windows = [w for w in schedule(replace(pakistan, seed=seed), 600.0) if w.isp == "isp14"]
        starts = [w.start for w in windows if w.start > 0]
        periods = {round(b - a, 3) for a, b in itertools.pairwise(starts)}
        (period,) = periods  # a strict cycle
        assert period in (DEFAULT_INTERVAL, 2 * DEFAULT_INTERVAL, 3 * DEFAULT_INTERVAL)
        share = (windows[1].end - windows[1].start) / period
        assert 0.5 <= share <= 0.8 and all(w.sporadic for w in windows)
        shapes.add((period, round(share, 2), round(starts[0] % period, 2)))
    assert len(shapes) == 8  # period, share and phase drawn from the seed


# --- the smoke lab (root) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The smoke lab, up for the module; yields its truth file (kept after ``down``)."""
    require_root()
    assert lab_leftovers() == [], "a lab is already up: run `probe lab down`"
    truth_file = tmp_path_factory.mktemp("truth") / "truth.jsonl"
    runner.up("smoke", truth=truth_file)
    try:
        yield truth_file
    finally:
        runner.down()


@pytest.mark.lab
def test_isp_resolver_answers_from_the_lab_zone(smoke: Path) -> None:
    [answer] = in_netns(
        SNI,
        lambda: query_udp(
            "x.com", "A", "100.64.1.1", clock=Clock(), timeout=2, late_window=0.1, transaction_id=1
        ),
    )
    assert answer.failure is None
    assert [(a.answer_type, a.value) for a in answer.answers] == [("A", X)]


@pytest.mark.lab
def test_system_resolver_via_resolv_conf(smoke: Path) -> None:
    code = "import socket; print(sorted({i[4][0] for i in socket.getaddrinfo('t.co', 443)}))"
    done = subprocess.run(
        ["ip", "netns", "exec", CLEAN, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    assert done.stdout.strip() == "['2001:db8:113::18', '203.0.113.18']"
    resolv = subprocess.run(
        ["ip", "netns", "exec", CLEAN, "cat", "/etc/resolv.conf"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert resolv.stdout == "nameserver 100.64.2.1\n"


@pytest.mark.lab
def test_public_resolver_answers_over_udp_and_tcp(smoke: Path) -> None:
    async def both() -> tuple[tuple[DnsQuery, ...], DnsQuery]:
        udp = await query_udp(
            "pbs.twimg.com",
            "AAAA",
            "198.51.100.8",
            clock=Clock(),
            timeout=2,
            late_window=0.1,
            transaction_id=1,
        )
        tcp = await query_tcp(
            "www.example.com", "A", "198.51.100.1", clock=Clock(), timeout=2, transaction_id=2
        )
        return udp, tcp

    (udp,), tcp = in_netns(CLEAN, both)
    assert [(a.answer_type, a.value) for a in udp.answers] == [("AAAA", "2001:db8:113::20")]
    assert [(a.answer_type, a.value) for a in tcp.answers] == [("A", "203.0.113.23")]


@pytest.mark.lab
def test_a_replica_address_runs_no_resolver(smoke: Path) -> None:
    [answer] = in_netns(
        CLEAN,
        lambda: query_udp(
            "x.com", "A", X, clock=Clock(), timeout=1, late_window=0, transaction_id=1
        ),
    )
    assert answer.failure == "connection_refused"


@pytest.mark.lab
def test_whoami_and_asn_names_give_the_vantage(smoke: Path) -> None:
    async def ask() -> list[str]:
        values = []
        for name, kind in (
            ("o-o.myaddr.l.google.com", "TXT"),
            ("myip.opendns.com", "A"),
            ("2.2.64.100.origin.asn.cymru.com", "TXT"),
            ("AS64497.asn.cymru.com", "TXT"),
        ):
            [record] = await query_udp(
                name,
                kind,
                "198.51.100.9",
                clock=Clock(),
                timeout=2,
                late_window=0,
                transaction_id=1,
            )
            values += [a.value for a in record.answers]
        return values

    assert in_netns(CLEAN, ask) == [
        "100.64.2.2",
        "100.64.2.2",
        "64497 | 100.64.2.0/24 | PK | lab | 2024-01-01",
        "64497 | PK | lab | 2024-01-01 | LAB-CLEAN - Simulated ISP B (clean), PK",
    ]


@pytest.mark.lab
def test_tls_to_the_x_replica_verifies_with_the_lab_ca(smoke: Path) -> None:
    context = make_context(str(runner.STATE_DIR / "ca.pem"))

    def tls(ip: str, sni: str) -> Coroutine[Any, Any, TlsHandshake]:
        return handshake(
            ip,
            443,
            sni,
            context=context,
            clock=Clock(),
            connect_timeout=2,
            timeout=2,
            transaction_id=1,
        )

    clean = in_netns(CLEAN, lambda: tls(X, "x.com"))
    assert clean.failure is None, clean
    assert clean.server_name == "x.com"
    v6 = in_netns(CLEAN, lambda: tls("2001:db8:113::10", "x.com"))
    assert v6.failure is None
    # The censoring ISP resets the same handshake; a control name on X's address passes.
    assert in_netns(SNI, lambda: tls(X, "x.com")).failure == "connection_reset"
    assert in_netns(SNI, lambda: tls(X, "www.example.com")).failure is None


@pytest.mark.lab
def test_doh_answers_post_and_get(smoke: Path) -> None:
    query = dns.message.make_query("video.twimg.com", "A")
    query.id = 0
    wire = query.to_wire()
    context = make_context(str(runner.STATE_DIR / "ca.pem"), alpn=("http/1.1",))

    async def ask() -> list[list[str]]:
        sni = {"sni_hostname": "dns.lab.invalid"}
        url = "https://198.51.100.53/dns-query"
        async with httpx.AsyncClient(verify=context) as client:
            post = await client.post(
                url,
                content=wire,
                extensions=sni,
                headers={"content-type": "application/dns-message"},
            )
            encoded = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
            get = await client.get(f"{url}?dns={encoded}", extensions=sni)
        return [
            [rr.to_text() for rr in dns.message.from_wire(r.content).answer] for r in (post, get)
        ]

    assert in_netns(CLEAN, ask) == [["video.twimg.com. 300 IN A 203.0.113.21"]] * 2


@pytest.mark.lab
def test_replica_serves_a_titled_page_and_sized_objects(smoke: Path) -> None:
    async def fetch() -> tuple[str, int]:
        async with httpx.AsyncClient() as client:
            page = await client.get("http://203.0.113.12/", headers={"host": "twitter.com"})
            blob = await client.get("http://203.0.113.12/x-bytes/200000")
        return page.text, len(blob.content)

    page, size = in_netns(CLEAN, fetch)
    assert "<title>twitter.com (probe lab replica)</title>" in page
    assert size == 200000


@pytest.mark.lab
def test_second_up_is_refused(smoke: Path) -> None:
    with pytest.raises(runner.LabError, match="already up"):
        runner.up("smoke")


@pytest.mark.lab
def test_down_leaves_nothing_and_the_truth_is_written(smoke: Path) -> None:
    """Last in the module: it takes the lab down itself."""
    runner.down()
    assert lab_leftovers() == []
    records = truth.read(smoke)
    assert {(r.isp, r.asn, r.technique, r.method) for r in records} == {
        ("sni", "AS64496", "sni_reset", "tls")
    }
    assert len(records) == 12  # one per X target
    assert all(r.start < r.end and r.end.endswith("Z") for r in records)
    assert runner.down() == []  # idempotent

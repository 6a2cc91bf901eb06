"""Every censor technique, alone, in a tiny real lab (see conftest.py).

Each lab test builds its own client -- router -- server namespaces, runs the
technique in the router, measures from the client with the probe's own
primitives and asserts the exact failure strings; then switches the
technique off (the outcome must be clean again) and stops it (nothing may
be left in the router). The pure tests at the end cover the ClientHello
parser and the registry without root.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading

import pytest
from minilab import BLOCKPAGE, CONTROL, PUBLIC_RESOLVER, REAL_PAGE, ROUTER, Lab, X

from probe.lab.censors import EXPECTED_METHOD, Technique, make_technique
from probe.lab.censors.address_filter import IpBlackhole, TcpReset
from probe.lab.censors.clienthello import Hello, parse_hello
from probe.lab.censors.dns_injection import DnsInjection
from probe.lab.censors.dns_resolver import DnsResolverCensor, Kind
from probe.lab.censors.http_blockpage import HttpBlockpage, Style
from probe.lab.censors.link_failure import Lossy, Outage
from probe.lab.censors.sni_proxy import SniProxy
from probe.lab.censors.sni_rst_injection import SniRstInjection
from probe.lab.censors.throttle import Throttle
from probe.net.dns import query_udp
from probe.net.http import download, get
from probe.net.tcp import connect
from probe.net.tls import handshake, make_context
from probe.records import Clock, DnsQuery, HttpRequest, Throughput, TlsHandshake

# --- the probe's view, from the client namespace ---------------------------------------------


def tcp(lab: Lab, ip: str, port: int = 443) -> str | None:
    record = lab.client(lambda: connect(ip, port, clock=Clock(), timeout=1.0, transaction_id=1))
    return record.failure


def tls(lab: Lab, server_name: str, ip: str = X, timeout: float = 2.0) -> TlsHandshake:
    context = make_context(lab.ca_file)
    return lab.client(
        lambda: handshake(
            ip,
            443,
            server_name,
            context=context,
            clock=Clock(),
            connect_timeout=2.0,
            timeout=timeout,
            transaction_id=1,
        )
    )


def dns_udp(lab: Lab, name: str, resolver: str, timeout: float = 1.0) -> tuple[DnsQuery, ...]:
    return lab.client(
        lambda: query_udp(
            name,
            "A",
            resolver,
            clock=Clock(),
            timeout=timeout,
            late_window=0.3,
            transaction_id=1,
        )
    )


def http(lab: Lab, host: str, ip: str = X) -> HttpRequest:
    context = make_context(lab.ca_file)
    return lab.client(
        lambda: get(
            f"http://{host}/",
            ip,
            context=context,
            clock=Clock(),
            timeout=3.0,
            body_cap=65536,
            transaction_id=1,
        )
    )


def rate_kbit(lab: Lab, size: int) -> float:
    """The download rate of ``size`` bytes from x.com, in kbit/s."""
    context = make_context(lab.ca_file)
    record: Throughput = lab.client(
        lambda: download(
            f"http://x.com/bytes/{size}",
            X,
            context=context,
            clock=Clock(),
            timeout=10.0,
            max_bytes=size,
            transaction_id=1,
        )
    )
    assert record.failure is None and record.num_bytes == size
    return record.num_bytes * 8 / 1000 / (record.t - record.t0)


def stop_and_check_clean(lab: Lab, technique: Technique) -> None:
    """stop() must leave no table, no qdisc, no sniffer thread and no DNS policy behind."""
    lab.stop(technique)
    in_router = ["ip", "netns", "exec", lab.ctx.netns]
    tables = subprocess.run([*in_router, "nft", "list", "tables"], capture_output=True, text=True)
    assert "probelab_" not in tables.stdout
    for device in (lab.ctx.downlink, lab.ctx.uplink):
        qdiscs = subprocess.run(
            [*in_router, "tc", "qdisc", "show", "dev", device], capture_output=True, text=True
        )
        assert "htb" not in qdiscs.stdout
    assert not [t for t in threading.enumerate() if t.name.startswith("sniff-")]
    assert lab.ctx.dns_policies == []


# --- DNS ---------------------------------------------------------------------------------------


@pytest.mark.lab
@pytest.mark.parametrize(
    ("kind", "failure", "answer"),
    [
        ("dns_nxdomain", "dns_nxdomain_error", None),
        ("dns_servfail", "dns_servfail_error", None),
        ("dns_refused", "dns_refused_error", None),
        ("dns_bogon", None, "127.0.0.2"),
        ("dns_blockpage", None, BLOCKPAGE),
    ],
)
def test_isp_resolver_lies(lab: Lab, kind: Kind, failure: str | None, answer: str | None) -> None:
    technique = DnsResolverCensor(kind)
    lab.start(technique)
    lab.set_active(technique, "x.com")
    (record,) = dns_udp(lab, "x.com", ROUTER)
    assert record.failure == failure
    assert [a.value for a in record.answers] == ([answer] if answer else [])
    # Exact names only: a sibling name and the public resolver are untouched.
    assert [a.value for a in dns_udp(lab, "www.x.com", ROUTER)[0].answers] == []
    assert [a.value for a in dns_udp(lab, "x.com", PUBLIC_RESOLVER)[0].answers] == [X]
    lab.set_active(technique)
    assert [a.value for a in dns_udp(lab, "x.com", ROUTER)[0].answers] == [X]
    stop_and_check_clean(lab, technique)


@pytest.mark.lab
def test_dns_injection_races_a_forged_answer_ahead_of_the_real_one(lab: Lab) -> None:
    technique = DnsInjection()
    lab.start(technique)
    lab.set_active(technique, "x.com")
    for resolver in (PUBLIC_RESOLVER, ROUTER):  # forwarded and to the router itself
        first, late = dns_udp(lab, "x.com", resolver)
        assert [a.value for a in first.answers] == [BLOCKPAGE]
        assert [a.value for a in late.answers] == [X]
        assert late.tags == ("late_response",)
    assert [[a.value for a in r.answers] for r in dns_udp(lab, "control.example", ROUTER)] == [
        [CONTROL]
    ]
    lab.set_active(technique)
    assert [[a.value for a in r.answers] for r in dns_udp(lab, "x.com", PUBLIC_RESOLVER)] == [[X]]
    stop_and_check_clean(lab, technique)


# --- IP and TCP ----------------------------------------------------------------------------


@pytest.mark.lab
@pytest.mark.parametrize(
    ("technique", "failure"),
    [(IpBlackhole(), "generic_timeout_error"), (TcpReset(), "connection_refused")],
    ids=["ip_blackhole", "tcp_reset"],
)
def test_address_filters(lab: Lab, technique: Technique, failure: str) -> None:
    lab.start(technique)
    lab.set_active(technique, "x.com")  # its addresses include an IPv6 one: both rules load
    assert tcp(lab, X) == failure
    assert tcp(lab, CONTROL) is None
    lab.set_active(technique)
    assert tcp(lab, X) is None
    stop_and_check_clean(lab, technique)


# --- TLS -----------------------------------------------------------------------------------


@pytest.mark.lab
@pytest.mark.parametrize(
    ("technique", "failure"),
    [
        (SniProxy("sni_reset"), "connection_reset"),
        (SniProxy("sni_stall"), "generic_timeout_error"),
        (SniRstInjection(), "connection_reset"),
    ],
    ids=["sni_reset", "sni_stall", "sni_rst_injection"],
)
def test_sni_techniques(lab: Lab, technique: Technique, failure: str) -> None:
    lab.start(technique)
    lab.set_active(technique, "x.com")
    assert tcp(lab, X) is None
    blocked = tls(lab, "x.com", timeout=1.0)
    assert (blocked.failure, blocked.failed_operation) == (failure, "tls_handshake")
    # The trigger is the SNI: the control name on x.com's address passes...
    assert tls(lab, "control.example").failure is None
    # ...and x.com's name on the control address does not.
    assert tls(lab, "x.com", ip=CONTROL, timeout=1.0).failure == failure
    lab.set_active(technique)
    assert tls(lab, "x.com").failure is None
    stop_and_check_clean(lab, technique)


# --- HTTP ----------------------------------------------------------------------------------


@pytest.mark.lab
@pytest.mark.parametrize(
    ("style", "fingerprint"),
    [
        ("national", b"prohibited for viewership from within Pakistan"),
        ("jazz", b"http://119.73.65.87:8080/redirect.html?accessurl=http%3A%2F%2Fx.com%2F"),
        ("nayatel", b"As per your subscription of Nayatel Safeweb service"),
    ],
)
def test_http_blockpage(lab: Lab, style: Style, fingerprint: bytes) -> None:
    technique = HttpBlockpage(style)
    lab.start(technique)
    lab.set_active(technique, "x.com")
    blocked = http(lab, "x.com")
    assert (blocked.failure, blocked.status_code) == (None, 200)
    assert fingerprint in blocked.body
    assert http(lab, "control.example").body == REAL_PAGE  # forwarded untouched
    lab.set_active(technique)
    assert http(lab, "x.com").body == REAL_PAGE
    stop_and_check_clean(lab, technique)


# --- throughput and the network itself -----------------------------------------------------


@pytest.mark.lab
def test_throttle_caps_the_rate(lab: Lab) -> None:
    rate = 800
    technique = Throttle(rate_kbit=rate, drawn=False)
    lab.start(technique)
    lab.set_active(technique, "x.com")
    measured = rate_kbit(lab, 150_000)  # ~1.5 s at the cap
    assert rate / 2 <= measured <= rate * 2
    lab.set_active(technique)
    assert rate_kbit(lab, 150_000) > rate * 4
    stop_and_check_clean(lab, technique)


@pytest.mark.lab
def test_outage_drops_everything(lab: Lab) -> None:
    technique = Outage()
    lab.start(technique)
    lab.set_active(technique, "x.com")  # network-wide: any domain switches it on
    assert tcp(lab, X) == "generic_timeout_error"
    assert tcp(lab, CONTROL) == "generic_timeout_error"
    assert dns_udp(lab, "x.com", ROUTER, timeout=0.5)[0].failure == "generic_timeout_error"
    lab.set_active(technique)
    assert tcp(lab, CONTROL) is None
    assert dns_udp(lab, "x.com", ROUTER)[0].failure is None
    stop_and_check_clean(lab, technique)


@pytest.mark.lab
def test_lossy_loses_some_packets(lab: Lab) -> None:
    technique = Lossy(percent=25)
    lab.start(technique)

    async def queries() -> list[DnsQuery]:
        names = [f"q{i}.x.com" for i in range(40)]  # answered NXDOMAIN when they get through
        batches = await asyncio.gather(
            *(
                query_udp(
                    name,
                    "A",
                    PUBLIC_RESOLVER,
                    clock=Clock(),
                    timeout=0.5,
                    late_window=0.0,
                    transaction_id=i,
                )
                for i, name in enumerate(names)
            )
        )
        return [batch[0] for batch in batches]

    lab.set_active(technique, "x.com")
    lost = sum(r.failure == "generic_timeout_error" for r in lab.client(queries))
    assert 0 < lost < 40
    lab.set_active(technique)
    assert sum(r.failure == "generic_timeout_error" for r in lab.client(queries)) == 0
    stop_and_check_clean(lab, technique)


# --- pure: no root -------------------------------------------------------------------------


def _client_hello(server_name: str | None) -> bytes:
    """The first flight of a real TLS client (OpenSSL via ``ssl``)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_parse_hello_waits_for_the_whole_hello_however_it_is_cut() -> None:
    hello = _client_hello("X.com")
    for cut in range(len(hello)):
        assert parse_hello(hello[:cut]) is None
    assert parse_hello(hello) == Hello("x.com")
    assert parse_hello(hello + b"\x17\x03\x03") == Hello("x.com")  # what follows is ignored


def test_parse_hello_reassembles_a_hello_split_over_two_records() -> None:
    hello = _client_hello("x.com")
    message = hello[5:]
    split = [message[:50], message[50:]]
    records = b"".join(hello[:3] + len(part).to_bytes(2, "big") + part for part in split)
    assert parse_hello(records[:60]) is None
    assert parse_hello(records) == Hello("x.com")


def test_parse_hello_without_sni_or_tls() -> None:
    assert parse_hello(_client_hello(None)) == Hello(None)
    assert parse_hello(b"GET / HTTP/1.1\r\n\r\n") == Hello(None)


def test_every_technique_name_has_a_factory() -> None:
    for name in EXPECTED_METHOD:
        assert make_technique(name).name == name
    with pytest.raises(KeyError):
        make_technique("nope")

"""DNS primitives against the lab DNS server, over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import dns.message
import dns.rcode
import httpx
import pytest

from probe.lab.dnsserver import Reply, Zone, error, serve, serve_doh
from probe.net.dns import lookup_system, query_doh, query_tcp, query_udp
from probe.records import Clock, DnsAnswer, DnsQuery

ZONE = Zone(
    {
        "x.com": {"A": ["203.0.113.10", "203.0.113.11"], "AAAA": ["2001:db8::10"]},
        "www.x.com": {"CNAME": ["x.com"]},
        "only-v4.example": {"A": ["198.51.100.7"]},
    },
    ttl=123,
    dynamic={"o-o.myaddr.l.google.com": lambda client: [client[0]]},
)
FORGED = Zone({"x.com": {"A": ["100.64.0.1"]}}, ttl=60)


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _closed_port(kind: socket.SocketKind) -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _udp(
    handler: Callable[[dns.message.Message, tuple[str, int]], Awaitable[Sequence[Reply]]],
    hostname: str = "x.com",
    query_type: str = "A",
    *,
    host: str = "127.0.0.1",
    timeout: float = 1.0,
    late_window: float = 0.0,
) -> tuple[tuple[DnsQuery, ...], int]:
    async def main() -> tuple[tuple[DnsQuery, ...], int]:
        async with await serve(host, 0, handler) as server:
            records = await query_udp(
                hostname, query_type, host, port=server.port, clock=Clock(), timeout=timeout,
                late_window=late_window, transaction_id=7, tags=("target",),
            )  # fmt: skip
            return records, server.port

    return asyncio.run(main())


def test_udp_a_answer() -> None:
    (record,), port = _udp(ZONE)
    assert record.engine == "udp"
    assert record.resolver_address == f"127.0.0.1:{port}"
    assert (record.hostname, record.query_type) == ("x.com", "A")
    assert record.failure is None
    assert record.rcode == "NOERROR"
    assert sorted(record.answers, key=lambda a: a.value) == [
        DnsAnswer("A", "203.0.113.10", 123),
        DnsAnswer("A", "203.0.113.11", 123),
    ]
    assert (record.transaction_id, record.tags) == (7, ("target",))
    assert 0 <= record.t0 <= record.t < 1
    assert record.raw_response is not None
    wire = dns.message.from_wire(record.raw_response)
    assert wire.id == record.dns_id
    assert sorted(str(rd) for rd in wire.answer[0]) == ["203.0.113.10", "203.0.113.11"]


def test_udp_aaaa_answer() -> None:
    (record,), _ = _udp(ZONE, query_type="AAAA")
    assert record.failure is None
    assert record.answers == (DnsAnswer("AAAA", "2001:db8::10", 123),)


def test_udp_cname_chain_and_whoami_txt() -> None:
    (record,), _ = _udp(ZONE, "www.x.com")
    assert record.answers[0] == DnsAnswer("CNAME", "x.com", 123)
    assert sorted(a.value for a in record.answers[1:]) == ["203.0.113.10", "203.0.113.11"]
    (record,), _ = _udp(ZONE, "o-o.myaddr.l.google.com", "TXT")
    assert record.answers == (DnsAnswer("TXT", "127.0.0.1", 123),)


def test_udp_nxdomain() -> None:
    (record,), _ = _udp(ZONE, "nope.x.com")
    assert (record.failure, record.rcode, record.answers) == ("dns_nxdomain_error", "NXDOMAIN", ())


@pytest.mark.parametrize(
    ("rcode", "failure"),
    [(dns.rcode.SERVFAIL, "dns_servfail_error"), (dns.rcode.REFUSED, "dns_refused_error")],
)
def test_udp_error_rcodes(rcode: dns.rcode.Rcode, failure: str) -> None:
    async def handler(query: dns.message.Message, _: tuple[str, int]) -> list[Reply]:
        return [Reply(0, error(query, rcode))]

    (record,), _ = _udp(handler)
    assert (record.failure, record.rcode) == (failure, dns.rcode.to_text(rcode))


def test_udp_noerror_without_the_asked_type() -> None:
    (record,), _ = _udp(ZONE, "only-v4.example", "AAAA")
    assert (record.failure, record.rcode, record.answers) == ("dns_no_answer", "NOERROR", ())


def test_udp_silence_times_out() -> None:
    async def silent(_: dns.message.Message, __: tuple[str, int]) -> list[Reply]:
        return [Reply(0, None)]

    (record,), _ = _udp(silent, timeout=0.3, late_window=0.2)
    assert (record.failure, record.rcode, record.raw_response, record.answers) == (
        "generic_timeout_error", None, None, (),
    )  # fmt: skip
    assert record.t - record.t0 == pytest.approx(0.3, abs=0.1)


def test_udp_garbage_then_silence_times_out() -> None:
    async def garbage(_: dns.message.Message, __: tuple[str, int]) -> list[Reply]:
        return [Reply(0, b"\x00garbage"), Reply(0.05, b"\xff" * 40)]

    (record,), _ = _udp(garbage, timeout=0.3)
    assert (record.failure, record.rcode, record.dns_id) == ("generic_timeout_error", None, None)


def test_udp_wrong_id_is_ignored_then_right_answer_accepted() -> None:
    async def handler(query: dns.message.Message, client: tuple[str, int]) -> list[Reply]:
        wrong = FORGED.answer(query, client)
        wrong.id = (query.id + 1) % 65536
        return [Reply(0, wrong), Reply(0.02, b"junk"), Reply(0.05, ZONE.answer(query, client))]

    (record,), _ = _udp(handler)
    assert record.failure is None
    assert sorted(a.value for a in record.answers) == ["203.0.113.10", "203.0.113.11"]


def test_udp_racing_answers_are_both_recorded() -> None:
    async def injector(query: dns.message.Message, client: tuple[str, int]) -> list[Reply]:
        return [Reply(0, FORGED.answer(query, client)), Reply(0.1, ZONE.answer(query, client))]

    (first, late), _ = _udp(injector, late_window=0.5)
    assert first.answers == (DnsAnswer("A", "100.64.0.1", 60),)
    assert first.tags == ("target",)
    assert sorted(a.value for a in late.answers) == ["203.0.113.10", "203.0.113.11"]
    assert late.tags == ("target", "late_response")
    assert (late.transaction_id, late.failure, late.t0) == (7, None, first.t0)
    assert late.t - first.t == pytest.approx(0.1, abs=0.08)
    assert late.dns_id == first.dns_id


def test_udp_port_unreachable_is_connection_refused() -> None:
    async def main() -> tuple[DnsQuery, ...]:
        return await query_udp(
            "x.com", "A", "127.0.0.1", port=_closed_port(socket.SOCK_DGRAM), clock=Clock(),
            timeout=1.0, late_window=0.5, transaction_id=1,
        )  # fmt: skip

    (record,) = asyncio.run(main())
    assert (record.failure, record.rcode) == ("connection_refused", None)
    assert record.t - record.t0 < 0.5


@pytest.mark.skipif(not _ipv6_available(), reason="the kernel has no IPv6 loopback")
def test_udp_over_ipv6() -> None:
    (record,), port = _udp(ZONE, host="::1")
    assert record.resolver_address == f"[::1]:{port}"
    assert record.failure is None


def test_bad_input_raises() -> None:
    async def query(query_type: str, resolver: str, hostname: str = "x.com") -> object:
        return await query_udp(
            hostname, query_type, resolver, clock=Clock(), timeout=0.1, late_window=0,
            transaction_id=1,
        )  # fmt: skip

    for args in [("MX", "127.0.0.1"), ("A", "dns.google"), ("A", "127.0.0.1", "a" * 64 + ".com")]:
        with pytest.raises(ValueError):
            asyncio.run(query(*args))


def test_tcp_answer_and_closed_port() -> None:
    async def main() -> tuple[DnsQuery, DnsQuery]:
        async with await serve("127.0.0.1", 0, ZONE) as server:
            ok = await query_tcp(
                "x.com", "AAAA", "127.0.0.1", port=server.port, clock=Clock(), timeout=1.0,
                transaction_id=3,
            )  # fmt: skip
        refused = await query_tcp(
            "x.com", "A", "127.0.0.1", port=_closed_port(socket.SOCK_STREAM), clock=Clock(),
            timeout=1.0, transaction_id=4,
        )  # fmt: skip
        return ok, refused

    ok, refused = asyncio.run(main())
    assert (ok.engine, ok.failure, ok.rcode) == ("tcp", None, "NOERROR")
    assert ok.answers == (DnsAnswer("AAAA", "2001:db8::10", 123),)
    assert ok.raw_response is not None and dns.message.from_wire(ok.raw_response).id == ok.dns_id
    assert (refused.engine, refused.failure, refused.rcode) == ("tcp", "connection_refused", None)


def test_doh_answer_and_non_200() -> None:
    async def main() -> tuple[DnsQuery, DnsQuery]:
        async with await serve_doh("127.0.0.1", 0, ZONE) as server, httpx.AsyncClient() as client:
            base = f"http://127.0.0.1:{server.port}"
            ok = await query_doh(
                "x.com", "A", f"{base}/dns-query", client=client, clock=Clock(), timeout=1.0,
                transaction_id=5, tags=("resolver_control",),
            )  # fmt: skip
            missing = await query_doh(
                "x.com", "A", f"{base}/elsewhere", client=client, clock=Clock(), timeout=1.0,
                transaction_id=6,
            )  # fmt: skip
        return ok, missing

    ok, missing = asyncio.run(main())
    assert (ok.engine, ok.failure, ok.rcode, ok.dns_id) == ("doh", None, "NOERROR", 0)
    assert ok.resolver_address.endswith("/dns-query")
    assert sorted(a.value for a in ok.answers) == ["203.0.113.10", "203.0.113.11"]
    assert ok.tags == ("resolver_control",)
    assert (missing.failure, missing.rcode, missing.answers) == ("dns_server_misbehaving", None, ())


def test_lookup_system_localhost() -> None:
    hosts = Path("/etc/hosts").read_text(encoding="utf-8")
    if not any("localhost" in line.split()[1:] for line in hosts.splitlines() if line.strip()):
        pytest.skip("/etc/hosts does not map localhost: the query could leave the machine")
    record = asyncio.run(lookup_system("localhost", clock=Clock(), timeout=2, transaction_id=9))
    assert (record.engine, record.query_type, record.resolver_address) == (
        "getaddrinfo", "ANY", "",
    )  # fmt: skip
    assert (record.failure, record.rcode, record.raw_response) == (None, None, None)
    assert DnsAnswer("A", "127.0.0.1", None) in record.answers
    assert len(set(record.answers)) == len(record.answers)


def test_lookup_system_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without touching the machine's resolver: getaddrinfo itself is replaced."""

    def nxdomain(*_: object, **__: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def hang(*_: object, **__: object) -> object:
        time.sleep(10)
        raise socket.gaierror(socket.EAI_AGAIN, "too late: nobody waits for this any more")

    async def main() -> DnsQuery:
        return await lookup_system("x.invalid", clock=Clock(), timeout=0.2, transaction_id=1)

    monkeypatch.setattr(socket, "getaddrinfo", nxdomain)
    record = asyncio.run(main())
    assert (record.failure, record.answers) == ("dns_nxdomain_error", ())
    monkeypatch.setattr(socket, "getaddrinfo", hang)
    started = time.monotonic()
    record = asyncio.run(main())
    assert record.failure == "generic_timeout_error"
    assert record.t - record.t0 == pytest.approx(0.2, abs=0.1)
    # the lookup that hangs on does not hold the loop's shutdown (nor the process's exit)
    assert time.monotonic() - started < 2


def test_standalone_server_process(tmp_path: Path) -> None:
    zone = tmp_path / "zone.json"
    zone.write_text(
        json.dumps({"ttl": 30, "records": {"X.com.": {"A": ["203.0.113.10"]}}, "whoami": ["me"]})
    )
    command = [sys.executable, "-m", "probe.lab.dnsserver", "--listen", "127.0.0.1", "--port", "0"]
    with subprocess.Popen(
        [*command, "--zone", str(zone)], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            _, address, port = process.stdout.readline().split()

            async def main() -> tuple[DnsQuery, DnsQuery]:
                a = await query_tcp(
                    "x.com", "A", address, port=int(port), clock=Clock(), timeout=2,
                    transaction_id=1,
                )  # fmt: skip
                (txt,) = await query_udp(
                    "me", "TXT", address, port=int(port), clock=Clock(), timeout=2,
                    late_window=0, transaction_id=2,
                )  # fmt: skip
                return a, txt

            a, txt = asyncio.run(main())
        finally:
            process.terminate()
    assert a.answers == (DnsAnswer("A", "203.0.113.10", 30),)
    assert txt.answers == (DnsAnswer("TXT", "127.0.0.1", 30),)

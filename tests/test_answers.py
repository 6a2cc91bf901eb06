"""What a resolver's answer may make the probe do: a bounded number of connections, to the
name's own addresses only. Real campaigns against a loopback DNS server (tests/loopback.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import jsonschema
from loopback import internet

from probe import campaign
from probe.config import load
from probe.format.writer import measurements
from probe.lab.dnsserver import Reply, Zone
from probe.records import DnsAnswer, DnsQuery, TcpConnect
from probe.verdict import verdict

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "probe" / "schema" / "measurement.schema.json").read_text())
FLOOD = ["127.0.0.1", *(f"127.1.{i // 250}.{i % 250 + 1}" for i in range(3999))]


def _run(tmp: Path, records: dict[str, dict[str, list[str]]], handler: Any = None) -> Any:
    with internet(tmp, records, dns=handler) as net:
        path = tmp / "c.toml"
        # dnspython takes a few tenths of a second over 4,000 records, on both ends
        path.write_text(
            net.config(["x.com"], ["www.example.com"]).replace("dns = 1.0", "dns = 5.0")
        )
        config = load(path)
        result = asyncio.run(campaign.run(config))
    for m in measurements(result, config):
        jsonschema.Draft202012Validator(SCHEMA).validate(m)
    return result, {m["input"]: m for m in measurements(result, config)}


def test_four_thousand_a_records_make_at_most_four_connections_per_port(tmp_path: Path) -> None:
    records = {"x.com": {"A": FLOOD}, "www.example.com": {"A": ["127.0.0.1"]}}
    zone = Zone(records)
    flood = zone.answer(dns.message.make_query("x.com", "A"), ("127.0.0.1", 0)).to_wire()
    flood_name = dns.name.from_text("x.com")

    async def handler(query: dns.message.Message, client: tuple[str, int]) -> Sequence[Reply]:
        """The zone, with x.com's answer built once (under the query's ID): it takes a while."""
        if query.question[0].name == flood_name and query.question[0].rdtype == dns.rdatatype.A:
            return [Reply(0.0, query.id.to_bytes(2, "big") + flood[2:])]
        return await zone(query, client)

    result, by_input = _run(tmp_path, records, handler)
    [target] = result.targets
    connects = [o for o in target.observations if isinstance(o, TcpConnect)]
    assert len(connects) == 2 * campaign.MAX_ADDRESSES_PER_FAMILY  # 443 and 80
    queries = [o for o in target.observations if isinstance(o, DnsQuery) and o.query_type == "A"]
    # the first ones in the first answer's order (the server shuffles its rrset on the wire)
    assert [c.ip for c in connects[::2]] == [a.value for a in queries[0].answers[:4]]
    assert {(len(q.answers), q.failure) for q in queries} == {
        (4000, None)
    }  # the whole answer is kept as evidence
    assert all(q.truncated for q in queries)
    keys = by_input["https://x.com/"]["test_keys"]
    own = [q for q in keys["queries"] if q["hostname"] == "x.com" and q["query_type"] == "A"]
    assert {(q["engine"], q["x_truncated"], q["x_oversized"]) for q in own} == {
        ("udp", True, True), ("tcp", True, True),
    }  # fmt: skip
    control = [q for q in keys["queries"] if q["hostname"] == "www.example.com"]
    assert control and not any(q["x_truncated"] or q["x_oversized"] for q in control)
    # the verdict's evidence lines stay short whatever the answer's size
    assert all(len(line) < 400 for line in verdict(by_input["https://x.com/"]).evidence)


async def _foreign(query: dns.message.Message, client: tuple[str, int]) -> Sequence[Reply]:
    """x.com's answer with another name's A record slipped in; www.x.com through a CNAME."""
    zone = Zone({"x.com": {"A": ["127.0.0.1"]}, "www.example.com": {"CNAME": ["x.com"]}})
    response = zone.answer(query, client)
    if query.question[0].rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text("evil.example.", 60, "IN", "A", "127.0.0.9"))
    return [Reply(0.0, response)]


def test_an_a_record_of_another_owner_is_flagged_and_not_connected_to(tmp_path: Path) -> None:
    result, by_input = _run(tmp_path, {"x.com": {}, "www.example.com": {}}, _foreign)
    for domain in result.domains:
        queries = [o for o in domain.observations if isinstance(o, DnsQuery)]
        a = [q for q in queries if q.query_type == "A"]
        assert a and all(DnsAnswer("A", "127.0.0.9", 60, "evil.example") in q.answers for q in a)
        # on the CNAME chain (www.example.com -> x.com): the name's own answer
        assert all(DnsAnswer("A", "127.0.0.1", 300) in q.answers for q in a)
        assert all(q.failure is None and not q.truncated for q in a)
        ips = {o.ip for o in domain.observations if isinstance(o, TcpConnect)}
        assert ips == {"127.0.0.1"}
    keys = by_input["https://x.com/"]["test_keys"]
    owners = [a.get("x_owner") for q in keys["queries"] for a in q["answers"] if "ipv4" in a]
    assert set(owners) == {None, "evil.example"}
    measurement = by_input["https://x.com/"]
    assert verdict(measurement).status == "ok"
    # an absurd answer decides nothing, but an ok verdict says so (and is less sure)
    [flagged] = [
        q
        for q in measurement["test_keys"]["queries"]
        if (q["engine"], q["query_type"], q["hostname"]) == ("tcp", "A", "x.com")
    ]
    flagged["x_oversized"] = True
    judged = verdict(measurement)
    assert (judged.status, judged.confidence) == ("ok", 0.7)
    assert "more than any real name has" in judged.explanation


async def _only_foreign(query: dns.message.Message, _: tuple[str, int]) -> Sequence[Reply]:
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("evil.example.", 60, "IN", "A", "127.0.0.9"))
    return [Reply(0.0, response)]


def test_only_another_owners_record_is_no_answer(tmp_path: Path) -> None:
    result, _ = _run(tmp_path, {"x.com": {}, "www.example.com": {}}, _only_foreign)
    [target] = result.targets
    a = [o for o in target.observations if isinstance(o, DnsQuery) and o.query_type == "A"]
    assert a and {q.failure for q in a} == {"dns_no_answer"}
    assert not any(isinstance(o, TcpConnect) for o in target.observations)

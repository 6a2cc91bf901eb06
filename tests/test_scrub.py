"""The probe's own address never reaches a written byte, whatever form servers echo it in.

`probe run` on the loopback internet, its public address discovered over DNS as
``127.0.0.77`` (a loopback address: the A answers that carry it lead nowhere else).
Every server echoes it back: DNS in A, CNAME and TXT answers (dotted, dashed, reversed,
base64), the AS name; HTTPS in the certificate's SANs, the body (dotted, dashed, base64,
packed bytes), ``Location`` and ``Set-Cookie``; HTTP in a binary body. Then every byte
written (results, state, ``probe report`` JSON/CSV/HTML, the terminal) is searched for
every form, and every base64 string in the results is decoded and searched too.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from loopback import internet
from servers import fixed_response

from probe.__main__ import main
from probe.format.writer import holds_address
from probe.lab.dnsserver import Client, Zone

PUBLIC = "127.0.0.77"
B64 = base64.b64encode(PUBLIC.encode()).decode()  # MTI3LjAuMC43Nw==
PACKED = b"\x7f\x00\x00\x4d"
TEXT_FORMS = [PUBLIC, "127-0-0-77", "77.0.0.127", "77-0-0-127", B64.rstrip("="), "MTI3LjAuMC43N"]
BYTE_FORMS = [f.encode() for f in TEXT_FORMS] + [PACKED, b"\x0277\x010\x010\x03127"]

RECORDS = {
    "x.com": {"A": ["127.0.0.1"]},
    "www.example.com": {"A": ["127.0.0.1"]},
    # y.com -> reversed name -> ISP host name -> the address (nothing listens there)
    "y.com": {"CNAME": ["77.0.0.127.in-addr.arpa"]},
    "77.0.0.127.in-addr.arpa": {"CNAME": ["ec2-127-0-0-77.isp.example"]},
    "ec2-127-0-0-77.isp.example": {"A": [PUBLIC]},
    # identity discovery: myip.opendns.com, then Team Cymru (whose AS name echoes it)
    "myip.opendns.com": {"A": [PUBLIC]},
    "77.0.0.127.origin.asn.cymru.com": {"TXT": ["64500 | 127.0.0.0/8 | PK | apnic | 2024"]},
    "as64500.asn.cymru.com": {"TXT": ["64500 | PK | apnic | 2024 | ISP - at 127-0-0-77, PK"]},
}


class EchoZone(Zone):
    """The zone, plus TXT records echoing the address in every AAAA answer (the probe
    asks no TXT of a target; it records what the answer holds)."""

    def answer(self, query: dns.message.Message, client: Client) -> dns.message.Message:
        response = super().answer(query, client)
        if query.question[0].rdtype == dns.rdatatype.AAAA and response.answer:
            texts = [f'"you are {PUBLIC}"', '"77-0-0-127"', f'"{B64}"']
            txt = dns.rrset.from_text_list(query.question[0].name, 60, "IN", "TXT", texts)
            response.answer.append(txt)
        return response


HTTPS_PAGE = fixed_response(
    b"<html><title>X replica</title>you are 127.0.0.77 (127-0-0-77), "
    + f"token {B64}, raw ".encode()
    + PACKED
    + b"</html>",
    headers=[
        ("Content-Type", "text/html"),
        ("Location", "http://127-0-0-77.isp.example/?from=127.0.0.77"),
        ("Set-Cookie", f"ip={B64.rstrip('=')}; seen=77.0.0.127"),
    ],
)
HTTP_PAGE = fixed_response(b"\xff\xfe binary " + PACKED + b" for 127.0.0.77 " + B64.encode())


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def assert_clean(data: bytes, where: str) -> None:
    for form in BYTE_FORMS:
        assert form not in data, f"{form!r} in {where}"
    assert b"\\u007f\\u0000\\u0000M" not in data, f"packed address (JSON-escaped) in {where}"


def test_the_address_is_in_no_byte_written(
    tmp_path: Path, probe_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zone = EchoZone(RECORDS)
    with internet(
        tmp_path,
        RECORDS,
        dns=zone,
        https_page=HTTPS_PAGE,
        http_page=HTTP_PAGE,
        cert_ips=["127.0.0.1", PUBLIC],
    ) as net:
        config = net.config(["x.com", "y.com"], ["www.example.com"]).replace(
            "[vantage]\n",
            f'[vantage]\nidentity_resolver = "127.0.0.1"\nidentity_port = {net.dns_port}\n',
        )
        path = tmp_path / "config.toml"
        path.write_text(config)
        out = tmp_path / "results"
        assert main(["run", "--config", str(path), "--output", str(out)]) == 0
    files = sorted(out.glob("*.jsonl"))
    measurements = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(measurements) == 3

    # The echoes were recorded (so the test tests something), scrubbed.
    x = next(m for m in measurements if m["input"] == "https://x.com/")["test_keys"]
    y = next(m for m in measurements if m["input"] == "https://y.com/")
    assert y["probe_network_name"] == "at [scrubbed]"
    [https] = [r for r in x["requests"] if r["tags"] == ["target"] and r["address"].endswith(
        f":{net.https_port}")]  # fmt: skip
    assert https["response"]["body"] == (
        "<html><title>X replica</title>you are [scrubbed] ([scrubbed]), token [scrubbed]w==, "
        "raw [scrubbed]</html>"
    )
    assert (
        https["response"]["headers"]["Location"] == "http://[scrubbed].isp.example/?from=[scrubbed]"
    )
    assert https["response"]["headers"]["Set-Cookie"] == "ip=[scrubbed]w; seen=[scrubbed]"
    sans = x["tls_handshakes"][0]["x_certificates"][0]["sans"]
    assert {"[scrubbed].in-addr.arpa", "ec2-[scrubbed].isp.example", "[scrubbed]"} <= set(sans)
    own = [q for q in y["test_keys"]["queries"] if q["hostname"] == "y.com"]
    answers = {(a["answer_type"], a.get("hostname") or a.get("ipv4") or a.get("txt"))
               for q in own for a in q["answers"]}  # fmt: skip
    assert answers >= {
        ("CNAME", "[scrubbed].in-addr.arpa"),
        ("CNAME", "ec2-[scrubbed].isp.example"),
        ("A", "[scrubbed]"),
        ("TXT", "you are [scrubbed]"),
        ("TXT", "[scrubbed]"),
        ("TXT", "[scrubbed]w=="),
    }
    # The raw packets stay valid DNS; the address's A record reads 0.0.0.0.
    packets = [dns.message.from_wire(base64.b64decode(q["raw_response"])) for q in own]
    a_values = {rr.to_text() for p in packets for s in p.answer if s.rdtype == 1 for rr in s}
    assert a_values == {"0.0.0.0"}

    for m in measurements:
        assert not holds_address(m, frozenset({PUBLIC}))
        for s in strings(m):
            try:
                decoded = base64.b64decode(s, validate=True)
            except (binascii.Error, ValueError):
                continue
            assert_clean(decoded, f"base64 in {m['input']}")

    printed = capsys.readouterr()
    assert_clean((printed.out + printed.err).encode(), "the terminal")
    reports = {"json": tmp_path / "r.json", "csv": tmp_path / "r.csv", "html": tmp_path / "r.html"}
    args = [a for kind, file in reports.items() for a in (f"--{kind}", str(file))]
    assert main(["report", "--config", str(path), *args, str(out)]) == 0
    printed = capsys.readouterr()
    assert_clean((printed.out + printed.err).encode(), "the report's terminal")
    written = [*out.rglob("*"), *probe_state.rglob("*"), *reports.values()]
    for f in written:
        if f.is_file():
            assert_clean(f.read_bytes(), str(f))
    assert (probe_state / "identity.json").is_file()

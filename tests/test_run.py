"""End to end on loopback: `probe run` against a fake internet on 127.0.0.1.

Real packets flow through real sockets: a DNS server, a TLS server with a
test CA, a plain HTTP server. Every measurement written must validate against
the JSON Schema, carry the exact failure strings, and never the probe's IP.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from loopback import internet

from probe.__main__ import main
from probe.campaign import CampaignResult, DomainResult
from probe.config import load
from probe.format.writer import measurements
from probe.records import DnsAnswer, DnsQuery, HttpRequest

ROOT = Path(__file__).resolve().parent.parent
# Loopback only: a resolver on a port nothing listens on.
MINIMAL_CONFIG = (
    "[targets]\nx=['x.com']\ncontrols=['www.example.com']\n"
    "[[resolvers]]\nengine='udp'\naddress='127.0.0.1'\nport=9\n"
)
SCHEMA = json.loads((ROOT / "probe" / "schema" / "measurement.schema.json").read_text())

RECORDS = {
    "x.com": {"A": ["127.0.0.1"]},
    "www.example.com": {"A": ["127.0.0.1"]},
    "t.co": {"A": ["127.0.0.3"]},  # nothing listens there: connection refused
}


def validate(measurement: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(measurement)


def run_probe(tmp_path: Path, config: str, *args: str) -> tuple[int, list[dict[str, Any]]]:
    path = tmp_path / "config.toml"
    path.write_text(config)
    out = tmp_path / "results"
    code = main(["run", "--config", str(path), "--output", str(out), *args])
    files = list(out.glob("*.jsonl"))
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    return code, lines


def by_input(measurements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["input"]: m for m in measurements}


def test_probe_run_on_loopback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with internet(tmp_path, RECORDS) as net:
        config = net.config(["x.com", "t.co", "api.x.com"], ["www.example.com"])
        code, measurements = run_probe(tmp_path, config)
    assert code == 0
    assert len(measurements) == 4  # three targets and one control site
    for m in measurements:
        validate(m)
        assert m["probe_ip"] == "127.0.0.1"
        assert m["probe_asn"] == "AS64500" and m["probe_cc"] == "PK"
    (report_id,) = {m["report_id"] for m in measurements}
    assert re.fullmatch(r"\d{8}T\d{6}Z_x_reachability_PK_64500_n1_[0-9a-f]{16}", report_id)
    ms = by_input(measurements)

    x = ms["https://x.com/"]["test_keys"]
    own = [q for q in x["queries"] if q["hostname"] == "x.com"]
    assert {q["engine"] for q in own} == {"udp", "tcp"}
    a = next(q for q in own if q["engine"] == "udp" and q["query_type"] == "A")
    assert a["failure"] is None and a["answers"][0]["ipv4"] == "127.0.0.1"
    assert a["rcode"] == 0 and a["raw_response"]  # NOERROR, a number as in OONI
    aaaa = next(q for q in own if q["engine"] == "udp" and q["query_type"] == "AAAA")
    assert aaaa["failure"] == "dns_no_answer"
    target_tls = [h for h in x["tls_handshakes"] if h["tags"] == ["target"]]
    assert [h["failure"] for h in target_tls] == [None]
    assert target_tls[0]["server_name"] == "x.com"
    assert "x.com" in target_tls[0]["x_certificates"][0]["sans"]
    assert [h["failure"] for h in x["tls_handshakes"] if h["tags"] == ["control_sni"]] == [None]
    control_address = [h for h in x["tls_handshakes"] if h["tags"] == ["control_address"]]
    assert control_address and control_address[0]["server_name"] == "x.com"
    # The control site's own observations travel with every target measurement.
    assert any(h["tags"] == ["control_site"] for h in x["tls_handshakes"])
    https = [r for r in x["requests"] if r["request"]["url"].startswith("https://")]
    http = [r for r in x["requests"] if r["request"]["url"].startswith("http://")]
    assert https[0]["failure"] is None and https[0]["response"]["code"] == 200
    assert https[0]["response"]["x_title"] == "X replica"
    assert http[0]["response"]["code"] == 200
    assert x["x_verdict"]["status"] == "ok" and x["accessible"] is True

    tco = ms["https://t.co/"]["test_keys"]
    assert {c["status"]["failure"] for c in tco["tcp_connect"] if c["tags"] == ["target"]} == {
        "connection_refused"
    }
    assert tco["tls_handshakes"] and not [h for h in tco["tls_handshakes"] if "target" in h["tags"]]

    api = ms["https://api.x.com/"]["test_keys"]
    assert {q["failure"] for q in api["queries"] if q["hostname"] == "api.x.com"} == {
        "dns_nxdomain_error"
    }
    assert not [c for c in api["tcp_connect"] if c["tags"] == ["target"]]

    out = capsys.readouterr()
    assert "x.com" in out.out and "connection_refused" in out.out
    assert "4 measurements appended to" in out.err


def test_only_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with internet(tmp_path, RECORDS) as net:
        code, measurements = run_probe(
            tmp_path,
            net.config(["x.com", "t.co"], ["www.example.com"]),
            "--only",
            "X.com",  # domain names ignore case
            "--json",
        )
    assert code == 0
    assert {m["input"] for m in measurements} == {"https://x.com/", "https://www.example.com/"}
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [m["measurement_uid"] for m in printed] == [m["measurement_uid"] for m in measurements]


def test_bad_config_exits_2_and_measures_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, measurements = run_probe(tmp_path, "[targets]\nx = 'x.com'\n")
    assert code == 2 and measurements == []
    assert "config error" in capsys.readouterr().err


def test_unknown_only_domain_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with internet(tmp_path, RECORDS) as net:
        code, _ = run_probe(
            tmp_path, net.config(["x.com"], ["www.example.com"]), "--only", "nope.example"
        )
    assert code == 2
    assert "not a target for --only: nope.example; the targets are x.com" in capsys.readouterr().err


def scrubbed(tmp_path: Path, scrub: str, *records: DnsQuery | HttpRequest) -> dict[str, Any]:
    """The measurement of x.com with ``records``, the address ``scrub`` scrubbed."""
    result = CampaignResult(0.0, (DomainResult("x.com", "target", records, 0.0, 0.1),), 0.1)
    config_path = tmp_path / "c.toml"
    config_path.write_text(
        "[targets]\nx=['x.com']\ncontrols=['www.example.com']\n[[resolvers]]\nengine='system'\n"
    )
    [m] = measurements(result, load(config_path), scrub=frozenset({scrub}))
    return m


def query(*answers: DnsAnswer) -> DnsQuery:
    return DnsQuery("x.com", "TXT", "udp", "127.0.0.1:53", answers, "NOERROR", None, None,
                    0.0, 0.1, 1)  # fmt: skip


def test_own_address_is_scrubbed(tmp_path: Path) -> None:
    m = scrubbed(tmp_path, "203.0.113.77", query(DnsAnswer("TXT", "203.0.113.77", 60)))
    assert "203.0.113.77" not in json.dumps(m)
    assert m["test_keys"]["queries"][0]["answers"][0]["txt"] == "[scrubbed]"


def test_scrubbing_leaves_longer_addresses_and_reaches_base64_bodies(tmp_path: Path) -> None:
    answers = (DnsAnswer("A", "139.45.1.75", 60), DnsAnswer("TXT", "you are 39.45.1.7.", 60),
               DnsAnswer("TXT", "39.45.1.70 39.45.1.7:443 ::39.45.1.7", 60))  # fmt: skip
    page = b"\xff blocked for 39.45.1.7"  # no UTF-8: stored as base64
    request = HttpRequest("http://x.com/", "GET", "198.51.100.1", 80, "x.com", None, None, 0.0,
                          0.1, 2, status_code=200, body=page, body_length=len(page))  # fmt: skip
    m = scrubbed(tmp_path, "39.45.1.7", query(*answers), request)
    got = [a.get("ipv4") or a.get("txt") for a in m["test_keys"]["queries"][0]["answers"]]
    assert got == ["139.45.1.75", "you are [scrubbed].", "39.45.1.70 [scrubbed]:443 ::[scrubbed]"]
    body = m["test_keys"]["requests"][0]["response"]["body"]
    assert base64.b64decode(body["data"]) == b"\xff blocked for [scrubbed]"


def test_residual_blocking_retest(tmp_path: Path) -> None:
    """After a failed handshake, the same address is re-tested with the control SNI."""
    with internet(tmp_path, RECORDS, tls="reset_after_client_hello") as net:
        config = net.config(["x.com"], ["www.example.com"], residual_delay=0.3)
        code, measurements = run_probe(tmp_path, config)
        seen = list(net.tls.server_names)
    assert code == 0
    x = by_input(measurements)["https://x.com/"]["test_keys"]
    validate(by_input(measurements)["https://x.com/"])
    [target] = [h for h in x["tls_handshakes"] if h["tags"] == ["target"]]
    [residual] = [h for h in x["tls_handshakes"] if h["tags"] == ["residual"]]
    assert target["failure"] == "connection_reset"
    assert residual["server_name"] == "www.example.com"
    assert residual["address"] == target["address"]
    assert residual["failure"] == "connection_reset"
    assert residual["t0"] >= target["t"] + 0.3
    assert seen.count("www.example.com") >= 2  # the control SNI, then the residual re-test


def test_ctrl_c_ends_a_manual_run_with_one_line(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a resolver that never answers
    silent.bind(("127.0.0.1", 0))
    config = tmp_path / "c.toml"
    config.write_text(
        "[targets]\nx=['x.com']\ncontrols=['www.example.com']\n[[resolvers]]\nengine='udp'\n"
        f"address='127.0.0.1'\nport={silent.getsockname()[1]}\n[timeouts]\ndns=60\n"
    )
    with silent:
        probe = subprocess.Popen(
            [sys.executable, "-m", "probe", "run", "--config", str(config), "--output",
             str(tmp_path / "out")],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        silent.settimeout(30)
        silent.recvfrom(512)  # the probe is waiting for its first answer now
        probe.send_signal(signal.SIGINT)
        _, err = probe.communicate(timeout=30)
    assert probe.returncode == 130
    assert b"Traceback" not in err and err.strip().endswith(b"probe: interrupted")


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(MINIMAL_CONFIG)
    done = subprocess.run(
        [sys.executable, "-m", "probe", "run", "--config", str(config), "--output",
         "/proc/probe-results"],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "/proc/probe-results" in done.stderr
    assert "probe: --output: /proc/probe-results: " in done.stderr  # before any measuring

"""``probe report`` over small archives written here: counts, sentences, CSV, JSON, Parquet.

Four simulated ISPs measured every minute for an hour (3 X targets and a control a run):
A always blocked by an SNI reset, B blocked with two open windows (5 and 10 min), C clean,
D down. Around them: duplicates, a torn line, a gzip file, a truncated gzip file, an OONI
measurement of a test the report does not score, an unknown format version, an empty folder,
one stale verdict.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

pytest.importorskip("duckdb", reason="the report needs the project's [report] extra (duckdb)")

from probe import store
from probe.__main__ import main
from probe.campaign import CampaignResult, DomainResult
from probe.config import load
from probe.format.writer import measurements
from probe.identity import Identity
from probe.pipeline import scored
from probe.records import DnsAnswer, DnsQuery, TcpConnect
from probe.report.engine import build, export_parquet
from probe.report.model import ALL, choose_bucket, parse_bucket
from probe.report.scan import _FAST, _SAFE, connect, reader_sql, stage
from probe.report.tables import CSV_COLUMNS, to_csv, to_json
from probe.report.text import sentences, summary
from probe.summary import row, table
from probe.verdict import ANALYSIS_VERSION

T0 = datetime(2024, 2, 17, 10, 0, tzinfo=UTC)
TARGETS = ("x.com", "twitter.com", "pbs.twimg.com")
ISPS = {"a": ("AS64500", "Lab ISP A"), "b": ("AS64501", "Lab ISP B"),
        "c": ("AS64502", "Lab ISP C"), "d": ("AS64503", "Lab ISP D")}  # fmt: skip
B_OPEN = set(range(10, 15)) | set(range(40, 50))  # runs (minutes) when ISP B let X through

EXPECTED = [
    "AS64500 Lab ISP A: X blocked 100% of the time by TLS SNI reset (180 measurements)",
    "AS64501 Lab ISP B: X blocked 75% of the time (±2 points, 95%) by TLS SNI reset; open 2 "
    "times, median 8 min, longest 10 min (180 measurements)",
    "AS64502 Lab ISP C: X open 100% of the time (180 measurements)",
    "AS64503 Lab ISP D: X no verdict (every run was down or inconclusive); the network was down "
    "in 100% of measurements (180 measurements)",
]


def measurement(
    isp: str, run: int, domain: str, status: str | None, *, role: str = "target", fmt: str = "4"
) -> dict[str, Any]:
    """A measurement as the probe writes it (the keys the report reads), in format ``fmt``."""
    asn, name = ISPS[isp]
    m: dict[str, Any] = {
        "annotations": {"x_role": role, "engine_name": "probe"},
        "input": f"https://{domain}/",
        "measurement_start_time": (T0 + timedelta(minutes=run)).strftime("%Y-%m-%d %H:%M:%S"),
        "measurement_uid": f"{isp}-{run:03d}-{domain}",
        "probe_asn": asn,
        "probe_network_name": name,
        "report_id": f"{isp}-{run:03d}",
        "software_name": "probe",
        "test_name": "x_reachability",
    }
    observed: dict[str, Any] = {"queries": [], "tcp_connect": [], "tls_handshakes": [],
                                "requests": []}  # fmt: skip
    verdict_keys: dict[str, Any] = {}
    if role == "target":
        method, detail = ("tls", "tls.sni_reset") if status == "blocked" else (None, None)
        verdict = {"status": status, "method": method, "detail": detail, "step": None}
        verdict_keys = {"x_analysis_version": ANALYSIS_VERSION, "x_verdict": verdict}
    rest = {"data_format_version": "0.2.0", "probe_cc": "PK", "x_format_version": fmt}
    return m | {"test_keys": observed | verdict_keys} | rest


def run_lines(isp: str, run: int) -> list[str]:
    status = {"a": "blocked", "b": "ok" if run in B_OPEN else "blocked", "c": "ok", "d": "down"}
    fmt = {"a": "4", "b": "3", "c": "1", "d": "2"}[isp]  # every version a reader accepts
    rows = [measurement(isp, run, d, status[isp], fmt=fmt) for d in TARGETS]
    rows.append(measurement(isp, run, "www.example.com", None, role="control", fmt=fmt))
    if isp == "a" and run == 30:  # written by older rules: the report re-scores it
        rows[0]["test_keys"]["x_analysis_version"] = "0"
    return [json.dumps(r, separators=(",", ":")) for r in rows]  # as the probe writes them


def archive(root: Path) -> Path:
    """The archive of the module docstring under ``root``; returns ``root``."""
    lines = {isp: [x for run in range(60) for x in run_lines(isp, run)] for isp in ISPS}
    (root / "a.jsonl").write_text("\n".join(lines["a"]) + "\n" + lines["a"][5][:40])  # torn tail
    (root / "a-again.jsonl").write_text("\n".join(lines["a"][:5]) + "\n\n")  # 5 duplicates
    with gzip.open(root / "b.jsonl.gz", "wt") as f:
        f.write("\n".join(lines["b"]) + "\n")
    (root / "c").mkdir()
    torn = '{"annotations": {"x_role": "target"}'  # torn where a "}" ends it: fails a fast scan
    (root / "c" / "2024-02-17.jsonl").write_text("\n".join(lines["c"]) + "\n" + torn + "\n")
    # Written on Windows: CRLF line ends, a blank line of spaces, a line that is no UTF-8.
    crlf = "\r\n".join(lines["d"]).encode() + b"\r\n \t\r\n" + b'{"input": "\xff"}\r\n'
    (root / "d.jsonl").write_bytes(crlf)
    ooni = {"test_name": "dnscheck", "software_name": "ooniprobe", "test_keys": {}}
    future = measurement("c", 0, "x.com", "ok") | {"x_format_version": "9",
                                                   "measurement_uid": "future"}  # fmt: skip
    (root / "other.jsonl").write_text(json.dumps(ooni) + "\n" + json.dumps(future) + "\n[1, 2]\n")
    (root / "empty").mkdir()
    whole = gzip.compress(("\n".join(lines["c"]) + "\n").encode())
    (root / "broken.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    return root


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return archive(tmp_path_factory.mktemp("archive"))


def test_counts_of_what_was_read_and_skipped(report_dir: Path) -> None:
    report = build([report_dir])
    assert report.files == 7
    assert report.targets == 4 * 180
    assert report.controls == 4 * 60
    assert report.duplicates == 5
    assert report.rescored == 1
    assert report.sources == {"probe": 4 * 180}
    assert report.skipped == {
        "torn or invalid JSON line": 3,  # a.jsonl's torn tail, c's torn "}", d's Latin-1
        "OONI test 'dnscheck' is not scored (only web_connectivity)": 1,
        "unknown x_format_version 9": 1,
        "not a measurement (no test_name)": 1,  # the line [1, 2]
        "unreadable file (IOException)": 1,
    }
    assert report.bucket == 60  # runs a minute apart over an hour
    assert (report.start, report.end) == (T0.timestamp(), T0.timestamp() + 59 * 60)


def test_one_sentence_per_isp(report_dir: Path) -> None:
    assert sentences(build([report_dir])) == EXPECTED


def test_escape_sequences_in_network_names_never_reach_the_terminal(tmp_path: Path) -> None:
    m = measurement("a", 0, "x.com", "blocked")
    m["probe_network_name"] = "Evil\x1b]0;pwned\x07\x1b[2J ISP\u202e"
    (tmp_path / "a.jsonl").write_text(json.dumps(m) + "\n")
    text = summary(build([tmp_path]))
    assert "AS64500 Evil?]0;pwned??[2J ISP?: X blocked 100% of the time" in text
    assert all(c.isprintable() for line in text.splitlines() for c in line)


def test_the_run_table_shows_escape_sequences_as_question_marks() -> None:
    m = measurement("a", 0, "x.com\x1b[2J", "blocked")
    m["test_keys"]["x_verdict"]["explanation"] = "blocked: \x1b]0;pwned\x07"
    assert table(filter(None, [row(m)])).splitlines() == [
        "TARGET     DNS  TCP  TLS  HTTP  VERDICT",
        "x.com?[2J  -    -    -    -     blocked",
        "",
        "x.com?[2J: blocked: ?]0;pwned?",
    ]


def test_the_stale_verdict_is_replaced_by_the_current_rules(report_dir: Path) -> None:
    report = build([report_dir])
    a = next(s for s in report.series if s.asn == "AS64500" and s.family == "x.com")
    assert (a.blocked, a.inconclusive) == (59, 1)  # empty observations: the rules cannot judge


def test_families_and_partial_blocking_are_told_apart(tmp_path: Path) -> None:
    rows = []
    for run in range(20):
        for domain in TARGETS:
            rows.append(measurement("a", run, domain, "ok" if "twimg" in domain else "blocked"))
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = build([tmp_path])
    assert {s.family for s in report.series} == {ALL, "x.com", "twitter.com", "twimg.com"}
    assert sentences(report) == [
        "AS64500 Lab ISP A: twitter.com, x.com blocked 100% of the time by TLS SNI reset; "
        "twimg.com open 100% of the time (60 measurements)"
    ]


def test_a_family_is_the_registrable_domain(tmp_path: Path) -> None:
    hosts = ["www.dawn.com.pk", "tribune.com.pk", "pbs.twimg.com", "198.51.100.7", "[2001:db8::7]"]
    lines = [json.dumps(measurement("a", 0, h, "ok")) for h in hosts]
    (tmp_path / "f.jsonl").write_text("\n".join(lines) + "\n")
    families = {c.family for c in build([tmp_path]).cells} - {ALL}
    assert families == {"dawn.com.pk", "tribune.com.pk", "twimg.com", *hosts[-2:]}


def test_since_until_and_a_fixed_bucket(report_dir: Path) -> None:
    report = build([report_dir], since=datetime(2024, 2, 17, 10, 30),
                   until=datetime(2024, 2, 17, 10, 40), bucket=parse_bucket("5m"))  # fmt: skip
    assert report.bucket == 300
    assert report.targets == 4 * 30
    b = next(c for c in report.cells if c.asn == "AS64501" and c.family == ALL)
    assert (b.bucket, b.measured, b.blocked, b.blocked_by["tls"]) == (
        T0.timestamp() + 1800, 15, 15, 15)  # fmt: skip


def test_a_parquet_file_of_other_software_is_skipped(tmp_path: Path) -> None:
    duckdb.connect().execute(f"COPY (SELECT 1 AS a) TO '{tmp_path / 'other.parquet'}'")
    report = build([tmp_path / "other.parquet"])
    assert (report.targets, report.skipped) == (0, {"Parquet file not written by probe export": 1})


def test_auto_bucket_keeps_the_heatmap_narrow_over_any_span() -> None:
    assert choose_bucket(30 * 86400, 300) == 3 * 3600  # 240 columns
    years = 56 * 365 * 86400  # a Pi without a clock wrote 1970 beside this year's data
    assert years / choose_bucket(years, 300) <= 240
    assert choose_bucket(100 * 86400, 3 * 86400) == 3 * 86400  # a bucket holds a run


def test_file_names_are_taken_literally_and_blank_lines_are_any_whitespace(
    tmp_path: Path,
) -> None:
    lines = run_lines("c", 0)
    (tmp_path / "a[1].jsonl").write_text("\n".join(lines[:2]) + "\n\t \n")
    (tmp_path / "a1.jsonl").write_text(lines[2] + "\n")  # what DuckDB's glob [1] matches
    report = build([tmp_path / "a[1].jsonl"])
    assert (report.files, report.lines, report.targets, report.skipped) == (1, 2, 2, {})


def test_since_alone_and_until_alone(report_dir: Path) -> None:
    since = build([report_dir], since=datetime(2024, 2, 17, 10, 30))
    until = build([report_dir], until=datetime(2024, 2, 17, 10, 30))
    assert (since.targets, until.targets) == (4 * 90, 4 * 90)


def test_odd_lines_are_skipped_with_a_reason(tmp_path: Path) -> None:
    no_role = measurement("c", 0, "x.com", "ok")
    del no_role["annotations"]["x_role"]
    older = json.dumps(measurement("c", 1, "x.com", "ok") | {"test_keys": {}})
    comma = older[:-1] + ",}"  # DuckDB's parser takes a trailing comma, Python's does not
    (tmp_path / "odd.jsonl").write_text(json.dumps(no_role) + "\n" + comma + "\n")
    report = build([tmp_path])
    assert (report.targets, report.controls) == (0, 0)
    assert report.skipped == {"unknown annotations.x_role": 1, "torn or invalid JSON line": 1}


def test_a_line_too_deep_for_python_is_skipped_not_its_file(tmp_path: Path) -> None:
    deep = '{"test_name":"dash","software_name":"ooniprobe","test_keys":{"x":' + "[" * 5000
    deep += "]" * 5000 + "}}"  # DuckDB parses it; Python's json.loads raises RecursionError
    good = json.dumps(measurement("a", 0, "x.com", "blocked"), separators=(",", ":"))
    (tmp_path / "m.jsonl").write_text(deep + "\n" + good + "\n")
    report = build([tmp_path])
    assert report.targets == 1
    assert report.skipped == {"torn or invalid JSON line": 1}


def test_csv_and_json_hold_the_aggregate(report_dir: Path) -> None:
    report = build([report_dir])
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert {r["source"] for r in rows} == {"probe"}
    assert len(rows) == 4 * 4 * 60  # 4 ISPs x (3 families + X) x 60 one-minute buckets
    first_b = next(r for r in rows if r["asn"] == "AS64501" and r["family"] == "x.com")
    assert first_b["bucket_start"] == "2024-02-17T10:00:00Z"
    assert (first_b["blocked_tls"], first_b["blocked_share"], first_b["detail"]) == (
        "1", "1.0000", "tls.sni_reset")  # fmt: skip
    data = json.loads(json.dumps(to_json(report)))
    assert data["summary"]["duplicates"] == 5
    b = next(i for i in data["isps"] if i["asn"] == "AS64501")
    assert b["sentence"] == EXPECTED[1]
    every = next(f for f in b["families"] if f["family"] == ALL)
    assert [(w["start"], w["end"], w["seconds"]) for w in every["open_windows"]] == [
        ("2024-02-17T10:09:30Z", "2024-02-17T10:14:30Z", 300.0),
        ("2024-02-17T10:39:30Z", "2024-02-17T10:49:30Z", 600.0),
    ]
    assert every["switches"] == 4


def written_by_the_probe(tmp_path: Path) -> list[dict[str, Any]]:
    """A target and a control as ``probe run`` writes them, for an ISP whose name
    holds what JSON escapes: a quote, a backslash, non-ASCII."""
    answer = (DnsAnswer("A", "203.0.113.9", 60),)
    reset = TcpConnect("203.0.113.9", 443, "connection_reset", 0.1, 0.2, 2, ("target",))
    records = (DnsQuery("x.com", "A", "udp", "127.0.0.1:53", answer, "NOERROR", None, None,
                        0.0, 0.1, 1, ("target",)), reset)  # fmt: skip
    control = (TcpConnect("203.0.113.7", 443, None, 0.1, 0.2, 3, ("control_site",)),)
    domains = (DomainResult("x.com", "target", records, 0.0, 0.3),
               DomainResult("www.example.com", "control", control, 0.0, 0.3))  # fmt: skip
    config = tmp_path / "c.toml"
    config.write_text("[targets]\nx=['x.com']\ncontrols=['www.example.com']\n"
                      "[[resolvers]]\nengine='udp'\naddress='127.0.0.1'\n")  # fmt: skip
    who = Identity("AS64500", "PK", 'Lab "ISP" \\ Pākistān')
    return [scored(m) for m in measurements(CampaignResult(1.7e9, domains, 0.3), load(config),
                                            identity=who)]  # fmt: skip


def keys(con: duckdb.DuckDBPyConnection, reader: str, path: Path) -> list[Any]:
    return [k for (k,) in con.execute(f"SELECT k FROM ({reader_sql(reader)})",
                                      {"files": [str(path)]}).fetchall()]  # fmt: skip


def test_the_fast_reader_gives_what_the_safe_one_gives(tmp_path: Path) -> None:
    target, control = written_by_the_probe(tmp_path)
    older = dict(sorted((target | {"x_format_version": "2", "measurement_uid": "v2"}).items()))
    store.append(tmp_path / "m.jsonl", [target, control, older])
    line = (tmp_path / "m.jsonl").read_text().splitlines()[0]
    broken = line.replace('"tcp_connect":[', '"tcp_connect":[[', 1)  # observations only
    with open(tmp_path / "m.jsonl", "a", encoding="utf-8") as f:
        f.write(f"{broken}\n{line[: len(line) // 2]}\n")  # and a torn line
    con = connect()
    fast, whole = keys(con, _FAST, tmp_path / "m.jsonl"), keys(con, _SAFE, tmp_path / "m.jsonl")
    assert fast == whole
    assert fast[0][:3] == [target["measurement_uid"], "AS64500", 'Lab "ISP" \\ Pākistān']
    assert fast[0][-4:] == ["blocked", "tcp_ip", "tcp_ip.reset", ANALYSIS_VERSION]
    assert fast[2][0] == "v2"
    assert fast[3] is fast[4] is None  # the whole line is read: damaged anywhere, it is no JSON


def test_many_compressed_files_read_by_many_threads(tmp_path: Path) -> None:
    # DuckDB reads a file per thread; with its default buffer (16x the longest line: 256 MB
    # for each .gz being read) 8 threads ran out of the report's 1 GB.
    for run in range(16):
        with gzip.open(tmp_path / f"{run}.jsonl.gz", "wt") as f:
            f.write("\n".join(run_lines("c", run)) + "\n")
    con = connect()
    con.execute("SET threads = 8")
    staged = stage(con, [tmp_path])
    assert (staged.files, staged.lines, dict(staged.skipped)) == (16, 16 * 4, {})


def test_zero_measurements_says_so(tmp_path: Path) -> None:
    report = build([tmp_path])
    assert (report.files, report.targets, report.cells, report.series) == (0, 0, (), ())
    assert summary(report).endswith("No target measurements to report.")
    assert to_json(report)["isps"] == []


def test_the_cli_writes_every_output(report_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = {k: tmp_path / f"r.{k}" for k in ("html", "csv", "json")}
    args = [f"--{k}={v}" for k, v in out.items()]
    assert main(["report", str(report_dir), "--bucket", "5m", *args]) == 0
    printed = capsys.readouterr().out
    assert "5 duplicates dropped; 1 re-scored" in printed
    assert all(f"  {s}" in printed for s in EXPECTED[:1] + EXPECTED[2:])
    assert "<svg" not in out["html"].read_text()  # drawn by the page's own script
    assert "id=heatmap" in out["html"].read_text()
    assert json.loads(out["json"].read_text())["summary"]["bucket_seconds"] == 300
    assert out["csv"].read_text().startswith("asn,network,source,family,bucket_start")
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(report_dir), "--bucket", "7x"]) == 2
    assert main(["export", str(report_dir), "--parquet", str(tmp_path / "no" / "x.parquet")]) == 2


def test_export_to_parquet_gives_the_same_report(report_dir: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "all.parquet"
    rows, skipped = export_parquet([report_dir], parquet)
    assert rows == 4 * 180 + 4 * 60
    assert skipped["torn or invalid JSON line"] == 3
    again = build([parquet])
    assert sentences(again) == EXPECTED
    assert (again.targets, again.rescored, again.duplicates) == (720, 0, 0)


def test_parquet_of_older_rules_is_re_scored_from_its_lines(report_dir: Path,
                                                            tmp_path: Path) -> None:  # fmt: skip
    current, old = tmp_path / "current.parquet", tmp_path / "old.parquet"
    export_parquet([report_dir], current)
    duckdb.execute(f"COPY (SELECT * REPLACE ('0' AS version) FROM '{current}') TO '{old}'")
    again = build([old])
    assert (again.targets, again.rescored) == (720, 720)
    # The lines were read and scored: with no observations in them, the rules say inconclusive.
    assert sum(s.inconclusive for s in again.series if s.family == "X") == 720


def test_without_duckdb_the_hint_installs_this_projects_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not ``pip install 'probe[report]'``: a ``probe`` on PyPI is an unrelated project."""
    monkeypatch.setitem(sys.modules, "duckdb", None)  # None: the import raises ImportError
    monkeypatch.delitem(sys.modules, "probe.report.engine")
    for command in (["report", str(tmp_path)], ["export", str(tmp_path), "--parquet", "x.pq"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "pip install -e '.[report]'" in err
        assert "pip install '/path/to/checkout[report]'" in err

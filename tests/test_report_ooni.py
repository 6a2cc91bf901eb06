"""``probe report`` over OONI's own measurements beside ours: one report, each row's source.

OONI's files are copied by the tests from ``../shared/data/ooni-samples`` beside the repo
(its minipipeline QA cases: web_connectivity 0.5 written by OONI's real probe in its network
simulator, AS137). Outside CI, absent samples skip those tests; under CI=true they fail.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("duckdb", reason="the report needs the project's [report] extra (duckdb)")

from test_report import measurement

from probe.__main__ import main
from probe.report.engine import build, export_parquet
from probe.report.model import ALL
from probe.report.tables import to_csv, to_json
from probe.report.text import method_words, sentences, summary

ROOT = Path(__file__).resolve().parent.parent
CASES = (
    ROOT.parent / "shared" / "data" / "ooni-samples" / "ooni-probe-cli" / "minipipeline-generated"
)
MIXED = (
    "tlsBlockingConnectionResetWithConsistentDNS",
    "tlsBlockingConnectionResetWithInconsistentDNS",
    "successWithHTTPS",
)
OONI_SENTENCE = (
    "AS137 Consortium GARR (OONI data): X blocked 100% of the time by TLS reset (SNI or address "
    "filtering) (3 measurements)"
)


def cases() -> Path:
    if not CASES.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"OONI samples missing at {CASES} (CI has ../shared beside the repo)")
        pytest.skip(f"OONI samples not present at {CASES} (../shared beside the repo)")
    return CASES


def ours(folder: Path) -> None:
    """Two runs of our ISP A (always blocked by an SNI reset): 6 targets, 2 controls."""
    rows = [
        measurement("a", run, d, "blocked")
        for run in (0, 1)
        for d in ("x.com", "t.co", "pbs.twimg.com")
    ]
    rows += [measurement("a", run, "www.example.com", None, role="control") for run in (0, 1)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "2024-02-17.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Our JSONL beside 3 OONI measurement files as OONI writes them (one gzipped)."""
    ours(tmp_path / "probe")
    (tmp_path / "ooni").mkdir()
    for i, case in enumerate(MIXED):
        source = cases() / case / "measurement.json"
        if i == 2:
            (tmp_path / "ooni" / f"{case}.json.gz").write_bytes(gzip.compress(source.read_bytes()))
        else:
            shutil.copy(source, tmp_path / "ooni" / f"{case}.json")
    return tmp_path


def test_a_mixed_folder_gives_one_report_with_both_sources(mixed: Path) -> None:
    report = build([mixed])
    assert (report.files, report.lines, report.targets, report.controls) == (4, 11, 9, 2)
    assert report.sources == {"ooni": 3, "probe": 6}
    assert report.rescored == 3  # OONI's rows carry no verdict of ours: always scored
    assert report.skipped == {}
    assert sentences(report) == [
        OONI_SENTENCE,
        "AS64500 Lab ISP A: X blocked 100% of the time by TLS SNI reset (6 measurements)",
    ]
    ooni = next(s for s in report.series if s.source == "ooni" and s.family == ALL)
    assert (ooni.measured, ooni.ok, ooni.blocked, ooni.blocked_by["tls"]) == (3, 1, 2, 2)
    assert "target measurements (3 OONI, 6 probe)" in summary(report)


def test_the_source_is_a_column_of_the_csv_and_json(mixed: Path) -> None:
    report = build([mixed])
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert {(r["asn"], r["source"]) for r in rows} == {("AS137", "ooni"), ("AS64500", "probe")}
    assert {r["family"] for r in rows if r["source"] == "ooni"} == {ALL, "example.com"}
    data = to_json(report)
    assert [(i["asn"], i["source"]) for i in data["isps"]] == [
        ("AS137", "ooni"),
        ("AS64500", "probe"),
    ]
    assert data["summary"]["targets_by_source"] == {"ooni": 3, "probe": 6}
    assert {c["source"] for c in data["cells"]} == {"ooni", "probe"}


def test_ooni_files_copied_twice_and_api_answers_are_read_once(mixed: Path) -> None:
    source = cases() / MIXED[0] / "measurement.json"
    shutil.copy(source, mixed / "again.json")  # OONI rows have no uid: the md5 of the line
    body = {"measurement_uid": "20240212T203347Z_webconnectivity_IT_137_n1_x",
            "raw_measurement": source.read_text()}  # fmt: skip
    api = {"status": 200, "contentType": "application/json", "body": json.dumps(body)}
    (mixed / "api.json").write_text(json.dumps(api))
    report = build([mixed])
    assert report.duplicates == 2
    assert report.sources == {"ooni": 3, "probe": 6}


def test_other_ooni_tests_and_non_measurements_are_skipped_with_a_count(tmp_path: Path) -> None:
    ours(tmp_path)
    other = {"test_name": "dnscheck", "software_name": "ooniprobe", "probe_asn": "AS137",
             "measurement_start_time": "2024-02-12 20:33:47", "input": "dot://1.1.1.1/",
             "test_keys": {}}  # fmt: skip
    (tmp_path / "dnscheck.json").write_text(json.dumps(other, indent=2))  # one pretty document
    lines = [other | {"test_name": "stunreachability"}] * 2 + [other | {"test_version": "0.6.0"}]
    lines[2]["test_name"] = "web_connectivity"
    (tmp_path / "other.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "analysis.json").write_text('{"DNSLookupSuccess": []}')
    report = build([tmp_path])
    assert report.skipped == {
        "OONI test 'dnscheck' is not scored (only web_connectivity)": 1,
        "OONI test 'stunreachability' is not scored (only web_connectivity)": 2,
        "unknown web_connectivity version '0.6.0'": 1,
        "not a measurement (no test_name)": 1,
    }
    assert (report.lines, report.sources) == (13, {"probe": 6})
    assert "2 OONI test 'stunreachability' is not scored" in summary(report)


def test_export_keeps_the_source_and_the_ooni_verdicts(mixed: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "all.parquet"
    assert export_parquet([mixed], parquet) == (11, {})
    again = build([parquet])
    assert (again.sources, again.rescored) == ({"ooni": 3, "probe": 6}, 0)
    assert sentences(again)[0] == OONI_SENTENCE


def test_the_cli_reports_the_ooni_qa_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = tmp_path / "ooni.html"
    # The QA cases' inputs are the campaign's targets here (the default's controls include
    # www.example.com, most cases' input): a config says which inputs are X.
    inputs = [json.loads((c / "measurement.json").read_text())["input"] for c in cases().iterdir()]
    hosts = sorted({u.split("/")[2].split(":")[0].lower().encode("idna").decode() for u in inputs})
    text = (ROOT / "configs" / "x.toml").read_text()
    text = re.sub(r"\nx = \[[^\]]*\]", lambda _: "\nx = " + json.dumps(hosts), text)
    text = re.sub(r"\ncontrols = \[[^\]]*\]", '\ncontrols = ["www.wikipedia.org"]', text)
    (tmp_path / "qa.toml").write_text(text)
    assert main(["report", str(cases()), "--html", str(html),
                 "--config", str(tmp_path / "qa.toml")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "50 target measurements (50 OONI)" in printed
    assert "200 not a measurement (no test_name)." in printed  # analysis.json & co.
    (line,) = [x for x in printed.splitlines() if x.startswith("  AS137 ")]
    assert line.startswith("  AS137 Consortium GARR (OONI data): ")
    assert line.endswith("(50 measurements)")
    page = html.read_text()
    assert "AS137 Consortium GARR (OONI data)" in page and "OONI&#x27;s own" in page


def test_every_detail_the_rules_can_emit_has_words() -> None:
    # the decisions and the facts they name (probe/verdict/decide_*.py, facts_*.py)
    trees = [ast.parse(p.read_text()) for p in sorted((ROOT / "probe" / "verdict").glob("*.py"))]
    details = {
        node.value
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and re.fullmatch(r"(dns|tcp_ip|tls|http)\.[a-z_]*[a-z]", node.value)
    }  # fmt: skip
    # the two built from the kind of a TLS failure: f"tls.sni_{kind}", f"tls.{kind}"
    details |= {f"tls.{sni}{kind}" for sni in ("", "sni_") for kind in ("reset", "stall")}
    assert {"tls.reset", "tls.stall", "http.timeout", "dns.nxdomain", "dns.oversized"} <= details
    # without a label a detail reads "<method words> (<rest>)"
    unlabelled = {d for d in details if method_words(d).endswith(f"({d.partition('.')[2]})")}
    assert unlabelled == set()


def test_ooni_rows_are_classified_by_input_against_the_campaign(tmp_path: Path) -> None:
    """OONI has no role: an input of the targets is X, of the controls a control, else out."""
    from test_ooni import wc

    from probe.report.scan import OTHER_INPUT, Roles

    rows = [wc("connection_reset", url=u) for u in
            ("https://x.com/", "https://www.example.com/", "https://example.org/",
             "https://www.wikipedia.org/")]  # fmt: skip
    (tmp_path / "ooni.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    roles = Roles(("x.com", "t.co"), ("www.example.com", "www.wikipedia.org"))
    report = build([tmp_path], roles=roles)
    assert (report.targets, report.controls) == (1, 2)
    assert report.skipped == {OTHER_INPUT: 1}
    assert build([tmp_path]).targets == 4  # no lists: every row is a target (the API default)


def test_jsonc_files_in_a_folder_are_read(tmp_path: Path) -> None:
    """OONI's test data comes as .jsonc (// comment lines): read when its folder is given."""
    from test_ooni import wc

    text = "// a comment, as in OONI's test data\n" + json.dumps(wc(), indent=2) + "\n// end\n"
    (tmp_path / "case.jsonc").write_text(text)
    report = build([tmp_path])
    assert (report.targets, report.skipped) == (1, {})

"""probe.verdict.ooni_aggregate: a TLS finding that rests on one OONI line (no test helper),
confirmed or withdrawn by the other names of the same run. Pure: no network."""

from __future__ import annotations

from typing import Any

from test_ooni import wc

from probe.verdict import verdict
from probe.verdict.ooni_aggregate import CONFIRMED_BONUS, Row, corroborate, is_alone, row


def line(name: str, run: str, *, reset: bool, helper: bool = False) -> dict[str, Any]:
    """An OONI 0.4 line for https://<name>/ in run ``run``: its handshake reset or not, with
    or without a test-helper result."""
    m = wc("connection_reset" if reset else None, url=f"https://{name}/")
    keys = m["test_keys"]
    for q in keys["queries"]:
        q["hostname"] = name
    keys["tls_handshakes"][0]["server_name"] = name
    keys.pop("x_blocking_flags")
    if not helper:
        keys.update(control_failure=None, control={})
    m.update(report_id=run, test_version="0.4.2", probe_asn="AS17557")
    return m


def rows(*lines: dict[str, Any]) -> list[Row]:
    return [row(m, verdict(m)) for m in lines]


def test_a_lone_reset_is_confirmed_when_another_name_of_the_run_was_reached() -> None:
    x, wiki = line("x.com", "r1", reset=True), line("www.wikipedia.org", "r1", reset=False)
    before = rows(x, wiki)
    assert is_alone(before[0]) and before[1].status == "ok"
    after = corroborate(before)
    assert (after[0].status, after[0].detail) == ("blocked", "tls.reset")
    assert after[0].confidence == round(before[0].confidence + CONFIRMED_BONUS, 2) == 0.6
    assert "www.wikipedia.org" in after[0].note and after[1] == before[1]
    assert not is_alone(after[0])  # confirmed once: a second pass changes nothing
    assert corroborate(after) == after


def test_a_lone_reset_is_withdrawn_when_every_other_name_failed_too() -> None:
    after = corroborate(rows(line("x.com", "r2", reset=True), line("t.co", "r2", reset=True)))
    assert [(r.status, r.detail) for r in after] == [("inconclusive", None)] * 2
    assert "every other name of the same run failed too" in after[0].note


def test_other_runs_and_findings_with_a_test_helper_are_left_alone() -> None:
    solo = rows(line("x.com", "r3", reset=True), line("www.wikipedia.org", "r4", reset=False))
    assert corroborate(solo) == solo  # r3 has no other name: unchanged
    proven = rows(line("x.com", "r5", reset=True, helper=True), line("t.co", "r5", reset=True))
    assert proven[0].confidence == 0.7 and not is_alone(proven[0])
    after = corroborate(proven)
    assert after[0] == proven[0]


def test_27_asns_of_reset_x_lines_with_a_control_site_reached_read_blocked() -> None:
    """Issue 16: per run, X's names reset with control {} while the control site answers."""
    lines = []
    for asn in range(27):
        run = f"run-AS{64500 + asn}"
        lines += [line(n, run, reset=True) for n in ("x.com", "twitter.com", "api.x.com")]
        lines.append(line("www.example.org", run, reset=False))
    after = corroborate(rows(*lines))
    x = [r for r in after if r.domain != "www.example.org"]
    assert len(x) == 81 and {(r.status, r.detail, r.confidence) for r in x} == {
        ("blocked", "tls.reset", 0.6)
    }

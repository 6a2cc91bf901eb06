"""The lab evaluation: synthetic truth and measurements, confusion matrices, exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from probe.lab.cli import main
from probe.lab.evaluate import TruthWindow, evaluate, infer_interval

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2025, 2, 17, 10, 0, tzinfo=UTC)
ISPS = {"AS64500": "isp1", "AS64501": "isp2"}


def measurement(case: str, minute: float, asn: str = "AS64500") -> dict[str, Any]:
    """A golden measurement re-dated to T0 + minute, from the ISP ``asn``."""
    m: dict[str, Any] = json.loads((GOLDEN / case / "measurement.json").read_text())
    when = T0 + timedelta(minutes=minute)
    m["measurement_start_time"] = when.strftime("%Y-%m-%d %H:%M:%S")
    m.pop("x_measurement_start_time", None)  # whole seconds, as before probe 0.1.0
    m["measurement_uid"] = f"{case}-{asn}-{minute}"
    m["probe_asn"] = asn
    return m


def window(
    technique: str,
    method: str | None,
    start: float,
    end: float,
    asn: str = "AS64500",
    domain: str = "x.com",
) -> TruthWindow:
    return TruthWindow.from_json(
        {
            "isp": ISPS[asn],
            "asn": asn,
            "domain": domain,
            "technique": technique,
            "method": method,
            "start": (T0 + timedelta(minutes=start)).isoformat().replace("+00:00", "Z"),
            "end": (T0 + timedelta(minutes=end)).isoformat(),
        }
    )


def sporadic_run() -> tuple[list[dict[str, Any]], list[TruthWindow]]:
    """isp1: SNI resets from minute 10 to 20, open otherwise; isp2: an outage 5..15, then lossy."""
    truth = [
        window("sni_reset", "tls", 10, 20),
        window("outage", None, 5, 15, asn="AS64501", domain="*"),
        window("lossy", None, 15, 30, asn="AS64501", domain="*"),
    ]
    ms = [measurement("sni_reset" if 10 <= i < 20 else "ok", i) for i in range(30)]
    ms += [
        measurement("outage" if 5 <= i < 15 else "lossy" if i >= 15 else "ok", i, "AS64501")
        for i in range(30)
    ]
    return ms, truth


def test_a_correct_run_passes() -> None:
    ms, truth = sporadic_run()
    result = evaluate(ms, truth, 60)
    assert result.exit_code == 0, result.failures
    assert result.errors == ()
    assert result.measured == 60 and result.unreadable == 0
    # whole seconds (no x_measurement_start_time): +-1 s, so minutes 10 and 20 run across
    # isp1's switches, and minute 5 and 15 across isp2's (outage, loss: not sporadic censors)
    assert result.straddling == 4
    (tls,) = [c for c in result.cells if c.method == "tls"]
    # every measurement scored: minute 10 (blocked, across the switch) is a true positive
    assert (tls.isp, tls.domain, tls.tp, tls.fp, tls.fn, tls.tn) == ("isp1", "x.com", 10, 0, 0, 20)
    assert tls.precision == tls.recall == 1.0
    assert result.recall == {"tls": 1.0}
    assert result.sporadic == {"isp1": 30}
    w = result.windows
    assert (w.open_windows, w.detected, result.open_detected) == (2, 2, 1.0)
    assert (w.onset_errors, w.offset_errors) == ((0.0,), (0.0,))


def test_an_isp_of_the_truth_without_measurements_fails() -> None:
    ms, truth = sporadic_run()
    result = evaluate([m for m in ms if m["probe_asn"] != "AS64501"], truth, 60)
    assert result.exit_code != 0
    assert result.failures == ("no measurement from isp2, which the truth describes",)


def test_blocked_during_an_open_window_fails() -> None:
    ms, truth = sporadic_run()
    ms[2] = measurement("dns_nxdomain", 2)  # isp1 open at minute 2
    result = evaluate(ms, truth, 60)
    assert result.exit_code == 1
    (error,) = result.errors
    assert (error.error, error.isp, error.active, error.method) == (
        "false_positive",
        "isp1",
        (),
        "dns",
    )
    assert "open, outage or lossy" in result.failures[0]
    (dns,) = [c for c in result.cells if c.method == "dns"]
    assert (dns.fp, dns.precision) == (1, 0.0)


def test_blocked_during_an_outage_or_loss_fails() -> None:
    ms, truth = sporadic_run()
    ms[30 + 8] = measurement("ip_blackhole", 8, "AS64501")  # "tcp_ip" during the outage
    ms[30 + 25] = measurement("sni_stall", 25, "AS64501")  # "tls" on the lossy link
    result = evaluate(ms, truth, 60)
    assert result.exit_code == 1
    assert [(e.error, e.active) for e in result.errors] == [
        ("false_positive", ("outage",)),
        ("false_positive", ("lossy",)),
    ]


def test_the_wrong_method_fails_even_across_a_switch() -> None:
    ms, truth = sporadic_run()
    ms[10] = measurement("dns_nxdomain", 10)  # the window opens at minute 10: across a switch
    result = evaluate(ms, truth, 60)
    assert result.exit_code == 1
    (error,) = result.errors
    assert (error.error, error.straddles, error.expected) == ("wrong_method", True, ())
    assert "wrong method" in result.failures[0]


def test_recall_below_98_percent_fails() -> None:
    ms, truth = sporadic_run()
    ms[15] = measurement("ok", 15)  # a missed block in the middle of the window
    result = evaluate(ms, truth, 60)
    assert result.exit_code == 1
    (error,) = result.errors
    assert (error.error, error.expected, error.status) == ("missed", ("tls",), "ok")
    assert result.recall["tls"] == 9 / 10
    assert result.failures == ("recall of tls is 90.0% (< 98%)",)


def test_across_a_switch_either_side_is_right_and_every_measurement_counts() -> None:
    ms, truth = sporadic_run()
    ms[10] = measurement("ok", 10)  # the block began while this one ran: ok is right
    result = evaluate(ms, truth, 60)
    assert result.exit_code == 0 and result.errors == ()
    (tls,) = [c for c in result.cells if c.method == "tls"]
    assert (tls.tp, tls.fn, tls.tn) == (9, 0, 21)
    assert result.windows.onset_errors == (59.0,)  # minute 11 (-1 s: whole seconds) saw it
    ms[19] = measurement("ok", 19)  # wholly inside the window: a miss, near a switch or not
    assert [e.error for e in evaluate(ms, truth, 60).errors] == ["missed"]


def test_precise_start_times_time_the_switches_and_the_open_windows() -> None:
    truth = [window("sni_reset", "tls", 0, 1), window("sni_reset", "tls", 1.25, 2)]
    ms = []
    for second in range(0, 120, 4):  # every 4 s, each 1.5 s long, open 60-75 s
        m = measurement("sni_reset" if not 60 <= second < 75 else "ok", second / 60)
        when = T0 + timedelta(seconds=second + 0.25)
        m["x_measurement_start_time"] = when.strftime("%Y-%m-%d %H:%M:%S.%f")
        m["test_runtime"] = 1.5
        ms.append(m)
    result = evaluate(ms, truth, 4)
    assert result.exit_code == 0 and result.straddling == 0, result.failures
    w = result.windows
    assert (w.open_windows, w.detected) == (1, 1)
    assert w.offset_errors == (0.25,) and w.onset_errors == (1.25,)
    ms[16]["measurement_uid"] = "late"  # 64.25 s: open, wrongly, shown blocked
    ms[15:19] = [measurement("sni_reset", 1) | {k: m[k] for k in ("x_measurement_start_time",
                 "test_runtime")} for m in ms[15:19]]  # fmt: skip
    result = evaluate(ms, truth, 4)
    assert result.windows.detected == 0
    assert result.failures[-1] == "0 of 1 open windows of >= 10 s detected (< 90%)"


def test_unknown_isp_is_open() -> None:
    ms, truth = sporadic_run()
    result = evaluate([*ms, measurement("sni_reset", 12, "AS65000")], truth, 60)
    assert [(e.error, e.isp) for e in result.errors] == [("false_positive", "AS65000")]


def test_unreadable_measurements_are_counted_not_scored() -> None:
    ms, truth = sporadic_run()
    broken = dict(ms[0], measurement_start_time="yesterday")
    result = evaluate([*ms, None, broken], truth, 60)
    assert (result.measured, result.unreadable, result.exit_code) == (60, 2, 0)


def test_infer_interval() -> None:
    ms, _ = sporadic_run()
    assert infer_interval([*ms, None]) == 60.0
    assert infer_interval([]) == 0.0


def write_run(
    root: Path, truth: list[dict[str, Any]], per_isp: dict[str, list[dict[str, Any]]]
) -> None:
    (root / "truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth) + '{"isp": "is')
    for isp, ms in per_isp.items():
        (root / isp).mkdir()
        text = "".join(json.dumps(m) + "\n" for m in ms)
        (root / isp / "2025-02-17.jsonl").write_text(text + text.splitlines()[-1][:50])  # torn


def test_main_reads_a_run_directory(tmp_path: Path, capsys: Any) -> None:
    truth = [
        {
            "isp": "isp1",
            "asn": "AS64500",
            "domain": "x.com",
            "technique": "sni_reset",
            "method": "tls",
            "start": "2025-02-17T10:10:00Z",
            "end": "2025-02-17T10:20:00Z",
        }
    ]
    ms = [measurement("sni_reset" if 10 <= i < 20 else "ok", i) for i in range(30)]
    write_run(tmp_path, truth, {"isp1": ms})
    out = tmp_path / "eval.json"
    assert main(["eval", str(tmp_path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "30 measurements" in printed and "1 unreadable" in printed and printed.endswith("PASS\n")
    assert "isp1       x.com                  tls" in printed
    assert "blocked share in the report's sentence, of the same span in truth: isp1" in printed
    report = json.loads(out.read_text())
    assert report["exit_code"] == 0 and report["interval"] == 60.0
    assert report["recall"] == {"tls": 1.0}


def test_main_fails_and_lists_the_wrong_verdicts(tmp_path: Path, capsys: Any) -> None:
    truth = [
        {
            "isp": "isp1",
            "asn": "AS64500",
            "domain": None,
            "technique": "lossy",
            "method": None,
            "start": "2025-02-17T10:00:00+00:00",
            "end": "2025-02-17T11:00:00+00:00",
        }
    ]
    ms = [measurement("ip_blackhole" if i == 30 else "lossy", i) for i in range(2, 58)]
    write_run(tmp_path, truth, {"isp1": ms})
    assert main(["eval", str(tmp_path), "--interval", "60"]) == 1
    printed = capsys.readouterr().out
    assert "false_positive: truth lossy; got blocked tcp_ip.timeout" in printed
    assert "FAIL: 1 blocked verdict(s) where the truth says open, outage or lossy" in printed


def test_main_without_truth(tmp_path: Path, capsys: Any) -> None:
    assert main(["eval", str(tmp_path)]) == 2
    assert "truth.jsonl not found" in capsys.readouterr().err


def test_a_control_sites_line_gets_its_own_verdict_never_blocked() -> None:
    # a control site whose handshakes timed out on a loaded host: the target rules would call
    # it a TLS stall (it has no control of its own); its line's verdict says inconclusive
    m = measurement("ok", 1)
    m["annotations"]["x_role"] = "control"
    m["input"] = "https://www.example.com/"
    tk = m["test_keys"]
    for key in ("queries", "tcp_connect", "tls_handshakes", "requests", "network_events"):
        tk[key] = [e for e in tk.get(key, []) if "control_site" in e.get("tags", ())]
    for h in tk["tls_handshakes"]:
        h["failure"] = "generic_timeout_error"
    tk["requests"] = []
    result = evaluate([m], [window("sni_reset", "tls", 0, 30)], 60)
    assert result.errors == () and result.exit_code == 0, result.failures

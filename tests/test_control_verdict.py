"""A control site's line carries a verdict too: ok, down or inconclusive, never blocked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probe.pipeline import scored
from probe.verdict.control import control_verdict

GOLDEN = Path(__file__).parent / "golden"


def control_line(case: str) -> dict[str, Any]:
    """The control site's own observations of a golden run, as the probe writes its line."""
    m: dict[str, Any] = json.loads((GOLDEN / case / "measurement.json").read_text())
    m["annotations"]["x_role"] = "control"
    m["input"] = "https://www.example.com/"
    tk = m["test_keys"]
    m["test_keys"] = {
        key: [e for e in tk.get(key, []) if "control_site" in e.get("tags", ())]
        for key in ("queries", "tcp_connect", "tls_handshakes", "requests", "network_events")
    }
    return m


def test_a_working_control_site_is_ok() -> None:
    v = control_verdict(control_line("ok"))
    assert (v.status, v.method, v.explanation) == (
        "ok",
        None,
        "ok: the control site www.example.com works",
    )


def test_an_unreachable_control_site_is_down_and_a_broken_one_inconclusive() -> None:
    down = control_verdict(control_line("outage"))
    assert (down.status, down.method) == ("down", None)
    assert down.explanation.startswith("down: the control site www.example.com cannot be reached")
    broken = control_line("ok")
    for key in ("tls_handshakes", "requests"):  # reached (connected), then silence
        for entry in broken["test_keys"][key]:
            entry["failure"] = "generic_timeout_error"
    v = control_verdict(broken)
    assert (v.status, v.method) == ("inconclusive", None)
    assert "generic_timeout_error" in v.explanation


def test_every_line_gets_x_verdict() -> None:
    target: dict[str, Any] = json.loads((GOLDEN / "sni_reset" / "measurement.json").read_text())
    target["test_keys"].pop("x_verdict", None)
    lines = [scored(m) for m in (target, control_line("ok"))]
    assert [m["test_keys"]["x_verdict"]["status"] for m in lines] == ["blocked", "ok"]
    assert all("x_analysis_version" in m["test_keys"] for m in lines)
    assert lines[1]["test_keys"]["blocking"] is False and lines[1]["test_keys"]["accessible"]

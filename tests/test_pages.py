"""A page served in the site's place (probe.verdict.pages) against variants of a golden case."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from probe.verdict import verdict

CASE = Path(__file__).parent / "golden" / "http_page_unknown" / "measurement.json"


def _case() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(CASE.read_text())
    return result


def _plain(m: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in m["test_keys"]["requests"] if r["request"]["url"] == "http://x.com/")


def test_a_page_of_its_own_with_https_unreachable_is_an_http_diff_with_title_and_hash() -> None:
    v = verdict(_case())
    assert (v.status, v.method, v.detail) == ("blocked", "http", "http.diff")
    assert "'Access restricted'" in v.evidence[0] and "sha256 01990fd4" in v.evidence[0]


def test_a_redirect_is_what_the_site_answers_so_the_tcp_rule_decides() -> None:
    m = _case()
    response = _plain(m)["response"]
    response.update(code=301, body="", x_title=None)
    response["headers_list"].append(["Location", "https://x.com/"])
    v = verdict(m)
    assert (v.status, v.method, v.detail) == ("blocked", "tcp_ip", "tcp_ip.timeout")


def test_a_page_from_an_address_the_dns_control_does_not_give_is_left_to_the_dns_rules() -> None:
    m = _case()
    for q in m["test_keys"]["queries"]:
        if "resolver_control" in q.get("tags", []):
            for a in q.get("answers") or []:
                if a.get("answer_type") == "A":
                    a["ipv4"] = "198.51.100.99"
    assert verdict(m).detail != "http.diff"


def test_https_that_connects_is_no_substitution() -> None:
    m = _case()
    for c in m["test_keys"]["tcp_connect"]:
        if c["port"] == 443 and c["tags"] == ["target"]:
            c["status"] = {"failure": None, "success": True, "blocked": None}
            c.pop("failure", None)
    assert verdict(copy.deepcopy(m)).detail != "http.diff"

"""The rules on hostile measurements: arbitrary values anywhere in a real one never cost a verdict.

Each example starts from a golden (or real OONI) measurement and replaces some of its values
(anywhere in the tree, and especially the redirect's Location, the bodies and
the failure strings, which come from the network) by random strings, numbers,
None, lists or objects. The rules must return a verdict and never fall back on
"the rules failed": that is the fallback for a rule bug, and bytes a server
chose must not be one.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.verdict import Verdict, verdict

TESTS = Path(__file__).resolve().parent
#: our golden measurements, and real OONI ones (the OONI reader parses redirects too)
CASES = {
    **{
        p.name: json.loads((p / "measurement.json").read_text())
        for p in sorted((TESTS / "golden").iterdir())
        if (p / "measurement.json").is_file()
    },
    **{
        p.name: json.loads(p.read_text())
        for p in sorted((TESTS / "data" / "ooni-real").glob("*.json"))
    },
}

#: what servers and the scrubber put where a URL belongs
HOSTILE_URLS = (
    "http://[evil]/", "http://[scrubbed]/", "http://[::1/", "http://]/", "http://a:xx/",
    "http://x.com:99999/", "//", "http://", "https://яндекс.рф/", "http://\x00/", "\x1b[31m",
    "http://[::ffff:1.2.3.4]/", "javascript:alert(1)", "", " ",
)  # fmt: skip
FAILURES = (
    "connection_reset", "generic_timeout_error", "eof_error", "unknown_failure",
    "ssl_invalid_hostname", "dns_nxdomain_error", "unknown_failure: x" * 40,
)  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
    st.sampled_from(HOSTILE_URLS), st.sampled_from(FAILURES),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)
#: keys whose values the network chooses, mutated more often than the rest
NETWORK_KEYS = frozenset({"Location", "body", "failure", "x_title", "url", "code", "answers"})


def paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in a JSON tree."""
    out = [path] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*path, i))
    return out


def replace_at(root: Any, path: tuple[Any, ...], value: Any) -> None:
    node = root
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


@st.composite
def measurements(draw: st.DrawFn) -> dict[str, Any]:
    m = copy.deepcopy(CASES[draw(st.sampled_from(sorted(CASES)))])
    for _ in range(draw(st.integers(1, 6))):
        every = paths(m)
        network = [p for p in every if p[-1] in NETWORK_KEYS]
        pool = network if network and draw(st.booleans()) else every
        path = draw(st.sampled_from(pool))
        hostile = st.sampled_from(HOSTILE_URLS) if path[-1] == "Location" else values
        replace_at(m, path, draw(st.one_of(hostile, values)))
    # a redirect to a hostile URL, whatever else changed
    keys = m.get("test_keys")
    requests = keys.get("requests") if isinstance(keys, dict) else None
    for r in requests if isinstance(requests, list) else []:
        response = r.get("response") if isinstance(r, dict) else None
        if isinstance(response, dict) and draw(st.booleans()):
            location = draw(st.sampled_from(HOSTILE_URLS))
            response.update(code=302, headers={"Location": location})
            response["headers_list"] = [["Location", location]]
    return m


@settings(
    max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(measurements())
def test_hostile_measurements_get_a_verdict_not_a_rule_failure(m: dict[str, Any]) -> None:
    v = verdict(m)
    assert isinstance(v, Verdict)
    assert "the rules failed" not in v.explanation, v.explanation

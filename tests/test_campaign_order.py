"""The differential steps' order: a stateful censor must never be set off against our controls.

Real campaigns on the loopback internet (tests/loopback.py): every name is
served on 127.0.0.1, so a target's address is also the control site's, which
is what makes the order visible in the TLS server's log and the records' times.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from loopback import internet

from probe import campaign
from probe.config import load
from probe.records import TlsHandshake

RECORDS = {
    "x.com": {"A": ["127.0.0.1"]},
    "twitter.com": {"A": ["127.0.0.1"]},
    "www.example.com": {"A": ["127.0.0.1"]},
}


def _handshakes(result: campaign.CampaignResult, role: str) -> list[TlsHandshake]:
    return [
        o
        for d in result.domains
        if d.role == role
        for o in d.observations
        if isinstance(o, TlsHandshake)
    ]


def test_control_sni_before_target_sni_and_no_target_sni_at_a_control_being_checked(
    tmp_path: Path,
) -> None:
    with internet(tmp_path, RECORDS) as net:
        path = tmp_path / "c.toml"
        path.write_text(net.config(["x.com", "twitter.com"], ["www.example.com"]))
        result = asyncio.run(campaign.run(load(path)))
        seen = list(net.tls.server_names)
    targets = _handshakes(result, "target")
    controls = [h for h in _handshakes(result, "control") if h.tags == ("control_site",)]
    assert controls and all(h.failure is None for h in targets + controls)
    pairs = []
    for target in result.targets:
        steps = {o.tags: o for o in target.observations if isinstance(o, TlsHandshake)}
        # the control SNI on the target's address ended before the target SNI began
        assert steps[("control_sni",)].t <= steps[("target",)].t0
        pairs.append(steps)
    # both targets share the address: one control handshake there, before either target SNI
    assert pairs[0][("control_sni",)] == pairs[1][("control_sni",)]
    assert max(p[("control_sni",)].t for p in pairs) <= min(p[("target",)].t0 for p in pairs)
    spares = [h for h in targets if h.tags == ("control_address",)]
    assert {h.server_name for h in spares} == {"x.com", "twitter.com"}
    # the target SNIs at the control site's address only after the control site was measured
    assert min(h.t0 for h in spares) >= max(h.t for h in controls)
    assert seen.index("www.example.com") < min(seen.index("x.com"), seen.index("twitter.com"))


def test_a_dedicated_control_address_takes_the_target_sni(tmp_path: Path) -> None:
    with internet(tmp_path, {**RECORDS, "www.example.com": {"A": ["127.0.0.2"]}}) as net:
        path = tmp_path / "c.toml"
        path.write_text(net.config(["x.com"], ["www.example.com"], control_address="127.0.0.1"))
        result = asyncio.run(campaign.run(load(path)))
    [spare] = [h for h in _handshakes(result, "target") if h.tags == ("control_address",)]
    assert (spare.ip, spare.server_name, spare.failure) == ("127.0.0.1", "x.com", None)

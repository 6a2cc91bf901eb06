"""A censor that switches on must not touch the connections it would not block.

Issue 14: at the instant isp14's periodic SNI proxy switched on, handshakes with the control
SNI that were in flight were reset, and the probe read the address as blocked. The nft
redirect had caught later segments of connections that began before it, which the router's
kernel, holding no socket for them, answered with an RST. Here hundreds of handshakes with a
name the censor never blocks run across the switch; none may fail.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from minilab import Lab, X

from probe.lab.censors.sni_proxy import SniProxy
from probe.net.tls import handshake, make_context
from probe.records import Clock, TlsHandshake

HANDSHAKES = 400
SPACING = 0.002  # seconds between starts: 0.8 s of handshakes, the switch in the middle


@pytest.mark.lab
def test_switching_on_spares_the_connections_in_flight(lab: Lab) -> None:
    technique = SniProxy("sni_reset")
    lab.start(technique)
    context = make_context(lab.ca_file)
    results: list[TlsHandshake] = []

    async def many() -> list[TlsHandshake]:
        async def one(n: int) -> TlsHandshake:
            await asyncio.sleep(n * SPACING)
            return await handshake(
                X, 443, "control.example", context=context, clock=Clock(),
                connect_timeout=2.0, timeout=2.0, transaction_id=n,
            )  # fmt: skip

        return list(await asyncio.gather(*(one(n) for n in range(HANDSHAKES))))

    runner = threading.Thread(target=lambda: results.extend(lab.client(many)))
    runner.start()
    time.sleep(HANDSHAKES * SPACING / 2)
    lab.set_active(technique, "x.com")
    runner.join()
    assert len(results) == HANDSHAKES
    assert [(r.transaction_id, r.failure) for r in results if r.failure is not None] == []

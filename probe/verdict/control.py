"""The verdict on a control site's line, so a scorer reads every line alike (pure).

A control site is measured as itself (tag ``control_site``) to tell whether the network
works; nobody blocks it on purpose, so its verdict never says ``blocked``:

* ``ok``: a TLS handshake for its own name validated, and an HTTPS request, when one was
  made, got a response;
* ``down``: nothing of it was reached: no address resolved, or every connect failed;
* ``inconclusive``: it was reached, but not wholly (a handshake or the request failed).

The target rules read the same observations from every target's line (the health gate);
this verdict only says, on the control's own line, what they see there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from probe.format.reader import observations
from probe.format.view import Connect, Handshake, HttpExchange
from probe.format.vocab import Status, Tag
from probe.verdict.outcome import Verdict

__all__ = ["control_verdict"]

# The site's own observations: the view reads a line's own domain as its "target"
_OWN: Final = (Tag.TARGET, Tag.CONTROL_SITE)


def control_verdict(measurement: Mapping[str, Any]) -> Verdict:
    """The verdict on one control site's measurement (module docstring); never raises."""
    obs = observations(measurement)
    if obs.problems:
        reason = "; ".join(obs.problems[:3])
        return Verdict(Status.INCONCLUSIVE, None, None, None, None, obs.problems, 0.0,
                       f"inconclusive: the measurement cannot be read: {reason}")  # fmt: skip
    site = obs.domain
    own = [h for h in obs.handshakes if h.role in _OWN and h.server_name == site]
    fetches = [x for x in obs.http if x.role in _OWN]
    valid = [h for h in own if h.failure is None]
    answered = [x for x in fetches if x.failure is None and x.status is not None]
    if valid and (answered or not fetches):
        proof = [f"{h.ref}: TLS {site} at {h.ip}:{h.port} ok" for h in valid[:1]]
        return Verdict(Status.OK, None, None, None, f"{valid[0].ip}:{valid[0].port}", tuple(proof),
                       0.9, f"ok: the control site {site} works")  # fmt: skip
    connects = [c for c in obs.connects if c.role in _OWN]
    resolved = any(q.addresses for q in obs.dns if q.role in _OWN)
    failed: list[Connect | Handshake | HttpExchange] = [*connects, *own, *fetches]
    shown = tuple(f"{e.ref}: {e.failure or 'ok'}" for e in failed[:8])
    if not resolved or (connects and all(c.failure for c in connects)):
        why = "no address resolved" if not resolved else f"every connect failed ({_first(failed)})"
        step = "dns" if not resolved else "tcp_connect"
        return Verdict(Status.DOWN, None, None, step, None, shown, 0.8,
                       f"down: the control site {site} cannot be reached: {why}")  # fmt: skip
    return Verdict(Status.INCONCLUSIVE, None, None, None, None, shown, 0.5,
                   f"inconclusive: the control site {site} was reached but did not work "
                   f"({_first(failed)})")  # fmt: skip


def _first(entries: list[Connect | Handshake | HttpExchange]) -> str:
    return next((e.failure for e in entries if e.failure), "no failure recorded")

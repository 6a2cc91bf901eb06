"""The verdict: pure rules from one measurement to what blocked it, where, how and how sure.

``verdict(measurement)`` is the whole public surface the probe needs (it
scores OONI's web_connectivity measurements too, read by
:mod:`probe.format.ooni`);
``summary_keys`` turns a verdict into the OONI-style keys the measurement
stores. The pipeline (observations -> named facts -> decisions, as OONI's
probe-cli minipipeline) is documented in :mod:`probe.verdict.rules`, the
observations view in :mod:`probe.format.view`, the facts in
:mod:`probe.verdict.facts`, the fingerprint and bogon data in
``fingerprints.json`` / ``bogons.json``, and the lab evaluation in
:mod:`probe.lab.evaluate`. Nothing here touches the network.
"""

from probe.format.reader import observations
from probe.format.view import Observations
from probe.verdict.fingerprints import Fingerprints, load_fingerprints
from probe.verdict.rules import ANALYSIS_VERSION, Verdict, judge, summary_keys, verdict

__all__ = [
    "ANALYSIS_VERSION",
    "Fingerprints",
    "Observations",
    "Verdict",
    "judge",
    "load_fingerprints",
    "observations",
    "summary_keys",
    "verdict",
]

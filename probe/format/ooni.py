"""OONI's ``web_connectivity`` (every version: 0.0.1 to 0.5) read into the observations view.

:func:`chain` turns one OONI measurement into :class:`Observations`, so
:func:`probe.verdict.judge` scores it exactly like ours; :func:`probe.verdict.verdict`
dispatches here by itself when :func:`is_ooni` says so. Everything is pure:
dicts and strings in, records out, no I/O. The per-step readers are in
:mod:`probe.format.ooni_reader`; this module is the entry points.

The mapping (``docs/ooni-agreement.md`` has the reasoning and what it costs):

* ``queries``: ``getaddrinfo``/``system`` are the system resolver; ``udp``,
  ``tcp``, ``doh``, ``dot`` (0.5 asks public resolvers) are DNS controls,
  like our ``resolver_control`` queries; ``x_dns_duplicate_responses`` are
  late responses (injection evidence).
* ``tcp_connect``, ``tls_handshakes``, ``requests``: the probe's own steps
  (the handshake of an HTTPS request is in ``tls_handshakes`` already, so no
  step is derived twice). A request's ``code`` 0 means no response.
* ``control`` (the test helper, TH): ``control.dns`` is a trusted DNS control
  (engine ``th``: its answers come over HTTPS from another network);
  ``control.tcp_connect`` / ``tls_handshake`` / ``http_request`` are the same
  steps from elsewhere, role ``remote``. There is no control SNI on the same
  address and no control site in OONI data, so the rules can tell "this path
  interferes" but not SNI from address filtering, and say so. The probe's
  own exchange with the TH (``control_failure`` null) is the one control-site
  observation: it shows the probe's network works. A failed control adds
  nothing: a blocked TH is not an outage. Without any TH result the rules
  still read what the measurement itself shows (a TLS reset after a connect
  that succeeded), at a low confidence; ``x_blocking_flags`` goes along as
  ``Observations.flags``, read only as support for such a finding.
  Across lines: :mod:`probe.verdict.ooni_aggregate`.
* Roles: an observation naming the judged domain (or, for a bare connect, one
  of its addresses) is ``target``; the TH's are ``remote``; the rest
  (another hop of a redirect) ``other``, which no rule reads.
* Redirects: the input's domain first, then each domain a redirect led the
  probe to, in order (:func:`chain`); the verdict of the chain is the first
  hop that is not ``ok``. The TH follows redirects, so its ``http_request``
  is the remote fetch of every hop.

OONI's ``tags`` (``classic``, ``depth=0``) are not our role tags and are
ignored. Versions (docs/ooni-agreement.md, "What each version offers"): 0.0.1
(Measurement Kit), 0.1.0-0.3.x (the Python ooniprobe: queries without
``engine``, ``response: null`` when none came, Twisted's failure names, mapped by
``ooni_view.LEGACY_FAILURES``) and 0.4/0.5 (Go) share the shapes read here; headers
come as dicts or lists of pairs, bodies and header values as text or
``{format: base64, data}``. An entry missing what it needs (a handshake
without ``address``, as probe-cli 3.14 wrote some) is left out and named in
``notes``: less evidence, not an unreadable measurement. Other tests,
``test_keys: null``, a non-list where a list belongs and an unknown version
(a future 0.6) become ``problems``: the rules refuse to judge and say why.
"""

from __future__ import annotations

import json
from typing import Any, Final

from probe.format.fields import Bad, domain_of
from probe.format.ooni_reader import entries, hops, idna, view
from probe.format.view import Observations, unreadable

__all__ = [
    "EVIDENCE_KEYS",
    "SUPPORTED_VERSIONS",
    "TIMINGS",
    "chain",
    "is_ooni",
    "parse_text",
    "skip_reason",
    "unwrap",
]

#: ``test_version`` prefixes of web_connectivity this reader understands (every one OONI
#: published: 0.0.1 by Measurement Kit, 0.1.0-0.3.x by the Python ooniprobe, 0.4/0.5 by Go).
SUPPORTED_VERSIONS: Final = ("0.0.", "0.1.", "0.2.", "0.3.", "0.4.", "0.5.")
#: The members of a measurement its verdict reads (:func:`is_ooni`, :func:`skip_reason`,
#: :func:`chain`), ``test_keys`` last; the report (:mod:`probe.report.scan`) scores one line
#: per distinct value of these, :data:`TIMINGS` left out.
EVIDENCE_KEYS: Final = ("test_name", "test_version", "input", "test_helpers", "software_name",
                        "x_format_version", "test_keys")  # fmt: skip
#: The steps' timings in the JSON text of ``test_keys``, as a regular expression. On OONI's
#: data they are evidence text, never a decision: its steps have no control-site roles and no
#: transfer samples, the only ones the timing rules read. So lines that differ only in them get
#: the same status, method and detail.
TIMINGS: Final = r'"t0?":-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?'  # JSON numbers only


def unwrap(obj: object) -> tuple[dict[str, Any] | None, str | None]:
    """(the raw measurement, None), or (None, why not), from a measurement or an API wrapper.

    The OONI API's ``measurement_meta?full=true`` answer, as recorded, is
    ``{status, contentType, body}`` with ``body`` a JSON *string* whose
    ``raw_measurement`` is again a JSON string.
    """
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    if "test_name" in obj:
        return obj, None
    body: Any = obj.get("body")
    if isinstance(body, str) and "contentType" in obj:
        try:
            body = json.loads(body)
        except json.JSONDecodeError:
            return None, "an OONI API answer whose body is not JSON"
    if isinstance(body, dict):
        raw = body.get("raw_measurement")
        if not isinstance(raw, str):
            return None, "an OONI API answer without raw_measurement"
        try:
            inner = json.loads(raw)
        except json.JSONDecodeError:
            return None, "an OONI API answer whose raw_measurement is not JSON"
        return unwrap(inner) if isinstance(inner, dict) else (None, "raw_measurement is no object")
    return None, "not a measurement (no test_name)"


def is_ooni(obj: object) -> bool:
    """An OONI measurement, or the API's wrapper of one (not ours: no ``x_format_version``)."""
    if not isinstance(obj, dict) or "x_format_version" in obj:
        return False
    if "test_name" not in obj:
        return unwrap(obj)[0] is not None
    return obj.get("test_name") != "x_reachability" and obj.get("software_name") != "probe"


def skip_reason(obj: object) -> str | None:
    """Why an OONI measurement is not scored (another test, unknown version, ...), or None."""
    m, problem = unwrap(obj)
    if m is None:
        return problem
    test = m.get("test_name")
    if test != "web_connectivity":
        return f"OONI test {test!r} is not scored (only web_connectivity)"
    version = m.get("test_version")
    if not (isinstance(version, str) and version.startswith(SUPPORTED_VERSIONS)):
        return f"unknown web_connectivity version {version!r}"
    if not isinstance(m.get("test_keys"), dict):
        return "test_keys is null: the OONI probe recorded nothing"
    if domain_of(m.get("input")) is None:
        return f"input {m.get('input')!r} is not a URL"
    return None


def parse_text(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The measurements in one file's text, and why others were skipped.

    A file is one JSON document (a measurement, an API answer, or a list of
    them) or JSON lines, one measurement (or API answer) a line. Lines that start
    with ``//`` are comments (OONI's ``.jsonc`` test data): JSON text has no line
    that starts so outside a string, and a string holds no raw line break.
    """
    if "//" in text:
        text = "\n".join(x for x in text.splitlines() if not x.lstrip().startswith("//"))
    try:
        docs: list[object] = [json.loads(text)]
    except json.JSONDecodeError as exc:
        docs = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    docs.append(json.loads(line))
                except json.JSONDecodeError:
                    docs.append(f"line {number} is not JSON")
        if all(isinstance(doc, str) for doc in docs):  # neither JSON nor JSON lines: say it once
            return [], [f"not JSON nor JSON lines ({exc.msg} at line {exc.lineno})"]
    if len(docs) == 1 and isinstance(docs[0], list):
        docs = list(docs[0])
    found: list[dict[str, Any]] = []
    skipped: list[str] = []
    for doc in docs:
        m, problem = unwrap(doc) if not isinstance(doc, str) else (None, doc)
        if m is None:
            skipped.append(problem or "unreadable")
        else:
            found.append(m)
    return found, skipped


def chain(obj: object) -> tuple[Observations, ...]:
    """The observations of the input's domain, then of each domain a redirect led to."""
    reason = skip_reason(obj)
    m = unwrap(obj)[0]
    if reason is not None or m is None:
        return (unreadable(reason or "unreadable"),)
    keys: dict[str, Any] = m["test_keys"]
    domain = idna(domain_of(m["input"]) or "")
    try:
        domains = hops(domain, entries(keys, "requests"))
    except Bad as exc:
        return (unreadable(str(exc)),)
    return tuple(view(m, keys, d, m["input"] if i == 0 else url) for i, (d, url) in domains)

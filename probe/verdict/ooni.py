"""OONI's ``web_connectivity`` (every version: 0.0.1 to 0.5) read into the observations view.

:func:`chain` turns one OONI measurement into :class:`Observations`, so
:func:`probe.verdict.judge` scores it exactly like ours; :func:`probe.verdict.verdict`
dispatches here by itself when :func:`is_ooni` says so. Everything is pure:
dicts and strings in, records out, no I/O.

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
:data:`LEGACY_FAILURES`) and 0.4/0.5 (Go) share the shapes read here; headers
come as dicts or lists of pairs, bodies and header values as text or
``{format: base64, data}``. An entry missing what it needs (a handshake
without ``address``, as probe-cli 3.14 wrote some) is left out and named in
``notes``: less evidence, not an unreadable measurement. Other tests,
``test_keys: null``, a non-list where a list belongs and an unknown version
(a future 0.6) become ``problems``: the rules refuse to judge and say why.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import dns.rcode

from probe.verdict.observations import (
    Connect,
    DnsResponse,
    Handshake,
    HttpExchange,
    Observations,
    _address,
    _Bad,
    _body,
    _get,
    _headers,
    _opt,
    _parse_entries,
    _title,
    domain_of,
    parse_url,
)

if TYPE_CHECKING:
    from probe.verdict.rules import Verdict

__all__ = [
    "EVIDENCE_KEYS",
    "SUPPORTED_VERSIONS",
    "TIMINGS",
    "OoniVerdict",
    "agrees",
    "chain",
    "is_ooni",
    "ooni_verdict",
    "parse_text",
    "skip_reason",
    "unwrap",
]

#: ``test_version`` prefixes of web_connectivity this reader understands (every one OONI
#: published: 0.0.1 by Measurement Kit, 0.1.0-0.3.x by the Python ooniprobe, 0.4/0.5 by Go).
SUPPORTED_VERSIONS: Final = ("0.0.", "0.1.", "0.2.", "0.3.", "0.4.", "0.5.")
SYSTEM_ENGINES: Final = frozenset({"getaddrinfo", "system"})
MAX_HOPS: Final = 10
#: Legacy failure names (the TH's, the Python ooniprobe's Twisted ones) -> df-007; df-007
#: names are kept as they are. ``response_never_received``: the connection closed before
#: any response (Twisted's ResponseNeverReceived), ``connection_lost_error`` an unclean close.
LEGACY_FAILURES: Final[Mapping[str, str]] = {
    "connection_refused_error": "connection_refused",
    "connection_reset_error": "connection_reset",
    "connection_lost_error": "connection_reset",
    "response_never_received": "eof_error",
    "dns_name_error": "dns_nxdomain_error",
    "tcp_timed_out_error": "generic_timeout_error",
    "task_timed_out": "generic_timeout_error",
}
#: OONI's summary keys -> the verdict methods that agree with them (docs/ooni-agreement.md).
AGREEING_METHODS: Final[Mapping[str, frozenset[str]]] = {
    "dns": frozenset({"dns"}),
    "tcp_ip": frozenset({"tcp_ip"}),
    "http-failure": frozenset({"tls", "http", "throttling"}),
    "http-diff": frozenset({"http"}),
}
#: ``x_blocking_flags`` bits (web_connectivity 0.5) -> the verdict methods that agree.
FLAG_METHODS: Final[Mapping[int, frozenset[str]]] = {
    1: frozenset({"dns"}),
    2: frozenset({"tcp_ip"}),
    4: frozenset({"tls"}),
    8: frozenset({"http", "throttling"}),
    16: frozenset({"http"}),
}
#: The members of a measurement its verdict reads (:func:`is_ooni`, :func:`skip_reason`,
#: :func:`chain`), ``test_keys`` last; the report (:mod:`probe.report.scan`) scores one line
#: per distinct value of these, :data:`TIMINGS` left out.
EVIDENCE_KEYS: Final = ("test_name", "test_version", "input", "test_helpers", "software_name",
                        "x_format_version", "test_keys")  # fmt: skip
#: The steps' timings in the JSON text of ``test_keys``, as a regular expression. On OONI's
#: data they are evidence text, never a decision: its steps have no control-site roles and no
#: transfer samples, the only ones the timing rules read. So lines that differ only in them get
#: the same status, method and detail.
TIMINGS: Final = r'"(t0|t)":-?[0-9][0-9.eE+-]*'
_T = TypeVar("_T")


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
        return (_unreadable(reason or "unreadable"),)
    keys: dict[str, Any] = m["test_keys"]
    domain = _idna(domain_of(m["input"]) or "")
    try:
        requests = _list(keys, "requests")
        domains = _hops(domain, requests)
    except _Bad as exc:
        return (_unreadable(str(exc)),)
    return tuple(_view(m, keys, d, m["input"] if i == 0 else url) for i, (d, url) in domains)


@dataclass(frozen=True, slots=True)
class OoniVerdict:
    """OONI's own summary of a web_connectivity measurement."""

    blocking: str | bool | None
    accessible: bool | None
    flags: int | None  # x_blocking_flags (0.5), None in 0.4


def ooni_verdict(m: Mapping[str, Any]) -> OoniVerdict:
    keys = m.get("test_keys")
    keys = keys if isinstance(keys, dict) else {}
    flags = keys.get("x_blocking_flags")
    return OoniVerdict(
        keys.get("blocking"),
        keys.get("accessible"),
        flags if isinstance(flags, int) and not isinstance(flags, bool) else None,
    )


def agrees(ooni: OoniVerdict, ours: Verdict) -> bool:
    """Whether our verdict says what OONI's says (the definition is in docs/ooni-agreement.md)."""
    if isinstance(ooni.blocking, str):
        methods = set(AGREEING_METHODS.get(ooni.blocking, frozenset()))
        for bit, bit_methods in FLAG_METHODS.items():
            if (ooni.flags or 0) & bit:
                methods |= bit_methods
        return ours.status == "blocked" and ours.method in methods
    expected = {(False, True): "ok", (False, False): "down", (None, None): "inconclusive"}
    return expected.get((ooni.blocking, ooni.accessible)) == ours.status


# --- the views -----------------------------------------------------------------------------


def _unreadable(problem: str) -> Observations:
    return Observations("", (), (), (), (), (), (problem,))


def _idna(host: str) -> str:
    """The ASCII (punycode) form OONI's queries use: ``яндекс.рф`` -> ``xn--d1acpjx3f.xn--p1ai``."""
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host


def _list(keys: Mapping[str, Any], name: str) -> list[Any]:
    value = keys.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"test_keys.{name} is not a list")
    return value


def _hops(domain: str, requests: list[Any]) -> list[tuple[int, tuple[str, str]]]:
    """(index, (domain, URL)) for the input's domain and each domain a redirect led to."""
    hops = [(domain, "")]
    for hop, _ in hops:
        for r in requests:
            request = r.get("request") if isinstance(r, dict) else None
            response = r.get("response") if isinstance(r, dict) else None
            if not (isinstance(request, dict) and isinstance(response, dict)):
                continue
            url = request.get("url")
            if not isinstance(url, str) or _idna(domain_of(url) or "") != hop:
                continue
            location = next(
                (v for k, v in _headers(response.get("headers")) if k.lower() == "location"), ""
            )
            target = parse_url(location, url) if location else None
            if target is None or not target.host:
                continue
            name = _idna(target.host)
            if name not in {h for h, _ in hops} and len(hops) < MAX_HOPS:
                hops.append((name, target.text))
    return list(enumerate(hops))


def _view(m: Mapping[str, Any], keys: Mapping[str, Any], domain: str, url: str) -> Observations:
    """The observations of one domain of the chain (the input's when ``url`` is the input)."""
    problems: list[str] = []

    notes: list[str] = []

    def read(name: str, parse: Callable[[Mapping[str, Any], str], _T]) -> list[_T]:
        try:
            entries = _list(keys, name)
        except _Bad as exc:
            problems.append(str(exc))
            return []
        return _parse_entries(name, entries, parse, notes)  # a broken entry: less evidence

    is_input = url == m.get("input")
    dns = read("queries", lambda e, ref: _dns(e, ref, domain, late=False))
    dns += read("x_dns_duplicate_responses", lambda e, ref: _dns(e, ref, domain, late=True))
    control = keys.get("control") if keys.get("control_failure") is None else None
    remote: tuple[list[DnsResponse], list[Connect], list[Handshake], list[HttpExchange]]
    remote = ([], [], [], [])
    if isinstance(control, dict):
        try:
            remote = _remote(control, m, domain, url, is_input)
        except _Bad as exc:
            problems.append(f"control: {exc}")
    dns += remote[0]
    addresses = frozenset(a for q in dns if q.hostname == domain for a in q.addresses)
    ops: dict[Any, str] = {}  # transaction_id -> the step that failed in it
    connects = read("tcp_connect", lambda e, ref: _tcp(e, ref, addresses, ops))
    handshakes = read("tls_handshakes", lambda e, ref: _tls(e, ref, domain, ops))
    http = read("requests", lambda e, ref: _http(e, ref, domain, ops))
    return Observations(
        domain,
        tuple(dns),
        tuple(connects + remote[1]),
        tuple(handshakes + remote[2]),
        tuple(http + remote[3]),
        (),
        tuple(problems),
        tuple(f"left out: {note}" for note in notes),
        ooni_verdict(m).flags,
    )


def _dns(e: Mapping[str, Any], ref: str, domain: str, late: bool) -> DnsResponse:
    hostname = _get(e, "hostname", str).rstrip(".").lower()
    engine = _opt(e, "engine", str) or "system"  # the Python ooniprobe (0.1-0.3) names none
    addresses: list[str] = []
    names: list[str] = []
    for answer in _opt(e, "answers", list) or []:
        if not isinstance(answer, dict):
            raise _Bad("an answer is not an object")
        kind = answer.get("answer_type")
        if kind in ("A", "AAAA"):
            addresses.append(_get(answer, "ipv4" if kind == "A" else "ipv6", str))
        elif kind == "CNAME":
            names.append(_get(answer, "hostname", str).rstrip(".").lower())
    return DnsResponse(
        ref=ref,
        hostname=hostname,
        engine="getaddrinfo" if engine == "system" else engine,
        resolver=_opt(e, "resolver_address", str) or "",
        failure=_failure(e),
        rcode=_rcode(e.get("rcode")),
        addresses=tuple(addresses),
        names=tuple(names),
        transaction_id=_opt(e, "transaction_id", int),
        role="target" if hostname == domain else "other",
        control=engine not in SYSTEM_ENGINES,
        late=late,
    )


def _tcp(e: Mapping[str, Any], ref: str, addresses: frozenset[str], ops: dict[Any, str]) -> Connect:
    status = _get(e, "status", dict)
    ip = _get(e, "ip", str)
    failure = _failure(status)
    if failure is not None:
        ops[_opt(e, "transaction_id", int)] = "connect"
    return Connect(
        ref, ip, _get(e, "port", int), failure, "target" if ip in addresses else "other", _span(e)
    )


def _tls(e: Mapping[str, Any], ref: str, domain: str, ops: dict[Any, str]) -> Handshake:
    # probe-cli 3.14 wrote some handshakes without address: the step stays, its address unknown
    ip, port = _address(_get(e, "address", str)) if e.get("address") is not None else ("", 0)
    name = _get(e, "server_name", str).rstrip(".").lower()
    failure = _failure(e)
    if failure is not None:
        ops.setdefault(_opt(e, "transaction_id", int), "tls_handshake")
    t0 = _number(e.get("t0"), _number(e.get("t"), 0.0))
    return Handshake(
        ref=ref,
        ip=ip,
        port=port,
        server_name=name,
        failure=failure,
        failed_operation="tls_handshake" if failure is not None else None,
        role="target" if name == domain else "other",
        t0=t0,
        duration=_span(e),
    )


def _http(e: Mapping[str, Any], ref: str, domain: str, ops: dict[Any, str]) -> HttpExchange:
    ip, port = _address(_get(e, "address", str)) if e.get("address") else ("", 0)
    url = _get(_get(e, "request", dict), "url", str)
    response = _opt(e, "response", dict) or {}
    body = _body(response.get("body"))
    code = _opt(response, "code", int)
    failure = _failure(e)
    headers = response.get("headers_list") or response.get("headers")
    return HttpExchange(
        ref=ref,
        url=url,
        ip=ip,
        port=port,
        failure=failure,
        failed_operation=ops.get(_opt(e, "transaction_id", int)) if failure is not None else None,
        role="target" if _idna(domain_of(url) or "") == domain else "other",
        status=code or None,  # OONI writes 0 when there was no response
        headers=_headers(headers),
        body=body,
        body_is_truncated=bool(response.get("body_is_truncated", False)),
        title=_title(body),
        t0=_number(e.get("t0"), _number(e.get("t"), 0.0)),
        duration=_span(e),
    )


def _remote(
    control: Mapping[str, Any], m: Mapping[str, Any], domain: str, url: str, is_input: bool
) -> tuple[list[DnsResponse], list[Connect], list[Handshake], list[HttpExchange]]:
    """The test helper's view: its DNS and endpoints (the input's only) and its fetch."""
    helper = _helper(m)
    dns: list[DnsResponse] = []
    connects: list[Connect] = []
    handshakes: list[Handshake] = []
    answer = _opt(control, "dns", dict) if is_input else None
    if answer is not None:
        addrs = _opt(answer, "addrs", list) or []
        dns.append(
            DnsResponse(
                ref="control.dns",
                hostname=domain,
                engine="th",
                resolver=helper,
                failure=_th_failure(answer.get("failure")),
                rcode=None,
                # 0.0.1's TH lists CNAME names among the addresses (["feminist.org", ...])
                addresses=tuple(a for a in addrs if isinstance(a, str) and _is_ip(a)),
                names=(),
                transaction_id=None,
                role="target",
                control=True,
                late=False,
            )
        )
    for endpoint, r in (_opt(control, "tcp_connect", dict) or {}).items() if is_input else ():
        if not isinstance(r, dict):
            raise _Bad(f"tcp_connect[{endpoint}] is not an object")
        ip, port = _address(str(endpoint))
        failure = _th_failure(r.get("failure"))
        connects.append(
            Connect(f"control.tcp_connect[{endpoint}]", ip, port, failure, "remote", 0.0)
        )
    for endpoint, r in (_opt(control, "tls_handshake", dict) or {}).items() if is_input else ():
        if not isinstance(r, dict):
            raise _Bad(f"tls_handshake[{endpoint}] is not an object")
        ip, port = _address(str(endpoint))
        failure = _th_failure(r.get("failure"))
        handshakes.append(
            Handshake(
                ref=f"control.tls_handshake[{endpoint}]",
                ip=ip,
                port=port,
                server_name=str(r.get("server_name") or domain).rstrip(".").lower(),
                failure=failure,
                failed_operation="tls_handshake" if failure else None,
                role="remote",
                t0=0.0,
                duration=0.0,
            )
        )
    # control_failure null: the TH answered the probe (200, a readable control): its network works
    http = [_exchange("control", helper, None, "control_site", 200, (), None)]
    fetch = _opt(control, "http_request", dict)
    if fetch is not None:
        status = _opt(fetch, "status_code", int)
        http.append(
            _exchange(
                "control.http_request",
                url,
                _th_failure(fetch.get("failure")),
                "remote",
                status if status and status > 0 else None,  # the TH writes -1 for none
                _headers(fetch.get("headers")),
                _opt(fetch, "title", str) or None,
            )
        )
    return dns, connects, handshakes, http


def _exchange(
    ref: str,
    url: str,
    failure: str | None,
    role: str,
    status: int | None,
    headers: tuple[tuple[str, str], ...],
    title: str | None,
) -> HttpExchange:
    """An HTTP exchange seen only in summary (the TH's): no address, body or timing."""
    return HttpExchange(
        ref, url, "", 0, failure, None, role, status, headers, "", False, title, 0.0, 0.0
    )


def _helper(m: Mapping[str, Any]) -> str:
    """The test helper's address, as the measurement names it."""
    helpers = m.get("test_helpers")
    backend = helpers.get("backend") if isinstance(helpers, dict) else None
    address = backend.get("address") if isinstance(backend, dict) else backend
    return address if isinstance(address, str) and address else "the OONI test helper"


def _rcode(rcode: object) -> str | None:
    """OONI writes the rcode as a number (3), we as its name ("NXDOMAIN")."""
    if rcode is None or isinstance(rcode, str):
        return rcode
    if not isinstance(rcode, int) or isinstance(rcode, bool):
        raise _Bad(f"'rcode' is {type(rcode).__name__}")
    try:
        return dns.rcode.to_text(dns.rcode.Rcode(rcode))
    except ValueError:
        return str(rcode)


def _th_failure(failure: object) -> str | None:
    if failure is None:
        return None
    return LEGACY_FAILURES.get(str(failure), str(failure))


def _failure(entry: Mapping[str, Any]) -> str | None:
    """The failure string (df-007); absent in older data means none (unlike in ours)."""
    failure = _opt(entry, "failure", str)
    return None if failure is None else LEGACY_FAILURES.get(failure, failure)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _number(value: object, default: float) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


def _span(e: Mapping[str, Any]) -> float:
    """Seconds the step took; 0 unless OONI recorded both ends (its simulator writes t0 null)."""
    t = _number(e.get("t"), 0.0)
    return max(0.0, t - _number(e.get("t0"), t))

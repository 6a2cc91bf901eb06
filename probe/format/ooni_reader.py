"""How one OONI web_connectivity measurement becomes observations: the per-step readers.

:func:`view` reads the observations of one domain of a measurement's redirect
chain (:func:`hops` lists the chain) into :class:`~probe.format.view.Observations`,
so the rules judge OONI's data as they judge ours. The mapping and its reasons
are in :mod:`probe.format.ooni` (the public entry points) and
``docs/ooni-agreement.md``: system resolvers are ``getaddrinfo``, other engines
are DNS controls, ``x_dns_duplicate_responses`` are late responses, the test
helper's steps are role ``remote``, its DNS answer engine ``th``, and the
probe's own exchange with it the one ``control_site`` observation. Entries the
readers cannot use are left out and named in ``notes`` (less evidence);
structural damage is a ``problem`` (no verdict). Pure: dicts in, records out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import dns.rcode

from probe.format.fields import (
    Bad,
    address,
    answers,
    body,
    domain_of,
    get,
    headers,
    opt,
    parse_entries,
    parse_url,
    title,
)
from probe.format.view import Connect, DnsResponse, Handshake, HttpExchange, Observations

__all__ = ["LEGACY_FAILURES", "MAX_HOPS", "entries", "flags", "hops", "idna", "view"]

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
_T = TypeVar("_T")


def flags(keys: Mapping[str, Any]) -> int | None:
    """``x_blocking_flags`` (web_connectivity 0.5: OONI's finer verdict), None elsewhere."""
    value = keys.get("x_blocking_flags")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def idna(host: str) -> str:
    """The ASCII (punycode) form OONI's queries use: ``яндекс.рф`` -> ``xn--d1acpjx3f.xn--p1ai``."""
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host


def entries(keys: Mapping[str, Any], name: str) -> list[Any]:
    value = keys.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Bad(f"test_keys.{name} is not a list")
    return value


def hops(domain: str, requests: list[Any]) -> list[tuple[int, tuple[str, str]]]:
    """(index, (domain, URL)) for the input's domain and each domain a redirect led to."""
    hops = [(domain, "")]
    for hop, _ in hops:
        for r in requests:
            request = r.get("request") if isinstance(r, dict) else None
            response = r.get("response") if isinstance(r, dict) else None
            if not (isinstance(request, dict) and isinstance(response, dict)):
                continue
            url = request.get("url")
            if not isinstance(url, str) or idna(domain_of(url) or "") != hop:
                continue
            location = next(
                (v for k, v in headers(response.get("headers")) if k.lower() == "location"), ""
            )
            target = parse_url(location, url) if location else None
            if target is None or not target.host:
                continue
            name = idna(target.host)
            if name not in {h for h, _ in hops} and len(hops) < MAX_HOPS:
                hops.append((name, target.text))
    return list(enumerate(hops))


def view(m: Mapping[str, Any], keys: Mapping[str, Any], domain: str, url: str) -> Observations:
    """The observations of one domain of the chain (the input's when ``url`` is the input)."""
    problems: list[str] = []

    notes: list[str] = []

    def read(name: str, parse: Callable[[Mapping[str, Any], str], _T]) -> list[_T]:
        try:
            found = entries(keys, name)
        except Bad as exc:
            problems.append(str(exc))
            return []
        return parse_entries(name, found, parse, notes)  # a broken entry: less evidence

    is_input = url == m.get("input")
    dns = read("queries", lambda e, ref: _dns(e, ref, domain, late=False))
    dns += read("x_dns_duplicate_responses", lambda e, ref: _dns(e, ref, domain, late=True))
    control = keys.get("control") if keys.get("control_failure") is None else None
    remote: tuple[list[DnsResponse], list[Connect], list[Handshake], list[HttpExchange]]
    remote = ([], [], [], [])
    if isinstance(control, dict):
        try:
            remote = _remote(control, m, domain, url, is_input)
        except Bad as exc:
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
        flags(keys),
    )


def _dns(e: Mapping[str, Any], ref: str, domain: str, late: bool) -> DnsResponse:
    hostname = get(e, "hostname", str).rstrip(".").lower()
    engine = opt(e, "engine", str) or "system"  # the Python ooniprobe (0.1-0.3) names none
    addresses, names = answers(e)
    return DnsResponse(
        ref=ref,
        hostname=hostname,
        engine="getaddrinfo" if engine == "system" else engine,
        resolver=opt(e, "resolver_address", str) or "",
        failure=_failure(e),
        rcode=_rcode(e.get("rcode")),
        addresses=addresses,
        names=names,
        transaction_id=opt(e, "transaction_id", int),
        role="target" if hostname == domain else "other",
        control=engine not in SYSTEM_ENGINES,
        late=late,
    )


def _tcp(e: Mapping[str, Any], ref: str, addresses: frozenset[str], ops: dict[Any, str]) -> Connect:
    status = get(e, "status", dict)
    ip = get(e, "ip", str)
    failure = _failure(status)
    if failure is not None:
        ops[opt(e, "transaction_id", int)] = "connect"
    return Connect(
        ref, ip, get(e, "port", int), failure, "target" if ip in addresses else "other", _span(e)
    )


def _tls(e: Mapping[str, Any], ref: str, domain: str, ops: dict[Any, str]) -> Handshake:
    # probe-cli 3.14 wrote some handshakes without address: the step stays, its address unknown
    ip, port = address(get(e, "address", str)) if e.get("address") is not None else ("", 0)
    name = get(e, "server_name", str).rstrip(".").lower()
    failure = _failure(e)
    if failure is not None:
        ops.setdefault(opt(e, "transaction_id", int), "tls_handshake")
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
    ip, port = address(get(e, "address", str)) if e.get("address") else ("", 0)
    url = get(get(e, "request", dict), "url", str)
    response = opt(e, "response", dict) or {}
    text = body(response.get("body"))
    code = opt(response, "code", int)
    failure = _failure(e)
    listed = response.get("headers_list") or response.get("headers")
    return HttpExchange(
        ref=ref,
        url=url,
        ip=ip,
        port=port,
        failure=failure,
        failed_operation=ops.get(opt(e, "transaction_id", int)) if failure is not None else None,
        role="target" if idna(domain_of(url) or "") == domain else "other",
        status=code or None,  # OONI writes 0 when there was no response
        headers=headers(listed),
        body=text,
        body_is_truncated=bool(response.get("body_is_truncated", False)),
        title=title(text),
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
    answer = opt(control, "dns", dict) if is_input else None
    if answer is not None:
        addrs = opt(answer, "addrs", list) or []
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
    for endpoint, r in (opt(control, "tcp_connect", dict) or {}).items() if is_input else ():
        if not isinstance(r, dict):
            raise Bad(f"tcp_connect[{endpoint}] is not an object")
        ip, port = address(str(endpoint))
        failure = _th_failure(r.get("failure"))
        connects.append(
            Connect(f"control.tcp_connect[{endpoint}]", ip, port, failure, "remote", 0.0)
        )
    for endpoint, r in (opt(control, "tls_handshake", dict) or {}).items() if is_input else ():
        if not isinstance(r, dict):
            raise Bad(f"tls_handshake[{endpoint}] is not an object")
        ip, port = address(str(endpoint))
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
    fetch = opt(control, "http_request", dict)
    if fetch is not None:
        status = opt(fetch, "status_code", int)
        http.append(
            _exchange(
                "control.http_request",
                url,
                _th_failure(fetch.get("failure")),
                "remote",
                status if status and status > 0 else None,  # the TH writes -1 for none
                headers(fetch.get("headers")),
                opt(fetch, "title", str) or None,
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
        raise Bad(f"'rcode' is {type(rcode).__name__}")
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
    failure = opt(entry, "failure", str)
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

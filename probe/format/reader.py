"""Our measurement (``docs/format.md``) read into the observations view.

The rules never look into the raw JSON: :func:`observations` reads one
measurement into :class:`Observations` (the records of
:mod:`probe.format.view`, re-exported here), flat tuples of small records,
each remembering where it came from (``ref``, e.g. ``"tls_handshakes[3]"``)
so evidence can point back at the data. Another source only needs its own
extractor to reuse the rules: OONI's web_connectivity has one
(:mod:`probe.format.ooni`); both read fields through
:mod:`probe.format.fields`. OONI's adds the roles ``remote`` (its test
helper's steps) and ``other`` (read by no rule) and the DNS engine ``th``.

Reading is defensive, not forgiving: anything that is not what the format
says (an unknown ``x_format_version``, a missing key, a wrong type) is
recorded in ``problems`` and the rules then refuse to judge, because a
verdict over half-read data could say "blocked" for the wrong reason.

Roles come from the tags (``probe.format.vocab.Tag``); an observation without a
role tag is ``target`` when it names the target's domain, else
``control_site``. In a control site's own measurement (``annotations.x_role``
``"control"``) the observations of that site are its ``target`` ones and the
other control sites remain its controls.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
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
from probe.format.view import (
    Connect,
    DnsResponse,
    Handshake,
    HttpExchange,
    Observations,
    Transfer,
    unreadable,
)
from probe.format.vocab import KNOWN_FORMAT_VERSIONS, Operation, Tag

__all__ = ["observations"]

_ROLES: Final = (Tag.TARGET, Tag.CONTROL_SNI, Tag.CONTROL_ADDRESS, Tag.CONTROL_SITE, Tag.RESIDUAL)
_T = TypeVar("_T")


def _rcode(value: Any) -> str | None:
    """The response code's name: a number (OONI's, and ours since format 2) or a name (ours
    in format 1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return dns.rcode.to_text(dns.rcode.Rcode.make(value)) if 0 <= value < 4096 else None
    return value if isinstance(value, str) else None


def observations(measurement: Mapping[str, Any]) -> Observations:
    """The observations of one measurement; never raises (problems are recorded)."""
    if not isinstance(measurement, dict):
        return unreadable("the measurement is not a JSON object")
    version = measurement.get("x_format_version")
    if not isinstance(version, str) or version not in KNOWN_FORMAT_VERSIONS:
        return unreadable(f"unknown x_format_version {version!r}")
    domain = domain_of(measurement.get("input"))
    if domain is None:
        return unreadable(f"input {measurement.get('input')!r} is not a URL")
    keys = measurement.get("test_keys")
    if not isinstance(keys, dict):
        return unreadable("test_keys is missing")
    problems: list[str] = []

    def read(name: str, parse: Callable[[Mapping[str, Any], str], _T]) -> list[_T]:
        entries = keys.get(name, [])
        if not isinstance(entries, list):
            problems.append(f"test_keys.{name} is not a list")
            return []
        return parse_entries(name, entries, parse, problems)

    # A control site's own measurement: its observations (tagged control_site) are its target.
    own = isinstance(measurement.get("annotations"), dict) and (
        measurement["annotations"].get("x_role") == "control"
    )
    dns = read("queries", lambda e, ref: _dns(e, ref, domain, own))
    own_ips = frozenset(a for q in dns if q.hostname == domain for a in q.addresses)
    tcp = read("tcp_connect", lambda e, ref: _tcp(e, ref, own_ips if own else frozenset()))
    tls = read("tls_handshakes", lambda e, ref: _tls(e, ref, domain, own))
    http = read("requests", lambda e, ref: _http(e, ref, domain, own))
    transfers = read("x_throughput", lambda e, ref: _transfer(e, ref, domain, own))
    connects = (
        tcp
        + [_connect_of(h.ref, h.ip, h.port, h.failure, h.failed_operation, h.role) for h in tls]
        + [_connect_of(x.ref, x.ip, x.port, x.failure, x.failed_operation, x.role) for x in http]
    )
    handshakes = tls + [h for h in map(_handshake_of, http) if h is not None]
    return Observations(
        domain,
        tuple(dns),
        tuple(connects),
        tuple(handshakes),
        tuple(http),
        tuple(transfers),
        tuple(problems),
    )


def _connect_of(
    ref: str, ip: str, port: int, failure: str | None, failed_op: str | None, role: str
) -> Connect:
    """The connect step inside a handshake or request: failed only if it failed there."""
    return Connect(ref, ip, port, failure if failed_op == "connect" else None, role, 0.0)


def _handshake_of(x: HttpExchange) -> Handshake | None:
    """The TLS step inside an HTTPS request, when the request says how far it got."""
    url = parse_url(x.url)
    if url is None or url.scheme != "https" or x.failed_operation == Operation.CONNECT:
        return None
    if x.failure is not None and x.failed_operation is None:
        return None  # failed somewhere: whether TLS worked is unknown
    failure = x.failure if x.failed_operation == Operation.TLS_HANDSHAKE else None
    op = "tls_handshake" if failure is not None else None
    name = url.host
    # the request's time is the handshake's only when the handshake was its last step
    duration = x.duration if failure is not None else 0.0
    return Handshake(x.ref, x.ip, x.port, name, failure, op, x.role, x.t0, duration)


def _dns(e: Mapping[str, Any], ref: str, domain: str, own: bool) -> DnsResponse:
    hostname = get(e, "hostname", str).rstrip(".").lower()
    tags = _tags(e)
    addresses, names = answers(e)
    return DnsResponse(
        ref=ref,
        hostname=hostname,
        engine=get(e, "engine", str),
        resolver=opt(e, "resolver_address", str) or "",
        failure=_failure(e),
        rcode=_rcode(e.get("rcode")),
        addresses=addresses,
        names=names,
        transaction_id=opt(e, "transaction_id", int),
        role=_role(tags, hostname == domain, own),
        control=Tag.RESOLVER_CONTROL in tags,
        late=Tag.LATE_RESPONSE in tags,
        oversized=opt(e, "x_oversized", bool) or False,
    )


def _tcp(e: Mapping[str, Any], ref: str, own_ips: frozenset[str]) -> Connect:
    status = get(e, "status", dict)
    ip = get(e, "ip", str)
    t0, t = _times(e)
    return Connect(
        ref=ref,
        ip=ip,
        port=get(e, "port", int),
        failure=_failure(status),
        role=_role(_tags(e), True, ip in own_ips),  # a bare connect names no host
        duration=t - t0,
    )


def _tls(e: Mapping[str, Any], ref: str, domain: str, own: bool) -> Handshake:
    ip, port = address(get(e, "address", str))
    server_name = get(e, "server_name", str).rstrip(".").lower()
    t0, t = _times(e)
    return Handshake(
        ref=ref,
        ip=ip,
        port=port,
        server_name=server_name,
        failure=_failure(e),
        failed_operation=opt(e, "x_failed_operation", str),
        role=_role(_tags(e), server_name == domain, own),
        t0=t0,
        duration=t - t0,
    )


def _http(e: Mapping[str, Any], ref: str, domain: str, own: bool) -> HttpExchange:
    ip, port = address(get(e, "address", str))
    request = get(e, "request", dict)
    url = get(request, "url", str)
    response = opt(e, "response", dict) or {}
    text = body(response.get("body"))
    t0, t = _times(e)
    return HttpExchange(
        ref=ref,
        url=url,
        ip=ip,
        port=port,
        failure=_failure(e),
        failed_operation=opt(e, "x_failed_operation", str),
        role=_role(_tags(e), domain_of(url) == domain, own),
        status=opt(response, "code", int),
        headers=headers(response.get("headers")),
        body=text,
        body_is_truncated=bool(response.get("body_is_truncated", False)),
        title=opt(response, "x_title", str) or title(text),
        t0=t0,
        duration=t - t0,
        body_sha256=opt(response, "x_body_sha256", str),
    )


def _transfer(e: Mapping[str, Any], ref: str, domain: str, own: bool) -> Transfer:
    samples: list[tuple[float, int]] = []
    for sample in get(e, "samples", list):
        if not (isinstance(sample, list) and len(sample) == 2):
            raise Bad("a sample is not [seconds, bytes]")
        seconds, count = sample
        if not (_is_number(seconds) and isinstance(count, int) and not isinstance(count, bool)):
            raise Bad("a sample is not [seconds, bytes]")
        samples.append((float(seconds), count))
    return Transfer(
        ref=ref,
        ip=_ip_or_endpoint(get(e, "address", str)),
        failure=_failure(e),
        role=_role(_tags(e), domain_of(f"//{get(e, 'host', str)}") == domain, own),
        num_bytes=get(e, "num_bytes", int),
        samples=tuple(samples),
    )


def _failure(entry: Mapping[str, Any]) -> str | None:
    """The failure string; the key must be there (absent is not the same as success)."""
    if "failure" not in entry:
        raise Bad("missing 'failure'")
    return opt(entry, "failure", str)


def _tags(entry: Mapping[str, Any]) -> tuple[str, ...]:
    tags = opt(entry, "tags", list) or []
    return tuple(tag for tag in tags if isinstance(tag, str))


def _role(tags: Sequence[str], names_target: bool, own: bool) -> str:
    """The role tag; untagged: by name. ``own``: a control site's measurement of itself."""
    role = next((tag for tag in tags if tag in _ROLES), None)
    if role is None:
        return Tag.TARGET if names_target else Tag.CONTROL_SITE
    return Tag.TARGET if own and role == Tag.CONTROL_SITE and names_target else role


def _times(entry: Mapping[str, Any]) -> tuple[float, float]:
    t0, t = entry.get("t0"), entry.get("t")
    if not (isinstance(t0, int | float) and isinstance(t, int | float)):
        raise Bad("t0/t are not numbers")
    return float(t0), float(t)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ip_or_endpoint(text: str) -> str:
    """The IP of ``"ip"``, ``"ip:port"`` or ``"[v6]:port"`` (x_throughput writes a bare IP)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return address(text)[0] if text else ""

"""The observations view: a measurement dict -> the few typed facts the rules read.

The rules never look into the raw JSON: :func:`observations` reads one
measurement (``docs/format.md``) into :class:`Observations`, flat tuples of
small records, each remembering where it came from (``ref``, e.g.
``"tls_handshakes[3]"``) so evidence can point back at the data. Another
source only needs its own extractor to reuse the rules: OONI's
web_connectivity has one (:mod:`probe.verdict.ooni`, which reuses the
readers below), adding the roles ``remote`` (its test helper's steps) and
``other`` (read by no rule) and the DNS engine ``th``.

Reading is defensive, not forgiving: anything that is not what the format
says (an unknown ``x_format_version``, a missing key, a wrong type) is
recorded in ``problems`` and the rules then refuse to judge, because a
verdict over half-read data could say "blocked" for the wrong reason.

Roles come from the tags (``probe.records.TAGS``); an observation without a
role tag is ``target`` when it names the target's domain, else
``control_site``. In a control site's own measurement (``annotations.x_role``
``"control"``) the observations of that site are its ``target`` ones and the
other control sites remain its controls.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, TypeVar
from urllib.parse import urljoin, urlsplit

import dns.rcode

from probe.format.vocab import KNOWN_FORMAT_VERSIONS

__all__ = [
    "Connect",
    "DnsResponse",
    "Handshake",
    "HttpExchange",
    "Observations",
    "Transfer",
    "Url",
    "domain_of",
    "observations",
    "parse_url",
]

_TITLE: Final = re.compile(r"<title[^>]*>([^<]*)</title", re.IGNORECASE)
_ROLES: Final = ("target", "control_sni", "control_address", "control_site", "residual")
_T = TypeVar("_T")


class _Bad(Exception):
    """An entry does not have the shape the format promises."""


@dataclass(frozen=True, slots=True)
class DnsResponse:
    ref: str
    hostname: str
    engine: str  # "getaddrinfo", "udp", "tcp", "doh", "dot"
    resolver: str
    failure: str | None
    rcode: str | None
    addresses: tuple[str, ...]  # A/AAAA answers
    names: tuple[str, ...]  # CNAME targets
    transaction_id: int | None
    role: str  # "target" or "control_site"
    control: bool  # tagged resolver_control: the DNS control
    late: bool  # tagged late_response: a further UDP response to the same query
    oversized: bool = False  # x_oversized: more address records than any real name has


@dataclass(frozen=True, slots=True)
class Connect:
    """One TCP connect, from ``tcp_connect`` or the connect step of a handshake or request."""

    ref: str
    ip: str
    port: int
    failure: str | None
    role: str
    duration: float


@dataclass(frozen=True, slots=True)
class Handshake:
    """One TLS handshake, from ``tls_handshakes`` or the TLS step of an HTTPS request."""

    ref: str
    ip: str
    port: int
    server_name: str
    failure: str | None
    failed_operation: str | None  # "connect" or "tls_handshake" when it failed
    role: str
    t0: float
    duration: float


@dataclass(frozen=True, slots=True)
class HttpExchange:
    ref: str
    url: str
    ip: str
    port: int
    failure: str | None
    failed_operation: str | None
    role: str
    status: int | None
    headers: tuple[tuple[str, str], ...]
    body: str
    body_is_truncated: bool
    title: str | None  # x_title, else the body's <title>
    t0: float
    duration: float
    body_sha256: str | None = None  # x_body_sha256: of the whole body received


@dataclass(frozen=True, slots=True)
class Transfer:
    """A timed download (``x_throughput``)."""

    ref: str
    ip: str
    failure: str | None
    role: str
    num_bytes: int
    samples: tuple[tuple[float, int], ...]  # (seconds since t0, bytes so far)


@dataclass(frozen=True, slots=True)
class Observations:
    domain: str
    dns: tuple[DnsResponse, ...]
    connects: tuple[Connect, ...]
    handshakes: tuple[Handshake, ...]
    http: tuple[HttpExchange, ...]
    transfers: tuple[Transfer, ...]
    problems: tuple[str, ...]  # non-empty: the measurement cannot be judged
    # Entries left out of an OONI measurement (an optional field missing or broken): less
    # evidence, said in the verdict's evidence, never a measurement that cannot be judged.
    notes: tuple[str, ...] = ()
    # OONI's x_blocking_flags (web_connectivity 0.5), None elsewhere: its own finer verdict,
    # read only as support when nothing else in the measurement can confirm a finding.
    flags: int | None = None


def _rcode(value: Any) -> str | None:
    """The response code's name: a number (OONI's, and ours since format 2) or a name (ours
    in format 1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return dns.rcode.to_text(dns.rcode.Rcode.make(value)) if 0 <= value < 4096 else None
    return value if isinstance(value, str) else None


def observations(measurement: Mapping[str, Any]) -> Observations:
    """The observations of one measurement; never raises (problems are recorded)."""
    if not isinstance(measurement, dict):
        return _unreadable("the measurement is not a JSON object")
    version = measurement.get("x_format_version")
    if not isinstance(version, str) or version not in KNOWN_FORMAT_VERSIONS:
        return _unreadable(f"unknown x_format_version {version!r}")
    domain = domain_of(measurement.get("input"))
    if domain is None:
        return _unreadable(f"input {measurement.get('input')!r} is not a URL")
    keys = measurement.get("test_keys")
    if not isinstance(keys, dict):
        return _unreadable("test_keys is missing")
    problems: list[str] = []

    def read(name: str, parse: Callable[[Mapping[str, Any], str], _T]) -> list[_T]:
        entries = keys.get(name, [])
        if not isinstance(entries, list):
            problems.append(f"test_keys.{name} is not a list")
            return []
        return _parse_entries(name, entries, parse, problems)

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


def _parse_entries(
    name: str,
    entries: list[Any],
    parse: Callable[[Mapping[str, Any], str], _T],
    problems: list[str],
) -> list[_T]:
    """Each entry parsed; an entry of the wrong shape becomes a problem naming it."""
    out: list[_T] = []
    for i, entry in enumerate(entries):
        ref = f"{name}[{i}]"
        try:
            if not isinstance(entry, dict):
                raise _Bad("not an object")
            out.append(parse(entry, ref))
        except _Bad as exc:
            problems.append(f"{ref}: {exc}")
    return out


def _unreadable(problem: str) -> Observations:
    return Observations("", (), (), (), (), (), (problem,))


class Url(NamedTuple):
    text: str  # the URL, resolved against the base when one was given
    scheme: str
    host: str  # lower-case, without the trailing dot; "" when the URL names none


def parse_url(url: object, base: str = "") -> Url | None:
    """A URL (resolved against ``base``) in parts, or None when it is not one.

    Every URL the rules read goes through here: ``urlsplit`` raises ValueError
    on a bracketed host that is no IPv6 address (a server's ``Location:
    http://[evil]/``, the scrubber's own ``http://[scrubbed]/``), and a
    measurement's bytes must never cost its verdict.
    """
    if not isinstance(url, str):
        return None
    try:
        text = urljoin(base, url) if base else url
        parts = urlsplit(text)
        host = parts.hostname or ""
    except ValueError:
        return None
    return Url(text, parts.scheme, host.rstrip(".").lower())


def domain_of(url: object) -> str | None:
    """The lower-case host name of a URL, or None when it is not one."""
    parts = parse_url(url)
    return parts.host if parts is not None and parts.host else None


def _connect_of(
    ref: str, ip: str, port: int, failure: str | None, failed_op: str | None, role: str
) -> Connect:
    """The connect step inside a handshake or request: failed only if it failed there."""
    return Connect(ref, ip, port, failure if failed_op == "connect" else None, role, 0.0)


def _handshake_of(x: HttpExchange) -> Handshake | None:
    """The TLS step inside an HTTPS request, when the request says how far it got."""
    url = parse_url(x.url)
    if url is None or url.scheme != "https" or x.failed_operation == "connect":
        return None
    if x.failure is not None and x.failed_operation is None:
        return None  # failed somewhere: whether TLS worked is unknown
    failure = x.failure if x.failed_operation == "tls_handshake" else None
    op = "tls_handshake" if failure is not None else None
    name = url.host
    # the request's time is the handshake's only when the handshake was its last step
    duration = x.duration if failure is not None else 0.0
    return Handshake(x.ref, x.ip, x.port, name, failure, op, x.role, x.t0, duration)


def _dns(e: Mapping[str, Any], ref: str, domain: str, own: bool) -> DnsResponse:
    hostname = _get(e, "hostname", str).rstrip(".").lower()
    tags = _tags(e)
    answers = _opt(e, "answers", list) or []
    addresses: list[str] = []
    names: list[str] = []
    for answer in answers:
        if not isinstance(answer, dict):
            raise _Bad("an answer is not an object")
        kind = _get(answer, "answer_type", str)
        if "x_owner" in answer:  # another name's record: not this name's answer
            continue
        if kind in ("A", "AAAA"):
            addresses.append(_get(answer, "ipv4" if kind == "A" else "ipv6", str))
        elif kind == "CNAME":
            names.append(_get(answer, "hostname", str).rstrip(".").lower())
    return DnsResponse(
        ref=ref,
        hostname=hostname,
        engine=_get(e, "engine", str),
        resolver=_opt(e, "resolver_address", str) or "",
        failure=_failure(e),
        rcode=_rcode(e.get("rcode")),
        addresses=tuple(addresses),
        names=tuple(names),
        transaction_id=_opt(e, "transaction_id", int),
        role=_role(tags, hostname == domain, own),
        control="resolver_control" in tags,
        late="late_response" in tags,
        oversized=_opt(e, "x_oversized", bool) or False,
    )


def _tcp(e: Mapping[str, Any], ref: str, own_ips: frozenset[str]) -> Connect:
    status = _get(e, "status", dict)
    ip = _get(e, "ip", str)
    t0, t = _times(e)
    return Connect(
        ref=ref,
        ip=ip,
        port=_get(e, "port", int),
        failure=_failure(status),
        role=_role(_tags(e), True, ip in own_ips),  # a bare connect names no host
        duration=t - t0,
    )


def _tls(e: Mapping[str, Any], ref: str, domain: str, own: bool) -> Handshake:
    ip, port = _address(_get(e, "address", str))
    server_name = _get(e, "server_name", str).rstrip(".").lower()
    t0, t = _times(e)
    return Handshake(
        ref=ref,
        ip=ip,
        port=port,
        server_name=server_name,
        failure=_failure(e),
        failed_operation=_opt(e, "x_failed_operation", str),
        role=_role(_tags(e), server_name == domain, own),
        t0=t0,
        duration=t - t0,
    )


def _http(e: Mapping[str, Any], ref: str, domain: str, own: bool) -> HttpExchange:
    ip, port = _address(_get(e, "address", str))
    request = _get(e, "request", dict)
    url = _get(request, "url", str)
    response = _opt(e, "response", dict) or {}
    body = _body(response.get("body"))
    t0, t = _times(e)
    return HttpExchange(
        ref=ref,
        url=url,
        ip=ip,
        port=port,
        failure=_failure(e),
        failed_operation=_opt(e, "x_failed_operation", str),
        role=_role(_tags(e), domain_of(url) == domain, own),
        status=_opt(response, "code", int),
        headers=_headers(response.get("headers")),
        body=body,
        body_is_truncated=bool(response.get("body_is_truncated", False)),
        title=_opt(response, "x_title", str) or _title(body),
        t0=t0,
        duration=t - t0,
        body_sha256=_opt(response, "x_body_sha256", str),
    )


def _transfer(e: Mapping[str, Any], ref: str, domain: str, own: bool) -> Transfer:
    samples: list[tuple[float, int]] = []
    for sample in _get(e, "samples", list):
        if not (isinstance(sample, list) and len(sample) == 2):
            raise _Bad("a sample is not [seconds, bytes]")
        seconds, count = sample
        if not (_is_number(seconds) and isinstance(count, int) and not isinstance(count, bool)):
            raise _Bad("a sample is not [seconds, bytes]")
        samples.append((float(seconds), count))
    address = _get(e, "address", str)
    return Transfer(
        ref=ref,
        ip=_ip_or_endpoint(address),
        failure=_failure(e),
        role=_role(_tags(e), domain_of(f"//{_get(e, 'host', str)}") == domain, own),
        num_bytes=_get(e, "num_bytes", int),
        samples=tuple(samples),
    )


def _get(entry: Mapping[str, Any], key: str, kind: type[_T]) -> _T:
    """``entry[key]``, which must be present, not None, and a ``kind``."""
    value = _opt(entry, key, kind)
    if value is None:
        raise _Bad(f"missing {key!r}")
    return value


def _opt(entry: Mapping[str, Any], key: str, kind: type[_T]) -> _T | None:
    """``entry[key]`` if present and not None, checked to be a ``kind``."""
    value = entry.get(key)
    if value is None:
        return None
    # bool is an int in Python, never in the format
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad(f"{key!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _failure(entry: Mapping[str, Any]) -> str | None:
    """The failure string; the key must be there (absent is not the same as success)."""
    if "failure" not in entry:
        raise _Bad("missing 'failure'")
    return _opt(entry, "failure", str)


def _tags(entry: Mapping[str, Any]) -> tuple[str, ...]:
    tags = _opt(entry, "tags", list) or []
    return tuple(tag for tag in tags if isinstance(tag, str))


def _role(tags: Sequence[str], names_target: bool, own: bool) -> str:
    """The role tag; untagged: by name. ``own``: a control site's measurement of itself."""
    role = next((tag for tag in tags if tag in _ROLES), None)
    if role is None:
        return "target" if names_target else "control_site"
    return "target" if own and role == "control_site" and names_target else role


def _times(entry: Mapping[str, Any]) -> tuple[float, float]:
    t0, t = entry.get("t0"), entry.get("t")
    if not (isinstance(t0, int | float) and isinstance(t, int | float)):
        raise _Bad("t0/t are not numbers")
    return float(t0), float(t)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _address(address: str) -> tuple[str, int]:
    """``"ip:port"`` or ``"[v6]:port"`` -> (ip, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise _Bad(f"address {address!r} is not ip:port")
    return host.strip("[]"), int(port)


def _ip_or_endpoint(address: str) -> str:
    """The IP of ``"ip"``, ``"ip:port"`` or ``"[v6]:port"`` (x_throughput writes a bare IP)."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return _address(address)[0] if address else ""


def _headers(headers: object) -> tuple[tuple[str, str], ...]:
    """Headers as (name, value) pairs, from OONI's dict or a list of pairs; a value OONI
    wrote as ``{format: base64, data}`` (not UTF-8 on the wire) is decoded."""
    if isinstance(headers, dict):
        pairs = [
            (str(name), _header_value(v))
            for name, value in headers.items()
            for v in (value if isinstance(value, list) else [value])
        ]
        return tuple(pairs)
    if isinstance(headers, list):
        return tuple(
            (str(p[0]), _header_value(p[1]))
            for p in headers
            if isinstance(p, list | tuple) and len(p) == 2
        )
    return ()


def _header_value(value: object) -> str:
    if isinstance(value, dict):
        try:
            return _body(value)
        except _Bad:
            return ""
    return str(value)


def _body(body: object) -> str:
    """The body as text: UTF-8 as written, or ``{format: base64, data}`` decoded."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict) and body.get("format") == "base64":
        try:
            return base64.b64decode(str(body.get("data", "")), validate=True).decode(
                "utf-8", "replace"
            )
        except (binascii.Error, ValueError) as exc:
            raise _Bad("body is not valid base64") from exc
    return ""


def _title(body: str) -> str | None:
    match = _TITLE.search(body)
    return match.group(1).strip() if match else None

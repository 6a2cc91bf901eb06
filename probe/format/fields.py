"""The defensive field readers both measurement readers share (ours and OONI's).

Every value of a measurement is hostile until read here: :func:`get` and
:func:`opt` check presence and type (a JSON ``true`` is never an ``int``),
:func:`parse_entries` turns each entry of wrong shape into one named problem
instead of an exception, and URLs, addresses, headers and bodies are parsed
so that no byte of a measurement can make a reader raise. A reader that finds
an entry of the wrong shape raises :class:`Bad` inside its parse function;
:func:`parse_entries` catches it. :mod:`probe.format.reader` and
:mod:`probe.format.ooni` import these, so the two readers read alike.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple, TypeVar
from urllib.parse import urljoin, urlsplit

__all__ = [
    "Bad",
    "Url",
    "address",
    "answers",
    "body",
    "domain_of",
    "get",
    "headers",
    "opt",
    "parse_entries",
    "parse_url",
    "title",
]

_TITLE: Final = re.compile(r"<title[^>]*>([^<]*)</title", re.IGNORECASE)
_T = TypeVar("_T")


class Bad(Exception):
    """An entry does not have the shape the format promises."""


def parse_entries(
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
                raise Bad("not an object")
            out.append(parse(entry, ref))
        except Bad as exc:
            problems.append(f"{ref}: {exc}")
    return out


def get(entry: Mapping[str, Any], key: str, kind: type[_T]) -> _T:
    """``entry[key]``, which must be present, not None, and a ``kind``."""
    value = opt(entry, key, kind)
    if value is None:
        raise Bad(f"missing {key!r}")
    return value


def opt(entry: Mapping[str, Any], key: str, kind: type[_T]) -> _T | None:
    """``entry[key]`` if present and not None, checked to be a ``kind``."""
    value = entry.get(key)
    if value is None:
        return None
    # bool is an int in Python, never in the format
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Bad(f"{key!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


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


def answers(entry: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A DNS query entry's addresses (A/AAAA) and CNAME targets, in answer order.

    Records our writer marks ``x_owner`` belong to another name (a CNAME chain's other
    links), not to this name's answer; OONI's answers have no such key.
    """
    addresses: list[str] = []
    names: list[str] = []
    for answer in opt(entry, "answers", list) or []:
        if not isinstance(answer, dict):
            raise Bad("an answer is not an object")
        kind = answer.get("answer_type")
        if "x_owner" in answer:
            continue
        if kind in ("A", "AAAA"):
            addresses.append(get(answer, "ipv4" if kind == "A" else "ipv6", str))
        elif kind == "CNAME":
            names.append(get(answer, "hostname", str).rstrip(".").lower())
    return tuple(addresses), tuple(names)


def address(text: str) -> tuple[str, int]:
    """``"ip:port"`` or ``"[v6]:port"`` -> (ip, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise Bad(f"address {text!r} is not ip:port")
    return host.strip("[]"), int(port)


def headers(value: object) -> tuple[tuple[str, str], ...]:
    """Headers as (name, value) pairs, from OONI's dict or a list of pairs; a value OONI
    wrote as ``{format: base64, data}`` (not UTF-8 on the wire) is decoded."""
    if isinstance(value, dict):
        pairs = [
            (str(name), _header_value(v))
            for name, values in value.items()
            for v in (values if isinstance(values, list) else [values])
        ]
        return tuple(pairs)
    if isinstance(value, list):
        return tuple(
            (str(p[0]), _header_value(p[1]))
            for p in value
            if isinstance(p, list | tuple) and len(p) == 2
        )
    return ()


def _header_value(value: object) -> str:
    if isinstance(value, dict):
        try:
            return body(value)
        except Bad:
            return ""
    return str(value)


def body(value: object) -> str:
    """The body as text: UTF-8 as written, or ``{format: base64, data}`` decoded."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("format") == "base64":
        try:
            return base64.b64decode(str(value.get("data", "")), validate=True).decode(
                "utf-8", "replace"
            )
        except (binascii.Error, ValueError) as exc:
            raise Bad("body is not valid base64") from exc
    return ""


def title(text: str) -> str | None:
    """The page's ``<title>``, stripped, or None."""
    match = _TITLE.search(text)
    return match.group(1).strip() if match else None

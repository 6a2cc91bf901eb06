"""The probe's own addresses, found in every form a server can echo them in, and removed.

A server that sees the probe's address can send it back written many ways; each is
searched for, in text and in bytes (a DNS packet, a certificate, a binary body):

* IPv4 ``203.0.113.77``: dotted, dashed (``203-0-113-77``, as in ISP host names),
  reversed (``77.113.0.203``, as in ``in-addr.arpa``), both as DNS wire labels
  (``\\x0377\\x03113...``), and packed (the 4 bytes of an A record);
* IPv6: compressed, expanded, unpadded, dashed, reversed nibbles (``ip6.arpa``) in text
  and as wire labels, any case, and packed (the 16 bytes of an AAAA record);
* base64 (standard and URL-safe, at each of the 3 alignments) of the text forms and of
  the packed bytes, as a cookie or a page can carry them.

Text forms stand alone (not inside a longer address: ``139.45.1.75`` holds ``39.45.1.7``);
the dashed ones only need no digit next to them (``ec2-203-0-113-77`` is the address).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterable
from typing import Any, Final

__all__ = ["Scrubber"]

MARK: Final = b"[scrubbed]"
_MIN_B64: Final = 6  # shorter base64 fragments would match ordinary text


def _labels(name: str) -> bytes:
    """``a.b.c`` as DNS wire labels (length-prefixed, no root)."""
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))


def _b64_fragments(data: bytes) -> set[bytes]:
    """The base64 characters that depend only on ``data``, at each alignment in a longer
    encoded string, standard and URL-safe."""
    out = set()
    for k in range(3):
        start, end = -(-8 * k // 6), (8 * (k + len(data)) - 6) // 6 + 1
        padded = b"\0" * k + data + b"\0" * (-(k + len(data)) % 3)
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            fragment = encode(padded)[start:end]
            if len(fragment) >= _MIN_B64:
                out.add(fragment)
    return out


def _forms(address: str) -> tuple[list[bytes], list[bytes]]:
    """Regexes of ``address``'s forms: (packed, the rest)."""
    ip = ipaddress.ip_address(address)
    rest: list[bytes] = []
    if ip.version == 4:
        dotted = str(ip)
        reverse = ".".join(reversed(dotted.split(".")))
        texts = [dotted, reverse]
        dashed = [t.replace(".", "-") for t in texts]
        strict = rb"(?<![0-9])(?<![0-9]\.)%s(?![0-9])(?!\.[0-9])"
        rest += [strict % re.escape(t.encode()) for t in texts]
        rest += [rb"(?<![0-9])%s(?![0-9])" % re.escape(t.encode()) for t in dashed]
    else:
        unpadded = ":".join(f"{int(g, 16):x}" for g in ip.exploded.split(":"))
        colons = [ip.compressed, ip.exploded, unpadded]
        reverse = ip.reverse_pointer.removesuffix(".ip6.arpa")
        texts = [*colons, reverse]
        dashed = [t.replace(":", "-") for t in colons]
        rest += [rb"(?i:(?<![0-9a-f:])%s(?![0-9a-f:]))" % re.escape(t.encode()) for t in colons]
        rest += [rb"(?i:(?<![0-9a-f])%s(?![0-9a-f]))" % re.escape(t.encode()) for t in dashed]
        rest.append(rb"(?i:(?<![0-9a-f.])%s(?![0-9a-f]))" % re.escape(reverse.encode()))
    wire = texts if ip.version == 4 else [reverse]  # names: ISP host names, PTR queries
    rest += [rb"(?i:%s)" % re.escape(_labels(t)) for t in wire]
    encoded = {f for t in (*texts, *dashed) for f in _b64_fragments(t.encode())}
    encoded |= _b64_fragments(ip.packed)
    rest += [re.escape(f) for f in sorted(encoded)]
    return [re.escape(ip.packed)], rest


class Scrubber:
    """Removes ``addresses`` from strings, bytes and whole measurements."""

    def __init__(self, addresses: Iterable[str]) -> None:
        packed: list[bytes] = []
        rest: list[bytes] = []
        for a in sorted(set(addresses)):
            p, r = _forms(a)
            packed += p
            rest += r
        # longest first, so a form is not cut short by a shorter one it starts with
        rest.sort(key=len, reverse=True)
        self._pattern = (
            re.compile(b"(?P<packed>%s)|%s" % (b"|".join(packed), b"|".join(rest)))
            if packed
            else None
        )

    def __bool__(self) -> bool:
        return self._pattern is not None

    def data(self, data: bytes, *, keep_length: bool = False) -> bytes:
        """``data`` without the addresses: ``[scrubbed]`` in their place, or with
        ``keep_length`` bytes of the same length (packed -> zeros, text -> ``x`` for every
        letter and digit), so a DNS packet or a certificate keeps its structure
        (an A record of the address becomes ``0.0.0.0``)."""
        if self._pattern is None:
            return data

        def mark(m: re.Match[bytes]) -> bytes:
            if not keep_length:
                return MARK
            if m.group("packed") is not None:
                return bytes(len(m.group()))
            return re.sub(rb"[0-9A-Za-z+/_=]", b"x", m.group())

        return self._pattern.sub(mark, data)

    def text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self.data(text.encode("utf-8", "surrogateescape")).decode("utf-8", "replace")

    def b64(self, value: str, *, keep_length: bool) -> str:
        """A base64 field's content scrubbed (re-encoded only if it changed)."""
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            return self.text(value)
        clean = self.data(raw, keep_length=keep_length)
        return value if clean == raw else base64.b64encode(clean).decode("ascii")

    def measurement(self, value: Any) -> Any:
        """Every string of a JSON value, recursively; base64 fields decoded: DNS packets
        (``raw_response``) and certificates keep their length, bodies get ``[scrubbed]``."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.measurement(v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {}
        for k, v in value.items():
            if k == "raw_response" and isinstance(v, str):
                out[k] = self.b64(v, keep_length=True)
            elif k == "data" and isinstance(v, str) and value.get("format") in ("base64", "der"):
                out[k] = self.b64(v, keep_length=value.get("format") == "der")
            else:
                out[k] = self.measurement(v)
        return out

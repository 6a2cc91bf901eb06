"""Blockpage fingerprints: data files, one loader, one matcher.

A fingerprint is a string a censor's blockpage (or blocking resolver) shows
and a genuine site never does. The file format is OONI fastpath's
(``fingerprints_http.json`` / ``fingerprints_dns.json`` in ooni/backend), so
OONI's files load unchanged and ours can be read beside them: a JSON list of
objects with

* ``name``: what the verdict reports (e.g. ``pk.nayatel_safeweb``),
* ``location_found``: ``"body"``, ``"header.<name>"`` (case-insensitive) or ``"dns"``
  (an answer's address or CNAME target),
* ``pattern_type``: ``"contains"``, ``"prefix"``, ``"full"`` or ``"regexp"`` (a search),
* ``pattern``;
* ``scope`` (optional): ``"fp"`` marks a known *false positive* (a CDN challenge,
  a server's error page: it looks like a blockpage and is not), ``"vbw"`` a
  vague blocking word (``Access Denied``) that genuine error pages show too.
  Neither is *conclusive*: the matchers prefer any conclusive match, and the
  rules never call an inconclusive one a blockpage; any other key
  (``expected_countries``, ...) is kept out of the way.

The default set (:func:`default_fingerprints`) is ``fingerprints.json`` (the
Pakistani ones, named as the verdicts report them) followed by OONI's own
database, ``ooni_fingerprints_dns.json`` / ``ooni_fingerprints_http.json``:
byte-for-byte copies of ooni/backend's
``fastpath/fastpath/tests/data/fingerprints_{dns,http}.json`` (commit
32d8349dc5440e75264c84c0ffe97495c7488e84; BSD-3-Clause, see
``docs/ooni-agreement.md``). Users extend the set with their own files
(:func:`load_fingerprints`). A malformed file is bad input and raises
``ValueError`` naming the file and the entry.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

__all__ = ["Fingerprint", "Fingerprints", "default_fingerprints", "load_fingerprints"]

PATTERN_TYPES: Final = frozenset({"contains", "prefix", "full", "regexp"})
#: OONI scopes whose match proves nothing: known false positives, vague blocking words.
INCONCLUSIVE: Final = frozenset({"fp", "vbw"})


@dataclass(frozen=True, slots=True)
class Fingerprint:
    name: str
    location: str  # "body", "header.server", "dns" (lower case)
    pattern_type: str
    pattern: str
    regex: re.Pattern[str] | None = None  # compiled once for "regexp"
    scope: str = ""  # OONI's scope: "nat", "isp", "prod", ...; "fp", "vbw" (INCONCLUSIVE)

    @property
    def conclusive(self) -> bool:
        """A match names a blockpage (not a known false positive, not a vague word)."""
        return self.scope not in INCONCLUSIVE

    def matches(self, text: str) -> bool:
        if self.regex is not None:
            return self.regex.search(text) is not None
        if self.pattern_type == "contains":
            return self.pattern in text
        if self.pattern_type == "prefix":
            return text.startswith(self.pattern)
        return text == self.pattern


class _Index:
    """Which of a tuple of fingerprints a text at a location matches, in few Python steps.

    A verdict checks every body and header against ~1700 fingerprints (OONI's); one Python
    call per fingerprint cost ~3 ms a response. Here ``full`` patterns are one dict lookup,
    ``contains`` ones one comprehension of C-level ``in`` per location, and only the few
    ``prefix`` / ``regexp`` ones go through :meth:`Fingerprint.matches`.
    """

    __slots__ = ("contains", "full", "other")

    def __init__(self, fingerprints: Sequence[Fingerprint]) -> None:
        self.full: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.contains: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.other: dict[str, list[tuple[int, Fingerprint]]] = defaultdict(list)
        for i, fp in enumerate(fingerprints):
            if fp.pattern_type == "full":
                self.full[fp.location, fp.pattern].append(i)
            elif fp.pattern_type == "contains":
                self.contains[fp.location].append((i, fp.pattern))
            else:
                self.other[fp.location].append((i, fp))

    def hits(self, location: str, text: str) -> list[int]:
        """The positions of the fingerprints of ``location`` that ``text`` matches."""
        found = self.full.get((location, text), [])
        found = found + [i for i, pattern in self.contains.get(location, ()) if pattern in text]
        return found + [i for i, fp in self.other.get(location, ()) if fp.matches(text)]


@dataclass(frozen=True, slots=True)
class Fingerprints:
    dns: tuple[Fingerprint, ...]
    http: tuple[Fingerprint, ...]
    _dns: _Index = field(init=False, repr=False, compare=False)
    _http: _Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # frozen: the indexes are set once, here
        object.__setattr__(self, "_dns", _Index(self.dns))
        object.__setattr__(self, "_http", _Index(self.http))

    def match_dns(self, value: str) -> Fingerprint | None:
        """The fingerprint an answer (address or CNAME target) matches, if any (:func:`_best`)."""
        return _best(self.dns[i] for i in sorted(self._dns.hits("dns", value)))

    def match_http(self, body: str, headers: Sequence[tuple[str, str]]) -> Fingerprint | None:
        """The fingerprint the body or one of the headers matches, if any (:func:`_best`)."""
        hits = set(self._http.hits("body", body))
        for name, value in headers:
            hits.update(self._http.hits(f"header.{name.lower()}", value))
        return _best(self.http[i] for i in sorted(hits))

    def __add__(self, other: Fingerprints) -> Fingerprints:
        return Fingerprints(self.dns + other.dns, self.http + other.http)


def _best(matches: Iterable[Fingerprint]) -> Fingerprint | None:
    """The first conclusive match, else the first other one (callers check ``conclusive``)."""
    inconclusive = None
    for fp in matches:
        if fp.conclusive:
            return fp
        inconclusive = inconclusive or fp
    return inconclusive


def load_fingerprints(*paths: str | Path, include_default: bool = True) -> Fingerprints:
    """Fingerprints from OONI-format files (after the shipped ones unless told not to)."""
    result = default_fingerprints() if include_default else Fingerprints((), ())
    for path in paths:
        text = Path(path).read_text("utf-8")
        result = result + _parse(text, str(path))
    return result


#: The shipped files, ours first so that a page both name is reported by our name.
DEFAULT_FILES: Final = (
    "fingerprints.json",
    "ooni_fingerprints_dns.json",
    "ooni_fingerprints_http.json",
)


@cache
def default_fingerprints() -> Fingerprints:
    """The fingerprints shipped in ``probe/verdict`` (:data:`DEFAULT_FILES`)."""
    result = Fingerprints((), ())
    for name in DEFAULT_FILES:
        text = resources.files("probe.verdict").joinpath(name).read_text("utf-8")
        result = result + _parse(text, name)
    return result


def _parse(text: str, source: str) -> Fingerprints:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ValueError(f"{source}: expected a JSON list of fingerprints")
    parsed = [_entry(item, f"{source}[{i}]") for i, item in enumerate(data)]
    return Fingerprints(
        tuple(fp for fp in parsed if fp.location == "dns"),
        tuple(fp for fp in parsed if fp.location != "dns"),
    )


def _entry(item: Any, where: str) -> Fingerprint:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object")
    fields = [item.get(k) for k in ("name", "location_found", "pattern_type", "pattern")]
    if not all(isinstance(f, str) and f for f in fields):
        raise ValueError(f"{where}: name, location_found, pattern_type, pattern must be strings")
    name, location, pattern_type, pattern = (str(f) for f in fields)
    scope = item.get("scope", "")
    if not isinstance(scope, str):
        raise ValueError(f"{where}: scope must be a string")
    location = location.lower()
    if pattern_type not in PATTERN_TYPES:
        raise ValueError(f"{where}: pattern_type {pattern_type!r} not in {sorted(PATTERN_TYPES)}")
    if location not in ("body", "dns") and not location.startswith("header."):
        raise ValueError(f"{where}: location_found {location!r} is not body, header.* or dns")
    try:
        regex = re.compile(pattern) if pattern_type == "regexp" else None
    except re.error as exc:
        raise ValueError(f"{where}: bad regexp: {exc}") from exc
    return Fingerprint(name, location, pattern_type, pattern, regex, scope)

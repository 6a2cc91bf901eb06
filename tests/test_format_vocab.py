"""The format's vocabularies (probe.format.vocab) and the JSON Schema hold the same sets."""

from __future__ import annotations

import json
from enum import StrEnum
from importlib import resources
from typing import Any

import pytest

from probe.failures import FAILURES
from probe.format import vocab

_SCHEMA: dict[str, Any] = json.loads(
    resources.files("probe").joinpath("schema/measurement.schema.json").read_text()
)


def _at(*path: str) -> Any:
    node: Any = _SCHEMA
    for key in path:
        node = node[key]
    return node


def _strings(values: list[Any]) -> set[str]:
    """An enum's string members (``null`` and ``false`` are JSON's, no vocabulary's)."""
    return {v for v in values if isinstance(v, str)}


_TK = ("properties", "test_keys", "properties")
CASES: list[tuple[type[StrEnum], tuple[str, ...]]] = [
    (vocab.FormatVersion, ("properties", "x_format_version", "enum")),
    (vocab.Status, (*_TK, "x_verdict", "properties", "status", "enum")),
    (vocab.Method, (*_TK, "x_verdict", "properties", "method", "enum")),
    (vocab.Blocking, (*_TK, "blocking", "enum")),
    (vocab.Role, ("properties", "annotations", "properties", "x_role", "enum")),
    (vocab.Operation, ("$defs", "operation", "enum")),
    (vocab.Tag, (*_TK, "queries", "items", "properties", "tags", "items", "enum")),
]


@pytest.mark.parametrize(("enum", "path"), CASES, ids=[e.__name__ for e, _ in CASES])
def test_schema_enum_equals_vocabulary(enum: type[StrEnum], path: tuple[str, ...]) -> None:
    assert _strings(_at(*path)) == {m.value for m in enum}


def test_every_tags_enum_of_the_schema_is_the_tag_vocabulary() -> None:
    arrays = ("queries", "tcp_connect", "tls_handshakes", "requests", "x_throughput")
    for name in arrays:
        tags = _at(*_TK, name, "items", "properties", "tags", "items", "enum")
        assert set(tags) == set(vocab.Tag), name


def test_the_failure_strings_are_the_schema_s() -> None:
    failure = _at("$defs", "failure", "oneOf")
    assert {f for branch in failure for f in branch.get("enum", [])} == FAILURES


def test_the_written_version_is_known() -> None:
    assert vocab.FORMAT_VERSION in vocab.KNOWN_FORMAT_VERSIONS
    assert {"1", "2", "3"} <= vocab.KNOWN_FORMAT_VERSIONS

"""Every step that can fail with ``unknown_failure`` keeps what the error said apart, in
``x_failure_detail``: DNS queries, TCP connects and TLS handshakes as HTTP requests do.

A surprise cannot be produced on purpose through a real socket (that is what makes it a
surprise), so the OS call under each primitive is made to raise an errno the mapping does not
know, with a server's bytes (an address, a terminal escape) in its text.
"""

from __future__ import annotations

import asyncio
import errno
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from probe.format import writer
from probe.net import dns, tcp, tls
from probe.records import Clock

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "probe" / "schema" / "measurement.schema.json").read_text())
SURPRISE = OSError(errno.EPERM, "refused by 203.0.113.9 \x1b[2J" + "x" * 300)
DETAIL = ("PermissionError: [Errno 1] refused by [scrubbed] ?[2J" + "x" * 300)[:200]


async def _raise(*_args: Any, **_kwargs: Any) -> Any:
    raise SURPRISE


def test_a_dns_query_keeps_the_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dns, "_getaddrinfo", _raise)
    record = asyncio.run(dns.lookup_system("x.com", clock=Clock(), timeout=1, transaction_id=1))
    assert (record.failure, record.failure_detail) == ("unknown_failure", DETAIL)
    assert writer._query(record)["x_failure_detail"] == DETAIL


def test_a_tcp_connect_keeps_the_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp, "dial", _raise)
    record = asyncio.run(tcp.connect("127.0.0.1", 9, clock=Clock(), timeout=1, transaction_id=1))
    assert (record.failure, record.failure_detail) == ("unknown_failure", DETAIL)
    assert writer._tcp(record)["x_failure_detail"] == DETAIL


def test_a_tls_handshake_keeps_the_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "dial", _raise)
    record = asyncio.run(
        tls.handshake(
            "127.0.0.1",
            9,
            "x.com",
            context=tls.make_context(None),
            clock=Clock(),
            connect_timeout=1,
            timeout=1,
            transaction_id=1,
        )
    )
    assert (record.failure, record.failed_operation) == ("unknown_failure", "connect")
    assert record.failure_detail == DETAIL
    assert writer._tls(record)["x_failure_detail"] == DETAIL


def test_a_known_failure_has_no_detail() -> None:
    record = asyncio.run(tcp.connect("127.0.0.1", 9, clock=Clock(), timeout=1, transaction_id=1))
    assert (record.failure, record.failure_detail) == ("connection_refused", None)


def test_the_schema_bounds_the_detail_on_every_step() -> None:
    keys = SCHEMA["properties"]["test_keys"]["properties"]
    for step in ("queries", "tcp_connect", "tls_handshakes", "requests"):
        ref = keys[step]["items"]["properties"]["x_failure_detail"]
        assert ref == {"$ref": "#/$defs/failure_detail"}
    bound = SCHEMA["$defs"]["failure_detail"]
    jsonschema.validate(DETAIL, bound)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("x" * 201, bound)

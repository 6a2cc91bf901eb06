"""The vocabularies of the measurement format (docs/format.md), spelled once.

Each is a ``StrEnum``: a member *is* its string (``Status.OK == "ok"``), so it is written to
JSON, compared with a value read from a line and put into SQL as it is. The JSON Schema
(``probe/schema/measurement.schema.json``) holds the same sets; ``tests/test_format_vocab.py``
checks that they are equal, both ways.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "FORMAT_VERSION",
    "KNOWN_FORMAT_VERSIONS",
    "Blocking",
    "FormatVersion",
    "Method",
    "Operation",
    "Role",
    "Status",
    "Tag",
    "Trigger",
]


class FormatVersion(StrEnum):
    """``x_format_version``: every version a reader accepts (docs/format.md, Versions)."""

    V1 = "1"
    V2 = "2"
    V3 = "3"
    V4 = "4"


#: The version the writer writes.
FORMAT_VERSION: Final = FormatVersion.V4
#: The versions readers understand.
KNOWN_FORMAT_VERSIONS: Final = frozenset(FormatVersion)


class Status(StrEnum):
    """``test_keys.x_verdict.status``."""

    OK = "ok"
    BLOCKED = "blocked"
    DOWN = "down"
    INCONCLUSIVE = "inconclusive"


class Method(StrEnum):
    """``test_keys.x_verdict.method``: the layer that blocks (null when nothing does)."""

    DNS = "dns"
    TCP_IP = "tcp_ip"
    TLS = "tls"
    HTTP = "http"
    THROTTLING = "throttling"


class Blocking(StrEnum):
    """``test_keys.blocking`` (besides ``false`` and null): OONI web_connectivity's words.
    ``tls`` and ``throttling`` only in files written before 2026-11-29."""

    DNS = "dns"
    TCP_IP = "tcp_ip"
    TLS = "tls"
    HTTP_FAILURE = "http-failure"
    HTTP_DIFF = "http-diff"
    THROTTLING = "throttling"


class Role(StrEnum):
    """``annotations.x_role``: what a line measured."""

    TARGET = "target"
    CONTROL = "control"


class Tag(StrEnum):
    """An observation's ``tags`` (docs/format.md, Tags): its role in the measurement."""

    TARGET = "target"  # the target's own name on the target's own address
    CONTROL_SNI = "control_sni"  # the target's address, the control SNI / Host
    CONTROL_ADDRESS = "control_address"  # the target's SNI sent to a control site's address
    CONTROL_SITE = "control_site"  # a control site measured as itself
    RESIDUAL = "residual"  # delayed re-test with the control SNI after a blocked handshake
    LATE_RESPONSE = "late_response"  # a further UDP DNS answer after the first one
    RESOLVER_CONTROL = "resolver_control"  # DoH / public resolver used as the DNS control


class Trigger(StrEnum):
    """``annotations.x_trigger``: what started the run."""

    MANUAL = "manual"
    CRON = "cron"
    SCHEDULE = "schedule"
    BURST = "burst"  # re-measures a target whose verdict flipped
    SPOT = "spot"  # a spot check at a random time of a target last seen blocked


class Operation(StrEnum):
    """The operation a failure happened in (OONI df-008; ``x_failed_operation``)."""

    RESOLVE = "resolve"
    CONNECT = "connect"
    TLS_HANDSHAKE = "tls_handshake"
    HTTP_ROUND_TRIP = "http_round_trip"
    READ = "read"
    WRITE = "write"

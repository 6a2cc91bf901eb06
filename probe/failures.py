"""The one place where an exception becomes a failure string.

Every network outcome the probe records is either success (``None``) or one
string from a closed set, the one OONI defines in ooni/spec df-007-errors.
Primitives catch whatever the OS, ``ssl``, dnspython or httpx raised and call
:func:`classify`; nothing else in the probe looks at exception types.

Exceptions are walked through ``__cause__`` / ``__context__`` because httpx
wraps an OS error twice (httpx -> httpcore -> OSError) and asyncio wraps
timeouts; the innermost recognisable cause wins.

An error nobody foresaw becomes ``unknown_failure``, so that a surprise is
recorded, not raised. What it said goes into :func:`detail` instead (bounded,
addresses scrubbed, printable), never into the failure string: its text can
hold bytes a server chose (``illegal status line: bytearray(b'HTTP/1.1 2OO
OK')``), and the failure string is a closed set a report groups by.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
from typing import Final

import dns.exception
import dns.message
import dns.resolver
import httpx

from probe.printable import printable

__all__ = [
    "FAILURES",
    "classify",
    "detail",
    "failure_and_detail",
    "failure_for_rcode",
    "scrub_addresses",
]

CONNECTION_REFUSED: Final = "connection_refused"
CONNECTION_RESET: Final = "connection_reset"
CONNECTION_ABORTED: Final = "connection_aborted"
EOF_ERROR: Final = "eof_error"
GENERIC_TIMEOUT: Final = "generic_timeout_error"
HOST_UNREACHABLE: Final = "host_unreachable"
NETWORK_UNREACHABLE: Final = "network_unreachable"
ADDRESS_FAMILY: Final = "address_family_not_supported"
INTERRUPTED: Final = "interrupted"
DNS_NXDOMAIN: Final = "dns_nxdomain_error"
DNS_NO_ANSWER: Final = "dns_no_answer"
DNS_REFUSED: Final = "dns_refused_error"
DNS_SERVFAIL: Final = "dns_servfail_error"
DNS_BOGON: Final = "dns_bogon_error"
DNS_MISBEHAVING: Final = "dns_server_misbehaving"
DNS_TEMPORARY: Final = "dns_temporary_failure"
DNS_NON_RECOVERABLE: Final = "dns_non_recoverable_failure"
SSL_INVALID_HOSTNAME: Final = "ssl_invalid_hostname"
SSL_UNKNOWN_AUTHORITY: Final = "ssl_unknown_authority"
SSL_INVALID_CERTIFICATE: Final = "ssl_invalid_certificate"
SSL_FAILED_HANDSHAKE: Final = "ssl_failed_handshake"
UNKNOWN_FAILURE: Final = "unknown_failure"
#: The most characters of an unknown failure's :func:`detail`.
DETAIL_LIMIT: Final = 200

#: The closed set.
FAILURES: Final[frozenset[str]] = frozenset(
    {
        CONNECTION_REFUSED,
        CONNECTION_RESET,
        CONNECTION_ABORTED,
        EOF_ERROR,
        GENERIC_TIMEOUT,
        HOST_UNREACHABLE,
        NETWORK_UNREACHABLE,
        ADDRESS_FAMILY,
        INTERRUPTED,
        DNS_NXDOMAIN,
        DNS_NO_ANSWER,
        DNS_REFUSED,
        DNS_SERVFAIL,
        DNS_BOGON,
        DNS_MISBEHAVING,
        DNS_TEMPORARY,
        DNS_NON_RECOVERABLE,
        SSL_INVALID_HOSTNAME,
        SSL_UNKNOWN_AUTHORITY,
        SSL_INVALID_CERTIFICATE,
        SSL_FAILED_HANDSHAKE,
        UNKNOWN_FAILURE,
    }
)

_ERRNO: Final[dict[int, str]] = {
    errno.ECONNREFUSED: CONNECTION_REFUSED,
    errno.ECONNRESET: CONNECTION_RESET,
    errno.ECONNABORTED: CONNECTION_ABORTED,
    errno.EPIPE: CONNECTION_RESET,
    errno.ETIMEDOUT: GENERIC_TIMEOUT,
    errno.EHOSTUNREACH: HOST_UNREACHABLE,
    errno.ENETUNREACH: NETWORK_UNREACHABLE,
    errno.ENETDOWN: NETWORK_UNREACHABLE,
    errno.EAFNOSUPPORT: ADDRESS_FAMILY,
    errno.EADDRNOTAVAIL: NETWORK_UNREACHABLE,
    errno.EINTR: INTERRUPTED,
}

_GAI: Final[dict[int, str]] = {
    socket.EAI_NONAME: DNS_NXDOMAIN,
    socket.EAI_AGAIN: DNS_TEMPORARY,
    socket.EAI_FAIL: DNS_NON_RECOVERABLE,
}
# EAI_NODATA ("no address associated with hostname") is glibc-only.
_GAI.update({socket.EAI_NODATA: DNS_NO_ANSWER} if hasattr(socket, "EAI_NODATA") else {})

_RCODE: Final[dict[str, str]] = {
    "NXDOMAIN": DNS_NXDOMAIN,
    "SERVFAIL": DNS_SERVFAIL,
    "REFUSED": DNS_REFUSED,
}

# OpenSSL X509_V_ERR_* codes carried by ssl.SSLCertVerificationError.verify_code.
_X509_HOSTNAME_MISMATCH: Final = 62
_X509_UNKNOWN_AUTHORITY: Final = frozenset({2, 18, 19, 20, 21})

_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])")


def scrub_addresses(text: str) -> str:
    """Replace every IPv4/IPv6 literal in ``text`` with ``[scrubbed]``."""
    return _IPV6.sub("[scrubbed]", _IPV4.sub("[scrubbed]", text))


def failure_for_rcode(rcode: str) -> str | None:
    """Failure string for a DNS response code name (``"NOERROR"`` -> None)."""
    if rcode == "NOERROR":
        return None
    return _RCODE.get(rcode, DNS_MISBEHAVING)


def classify(exc: BaseException) -> str:
    """Map any exception raised by a network operation to a df-007 failure string."""
    for cause in _chain(exc):
        failure = _classify_one(cause)
        if failure is not None:
            return failure
    return UNKNOWN_FAILURE


def detail(exc: BaseException) -> str:
    """What an exception said, for a record's ``x_failure_detail``: scrubbed and bounded.

    Addresses are scrubbed (a record must not hold the probe's own), every
    unprintable character (a terminal escape from a server) becomes ``?``, and
    the text stops at :data:`DETAIL_LIMIT` characters.
    """
    return printable(scrub_addresses(f"{type(exc).__name__}: {exc}".strip()))[:DETAIL_LIMIT]


def failure_and_detail(exc: BaseException) -> tuple[str, str | None]:
    """:func:`classify`, and the :func:`detail` that goes with it when nobody foresaw ``exc``
    (``unknown_failure``); a known failure says all there is to say, its detail is None."""
    failure = classify(exc)
    return failure, detail(exc) if failure == UNKNOWN_FAILURE else None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes, innermost first (the most specific wins)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen[::-1]


def _classify_one(exc: BaseException) -> str | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == _X509_HOSTNAME_MISMATCH:
            return SSL_INVALID_HOSTNAME
        if exc.verify_code in _X509_UNKNOWN_AUTHORITY:
            return SSL_UNKNOWN_AUTHORITY
        return SSL_INVALID_CERTIFICATE
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | asyncio.IncompleteReadError):
        return EOF_ERROR
    if isinstance(exc, ssl.SSLWantReadError | ssl.SSLWantWriteError):
        # "Wait for more bytes" is flow control, not a failure; it shows up as the
        # context of a timeout that cancelled a stalled handshake (anyio, under httpx).
        return None
    if isinstance(exc, ssl.SSLError):
        return SSL_FAILED_HANDSHAKE
    if isinstance(exc, socket.gaierror):
        return _GAI.get(exc.errno or 0, DNS_MISBEHAVING)
    if isinstance(exc, TimeoutError | dns.exception.Timeout | httpx.TimeoutException):
        return GENERIC_TIMEOUT
    if isinstance(exc, OSError) and exc.errno in _ERRNO:
        return _ERRNO[exc.errno]
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return CONNECTION_RESET
    if isinstance(exc, EOFError | httpx.RemoteProtocolError) and _is_eof(exc):
        return EOF_ERROR
    return _classify_dns(exc)


def _is_eof(exc: BaseException) -> bool:
    if isinstance(exc, EOFError):
        return True
    text = str(exc).lower()
    return "without sending" in text or "peer closed" in text or "incomplete" in text


def _classify_dns(exc: BaseException) -> str | None:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return DNS_NXDOMAIN
    if isinstance(exc, dns.resolver.NoAnswer):
        return DNS_NO_ANSWER
    if isinstance(exc, dns.exception.DNSException):  # FormError, TooBig, BadEDNS, ...
        return DNS_MISBEHAVING
    return None

"""Every mapping of probe/failures.py, exception by exception (the real-socket tests show
the same strings arise from real traffic; this table proves each branch)."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import dns.exception
import dns.resolver
import httpx
import pytest

from probe import failures
from probe.failures import classify, failure_for_rcode, scrub_addresses


def cert_error(code: int) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_code = code
    return exc


def wrapped(inner: BaseException, *outer: type[Exception]) -> BaseException:
    """``inner`` raised inside each of ``outer`` in turn, as httpx/httpcore/anyio wrap errors."""
    exc = inner
    for kind in outer:
        try:
            try:
                raise exc
            except BaseException as cause:
                raise kind("wrapped") from cause
        except Exception as caught:
            exc = caught
    return exc


CASES = [
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connection_refused"),
    (ConnectionResetError(errno.ECONNRESET, "reset"), "connection_reset"),
    (BrokenPipeError(errno.EPIPE, "pipe"), "connection_reset"),
    (ConnectionAbortedError(errno.ECONNABORTED, "aborted"), "connection_aborted"),
    (OSError(errno.EHOSTUNREACH, "no route"), "host_unreachable"),
    (OSError(errno.ENETUNREACH, "unreachable"), "network_unreachable"),
    (OSError(errno.ENETDOWN, "down"), "network_unreachable"),
    (OSError(errno.EADDRNOTAVAIL, "no address"), "network_unreachable"),
    (OSError(errno.EAFNOSUPPORT, "family"), "address_family_not_supported"),
    (OSError(errno.ETIMEDOUT, "timed out"), "generic_timeout_error"),
    (OSError(errno.EINTR, "interrupted"), "interrupted"),
    (TimeoutError(), "generic_timeout_error"),
    (dns.exception.Timeout(), "generic_timeout_error"),
    (httpx.ReadTimeout("slow"), "generic_timeout_error"),
    (socket.gaierror(socket.EAI_NONAME, "no name"), "dns_nxdomain_error"),
    (socket.gaierror(socket.EAI_AGAIN, "again"), "dns_temporary_failure"),
    (socket.gaierror(socket.EAI_FAIL, "fail"), "dns_non_recoverable_failure"),
    (socket.gaierror(socket.EAI_SERVICE, "odd"), "dns_server_misbehaving"),
    (dns.resolver.NXDOMAIN(), "dns_nxdomain_error"),
    (dns.resolver.NoAnswer(), "dns_no_answer"),
    (dns.exception.FormError(), "dns_server_misbehaving"),
    (cert_error(62), "ssl_invalid_hostname"),
    (cert_error(20), "ssl_unknown_authority"),
    (cert_error(19), "ssl_unknown_authority"),
    (cert_error(18), "ssl_unknown_authority"),
    (cert_error(10), "ssl_invalid_certificate"),
    (ssl.SSLEOFError(8, "EOF"), "eof_error"),
    (ssl.SSLZeroReturnError(6, "closed"), "eof_error"),
    (ssl.SSLError(1, "handshake failure"), "ssl_failed_handshake"),
    (asyncio.IncompleteReadError(b"", 2), "eof_error"),
    (EOFError(), "eof_error"),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), "eof_error"),
    # httpx wraps twice: httpx.ConnectError <- httpcore.ConnectError <- OSError
    (wrapped(ConnectionResetError(errno.ECONNRESET, "reset"), OSError, httpx.ConnectError),
     "connection_reset"),
    (wrapped(ConnectionRefusedError(errno.ECONNREFUSED, "x"), httpx.ConnectError),
     "connection_refused"),
    # a stalled TLS handshake cancelled by a timeout: the WantRead context is not the failure
    (wrapped(ssl.SSLWantReadError(2, "want read"), TimeoutError), "generic_timeout_error"),
    (httpx.RemoteProtocolError("illegal status line: bytearray(b'HTTP/1.1 2OO OK')"),
     "unknown_failure"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "expected"), CASES, ids=[c[1] + str(i) for i, c in enumerate(CASES)]
)
def test_mapping(exc: BaseException, expected: str) -> None:
    assert classify(exc) == expected


def test_the_closed_set_is_covered() -> None:
    produced = {expected for _, expected in CASES}
    produced |= {failure_for_rcode(r) for r in ("NXDOMAIN", "SERVFAIL", "REFUSED", "NOTIMP")}
    # dns_bogon_error is a verdict about answers, never an exception.
    assert failures.FAILURES - produced == {"dns_bogon_error"}


def test_rcodes() -> None:
    assert failure_for_rcode("NOERROR") is None
    assert failure_for_rcode("NXDOMAIN") == "dns_nxdomain_error"
    assert failure_for_rcode("SERVFAIL") == "dns_servfail_error"
    assert failure_for_rcode("REFUSED") == "dns_refused_error"
    assert failure_for_rcode("NOTIMP") == "dns_server_misbehaving"


def test_unknown_errors_are_closed_with_the_detail_apart_scrubbed_and_bounded() -> None:
    exc = ValueError("odd thing from 203.0.113.7 and 2001:db8::1 port 443\x1b[2J")
    assert classify(exc) == "unknown_failure"
    got = failures.detail(exc)
    assert got == "ValueError: odd thing from [scrubbed] and [scrubbed] port 443?[2J"
    assert failures.detail(ValueError("x" * 1000)) == ("ValueError: " + "x" * 1000)[:200]
    assert scrub_addresses("a 10.0.0.1 b") == "a [scrubbed] b"

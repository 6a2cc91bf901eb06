"""TCP connect and TLS handshake against misbehaving loopback servers.

Real sockets on 127.0.0.1 / ::1, real OpenSSL on both ends, exact failure
strings. Connect timeouts cannot be produced on loopback (see tests/servers.py);
the lab's nftables ``drop`` tests cover them.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from servers import HttpServer, ResetServer, StallServer, TlsServer, refusing_port

from probe.lab.pki import Authority, Issued, write_pair
from probe.net.tcp import connect
from probe.net.tls import handshake, make_context
from probe.records import Clock, TcpConnect, TlsHandshake

# An unclosed socket anywhere (probe or test server) fails the test.
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 on this kernel")


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority.create()


@pytest.fixture(scope="module")
def leaf(ca: Authority) -> Issued:
    return ca.issue(["x.com", "*.twimg.com"], ip_addresses=["127.0.0.1"])


@pytest.fixture(scope="module")
def context(ca: Authority, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    bundle.write_bytes(ca.cert_pem)
    return make_context(str(bundle))


def tcp(ip: str, port: int, *, timeout: float = 2.0) -> TcpConnect:
    return asyncio.run(
        connect(ip, port, clock=Clock(), timeout=timeout, transaction_id=3, tags=("target",))
    )


def tls(
    port: int,
    server_name: str,
    context: ssl.SSLContext,
    *,
    ip: str = "127.0.0.1",
    timeout: float = 2.0,
    keep_der: bool = False,
) -> TlsHandshake:
    return asyncio.run(
        handshake(
            ip,
            port,
            server_name,
            context=context,
            clock=Clock(),
            connect_timeout=1.0,
            timeout=timeout,
            transaction_id=7,
            tags=("target",),
            keep_der=keep_der,
        )
    )


def der_of(issued: Issued) -> bytes:
    return x509.load_pem_x509_certificate(issued.cert_pem).public_bytes(Encoding.DER)


# --- TCP -----------------------------------------------------------------------------------


def test_tcp_connect_ok() -> None:
    with HttpServer() as server:
        record = tcp("127.0.0.1", server.port)
    assert record == TcpConnect("127.0.0.1", server.port, None, record.t0, record.t, 3, ("target",))
    assert 0 <= record.t0 <= record.t < 1


def test_tcp_connect_refused() -> None:
    with refusing_port() as target:
        record = tcp("127.0.0.1", target.port)
    assert record.failure == "connection_refused"


def test_tcp_reset_after_accept_is_still_a_successful_connect() -> None:
    # The handshake completes before the server's RST (this server waits for
    # data that never comes): a connect-only measurement cannot see a reset
    # triggered by the payload (the TLS step does, below).
    with ResetServer() as server:
        record = tcp("127.0.0.1", server.port)
    assert record.failure is None


@needs_ipv6
def test_tcp_connect_ipv6() -> None:
    with StallServer(host="::1") as server:
        ok = tcp("::1", server.port)
    with refusing_port("::1") as target:
        refused = tcp("::1", target.port)
    assert (ok.ip, ok.failure) == ("::1", None)
    assert refused.failure == "connection_refused"


@pytest.mark.parametrize(("ip", "port"), [("x.com", 443), ("127.0.0.1", 0), ("::1", 65536)])
def test_tcp_bad_input_raises(ip: str, port: int) -> None:
    with pytest.raises(ValueError):
        tcp(ip, port)


# --- TLS: success --------------------------------------------------------------------------


def test_tls_ok_records_session_and_certificate(leaf: Issued, context: ssl.SSLContext) -> None:
    with TlsServer(leaf) as server:
        record = tls(server.port, "x.com", context)
    assert server.server_names == ["x.com"]
    assert (record.failure, record.failed_operation) == (None, None)
    assert (record.ip, record.port, record.server_name) == ("127.0.0.1", server.port, "x.com")
    assert (record.transaction_id, record.tags) == (7, ("target",))
    assert record.tls_version == "TLSv1.3"
    assert record.cipher_suite == "TLS_AES_256_GCM_SHA384"
    assert record.negotiated_protocol == "http/1.1"  # we offer h2 too; the server only http/1.1
    assert record.no_tls_verify is False
    assert 0 <= record.t0 <= record.t < 1

    (cert,) = record.peer_certificates  # the server sends its leaf only
    expected = x509.load_pem_x509_certificate(leaf.cert_pem)
    assert cert.sha256 == hashlib.sha256(der_of(leaf)).hexdigest()
    assert cert.subject == "CN=x.com"
    assert cert.issuer == "O=probe lab CA,CN=probe lab CA"
    assert cert.sans == ("x.com", "*.twimg.com", "127.0.0.1")
    assert ISO_UTC.fullmatch(cert.not_before) and ISO_UTC.fullmatch(cert.not_after)
    assert cert.not_after == expected.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cert.der is None


def test_tls_keep_der(leaf: Issued, context: ssl.SSLContext) -> None:
    with TlsServer(leaf) as server:
        record = tls(server.port, "x.com", context, keep_der=True)
    (cert,) = record.peer_certificates
    assert cert.der == der_of(leaf)
    assert cert.sha256 == hashlib.sha256(cert.der).hexdigest()


def test_tls_wildcard_name_and_alpn_h2(leaf: Issued, context: ssl.SSLContext) -> None:
    with TlsServer(leaf, alpn=("h2", "http/1.1")) as server:
        record = tls(server.port, "pbs.twimg.com", context)
    assert server.server_names == ["pbs.twimg.com"]
    assert (record.failure, record.negotiated_protocol) == (None, "h2")


def test_tls_ip_literal_name_sends_no_sni(leaf: Issued, context: ssl.SSLContext) -> None:
    with TlsServer(leaf) as server:
        record = tls(server.port, "127.0.0.1", context)
    assert record.failure is None
    assert server.server_names == [None]  # RFC 6066: no SNI for an IP literal


@needs_ipv6
def test_tls_ok_over_ipv6(leaf: Issued, context: ssl.SSLContext) -> None:
    with TlsServer(leaf, host="::1") as server:
        record = tls(server.port, "x.com", context, ip="::1")
    assert (record.ip, record.failure, record.tls_version) == ("::1", None, "TLSv1.3")


# --- TLS: certificate verification ---------------------------------------------------------


def test_tls_wrong_name(leaf: Issued, context: ssl.SSLContext) -> None:
    with TlsServer(leaf) as server:
        record = tls(server.port, "example.org", context)
    assert server.server_names == ["example.org"]
    assert (record.failure, record.failed_operation) == ("ssl_invalid_hostname", "tls_handshake")
    assert (record.tls_version, record.cipher_suite, record.negotiated_protocol) == (None,) * 3


def test_tls_unknown_authority(context: ssl.SSLContext) -> None:
    stranger = Authority.create("interception CA").issue(["x.com"])
    with TlsServer(stranger) as server:
        record = tls(server.port, "x.com", context)
    assert (record.failure, record.failed_operation) == ("ssl_unknown_authority", "tls_handshake")


def test_tls_expired_certificate(ca: Authority, context: ssl.SSLContext) -> None:
    now = datetime.now(UTC)
    expired = ca.issue(["x.com"], not_before=now - timedelta(days=30), not_after=now - timedelta(1))
    with TlsServer(expired) as server:
        record = tls(server.port, "x.com", context)
    assert (record.failure, record.failed_operation) == ("ssl_invalid_certificate", "tls_handshake")


def test_tls_system_store_does_not_trust_the_lab(leaf: Issued) -> None:
    with TlsServer(leaf) as server:
        record = tls(server.port, "x.com", make_context(None))
    assert record.failure == "ssl_unknown_authority"


# --- TLS: interference after the ClientHello -----------------------------------------------


def test_tls_reset_after_client_hello(leaf: Issued, context: ssl.SSLContext) -> None:
    with TlsServer(leaf, "reset_after_client_hello") as server:
        record = tls(server.port, "x.com", context)
    assert server.server_names == ["x.com"]
    assert (record.failure, record.failed_operation) == ("connection_reset", "tls_handshake")
    assert record.peer_certificates == ()


def test_tls_close_after_client_hello(leaf: Issued, context: ssl.SSLContext) -> None:
    with TlsServer(leaf, "close_after_client_hello") as server:
        record = tls(server.port, "twitter.com", context)
    assert server.server_names == ["twitter.com"]
    assert (record.failure, record.failed_operation) == ("eof_error", "tls_handshake")


def test_tls_stall_times_out_on_time(leaf: Issued, context: ssl.SSLContext) -> None:
    with TlsServer(leaf, "stall") as server:
        record = tls(server.port, "x.com", context, timeout=0.3)
    assert server.server_names == ["x.com"]
    assert (record.failure, record.failed_operation) == ("generic_timeout_error", "tls_handshake")
    assert 0.3 <= record.t - record.t0 < 0.5


def test_tls_plain_tcp_server_that_never_answers(context: ssl.SSLContext) -> None:
    with StallServer() as server:
        record = tls(server.port, "x.com", context, timeout=0.2)
    assert record.failure == "generic_timeout_error"


def test_tls_connect_refused(context: ssl.SSLContext) -> None:
    with refusing_port() as target:
        record = tls(target.port, "x.com", context)
    assert (record.failure, record.failed_operation) == ("connection_refused", "connect")
    assert record.peer_certificates == ()


@pytest.mark.parametrize(("ip", "server_name"), [("x.com", "x.com"), ("127.0.0.1", "")])
def test_tls_bad_input_raises(ip: str, server_name: str, context: ssl.SSLContext) -> None:
    with pytest.raises(ValueError):
        tls(443, server_name, context, ip=ip)


# --- context and PKI -----------------------------------------------------------------------


def test_make_context_verifies(ca: Authority, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.cert_pem)
    for context in (make_context(str(bundle), alpn=("http/1.1",)), make_context("")):
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is True
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_write_pair_files(leaf: Issued, tmp_path: Path) -> None:
    cert_path, key_path = write_pair(leaf, tmp_path, "x")
    assert (cert_path.name, key_path.name) == ("x.crt", "x.key")
    assert cert_path.read_bytes() == leaf.cert_pem
    assert key_path.stat().st_mode & 0o777 == 0o600
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)


def test_issue_requires_a_name(ca: Authority) -> None:
    with pytest.raises(ValueError):
        ca.issue([])

"""TLS handshake: connect, send a ClientHello with a chosen SNI, verify, close.

Design: the handshake runs over an ``ssl.MemoryBIO`` pair on a plain
non-blocking socket, with the event loop moving the bytes. That keeps every
error exactly as OpenSSL and the kernel reported it, which is what the
failure strings hinge on: asyncio's own TLS transport reports a FIN during
the handshake as ``ConnectionResetError``, erasing the difference between a
censor's RST (``connection_reset``) and its FIN (``eof_error``).

The connect and the handshake have separate timeouts and the record says
which one failed (``failed_operation``). The socket is created before ``t0``
and closed by a ``with`` block whatever happens. Nothing is sent after the
handshake but a ``close_notify`` (or, after a verification failure, the
alert OpenSSL queued), best effort, without waiting.

Peer certificates are summarized with ``cryptography``. Python < 3.13 only
exposes the leaf, and only after a successful handshake; from 3.13 on
``get_unverified_chain`` gives the whole chain as sent, even when
verification failed (useful evidence of interception).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections.abc import Sequence
from contextlib import suppress

from cryptography import x509

from probe.failures import failure_and_detail
from probe.format.vocab import Operation
from probe.net.tcp import dial, new_socket
from probe.records import Certificate, Clock, TlsHandshake

__all__ = ["handshake", "make_context"]

_RECV_SIZE = 65536
_ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


def make_context(
    ca_bundle: str | None, *, alpn: Sequence[str] = ("h2", "http/1.1")
) -> ssl.SSLContext:
    """A verifying client context: the system store, or only ``ca_bundle`` (a PEM file).

    Hostname checking is on and TLS 1.0/1.1 are refused. Raises OSError if
    ``ca_bundle`` cannot be read, ssl.SSLError if it holds no certificate.
    """
    context = ssl.create_default_context(cafile=ca_bundle or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(alpn))
    return context


async def handshake(
    ip: str,
    port: int,
    server_name: str,
    *,
    context: ssl.SSLContext,
    clock: Clock,
    connect_timeout: float,
    timeout: float,
    transaction_id: int,
    tags: tuple[str, ...] = (),
    keep_der: bool = False,
) -> TlsHandshake:
    """Connect to ``ip:port`` and handshake with SNI ``server_name``; record the outcome.

    Raises ValueError for a non-IP ``ip`` or an invalid ``server_name``.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    # Built before any packet leaves, so a bad server_name raises instead of being measured.
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with new_socket(ip, port) as sock:
        t0 = clock.now()
        failure: str | None = None
        failure_detail: str | None = None
        operation = Operation.CONNECT
        try:
            await dial(sock, ip, port, timeout=connect_timeout)
            operation = Operation.TLS_HANDSHAKE
            async with asyncio.timeout(timeout):
                await _drive(sock, tls, incoming, outgoing)
        except Exception as exc:  # every network outcome becomes a failure string
            failure, failure_detail = failure_and_detail(exc)
        t = clock.now()
        established = failure is None
        _goodbye(sock, tls, outgoing, established=established)
    # OpenSSL may know a cipher or ALPN before a failed verification: only a
    # completed handshake's parameters are recorded.
    cipher = tls.cipher() if established else None
    return TlsHandshake(
        ip=ip,
        port=port,
        server_name=server_name,
        failure=failure,
        failed_operation=None if established else operation,
        t0=t0,
        t=t,
        transaction_id=transaction_id,
        tags=tags,
        tls_version=tls.version() if established else None,
        cipher_suite=cipher[0] if cipher else None,
        negotiated_protocol=tls.selected_alpn_protocol() if established else None,
        peer_certificates=_peer_certificates(tls, keep_der=keep_der),
        no_tls_verify=context.verify_mode == ssl.CERT_NONE,
        failure_detail=failure_detail,
    )


async def _drive(
    sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO
) -> None:
    """Shuttle bytes between the socket and OpenSSL until the handshake completes or fails."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        if outgoing.pending:  # the ClientHello, or the client's Finished once done
            await loop.sock_sendall(sock, outgoing.read())
        if done:
            return
        data = await loop.sock_recv(sock, _RECV_SIZE)
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()  # the next do_handshake raises SSLEOFError


def _goodbye(
    sock: socket.socket, tls: ssl.SSLObject, outgoing: ssl.MemoryBIO, *, established: bool
) -> None:
    """Send close_notify (or the pending alert) if the socket takes it now; never wait."""
    if established:
        with suppress(ssl.SSLError):  # SSLWantReadError: the peer's close_notify is not awaited
            tls.unwrap()
    if outgoing.pending:
        with suppress(OSError):
            sock.send(outgoing.read())


def _peer_certificates(tls: ssl.SSLObject, *, keep_der: bool) -> tuple[Certificate, ...]:
    """The chain as the server sent it (3.13+), else the leaf once the handshake is done."""
    get_chain = getattr(tls, "get_unverified_chain", None)
    if get_chain is not None:
        chain: list[bytes] = get_chain()
    else:
        try:
            leaf = tls.getpeercert(binary_form=True)
        except ValueError:  # "handshake not done yet"
            return ()
        chain = [leaf] if leaf else []
    return tuple(_summarize(der, keep_der=keep_der) for der in chain)


def _summarize(der: bytes, *, keep_der: bool) -> Certificate:
    """Fingerprint, names and validity of one DER certificate."""
    sha256 = hashlib.sha256(der).hexdigest()
    kept = der if keep_der else None
    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = x509.SubjectAlternativeName([])
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
        return Certificate(
            sha256=sha256,
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            sans=tuple(names),
            not_before=cert.not_valid_before_utc.strftime(_ISO_UTC),
            not_after=cert.not_valid_after_utc.strftime(_ISO_UTC),
            der=kept,
        )
    except ValueError:  # a certificate cryptography cannot parse is still recorded, by hash
        return Certificate(sha256, "", "", (), "", "", kept)

"""Misbehaving loopback servers for the tests: real sockets, known behaviour.

Each server is a context manager bound to port 0 on ``127.0.0.1`` (or ``::1``)
that exposes ``.host`` and ``.port``. They run plain blocking sockets in
background threads (one acceptor, one thread per connection), so they work
whatever the test does with its own event loop, ``asyncio.run`` included.

A connection handler ends when the client goes away; leaving the ``with``
block also shuts every live connection down, so a handler stuck in ``recv``
or ``sendall`` returns, and nothing outlives the test.

What loopback cannot show: a connect timeout. A listening socket's SYN is
answered by the kernel even if nobody calls ``accept``, and a closed port
answers with RST; only a silent drop times a connect out, which the lab
covers with nftables ``drop`` rules inside its namespaces. Here, stalls are
tested one layer up (:class:`StallServer`, ``TlsServer(..., "stall")``).

HTTP handlers (``Handler``) receive the request bytes (up to the blank line)
and the socket, and write whatever they like: a blockpage, an endless body, a
slow drip. The server closes the socket when the handler returns; a handler
that calls :func:`reset` first makes that close an RST.
"""

from __future__ import annotations

import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.client import responses
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from probe.lab.censors.clienthello import parse_hello
from probe.lab.pki import Issued, write_pair

__all__ = [
    "Behaviour",
    "Endpoint",
    "Handler",
    "HttpServer",
    "ResetServer",
    "StallServer",
    "TlsServer",
    "fixed_response",
    "refusing_port",
    "reset",
]

Handler = Callable[[bytes, socket.socket], None]
Behaviour = Literal[
    "ok",
    "reset_after_client_hello",
    "close_after_client_hello",
    "stall",
    "stall_after_server_hello",
]

_MAX_REQUEST = 65536


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


@contextmanager
def refusing_port(host: str = "127.0.0.1") -> Iterator[Endpoint]:
    """A port with nothing listening: the kernel answers a SYN with RST.

    The socket stays bound (but not listening) for the duration, so no other
    process can grab the port in between.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield Endpoint(host, sock.getsockname()[1])


def reset(conn: socket.socket) -> None:
    """Make the coming ``close()`` send an RST instead of a FIN (SO_LINGER 0)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def fixed_response(
    body: bytes = b"ok\n", *, status: int = 200, headers: Sequence[tuple[str, str]] = ()
) -> Handler:
    """A handler that answers every request with one HTTP/1.1 response and closes."""
    reason = responses.get(status, "Unknown")
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers]
    response = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

    def handler(_request: bytes, conn: socket.socket) -> None:
        conn.sendall(response)

    return handler


class _Server:
    """Listener, acceptor thread, one thread per connection, orderly teardown."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._listener = socket.socket(_family(host), socket.SOCK_STREAM)
        self._listener.bind((host, port))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> Self:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # On Linux, shutting a listener down wakes a thread blocked in accept().
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join()
        with self._lock:
            live = list(self._live)
        for conn in live:
            # The plain socket's shutdown: SSLSocket.shutdown would drop its
            # SSL object under the feet of the handler thread.
            with suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._live.add(conn)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._handle(conn)
        except OSError:
            pass  # the client went away, or the test is over: both are normal here
        finally:
            self._forget(conn)
            conn.close()

    def _track(self, old: socket.socket, new: socket.socket) -> None:
        """Follow a connection that changed object (wrapped in TLS)."""
        with self._lock:
            self._live.discard(old)
            self._live.add(new)

    def _forget(self, conn: socket.socket) -> None:
        with self._lock:
            self._live.discard(conn)

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError


class ResetServer(_Server):
    """Accepts, reads the client's first bytes (or its FIN), then sends an RST.

    Waiting for data makes the outcome deterministic: an RST sent right after
    accept() races the client's own connect completion (seen as either a
    successful connect or ``connection_reset``, depending on scheduling).
    """

    def _handle(self, conn: socket.socket) -> None:
        conn.recv(65536)
        reset(conn)


class StallServer(_Server):
    """Accepts and reads everything, never writes a byte."""

    def _handle(self, conn: socket.socket) -> None:
        _drain(conn)


class HttpServer(_Server):
    """Plain HTTP: ``handler(request, conn)`` writes the response. ``.requests`` holds requests."""

    def __init__(
        self, handler: Handler | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host, port)
        self._handler = handler or fixed_response()
        self.requests: list[bytes] = []

    def _handle(self, conn: socket.socket) -> None:
        _answer(conn, self._handler, self.requests)


class TlsServer(_Server):
    """A TLS server with ``cert`` that completes, or sabotages, the handshake.

    ``behaviour``: ``"ok"`` handshakes, then serves HTTP with ``handler``
    (ALPN ``alpn``); the others read the ClientHello, then send an RST
    (``reset_after_client_hello``), a FIN (``close_after_client_hello``),
    nothing ever (``stall``) or a real ServerHello and nothing after it
    (``stall_after_server_hello``). ``.server_names`` lists the SNI of every
    ClientHello seen (None when absent); ``.requests`` the HTTP requests.
    """

    def __init__(
        self,
        cert: Issued,
        behaviour: Behaviour = "ok",
        *,
        handler: Handler | None = None,
        alpn: Sequence[str] = ("http/1.1",),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as directory:
            self._context.load_cert_chain(*write_pair(cert, Path(directory), "server"))
        self._context.set_alpn_protocols(list(alpn))
        self._context.sni_callback = self._saw_sni
        self._behaviour = behaviour
        self._handler = handler or fixed_response()
        self.server_names: list[str | None] = []
        self.requests: list[bytes] = []
        super().__init__(host, port)

    def _saw_sni(self, _conn: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.server_names.append(name)

    def _handle(self, conn: socket.socket) -> None:
        if self._behaviour == "ok":
            tls = self._context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            self._track(conn, tls)
            try:
                tls.do_handshake()
                _answer(tls, self._handler, self.requests)
            finally:
                self._forget(tls)
                tls.close()
            return
        record = _read_record(conn)
        hello = parse_hello(record)
        self.server_names.append(hello.server_name if hello else None)
        if self._behaviour == "reset_after_client_hello":
            reset(conn)
        elif self._behaviour == "stall":
            _drain(conn)
        elif self._behaviour == "stall_after_server_hello":
            conn.sendall(self._server_hello(record))
            _drain(conn)
        # close_after_client_hello: returning closes the socket with a FIN.

    def _server_hello(self, client_hello: bytes) -> bytes:
        """The first record OpenSSL answers ``client_hello`` with: a genuine ServerHello
        (the rest of its flight, the certificate included, is never sent)."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._context.wrap_bio(incoming, outgoing, server_side=True)
        incoming.write(client_hello)
        with suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        flight = outgoing.read()
        return flight[: 5 + int.from_bytes(flight[3:5], "big")]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _drain(conn: socket.socket) -> None:
    """Read and discard until the peer closes."""
    while conn.recv(65536):
        pass


def _answer(conn: socket.socket, handler: Handler, requests: list[bytes]) -> None:
    """Read one request head and let ``handler`` respond (nothing if the client sent nothing)."""
    request = b""
    while b"\r\n\r\n" not in request and len(request) < _MAX_REQUEST:
        chunk = conn.recv(65536)
        if not chunk:
            break
        request += chunk
    if request:
        requests.append(request)
        handler(request, conn)


def _read_record(conn: socket.socket) -> bytes:
    """One TLS record (the ClientHello), or what arrived before EOF."""
    data = b""
    while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data

"""``http_blockpage``: an in-path box answers plain-HTTP requests for a blocked Host.

While active, the router redirects the vantage point's port-80 connections
to a transparent proxy (:mod:`probe.lab.censors._redirect`). It reads the
request head; if the Host header (port stripped) is an active name it
answers ``200 OK`` with a blockpage itself and closes, else it forwards the
connection untouched to the original destination.

The pages are data files in ``probe/lab/blockpages/``, shaped like the
Pakistani ones whose fingerprints the probe knows: ``national`` (PTA's
"prohibited for viewership from within Pakistan"), ``jazz`` (the text
``http://119.73.65.87:8080/redirect.html?accessurl=`` followed by the
requested URL; only text, nothing ever contacts that address) and
``nayatel`` ("As per your subscription of Nayatel Safeweb service"); ``unknown`` matches
no fingerprint (:mod:`probe.lab.censors.field`).
"""

from __future__ import annotations

import asyncio
from importlib import resources
from string import Template
from typing import Final, Literal
from urllib.parse import quote

from probe.lab.censors._redirect import RedirectCensor, splice
from probe.lab.censors._types import RouterContext

__all__ = ["HttpBlockpage", "Style", "blockpage"]

Style = Literal["national", "jazz", "nayatel", "unknown"]

_HTTP_PORT: Final = 80
_CHUNK: Final = 65536
_MAX_HEAD: Final = 65536
_END_OF_HEAD: Final = b"\r\n\r\n"


def blockpage(style: Style, url: str) -> bytes:
    """The blockpage body of ``style`` for a request of ``url``."""
    source = resources.files("probe.lab").joinpath("blockpages", f"{style}.html")
    return Template(source.read_text("utf-8")).safe_substitute(url=quote(url, safe="")).encode()


class HttpBlockpage(RedirectCensor):
    name = "http_blockpage"

    def __init__(self, style: Style = "national") -> None:
        self._style: Style = style
        super().__init__(_HTTP_PORT)

    async def start(self, ctx: RouterContext) -> None:
        blockpage(self._style, "")  # a missing data file fails here, not at the first request
        await super().start(ctx)

    async def handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        destination: tuple[str, int],
    ) -> None:
        head = b""
        while _END_OF_HEAD not in head and len(head) < _MAX_HEAD:
            chunk = await reader.read(_CHUNK)
            if not chunk:
                return  # the client left before finishing its request
            head += chunk
        host, path = _host_and_path(head)
        if host not in self.active:
            await splice((reader, writer), destination, head)
            return
        body = blockpage(self._style, f"http://{host}{path}")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()


def _host_and_path(head: bytes) -> tuple[str, str]:
    """The Host header's name (lowercase, no port, no final dot) and the request target."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    path = parts[1].decode("latin-1") if len(parts) > 1 else "/"
    host = ""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            host = value.strip().decode("latin-1").lower()
            break
    if host.startswith("["):  # [v6]:port
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    return host.rstrip("."), path

"""The collector's HTTP API (OONI's bk-003 collector protocol), a Starlette app.

* ``POST /report`` opens a report: ``{"format": "json", "probe_asn", "probe_cc",
  "test_name", "software_name", "software_version", "test_version", "data_format_version"}``
  -> ``{"backend_version", "report_id", "supported_formats": ["json"]}``.
* ``POST /report/{id}`` adds one measurement: ``{"format": "json", "content": {...}}`` ->
  ``{"measurement_uid": ...}``, answered only once the line is fsynced in the archive. A
  measurement already held (same uid: a retry after a lost answer) is answered the same way
  and adds nothing.
* ``POST /report/{id}/close`` -> ``{"status": "success"}``. ``GET /health`` -> ``{"status":
  "ok"}``. No endpoint returns any measurement, nor says whether another probe sent one.

Every byte is hostile: a body is read up to ``max_body`` bytes, a gzip body (``Content-Encoding:
gzip``) is inflated up to ``max_inflated`` bytes (a gzip bomb stops there: 413), any other
encoding is a 415; each measurement is validated against probe/schema (a 400 names the
field); each report may add ``rate`` measurements a second (a burst of ``burst``), else 429
with Retry-After. With tokens configured, opening a report needs ``Authorization: Bearer
<token>`` and only the same token may add to or close that report (anyone else: 404).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import jsonschema_rs
import orjson
from starlette.applications import Starlette
from starlette.routing import Route

from probe import __version__
from probe.collector.store import ASN, Entry, Report, Store

__all__ = ["Limits", "create_app"]

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_NAME: Final = re.compile(r"^[0-9A-Za-z_.+-]{1,64}$")  # software_name/version, test_version
_TEST: Final = re.compile(r"^[a-zA-Z0-9_\- ]{1,64}$")
_CC: Final = re.compile(r"^[A-Z]{2}$")
_CACHED: Final = 100_000  # reports (and their rate budgets) kept in memory
_FIELDS: Final = {
    "probe_asn": ASN, "probe_cc": _CC, "test_name": _TEST, "software_name": _NAME,
    "software_version": _NAME, "test_version": _NAME, "data_format_version": _NAME,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 1 << 20  # bytes on the wire
    max_inflated: int = 4 << 20  # bytes after gzip inflation
    rate: float = 50.0  # measurements a second per report
    burst: float = 200.0


class Refused(Exception):
    """A request answered with a 4xx: status, message, and the field at fault if any."""

    def __init__(self, status: int, error: str, field: str | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.field = status, error, field


def _validator() -> Any:
    text = resources.files("probe").joinpath("schema/measurement.schema.json").read_text()
    return jsonschema_rs.validator_for(json.loads(text))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


@dataclass(frozen=True, slots=True)
class _Call:
    """What an endpoint reads of a request: the headers it needs, path parameters, the body.

    The endpoints are plain ASGI (Starlette routes to them): no Request, no JSONResponse,
    no exception-handling wrapper on the path that every measurement takes."""

    headers: Mapping[bytes, bytes]
    params: Mapping[str, str]
    receive: _Receive

    def header(self, name: bytes) -> str:
        return self.headers.get(name, b"").decode("latin-1")


_HEADERS: Final = frozenset({b"authorization", b"content-encoding", b"content-length"})


async def _body(call: _Call, limits: Limits) -> Any:
    """The request's JSON object, read and inflated within the limits."""
    declared = call.header(b"content-length")
    if declared.isdigit() and int(declared) > limits.max_body:
        raise Refused(413, f"body over {limits.max_body} bytes")
    chunks, size, more = [], 0, True
    while more:
        message = await call.receive()
        if message["type"] != "http.request":  # the client went away: nobody reads an answer
            raise Refused(400, "body: the client disconnected")
        chunk, more = message.get("body", b""), message.get("more_body", False)
        size += len(chunk)
        if size > limits.max_body:
            raise Refused(413, f"body over {limits.max_body} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    encoding = call.header(b"content-encoding").strip().lower() or "identity"
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, limits.max_inflated + 1)
        except zlib.error:
            raise Refused(400, "body: not gzip") from None
        if len(raw) > limits.max_inflated or inflater.unconsumed_tail:
            raise Refused(413, f"body over {limits.max_inflated} bytes once inflated")
        if not inflater.eof:
            raise Refused(400, "body: truncated gzip")
    elif encoding != "identity":
        raise Refused(415, f"unsupported Content-Encoding: {encoding}")
    try:  # strict: no NaN, no lone surrogate (no line it could not write back as JSON)
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused(400, "body: not JSON") from None
    if not isinstance(value, dict):
        raise Refused(400, "body: not a JSON object")
    return value


class _Bucket:
    """A token bucket: ``rate`` a second, at most ``burst`` saved."""

    def __init__(self, burst: float) -> None:
        self.tokens, self.at = burst, time.monotonic()

    def take(self, rate: float, burst: float) -> float:
        """0 when allowed, else the seconds until it would be."""
        now = time.monotonic()
        self.tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


class _Collector:
    def __init__(self, data: Path, limits: Limits, tokens: frozenset[str]) -> None:
        self.data, self.limits, self.tokens = data, limits, tokens
        self.validate = _validator()
        self.meta_pool = ThreadPoolExecutor(1, "collector-meta")
        self.queue: asyncio.Queue[tuple[Entry, asyncio.Future[None]]] = asyncio.Queue()
        self.reports: dict[str, Report] = {}
        self.buckets: dict[str, _Bucket] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.meta = await loop.run_in_executor(self.meta_pool, Store, self.data)
        self.writer_store = await loop.run_in_executor(self.meta_pool, Store, self.data)
        await loop.run_in_executor(self.meta_pool, self.writer_store.recover)
        self.writer = asyncio.create_task(self._write_loop())

    async def stop(self) -> None:
        self.writer.cancel()
        await asyncio.gather(self.writer, return_exceptions=True)
        self.meta.close()
        self.writer_store.close()
        self.meta_pool.shutdown()

    async def _write_loop(self) -> None:
        """Group commit: whatever queued while the last batch was written goes in one fsync."""
        with ThreadPoolExecutor(1, "collector-writer") as pool:
            loop = asyncio.get_running_loop()
            while True:
                batch = [await self.queue.get()]
                while not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                try:
                    await loop.run_in_executor(pool, self.writer_store.add, [e for e, _ in batch])
                except Exception as exc:  # a full disk: nothing acknowledged, clients retry
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    def _who(self, call: _Call) -> str:
        """The token hash of the request ("" anonymous); 401 when tokens are required."""
        auth = call.header(b"authorization")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not self.tokens:
            return ""
        digest = token_hash(token)
        if digest not in self.tokens:
            raise Refused(401, "a valid probe token is required (Authorization: Bearer)")
        return digest

    async def _report(self, report_id: str, who: str) -> Report:
        report = self.reports.get(report_id)
        if report is None and len(report_id) <= 128:
            loop = asyncio.get_running_loop()
            report = await loop.run_in_executor(self.meta_pool, self.meta.report, report_id)
        if report is None or report.token != who:  # another probe's report looks absent
            raise Refused(404, "no such report")
        if len(self.reports) >= _CACHED:  # bounded memory: the store still has them all
            self.reports.clear()
        self.reports[report_id] = report
        return report

    async def open(self, call: _Call) -> Mapping[str, Any]:
        who = self._who(call)
        body = await _body(call, self.limits)
        if body.get("format", "json") != "json":
            raise Refused(400, "format: only json is supported", "format")
        for name, pattern in _FIELDS.items():
            value = body.get(name)
            if not isinstance(value, str) or not pattern.match(value):
                raise Refused(400, f"{name}: missing or invalid", name)
        loop = asyncio.get_running_loop()
        report_id = await loop.run_in_executor(
            self.meta_pool, self.meta.open_report,
            body["probe_asn"], body["probe_cc"], body["test_name"], who,
        )  # fmt: skip
        return {"backend_version": __version__, "report_id": report_id,
                "supported_formats": ["json"]}  # fmt: skip

    async def add(self, call: _Call) -> Mapping[str, Any]:
        who = self._who(call)
        report = await self._report(call.params["report_id"], who)
        if report.closed:
            raise Refused(409, "report closed")
        if len(self.buckets) >= _CACHED and report.id not in self.buckets:
            self.buckets.clear()  # bounded memory; a report's budget restarts full at worst
        bucket = self.buckets.setdefault(report.id, _Bucket(self.limits.burst))
        wait = bucket.take(self.limits.rate, self.limits.burst)
        if wait:
            raise Refused(429, f"over {self.limits.rate:g} measurements/s for this report")
        entry = self._entry(report, await _body(call, self.limits))
        done = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((entry, done))
        await done  # the fsync that covers the line
        return {"measurement_uid": entry.uid}

    def _entry(self, report: Report, body: Any) -> Entry:
        """The measurement in ``body``, checked, as an entry to store. The parsed measurement
        (hundreds of dicts and lists) dies when this returns rather than waiting out its
        fsync: dozens waiting at once made the garbage collector walk them over and over."""
        content = body.get("content")
        if body.get("format", "json") != "json" or not isinstance(content, dict):
            raise Refused(400, "content: expected a JSON object (format json)", "content")
        try:
            self.validate.validate(content)
        except jsonschema_rs.ValidationError as exc:
            field = ".".join(map(str, exc.instance_path)) or None
            raise Refused(400, f"content: {exc.message[:300]}", field) from None
        except RecursionError:  # nested deeper than the validator goes: no measurement is
            raise Refused(400, "content: nested too deep") from None
        for name in ("report_id", "probe_asn", "probe_cc", "test_name"):
            want = report.id if name == "report_id" else getattr(report, name)
            if content.get(name) != want:
                raise Refused(400, f"{name}: does not match the report's", name)
        return Entry.of(content, orjson.dumps(content))  # compact UTF-8, ~10x json.dumps'

    async def close(self, call: _Call) -> Mapping[str, Any]:
        who = self._who(call)
        report = await self._report(call.params["report_id"], who)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.meta_pool, self.meta.close_report, report.id)
        self.reports.pop(report.id, None)
        self.buckets.pop(report.id, None)
        return {"status": "success"}


class _Endpoint:
    """An endpoint as an ASGI app: its answer, or a Refused's, as JSON."""

    def __init__(self, method: Callable[[_Call], Awaitable[Mapping[str, Any]]]) -> None:
        self.method = method

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        headers = {k: v for k, v in scope["headers"] if k in _HEADERS}
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, answer = 200, await self.method(_Call(headers, scope["path_params"], receive))
        except Refused as exc:
            status, answer = exc.status, {"error": exc.error}
            if exc.field:
                answer["field"] = exc.field
            if exc.status == 429:
                extra.append((b"retry-after", b"1"))
        except (OSError, sqlite3.Error) as exc:  # a full disk, a lock held too long: retry
            status, answer = 503, {"error": f"storage: {exc}"}
        body = orjson.dumps(answer)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *extra,
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def create_app(data: Path, limits: Limits = Limits(), tokens: frozenset[str] = frozenset()) -> Any:
    """The ASGI app storing under ``data``; ``tokens`` are sha256 hex digests of the tokens."""
    collector = _Collector(data, limits, tokens)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await collector.start()
        yield
        await collector.stop()

    async def health(_: _Call) -> Mapping[str, Any]:
        return {"status": "ok"}

    routes = [
        Route("/report", _Endpoint(collector.open), methods=["POST"]),
        Route("/report/{report_id}", _Endpoint(collector.add), methods=["POST"]),
        Route("/report/{report_id}/close", _Endpoint(collector.close), methods=["POST"]),
        Route("/health", _Endpoint(health), methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)

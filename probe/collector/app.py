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
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import jsonschema_rs
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from probe import __version__
from probe.collector.store import ASN, Entry, Report, Store

__all__ = ["Limits", "create_app"]

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


async def _body(request: Request, limits: Limits) -> Any:
    """The request's JSON object, read and inflated within the limits."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body:
        raise Refused(413, f"body over {limits.max_body} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body:
            raise Refused(413, f"body over {limits.max_body} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
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

    def _who(self, request: Request) -> str:
        """The token hash of the request ("" anonymous); 401 when tokens are required."""
        auth = request.headers.get("authorization", "")
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

    async def open(self, request: Request) -> Mapping[str, Any]:
        who = self._who(request)
        body = await _body(request, self.limits)
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

    async def add(self, request: Request) -> Mapping[str, Any]:
        who = self._who(request)
        report = await self._report(request.path_params["report_id"], who)
        if report.closed:
            raise Refused(409, "report closed")
        if len(self.buckets) >= _CACHED and report.id not in self.buckets:
            self.buckets.clear()  # bounded memory; a report's budget restarts full at worst
        bucket = self.buckets.setdefault(report.id, _Bucket(self.limits.burst))
        wait = bucket.take(self.limits.rate, self.limits.burst)
        if wait:
            raise Refused(429, f"over {self.limits.rate:g} measurements/s for this report")
        body = await _body(request, self.limits)
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
        line = orjson.dumps(content)  # compact UTF-8, 10-20x faster than json.dumps
        done = asyncio.get_running_loop().create_future()
        await self.queue.put((Entry(content, line), done))
        await done
        return {"measurement_uid": content["measurement_uid"]}

    async def close(self, request: Request) -> Mapping[str, Any]:
        who = self._who(request)
        report = await self._report(request.path_params["report_id"], who)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.meta_pool, self.meta.close_report, report.id)
        self.reports.pop(report.id, None)
        self.buckets.pop(report.id, None)
        return {"status": "success"}


def _endpoint(method: Any) -> Any:
    async def endpoint(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await method(request))
        except Refused as exc:
            body: dict[str, Any] = {"error": exc.error}
            if exc.field:
                body["field"] = exc.field
            headers = {"Retry-After": "1"} if exc.status == 429 else None
            return JSONResponse(body, exc.status, headers=headers)
        except (OSError, sqlite3.Error) as exc:  # a full disk, a lock held too long: retry
            return JSONResponse({"error": f"storage: {exc}"}, 503)

    return endpoint


def create_app(data: Path, limits: Limits = Limits(), tokens: frozenset[str] = frozenset()) -> Any:
    """The ASGI app storing under ``data``; ``tokens`` are sha256 hex digests of the tokens."""
    collector = _Collector(data, limits, tokens)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await collector.start()
        yield
        await collector.stop()

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/report", _endpoint(collector.open), methods=["POST"]),
        Route("/report/{report_id}", _endpoint(collector.add), methods=["POST"]),
        Route("/report/{report_id}/close", _endpoint(collector.close), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)

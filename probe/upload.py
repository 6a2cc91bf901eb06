"""Upload: an on-disk outbox of measurements, sent to a collector (OONI's protocol).

:class:`Batch` writes a campaign's measurements, as they are made, to one file
``outbox/<time>-<random>.jsonl`` in the state folder, published atomically (fsynced, renamed)
when the campaign ends (:func:`enqueue`: a list at once). :func:`send` sends what is there: per
probe report id one collector report (``POST /report``), each measurement in it (``POST
/report/{id}``, gzip JSON, its ``report_id`` the collector's, as bk-003 asks), then ``POST
/report/{id}/close``. Every acknowledged uid is appended (fsynced) to ``<file>.done``; a
file whose every line is done is deleted. A crash or a power cut at any point loses nothing
(the outbox file stays until all is acknowledged) and duplicates nothing in the archive:
a measurement sent but not yet marked done is sent again, and the collector keeps one copy
per measurement_uid.

Before anything leaves the machine, :func:`probe.format.writer.holds_address` checks it does not
hold the probe's address (``probe_ip`` other than 127.0.0.1, or the public address where the
scrub would replace it): such a measurement is never sent; it goes to ``outbox/refused.jsonl``
with an error log line, as does one the collector refuses for good (a 4xx other than 404,
409, 415, 429). Transient failures (no connection, a timeout, a 5xx, a 429) are retried after
``min(60, 2^n) x U(0.5, 1.5)`` seconds, until ``[upload] max_time``; what is left is sent next
time. A 404 or 409 (the collector lost or closed the report) opens a new report; a 415 turns
gzip off. ``[upload] proxy`` (``socks5h://``: names resolved by the proxy, e.g. Tor) and
``ca_bundle`` (only that CA may vouch for the collector) shape the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import os
import random
import secrets
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import httpx

from probe import store
from probe.config import Upload
from probe.format.writer import holds_address

__all__ = ["OUTBOX", "Batch", "Sent", "enqueue", "pending", "send"]

OUTBOX: Final = "outbox"
REFUSED: Final = "refused.jsonl"
_RETRY_CAP: Final = 60.0
log = logging.getLogger("probe")


@dataclass(slots=True)
class Sent:
    sent: int = 0  # acknowledged by the collector (new or already held)
    refused: int = 0  # never sent (holds the address) or refused by the collector
    left: int = 0  # still in the outbox


class _GiveUp(Exception):
    """The upload's time is over: what is left stays in the outbox."""


class _Refused(Exception):
    """The collector refused this measurement for good (a 4xx with a reason)."""


class _Reopen(Exception):
    """The collector does not know (or closed) the report: open another."""


class Batch:
    """One outbox file written a measurement at a time while a campaign runs, published
    (fsynced, renamed to ``outbox/<time>-<random>.jsonl``) by :meth:`close`: :func:`send`
    never sees a half-written file; a crash before the close leaves a hidden temporary file
    (the results folder has those measurements)."""

    def __init__(self, state: Path) -> None:
        self.path = state / OUTBOX / f"{time.time_ns()}-{secrets.token_hex(4)}.jsonl"
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._file: IO[bytes] | None = None

    def add(self, m: Mapping[str, Any]) -> None:
        if self._file is None:
            self._tmp.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._tmp, "wb")  # noqa: SIM115  # open until close()
        self._file.write(json.dumps(m, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")

    def close(self) -> Path | None:
        """Publish what was added; None when nothing was."""
        f, self._file = self._file, None
        if f is None:
            return None
        with f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(self._tmp, self.path)
        store.fsync_folder(self.path.parent)
        return self.path


def enqueue(state: Path, measurements: Iterable[Mapping[str, Any]]) -> Path | None:
    """Put measurements in the outbox (one fsynced file); None when there were none."""
    batch = Batch(state)
    for m in measurements:
        batch.add(m)
    return batch.close()


def pending(state: Path) -> list[Path]:
    """The outbox files, oldest first."""
    folder = state / OUTBOX
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def _done(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def _client(u: Upload) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = True
    if u.ca_bundle:  # pinned: the system's CAs are not asked
        verify = ssl.create_default_context(cafile=u.ca_bundle)
    headers = {"Authorization": f"Bearer {u.token}"} if u.token else {}
    return httpx.AsyncClient(
        base_url=u.url.rstrip("/"), verify=verify, proxy=u.proxy or None,
        timeout=u.timeout, headers=headers, trust_env=False,
    )  # fmt: skip


class _Sender:
    def __init__(self, client: httpx.AsyncClient, deadline: float, rng: random.Random) -> None:
        self.client, self.deadline, self.rng = client, deadline, rng
        self.gzip = True

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST with retries of transient failures; the JSON answer of a 200."""
        failures = 0
        while True:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json"}
            if self.gzip:
                data, headers["Content-Encoding"] = gzip.compress(data, 5), "gzip"
            wait = None
            try:
                r = await self.client.post(path, content=data, headers=headers)
            except httpx.TransportError as exc:  # no connection, a timeout, the proxy's
                why = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code == 200:
                    answer = r.json()
                    return answer if isinstance(answer, dict) else {}
                why = f"HTTP {r.status_code} {r.text[:200]}"
                if r.status_code == 415 and self.gzip:
                    self.gzip = False
                    continue
                if r.status_code in (404, 409):
                    raise _Reopen(why)
                if r.status_code < 500 and r.status_code != 429:
                    raise _Refused(why)
                retry_after = r.headers.get("retry-after", "")
                wait = float(retry_after) if retry_after.isdigit() else None
            failures += 1
            if wait is None:
                wait = min(_RETRY_CAP, 2.0 ** (failures - 1)) * (0.5 + self.rng.random())
            if time.monotonic() + wait > self.deadline:
                raise _GiveUp(why)
            log.info("upload: %s; retrying in %.1f s", why, wait)
            await asyncio.sleep(wait)

    async def open(self, m: Mapping[str, Any]) -> str:
        keys = ("probe_asn", "probe_cc", "test_name", "software_name", "software_version",
                "test_version", "data_format_version")  # fmt: skip
        answer = await self.post("/report", {"format": "json", **{k: m.get(k) for k in keys}})
        report_id = answer.get("report_id")
        if not isinstance(report_id, str) or not report_id:
            raise _GiveUp("the collector gave no report_id")
        return report_id


async def send(
    state: Path, u: Upload, scrub: frozenset[str] = frozenset(), rng: random.Random | None = None
) -> Sent:
    """Send the outbox to ``u.url`` within ``u.max_time``; never raises for a network outcome."""
    result, rng = Sent(), rng or random.Random()
    sender = _Sender(_client(u), time.monotonic() + u.max_time, rng)
    files = pending(state)
    try:
        async with sender.client:
            for n, path in enumerate(files):
                try:
                    await _send_file(sender, state, path, scrub, result)
                except _GiveUp as exc:
                    result.left += sum(_left(p) for p in files[n:])
                    log.warning("upload: stopped (%s); %d measurements wait in the outbox",
                                exc, result.left)  # fmt: skip
                    break
    except OSError as exc:  # the outbox itself (permissions, a full disk)
        log.error("upload: the outbox in %s cannot be used: %s", state, exc)
    return result


def _left(path: Path) -> int:
    return len(_unsent(path, _read_done(path)))


def _read_done(path: Path) -> set[str]:
    try:
        return set(_done(path).read_text().split())
    except FileNotFoundError:
        return set()


def _unsent(path: Path, done: set[str]) -> list[dict[str, Any]]:
    return [m for m in store.read([path]) if m.get("measurement_uid") not in done]


def _mark(path: Path, uid: str) -> None:
    fd = os.open(_done(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, uid.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def _refuse(
    state: Path, path: Path, m: Mapping[str, Any], why: str, result: Sent, *, keep: bool
) -> None:
    log.error("upload: measurement %s of %s not sent: %s",
              m.get("measurement_uid"), m.get("input"), why)  # fmt: skip
    if keep:  # for the volunteer to look at (the results folder has it too)
        store.append(state / OUTBOX / REFUSED, [{"reason": why, "measurement": m}])
    _mark(path, str(m.get("measurement_uid")))
    result.refused += 1


async def _send_file(
    sender: _Sender, state: Path, path: Path, scrub: frozenset[str], result: Sent
) -> None:
    reports: dict[str, str] = {}  # the probe's report_id -> the collector's
    for m in _unsent(path, _read_done(path)):
        uid = str(m.get("measurement_uid"))
        if holds_address(m, scrub):
            _refuse(state, path, m, "it holds the probe's own address", result, keep=False)
            continue
        key = str(m.get("report_id"))
        for _ in range(3):  # a report lost or closed at the collector: open another
            if key not in reports:
                try:
                    reports[key] = await sender.open(m)
                except (_Refused, _Reopen) as exc:  # a bad token, a wrong URL: ask a human
                    raise _GiveUp(f"the collector refused a new report: {exc}") from None
            try:
                await sender.post(
                    f"/report/{reports[key]}",
                    {"format": "json", "content": {**m, "report_id": reports[key]}},
                )
            except _Reopen:
                del reports[key]
                continue
            except _Refused as exc:
                _refuse(state, path, m, f"the collector refused it: {exc}", result, keep=True)
            else:
                _mark(path, uid)
                result.sent += 1
            break
        else:
            raise _GiveUp("the collector keeps losing its reports")
    for report_id in reports.values():
        with contextlib.suppress(_Reopen, _Refused):  # a courtesy: nothing depends on it
            await sender.post(f"/report/{report_id}/close", {})
    path.unlink()
    _done(path).unlink(missing_ok=True)

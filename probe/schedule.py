"""Unattended runs: a thin loop that measures when :mod:`probe.schedule_policy` decides.

:class:`Runner` does the I/O of one unattended campaign: housekeeping of the results
folder (:mod:`probe.rotate`), the low-disk guard, identity and VPN check
(:mod:`probe.identity`), the campaign under its time budget, its measurements through
:mod:`probe.pipeline` (verdict, storage, index).
:func:`loop` is ``probe schedule``: it sleeps on the monotonic clock, so wall-clock
changes do not move it, and stops on :class:`Stop`: the first signal lets the current
campaign finish within ``stop_grace`` seconds, a second one abandons it at once. Each
measurement is written (fsynced) as soon as it is complete, so an abandoned campaign (a
stop, its budget, a crash) leaves the measurements it finished, and no partial one.
:class:`Lock` (``flock`` on ``.probe-run.lock`` in the results folder) keeps two unattended
runs from measuring into the same folder at the same time (their housekeeping, compression
and cap would race); two schedulers with different configs and results folders on one
machine both run. The kernel drops it when its process dies, so a stale or garbled lock file
is simply reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, TypeVar

from probe import campaign, rotate, store, upload
from probe.config import Config
from probe.format.vocab import Trigger
from probe.identity import Discovery, discover
from probe.pipeline import Outcome, Writer
from probe.schedule_policy import (
    POISSON_CAP,
    TargetState,
    backoff,
    bursting,
    next_start,
    plan,
    regular_wait,
    spot_wait,
    spotted,
    track,
)

__all__ = [
    "Lock",
    "LockHeld",
    "LockUnusable",
    "Runner",
    "Stop",
    "loop",
    "once",
    "summary",
]

T = TypeVar("T")
LOCK_FILE: Final = ".probe-run.lock"
BACKOFF_FILE: Final = "backoff.json"
log = logging.getLogger("probe")


# -- I/O -----------------------------------------------------------------------------------


class LockHeld(Exception):
    """Another unattended run holds the lock; the message names its pid when known."""


class LockUnusable(Exception):
    """The lock file cannot be opened (owned by another user, a read-only results folder)."""


class Lock:
    """An exclusive, non-blocking ``flock`` on ``<results folder>/.probe-run.lock`` holding
    our pid: one unattended run per results folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self._file: IO[str] | None = None

    def __enter__(self) -> Lock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = open(self.path, "a+")  # held open for the life of the lock
        except OSError as exc:
            raise LockUnusable(
                f"cannot open the run lock {self.path} ({exc.strerror}): if a run as another "
                "user (sudo) left it, give it to the user that runs the probe (chown)"
            ) from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read(32).strip()
            f.close()
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise LockHeld(
                f"another probe run is measuring into {self.path.parent} ({who} holds {self.path})"
            ) from None
        f.seek(0)
        f.truncate()  # whatever was there (a crashed run's pid, garbage) is rebuilt
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the flock
            self._file = None


class Stop:
    """Stop requests from signals: the first asks to stop, the second to stop now."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.urgent = asyncio.Event()

    def signal(self) -> None:
        if self.requested.is_set():
            self.urgent.set()
        self.requested.set()


class Runner:
    """One unattended campaign at a time: guard, identity, measure under budget, store."""

    def __init__(self, config: Config, output: Path, state: Path) -> None:
        self.config, self.output, self.state = config, output, state
        self._low_disk = False

    def housekeeping(self, now: float | None = None) -> bool:
        """Compress past days, apply the cap; False while the disk is too full to measure."""
        s = self.config.storage
        try:
            for path in rotate.remove_stale_temps(self.output):
                log.warning("removed %s, left by a killed compression", path.name)
            if s.compress:
                rotate.compress_past_days(self.output, now)
            for path in rotate.enforce_cap(self.output, s.max_mb << 20, now):
                log.warning("storage cap of %d MB reached: deleted %s", s.max_mb, path.name)
            low = rotate.low_disk(self.output, s.min_free_mb << 20)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):  # not space: say what it is
                log.error("cannot use the results folder %s: %s; nothing is measured until "
                          "that is fixed", self.output, exc)  # fmt: skip
                return False
            log.error("storage housekeeping failed in %s: %s", self.output, exc)  # nothing lost
            low = True
        if low != self._low_disk:
            self._low_disk = low
            if low:
                log.error(
                    "less than %d MB free for %s: measuring stops until space is freed",
                    s.min_free_mb,
                    self.output,
                )
            else:
                log.info("disk space is back above %d MB: measuring again", s.min_free_mb)
        return not low

    async def vantage(self) -> Discovery:
        found = await discover(self.config, self.state)
        for warning in found.warnings:
            log.warning("%s", warning)
        return found

    async def measure(
        self,
        found: Discovery,
        trigger: Trigger,
        targets: tuple[str, ...] | None = None,
        each: Callable[[dict[str, Any]], None] | None = None,
    ) -> Outcome:
        """Measure (``targets`` only, if given) within the budget, each measurement written
        as soon as it is complete (then handed to ``each``); what was written.

        Raises ``TimeoutError`` over budget (what was complete by then is written) and
        ``OSError`` when storing fails.
        """
        config = self.config.only(targets) if targets is not None else self.config
        outbox = upload.Batch(self.state) if self.config.upload.url else None
        writer = Writer(config, found, trigger, self.output, outbox, each)
        try:
            async with asyncio.timeout(self.config.schedule.budget):
                await campaign.stream(config, writer)
        finally:
            if outbox is not None:  # what was written is sent too, of an abandoned campaign
                outbox.close()
        return writer.outcome()

    async def upload(self, found: Discovery) -> upload.Sent:
        """Send the outbox ([upload]); one log line. Never raises for a network outcome."""
        sent = await upload.send(self.state, self.config.upload, found.scrub)
        log.info("upload to %s: %d sent, %d refused, %d left in the outbox",
                 self.config.upload.url, sent.sent, sent.refused, sent.left)  # fmt: skip
        return sent


def summary(outcome: Outcome, seconds: float) -> str:
    """One log line: how many targets in each verdict status, and where they went."""
    counts: dict[str, int] = {}
    for status in outcome.statuses.values():
        counts[status] = counts.get(status, 0) + 1
    words = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no targets"
    return (
        f"{len(outcome.statuses)} targets ({words}) in {seconds:.1f} s; "
        f"{outcome.count} measurements appended to {outcome.path}"
    )


async def _guarded(work: Awaitable[T], stop: Stop, grace: float) -> T | None:
    """``work``'s result; on a stop request, give it ``grace`` seconds, then abandon it."""
    task = asyncio.ensure_future(work)
    requested = asyncio.ensure_future(stop.requested.wait())
    urgent = asyncio.ensure_future(stop.urgent.wait())
    try:
        await asyncio.wait({task, requested}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            log.info("stopping: letting the current campaign finish (up to %g s)", grace)
            await asyncio.wait({task, urgent}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            log.warning("stopping: current campaign abandoned (what it finished is written)")
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return None
        return task.result()
    finally:
        requested.cancel()
        urgent.cancel()


async def loop(
    runner: Runner,
    stop: Stop,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] | None = None,
    max_campaigns: int | None = None,
) -> tuple[int, int]:
    """``probe schedule``: campaigns until ``stop`` (or ``max_campaigns``); how many ran, and
    how many of the last ones failed in a row (0: the last campaign was measured and stored)."""
    policy = runner.config.schedule
    rng = rng or random.Random()
    longest = max(policy.max_backoff, policy.interval * max(POISSON_CAP, 1 + policy.jitter))
    states: dict[str, TargetState] = {}
    failures = campaigns = 0
    regular_at = burst_at = clock()
    spot_at = math.inf  # planned once there are verdicts
    found: Discovery | None = None
    while not stop.requested.is_set() and (max_campaigns is None or campaigns < max_campaigns):
        now = clock()
        targets = bursting(states, now) if failures == 0 else ()
        spots = spotted(states, now) if failures == 0 else ()
        step = plan(
            next_start(regular_at, now, longest), next_start(burst_at, now, longest), targets,
            next_start(spot_at, now, longest), spots,
        )  # fmt: skip
        if await _wait(step.at, stop, clock, longest, progress):
            break
        started, regular = clock(), step.targets is None
        if step.spot:
            spot_at = started + spot_wait(states, policy.interval, rng.random())
        else:
            burst_at = started + policy.burst_interval  # also when skipped: no busy loop
        if regular:
            delay = regular_wait(policy, rng.random())
            regular_at = started + backoff(delay, failures, policy.max_backoff)
        if not runner.housekeeping():
            continue
        if regular or found is None:
            found = await _guarded(runner.vantage(), stop, policy.stop_grace)
            if found is None:
                break
        if found.vpn and policy.skip_vpn:
            if regular:
                log.warning(
                    "skipping this campaign: %s (a VPN?); set [schedule] skip_vpn = false "
                    "to measure anyway",
                    found.vpn,
                )
            continue
        campaigns += 1
        what = "spot check" if step.spot else "burst"
        kind = "regular" if step.targets is None else f"{what} of {', '.join(step.targets)}"
        log.info("campaign %d (%s) started", campaigns, kind)
        try:
            trigger = (
                Trigger.SCHEDULE if step.targets is None
                else Trigger.SPOT if step.spot else Trigger.BURST
            )  # fmt: skip
            outcome = await _guarded(
                runner.measure(found, trigger, step.targets), stop, policy.stop_grace
            )
        except TimeoutError:
            failures += 1
            log.error("campaign %d abandoned: over its %g s budget", campaigns, policy.budget)
            continue
        except OSError as exc:  # storing failed (a full disk): the lines before are intact
            failures += 1
            log.error("campaign %d could not be stored: %s", campaigns, exc)
            continue
        except Exception as exc:  # a failure of the probe itself: back off, keep going
            failures += 1
            log.exception("campaign %d failed (%d in a row): %s", campaigns, failures, exc)
            continue
        if outcome is None:
            break
        failures = 0
        log.info("campaign %d done: %s", campaigns, summary(outcome, clock() - started))
        uploading = runner.config.upload.url
        if uploading and await _guarded(runner.upload(found), stop, policy.stop_grace) is None:
            break
        before = bursting(states, clock())
        states = track(states, outcome.statuses, clock(), policy.burst_duration)
        if spot_at == math.inf and states:
            spot_at = clock() + spot_wait(states, policy.interval, rng.random())
        for target in sorted(set(bursting(states, clock())) - set(before)):
            log.info(
                "%s is now %s: re-measuring it every %g s for %g s",
                target,
                states[target].status,
                policy.burst_interval,
                policy.burst_duration,
            )
    return campaigns, failures


async def once(runner: Runner, now: float | None = None) -> int:
    """``probe run --once`` (cron, a systemd timer): one campaign, with the loop's guards.

    Backoff across runs: after ``n`` consecutive failures the failure count and time are
    kept in ``backoff.json``, and runs are skipped until ``backoff(interval, n)`` minus
    half an interval has passed (the timer fires every interval, so spacing doubles).
    """
    policy, now = runner.config.schedule, time.time() if now is None else now
    failures, until = _read_backoff(runner.state)
    if now < until <= now + policy.max_backoff:  # a later `until`: the clock went back
        log.warning("skipping this run: backing off after %d failures in a row", failures)
        return 0
    if not runner.housekeeping(now):
        return 1
    found = await runner.vantage()
    if found.vpn and policy.skip_vpn:
        log.warning(
            "skipping this run: %s (a VPN?); set [schedule] skip_vpn = false to measure anyway",
            found.vpn,
        )
        return 0
    started = time.monotonic()
    try:
        outcome = await runner.measure(found, Trigger.CRON)
    except (TimeoutError, OSError) as exc:
        failures += 1
        wait = backoff(policy.interval, failures, policy.max_backoff) - policy.interval / 2
        _write_backoff(runner.state, failures, now + wait)
        why = f"over its {policy.budget:g} s budget" if isinstance(exc, TimeoutError) else exc
        log.error("campaign failed (%d in a row): %s", failures, why)
        return 1
    (runner.state / BACKOFF_FILE).unlink(missing_ok=True)  # a success ends any backoff
    log.info("campaign done: %s", summary(outcome, time.monotonic() - started))
    if runner.config.upload.url:
        await runner.upload(found)
    return 0


def _read_backoff(state: Path) -> tuple[int, float]:
    """(consecutive failures, skip runs until); a missing or corrupt file is (0, 0.0)."""
    try:
        data = json.loads((state / BACKOFF_FILE).read_bytes())
        return int(data["failures"]), float(data["until"])
    except (OSError, ValueError, TypeError, KeyError):
        return 0, 0.0


def _write_backoff(state: Path, failures: int, until: float) -> None:
    data = json.dumps({"failures": failures, "until": until}).encode() + b"\n"
    store.atomic_write(state / BACKOFF_FILE, data)


async def _wait(
    at: float,
    stop: Stop,
    clock: Callable[[], float],
    longest: float,
    progress: Callable[[str], None] | None,
) -> bool:
    """Sleep until ``at`` on ``clock``; True if a stop was requested meanwhile."""
    while (left := at - clock()) > 0:
        if left > longest:  # the clock went back: do not wait longer than a whole wait
            at = clock() + longest
            continue
        if progress is not None:
            progress(f"next campaign in {math.ceil(left) // 60}:{math.ceil(left) % 60:02d}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.requested.wait(), min(left, 1.0) if progress else left)
        if stop.requested.is_set():
            return True
    return stop.requested.is_set()

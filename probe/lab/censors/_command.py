"""Run a tool (``nft``, ``tc``) of the router from its asyncio loop.

The child is forked from the router thread, so it inherits that thread's
network namespace: ``nft`` and ``tc`` act on the router, never the host.
A failure raises :class:`CommandError` with the tool's stderr, because a
censor that silently failed to install would make the lab lie.
"""

from __future__ import annotations

import asyncio

__all__ = ["CommandError", "run"]


class CommandError(RuntimeError):
    """A tool exited non-zero; the message holds its command line and stderr."""


async def run(*argv: str, stdin: str = "") -> None:
    """Run ``argv`` with ``stdin``; raise :class:`CommandError` unless it exits 0."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate(stdin.encode())
    if process.returncode != 0:
        raise CommandError(f"{' '.join(argv)} failed: {stderr.decode(errors='replace').strip()}")

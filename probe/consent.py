"""Informed consent: what running this probe risks, asked once and recorded.

A censorship probe sends traffic that the volunteer's ISP (and whoever watches it)
can see, from the volunteer's own connection. The first interactive run shows
:data:`TEXT` and asks; unattended runs (``probe schedule``, ``probe run --once``)
never ask: they refuse until consent is recorded (``probe consent``) or the config
says ``[vantage] consent = true`` (an automated install whose owner read the text).

Consent lives in ``consent.json`` in the state directory (:func:`probe.state.state_dir`),
written atomically. A corrupt file counts as "no consent" and is rewritten the
next time consent is given: never fatal. :data:`VERSION` goes up when the text
changes in substance, so a volunteer is asked again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Final, TextIO

from probe import store

__all__ = ["FILE", "TEXT", "VERSION", "ask", "record", "recorded", "withdraw"]

VERSION: Final = 1
FILE: Final = "consent.json"

TEXT: Final = """\
Before you run this probe, please read this.

What it does: it connects to X (Twitter) and to a few control sites from your
internet connection, every few minutes when scheduled, and records how each
attempt went (DNS answers, connection errors, TLS and HTTP results).

Risks:
- Your ISP, and anyone who can watch its network, sees that your connection
  tries to reach X. This traffic looks like an ordinary X app or browser, but it
  is regular and automated, and it comes from you.
- In some countries, testing or circumventing censorship can carry legal or
  other risks. We cannot tell you what the law or the authorities where you live
  will do. If you are unsure, do not run the probe.
- Do not run it on a network you do not own or are not allowed to use (an
  employer's, a university's) without permission.

What is kept and published: the measurement files hold the results above, your
network's ASN, country and name, and the time of each test. If you share them,
they may be published. Your IP address is never stored: it is replaced by
127.0.0.1 and scrubbed from every recorded answer. Nothing is uploaded unless the
config names a collector ([upload] url): then every measurement is sent to it.

You can stop at any time (stop the service, or `probe consent --withdraw`).
"""


def recorded(state: Path) -> bool:
    """Consent to the current :data:`VERSION` is on record (a corrupt file is no consent)."""
    try:
        data = json.loads((state / FILE).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("version") == VERSION


def record(state: Path) -> Path:
    """Record consent now; return the file."""
    path = state / FILE
    given = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    store.atomic_write(path, json.dumps({"version": VERSION, "given": given}).encode() + b"\n")
    return path


def withdraw(state: Path) -> bool:
    """Forget consent; True if there was a record to forget."""
    try:
        (state / FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def ask(stdin: TextIO, stdout: TextIO) -> bool:
    """Show :data:`TEXT` and ask; only an explicit "yes" is consent."""
    stdout.write(TEXT + "\nDo you understand the risks and want to run the probe? [yes/no] ")
    stdout.flush()
    return stdin.readline().strip().lower() in ("y", "yes")

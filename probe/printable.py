"""Text from the network made safe for a terminal.

Network names, domains, failures and explanations can hold bytes a server or
a measurement file chose: an escape sequence printed unchanged rewrites the
volunteer's terminal (clears it, retitles it, hides lines). Every text output
passes what it shows through :func:`printable` first.
"""

from __future__ import annotations

__all__ = ["printable"]


def printable(text: str) -> str:
    """``text`` with every unprintable character (controls, escapes, bidi overrides) as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text)

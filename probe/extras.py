"""The message of a command whose optional dependencies (an extra of pyproject.toml) are missing.

The project is not on PyPI, and a ``probe`` there is another project: the hint installs the
extra from a checkout, never ``pip install 'probe[report]'``.
"""

from __future__ import annotations

__all__ = ["needs_extra"]


def needs_extra(what: str, extra: str) -> str:
    """``what`` needs the ``extra``: say how to install it from this project's checkout."""
    return (
        f"probe: {what}: install this project's [{extra}] extra from its checkout, "
        f"pip install -e '.[{extra}]' (or pip install '/path/to/checkout[{extra}]'); "
        f"not 'probe[{extra}]', which is an unrelated package on PyPI"
    )

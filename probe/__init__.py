"""probe: measure whether X (Twitter) is reachable, and how it is blocked.

Data flows one way: config -> campaign -> primitives (``probe.net``) ->
records -> normalizer -> verdict -> storage -> report. See README.md.
"""

__all__ = ["__version__", "needs_extra"]

__version__ = "0.1.0"


def needs_extra(what: str, extra: str) -> str:
    """The message of a command whose optional dependencies are missing. The project is not
    on PyPI (a `probe` there is another one), so the hint installs the extra from a checkout."""
    return (
        f"probe: {what}: install this project's [{extra}] extra from its checkout, "
        f"pip install -e '.[{extra}]' (or pip install '/path/to/checkout[{extra}]'); "
        f"not 'probe[{extra}]', which is an unrelated package on PyPI"
    )

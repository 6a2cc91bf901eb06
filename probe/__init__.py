"""probe: measure whether X (Twitter) is reachable, and how it is blocked.

Data flows one way: config -> campaign -> primitives (``probe.net``) ->
records -> writer (``probe.format``) -> verdict -> storage -> report. See README.md.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"

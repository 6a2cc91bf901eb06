"""``python -m probe`` and the ``probe`` console script: a testable ``main(argv)``."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    from probe.cli import main as cli_main  # deferred: keeps `--version` fast

    return cli_main(list(sys.argv[1:] if argv is None else argv))


def entry() -> None:
    try:
        code = main()
    except KeyboardInterrupt:  # Ctrl-C: what was measured is on disk already (one line each)
        print("probe: interrupted", file=sys.stderr)
        code = 130
    except OSError as exc:  # the machine's refusal (permissions, a full disk): one line, no trace
        print(f"probe: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    entry()

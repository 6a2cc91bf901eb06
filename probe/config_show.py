"""``probe config show``: the config a run would use, as TOML, every key after defaults.

The output says which file was read and why that one (``--config``, ``$PROBE_CONFIG``, the
working folder, the installed copy), marks each key the file does not set with ``# default``,
and is itself a valid config: loaded again it gives the same :class:`~probe.config.Config`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from probe.config import Config, ConfigError, config_source, load
from probe.printable import printable

__all__ = ["add_parser", "dump"]

# The sections in the order configs/x.toml documents them; [[resolvers]] come last.
_SECTIONS = ("vantage", "targets", "measurement", "timeouts", "schedule", "storage", "upload")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config show`` to the probe's ``subparsers``."""
    config = subparsers.add_parser("config", help="inspect the configuration")
    sub = config.add_subparsers(dest="config_command", metavar="CONFIG_COMMAND", required=True)
    show = sub.add_parser(
        "show",
        help="print the config a run would use (every key, defaults filled in) as TOML, "
        "and which file it came from",
    )
    show.add_argument(
        "--config",
        type=Path,
        help="this file instead of the default ($PROBE_CONFIG, else ./configs/x.toml, "
        "else the installed one)",
    )
    show.set_defaults(handler=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    """Exit 0 with the config on stdout; 2 (said why) when the config is unusable."""
    path, why = (args.config, "--config") if args.config else config_source()
    try:
        config = load(path)
        with open(path, "rb") as f:  # load() read it whole: it exists and parses
            raw = tomllib.load(f)
    except (ConfigError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"probe: config error: {exc}", file=sys.stderr)
        return 2
    origin = printable(f"{Path(path).absolute()} ({why})")
    print(dump(config, raw, origin), end="")
    return 0


def dump(config: Config, raw: Mapping[str, Any], origin: str) -> str:
    """``config`` as TOML; a key absent from ``raw`` (the file as read) is marked default."""
    lines = [
        "# The config a probe run would use: every key, with the defaults filled in.",
        f"# Read from {origin}.",
        '# "# default": the file does not set the key. Every key: configs/x.toml.',
    ]
    for name in _SECTIONS:
        given = raw.get(name, {})
        lines += ["", f"[{name}]"]
        values = _targets(config) if name == "targets" else _flat(getattr(config, name))
        for key, value in values.items():
            lines.append(_line(key, value, key in given))
    for resolver in config.resolvers:
        lines += ["", "[[resolvers]]"]
        lines += [f"{key} = {_toml(value)}" for key, value in _flat(resolver).items()]
    return "\n".join(lines) + "\n"


def _targets(config: Config) -> dict[str, Any]:
    # control_sni as used: "" in the file means the first control site.
    return {"x": config.targets, "controls": config.controls, "control_sni": config.control_sni}


def _flat(section: Any) -> dict[str, Any]:
    return {f.name: getattr(section, f.name) for f in fields(section)}


def _line(key: str, value: Any, given: bool) -> str:
    return f"{key} = {_toml(value)}" + ("" if given else "  # default")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # the config holds finite numbers only
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    return "[" + ", ".join(_toml(v) for v in value) + "]"

"""Every command, subcommand, flag and positional of ``probe`` says what it is for."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from probe.cli import _parser


def _parsers(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_action_has_help() -> None:
    missing = []
    for path, parser in _parsers(_parser(), "probe"):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                missing += [f"{path} {name}" for name in action.choices if not helps.get(name)]
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        # Renders, too: a stray % in a help string raises only when --help is asked for.
        assert parser.format_help().startswith(f"usage: {path}")
    assert missing == []

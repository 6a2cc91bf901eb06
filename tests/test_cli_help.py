"""Every command, subcommand, flag and positional of ``probe`` says what it is for."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from probe.cli import _how, _parser
from probe.config import load


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


def test_the_schedule_says_the_interval_it_really_keeps() -> None:
    config = load(Path(__file__).resolve().parent.parent / "configs" / "x.toml")
    assert config.schedule.sampling == "poisson"  # the default: random waits, mean = interval
    assert _how(config) == "a campaign every 300 s on average, at random (30 to 1500 s apart)"
    regular = replace(config.schedule, sampling="regular", interval=60.0, jitter=0.1)
    assert _how(replace(config, schedule=regular)) == "a campaign every 60 s (54 to 66 s apart)"
    helps = {a.dest: a.help or "" for a in _subparser("schedule")._actions}
    assert "mean seconds between campaign starts" in helps["interval"]
    assert "random" in helps["interval"]


def _subparser(name: str) -> argparse.ArgumentParser:
    return next(p for path, p in _parsers(_parser(), "probe") if path == f"probe {name}")

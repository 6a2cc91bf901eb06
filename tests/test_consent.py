"""Informed consent: unattended runs refuse without it, and say how to give it.

Each test points ``$PROBE_STATE_DIR`` at an empty folder (the autouse fixture of
conftest.py records consent; these tests take it away). Refusals happen before
anything is measured, so the configs point nowhere.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from probe import consent
from probe.__main__ import main
from probe.state import state_dir

CONFIG = """
[vantage]
consent = {consent}
[targets]
x = ["x.com"]
controls = ["www.example.com"]
[[resolvers]]
engine = "udp"
address = "127.0.0.1"
port = 9
"""


@pytest.fixture
def no_consent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "state"
    monkeypatch.setenv("PROBE_STATE_DIR", str(state))
    return state


def config(tmp_path: Path, given: bool = False) -> str:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(consent=str(given).lower()))
    return str(path)


@pytest.mark.parametrize(
    "command",
    [["run", "--once"], ["schedule", "--max-campaigns", "1"], ["run"]],
)
def test_runs_that_cannot_ask_refuse_and_say_how_to_consent(
    tmp_path: Path, no_consent: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main([*command, "--config", config(tmp_path), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no consent on record, nothing measured" in err
    assert "`probe consent`" in err and "consent = true" in err
    assert not out.exists()
    assert not no_consent.exists()  # a refusal writes no state either


def test_probe_consent_yes_records_and_withdraw_forgets(
    no_consent: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["consent", "--show"]) == 0
    shown = capsys.readouterr().out
    assert "IP address is never stored" in shown and "Consent: not recorded" in shown
    assert main(["consent", "--yes"]) == 0
    assert consent.recorded(no_consent)
    assert main(["consent", "--show"]) == 0 and "Consent: recorded" in capsys.readouterr().out
    assert main(["consent", "--withdraw"]) == 0
    assert not consent.recorded(no_consent)


def test_probe_consent_off_a_terminal_shows_the_text_and_refuses(
    no_consent: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["consent"]) == 2
    captured = capsys.readouterr()
    assert "legal" in captured.out and "probe consent --yes" in captured.err
    assert not consent.recorded(no_consent)


def test_a_corrupt_consent_file_is_no_consent_and_is_rewritten(no_consent: Path) -> None:
    no_consent.mkdir()
    (no_consent / consent.FILE).write_bytes(b"\xff{garbage")
    assert not consent.recorded(no_consent)
    consent.record(no_consent)
    assert consent.recorded(no_consent)
    (no_consent / consent.FILE).write_text('{"version": 0}')  # consent to an older text
    assert not consent.recorded(no_consent)


def test_only_an_explicit_yes_is_consent() -> None:
    for answer, expected in (
        ("yes\n", True),
        ("y\n", True),
        ("\n", False),
        ("no\n", False),
        ("", False),
        ("yes please\n", False),
    ):
        shown = io.StringIO()
        assert consent.ask(io.StringIO(answer), shown) is expected
        assert shown.getvalue().startswith(consent.TEXT)


def test_consent_in_the_config_lets_unattended_runs_through(
    tmp_path: Path, no_consent: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Past the consent check, the run takes the lock of its results folder and measures.
    code = main(
        ["run", "--once", "--config", config(tmp_path, True), "--output", str(tmp_path / "out")]
    )
    assert code == 0 and "no consent" not in capsys.readouterr().err
    assert (tmp_path / "out" / ".probe-run.lock").exists()


def test_state_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROBE_STATE_DIR")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_dir() == tmp_path / "probe"
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert state_dir() == Path("/var/lib/probe")

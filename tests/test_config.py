"""Config loading: the default file is valid; every bad input names file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.__main__ import main
from probe.config import ConfigError, default_config_path, load

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
[targets]
x = ["x.com"]
controls = ["www.example.com"]
[[resolvers]]
engine = "udp"
address = "127.0.0.1"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_default_config_is_valid() -> None:
    config = load(ROOT / "configs" / "x.toml")
    assert "x.com" in config.targets and "t.co" in config.targets
    assert len(config.targets) >= 12
    assert config.control_sni == config.controls[0]
    assert {r.engine for r in config.resolvers} == {"system", "udp", "tcp", "doh"}
    assert config.measurement.body_cap == 65536
    assert config.vantage.asn == "AS0" and config.vantage.cc == "ZZ"


def test_without_a_checkout_the_installed_config_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROBE_CONFIG", raising=False)
    assert default_config_path() == Path("configs/x.toml")  # in the checkout
    monkeypatch.chdir(tmp_path)  # pip or pipx installed: no configs/ here
    installed = default_config_path()
    assert installed.read_text() == (ROOT / "configs" / "x.toml").read_text()
    assert "x.com" in load(installed).targets
    monkeypatch.setenv("PROBE_CONFIG", str(tmp_path / "mine.toml"))
    assert default_config_path() == tmp_path / "mine.toml"


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL))
    assert config.timeouts.tls == 4.0
    assert config.resolvers[0].label == "127.0.0.1:53"
    assert config.only(("x.com",)).targets == ("x.com",)


@pytest.mark.parametrize(
    ("dropped", "message"),
    [
        ('x = ["x.com"]\n', "targets.x: expected a non-empty list"),
        ('controls = ["www.example.com"]\n', "targets.controls: expected a non-empty list"),
        ('[[resolvers]]\nengine = "udp"\naddress = "127.0.0.1"\n', "resolvers: expected at least"),
    ],
)
def test_the_three_required_keys(tmp_path: Path, dropped: str, message: str) -> None:
    """configs/x.toml's opening comment: every other key may be left out (MINIMAL)."""
    assert dropped in MINIMAL
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, MINIMAL.replace(dropped, "")))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[measurement]\nbody_cap = -1\n", "measurement.body_cap: must be in [1, 16777216]"),
        ("[measurement]\ndns_late_window = 1e308\n", "measurement.dns_late_window: must be in"),
        ("[schedule]\ninterval = 1e9\n", "schedule.interval: must be in [30, 86400]"),
        ("[storage]\nmax_mb = 0\n", "storage.max_mb: must be in [1,"),
        ("[measurement]\nbody_cap = 'big'\n", "measurement.body_cap: expected int"),
        ("[measurement]\nbogus = 1\n", "measurement.bogus: unknown key"),
        ("[timeouts]\ntls = 0\n", "timeouts.tls: must be > 0 and <= 600"),
        ("[timeouts]\ntls = 601\n", "timeouts.tls: must be > 0 and <= 600"),
        ("[measurement]\nip_versions = [5]\n", "measurement.ip_versions: expected 4 and/or 6"),
        ("[measurement]\nca_bundle = '/nonexistent.pem'\n", "measurement.ca_bundle: expected a"),
        ("[measurement]\nca_bundle = '/etc/passwd'\n", "measurement.ca_bundle: expected a"),
        ("[schedule]\ninterval = nan\n", "schedule.interval: expected a finite number"),
        ("[timeouts]\nconnect = inf\n", "timeouts.connect: expected a finite number"),
        ("[vantage]\nasn = '64500'\n", "vantage.asn: expected AS<number>"),
        ("[vantage]\ncc = 'pak'\n", "vantage.cc: expected a two-letter country code"),
        ("[[resolvers]]\nengine = 'carrier-pigeon'\n", "resolvers[1].engine: expected one of"),
        ("[[resolvers]]\nengine = 'udp'\n", "resolvers[1].address: required for engine 'udp'"),
        (
            "[[resolvers]]\nengine = 'udp'\naddress = 'dns.google'\n",
            "resolvers[1].address: not an IP",
        ),
        (
            "[[resolvers]]\nengine = 'doh'\nurl = 'http://x/'\n",
            "resolvers[1].url: expected an https://",
        ),
        ("[extra]\n", "extra: unknown section"),
    ],
)
def test_bad_config_names_file_key_and_problem(tmp_path: Path, extra: str, message: str) -> None:
    path = write(tmp_path, MINIMAL + extra)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_a_config_nested_500_deep_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "x = " + "[" * 500 + "]" * 500 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load(path)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--interval", "10"], "--interval: must be in [30, 86400] seconds"),
        (["--interval", "nan"], "--interval: must be in [30, 86400] seconds"),
        (["--interval", "inf"], "--interval: must be in [30, 86400] seconds"),
        (["--max-campaigns", "-1"], "--max-campaigns: must be >= 1"),
    ],
)
def test_a_bad_schedule_flag_is_refused_before_anything_runs(
    tmp_path: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PROBE_STATE_DIR", str(tmp_path / "no-consent"))  # if let through: no run
    config = str(write(tmp_path, MINIMAL))
    out = tmp_path / "out"
    assert main(["schedule", *flags, "--config", config, "--output", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("command", ["run", "schedule"])
def test_an_output_that_is_a_file_is_refused(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    out.write_text("not a folder")
    assert main([command, "--config", str(write(tmp_path, MINIMAL)), "--output", str(out)]) == 2
    assert f"--output: {out} is a file, not a folder" in capsys.readouterr().err


def test_bad_targets(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('["x.com"]', '["not a domain"]'))
    with pytest.raises(ConfigError, match=r"targets\.x: not a domain name: 'not a domain'"):
        load(path)


def test_unparsable_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"c\.toml: "):
        load(write(tmp_path, "[targets\n"))


def test_only_rejects_unknown_domain_and_control_sites(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL))
    with pytest.raises(ConfigError, match=r"--only: example\.net; the targets are x\.com$"):
        config.only(("Example.NET",))
    with pytest.raises(ConfigError, match=r"www\.example\.com: control sites, in every run"):
        config.only(("www.example.com",))
    assert config.only(("x.com",)).targets == ("x.com",)
    assert config.only(("X.Com",)).targets == ("x.com",)  # domain names ignore case

"""Lab scenarios: which simulated ISPs exist and how each one censors, when.

A scenario is a TOML file (``configs/scenarios/*.toml``; the keys are
documented in ``pakistan-2024.toml``). :func:`load` validates it strictly:
any problem raises :class:`ScenarioError` naming the file and the key, before
a namespace is created.

:func:`schedule` turns a scenario into the list of windows during which each
technique is active. It is a pure function of the scenario (its seed) and the
horizon, so a run can be replayed and the truth recomputed: ``always`` is one
window covering the horizon; ``sporadic`` alternates on and off periods of
10-60 s drawn from a generator seeded by (seed, ISP, technique); ``periodic`` is a
strict cycle whose period is a whole multiple (1-3, drawn from the seed) of
:data:`DEFAULT_INTERVAL`, the lab run's interval -- exactly the censor a fixed sampling
interval aliases with -- blocked 50-80% of it, at a phase drawn from the seed too, so a
detector tuned to one period or phase fails on another seed.
"""

from __future__ import annotations

import random
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from probe import config
from probe.lab.censors import EXPECTED_METHOD

__all__ = [
    "DEFAULT_INTERVAL",
    "SCENARIO_DIRS",
    "Isp",
    "Scenario",
    "ScenarioError",
    "TechniqueSpec",
    "Window",
    "find",
    "known",
    "load",
    "schedule",
]

REPO: Final = Path(__file__).resolve().parents[2]
# The copies installed with the package (links to the checkout's configs/, pyproject.toml's
# package-data), so a probe installed with pip finds its scenarios and its targets.
PACKAGED: Final = Path(__file__).resolve().parents[1] / "configs"
# Where a scenario name is looked up, first match wins: the working folder's configs/ (a
# checkout, or scenarios of one's own), then the packaged copy.
SCENARIO_DIRS: Final = (Path("configs") / "scenarios", PACKAGED / "scenarios")
DEFAULT_CONFIG: Final = PACKAGED / "x.toml"
SCHEDULES: Final = ("always", "sporadic", "periodic")
DEFAULT_INTERVAL: Final = 20.0  # seconds between probe runs of `probe lab run`
ASN_RANGE: Final = range(64496, 64512)  # RFC 5398 documentation ASNs
PERIOD: Final = (10.0, 60.0)  # seconds: bounds of a sporadic on/off period
_ID: Final = re.compile(r"^[a-z][a-z0-9]{0,7}$")  # short: it ends up in interface names
_CC: Final = re.compile(r"^[A-Z]{2}$")


class ScenarioError(ValueError):
    """A scenario file is unusable; the message names the file, the key and the problem."""


@dataclass(frozen=True, slots=True)
class TechniqueSpec:
    technique: str  # a key of EXPECTED_METHOD
    domains: tuple[str, ...]
    schedule: str  # one of SCHEDULES


@dataclass(frozen=True, slots=True)
class Isp:
    id: str
    asn: int  # the number, e.g. 64496
    cc: str
    name: str
    techniques: tuple[TechniqueSpec, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    path: str
    name: str
    seed: int
    ipv6: bool
    isps: tuple[Isp, ...]
    targets: tuple[str, ...]  # the X names of the probe's config (configs/x.toml)
    controls: tuple[str, ...]

    @property
    def domains(self) -> tuple[str, ...]:
        """Every name the lab serves: X targets, then the control sites."""
        return (*self.targets, *self.controls)


@dataclass(frozen=True, slots=True)
class Window:
    """A technique is active on ``domains`` from ``start`` to ``end`` (seconds after lab start)."""

    isp: str
    technique: str
    domains: tuple[str, ...]
    start: float
    end: float
    sporadic: bool = False  # switched on a schedule (its edges are "switches" for the evaluation)


def find(name: str) -> Path:
    """A scenario by path, or by name: ``<name>.toml`` in the first of :data:`SCENARIO_DIRS`
    that has it (the packaged copy when none has: :func:`load` then lists the known names)."""
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        return path
    candidates = [directory / f"{name}.toml" for directory in SCENARIO_DIRS]
    return next((c for c in candidates if c.is_file()), candidates[-1])


def known() -> dict[str, Path]:
    """Every scenario :func:`find` resolves by name, name -> file, sorted by name."""
    found: dict[str, Path] = {}
    for directory in reversed(SCENARIO_DIRS):  # the first directory overrides
        found.update((p.stem, p) for p in directory.glob("*.toml"))
    return dict(sorted(found.items()))


def load(path: str | Path, probe_config: str | Path = DEFAULT_CONFIG) -> Scenario:
    """Read and validate a scenario; domains must be targets or controls of ``probe_config``."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        names = ", ".join(known())
        raise ScenarioError(f"{name}: no such scenario (known: {names})") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{name}: {exc}") from None
    probe = config.load(probe_config)
    return _Reader(name, probe.targets, probe.controls).scenario(data, Path(path).stem)


def schedule(scenario: Scenario, horizon: float) -> list[Window]:
    """Every activity window of every technique, up to ``horizon`` seconds, sorted by start."""
    windows: list[Window] = []
    for isp in scenario.isps:
        for spec in isp.techniques:
            if spec.schedule == "always":
                windows.append(Window(isp.id, spec.technique, spec.domains, 0.0, horizon))
                continue
            rng = random.Random(f"{scenario.seed}/{isp.id}/{spec.technique}")
            if spec.schedule == "periodic":
                windows += _periodic(isp.id, spec, rng, horizon)
                continue
            active, t = rng.random() < 0.5, 0.0
            while t < horizon:
                end = min(horizon, round(t + rng.uniform(*PERIOD), 3))
                if active:
                    windows.append(Window(isp.id, spec.technique, spec.domains, t, end, True))
                active, t = not active, end
    return sorted(windows, key=lambda w: (w.start, w.isp, w.technique))


def _periodic(isp: str, spec: TechniqueSpec, rng: random.Random, horizon: float) -> list[Window]:
    period = DEFAULT_INTERVAL * rng.choice((1, 2, 3))
    blocked = period * rng.uniform(0.5, 0.8)
    t = -rng.uniform(0.0, period)  # the phase
    windows = []
    while t < horizon:
        start, end = max(0.0, round(t, 3)), min(horizon, round(t + blocked, 3))
        if end > start:
            windows.append(Window(isp, spec.technique, spec.domains, start, end, True))
        t += period
    return windows


class _Reader:
    """Walks the TOML document, remembering the file for error messages."""

    def __init__(self, path: str, targets: tuple[str, ...], controls: tuple[str, ...]) -> None:
        self.path = path
        self.targets = targets
        self.known = (*targets, *controls)
        self.controls = controls

    def fail(self, key: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.path}: {key}: {problem}")

    def keys(self, table: Mapping[str, Any], key: str, allowed: set[str]) -> None:
        extra = sorted(set(table) - allowed)
        if extra:
            raise self.fail(f"{key}.{extra[0]}" if key else extra[0], "unknown key")

    def get(self, table: Mapping[str, Any], key: str, where: str, kind: type) -> Any:
        if key not in table:
            raise self.fail(where, "missing")
        value = table[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(where, f"expected {kind.__name__}, got {value!r}")
        return value

    def scenario(self, data: Mapping[str, Any], stem: str) -> Scenario:
        self.keys(data, "", {"name", "description", "seed", "ipv6", "isps"})
        name = str(data.get("name", stem))
        seed = self.get(data, "seed", "seed", int)
        ipv6 = bool(data.get("ipv6", True))
        items = self.get(data, "isps", "isps", list)
        if not items:
            raise self.fail("isps", "expected at least one [[isps]] table")
        isps = tuple(self.isp(f"isps[{i}]", item) for i, item in enumerate(items))
        for field, values in (("id", [i.id for i in isps]), ("asn", [f"AS{i.asn}" for i in isps])):
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise self.fail(f"isps[].{field}", f"duplicate value {duplicates[0]}")
        return Scenario(self.path, name, seed, ipv6, isps, self.targets, self.controls)

    def isp(self, key: str, item: Any) -> Isp:
        if not isinstance(item, dict):
            raise self.fail(key, "expected a table")
        self.keys(item, key, {"id", "asn", "cc", "name", "techniques"})
        isp_id = self.get(item, "id", f"{key}.id", str)
        if not _ID.match(isp_id):
            raise self.fail(
                f"{key}.id", f"expected 1-8 of [a-z0-9], starting with a letter, got {isp_id!r}"
            )
        asn_text = self.get(item, "asn", f"{key}.asn", str)
        match = re.fullmatch(r"AS(\d+)", asn_text)
        if match is None or int(match[1]) not in ASN_RANGE:
            raise self.fail(
                f"{key}.asn", f"expected a documentation ASN AS64496-AS64511, got {asn_text!r}"
            )
        cc = self.get(item, "cc", f"{key}.cc", str)
        if not _CC.match(cc):
            raise self.fail(f"{key}.cc", f"expected a two-letter country code, got {cc!r}")
        name = self.get(item, "name", f"{key}.name", str)
        specs = item.get("techniques", [])
        if not isinstance(specs, list):
            raise self.fail(f"{key}.techniques", "expected a list")
        techniques = tuple(self.technique(f"{key}.techniques[{i}]", s) for i, s in enumerate(specs))
        names = [t.technique for t in techniques]
        for i, technique in enumerate(names):
            if technique in names[:i]:
                raise self.fail(f"{key}.techniques[{i}].technique", f"{technique!r} listed twice")
        return Isp(isp_id, int(asn_text[2:]), cc, name, techniques)

    def technique(self, key: str, item: Any) -> TechniqueSpec:
        if not isinstance(item, dict):
            raise self.fail(key, "expected a table")
        self.keys(item, key, {"technique", "domains", "schedule"})
        technique = self.get(item, "technique", f"{key}.technique", str)
        if technique not in EXPECTED_METHOD:
            known = ", ".join(EXPECTED_METHOD)
            raise self.fail(f"{key}.technique", f"unknown technique {technique!r} (known: {known})")
        domains = item.get("domains", list(self.targets))
        if not isinstance(domains, list) or not domains:
            raise self.fail(f"{key}.domains", "expected a non-empty list of domain names")
        for domain in domains:
            if domain not in self.known:
                raise self.fail(
                    f"{key}.domains", f"unknown domain {domain!r} (not a target or control)"
                )
        when = item.get("schedule", "always")
        if when not in SCHEDULES:
            raise self.fail(
                f"{key}.schedule", f"expected one of {', '.join(SCHEDULES)}, got {when!r}"
            )
        return TechniqueSpec(technique, tuple(dict.fromkeys(domains)), when)

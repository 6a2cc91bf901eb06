"""TOML configuration -> a typed, validated, immutable :class:`Config`.

Every key is documented in ``configs/x.toml``. Validation is strict: an
unknown key, a wrong type or an impossible value raises :class:`ConfigError`
naming the file, the key and what is wrong, before anything is measured.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

__all__ = [
    "Config",
    "ConfigError",
    "Resolver",
    "Schedule",
    "Storage",
    "Upload",
    "Vantage",
    "config_source",
    "default_config_path",
    "is_ip",
    "load",
]

ENGINES: Final = ("system", "udp", "tcp", "doh")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")
_ASN = re.compile(r"^AS\d{1,10}$")
_CC = re.compile(r"^[A-Z]{2}$")
MIB: Final = 1 << 20
DAY: Final = 86400.0

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file is unusable; the message names file, key and problem."""


@dataclass(frozen=True, slots=True)
class Resolver:
    engine: str  # one of ENGINES
    address: str = ""  # IP literal (udp/tcp; optional bootstrap address for doh)
    url: str = ""  # doh only
    port: int = 53
    control: bool = True  # a DNS control (DoH, public resolver), not the ISP's own resolver

    @property
    def label(self) -> str:
        """How the resolver appears as ``resolver_address`` in queries."""
        if self.engine == "doh":
            return self.url
        if self.engine == "system":
            return ""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Vantage:
    asn: str = "AS0"
    cc: str = "ZZ"
    network_name: str = ""
    identity_resolver: str = ""  # IP literal asked for the public address; "" = no discovery
    identity_port: int = 53
    consent: bool = False  # the volunteer consented outside the probe (automated installs)


@dataclass(frozen=True, slots=True)
class Schedule:
    interval: float = 300.0
    sampling: str = "poisson"  # or "regular" (interval +/- jitter): see probe/schedule.py
    jitter: float = 0.1
    budget: float = 240.0
    stop_grace: float = 5.0
    max_backoff: float = 3600.0
    burst_interval: float = 10.0
    burst_duration: float = 600.0
    skip_vpn: bool = True


@dataclass(frozen=True, slots=True)
class Storage:
    compress: bool = True
    max_mb: int = 2048
    min_free_mb: int = 200


@dataclass(frozen=True, slots=True)
class Upload:
    url: str = ""  # the collector; "" = measurements stay on this machine
    ca_bundle: str = ""  # pinned: only this CA vouches for the collector
    proxy: str = ""  # socks5h://host:port (Tor), or ""
    token: str = ""  # per-probe token, if the collector asks for one
    timeout: float = 30.0
    max_time: float = 120.0  # one upload run; what is left waits in the outbox


@dataclass(frozen=True, slots=True)
class Measurement:
    https_port: int = 443
    http_port: int = 80
    ip_versions: tuple[int, ...] = (4, 6)
    concurrency: int = 256
    ca_bundle: str = ""
    keep_certificates: bool = False
    body_cap: int = 65536
    dns_late_window: float = 0.3
    residual_delay: float = 0.0
    control_address: str = ""  # where target SNIs go as a control ("": a control site's, after it)
    http: bool = True
    throughput_path: str = ""
    throughput_bytes: int = 1 << 20


@dataclass(frozen=True, slots=True)
class Timeouts:
    dns: float = 4.0
    connect: float = 4.0
    tls: float = 4.0
    http: float = 8.0
    throughput: float = 10.0


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    targets: tuple[str, ...]
    controls: tuple[str, ...]
    control_sni: str
    resolvers: tuple[Resolver, ...]
    vantage: Vantage = field(default_factory=Vantage)
    measurement: Measurement = field(default_factory=Measurement)
    timeouts: Timeouts = field(default_factory=Timeouts)
    schedule: Schedule = field(default_factory=Schedule)
    storage: Storage = field(default_factory=Storage)
    upload: Upload = field(default_factory=Upload)

    def only(self, domains: tuple[str, ...]) -> Config:
        """The same config restricted to the targets ``domains`` (the controls always run).
        Domain names are case-insensitive; the config's are lower case (``_DOMAIN``)."""
        wanted = tuple(d.lower() for d in domains)
        unknown = [d for d in wanted if d not in self.targets]
        if unknown:
            controls = [d for d in unknown if d in self.controls]
            why = f" ({', '.join(controls)}: control sites, in every run)" if controls else ""
            raise ConfigError(
                f"{self.path}: not a target for --only: {', '.join(unknown)}{why}; "
                f"the targets are {', '.join(self.targets)}"
            )
        return replace(self, targets=tuple(d for d in self.targets if d in wanted))


def default_config_path() -> Path:
    """``$PROBE_CONFIG``, else ``configs/x.toml`` under the working directory (a checkout),
    else the copy installed with the package (``pip install``, ``pipx``: no checkout)."""
    return config_source()[0]


def config_source() -> tuple[Path, str]:
    """The default config's path and why it is that one (said by ``probe config show``)."""
    if "PROBE_CONFIG" in os.environ:
        return Path(os.environ["PROBE_CONFIG"]), "$PROBE_CONFIG"
    here = Path("configs/x.toml")
    if here.exists():
        return here, "configs/x.toml in the working folder"
    return Path(__file__).with_name("configs") / "x.toml", "the copy installed with the package"


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raise :class:`ConfigError` on any problem."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{name}: {exc}") from None
    except RecursionError:  # tomllib recurses per nesting level: a hostile file, not a bug
        raise ConfigError(f"{name}: nested too deeply") from None
    return _Reader(name).config(data)


class _Reader:
    """Walks the TOML document, remembering the file name for error messages."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {problem}")

    def table(self, data: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "expected a table")
        extra = sorted(set(value) - allowed)
        if extra:
            raise self.fail(f"{key}.{extra[0]}", "unknown key")
        return value

    def value(
        self,
        table: Mapping[str, Any],
        section: str,
        key: str,
        kind: type[T],
        default: T,
        check: Callable[[T], bool] = lambda _: True,
        problem: str = "invalid value",
    ) -> T:
        if key not in table:
            return default
        value = table[key]
        ok_type = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok_type = float(value), True
        if not ok_type:
            raise self.fail(f"{section}.{key}", f"expected {kind.__name__}, got {value!r}")
        if kind is float and not math.isfinite(value):  # TOML has nan and inf
            raise self.fail(f"{section}.{key}", f"expected a finite number, got {value!r}")
        if not check(value):
            raise self.fail(f"{section}.{key}", f"{problem}, got {value!r}")
        return value  # type: ignore[no-any-return]

    def section(
        self,
        data: Mapping[str, Any],
        name: str,
        cls: type[T],
        checks: Mapping[str, tuple[Callable[[Any], bool], str]],
    ) -> T:
        """Read a flat table into the frozen dataclass ``cls`` (its defaults apply)."""
        specs = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        table = self.table(data, name, set(specs))
        default = cls()
        values: dict[str, Any] = {}
        for key in specs:
            current = getattr(default, key)
            if isinstance(current, tuple):
                items = self.value(table, name, key, list, list(current))
                check, problem = checks.get(key, (lambda _: True, ""))
                if not all(isinstance(i, int) and check(i) for i in items) or not items:
                    raise self.fail(f"{name}.{key}", f"{problem or 'invalid list'}, got {items!r}")
                values[key] = tuple(items)
            else:
                check, problem = checks.get(key, (lambda _: True, "invalid value"))
                values[key] = self.value(table, name, key, type(current), current, check, problem)
        return cls(**values)

    def domains(self, table: Mapping[str, Any], key: str, *, required: bool) -> tuple[str, ...]:
        items = table.get(key, [])
        if not isinstance(items, list) or (required and not items):
            raise self.fail(f"targets.{key}", "expected a non-empty list of domain names")
        for item in items:
            if not isinstance(item, str) or not _DOMAIN.match(item):
                raise self.fail(f"targets.{key}", f"not a domain name: {item!r}")
        return tuple(dict.fromkeys(items))

    def resolver(self, index: int, item: Any) -> Resolver:
        key = f"resolvers[{index}]"
        if not isinstance(item, dict):
            raise self.fail(key, "expected a table")
        extra = sorted(set(item) - {"engine", "address", "url", "port", "control"})
        if extra:
            raise self.fail(f"{key}.{extra[0]}", "unknown key")
        engine = item.get("engine")
        if engine not in ENGINES:
            raise self.fail(
                f"{key}.engine", f"expected one of {', '.join(ENGINES)}, got {engine!r}"
            )
        address = self.value(item, key, "address", str, "")
        if address:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise self.fail(f"{key}.address", f"not an IP address: {address!r}") from None
        elif engine in ("udp", "tcp"):
            raise self.fail(f"{key}.address", f"required for engine {engine!r}")
        url = self.value(item, key, "url", str, "")
        if engine == "doh" and (urlsplit(url).scheme != "https" or not urlsplit(url).hostname):
            raise self.fail(f"{key}.url", f"expected an https:// URL, got {url!r}")
        port = self.value(item, key, "port", int, 53, lambda p: 0 < p < 65536, "not a port")
        control = self.value(item, key, "control", bool, engine != "system")
        if engine == "system" and control:
            raise self.fail(f"{key}.control", "the system resolver is never a control")
        return Resolver(engine, address, url, port, control)

    def config(self, data: Mapping[str, Any]) -> Config:
        sections = (
            "vantage",
            "targets",
            "measurement",
            "timeouts",
            "resolvers",
            "schedule",
            "storage",
            "upload",
        )
        extra = sorted(set(data) - set(sections))
        if extra:
            raise self.fail(extra[0], "unknown section")
        port = (lambda p: 0 < p < 65536, "not a port")
        # Every number has a sane upper bound too: 1e308 seconds is a typo, never a wish.
        seconds = _within(0, 600, low_open=True)
        day = _within(0, DAY, low_open=True)
        measurement = self.section(
            data,
            "measurement",
            Measurement,
            {
                "https_port": port,
                "http_port": port,
                "concurrency": _within(1, 1024),
                "body_cap": _within(1, 16 * MIB),
                "ip_versions": (lambda v: v in (4, 6), "expected 4 and/or 6"),
                "dns_late_window": _within(0, 10),
                "residual_delay": _within(0, 600),
                "control_address": (lambda v: not v or is_ip(v), "expected an IP address"),
                "throughput_bytes": _within(1, 1024 * MIB),
                "throughput_path": (
                    lambda v: not v or v.startswith("/"),
                    "expected a path like /x",
                ),
                "ca_bundle": (
                    lambda v: not v or _holds_certificates(v),
                    "expected a readable PEM file of CA certificates",
                ),
            },
        )
        timeouts = self.section(
            data,
            "timeouts",
            Timeouts,
            dict.fromkeys(("dns", "connect", "tls", "http", "throughput"), seconds),
        )
        vantage = self.section(
            data,
            "vantage",
            Vantage,
            {
                "asn": (lambda v: bool(_ASN.match(v)), "expected AS<number>"),
                "cc": (lambda v: bool(_CC.match(v)), "expected a two-letter country code"),
                "identity_resolver": (lambda v: not v or is_ip(v), "not an IP address"),
                "identity_port": port,
            },
        )
        schedule = self.section(data, "schedule", Schedule, {
            "interval": _within(30, DAY), "jitter": _within(0, 0.5),
            "sampling": (lambda v: v in ("poisson", "regular"), "expected poisson or regular"),
            "budget": day, "stop_grace": _within(0, 600), "max_backoff": _within(0, 7 * DAY),
            "burst_interval": _within(5, 3600), "burst_duration": _within(0, DAY),
        })  # fmt: skip
        storage = self.section(
            data,
            "storage",
            Storage,
            {"max_mb": _within(1, 10**7), "min_free_mb": _within(0, 10**7)},
        )
        upload = self.section(data, "upload", Upload, {
            "url": (_collector_url, "expected an https:// URL (http:// only to a loopback host)"),
            "ca_bundle": (lambda v: not v or _holds_certificates(v),
                          "expected a readable PEM file of CA certificates"),
            "proxy": (lambda v: not v or (urlsplit(v).scheme in ("socks5", "socks5h")
                      and bool(urlsplit(v).hostname)), "expected socks5h://host:port"),
            "timeout": seconds, "max_time": day,
        })  # fmt: skip
        targets = self.table(data, "targets", {"x", "controls", "control_sni"})
        x = self.domains(targets, "x", required=True)
        controls = self.domains(targets, "controls", required=True)
        control_sni = self.value(targets, "targets", "control_sni", str, "")
        if control_sni and not _DOMAIN.match(control_sni):
            raise self.fail("targets.control_sni", f"not a domain name: {control_sni!r}")
        items = data.get("resolvers", [])
        if not isinstance(items, list) or not items:
            raise self.fail("resolvers", "expected at least one [[resolvers]] table")
        resolvers = tuple(self.resolver(i, item) for i, item in enumerate(items))
        return Config(
            self.path,
            x,
            controls,
            control_sni or controls[0],
            resolvers,
            vantage,
            measurement,
            timeouts,
            schedule,
            storage,
            upload,
        )


def _holds_certificates(path: str) -> bool:
    """``path`` loads as a CA bundle (checked now, not at the first TLS handshake)."""
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError):  # SSLError is an OSError; named for the reader
        return False
    return True


def _collector_url(url: str) -> bool:
    parts = urlsplit(url)
    if not url or (parts.scheme == "https" and parts.hostname):
        return True
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")


def _within(
    low: float, high: float, *, low_open: bool = False
) -> tuple[Callable[[Any], bool], str]:
    """A range check and its message; ``low_open``: ``low`` itself is refused."""
    if low_open:
        return (lambda v: low < v <= high, f"must be > {low:.10g} and <= {high:.10g}")
    return (lambda v: low <= v <= high, f"must be in [{low:.10g}, {high:.10g}]")


def is_ip(value: str) -> bool:
    """``value`` is an IPv4 or IPv6 address literal (not a scoped ``fe80::1%eth0``: a zone
    means nothing off this machine, and ``ipaddress`` cannot reverse it)."""
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True

"""The one spec of an experiment: every setting, its default, its bounds and its help.

``ExperimentSpec`` is the single source of truth for what an experiment can
vary. Each field carries a ``Setting`` (in its metadata) from which everything
else is derived:

- the command line's options (``cli.spec_options`` builds click options from
  ``SETTINGS``: flag, type, bounds, default, help);
- the preset keys a TOML file may set (``group``: ``swarm``, ``server`` or
  ``cell``) and their checks (``Setting.check``);
- the command that reproduces an experiment (``ExperimentSpec.command``).

Adding a knob is one field here. The lower layers (``ServerConfig``,
``LaunchSpec``, ``SwarmSpec``) get every value from the spec explicitly, so
their own defaults never decide an experiment.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections.abc import Mapping
from typing import Any

from demo_server.config import MODES, STORES, WINDOWS, ServerConfig
from demo_server.errors import ConfigError
from scenarios.registry import SCENARIO_NAMES

__all__ = ["MATRIX_DEFAULTS", "SETTINGS", "ExperimentSpec", "Setting", "spec_from_options"]


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one experiment setting is offered and checked.

    Attributes:
        name: the field's name (``work_us``); the flag is ``--work-us``.
        help: one line for ``--help`` and docs.
        group: ``cell`` (what is served), ``server`` (how many processes),
            ``swarm`` (how hard the load), or ``connection`` (where the external
            stores are: global CLI options, not part of a preset).
        choices: the allowed names, for a text setting.
        low, high: inclusive bounds, for a number.
        kind: ``int``, ``float`` or ``str``.
    """

    name: str
    help: str
    group: str
    kind: str = "int"
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any, where: str) -> Any:
        """The value if it is allowed, else ConfigError naming ``where`` and the bounds."""
        if self.kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                allowed = ", ".join(self.choices) if self.choices else "text"
                raise ConfigError(f"{where}: {self.name} must be one of: {allowed}")
            return value
        number_types = (int,) if self.kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, number_types):
            whole = "whole " if self.kind == "int" else ""
            raise ConfigError(f"{where}: {self.name} must be a {whole}number, got {value!r}")
        if not math.isfinite(value) or (self.low is not None and value < self.low) or (
                self.high is not None and value > self.high):
            raise ConfigError(f"{where}: {self.name} must be between {_num(self.low)} and "
                              f"{_num(self.high)}, got {value!r}")
        return float(value) if self.kind == "float" else value


def _num(value: float | None) -> str:
    if value is None:
        return "any"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def _setting(default: Any, help: str, group: str, **kw: Any) -> Any:
    kind = {bool: "int", int: "int", float: "float", str: "str"}[type(default)]
    return dataclasses.field(default=default, metadata={"setting": (help, group, kind, kw)})


#: The largest request budget racelab accepts (a million rows is ~100 MB of history).
MAX_REQUESTS = 10_000_000
#: The longest load racelab accepts, in seconds.
MAX_DURATION_S = 86_400.0


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """One (scenario, store, window, mode, swarm) cell; every field is a ``Setting``."""

    scenario: str = _setting("counter", "What the clients do to the shared state.", "cell",
                             choices=SCENARIO_NAMES)
    store: str = _setting("global", "Where the state lives.", "cell", choices=STORES)
    window: str = _setting("none", "What runs between the read and the write.", "cell",
                           choices=WINDOWS)
    work_us: int = _setting(50, "CPU time of the 'work' window (µs).", "cell",
                            low=1, high=1_000_000)
    mode: str = _setting("threaded", "How the app is served.", "cell", choices=MODES)
    workers: int = _setting(2, "Worker processes.", "server", low=1, high=64)
    threads: int = _setting(4, "Threads per gthread worker (and per cluster instance).",
                            "server", low=1, high=256)
    instances: int = _setting(2, "Instances in cluster mode (standing in for hosts).",
                              "server", low=1, high=16)
    users: int = _setting(16, "Concurrent Locust users.", "swarm", low=1, high=10_000)
    requests: int = _setting(2000, "Total requests over all users (0: bounded by --duration "
                             "only).", "swarm", low=0, high=MAX_REQUESTS)
    duration: float = _setting(0.0, "Seconds of load (0: bounded by --requests only).",
                               "swarm", low=0, high=MAX_DURATION_S)
    burst: int = _setting(0, "Burst swarm: this many users released together, round after "
                          "round (0: a plain swarm; overrides --users).", "swarm",
                          low=0, high=10_000)
    spawn_rate: float = _setting(0.0, "Users started per second (0: all at once).", "swarm",
                                 low=0, high=100_000)
    processes: int = _setting(1, "Locust processes generating the load.", "swarm",
                              low=1, high=16)
    reconnect: int = _setting(10, "Requests per connection before a user opens a new one, as "
                              "clients do (0: keep-alive for good; connections may then "
                              "stick to one worker).", "swarm", low=0, high=MAX_REQUESTS)
    redis_url: str = _setting(ServerConfig.redis_url, "Redis of the redis and session stores.",
                              "connection")
    postgres_dsn: str = _setting(ServerConfig.postgres_dsn, "PostgreSQL of the postgres store.",
                                 "connection")
    memcached: str = _setting(ServerConfig.memcached, "host:port of memcached.", "connection")
    session_backend: str = _setting("filesystem", "Where the session store keeps sessions.",
                                    "connection", choices=("filesystem", "redis"))
    #: Faults injected during the load (``demo_server.faults``: ``kill-worker@2s``...).
    faults: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for setting in SETTINGS:
            setting.check(getattr(self, setting.name), "experiment")
        from demo_server.faults import parse_faults

        object.__setattr__(self, "faults", tuple(str(f) for f in parse_faults(self.faults)))
        if not self.requests and not self.duration:
            raise ConfigError("an experiment needs a request budget or a duration (or both)")

    @property
    def swarm_users(self) -> int:
        return self.burst if self.burst else self.users

    @property
    def label(self) -> str:
        return f"{self.store} · {self.mode} · {self.window}"

    def command(self) -> str:
        """The ``racelab swarm`` command line that reproduces this experiment.

        Mode, store and window are always named; every other setting only when it
        differs from its default. Connection settings other than the session
        backend are left to the environment they ran in.
        """
        argv = ["racelab"]
        if self.session_backend != _DEFAULTS["session_backend"]:
            argv += ["--session-backend", self.session_backend]
        argv += ["swarm", "--mode", self.mode, "--store", self.store, "--window", self.window]
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if (setting.group == "connection" or setting.name in ("mode", "store", "window")
                    or value == _DEFAULTS[setting.name]):
                continue
            argv += [setting.flag, f"{value:g}" if isinstance(value, float) else str(value)]
        for fault in self.faults:
            argv += ["--fault", fault]
        return shlex.join(argv)


def _settings() -> tuple[Setting, ...]:
    out = []
    for f in dataclasses.fields(ExperimentSpec):
        if "setting" not in f.metadata:
            continue  # not a knob of one value (faults)
        help_text, group, kind, kw = f.metadata["setting"]
        out.append(Setting(f.name, help_text, group, kind, **kw))
    return tuple(out)


#: Every setting of ``ExperimentSpec``, in field order.
SETTINGS = _settings()
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ExperimentSpec)}
#: Where a matrix cell's default differs from a single experiment's: cells are small.
MATRIX_DEFAULTS: Mapping[str, Any] = {"requests": 400}


def spec_from_options(values: Mapping[str, Any], base: ExperimentSpec | None = None
                      ) -> ExperimentSpec:
    """An ``ExperimentSpec`` from option values; ``None`` means "not given".

    A duration given without a request budget bounds the load by time alone.

    Raises:
        ConfigError: a value out of its bounds, or an unknown setting.
    """
    base = base or ExperimentSpec()
    given = {k: v for k, v in values.items() if v is not None}
    unknown = sorted(set(given) - set(_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown experiment setting {unknown[0]!r}")
    if given.get("duration") and "requests" not in given:
        given["requests"] = 0
    return dataclasses.replace(base, **given)

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
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from demo_server.basics import defaults
from demo_server.basics.errors import ConfigError
from demo_server.control.faults import check_store_faults, parse_faults
from demo_server.served.config import (
    MODES,
    SESSION_BACKENDS,
    STORES,
    UPDATES,
    WINDOWS,
    Connections,
    ServerConfig,
)
from reports.analysis.names import cell_label
from scenarios.operation import Operation, OperationError, parse_request, parse_value_spec
from scenarios.registry import SCENARIO_NAMES, check_cell, get_scenario

if TYPE_CHECKING:  # imported where used: every command builds its options from this module
    from demo_server.control.modes import LaunchSpec
    from demo_server.control.server_env import ServerPython
    from loadtests.runner import SwarmSpec

__all__ = ["MATRIX_DEFAULTS", "SETTINGS", "ExperimentSpec", "Setting", "final_request",
           "spec_from_options", "target_operations"]


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one experiment setting is offered and checked.

    Attributes:
        name: the field's name (``work_us``); the flag is ``--work-us``.
        help: one line for ``--help`` and docs.
        group: ``cell`` (what is served), ``server`` (how many processes),
            ``swarm`` (how hard the load), ``target`` (your own app: what to send,
            what to read), or ``connection`` (where the external stores are:
            global CLI options, not part of a preset).
        choices: the allowed names, for a text setting.
        low, high: inclusive bounds, for a number.
        kind: ``int``, ``float``, ``str`` or ``list`` (of texts, a repeatable option).
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

    def check(self, value: Any, where: str, given: bool = False) -> Any:
        """The value if it is allowed, else ConfigError naming ``where`` and the bounds.

        A text that is only blanks is never allowed; ``given`` (a value a user
        wrote, as a preset's) refuses an empty one too: it is never "not given".
        """
        if self.kind == "list":
            if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {self.name} must be a list of texts")
            if any(not v.strip() for v in value):
                raise ConfigError(f"{where}: {self.name} holds an empty or blank text")
            return tuple(value)
        if self.kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                allowed = ", ".join(self.choices) if self.choices else "text"
                raise ConfigError(f"{where}: {self.name} must be one of: {allowed}")
            if (value or given) and not value.strip():
                raise ConfigError(f"{where}: {self.name} must not be empty or blank, "
                                  f"got {value!r}")
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
    kind = {bool: "int", int: "int", float: "float", str: "str", tuple: "list"}[type(default)]
    return dataclasses.field(default=default, metadata={"setting": (help, group, kind, kw)})


MAX_REQUESTS = defaults.MAX_REQUESTS
MAX_DURATION_S = defaults.MAX_DURATION_S


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """One (scenario, store, window, mode, swarm) cell; every field is a ``Setting``."""

    scenario: str = _setting(defaults.SCENARIO, "What the clients do to the shared state.", "cell",
                             choices=SCENARIO_NAMES)
    store: str = _setting(defaults.STORE, "Where the state lives.", "cell", choices=STORES)
    window: str = _setting(defaults.WINDOW, "What runs between the read and the write.", "cell",
                           choices=WINDOWS)
    update: str = _setting(defaults.UPDATE, "How a shared store is changed: atomic (one step "
                           "in the store: INCR, UPDATE ... RETURNING), read-write (read, window, "
                           "write back: the naive code), locked (SELECT ... FOR UPDATE, BEGIN "
                           "IMMEDIATE, a Redis lock) or optimistic (WATCH/MULTI, REPEATABLE "
                           "READ or gets/cas, retried on conflict).", "cell", choices=UPDATES)
    work_us: int = _setting(defaults.WORK_US, "CPU time of the 'work' window (µs).", "cell",
                            low=1, high=1_000_000)
    mode: str = _setting(defaults.MODE, "How the app is served.", "cell", choices=MODES)
    stock: int = _setting(defaults.STOCK, "Seats on sale when a tickets run starts.", "cell",
                          low=1, high=1_000_000)
    workers: int = _setting(defaults.WORKERS, "Worker processes.", "server", low=1, high=64)
    threads: int = _setting(defaults.THREADS, "Threads per gthread worker (and per cluster "
                            "instance).", "server", low=1, high=256)
    instances: int = _setting(defaults.INSTANCES, "Instances in cluster mode (standing in for "
                              "hosts).", "server", low=1, high=16)
    python: str = _setting(defaults.PYTHON, "The interpreter that serves the app (Locust stays "
                           "on racelab's): a path, a command on PATH (python3.14t) or a version "
                           "racelab finds (3.13t, 3.14, free-threaded); racelab prepares what "
                           "the server needs under it.", "server")
    users: int = _setting(defaults.USERS, "Concurrent Locust users.", "swarm", low=1, high=10_000)
    requests: int = _setting(defaults.REQUESTS, "Total requests over all users (0: bounded by "
                             "--duration only).", "swarm", low=0, high=MAX_REQUESTS)
    duration: float = _setting(0.0, "Seconds of load (0: bounded by --requests only).",
                               "swarm", low=0, high=MAX_DURATION_S)
    burst: int = _setting(0, "Burst swarm: this many users released together, round after "
                          "round (0: a plain swarm; overrides --users).", "swarm",
                          low=0, high=10_000)
    spawn_rate: float = _setting(0.0, "Users started per second (0: all at once).", "swarm",
                                 low=0, high=100_000)
    processes: int = _setting(1, "Locust processes generating the load.", "swarm",
                              low=1, high=16)
    tabs: int = _setting(1, "Consecutive users that share one client's cookie, as one person's "
                         "browser tabs do (the session scenario's lost updates).", "swarm",
                         low=1, high=64)
    history_format: str = _setting("csv", "How the history is kept: csv (opens anywhere) or "
                                   "parquet (compact, for long runs; history.csv is then "
                                   "removed).", "swarm", choices=("csv", "parquet"))
    reconnect: int = _setting(defaults.RECONNECT, "Requests per connection before a user opens "
                              "a new one, as clients do (0: keep-alive for good; connections "
                              "may then stick to one worker).", "swarm", low=0, high=MAX_REQUESTS)
    app: str = _setting("", "Serve your own WSGI app instead of racelab's: path/to/file.py:app, "
                        "package.module:app or package.module:create_app().", "target")
    request: tuple[str, ...] = _setting((), "What each client sends to your app: 'METHOD /path', "
                                        "optionally '*WEIGHT' for mixed traffic and '=NAME' "
                                        "for the op the checker reads (repeatable; default "
                                        "'GET /').", "target")
    body: str = _setting("", "Request body (sent as JSON when it starts with { or [).", "target")
    header: tuple[str, ...] = _setting((), "Request header 'Name: value' (repeatable).",
                                       "target")
    value: str = _setting("text", "How to read each answer's value: text (the body is an "
                          "integer), json:KEY.PATH, regex:PATTERN (first group) or none.",
                          "target")
    check: str = _setting("counter", "The invariant your app must keep (a scenario's checker).",
                          "target", choices=SCENARIO_NAMES)
    final: str = _setting("", "'GET /path' read from every worker after the load: the final "
                          "value, read as --value says (lost updates need it).", "target")
    redis_url: str = _setting(defaults.REDIS_URL, "Redis of the redis and session stores.",
                              "connection")
    postgres_dsn: str = _setting(defaults.POSTGRES_DSN, "PostgreSQL of the postgres store.",
                                 "connection")
    memcached: str = _setting(defaults.MEMCACHED, "host:port of memcached.", "connection")
    session_backend: str = _setting(defaults.SESSION_BACKEND, "Where the session store keeps "
                                    "sessions.", "connection", choices=SESSION_BACKENDS)
    #: Faults injected during the load (``demo_server.control.faults``: ``kill-worker@2s``...).
    faults: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for setting in SETTINGS:
            setting.check(getattr(self, setting.name), "experiment")
        object.__setattr__(self, "faults", tuple(str(f) for f in parse_faults(self.faults)))
        check_store_faults(self.faults, "" if self.app else self.store, self.session_backend)
        if not self.requests and not self.duration:
            raise ConfigError("an experiment needs a request budget or a duration (or both)")
        if (self.request or self.final or self.body or self.header) and not self.app:
            raise ConfigError("--request, --body, --header and --final describe your own "
                              "app: give --app (or use racelab probe URL)")
        if self.app:
            if self.update != defaults.UPDATE:
                raise ConfigError("--update chooses how racelab's own stores change their "
                                  "state; your app's code decides how it changes its own")
            self.operations()  # a bad request, header or value spec is one clear error
            if self.final:
                final_request(self.final)  # refused now, not after the load
        else:
            check_cell(self.scenario, self.store, self.window, self.update)

    def operations(self) -> tuple[Operation, ...]:
        """What each swarm user sends: the scenario's operations, or, for your own app,
        the ``--request`` / ``--body`` / ``--header`` / ``--value`` ones.

        Raises:
            ConfigError: a request, header or value that cannot be used.
        """
        if not self.app:
            return get_scenario(self.scenario).operations
        return target_operations(self.request, self.body, self.header, self.value, self.check)

    def connected(self, connections: Connections) -> ExperimentSpec:
        """This experiment against the stores ``connections`` names."""
        return dataclasses.replace(
            self, redis_url=connections.redis_url, postgres_dsn=connections.postgres_dsn,
            memcached=connections.memcached, session_backend=connections.session_backend)

    def server_config(self) -> ServerConfig:
        """What every server process of this experiment builds its app from."""
        return ServerConfig(scenario=self.scenario, store=self.store, window=self.window,
                            update=self.update, work_us=self.work_us, mode=self.mode,
                            stock=self.stock,
                            redis_url=self.redis_url, postgres_dsn=self.postgres_dsn,
                            memcached=self.memcached, session_backend=self.session_backend)

    def launch_spec(self, host: str = defaults.HOST, port: int = 0,
                    python: ServerPython | None = None,
                    allow_remote: bool = False) -> LaunchSpec:
        """How this experiment's server is launched (on ``python``: ``server_python()``;
        on loopback unless ``allow_remote``)."""
        from demo_server.control.modes import LaunchSpec

        executable = "" if python is None or python.own else python.executable
        return LaunchSpec(mode=self.mode, workers=self.workers, threads=self.threads,
                          instances=self.instances, host=host, port=port, app=self.app,
                          python=executable, allow_remote=allow_remote)

    def server_python(self, progress: Callable[[str], None] | None = None
                      ) -> ServerPython | None:
        """The interpreter ``python`` names, ready for this mode and store; None: racelab's own.

        The first call for an interpreter may install the server's packages into an
        environment racelab keeps for it (``demo_server.control.server_env``), with
        ``progress`` told what it does; later ones find it ready.

        Raises:
            ConfigError: no such interpreter, not a Python, too old, a mode it cannot
                run (gevent on a free-threaded build) or a package it cannot get.
        """
        if not self.python:
            return None
        from demo_server.control.server_env import server_python

        return server_python(self.python, self.mode, self.store, self.session_backend,
                             app=bool(self.app), progress=progress)

    def swarm_spec(self, urls: Sequence[str], *, insecure: bool = False) -> SwarmSpec:
        """The swarm this experiment sends at ``urls``."""
        from loadtests.runner import SwarmSpec

        return SwarmSpec(urls=tuple(urls), users=self.swarm_users, requests=self.requests,
                         duration=self.duration, burst=bool(self.burst),
                         spawn_rate=self.spawn_rate, processes=self.processes,
                         reconnect=self.reconnect, tabs=self.tabs,
                         operations=self.operations(), insecure=insecure)

    @property
    def target(self) -> str:
        """What is under test, for people: your app's target, or the scenario and store."""
        return self.app or f"{self.scenario} on {self.store}{self.update_text}"

    @property
    def update_text(self) -> str:
        """`` (read-write)`` when the update is not the default, else nothing."""
        return "" if self.update == defaults.UPDATE else f" ({self.update})"

    @property
    def swarm_users(self) -> int:
        return self.burst if self.burst else self.users

    @property
    def label(self) -> str:
        """``store · mode · window``, the scenario first unless it is the counter, the variant
        (``4 tabs``, ``burst 8``) last, and the interpreter asked for: what the run records,
        and the progress prints."""
        python = f" · python {self.python}" if self.python else ""
        return cell_label(dataclasses.asdict(self)) + python

    def command(self, probe_url: str = "") -> str:
        """The ``racelab swarm`` (or ``racelab probe URL``) command that reproduces this.

        Mode, store and window are always named for a swarm; every other setting
        only when it differs from its default. Connection settings other than the
        session backend are left to the environment they ran in.
        """
        argv = ["racelab"]
        if self.session_backend != _DEFAULTS["session_backend"] and not probe_url:
            argv += ["--session-backend", self.session_backend]
        if probe_url:
            argv += ["probe", probe_url]
            served = {st.name for st in SETTINGS if st.group in ("cell", "server")} | {"app"}
        else:
            argv += ["swarm", "--mode", self.mode, "--store", self.store, "--window",
                     self.window]
            served = {"mode", "store", "window"}
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if (setting.group == "connection" or setting.name in served
                    or value == _DEFAULTS[setting.name]):
                continue
            if isinstance(value, tuple):
                for item in value:
                    argv += [setting.flag, item]
                continue
            argv += [setting.flag, f"{value:g}" if isinstance(value, float) else str(value)]
        for fault in self.faults:
            argv += ["--fault", fault]
        return shlex.join(argv)


def target_operations(requests: tuple[str, ...] | list[str], body: str = "",
                      headers: tuple[str, ...] | list[str] = (), value: str = "text",
                      check: str = "counter") -> tuple[Operation, ...]:
    """Operations for a user's app from ``--request``, ``--body``, ``--header``, ``--value``.

    Each request is ``METHOD /path``, optionally followed by ``*WEIGHT`` and
    ``=NAME`` (the history's op name, which the checker reads: the counter's
    checker reads ``incr`` and ``read``). A single request without a name gets
    the name of the checked scenario's first operation (``incr`` for the counter).

    Raises:
        ConfigError: a request line, header or value spec that cannot be used.
    """
    pairs = []
    for header in headers:
        key, sep, text = header.partition(":")
        if not sep or not key.strip():
            raise ConfigError(f"header {header!r}: expected 'Name: value'")
        pairs.append((key.strip(), text.strip()))
    lines = list(requests) or ["GET /"]
    try:
        spec = parse_value_spec(value)
        ops = []
        for line in lines:
            words = line.split()
            name: str | None = None
            if len(words) > 1 and words[-1].startswith("="):
                name = words.pop()[1:]
            if name is None and len(lines) == 1:
                name = get_scenario(check).operations[0].name
            ops.append(parse_request(" ".join(words), name=name, body=body, headers=pairs,
                                     value=spec))
    except OperationError as exc:
        raise ConfigError(str(exc)) from None
    names: dict[str, int] = {}
    unique = []
    for op in ops:  # two requests to one path stay apart in the history
        count = names.get(op.name, 0)
        names[op.name] = count + 1
        unique.append(op if not count else dataclasses.replace(op, name=f"{op.name}.{count + 1}"))
    return tuple(unique)


def final_request(text: str) -> tuple[str, str]:
    """The method and path of ``--final`` (``'GET /count'``, or ``'/count'`` for a GET).

    Raises:
        ConfigError: no path starting with ``/``.
    """
    method, _, path = text.strip().partition(" ")
    if not path:
        method, path = "GET", method
    if not path.startswith("/"):
        raise ConfigError(f"--final {text!r}: expected 'GET /path'")
    return method.upper(), path.strip()


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

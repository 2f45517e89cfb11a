"""The swarm's ``--racelab-*`` options: declared on Locust's parser, read into one object.

The runner sets them as ``RACELAB_SWARM_*`` environment variables on the master
(or the one local process); Locust hands the parsed options to its workers with
every spawn message, so workers need no configuration of their own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from demo_server.basics import defaults
from loadtests.framing import MAX_BODY
from scenarios.operation import Operation, operations_from_json, operations_to_json

__all__ = ["OPTIONS", "SwarmConfig", "add_options", "to_env"]

HOLD = 100_000


@dataclasses.dataclass(frozen=True)
class _Option:
    """One swarm setting: ``--racelab-NAME`` on Locust's parser, ``RACELAB_SWARM_NAME`` in the
    environment the runner sets, and the ``SwarmSpec`` field it comes from."""

    name: str
    kind: type
    default: Any
    help: str

    @property
    def env(self) -> str:
        return "RACELAB_SWARM_" + self.name.upper()


#: The one codec of the swarm's settings, read by ``to_env`` (the runner) and by
#: ``add_options`` and ``SwarmConfig.from_environment`` (every Locust process).
OPTIONS = (
    _Option("urls", str, "", "Comma-separated instance base URLs (default: --host)."),
    _Option("requests", int, 0, "Total requests over all users and processes (0: no bound)."),
    _Option("duration", float, 0.0, "Seconds of load before a graceful stop (0: no bound)."),
    _Option("burst_interval_ms", float, 20.0,
            "Time between burst rounds when several processes burst together."),
    _Option("record", int, 1, "1 records every operation; 0 only counts (for benchmarks)."),
    _Option("timeout", float, defaults.REQUEST_TIMEOUT_S,
            "Connect and read timeout of one request (seconds)."),
    _Option("reconnect", int, defaults.RECONNECT,
            "Open a new connection after this many requests on one (0: keep it while it "
            "lives), as clients do: it spreads a user over a server's worker processes instead "
            "of sticking to the first to accept."),
    _Option("hold", int, HOLD,
            "Operations held in memory (about 500 bytes each) before the oldest are written "
            "to the history; every quarter second, and at the stop, all are written."),
    _Option("operations", str, "",
            "The operations as JSON (scenarios.operation); default: GET /incr, json:value."),
    _Option("tabs", int, 1,
            "Consecutive users that form one client: one cookie jar, one client id."),
    _Option("grace", float, defaults.GRACE_S,
            "Seconds in-flight requests get to finish after an interrupt."),
    _Option("max_body", int, MAX_BODY,
            "Largest answer body accepted (bytes); a larger one is an info operation."),
    _Option("insecure", int, 0, "1: do not check https certificates (a self-signed server)."),
)


def to_env(values: Mapping[str, Any]) -> dict[str, str]:
    """The environment that carries ``values`` (keyed by ``OPTIONS`` names) to Locust."""
    env = {}
    for option in OPTIONS:
        if option.name not in values:
            continue
        value = values[option.name]
        if option.name == "urls":
            value = ",".join(value)
        elif option.name == "operations":
            value = operations_to_json(value)
        elif isinstance(value, bool):
            value = int(value)
        env[option.env] = str(value)
    return env


def add_options(parser: Any, **_kw: Any) -> None:
    """Listener of ``init_command_line_parser``: racelab's options."""
    group = parser.add_argument_group("racelab")
    for option in OPTIONS:
        group.add_argument("--racelab-" + option.name.replace("_", "-"), env_var=option.env,
                           type=option.kind, default=option.default, help=option.help)


@dataclasses.dataclass
class SwarmConfig:
    """What every load-generating process needs to know, read from the parsed options."""

    urls: list[str]
    requests: int = 0
    duration: float = 0.0
    burst_interval_ns: int = 20_000_000
    record: bool = True
    timeout: float = defaults.REQUEST_TIMEOUT_S
    reconnect: int = defaults.RECONNECT
    hold: int = HOLD
    operations: tuple[Operation, ...] = (Operation(),)
    tabs: int = 1
    grace: float = defaults.GRACE_S
    max_body: int = MAX_BODY
    insecure: bool = False
    t0_wall_ns: int = 0
    timeout_ns: int = 0  # ``timeout`` in ns (the hot path adds it per request)

    def __post_init__(self) -> None:
        self.timeout_ns = int(self.timeout * 1e9)

    @classmethod
    def from_environment(cls, environment: Any) -> SwarmConfig:
        options = environment.parsed_options
        given = {o.name: o.kind(o.default) for o in OPTIONS}
        for option in OPTIONS:
            value = getattr(options, "racelab_" + option.name, None) if options else None
            if value is not None:
                given[option.name] = option.kind(value)
        urls = [u.strip().rstrip("/") for u in str(given["urls"]).split(",")]
        operations_json = str(given["operations"])
        t0 = getattr(options, "racelab_t0_wall_ns", None) if options else None
        return cls(
            urls=[u for u in urls if u] or [str(environment.host).rstrip("/")],
            requests=int(given["requests"]),
            duration=float(given["duration"]),
            burst_interval_ns=int(float(given["burst_interval_ms"]) * 1e6),
            record=bool(int(given["record"])),
            timeout=float(given["timeout"]),
            reconnect=max(0, int(given["reconnect"])),
            hold=max(1, int(given["hold"])),
            operations=(operations_from_json(operations_json) if operations_json
                        else (Operation(),)),
            tabs=max(1, int(given["tabs"])),
            grace=max(0.0, float(given["grace"])),
            max_body=max(0, int(given["max_body"])),
            insecure=bool(int(given["insecure"])),
            t0_wall_ns=int(t0 if t0 is not None else time.time_ns()),
        )

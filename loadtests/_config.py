"""The swarm's ``--racelab-*`` options: declared on Locust's parser, read into one object.

The runner sets them as ``RACELAB_SWARM_*`` environment variables on the master
(or the one local process); Locust hands the parsed options to its workers with
every spawn message, so workers need no configuration of their own.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from loadtests.framing import MAX_BODY
from scenarios.operation import Operation, operations_from_json

__all__ = ["SwarmConfig", "add_options"]

HOLD = 100_000


def add_options(parser: Any, **_kw: Any) -> None:
    """Listener of ``init_command_line_parser``: racelab's options."""
    group = parser.add_argument_group("racelab")
    add = group.add_argument
    add("--racelab-urls", env_var="RACELAB_SWARM_URLS", default="",
        help="Comma-separated instance base URLs (default: --host).")
    add("--racelab-requests", env_var="RACELAB_SWARM_REQUESTS", type=int, default=0,
        help="Total requests over all users and processes (0: no bound).")
    add("--racelab-duration", env_var="RACELAB_SWARM_DURATION", type=float, default=0.0,
        help="Seconds of load before a graceful stop (0: no bound).")
    add("--racelab-burst-interval-ms", env_var="RACELAB_SWARM_BURST_INTERVAL_MS", type=float,
        default=20.0, help="Time between burst rounds when several processes burst together.")
    add("--racelab-record", env_var="RACELAB_SWARM_RECORD", type=int, default=1,
        help="1 records every operation; 0 only counts (for benchmarks).")
    add("--racelab-timeout", env_var="RACELAB_SWARM_TIMEOUT", type=float, default=30.0,
        help="Connect and read timeout of one request (seconds).")
    add("--racelab-reconnect", env_var="RACELAB_SWARM_RECONNECT", type=int, default=0,
        help="Open a new connection after this many requests on one (0: keep it while it "
        "lives), as clients do: it spreads a user over a server's worker processes instead "
        "of sticking to the first to accept.")
    add("--racelab-hold", env_var="RACELAB_SWARM_HOLD", type=int, default=HOLD,
        help="Operations held in memory (about 500 bytes each) before the oldest are written "
        "to the history; the rest are written when the test stops.")
    add("--racelab-operations", env_var="RACELAB_SWARM_OPERATIONS", default="",
        help="The operations as JSON (scenarios.operation); default: GET /incr, json:value.")
    add("--racelab-tabs", env_var="RACELAB_SWARM_TABS", type=int, default=1,
        help="Consecutive users that form one client: one cookie jar, one client id.")
    add("--racelab-grace", env_var="RACELAB_SWARM_GRACE", type=float, default=2.0,
        help="Seconds in-flight requests get to finish after an interrupt.")
    add("--racelab-max-body", env_var="RACELAB_SWARM_MAX_BODY", type=int, default=MAX_BODY,
        help="Largest answer body accepted (bytes); a larger one is an info operation.")
    add("--racelab-insecure", env_var="RACELAB_SWARM_INSECURE", type=int, default=0,
        help="1: do not check https certificates (a self-signed test server).")


@dataclasses.dataclass
class SwarmConfig:
    """What every load-generating process needs to know, read from the parsed options."""

    urls: list[str]
    requests: int = 0
    duration: float = 0.0
    burst_interval_ns: int = 20_000_000
    record: bool = True
    timeout: float = 30.0
    reconnect: int = 0
    hold: int = HOLD
    operations: tuple[Operation, ...] = (Operation(),)
    tabs: int = 1
    grace: float = 2.0
    max_body: int = MAX_BODY
    insecure: bool = False
    t0_wall_ns: int = 0
    timeout_ns: int = 30_000_000_000  # ``timeout`` in ns (the hot path adds it per request)

    def __post_init__(self) -> None:
        self.timeout_ns = int(self.timeout * 1e9)

    @classmethod
    def from_environment(cls, environment: Any) -> SwarmConfig:
        options = environment.parsed_options

        def option(name: str, default: Any) -> Any:
            value = getattr(options, name, None) if options is not None else None
            return default if value is None else value

        urls = [u.strip().rstrip("/") for u in str(option("racelab_urls", "")).split(",")]
        operations_json = str(option("racelab_operations", ""))
        return cls(
            urls=[u for u in urls if u] or [str(environment.host).rstrip("/")],
            requests=int(option("racelab_requests", 0)),
            duration=float(option("racelab_duration", 0.0)),
            burst_interval_ns=int(float(option("racelab_burst_interval_ms", 20.0)) * 1e6),
            record=bool(int(option("racelab_record", 1))),
            timeout=float(option("racelab_timeout", 30.0)),
            reconnect=max(0, int(option("racelab_reconnect", 0))),
            hold=max(1, int(option("racelab_hold", HOLD))),
            operations=(operations_from_json(operations_json) if operations_json
                        else (Operation(),)),
            tabs=max(1, int(option("racelab_tabs", 1))),
            grace=max(0.0, float(option("racelab_grace", 2.0))),
            max_body=max(0, int(option("racelab_max_body", MAX_BODY))),
            insecure=bool(int(option("racelab_insecure", 0))),
            t0_wall_ns=int(option("racelab_t0_wall_ns", time.time_ns())),
        )

"""Serving modes: the command lines that launch the one app factory in each way."""

from __future__ import annotations

import dataclasses
import sys

from demo_server.config import MODES
from demo_server.errors import ConfigError

__all__ = ["MULTI_WORKER_MODES", "LaunchSpec", "server_command"]

#: Modes that run a fixed pool of worker processes, each with its own copy of globals.
MULTI_WORKER_MODES = frozenset({"gunicorn-sync", "gunicorn-gthread", "gevent"})
_GUNICORN_WORKER = {"gunicorn-sync": "sync", "gunicorn-gthread": "gthread", "gevent": "gevent"}


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """How to serve: mode and sizes. Defaults suit a 2-core machine.

    Args:
        mode: one of ``MODES``.
        workers: worker processes (gunicorn modes), or the number of forked
            children Werkzeug may run at once (``processes``).
        threads: threads per gunicorn gthread worker (and per cluster instance).
        instances: independent instances in ``cluster`` mode.
        host: interface to bind; loopback unless the user says otherwise.
        port: first port; 0 picks free ones.
    """

    mode: str = "threaded"
    workers: int = 2
    threads: int = 4
    instances: int = 2
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        for name in ("workers", "threads", "instances"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, got {self.port}")

    @property
    def expected_workers(self) -> int:
        """Distinct worker pids one instance must show before it counts as ready."""
        return self.workers if self.mode in MULTI_WORKER_MODES else 1

    @property
    def instance_count(self) -> int:
        return self.instances if self.mode == "cluster" else 1

    def instance_spec(self) -> LaunchSpec:
        """What one instance runs: cluster instances are one-worker gthread servers."""
        if self.mode != "cluster":
            return self
        return dataclasses.replace(self, mode="gunicorn-gthread", workers=1, instances=1)


def server_command(spec: LaunchSpec, port: int) -> list[str]:
    """The argv that serves ``demo_server:create_app()`` as ``spec`` says, on ``port``.

    Args:
        spec: a non-cluster launch spec (see ``LaunchSpec.instance_spec``).
        port: the port to bind on ``spec.host``.

    Returns:
        The argument vector, starting with this interpreter.
    """
    if spec.mode == "cluster":
        raise ConfigError("a cluster is launched one instance at a time")
    if spec.mode in _GUNICORN_WORKER:
        argv = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"{spec.host}:{port}",
            "--workers", str(spec.workers),
            "--worker-class", _GUNICORN_WORKER[spec.mode],
            "--graceful-timeout", "3",
            "--timeout", "120",
            "--backlog", "2048",
            "--error-logfile", "-",
            "--log-level", "info",
        ]
        if spec.mode == "gunicorn-gthread":
            argv += ["--threads", str(spec.threads)]
        if spec.mode == "gevent":
            argv += ["--worker-connections", "2000"]
        return [*argv, "demo_server:create_app()"]
    return [
        sys.executable, "-m", "demo_server.serve",
        "--mode", spec.mode,
        "--host", spec.host,
        "--port", str(port),
        "--processes", str(spec.workers),
    ]

"""Serving modes: the command lines that launch the one app factory in each way."""

from __future__ import annotations

import dataclasses
import functools
import sys

from demo_server.basics import defaults
from demo_server.basics.errors import ConfigError
from demo_server.basics.procs import url_host
from demo_server.served.config import MODES

__all__ = ["MULTI_WORKER_MODES", "LaunchSpec", "server_command"]

#: Modes that run a fixed pool of worker processes, each with its own copy of globals.
MULTI_WORKER_MODES = frozenset({"gunicorn-sync", "gunicorn-gthread", "gevent"})
_GUNICORN_WORKER = {"gunicorn-sync": "sync", "gunicorn-gthread": "gthread", "gevent": "gevent"}


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """How to serve: mode and sizes (``ExperimentSpec.launch_spec`` derives it).

    Args:
        mode: one of ``MODES``.
        workers: worker processes (gunicorn modes), or the number of forked
            children Werkzeug may run at once (``processes``).
        threads: threads per gunicorn gthread worker (and per cluster instance).
        instances: independent instances in ``cluster`` mode.
        host: interface to bind; loopback unless the user says otherwise.
        allow_remote: the user allowed a ``host`` other machines can reach.
        port: first port; 0 picks free ones.
        app: the WSGI app to serve, as ``path/to/file.py:app``, ``package.module:app``
            or ``package.module:create_app()`` (see ``demo_server.served.target``); empty:
            racelab's own demo app, ``demo_server:create_app()``.
        python: the interpreter file the server runs on, ready to serve
            (``demo_server.control.server_env.server_python`` gives it); empty:
            racelab's own.
    """

    mode: str = defaults.MODE
    workers: int = defaults.WORKERS
    threads: int = defaults.THREADS
    instances: int = defaults.INSTANCES
    host: str = defaults.HOST
    port: int = 0
    app: str = ""
    python: str = ""
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        for name in ("workers", "threads", "instances"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, got {self.port}")

    @property
    def executable(self) -> str:
        """The interpreter the server is started with."""
        return self.python or sys.executable

    @property
    def own_python(self) -> bool:
        """The server runs on racelab's own interpreter (it may fork from racelab's zygotes)."""
        return self.executable == sys.executable

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


_CONTROL_SOCKET = ("from gunicorn.config import KNOWN_SETTINGS\n"
                   "print(any(getattr(s, 'name', '') == 'control_socket' for s in KNOWN_SETTINGS))")


@functools.cache
def gunicorn_has_control_socket(python: str = "") -> bool:
    """True when the gunicorn ``python`` (default: this one) imports has the control socket
    settings (gunicorn 25.1 and later)."""
    if python and python != sys.executable:
        import subprocess  # only for another interpreter: racelab --help stays light

        try:
            done = subprocess.run([python, "-c", _CONTROL_SOCKET], capture_output=True,
                                  text=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return False
        return done.stdout.strip() == "True"
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return False
    return any(getattr(s, "name", "") == "control_socket" for s in KNOWN_SETTINGS)


def server_command(spec: LaunchSpec, port: int, control_socket: str = "") -> list[str]:
    """The argv that serves the app as ``spec`` says, on ``port``.

    racelab's own app is ``demo_server:create_app()``; a user's app (``spec.app``)
    is loaded in each worker by ``demo_server.served.target:stamped_app_from_env()`` from
    ``RACELAB_TARGET``, which the supervisor sets.

    Args:
        spec: a non-cluster launch spec (see ``LaunchSpec.instance_spec``).
        port: the port to bind on ``spec.host``.
        control_socket: where gunicorn's control socket goes (a path inside the run
            directory); empty: none. Never gunicorn's shared default in ``$HOME``.

    Returns:
        The argument vector, starting with the interpreter (``spec.executable``).
    """
    if spec.mode == "cluster":
        raise ConfigError("a cluster is launched one instance at a time")
    if spec.mode in _GUNICORN_WORKER:
        argv = [
            spec.executable, "-m", "gunicorn",
            "--bind", f"{url_host(spec.host)}:{port}",
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
        if gunicorn_has_control_socket(spec.python):
            argv += ["--control-socket", control_socket] if control_socket else [
                "--no-control-socket"]
        app = "demo_server.served.target:stamped_app_from_env()" if spec.app else (
            "demo_server:create_app()")
        return [*argv, app]
    argv = [
        spec.executable, "-m", "demo_server.app.serve",
        "--mode", spec.mode,
        "--host", spec.host,
        "--port", str(port),
        "--processes", str(spec.workers),
    ]
    return [*argv, "--app-from-env"] if spec.app else argv

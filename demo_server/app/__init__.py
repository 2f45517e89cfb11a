"""The one Flask app factory every serving mode launches."""

from __future__ import annotations

import os
import platform
import threading
import time

from flask import Flask, Response, jsonify, request

from demo_server.basics.errors import RacelabError
from demo_server.served import gil
from demo_server.served.config import ServerConfig
from scenarios.registry import check_cell, get_scenario

__all__ = ["create_app", "gil_enabled"]


gil_enabled = gil.gil_enabled


class _Served:
    """How many increments this process performed: the server-side truth."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1

    def reset(self) -> None:
        with self._lock:
            self.value = 0


def create_app(config: ServerConfig | None = None) -> Flask:
    """Build the demo app.

    Args:
        config: what to run; ``None`` reads ``RACELAB_*`` environment variables,
            which is how gunicorn (``'demo_server:create_app()'``) and the
            Werkzeug launcher pass it to each worker.

    Returns:
        The Flask app with the scenario's routes (the counter's ``/`` and
        ``/incr``), and ``/state``, ``/reset`` and ``/healthz``.
    """
    config = ServerConfig.from_env() if config is None else config
    app = Flask(__name__)
    app.config["RACELAB"] = config
    served = _Served()
    identity = {
        "store": config.store,
        "window": config.window,
        "update": config.update,
        "mode": config.mode,
        "scenario": config.scenario,
        "instance": config.instance,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "gil": gil_enabled(),
    }
    app.config["RACELAB_IDENTITY"] = identity
    check_cell(config.scenario, config.store, config.window, config.update)
    side = get_scenario(config.scenario).serve(app, config, served)

    @app.errorhandler(RacelabError)
    def store_error(exc: RacelabError) -> tuple[Response, int]:
        return jsonify(error=str(exc), pid=os.getpid()), 503

    def hold() -> None:
        # Probes ask the answering worker to stay busy a moment, so that
        # concurrent probes reach every worker of a pool.
        hold_ms = min(request.args.get("hold_ms", 0, type=int), 500)
        if hold_ms > 0:
            time.sleep(hold_ms / 1000)

    @app.get("/state")
    def state() -> Response:
        hold()
        return jsonify(
            **side.state(),
            served=served.value,
            pid=os.getpid(),
            per_process=config.per_process,
            **{**identity, **gil.state()},
        )

    @app.post("/reset")
    def reset() -> Response:
        side.reset()
        served.reset()
        return jsonify(**side.state(), pid=os.getpid())

    @app.get("/healthz")
    def healthz() -> Response:
        hold()
        # The interpreter and its GIL as they are now, after the app and its imports.
        return jsonify(ok=True, pid=os.getpid(), **{**identity, **gil.state()})

    return app

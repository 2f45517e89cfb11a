"""The demo Flask server whose shared state racelab puts under load.

``create_app`` is the one factory; ``Supervisor`` launches it in a mode.

``create_app`` and ``gil_enabled`` are imported on first use: Flask costs a
command that only reads histories (``racelab check``) a fifth of a second.

Every server process imports this package before Flask, gunicorn's workers and
the app: it starts watching, from here on, for a module that turns a
free-threaded interpreter's GIL back on (``demo_server.served.gil``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demo_server.basics.errors import (
    ConfigError,
    LeftoverProcesses,
    PortInUse,
    RacelabError,
    ServerNotReady,
    StoreUnavailable,
)
from demo_server.served import gil as _gil
from demo_server.served.config import MODES, STORES, WINDOWS, ServerConfig

_gil.watch()

if TYPE_CHECKING:
    from demo_server.app import create_app, gil_enabled

__all__ = [
    "MODES",
    "STORES",
    "WINDOWS",
    "ConfigError",
    "LeftoverProcesses",
    "PortInUse",
    "RacelabError",
    "ServerConfig",
    "ServerNotReady",
    "StoreUnavailable",
    "create_app",
    "gil_enabled",
]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "gil_enabled"):
        from demo_server import app

        return getattr(app, name)
    raise AttributeError(f"module 'demo_server' has no attribute {name!r}")

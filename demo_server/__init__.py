"""The demo Flask server whose shared state racelab puts under load.

``create_app`` is the one factory; ``Supervisor`` launches it in a mode.
"""

from __future__ import annotations

from demo_server.app import create_app, gil_enabled
from demo_server.config import MODES, STORES, WINDOWS, ServerConfig
from demo_server.errors import (
    ConfigError,
    LeftoverProcesses,
    PortInUse,
    RacelabError,
    ServerNotReady,
    StoreUnavailable,
)

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

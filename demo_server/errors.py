"""Typed errors raised by racelab's library code; the CLI turns them into one line."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "LeftoverProcesses",
    "PortInUse",
    "RacelabError",
    "ServerNotReady",
    "StoreUnavailable",
]


class RacelabError(Exception):
    """Base of every error racelab reports to a user as one line."""


class ConfigError(RacelabError):
    """A configuration value is unknown or out of range."""


class PortInUse(RacelabError):
    """The requested port on the requested host is already taken."""


class ServerNotReady(RacelabError):
    """A server did not answer (or not every worker answered) before the deadline."""


class LeftoverProcesses(RacelabError):
    """Processes of a server's group were still alive after it was stopped."""


class StoreUnavailable(RacelabError):
    """An external store (Redis, PostgreSQL, memcached) cannot be reached."""

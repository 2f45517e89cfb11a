"""Typed errors raised by racelab's library code; the CLI turns them into one line."""

from __future__ import annotations

__all__ = [
    "BadHost",
    "ConfigError",
    "FaultError",
    "LeftoverProcesses",
    "PortInUse",
    "RacelabError",
    "ServerNotReady",
    "StoreUnavailable",
    "TargetError",
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


class BadHost(ConfigError):
    """A host to listen on that is not an address of this machine (or not an address)."""


class TargetError(ConfigError):
    """A user's app (``--app``) that cannot be parsed, found, imported or served.

    The message is one line: what was given, and the first lines of the
    underlying error (its type, message and where it was raised).
    """


class FaultError(ConfigError):
    """A fault spec (``--fault``) that cannot be parsed, or cannot be applied to this run."""

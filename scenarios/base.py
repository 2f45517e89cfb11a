"""What a scenario is: one module bundling a shared-state workload's parts.

A scenario (Jepsen's workloads are the model: ``bank.clj`` holds the client
operations, the generator and the checker side by side) owns:

- its **operations**: what a swarm user sends and how it reads the answer, as
  data (``scenarios.operation.Operation``), so the swarm is not wired to one
  endpoint;
- its **server side**: ``serve(app, config, served)`` adds the operations'
  routes to racelab's one Flask app for the configured store and returns the
  hooks the app's ``/state`` and ``/reset`` use; ``prepare``/``cleanup`` run
  before a server starts and after it stopped;
- its **checkers**: names registered in ``reports.history.checkers`` (``check``);
- its **updates**: per shared store, the ways it can change the state (``atomic``, the
  default, and the naive ``read-write`` with its ``locked`` and ``optimistic`` fixes);
- its **explanations**: the sentences a report uses for its stores and updates.

``scenarios.registry`` names the scenarios; adding one is one module and a line
there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from scenarios.operation import Operation

if TYPE_CHECKING:
    from flask import Flask

    from demo_server.served.config import ServerConfig

__all__ = ["Scenario", "Served", "ServerSide"]


class Served(Protocol):
    """The server-side count of performed operations (``/state``'s ``served``)."""

    def add(self) -> None: ...


class ServerSide(Protocol):
    """What the app's generic routes need from a scenario's server side."""

    def state(self) -> dict[str, Any]:
        """The scenario's state for ``/state`` (the counter: ``{"value": N}``)."""
        ...

    def reset(self) -> None:
        """Back to the initial state (``/reset``)."""
        ...


def _no_hook(config: ServerConfig) -> None:
    """A scenario without preparation or cleanup."""


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One workload: operations, server side, checkers and explanations.

    Attributes:
        name: the registry name (``--scenario NAME``).
        title: a short phrase for reports ("increment and return a counter").
        operations: what a swarm user sends, with weights.
        stores: the stores this scenario implements.
        windowed_stores: the stores where a window between read and write applies (it
            also applies to the ``read-write`` and ``locked`` updates of any store).
        checkers: names of ``reports.history.checkers`` checkers this scenario runs.
        serve: ``serve(app, config, served) -> ServerSide``: add the routes.
        prepare: before a server starts: check the store (raise StoreUnavailable).
        cleanup: after a server stopped: remove what the run left in the store.
        updates: per shared store, the updates it offers (``atomic`` first); a store
            not named here has its one way, which counts as ``atomic``.
        store_sentences: per store (``redis``) or store and update (``redis:read-write``),
            the sentence a report uses to explain it.
        register: called once before the first check, to register the checkers.
    """

    name: str
    title: str
    operations: tuple[Operation, ...]
    stores: tuple[str, ...]
    windowed_stores: frozenset[str]
    checkers: tuple[str, ...]
    serve: Callable[[Flask, ServerConfig, Served], ServerSide]
    prepare: Callable[[ServerConfig], None] = _no_hook
    cleanup: Callable[[ServerConfig], None] = _no_hook
    updates: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    store_sentences: Mapping[str, str] = dataclasses.field(default_factory=dict)
    register: Callable[[], None] | None = None

    def updates_of(self, store: str) -> tuple[str, ...]:
        """The updates ``store`` offers in this scenario (``("atomic",)`` for most)."""
        return self.updates.get(store, ("atomic",))

    def explain_store(self, store: str, update: str = "atomic") -> list[str]:
        """The report's sentence for ``store`` changed by ``update`` (none if it has none)."""
        sentence = (self.store_sentences.get(f"{store}:{update}") if update != "atomic"
                    else None) or self.store_sentences.get(store)
        return [sentence] if sentence else []

"""The scenarios racelab knows, by name; each lives in its own module.

Adding a scenario: write ``scenarios/NAME.py`` with a module-level
``SCENARIO = Scenario(...)`` (see ``scenarios.base``) and add its name here.
Modules are imported on first use, so listing names costs nothing.
"""

from __future__ import annotations

import functools
import importlib

from demo_server.basics.errors import ConfigError
from scenarios.base import Scenario

__all__ = ["SCENARIO_NAMES", "WINDOWED_UPDATES", "check_cell", "get_scenario"]

#: Scenario name -> module holding its ``SCENARIO``.
_MODULES = {
    "counter": "scenarios.counter",
    "tickets": "scenarios.tickets",
    "bank": "scenarios.bank",
    "ids": "scenarios.ids",
    "session": "scenarios.session",
}
SCENARIO_NAMES = tuple(_MODULES)


@functools.cache
def get_scenario(name: str) -> Scenario:
    """The scenario registered under ``name``.

    Raises:
        ConfigError: no such scenario.
    """
    module = _MODULES.get(name)
    if module is None:
        raise ConfigError(f"unknown scenario {name!r}; choose one of: {', '.join(_MODULES)}")
    scenario = importlib.import_module(module).SCENARIO
    if not isinstance(scenario, Scenario) or scenario.name != name:
        raise ConfigError(f"{module}.SCENARIO is not the {name!r} scenario")
    return scenario


#: The updates with a read and a write that a window can pull apart.
WINDOWED_UPDATES = ("read-write", "locked")


def check_cell(scenario: str, store: str, window: str, update: str = "atomic") -> None:
    """Refuse a store the scenario does not have, an update its store does not offer, or a
    window where nothing separates a read from a write.

    A window applies to the scenario's ``windowed_stores`` (the module object) and to
    the ``read-write`` and ``locked`` updates of a shared store; an ``atomic`` update is
    one step in the store, and an ``optimistic`` one retries whatever the window.

    Raises:
        ConfigError: naming the scenario's stores, a store's updates, or where a
            window applies.
    """
    found = get_scenario(scenario)
    if store not in found.stores:
        raise ConfigError(
            f"the {scenario} scenario has no {store!r} store; "
            f"choose one of: {', '.join(found.stores)}"
        )
    offered = found.updates_of(store)
    if update not in offered:
        with_updates = [s for s in found.stores if len(found.updates_of(s)) > 1]
        if len(offered) == 1:
            raise ConfigError(
                f"update {update!r}: the {scenario} scenario's {store!r} store has one way to "
                f"change its state; the updates apply to its stores "
                f"{', '.join(with_updates) or '(none)'}")
        raise ConfigError(f"the {scenario} scenario's {store!r} store has no {update!r} update; "
                          f"choose one of: {', '.join(offered)}")
    windowed = found.windowed_stores
    if window != "none" and store not in windowed and update not in WINDOWED_UPDATES:
        if len(offered) > 1:
            raise ConfigError(
                f"window {window!r} applies only to the stores {', '.join(sorted(windowed))} "
                f"and to the read-write and locked updates; the {update} update of {store!r} "
                + ("changes the state in one step" if update == "atomic"
                   else "retries on conflict, whatever runs in between"))
        raise ConfigError(
            f"window {window!r} applies only to the stores "
            f"{', '.join(sorted(windowed))}; {store!r} updates atomically"
        )

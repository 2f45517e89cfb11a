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

__all__ = ["SCENARIO_NAMES", "check_cell", "get_scenario"]

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


def check_cell(scenario: str, store: str, window: str) -> None:
    """Refuse a store the scenario does not have, or a window on a store it updates atomically.

    Raises:
        ConfigError: naming the scenario's stores, or the stores a window applies to.
    """
    found = get_scenario(scenario)
    if store not in found.stores:
        raise ConfigError(
            f"the {scenario} scenario has no {store!r} store; "
            f"choose one of: {', '.join(found.stores)}"
        )
    windowed = found.windowed_stores
    if window != "none" and store not in windowed:
        raise ConfigError(
            f"window {window!r} applies only to the stores "
            f"{', '.join(sorted(windowed))}; {store!r} updates atomically"
        )

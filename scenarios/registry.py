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

__all__ = ["SCENARIO_NAMES", "get_scenario"]

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

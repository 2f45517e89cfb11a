"""Matrix presets: TOML files naming which (store, window, mode) cells to run and how hard.

A preset has a ``[swarm]`` table (users, requests, burst), a ``[server]`` table
(workers, threads, instances) and a list of ``[[cells]]`` groups, each the cross
product of its ``stores``, ``windows`` and ``modes``. Any setting of
``scenarios.run.spec.ExperimentSpec`` may be given in the table of its group
(``[swarm]``: users, requests, duration, burst, ...; ``[server]``: workers,
threads, instances) or in a cells group (also ``scenario``, ``work_us``). A group marked
``optional = true`` holds external stores that are added only when reachable.
Windows apply only to the stores that have a read and a write to pull apart
(``global`` and ``lock``); other stores in a group run once, with window ``none``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from demo_server.basics.errors import ConfigError
from scenarios.registry import get_scenario
from scenarios.run.spec import MATRIX_DEFAULTS, SETTINGS, ExperimentSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["PRESETS_DIR", "Cell", "Preset", "expand", "load_preset", "preset_names"]

PRESETS_DIR = Path(__file__).resolve().parent / "presets"


@dataclasses.dataclass(frozen=True)
class Cell(ExperimentSpec):
    """One experiment of a matrix: an ``ExperimentSpec`` that may be skipped.

    Attributes:
        optional: run only when its store is reachable (external stores).
        repeat: how many times the cell is run (its further runs in ``repeats/<n>/``).
    """

    optional: bool = False
    repeat: int = 1

    @property
    def id(self) -> str:
        if self.app:
            return f"app-{self.mode}" + (f"-burst{self.burst}" if self.burst else "")
        scenario = "" if self.scenario == "counter" else f"{self.scenario}-"
        burst = f"-burst{self.burst}" if self.burst else ""
        tabs = f"-tabs{self.tabs}" if self.tabs > 1 else ""
        return f"{scenario}{self.store}-{self.window}-{self.mode}{burst}{tabs}"

    def spec(self, **changes: Any) -> ExperimentSpec:
        """The experiment this cell runs (with ``changes`` applied)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(ExperimentSpec)}
        return ExperimentSpec(**{**values, **changes})


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named matrix."""

    name: str
    description: str
    budget_s: float
    cells: tuple[Cell, ...]
    source: str
    #: also race the original code under every Python on the machine (the report's table)
    interpreters: bool = True


_BY_GROUP = {group: {st.name: st for st in SETTINGS if st.group == group}
             for group in ("cell", "server", "swarm", "target")}
_TOP_KEYS = {"name", "description", "budget_s", "interpreters", "swarm", "server", "cells"}
# ``repeat`` belongs to a matrix cell, not to one experiment: it is no ExperimentSpec setting.
_SWARM_KEYS = {*_BY_GROUP["swarm"], "repeat"}
_SERVER_KEYS = set(_BY_GROUP["server"])
# A group names lists of stores, windows and modes; any other setting is one value.
_LIST_KEYS = {"stores": "store", "windows": "window", "modes": "mode"}
_GROUP_KEYS = {"optional", *_LIST_KEYS, *(set(_BY_GROUP["cell"]) - set(_LIST_KEYS.values())),
               *_SWARM_KEYS, *_SERVER_KEYS, *_BY_GROUP["target"]}
_SETTING = {st.name: st for st in SETTINGS}


def preset_names() -> list[str]:
    """The presets shipped with racelab."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def _unknown(where: str, data: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        allowed_list = ", ".join(sorted(allowed))
        raise ConfigError(f"{where}: unknown key {extra[0]!r} (allowed: {allowed_list})")


def _names(where: str, group: dict[str, Any], key: str) -> list[str]:
    values = group.get(key)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{where}: {key} must be a non-empty list of names")
    allowed = _SETTING[_LIST_KEYS[key]].choices
    for value in values:
        if value not in allowed:
            raise ConfigError(
                f"{where}: unknown {key[:-1]} {value!r}; choose from {', '.join(allowed)}"
            )
    return values


def expand(
    where: str,
    groups: list[dict[str, Any]],
    swarm: dict[str, Any],
    server: dict[str, Any],
) -> tuple[Cell, ...]:
    """Turn ``[[cells]]`` groups into cells, without repeats, in the order given.

    A group's own values beat the preset's ``[swarm]`` and ``[server]`` tables,
    which beat ``ExperimentSpec``'s defaults (a cell's request budget defaults to
    ``MATRIX_DEFAULTS``). Every value is checked against its ``Setting``.
    """
    cells: dict[str, Cell] = {}
    for index, group in enumerate(groups, 1):
        at = f"{where} cells group {index}"
        _unknown(at, group, _GROUP_KEYS)
        stores = _names(at, group, "stores")
        windows = _names(at, group, "windows")
        modes = _names(at, group, "modes")
        values: dict[str, Any] = dict(MATRIX_DEFAULTS)
        values.update({k: v for k, v in {**server, **swarm}.items()})
        values.update({k: v for k, v in group.items() if k in _SETTING})
        repeat = group.get("repeat", values.pop("repeat", 1))
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 1000:
            raise ConfigError(f"{at}: repeat must be a whole number between 1 and 1,000")
        for key, value in values.items():
            _SETTING[key].check(value, at)
        scenario = get_scenario(values.get("scenario", "counter"))
        for store in stores:
            if store not in scenario.stores:
                raise ConfigError(f"{at}: the {scenario.name} scenario has no {store!r} store")
            store_windows = windows if store in scenario.windowed_stores else ["none"]
            for window in dict.fromkeys(store_windows):
                for mode in modes:
                    try:
                        cell = Cell(store=store, window=window, mode=mode,
                                    optional=bool(group.get("optional")), repeat=repeat,
                                    **values)
                    except ConfigError as exc:
                        raise ConfigError(f"{at}: {exc}") from None
                    cells.setdefault(cell.id, cell)
    if not cells:
        raise ConfigError(f"{where}: no cells")
    return tuple(cells.values())


def load_preset(name_or_path: str) -> Preset:
    """Load a shipped preset by name, or a user's TOML file by path.

    Raises:
        ConfigError: unknown preset, unreadable file, bad TOML, unknown keys or names.
    """
    path = Path(name_or_path)
    if not path.suffix and (PRESETS_DIR / f"{name_or_path}.toml").exists():
        path = PRESETS_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ConfigError(
            f"no preset {name_or_path!r}: give one of {', '.join(preset_names())} or a TOML file"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read preset {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    where = str(path)
    _unknown(where, data, _TOP_KEYS)
    swarm, server = data.get("swarm", {}), data.get("server", {})
    _unknown(f"{where} [swarm]", swarm, _SWARM_KEYS)
    _unknown(f"{where} [server]", server, _SERVER_KEYS)
    groups = data.get("cells")
    if not isinstance(groups, list) or not groups:
        raise ConfigError(f"{where}: needs at least one [[cells]] group")
    budget = data.get("budget_s", 120)
    if not isinstance(budget, (int, float)) or budget <= 0:
        raise ConfigError(f"{where}: budget_s must be a positive number of seconds")
    interpreters = data.get("interpreters", True)
    if not isinstance(interpreters, bool):
        raise ConfigError(f"{where}: interpreters must be true or false")
    return Preset(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        budget_s=float(budget),
        cells=expand(where, groups, swarm, server),
        source=where,
        interpreters=interpreters,
    )

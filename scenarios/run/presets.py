"""Matrix presets: TOML files naming which (store, window, update, mode) cells to run and how
hard.

A preset has a ``[swarm]`` table (users, requests, burst), a ``[server]`` table
(workers, threads, instances) and a list of ``[[cells]]`` groups, each the cross
product of its ``stores``, ``windows``, ``updates`` (optional, default ``["atomic"]``)
and ``modes``. Any setting of
``scenarios.run.spec.ExperimentSpec`` may be given in the table of its group
(``[swarm]``: users, requests, duration, burst, ...; ``[server]``: workers,
threads, instances) or in a cells group (also ``scenario``, ``work_us``). A group marked
``optional = true`` holds external stores that are added only when reachable.
Windows apply only where a read and a write can be pulled apart (the ``global`` and
``lock`` stores, the ``read-write`` and ``locked`` updates); other cells of a group
run once, with window ``none``. Updates apply to the stores that offer them: a
store with one way to change its state runs once, a store without a listed
update is left out of that group.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from pathlib import Path
from typing import Any

from demo_server.basics.errors import ConfigError
from scenarios.registry import WINDOWED_UPDATES, get_scenario
from scenarios.run.spec import MATRIX_DEFAULTS, SETTINGS, ExperimentSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["PRESETS_DIR", "Cell", "Preset", "expand", "load_preset", "on_python",
           "preset_names"]

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
        python = "-py" + re.sub(r"[^A-Za-z0-9.]+", "-", self.python).strip("-") if (
            self.python) else ""
        if self.app:
            return f"app-{self.mode}" + (f"-burst{self.burst}" if self.burst else "") + python
        scenario = "" if self.scenario == "counter" else f"{self.scenario}-"
        burst = f"-burst{self.burst}" if self.burst else ""
        tabs = f"-tabs{self.tabs}" if self.tabs > 1 else ""
        update = "" if self.update == "atomic" else f"-{self.update}"
        return f"{scenario}{self.store}{update}-{self.window}-{self.mode}{burst}{tabs}{python}"

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
_LIST_KEYS = {"stores": "store", "windows": "window", "updates": "update", "modes": "mode"}
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
        if not isinstance(group, dict):
            raise ConfigError(f"{at}: must be a table of settings ([[cells]]), "
                              f"got {type(group).__name__} {group!r}")
        _unknown(at, group, _GROUP_KEYS)
        if not isinstance(group.get("optional", False), bool):
            raise ConfigError(f"{at}: optional must be true or false")
        stores = _names(at, group, "stores")
        windows = _names(at, group, "windows")
        updates = _names(at, group, "updates") if "updates" in group else ["atomic"]
        modes = _names(at, group, "modes")
        values: dict[str, Any] = dict(MATRIX_DEFAULTS)
        values.update({k: v for k, v in {**server, **swarm}.items()})
        values.update({k: v for k, v in group.items() if k in _SETTING})
        repeat = group.get("repeat", values.pop("repeat", 1))
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 1000:
            raise ConfigError(f"{at}: repeat must be a whole number between 1 and 1,000")
        for key, value in values.items():
            _SETTING[key].check(value, at, given=True)
        scenario = get_scenario(values.get("scenario", "counter"))
        for store in stores:
            if store not in scenario.stores:
                raise ConfigError(f"{at}: the {scenario.name} scenario has no {store!r} store")
            offered = scenario.updates_of(store)
            store_updates = ["atomic"] if len(offered) == 1 else [
                u for u in updates if u in offered]
            for update in store_updates:
                windowed = store in scenario.windowed_stores or update in WINDOWED_UPDATES
                for window in dict.fromkeys(windows if windowed else ["none"]):
                    for mode in modes:
                        try:
                            cell = Cell(store=store, window=window, update=update, mode=mode,
                                        optional=bool(group.get("optional")), repeat=repeat,
                                        **values)
                        except ConfigError as exc:
                            raise ConfigError(f"{at}: {exc}") from None
                        cells.setdefault(cell.id, cell)
    if not cells:
        raise ConfigError(f"{where}: no cells")
    return tuple(cells.values())


def on_python(cells: tuple[Cell, ...], python: str) -> tuple[Cell, ...]:
    """Every cell served by ``python`` (``racelab demo --python``); a cell named twice runs once.

    Cells that already named an interpreter (the classroom's free-threaded ones)
    are now the same as the others, so they fall together.
    """
    found: dict[str, Cell] = {}
    for cell in cells:
        moved = dataclasses.replace(cell, python=python)
        found.setdefault(moved.id, moved)
    return tuple(found.values())


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
    for key, table in (("swarm", swarm), ("server", server)):
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {key} must be a [{key}] table, got {table!r}")
    _unknown(f"{where} [swarm]", swarm, _SWARM_KEYS)
    _unknown(f"{where} [server]", server, _SERVER_KEYS)
    groups = data.get("cells")
    if not isinstance(groups, list) or not groups:
        raise ConfigError(f"{where}: needs at least one [[cells]] group")
    budget = data.get("budget_s", 120)
    if (isinstance(budget, bool) or not isinstance(budget, (int, float))
            or not math.isfinite(budget) or budget <= 0):
        raise ConfigError(f"{where}: budget_s must be a positive number of seconds, "
                          f"got {budget!r}")
    for key in ("name", "description"):
        text = data.get(key, "x")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: {key} must be a text that is not blank, got {text!r}")
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

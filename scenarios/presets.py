"""Matrix presets: TOML files naming which (store, window, mode) cells to run and how hard.

A preset has a ``[swarm]`` table (users, requests, burst), a ``[server]`` table
(workers, threads, instances) and a list of ``[[cells]]`` groups, each the cross
product of its ``stores``, ``windows`` and ``modes``. A group marked
``optional = true`` holds external stores that are added only when reachable.
Windows apply only to the stores that have a read and a write to pull apart
(``global`` and ``lock``); other stores in a group run once, with window ``none``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from demo_server.config import MODES, STORES, WINDOWED_STORES, WINDOWS
from demo_server.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["PRESETS_DIR", "Cell", "Preset", "expand", "load_preset", "preset_names"]

PRESETS_DIR = Path(__file__).resolve().parent / "presets"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One experiment of a matrix: what to serve and how hard to load it."""

    store: str
    window: str
    mode: str
    users: int
    requests: int
    burst: int = 0
    workers: int = 2
    threads: int = 4
    instances: int = 2
    optional: bool = False
    repeat: int = 1  # how many times the cell is run (its further runs in repeats/<n>/)

    @property
    def id(self) -> str:
        burst = f"-burst{self.burst}" if self.burst else ""
        return f"{self.store}-{self.window}-{self.mode}{burst}"

    @property
    def label(self) -> str:
        burst = f" · burst {self.burst}" if self.burst else ""
        return f"{self.store} · {self.window} · {self.mode}{burst}"


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named matrix."""

    name: str
    description: str
    budget_s: float
    cells: tuple[Cell, ...]
    source: str


_TOP_KEYS = {"name", "description", "budget_s", "swarm", "server", "cells"}
_SWARM_KEYS = {"users", "requests", "burst", "repeat"}
_SERVER_KEYS = {"workers", "threads", "instances"}
_GROUP_KEYS = {"stores", "windows", "modes", "optional", *_SWARM_KEYS, *_SERVER_KEYS}


def preset_names() -> list[str]:
    """The presets shipped with racelab."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def _unknown(where: str, data: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        allowed_list = ", ".join(sorted(allowed))
        raise ConfigError(f"{where}: unknown key {extra[0]!r} (allowed: {allowed_list})")


def _names(where: str, group: dict[str, Any], key: str, allowed: tuple[str, ...]) -> list[str]:
    values = group.get(key)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{where}: {key} must be a non-empty list of names")
    for value in values:
        if value not in allowed:
            raise ConfigError(
                f"{where}: unknown {key[:-1]} {value!r}; choose from {', '.join(allowed)}"
            )
    return values


def _count(where: str, value: Any, key: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{where}: {key} must be a whole number of at least {minimum}")
    return value


def expand(
    where: str,
    groups: list[dict[str, Any]],
    swarm: dict[str, Any],
    server: dict[str, Any],
) -> tuple[Cell, ...]:
    """Turn ``[[cells]]`` groups into cells, without repeats, in the order given."""
    cells: dict[str, Cell] = {}
    for index, group in enumerate(groups, 1):
        at = f"{where} cells group {index}"
        _unknown(at, group, _GROUP_KEYS)
        stores = _names(at, group, "stores", STORES)
        windows = _names(at, group, "windows", WINDOWS)
        modes = _names(at, group, "modes", MODES)
        sizes = {
            key: _count(at, group.get(key, swarm.get(key, server.get(key, default))), key,
                        0 if key == "burst" else 1)
            for key, default in (("users", 16), ("requests", 400), ("burst", 0),
                                 ("workers", 2), ("threads", 4), ("instances", 2),
                                 ("repeat", 1))
        }
        for store in stores:
            store_windows = windows if store in WINDOWED_STORES else ["none"]
            for window in dict.fromkeys(store_windows):
                for mode in modes:
                    cell = Cell(store, window, mode, optional=bool(group.get("optional")),
                                **sizes)
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
    return Preset(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        budget_s=float(budget),
        cells=expand(where, groups, swarm, server),
        source=where,
    )

"""Which interpreter a server process runs on, and whether its GIL is on, measured in it.

A free-threaded CPython (3.13t, 3.14t) starts without the GIL, and turns it back
on when it imports an extension module that has not declared it can run
without one; Python then warns, naming the module ("The global interpreter lock
(GIL) has been enabled to load module 'X'..."). ``watch()`` records those
warnings (they are still shown as before); ``state()`` says, at the moment it is
called, what this process runs on:

    {"python": "3.13.15", "implementation": "CPython", "build": "free-threaded",
     "gil": False, "gil_enabled_by": [], "python_gil": "", "executable": "..."}

``build`` is ``free-threaded`` for a ``--disable-gil`` build and ``default``
otherwise; ``python_gil`` is the ``PYTHON_GIL`` environment variable (``1``
forces the GIL on, ``0`` keeps it off) when it is set. Standard library only:
it runs in every server process, under any interpreter racelab serves on.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import warnings
from typing import Any

__all__ = ["gil_enabled", "reenabled_by", "state", "watch"]

_REENABLED = re.compile(r"GIL\) has been enabled to load module '([^']+)'")
_seen: list[str] = []
_original_showwarning: Any = None


def gil_enabled() -> bool:
    """True unless this is a free-threaded build running without the GIL."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


def reenabled_by(message: str) -> str:
    """The module a "GIL has been enabled to load module" warning names; empty otherwise."""
    match = _REENABLED.search(message)
    return match.group(1) if match else ""


def _record(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
            line: str | None = None) -> None:
    module = reenabled_by(str(message))
    if module and module not in _seen:
        _seen.append(module)
    _original_showwarning(message, category, filename, lineno, file, line)


def watch() -> None:
    """Record every module that turns the GIL back on from now on (idempotent)."""
    global _original_showwarning
    if _original_showwarning is not None:
        return
    _original_showwarning = warnings.showwarning
    warnings.showwarning = _record


def state() -> dict[str, Any]:
    """This process's interpreter and its GIL, now (see the module's docstring)."""
    import sysconfig  # asked when a server reports itself, not when racelab starts

    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "build": "free-threaded" if free_threaded else "default",
        "gil": gil_enabled(),
        "gil_enabled_by": list(_seen),
        "python_gil": os.environ.get("PYTHON_GIL", ""),
        "executable": sys.executable,
    }

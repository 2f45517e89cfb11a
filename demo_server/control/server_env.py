"""What a server needs under another interpreter, and the environment racelab prepares for it.

racelab's own interpreter serves from racelab's own environment. Another one
(``--python``) is used in one of three ways:

- its own environment already has what the experiment's server imports (Flask;
  gunicorn for gunicorn's modes; the store's client library): used as it is, so a
  user's virtual environment with their app's dependencies serves their app;
- it is a virtual environment that lacks some of it: refused, naming what is
  missing (racelab never installs into a user's environment);
- otherwise racelab prepares a virtual environment of its own for it, once per
  interpreter build, under ``<cache>/envs/`` (``$RACELAB_CACHE``, else
  ``~/.cache/racelab``): the server-side packages only (never Locust), pinned
  by the project's ``constraints.txt``, with progress on stderr while pip works.
  Each package is installed when an experiment first needs it and recorded in
  ``racelab-env.json``; the second run installs nothing. A package that fails to
  build there is recorded too (until ``constraints.txt`` changes), so a store
  whose client cannot be had is "not available" at once the next time.

racelab's packages themselves are never installed: every server process gets
the source folder on ``PYTHONPATH``, as Locust's processes do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from demo_server.basics import defaults
from demo_server.basics.errors import ConfigError
from demo_server.basics.procs import SOURCE_ROOT
from demo_server.control.interpreter import Interpreter, cache_dir, resolve

__all__ = [
    "EnvironmentUnavailable",
    "ServerPython",
    "prepared_env",
    "requirements",
    "server_gil",
    "server_python",
]

#: What every server imports: Flask (racelab's app, the Werkzeug launcher) and gunicorn
#: (its modes). Installed together, once.
BASE = ("flask", "gunicorn")
#: The client library of each shared store, by store.
STORE_PACKAGES = {
    "redis": ("redis",),
    "postgres": ("psycopg", "psycopg-pool"),
    "memcached": ("pymemcache",),
    "session": ("Flask-Session", "cachelib"),
}
#: The module each package is imported as.
MODULES = {"flask": "flask", "gunicorn": "gunicorn", "gevent": "gevent", "redis": "redis",
           "psycopg": "psycopg", "psycopg-pool": "psycopg_pool", "pymemcache": "pymemcache",
           "Flask-Session": "flask_session", "cachelib": "cachelib"}
_GUNICORN_MODES = ("gunicorn-sync", "gunicorn-gthread", "gevent", "cluster")
_STATE_FILE = "racelab-env.json"
_PIP_TIMEOUT_S = 900

Progress = Callable[[str], None]


class EnvironmentUnavailable(ConfigError):
    """A package the server needs cannot be had under the chosen interpreter."""


@dataclasses.dataclass(frozen=True)
class ServerPython:
    """The interpreter a server runs on and how it is started.

    Attributes:
        interpreter: what ``--python`` named.
        executable: the file the server is started with (the interpreter itself,
            or the ``bin/python`` of the environment racelab prepared for it).
        environment: the environment racelab prepared for it, or ``""`` (the
            interpreter's own, racelab's when it is racelab's own).
    """

    interpreter: Interpreter
    executable: str
    environment: str = ""

    @property
    def own(self) -> bool:
        """The server runs on racelab's own interpreter (and may fork from its zygotes)."""
        return self.interpreter.is_own


def requirements(mode: str, store: str = "", session_backend: str = "filesystem",
                 app: bool = False) -> tuple[str, ...]:
    """The packages a server of this mode and store imports (a user's app: the launcher's).

    Flask always (the Werkzeug launcher lives in racelab's app package); gunicorn
    for gunicorn's modes and cluster; gevent for gevent; the store's client.
    """
    need = ["flask"]
    if mode in _GUNICORN_MODES:
        need.append("gunicorn")
    if mode == "gevent":
        need.append("gevent")
    if not app:
        need += STORE_PACKAGES.get(store, ())
        if store == "session" and session_backend == "redis":
            need.append("redis")
    return tuple(dict.fromkeys(need))


def _clean_env() -> dict[str, str]:
    """This process's environment without what would make another interpreter import ours."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}


@functools.lru_cache(maxsize=64)
def _missing(executable: str, packages: tuple[str, ...]) -> tuple[str, ...]:
    """Which of ``packages`` ``executable`` cannot import from its own environment."""
    script = ("import importlib.util, json, sys\n"
              "print(json.dumps([m for m in sys.argv[1:] "
              "if importlib.util.find_spec(m) is None]))")
    modules = [MODULES.get(p, p) for p in packages]
    try:
        done = subprocess.run([executable, "-c", script, *modules], capture_output=True,
                              text=True, timeout=30, env=_clean_env(),
                              stdin=subprocess.DEVNULL)
        absent = set(json.loads(done.stdout.strip().splitlines()[-1]))
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return packages
    return tuple(p for p in packages if MODULES.get(p, p) in absent)


def _say(message: str) -> None:
    print(f"racelab: {message}", file=sys.stderr, flush=True)


def server_python(text: str, mode: str, store: str = "", session_backend: str = "filesystem",
                  app: bool = False, progress: Progress | None = None) -> ServerPython:
    """The interpreter ``--python`` names, ready to serve this mode and store.

    Args:
        text: what ``--python`` was given (``""``: racelab's own).
        mode, store, session_backend: what the server will run.
        app: the server serves a user's app (the store's client is the app's concern).
        progress: told, one line at a time, what is being prepared (default: stderr).

    Raises:
        ConfigError: no such interpreter, not a Python, too old, gevent on a
            free-threaded build without gevent, a user's environment that lacks
            what the server imports.
        EnvironmentUnavailable: a package that cannot be installed for it (one
            line naming the package and pip's reason).
    """
    key = (text, mode, store, session_backend, app)
    if key not in _READY:
        _READY[key] = _server_python(text, mode, store, session_backend, app, progress or _say)
    return _READY[key]


#: What ``server_python`` found ready, in this process: a matrix asks once per cell.
_READY: dict[tuple[str, str, str, str, bool], ServerPython] = {}


def _server_python(text: str, mode: str, store: str, session_backend: str, app: bool,
                   progress: Progress) -> ServerPython:
    interpreter = resolve(text)
    if interpreter.is_own:
        return ServerPython(interpreter, sys.executable)
    need = requirements(mode, store, session_backend, app)
    missing = _missing(interpreter.path, need)
    if "gevent" in missing and interpreter.free_threaded:
        raise ConfigError(
            f"--python {text}: --mode gevent cannot run on {interpreter.label}: racelab does "
            "not install gevent on a free-threaded build (on 3.13t gevent and greenlet have "
            "no wheel and their builds fail); use threaded, gunicorn-sync or "
            "gunicorn-gthread, or a virtual environment of it where gevent is installed")
    if not missing:
        return ServerPython(interpreter, interpreter.path)
    if interpreter.venv:
        raise ConfigError(
            f"--python {text}: {interpreter.path} is a virtual environment without "
            f"{', '.join(missing)}: install them there (pip install {' '.join(missing)}), or "
            "give its base interpreter and racelab prepares an environment of its own")
    env = prepared_env(interpreter, need, progress)
    return ServerPython(interpreter, str(_env_python(env)), str(env))


def _env_dir(interpreter: Interpreter) -> Path:
    key = f"{os.path.realpath(interpreter.path)}|{interpreter.version}|{interpreter.build}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    name = f"{interpreter.implementation.lower()}-{interpreter.version}" + (
        "t" if interpreter.free_threaded else "")
    return cache_dir() / "envs" / f"{name}-{digest}"


def _env_python(env: Path) -> Path:
    return env / "bin" / "python"


def _constraints() -> tuple[Path | None, str]:
    path = Path(SOURCE_ROOT) / "constraints.txt"
    if not path.is_file():
        return None, "unpinned"
    return path, hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _read_state(env: Path) -> dict[str, Any]:
    try:
        data = json.loads((env / _STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(env: Path, state: dict[str, Any]) -> None:
    tmp = env / (_STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(env / _STATE_FILE)


@contextlib.contextmanager
def _locked(env: Path, progress: Progress) -> Iterator[None]:
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f"{env.name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another racelab preparing {env}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _units(need: Sequence[str]) -> list[tuple[str, ...]]:
    """What pip installs in one go: the base together, each store's packages together."""
    units: list[tuple[str, ...]] = [BASE]
    rest = [p for p in need if p not in BASE]
    for packages in STORE_PACKAGES.values():
        together = tuple(p for p in packages if p in rest)
        if together:
            units.append(together)
            rest = [p for p in rest if p not in together]
    units += [(p,) for p in rest]
    return units


def prepared_env(interpreter: Interpreter, need: Sequence[str],
                 progress: Progress = _say) -> Path:
    """racelab's environment for ``interpreter`` with ``need`` installed; made once, reused.

    Raises:
        EnvironmentUnavailable: the environment cannot be made, or a package
            cannot be installed (one line, naming it).
    """
    env = _env_dir(interpreter)
    constraints, pin = _constraints()
    with _locked(env, progress):
        state = _read_state(env)
        if not _usable(env, interpreter, state):
            shutil.rmtree(env, ignore_errors=True)
            progress(f"preparing {interpreter.label} for the server: a virtual environment "
                     f"in {env}")
            _run([interpreter.path, "-m", "venv", str(env)], env, "python -m venv",
                 interpreter, progress)
            state = {"python": os.path.realpath(interpreter.path),
                     "version": interpreter.version, "build": interpreter.build,
                     "installed": {}, "failed": {}}
            _write_state(env, state)
        for unit in _units(need):
            name = " ".join(unit)
            if state.get("installed", {}).get(name) == pin:
                continue
            failed = state.get("failed", {}).get(name)
            if failed and failed.get("pin") == pin:
                raise EnvironmentUnavailable(failed["error"])
            started = time.monotonic()
            progress(f"installing {', '.join(unit)} for {interpreter.label} "
                     f"({'pinned by constraints.txt' if constraints else 'unpinned'})")
            argv = [str(_env_python(env)), "-m", "pip", "install", "--disable-pip-version-check",
                    "--no-input", *(["-c", str(constraints)] if constraints else []), *unit]
            try:
                _run(argv, env, ", ".join(unit), interpreter, progress)
            except EnvironmentUnavailable as exc:
                if "could not build" in str(exc):  # a build that fails here fails again
                    state.setdefault("failed", {})[name] = {"pin": pin, "error": str(exc)}
                    _write_state(env, state)
                raise
            state.setdefault("installed", {})[name] = pin
            state.get("failed", {}).pop(name, None)
            _write_state(env, state)
            progress(f"installed {', '.join(unit)} in {time.monotonic() - started:.1f} s")
    return env


def _usable(env: Path, interpreter: Interpreter, state: dict[str, Any]) -> bool:
    """The environment exists, was made from this interpreter, and still runs."""
    if state.get("version") != interpreter.version or not _env_python(env).exists():
        return False
    try:
        done = subprocess.run([str(_env_python(env)), "-c", "pass"], timeout=30,
                              capture_output=True, env=_clean_env())
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _run(argv: list[str], env: Path, what: str, interpreter: Interpreter,
         progress: Progress) -> None:
    log = env.parent / f"{env.name}.log"
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        try:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=_PIP_TIMEOUT_S,
                                  env=_clean_env())
        except (OSError, subprocess.SubprocessError) as exc:
            raise EnvironmentUnavailable(f"{what} cannot be installed for {interpreter.label}: "
                                         f"{exc}") from None
    if done.returncode != 0:
        text = log.read_text(encoding="utf-8", errors="replace")
        reason = _pip_reason(text[text.rfind("\n$ "):])
        raise EnvironmentUnavailable(f"{what} cannot be installed for {interpreter.label}: "
                                     f"{reason} (pip's log: {log})")


def _pip_reason(text: str) -> str:
    """pip's failure in a few words: what it could not build or find, and the compiler's why."""
    built = re.search(r"Failed to build ([\w.-]+)", text) or re.search(
        r"Failed building wheel for ([\w.-]+)", text)
    if built:
        why = re.search(r"#error \"?([^\"\n]+)", text) or re.search(
            r"^\s*(?:[\w./-]+:\d+:\d+: )?error: (.+)$", text, re.M)
        return f"pip could not build {built.group(1)}" + (
            f" ({why.group(1).strip()})" if why else "")
    for pattern in (r"No matching distribution found for (\S+)",
                    r"Could not find a version that satisfies the requirement (\S+)"):
        found = re.search(pattern, text)
        if found:
            return f"pip found no {found.group(1)} for it (no wheel or no network?)"
    errors = [line.strip() for line in text.splitlines()
              if line.strip().lower().startswith(("error:", "error "))]
    return errors[-1][:300] if errors else "pip failed"


# Runs under the interpreter being checked, with racelab's source on PYTHONPATH.
_GIL_SCRIPT = r'''
import importlib, json, sys
import demo_server  # starts watching for a module that turns the GIL back on
from demo_server.served import gil
imported = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        imported.append(name)
    except ImportError:
        pass
print(json.dumps({**gil.state(), "imported": imported}))
'''
_SERVER_MODULES = ("flask", "werkzeug.serving", "demo_server.app", "demo_server.app.serve",
                   "gunicorn.app.wsgiapp", "gunicorn.workers.sync", "gunicorn.workers.gthread")


def server_gil(interpreter: Interpreter) -> dict[str, Any]:
    """Whether the GIL stays off once Flask, the Werkzeug launcher and gunicorn are imported.

    Checked in the environment the server would run from: racelab's for its own
    interpreter, the one racelab prepared (when it exists), else the
    interpreter's own if it has Flask. Nothing is installed here.

    Returns:
        ``{"checked": bool, "gil": bool | None, "gil_enabled_by": [...],
        "where": "...", "reason": "..."}``.
    """
    if interpreter.version_info[:2] < defaults.SERVER_MIN_PYTHON:
        return {"checked": False, "gil": None, "gil_enabled_by": [], "where": "",
                "reason": "too old for racelab's server"}
    if interpreter.is_own:
        executable, where = sys.executable, "racelab's environment"
    else:
        env = _env_dir(interpreter)
        installed = _read_state(env).get("installed", {})
        if " ".join(BASE) in installed and _env_python(env).exists():
            executable, where = str(_env_python(env)), f"racelab's environment for it ({env})"
        elif not _missing(interpreter.path, ("flask",)):
            executable, where = interpreter.path, "its own environment"
        else:
            return {"checked": False, "gil": None, "gil_enabled_by": [], "where": "",
                    "reason": "Flask is not installed for it (racelab prepares it on the "
                              "first --python run)"}
    env_vars = {**_clean_env(), "PYTHONPATH": SOURCE_ROOT}
    try:
        done = subprocess.run([executable, "-c", _GIL_SCRIPT, *_SERVER_MODULES],
                              capture_output=True, text=True, timeout=60, env=env_vars,
                              stdin=subprocess.DEVNULL)
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError) as exc:
        return {"checked": False, "gil": None, "gil_enabled_by": [], "where": where,
                "reason": f"the check failed: {exc}"}
    return {"checked": True, "gil": bool(data.get("gil")),
            "gil_enabled_by": list(data.get("gil_enabled_by") or ()), "where": where,
            "imported": data.get("imported") or [], "reason": ""}

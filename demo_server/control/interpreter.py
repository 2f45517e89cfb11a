"""The Pythons that can serve an app: found on this machine, described, named by the user.

``describe(path)`` runs a few lines under an interpreter and says what it is
(version, implementation, build, whether its GIL is on at start, whether it is a
virtual environment). ``discover()`` lists the interpreters on this machine:
racelab's own, those on ``PATH``, pyenv's and uv's, and the free-threaded build
``./run free-threaded`` leaves in racelab's cache. ``resolve(text)`` turns what
``--python`` was given into one of them:

- a path (``/opt/py/bin/python3.14t``, ``.venv-ft/bin/python``, or a virtual
  environment's directory);
- a command on ``PATH`` (``python3.14t``);
- a version found by discovery: ``3.13t`` (a free-threaded 3.13), ``3.14``
  (a 3.14 with the GIL), ``3.13.5``, or ``free-threaded`` (the newest
  free-threaded build found).

Everything here is about the interpreter itself; what the server needs in its
environment is ``demo_server.control.server_env``'s.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from demo_server.basics import defaults
from demo_server.basics.errors import ConfigError

__all__ = [
    "FREE_THREADED",
    "GET_ONE",
    "Interpreter",
    "cache_dir",
    "describe",
    "discover",
    "own",
    "resolve",
]

#: The ``--python`` word that asks for the newest free-threaded build found.
FREE_THREADED = "free-threaded"
#: How to get a free-threaded Python, for messages that find none.
GET_ONE = ("./run free-threaded builds a 3.13t into racelab's cache; elsewhere "
           "`uv python install 3.14t` or `pyenv install 3.13t`")

# Runs under any interpreter, Python 2.7 included: no f-strings, standard library only.
_PROBE = r'''
import json, platform, sys
try:
    import sysconfig
    free = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
except Exception:
    free = False
gil = getattr(sys, "_is_gil_enabled", lambda: True)()
print(json.dumps({"version": platform.python_version(),
                  "version_info": list(sys.version_info[:3]),
                  "implementation": platform.python_implementation(),
                  "executable": sys.executable, "free_threaded": free, "gil": bool(gil),
                  "venv": sys.prefix != getattr(sys, "base_prefix", sys.prefix)}))
'''
_PROBE_TIMEOUT_S = 15
_VERSION = re.compile(r"^(?:python)?(\d+(?:\.\d+){0,2})(t?)$")
_PYTHON_NAME = re.compile(r"^python3(\.\d+t?)?$")


@dataclasses.dataclass(frozen=True)
class Interpreter:
    """One Python interpreter as it described itself.

    Attributes:
        path: how it was found or given (a path, not resolved through symlinks:
            a virtual environment's ``bin/python`` stays that).
        version: ``3.13.15``.
        implementation: ``CPython``, ``PyPy``...
        free_threaded: built with ``--disable-gil`` (``Py_GIL_DISABLED``).
        gil: whether its GIL is on once it has started (before any import).
        venv: it is a virtual environment's interpreter.
        source: where it was found: ``racelab`` (racelab's own), ``PATH``,
            ``pyenv``, ``uv``, ``cache`` (racelab's cache) or ``given``.
    """

    path: str
    version: str
    implementation: str
    free_threaded: bool
    gil: bool
    venv: bool = False
    source: str = "given"

    @property
    def version_info(self) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", self.version)[:3])

    @property
    def build(self) -> str:
        """``free-threaded`` or ``default``."""
        return "free-threaded" if self.free_threaded else "default"

    @property
    def short(self) -> str:
        """``3.13t`` or ``3.11``: what ``--python`` can name it by."""
        major_minor = ".".join(str(p) for p in self.version_info[:2])
        return major_minor + ("t" if self.free_threaded else "")

    @property
    def label(self) -> str:
        """``CPython 3.13.15 (free-threaded)``."""
        build = " (free-threaded)" if self.free_threaded else ""
        return f"{self.implementation} {self.version}{build}"

    @property
    def is_own(self) -> bool:
        """This is the interpreter racelab itself runs on."""
        return _same_file(self.path, sys.executable)


def _same_file(a: str, b: str) -> bool:
    """One interpreter file reached from one folder (a venv's python and python3 are one)."""
    try:
        return os.path.samefile(a, b) and (
            Path(a).parent.resolve() == Path(b).parent.resolve())
    except OSError:
        return False


def cache_dir() -> Path:
    """racelab's cache: ``$RACELAB_CACHE``, else ``~/.cache/racelab``."""
    return Path(os.environ.get("RACELAB_CACHE") or Path.home() / ".cache" / "racelab")


@functools.lru_cache(maxsize=256)
def _describe(path: str, stamp: tuple[int, int]) -> Interpreter | str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        done = subprocess.run([path, "-c", _PROBE], capture_output=True, text=True,
                              timeout=_PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        return f"{path} did not say what it is within {_PROBE_TIMEOUT_S} s: not a Python " \
               "interpreter racelab can use"
    except OSError as exc:
        return f"cannot run {path} ({exc.strerror or exc}): not a Python interpreter"
    lines = done.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines and done.returncode == 0 else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or "version" not in data:
        return (f"{path} is not a Python interpreter (asked for its version, it exited with "
                f"code {done.returncode})")
    return Interpreter(path=path, version=str(data["version"]),
                       implementation=str(data.get("implementation") or "Python"),
                       free_threaded=bool(data.get("free_threaded")),
                       gil=bool(data.get("gil", True)), venv=bool(data.get("venv")))


def describe(path: str | os.PathLike[str], source: str = "given") -> Interpreter:
    """What the interpreter at ``path`` is (asked once per file per process).

    Raises:
        ConfigError: ``path`` cannot be run, or is not a Python interpreter.
    """
    where = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        stat = os.stat(where)
    except OSError as exc:
        raise ConfigError(f"no interpreter at {where} ({exc.strerror or exc})") from None
    found = _describe(where, (stat.st_ino, int(stat.st_mtime_ns)))
    if isinstance(found, str):
        raise ConfigError(found)
    return dataclasses.replace(found, source=source)


def own() -> Interpreter:
    """racelab's own interpreter."""
    return describe(sys.executable, "racelab")


def _candidates() -> list[tuple[str, str]]:
    """(path, source) of every interpreter worth asking, racelab's own first."""
    found: list[tuple[str, str]] = [(sys.executable, "racelab")]
    cache = cache_dir()
    for build in sorted(cache.glob("python*/bin")):  # ./run free-threaded's builds
        found += [(str(p), "cache") for p in _pythons_in(build)[:1]]
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    shims = str(pyenv_root / "shims")
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and os.path.realpath(entry) != os.path.realpath(shims):
            found += [(str(p), "PATH") for p in _pythons_in(Path(entry))]
    if (pyenv_root / "versions").is_dir():
        for version in sorted((pyenv_root / "versions").iterdir()):
            found += [(str(p), "pyenv") for p in _pythons_in(version / "bin")[:1]]
    uv_root = Path(os.environ.get("UV_PYTHON_INSTALL_DIR")
                   or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
                   / "uv" / "python")
    if uv_root.is_dir():
        for install in sorted(uv_root.iterdir()):
            found += [(str(p), "uv") for p in _pythons_in(install / "bin")[:1]]
    unique: dict[str, tuple[str, str]] = {}
    for path, source in found:
        unique.setdefault(os.path.realpath(path), (path, source))
    return list(unique.values())


def _pythons_in(folder: Path) -> list[Path]:
    """The ``python3``, ``python3.N`` and ``python3.Nt`` files of a folder, ``python3`` first."""
    try:
        names = sorted(p.name for p in folder.iterdir() if _PYTHON_NAME.match(p.name))
    except OSError:
        return []
    files = [folder / n for n in names if os.access(folder / n, os.X_OK)
             and (folder / n).is_file()]
    # A free-threaded install's python3 may be its GIL build: name the t one first.
    return sorted(files, key=lambda p: (not p.name.endswith("t"), p.name != "python3", p.name))


def discover() -> list[Interpreter]:
    """Every interpreter found on this machine that runs, racelab's own first.

    Where: racelab's own, racelab's cache (``./run free-threaded``), ``PATH``
    (``python3``, ``python3.N``, ``python3.Nt``; pyenv's shims left out),
    pyenv's versions and uv's installs. One entry per interpreter file.
    """
    out: list[Interpreter] = []
    for path, source in _candidates():
        try:
            out.append(describe(path, source))
        except ConfigError:
            continue  # a broken install is not an interpreter to offer
    return out


def _version_matches(found: Interpreter, wanted: str, free: bool) -> bool:
    parts = wanted.split(".")
    return (found.free_threaded == free and found.implementation == "CPython"
            and [str(p) for p in found.version_info[:len(parts)]] == parts)


def _newest(found: list[Interpreter]) -> Interpreter:
    # The newest version; among equals, the one found first (racelab's own, the cache, PATH).
    return max(reversed(found), key=lambda i: i.version_info)


def resolve(text: str, serve: bool = True) -> Interpreter:
    """The interpreter ``--python`` names (see the module's docstring); ``""``: racelab's own.

    Args:
        text: a path, a command, a version or ``free-threaded``.
        serve: it will serve the app, so it must be recent enough for racelab's server.

    Raises:
        ConfigError: nothing by that name, a file that is not a Python, or (``serve``)
            a Python too old to run racelab's server (one line, saying what to do).
    """
    text = text.strip()
    if not text:
        return own()
    try:
        found = _resolve(text)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith("--python") else
                          f"--python {text}: {message}") from None
    if serve and found.version_info[:2] < defaults.SERVER_MIN_PYTHON:
        need = ".".join(str(p) for p in defaults.SERVER_MIN_PYTHON)
        raise ConfigError(f"--python {text}: {found.label} is too old to serve the app "
                          f"(racelab's server needs Python {need} or newer)")
    return found


def _resolve(text: str) -> Interpreter:
    if text == FREE_THREADED:
        builds = [i for i in discover() if i.free_threaded]
        if not builds:
            raise ConfigError(f"--python {text}: no free-threaded Python found on this "
                              f"machine; {GET_ONE}")
        return _newest(builds)
    looks_like_path = os.sep in text or text.startswith(("~", "."))
    if looks_like_path:
        path = Path(text).expanduser()
        if path.is_dir():  # a virtual environment, or an install prefix
            inside = [p for p in (path / "bin" / "python", path / "bin" / "python3")
                      if p.exists()]
            if not inside:
                raise ConfigError(f"--python {text}: a directory without bin/python")
            path = inside[0]
        elif not path.exists():
            raise ConfigError(f"--python {text}: no such file")
        return describe(path)
    version = _VERSION.match(text)
    if version is None or text.startswith("python"):
        command = shutil.which(text)
        if command is not None:
            return describe(command, "PATH")
    if version is None:
        raise ConfigError(f"--python {text}: no such command on PATH; give a path, a command "
                          "or a version such as 3.13t")
    wanted, free = version.group(1), bool(version.group(2))
    matches = [i for i in discover() if _version_matches(i, wanted, free)]
    if not matches:
        kind = "free-threaded " if free else ""
        hint = f"; {GET_ONE}" if free else " (racelab interpreters lists what it found)"
        raise ConfigError(f"--python {text}: no {kind}CPython {wanted} found on this machine "
                          f"(looked on PATH, in pyenv, uv and racelab's cache){hint}")
    return _newest(matches)

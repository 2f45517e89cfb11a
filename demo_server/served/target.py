"""The app under test, named by a target string, loaded into a WSGI callable.

Accepted forms (as gunicorn's, plus a file path)::

    path/to/file.py:app            an attribute of a Python file
    package.module:app             an attribute of an importable module
    package.module:create_app()    a factory, called with no arguments

``parse_target`` checks the text only; ``load_target`` imports and returns the
app; ``stamped_app_from_env`` is what each server worker runs: it loads
``$RACELAB_TARGET`` wrapped in ``StampMiddleware``, and on failure writes the
one-line reason to ``$RACELAB_TARGET_ERRORS`` (so the supervisor can report it
as a ``TargetError``) before it lets the error end the worker, and once the app
is loaded it creates ``$RACELAB_TARGET_LOADED`` (so a worker still importing
after the readiness deadline is named as such).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from demo_server.basics.errors import TargetError
from demo_server.basics.files import write_text
from demo_server.served.stamp import StampMiddleware, WSGIApp

__all__ = [
    "ENV_ERRORS",
    "ENV_LOADED",
    "ENV_TARGET",
    "Target",
    "load_target",
    "parse_target",
    "stamped_app_from_env",
]

ENV_TARGET = "RACELAB_TARGET"
ENV_ERRORS = "RACELAB_TARGET_ERRORS"
#: A file each worker creates once the app is imported (a worker still importing has not).
ENV_LOADED = "RACELAB_TARGET_LOADED"
_FORMS = "path/to/file.py:app, package.module:app or package.module:create_app()"
_ATTR = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclasses.dataclass(frozen=True)
class Target:
    """A parsed target.

    Attributes:
        source: the module name, or the file path (``is_file``).
        attr: the (dotted) attribute.
        call: the attribute is a factory to call with no arguments.
        is_file: ``source`` is a path to a ``.py`` file.
    """

    source: str
    attr: str
    call: bool = False
    is_file: bool = False

    def __str__(self) -> str:
        return f"{self.source}:{self.attr}{'()' if self.call else ''}"

    @property
    def label(self) -> str:
        """A short name for reports: ``app.py:app``."""
        source = Path(self.source).name if self.is_file else self.source
        return f"{source}:{self.attr}{'()' if self.call else ''}"


def parse_target(text: str) -> Target:
    """Parse a target string (no import, no file access).

    Raises:
        TargetError: when the text has none of the accepted forms.
    """
    source, sep, obj = text.strip().rpartition(":")
    call = obj.endswith("()")
    attr = obj[:-2] if call else obj
    if not sep or not source or not _ATTR.match(attr):
        raise TargetError(f"cannot use {text!r} as an app; give {_FORMS}")
    is_file = source.endswith(".py") or os.sep in source or "/" in source
    if is_file:
        if not source.endswith(".py"):
            raise TargetError(f"cannot use {text!r} as an app: a file must end in .py; "
                              f"give {_FORMS}")
    elif not _MODULE.match(source):
        raise TargetError(f"cannot use {text!r} as an app: {source!r} is not a module name; "
                          f"give {_FORMS}")
    return Target(source, attr, call, is_file)


def resolve_target(text: str) -> Target:
    """``parse_target``, with a file path made absolute and checked to exist.

    Raises:
        TargetError: for a bad form or a missing file.
    """
    target = parse_target(text)
    if not target.is_file:
        return target
    path = Path(target.source).expanduser()
    if not path.is_file():
        raise TargetError(f"cannot load the app {text!r}: no file {target.source}")
    return dataclasses.replace(target, source=str(path.resolve()))


def _summary(exc: BaseException) -> str:
    """The first lines of an error, on one line: type, message, and where it was raised."""
    if isinstance(exc, SyntaxError):
        where = f" ({exc.filename}:{exc.lineno}: {(exc.text or '').strip()})"
        return f"SyntaxError: {exc.msg}{where}"
    message = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {last.filename}:{last.lineno}"
        text += f": {last.line.strip()})" if last.line else ")"
    return text


def _import_file(path: Path) -> Any:
    name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else (
        f"racelab_target_{abs(hash(str(path)))}")
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)  # the app's own sibling imports
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_target(text: str) -> WSGIApp:
    """Import the target and return its WSGI app (the factory's result for ``name()``).

    Raises:
        TargetError: missing file or module, no such attribute, the import or the
            factory raised, or the result is not callable; one line, with the
            first lines of the underlying error.
    """
    target = resolve_target(text)
    try:
        if target.is_file:
            module = _import_file(Path(target.source))
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(target.source)
    except ModuleNotFoundError as exc:
        if exc.name and target.source.startswith(exc.name):
            raise TargetError(f"cannot load the app {text!r}: no module named "
                              f"{exc.name!r}") from exc
        raise TargetError(f"cannot load the app {text!r}: importing it raised "
                          f"{_summary(exc)}") from exc
    except SystemExit as exc:  # the app's own sys.exit() at import ends no worker silently
        raise TargetError(f"cannot load the app {text!r}: importing it called "
                          f"sys.exit({exc.code!r})") from None
    except Exception as exc:
        raise TargetError(f"cannot load the app {text!r}: importing it raised "
                          f"{_summary(exc)}") from exc
    obj: Any = module
    for part in target.attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"cannot load the app {text!r}: {target.source} has no "
                              f"attribute {target.attr!r}") from None
    if target.call:
        if not callable(obj):
            raise TargetError(f"cannot load the app {text!r}: {target.attr} is not callable")
        try:
            obj = obj()
        except SystemExit as exc:
            raise TargetError(f"cannot load the app {text!r}: {target.attr}() called "
                              f"sys.exit({exc.code!r})") from None
        except Exception as exc:
            raise TargetError(f"cannot load the app {text!r}: {target.attr}() raised "
                              f"{_summary(exc)}") from exc
    if not callable(obj):
        raise TargetError(f"cannot load the app {text!r}: {target} "
                          f"is a {type(obj).__name__}, not a WSGI app")
    app: WSGIApp = obj
    return app


def stamped_app_from_env() -> WSGIApp:
    """The app named by ``$RACELAB_TARGET``, stamped; what each server worker serves.

    On failure the one-line reason goes to ``$RACELAB_TARGET_ERRORS`` (when set)
    and the error is raised, which ends the worker (gunicorn then stops).
    """
    text = os.environ.get(ENV_TARGET, "")
    try:
        app = load_target(text)
    except TargetError as exc:
        errors = os.environ.get(ENV_ERRORS)
        if errors:
            write_text(errors, str(exc) + "\n")
        raise
    loaded = os.environ.get(ENV_LOADED)
    if loaded:  # the supervisor tells a hang at import from a server that does not answer
        Path(loaded).touch()
    identity = {"target": parse_target(text).label, "mode": os.environ.get("RACELAB_MODE", "")}
    return StampMiddleware(app, identity)

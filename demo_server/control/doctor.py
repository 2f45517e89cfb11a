"""What this machine offers racelab: servers, load tools, stores, the interpreters."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
from typing import Any
from urllib.parse import urlsplit

from demo_server.app import gil_enabled
from demo_server.basics import defaults
from demo_server.basics.procs import reachable
from demo_server.control.interpreter import GET_ONE, Interpreter, discover
from demo_server.control.server_env import server_gil

__all__ = ["Check", "describe_interpreter", "diagnose", "interpreter_checks", "reachable"]

Check = dict[str, Any]


def _package(name: str) -> Check:
    try:
        return {"name": name, "ok": True, "detail": importlib.metadata.version(name)}
    except importlib.metadata.PackageNotFoundError:
        return {"name": name, "ok": False, "detail": f"not installed (pip install {name})"}


def _service(name: str, url: str, default_port: int, hint: str, binary: str) -> Check:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    ok = reachable(host, port)
    if not ok and shutil.which(binary):
        hint += f"; {binary} is installed: racelab --start-services runs a private one"
    return {
        "name": name,
        "ok": ok,
        "detail": f"{host}:{port} " + ("reachable" if ok else f"not reachable ({hint})"),
    }


def describe_interpreter(found: Interpreter) -> str:
    """One interpreter as the doctor lists it: version, build, where, and its GIL.

    A free-threaded build is checked as the server would run it: its GIL once
    Flask, the Werkzeug launcher and gunicorn are imported (an extension module
    without free-threading support turns it back on).
    """
    build = "free-threaded build" if found.free_threaded else "GIL build"
    text = f"{found.implementation} {found.version}, {build}, {found.path}"
    if found.version_info[:2] < defaults.SERVER_MIN_PYTHON:
        return text + "; too old to serve the app (racelab interpreters still races on it)"
    if not found.free_threaded:
        return text
    text += f"; GIL {'on' if found.gil else 'off'} at start"
    checked = server_gil(found)
    if not checked["checked"]:
        return text + f"; with Flask and the server imported: not checked ({checked['reason']})"
    state = "on" if checked["gil"] else "off"
    by = checked.get("gil_enabled_by") or []
    why = f", turned on by {', '.join(by)}" if by else ""
    return text + f"; with Flask and the server imported: GIL {state}{why}"


def interpreter_checks() -> list[Check]:
    """One check per interpreter found (racelab's own first), and one for a free-threaded one."""
    found = discover()
    checks: list[Check] = [
        {"name": f"python {i.version}{'t' if i.free_threaded else ''} ({i.source})", "ok": True,
         "detail": describe_interpreter(i)} for i in found]
    if not any(i.free_threaded for i in found):
        checks.append({"name": "free-threaded python", "ok": False,
                       "detail": f"none found; {GET_ONE}"})
    return checks


def diagnose(redis_url: str, postgres_dsn: str, memcached: str) -> list[Check]:
    """Every check ``racelab doctor`` prints, as plain dicts (name, ok, detail)."""
    checks: list[Check] = [
        {
            "name": "python",
            "ok": True,
            "detail": f"{platform.python_implementation()} {platform.python_version()}, "
            f"GIL {'enabled' if gil_enabled() else 'disabled'}, {os.cpu_count()} cores",
        },
    ]
    checks += [_package(n) for n in ("flask", "gunicorn", "gevent", "locust", "flask-session")]
    checks.append(
        _service("redis", redis_url, 6379, "--redis-url or RACELAB_REDIS_URL", "redis-server")
    )
    checks.append(_service("postgres", postgres_dsn, 5432,
                           "--postgres-dsn or RACELAB_POSTGRES_DSN", "initdb"))
    checks.append(_service("memcached", memcached, 11211, "--memcached or RACELAB_MEMCACHED",
                           "memcached"))
    checks += interpreter_checks()
    for binary in ("redis-server", "memcached", "initdb", "wrk", "chromium"):
        path = shutil.which(binary)
        checks.append(
            {"name": f"{binary} binary", "ok": path is not None, "detail": path or "not found"}
        )
    return checks

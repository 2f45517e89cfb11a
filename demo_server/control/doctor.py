"""What this machine offers racelab: servers, load tools, stores, the interpreter."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
from typing import Any
from urllib.parse import urlsplit

from demo_server.app import gil_enabled
from demo_server.basics.procs import reachable

__all__ = ["Check", "diagnose", "reachable"]

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
    for binary in ("redis-server", "memcached", "initdb", "wrk", "chromium"):
        path = shutil.which(binary)
        checks.append(
            {"name": f"{binary} binary", "ok": path is not None, "detail": path or "not found"}
        )
    return checks

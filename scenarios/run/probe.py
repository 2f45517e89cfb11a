"""Your own app: load an endpoint already running, and read a final value from any app.

``run_probe`` is ``run_experiment`` without a launch: the same swarm, the same
files (``history.csv``, ``final.json``, ``summary.json``), against a URL the
user started. ``read_final`` reads ``--final 'GET /path'`` from every worker
of a server after the load, for an app racelab launched (each worker answers
with its own ``X-Racelab-Pid``) or for one it did not (one answer, no pid).

What racelab can know about a foreign app: how it was served (for a probe,
not even that), which process and thread answered each request (when the
stamping middleware is there: always for ``--app``), and the values it
returned. It cannot know the code's window: that the report says.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from demo_server.basics.errors import TargetError
from demo_server.basics.procs import is_loopback, url_host
from loadtests.runner import SwarmInterrupted, SwarmResult, run_swarm
from scenarios.operation import parse_value_spec, read_value
from scenarios.run.rundir import SCHEMA, write_summary
from scenarios.run.spec import ExperimentSpec, final_request

__all__ = ["ProbeError", "check_probe_url", "read_final", "run_probe"]

_HOLD_HEADER = "X-Racelab-Hold-Ms"
_PID_HEADER = "X-Racelab-Pid"


class ProbeError(TargetError):
    """A URL racelab will not or cannot load: another host without consent, or silence."""


#: What the probe asks before its swarm: a request of an HTTP version no server speaks,
#: which an HTTP server refuses itself (400 or 505) before any app sees it, so it changes
#: no state an app keeps (a WSGI app answers every ``OPTIONS *`` it is handed).
_HELLO = b"OPTIONS * HTTP/9.9\r\nHost: %s\r\nConnection: close\r\nUser-Agent: racelab\r\n\r\n"


def check_probe_url(url: str, allow_remote: bool = False, timeout: float = 3.0) -> str:
    """The URL's base (``scheme://host:port``), once it is allowed and an HTTP server answers.

    Raises:
        ProbeError: not an http(s) URL; a host off this machine without
            ``allow_remote``; nothing listening there; something that answers a
            request with no HTTP status line (Redis, PostgreSQL: a close, or their
            own error). A server that is only slow to answer is let through.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ProbeError(f"{url!r} is not a URL racelab can use: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeError(f"{url!r} is not an http:// or https:// URL")
    host = parts.hostname
    if not allow_remote and not is_loopback(host):
        raise ProbeError(f"{host} is not this machine: probe only what you own, and say so "
                         "with --allow-remote")
    where = f"{parts.scheme}://{url_host(host)}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, OverflowError, UnicodeError) as exc:
        raise ProbeError(f"nothing answers at {where} "
                         f"({getattr(exc, 'strerror', None) or exc})") from None
    head: bytes | None
    try:
        head = _first_answer(sock, parts.scheme == "https", host, parts.netloc, timeout)
    except ssl.SSLError as exc:
        raise ProbeError(f"{where} is not an HTTPS server: the TLS handshake failed "
                         f"({exc.reason or exc})") from None
    except TimeoutError:
        head = None
    except OSError:  # reset: it would not talk HTTP
        head = b""
    finally:
        sock.close()
    # An HTTP server answers a status line, or (an HTTP/0.9-style refusal, as Python's
    # http.server gives for a version it does not speak) its HTML error page.
    if head is not None and not head.startswith((b"HTTP/", b"<")):  # None: slow; the load tells
        said = f"it answered {head[:40]!r}" if head else "it closed the connection unanswered"
        raise ProbeError(f"{where} is not an HTTP server: {said} (a database or cache port?)")
    return f"{parts.scheme}://{parts.netloc}"


def _first_answer(sock: socket.socket, tls: bool, host: str, netloc: str,
                  timeout: float) -> bytes:
    """The first bytes answering ``_HELLO`` (b"" when the peer closes without a word)."""
    sock.settimeout(timeout)
    if tls:  # only the protocol is checked here; the swarm checks the certificate
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(sock, server_hostname=host) as wrapped:
            return _first_answer(wrapped, False, host, netloc, timeout)
    sock.sendall(_HELLO % netloc.encode("ascii", errors="replace"))
    answer = b""
    while len(answer) < 65536 and b"\r\n\r\n" not in answer:  # its head, all of it
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
        if not answer.startswith(b"HTTP/"[:len(answer)]):
            break  # not a status line: enough is known
    return answer[:5]


def read_final(spec: ExperimentSpec, urls: Sequence[str],
               expected: Callable[[int], set[int]] | None = None,
               insecure: bool = False, timeout: float = 10.0) -> dict[str, Any]:
    """Read ``spec.final`` from every worker: a ``final.json`` document.

    Args:
        spec: its ``final`` and ``value`` say what to send and how to read it.
        urls: the instances' base URLs.
        expected: for instance ``i``, the worker pids that must answer (probes
            are then repeated, each held a moment by the stamping middleware so
            that concurrent ones reach every worker); None: one answer per URL.
        insecure: do not check https certificates.
        timeout: seconds in all.

    Returns:
        ``{"available", "reason", "per_process", "states": [{"pid", "value"}]}``;
        ``per_process`` is None: racelab does not know how a foreign app keeps
        its state.
    """
    if not spec.final:
        return {"available": False, "requested": False, "per_process": None, "states": [],
                "reason": "no --final read was given, so lost updates were not counted"}
    method, path = final_request(spec.final)
    value_spec = parse_value_spec(spec.value)
    deadline = time.monotonic() + timeout
    states: dict[Any, dict[str, Any]] = {}
    problems: list[str] = []

    def one(url: str, hold: int) -> None:
        try:
            answer = requests.request(method, url + path, timeout=max(1.0, timeout / 2),
                                      headers={_HOLD_HEADER: str(hold)} if hold else {},
                                      verify=not insecure, allow_redirects=False)
            value, _ = read_value(value_spec, answer.content)
        except (requests.RequestException, ValueError) as exc:
            problems.append(str(exc).splitlines()[0][:200])
            return
        if answer.status_code // 100 != 2:
            problems.append(f"{method} {path} answered HTTP {answer.status_code}")
            return
        raw_pid = answer.headers.get(_PID_HEADER, "")
        pid = int(raw_pid) if raw_pid.isdigit() else None
        states.setdefault(pid if pid is not None else url,
                          {"pid": pid, "value": value, "url": url})

    for index, url in enumerate(urls):
        want = expected(index) if expected else set()
        hold = 30 if len(want) > 1 else 0
        while True:
            count = max(1, 2 * len(want))
            with ThreadPoolExecutor(max_workers=count) as pool:
                list(pool.map(one, [url] * count, [hold] * count))
            seen = {s["pid"] for s in states.values() if s["url"] == url}
            if want <= seen or time.monotonic() > deadline or not want:
                break
    if not states:
        return {"available": False, "per_process": None, "states": [],
                "reason": f"{spec.final} gave no usable answer: "
                          f"{problems[0] if problems else 'no answer'}"}
    return {"available": True, "reason": "", "per_process": None,
            "states": [{"pid": s["pid"], "value": s["value"]} for s in states.values()]}


def run_probe(spec: ExperimentSpec, url: str, run_dir: Path, *, insecure: bool = False,
              progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Swarm an endpoint already running; write what happened, as ``run_experiment`` does.

    Args:
        spec: the swarm's size and the target settings (request, value, check, final).
        url: the endpoint's base URL (checked by ``check_probe_url``).
        run_dir: the run directory (created).
        insecure: do not check https certificates.
        progress: called with (operations so far, seconds) while the swarm runs.

    Returns:
        The summary (also written to ``summary.json``).
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "experiment": {**dataclasses.asdict(spec), "mode": "probe", "url": url, "app": "",
                       "store": "", "window": ""},
        "label": f"{url} · probe",
        "command": spec.command(probe_url=url),
        "started_wall": time.time(),
        "status": "failed",
        "error": "",
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "server": {"pids": [], "died": False, "exit_codes": [], "logs": [], "python": "",
                   "implementation": "", "gil": None, "probe": True},
        "events": [],
    }
    swarm = spec.swarm_spec((url,), insecure=insecure)
    result: SwarmResult | None = None
    final: dict[str, Any] = {"available": False, "per_process": None, "states": [],
                             "reason": "the probe did not get that far"}
    try:
        try:
            result = run_swarm(swarm, run_dir, progress=progress)
        except SwarmInterrupted as exc:
            result = exc.result
            summary["error"] = f"interrupted by {exc.signal}"
            raise
        summary["status"] = "ok" if not result.timed_out else "failed"
        if result.timed_out:
            summary["error"] = "the swarm did not finish before its hard timeout"
        final = read_final(spec, [url], insecure=insecure)
    except KeyboardInterrupt:
        summary["error"] = summary["error"] or "interrupted"
        raise
    finally:
        write_summary(run_dir, summary, result, final)
    return summary

"""The orchestrator's HTTP client: every failed call is an OSError, probes end when they suffice."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from demo_server import ServerConfig
from demo_server.basics.client import get_json, probe_until
from demo_server.control.modes import LaunchSpec
from demo_server.control.supervisor import Supervisor


def _one_answer(answer: bytes) -> tuple[str, threading.Thread]:
    """A loopback listener that reads one request, sends ``answer`` and closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/state", thread


@pytest.mark.parametrize("answer, words", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 208\r\n\r\n{", "IncompleteRead"),
    (b"garbage\r\n\r\n", "BadStatusLine"),
    (b"", "RemoteDisconnected"),
], ids=["cut-body", "not-http", "closed"])
def test_a_cut_or_broken_answer_is_an_oserror(answer: bytes, words: str) -> None:
    """A server killed mid-answer (or answering nonsense) makes get_json raise OSError,
    which every caller handles, never http.client's own exceptions."""
    url, thread = _one_answer(answer)
    with pytest.raises(OSError, match=words):
        get_json(url, timeout=5)
    thread.join(timeout=5)


def test_probe_until_reaches_every_worker_and_adds_to_what_was_seen(tmp_path) -> None:
    """Concurrent held probes reach both sync workers; answers in ``seen`` are not asked again."""
    with Supervisor(ServerConfig(store="global"), LaunchSpec(mode="gunicorn-sync"),
                    tmp_path) as sup:
        workers = set(sup.workers())
        until = time.monotonic() + 20

        def every_worker(seen: set[int]) -> bool:
            return workers <= seen

        answers = probe_until(sup.url + "/healthz?hold_ms=100", every_worker, 4, until)
        assert set(answers) == workers
        assert all(body["pid"] == pid for pid, body in answers.items())
        marker = {"pid": -1, "note": "seen before"}
        again = probe_until(sup.url + "/healthz", lambda seen: -1 in seen, 2, until,
                            seen={-1: marker})
        assert again == {-1: marker}  # already enough: no probe was sent
        none = probe_until("http://127.0.0.1:9/healthz", bool, 2, time.monotonic() + 0.2)
        assert none == {}  # nothing listens: empty once ``until`` passes

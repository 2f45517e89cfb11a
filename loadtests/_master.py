"""The master's side of a distributed swarm: budget leases, history files, the stop.

``MasterSwarm`` is a listener object created on Locust's ``init`` event in a
master process. Its messages (workers send them, see ``loadtests._process``):

- ``racelab_lease`` -> ``racelab_grant {"n"}``: a chunk of the request budget
  (chunks shrink as the budget runs out);
- ``racelab_idle``: a worker's users are done (budget spent or interrupted);
- ``racelab_progress {"rows", "host", "pid"}``: operations in the worker's history
  file so far, and which process it is;
- ``racelab_file {"name", "data", "first"}``: a piece of a worker's history;
- ``racelab_done {"rows"}``: that worker has sent everything.

It sends ``racelab_interrupt {"grace"}`` to every worker when the runner
interrupts it (``INTERRUPT_SIGNAL``). Nothing of a worker's state lives here.

A worker that dies before it has sent its history (killed, crashed) is noticed
within ``_WATCH_EVERY_S`` when it runs on this host (its pid is gone, or a
zombie), else when Locust's heartbeat marks it missing (about 3 s). The swarm
then stops as on an interrupt, the master waits for that worker no more, and
the progress file names it under ``lost``: the runner merges the rows its
history file holds and the experiment is unknown, naming it.
"""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path
from typing import Any

import gevent
import psutil

from demo_server.basics.files import fresh_dir, open_new
from loadtests._config import SwarmConfig
from loadtests._process import INTERRUPT_SIGNAL, PROGRESS_EVERY, write_progress

__all__ = ["MasterSwarm"]

_DONE_WAIT_S = 60.0  # the master waits this long for every worker's history at the stop
_IDLE_WAIT_S = 8.0  # after an interrupt's grace: how long workers get to report idle
_WATCH_EVERY_S = 0.1  # how often the master looks whether a worker on this host died


class MasterSwarm:
    """What the master knows: the budget left, which workers asked, idled, finished."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.config = SwarmConfig(urls=[])
        self.to_grant = 0
        self.unbounded = True
        self.asked: set[str] = set()
        self.idle: set[str] = set()
        self.done: set[str] = set()
        self.expected: set[str] = set()
        self.rows: dict[str, int] = {}
        self.files: dict[str, Any] = {}
        self.finishing = False
        self.quitting = False
        self.stopping = False
        self.interrupts = 0
        self.pids: dict[str, int] = {}  # worker node id -> pid, for workers on this host
        self.lost: dict[str, dict[str, Any]] = {}  # workers that died before they were done
        self.history_dir = Path(os.environ.get("RACELAB_SWARM_HISTORY_DIR", "."))
        runner = environment.runner
        runner.register_message("racelab_lease", self._on_lease)
        runner.register_message("racelab_idle", self._on_idle)
        runner.register_message("racelab_file", self._on_file)
        runner.register_message("racelab_done", self._on_done)
        runner.register_message("racelab_progress", self._on_progress)
        environment.events.test_start.add_listener(self.on_test_start)
        environment.events.quitting.add_listener(self.on_quitting)
        gevent.signal_handler(INTERRUPT_SIGNAL, self.interrupt)

    def on_test_start(self, environment: Any, **_kw: Any) -> None:
        config = self.config = SwarmConfig.from_environment(environment)
        self.to_grant, self.unbounded = config.requests, config.requests <= 0
        self.expected = {node.id for node in environment.runner.clients.all}
        # Handed to the workers with the spawn messages that follow.
        environment.parsed_options.racelab_t0_wall_ns = time.time_ns()
        gevent.spawn(self._progress_loop)
        gevent.spawn(self._watch_workers)
        if config.duration > 0:
            gevent.spawn_later(config.duration, self.finish)

    def on_quitting(self, **_kw: Any) -> None:
        for handle in self.files.values():
            handle.close()
        self.files.clear()

    def finish(self) -> None:
        """Stop the test gracefully; quit once every worker has sent its history."""
        if self.finishing:
            return
        self.finishing = True
        runner = self.environment.runner
        runner.stop()  # asks every worker to stop its users gracefully
        deadline = time.monotonic() + _DONE_WAIT_S
        while not self.expected <= self.done | self.lost.keys() and time.monotonic() < deadline:
            gevent.sleep(0.05)
        gevent.sleep(0.2)
        self.quitting = True  # workers now leave on their own: none of that is a death
        runner.quit()

    def interrupt(self) -> None:
        """Pass an interrupt on to every worker; a second one ends their in-flight requests."""
        self.interrupts += 1
        self._stop_load(self.config.grace if self.interrupts == 1 else 0.0)

    def _stop_load(self, grace: float) -> None:
        """Workers stop their load (in-flight requests get ``grace``); then the test ends."""
        self.environment.runner.send_message("racelab_interrupt", {"grace": grace})
        if not self.stopping:
            self.stopping = True
            gevent.spawn(self._stop_when_idle, grace)

    def _stop_when_idle(self, grace: float) -> None:
        deadline = time.monotonic() + grace + _IDLE_WAIT_S
        while not self.expected <= self.idle | self.lost.keys() and time.monotonic() < deadline:
            gevent.sleep(0.05)
        self.finish()

    # -- workers that die -------------------------------------------------------------

    def _watch_workers(self) -> None:
        """Notice a worker that died before it sent everything (see the module docstring)."""
        while not self.quitting:
            gevent.sleep(_WATCH_EVERY_S)
            for node in list(self.environment.runner.clients.all):
                if self.quitting or node.id in self.done or node.id in self.lost:
                    continue
                how = self._death(node)
                if how:
                    # As Locust's heartbeat would mark it, at once: a dead worker runs no
                    # users, so the runner's stop does not wait for them.
                    node.state, node.user_classes_count = "missing", {}
                    self._lose(node.id, how)

    def _death(self, node: Any) -> str:
        """How worker ``node`` died ("" while it lives, as far as the master can tell)."""
        pid = self.pids.get(node.id)
        if pid is not None:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    return ""
            except psutil.NoSuchProcess:
                pass
            return f"Locust worker process {pid} died during the swarm"
        if getattr(node, "state", "") == "missing":
            return f"Locust worker {node.id} stopped answering (its heartbeat is missing)"
        return ""

    def _lose(self, node_id: str, how: str) -> None:
        """A worker died: note it (the progress file names it), stop the swarm."""
        rows = self.rows.get(node_id, 0)
        self.lost[node_id] = {"t_ns": time.monotonic_ns(), "rows": rows,
                              "detail": f"{how}; {rows:,} of its rows were in its file"}
        self._write_progress()
        self._stop_load(self.config.grace)
        self._check_spent()

    # -- messages ---------------------------------------------------------------------

    def _on_lease(self, environment: Any, msg: Any, **_kw: Any) -> None:
        self.asked.add(msg.node_id)
        if self.unbounded:
            count = 1 << 30
        else:
            workers = max(len(environment.runner.clients), 1)
            count = min(self.to_grant,
                        max(1, min(2000, math.ceil(self.to_grant / (2 * workers)))))
            self.to_grant -= count
        environment.runner.send_message("racelab_grant", {"n": count}, client_id=msg.node_id)
        self._check_spent()

    def _on_idle(self, environment: Any, msg: Any, **_kw: Any) -> None:
        self.idle.add(msg.node_id)
        self._check_spent()

    def _check_spent(self) -> None:
        if (not self.unbounded and self.to_grant <= 0
                and self.asked <= self.idle | self.lost.keys()):
            gevent.spawn(self.finish)

    def _on_file(self, environment: Any, msg: Any, **_kw: Any) -> None:
        name = Path(str(msg.data["name"])).name  # never a path from the network
        if msg.data["first"] or name not in self.files:
            if name in self.files:
                self.files[name].close()
            fresh_dir(self.history_dir)
            self.files[name] = open_new(self.history_dir / name, newline="")
        self.files[name].write(msg.data["data"])

    def _on_done(self, environment: Any, msg: Any, **_kw: Any) -> None:
        for handle in self.files.values():
            handle.flush()
        self.rows[msg.node_id] = int(msg.data["rows"])
        self.done.add(msg.node_id)

    def _on_progress(self, environment: Any, msg: Any, **_kw: Any) -> None:
        self.rows[msg.node_id] = int(msg.data["rows"])
        pid = msg.data.get("pid")
        if isinstance(pid, int) and msg.data.get("host") == socket.gethostname():
            self.pids[msg.node_id] = pid

    def _write_progress(self) -> None:
        path = os.environ.get("RACELAB_SWARM_PROGRESS_FILE")
        if path:
            write_progress(path, sum(self.rows.values()), self.environment.runner.stats.total,
                           list(self.lost.values()))

    def _progress_loop(self) -> None:
        while True:
            self._write_progress()
            gevent.sleep(PROGRESS_EVERY)

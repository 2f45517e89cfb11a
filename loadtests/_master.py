"""The master's side of a distributed swarm: budget leases, history files, the stop.

``MasterSwarm`` is a listener object created on Locust's ``init`` event in a
master process. Its messages (workers send them, see ``loadtests._process``):

- ``racelab_lease`` -> ``racelab_grant {"n"}``: a chunk of the request budget
  (chunks shrink as the budget runs out);
- ``racelab_idle``: a worker's users are done (budget spent or interrupted);
- ``racelab_progress {"rows"}``: operations recorded so far;
- ``racelab_file {"name", "data", "first"}``: a piece of a worker's history;
- ``racelab_done {"rows"}``: that worker has sent everything.

It sends ``racelab_interrupt {"grace"}`` to every worker when the runner
interrupts it (``INTERRUPT_SIGNAL``). Nothing of a worker's state lives here.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import gevent

from demo_server.basics.files import fresh_dir, open_new
from loadtests._config import SwarmConfig
from loadtests._process import INTERRUPT_SIGNAL, PROGRESS_EVERY, write_progress

__all__ = ["MasterSwarm"]

_DONE_WAIT_S = 60.0  # the master waits this long for every worker's history at the stop
_IDLE_WAIT_S = 8.0  # after an interrupt's grace: how long workers get to report idle


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
        self.interrupts = 0
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
        while not self.expected <= self.done and time.monotonic() < deadline:
            gevent.sleep(0.05)
        gevent.sleep(0.2)
        runner.quit()

    def interrupt(self) -> None:
        """Pass an interrupt on to every worker; a second one ends their in-flight requests."""
        self.interrupts += 1
        grace = self.config.grace if self.interrupts == 1 else 0.0
        self.environment.runner.send_message("racelab_interrupt", {"grace": grace})
        if self.interrupts == 1:
            gevent.spawn(self._stop_when_idle, grace)

    def _stop_when_idle(self, grace: float) -> None:
        deadline = time.monotonic() + grace + _IDLE_WAIT_S
        while not self.expected <= self.idle and time.monotonic() < deadline:
            gevent.sleep(0.05)
        self.finish()

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
        if not self.unbounded and self.to_grant <= 0 and self.asked <= self.idle:
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

    def _progress_loop(self) -> None:
        path = os.environ.get("RACELAB_SWARM_PROGRESS_FILE")
        if not path:
            return
        while True:
            write_progress(path, sum(self.rows.values()), self.environment.runner.stats.total)
            gevent.sleep(PROGRESS_EVERY)

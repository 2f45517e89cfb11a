"""racelab's Locust swarm: the file Locust loads; every operation becomes one history row.

Only ever imported inside a Locust process (``python -m locust -f
loadtests/locustfile.py``): Locust and gevent patch the standard library on
import, so the orchestrator runs this file in its own process and reads back
files (see ``loadtests.runner``).

The parts:

- ``loadtests._config``: the ``--racelab-*`` options, read into one ``SwarmConfig``;
- ``loadtests._process``: a load-generating process (local or worker): budget
  (``_budget``), burst rendezvous (``_rendezvous``), recorder (``_recorder``),
  interrupts, and the messages a worker sends;
- ``loadtests._master``: the master's side (budget leases, history files, the stop);
- ``loadtests._users``: ``IncrUser`` and ``BurstUser``, over connections
  (``_connection``) whose answers are framed without I/O (``loadtests.framing``).

Each process's state lives in one listener object created here on Locust's
``init`` event and registered on that environment's events; users reach it
as ``environment.racelab``. Nothing is module-global.
"""

from __future__ import annotations

from typing import Any

from locust import events
from locust.runners import MasterRunner, WorkerRunner

from loadtests._config import add_options
from loadtests._master import MasterSwarm
from loadtests._process import LoadProcess
from loadtests._users import BurstUser, IncrUser

__all__ = ["BurstUser", "IncrUser"]


@events.init.add_listener
def _on_init(environment: Any, **_kw: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        MasterSwarm(environment)
    else:
        LoadProcess(environment, "worker" if isinstance(runner, WorkerRunner) else "local")


events.init_command_line_parser.add_listener(add_options)

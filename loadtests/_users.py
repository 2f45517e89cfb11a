"""The swarm's Locust users: every operation they make becomes one history row.

- ``IncrUser``: a plain swarm; each user makes its operations back to back.
- ``BurstUser``: users meet at a rendezvous and are released together, round
  after round (across processes at shared deadlines, see ``loadtests._rendezvous``).

A user is one client (``tabs`` consecutive users share one: one cookie jar, one
client id). It keeps one pre-connected keep-alive connection per instance URL
with every operation's request pre-built, picks its operations by weight from a
schedule shuffled once per client (deterministic and cheap), and holds what
came back in the process's recorder. The per-request path is kept lean because
on a small machine every microsecond the swarm spends is taken from the server
it measures: no HTTP client objects, no gevent timeout per wait (the process's
watchdog ends requests that outlive the timeout), and Locust's statistics
logged directly rather than through its ``request`` event.
"""

from __future__ import annotations

import contextlib
import time

from locust import FastHttpUser, constant, task
from locust.exception import StopUser
from locust.user.task import LOCUST_STATE_STOPPING

from loadtests._connection import IDLE_NS, Client, Connection, describe
from loadtests._recorder import OpError, ok_line, status_error
from scenarios.operation import schedule

__all__ = ["BurstUser", "IncrUser"]

_START_WAIT_S = 10.0  # plain users wait at most this long for every user to spawn


class _RecordingUser(FastHttpUser):
    """What both swarms share: connections, one recorded operation, the budget."""

    abstract = True
    wait_time = constant(0)
    host = "http://127.0.0.1"  # replaced by --host; the calls go to --racelab-urls

    def on_start(self) -> None:
        swarm = self.swarm = self.environment.racelab
        config = swarm.config
        number = swarm.user_started()
        client_number = number // config.tabs
        client = swarm.clients.get(client_number)
        if client is None:
            client = swarm.clients[client_number] = Client(f"p{swarm.process}-u{client_number}")
        self.client_id = client.id
        operations = config.operations
        self.connections = [Connection(url, operations, client, config.max_body, config.insecure)
                            for url in config.urls]
        for conn in self.connections:
            conn.lines = [ok_line(client.id, op.name, conn.url) for op in operations]
        swarm.connections.extend(self.connections)
        self.schedule = schedule(operations, number)
        self.step = 0
        self.next_index = number % len(self.connections)
        self.stopped = False
        self.request_stats = self.environment.stats
        #: per operation: (method, Locust's name for it, True if a 200 is ``ok``)
        self.names = [(op.method, op.path, op.outcome(200) == "ok") for op in operations]
        for conn in self.connections:  # pre-connect; failures show up on first use
            with contextlib.suppress(OSError):
                conn.connect(config.timeout)
        swarm.user_connected()

    def on_stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for conn in self.connections:
            conn.close()
        self.swarm.user_stopped()

    def operation(self, burst: int | None) -> None:
        """Make one operation and record it (``burst``: the round, or None)."""
        schedule_ = self.schedule
        index = schedule_[self.step]
        if len(schedule_) > 1:
            self.step = (self.step + 1) % len(schedule_)
        connections = self.connections
        conn = connections[self.next_index]
        if len(connections) > 1:
            self.next_index = (self.next_index + 1) % len(connections)
        swarm = self.swarm
        config = swarm.config
        invoke = time.monotonic_ns()
        if conn.sock is not None and (invoke - conn.used_ns > IDLE_NS or
                                      conn.sent == config.reconnect > 0):
            conn.close()
        if conn.sock is None:
            try:
                conn.connect(config.timeout)
            except OSError as exc:
                self._unanswered(conn, index, burst, invoke, "fail",
                                 f"connect failed: {describe(exc)}")
                return
        conn.deadline_ns = invoke + config.timeout_ns
        conn.sent += 1
        try:
            conn.send(index)
        except OSError as exc:
            conn.deadline_ns = 0
            conn.close()
            self._unanswered(conn, index, burst, invoke, "fail",
                             f"send failed: {describe(exc, conn)}")
            return
        if burst is not None:
            swarm.rendezvous.note_sent(burst, time.monotonic_ns())
        try:
            response = conn.receive()
        except BaseException as exc:  # every way of not getting an answer
            conn.deadline_ns = 0
            conn.close()
            self._unanswered(conn, index, burst, invoke, "info", describe(exc, conn))
            if not isinstance(exc, Exception):
                raise  # GreenletExit on a forced stop: recorded, now let it stop the user
            return
        conn.deadline_ns = 0
        complete = time.monotonic_ns()
        status = response.status
        method, name, ok_200 = self.names[index]
        stats = self.request_stats
        # What Locust's runner does on each ``request`` event, without the event:
        # firing it costs as much again, and nothing else listens in a swarm.
        stats.log_request(method, name, (complete - invoke) / 1e6, len(response.body))
        if not (status == 200 and ok_200):
            op = conn.operations[index]
            if op.outcome(status) != "ok":
                error = status_error(status, response.head, response.body)
                stats.log_error(method, name, OpError(error))
        if config.record:
            swarm.recorder.add((conn, index, invoke, complete, status, response.head,
                                response.body, burst))

    def _unanswered(self, conn: Connection, index: int, burst: int | None, invoke: int,
                    outcome: str, error: str) -> None:
        complete = time.monotonic_ns()
        swarm = self.swarm
        if swarm.config.record:
            swarm.recorder.add((conn, index, invoke, complete, outcome, None, error, burst))
        method, name, _ = self.names[index]
        self.request_stats.log_request(method, name, (complete - invoke) / 1e6, 0)
        self.request_stats.log_error(method, name, OpError(error))


class IncrUser(_RecordingUser):
    """Plain swarm: make operations back to back until the budget or the time is spent."""

    abstract = False

    @task
    def incr(self) -> None:
        # One long task: Locust's per-task scheduling and sleep(0) would cost a
        # hub switch per request. A graceful stop lets the current call finish.
        # Start together: the first users spawned must not spend the whole budget
        # before the others have connected (a few clients would then stand for all).
        swarm = self.swarm
        swarm.rendezvous.started.wait(_START_WAIT_S)
        take = swarm.budget.take
        while self._state != LOCUST_STATE_STOPPING:
            if not take():
                raise StopUser()
            self.operation(None)


class BurstUser(_RecordingUser):
    """Burst swarm: every user of every process fires at once, round after round."""

    abstract = False

    def on_start(self) -> None:
        self.environment.racelab.rendezvous.join()  # before connecting: that yields
        super().on_start()

    def on_stop(self) -> None:
        if not self.stopped:
            self.swarm.rendezvous.leave()
        super().on_stop()

    @task
    def burst(self) -> None:
        swarm = self.swarm
        if not swarm.budget.take():
            raise StopUser()
        self.connections[self.next_index].refresh(swarm.config.timeout)  # not after release
        burst = swarm.rendezvous.wait()
        if burst is None:
            raise StopUser()
        self.operation(burst)

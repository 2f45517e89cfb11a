"""The history: one row per operation a swarm made, Jepsen style.

Format: CSV with a header row, UTF-8, one operation per line, columns in the
order of ``COLUMNS``. ``pandas.read_csv("history.csv")`` reads it in one line.
Empty cells mean "not known" (a failed request has no value, no server pid).

| column | meaning |
| --- | --- |
| op_id | integer, unique within the history |
| client | who made the call (a Locust user, e.g. ``w0-u12``) |
| op | operation name: ``incr`` (increment and get) or ``read`` |
| outcome | ``ok``; ``fail``: certainly no effect (connection refused); ``info``: unknown |
| value | integer the server returned (``ok`` only) |
| invoke_ns, complete_ns | client's ``time.monotonic_ns()`` before sending, after the response |
| server_pid, server_tid | process and thread (or greenlet's thread) that answered |
| server_arrival_ns, server_departure_ns | server's ``time.monotonic_ns()`` on arrival, on leaving |
| url | base URL of the instance called (``cluster`` mode spreads over several) |
| burst | burst round number, empty for plain swarms |
| error | why a ``fail`` or ``info`` happened |
| status | the HTTP status code of the answer, empty when none came |

``time.monotonic_ns()`` is one system-wide clock on Linux, so client and server
times of processes on one machine are comparable.
"""

from __future__ import annotations

__all__ = ["COLUMNS", "OUTCOMES"]

COLUMNS = (
    "op_id",
    "client",
    "op",
    "outcome",
    "value",
    "invoke_ns",
    "complete_ns",
    "server_pid",
    "server_tid",
    "server_arrival_ns",
    "server_departure_ns",
    "url",
    "burst",
    "error",
    "status",
)
OUTCOMES = ("ok", "fail", "info")

"""Every default an experiment starts from, defined once.

The experiment's spec (``scenarios.run.spec.ExperimentSpec``) is checked once,
at the boundary; the server's config, its launch and the swarm are derived from
it. When one of them is built directly (a test, a library caller), its defaults
are these same values, so no two layers can disagree.
"""

from __future__ import annotations

__all__ = [
    "GRACE_S",
    "HOST",
    "INSTANCES",
    "MAX_DURATION_S",
    "MAX_REQUESTS",
    "MEMCACHED",
    "MODE",
    "NAMESPACE",
    "POSTGRES_DSN",
    "PYTHON",
    "RECONNECT",
    "REDIS_URL",
    "REQUESTS",
    "REQUEST_TIMEOUT_S",
    "SCENARIO",
    "SERVER_MIN_PYTHON",
    "SESSION_BACKEND",
    "STOCK",
    "STORE",
    "THREADS",
    "TRACEBACK_ENV",
    "UPDATE",
    "UPDATE_ATTEMPTS",
    "USERS",
    "WINDOW",
    "WORKERS",
    "WORK_US",
]

# The cell.
SCENARIO = "counter"
STORE = "global"
WINDOW = "none"
UPDATE = "atomic"  #: how a shared store is changed: one step in the store
MODE = "threaded"
WORK_US = 50  #: CPU time of the ``work`` window, microseconds
STOCK = 100  #: seats on sale when a ``tickets`` run starts

# The server: sizes that suit a 2-core machine.
WORKERS = 2
THREADS = 4
INSTANCES = 2
PYTHON = ""  #: the interpreter that serves the app: racelab's own
HOST = "127.0.0.1"  #: every listener binds loopback unless the user says otherwise
SERVER_MIN_PYTHON = (3, 10)  #: the oldest Python racelab's server (and --app's launcher) runs on

# The swarm.
USERS = 16
REQUESTS = 2000
REQUEST_TIMEOUT_S = 10.0  #: connect and read timeout of one request
RECONNECT = 10  #: requests per connection before a user opens a new one, as clients do
GRACE_S = 2.0  #: seconds in-flight requests get to finish after a signal
MAX_REQUESTS = 10_000_000  #: the largest request budget (a million rows is ~100 MB of history)
MAX_DURATION_S = 86_400.0  #: the longest load

# Where the shared stores are.
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_DSN = "postgresql://127.0.0.1:5432/test"
MEMCACHED = "127.0.0.1:11211"
SESSION_BACKEND = "filesystem"
NAMESPACE = "racelab"  #: key prefix or table suffix that isolates one run's state

# How a shared store is changed, when not in one step.
UPDATE_ATTEMPTS = 100  #: tries of an optimistic update (or waits for a lock) before it gives up

# The command line.
#: set (to anything) to see the traceback of an error racelab did not expect, not one line
TRACEBACK_ENV = "RACELAB_TRACEBACK"

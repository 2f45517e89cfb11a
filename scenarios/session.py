"""The session scenario: a per-client counter, as the original question's second example.

``GET /`` resets the client's count to 0, ``/inc`` adds one, ``/dec``
subtracts one; each answers the client's new count (``{"count": 3, ...}``).
The ``session`` store is the question's own code with Flask-Session, the
counter kept in the client's server-side session:

    value = session.get("counter", 0)    # loaded when the request started
    <window>
    session["counter"] = value + 1       # saved when the request ends

Sessions isolate clients: one cookie never sees another's count. They do not
serialise one client's requests: two requests with the same cookie (two
browser tabs, or parallel ``fetch()`` calls) both load n and both save n + 1,
and one update is lost (Flask-Session's issue #71: the last save wins).

The other stores key the count by a client cookie (``racelab_client``) and
show the fixes: a dict (``global``; ``lock``: the same under a
``threading.Lock``, one process only), an upsert ``INSERT ... ON CONFLICT DO
UPDATE SET value = value + excluded.value RETURNING value`` (``sqlite``,
``postgres``), ``HINCRBY`` (``redis``): one atomic step per update. No
``memcached`` store: its ``decr`` stops at 0, and these counts go below zero;
no ``manager``: the supervisor's manager serves the counter object only.

Invariant (``check_session``): each client's answers fit some order of its own
increments and decrements, starting from 0 (no lost update, no count that
came from another client); the final total of every count equals the
increments minus the decrements the clients were told of.
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from scenarios._checking import registrar
from scenarios._serving import (
    Postgres,
    Redis,
    Sqlite,
    answer,
    cleanup_store,
    pg_create,
    prepare_store,
    table_name,
    window_of,
)
from scenarios.base import Scenario, Served, ServerSide
from scenarios.operation import Operation, ValueSpec

if TYPE_CHECKING:
    import numpy as np
    from flask import Flask

    from demo_server.served.config import ServerConfig
    from reports.history.table import HistoryTable
    from reports.history.verdict import Verdict, Witness

# The checkers below import numpy and reports.history inside their functions: a server
# worker imports this module for its routes and never checks a history.
__all__ = ["CLIENT_COOKIE", "OPERATIONS", "SCENARIO", "check_session"]

CLIENT_COOKIE = "racelab_client"
_KEY = "counter"
OPERATIONS = (
    Operation(name="inc", method="GET", path="/inc", weight=2, value=ValueSpec("json", "count")),
    Operation(name="dec", method="GET", path="/dec", weight=1, value=ValueSpec("json", "count")),
)
#: Operation names and the change each makes (``incr``: the counter scenario's session store).
DELTAS = {"inc": 1, "incr": 1, "dec": -1, "decr": -1}


# --- the server side, one class per store ----------------------------------------------


class _Session:
    """Flask-Session: the count in the client's server-side session (the question's code)."""

    def __init__(self, config: ServerConfig, app: Flask) -> None:
        from scenarios.counter.external import SessionStore

        SessionStore(config).init_app(app)
        self.app = app
        self.window = window_of(config)

    def add(self, client: str, delta: int) -> int:
        from flask import session

        value = int(session.get(_KEY, 0))
        if self.window is not None:
            self.window()
        session[_KEY] = value + delta
        return value + delta

    def set(self, client: str, value: int) -> None:
        from flask import session

        session[_KEY] = value

    def counts(self) -> list[int] | None:
        """Every session's count, read from the session backend (None if it cannot say)."""
        iface: Any = self.app.session_interface
        found = []
        try:
            cache = getattr(iface, "cache", None)
            if cache is not None:  # cachelib's FileSystemCache: one file per session
                for path in cache._list_dir():
                    with open(path, "rb") as handle:
                        handle.read(4)  # the expiry time
                        found.append(cache.serializer.load(handle))
            else:  # Redis: one key per session
                for key in iface.client.scan_iter(match=iface.key_prefix + "*", count=1000):
                    raw = iface.client.get(key)
                    if raw:
                        found.append(iface.serializer.decode(raw))
        except Exception:  # an unreadable backend: the total stays unknown
            return None
        return [int(d[_KEY]) for d in found if isinstance(d, dict) and isinstance(d.get(_KEY), int)]


class _Global:
    """A dict of counts keyed by the client cookie, one copy per process."""

    def __init__(self, config: ServerConfig, app: Flask) -> None:
        self.values: dict[str, int] = {}
        self.window = window_of(config)

    def add(self, client: str, delta: int) -> int:
        value = self.values.get(client, 0)
        if self.window is not None:
            self.window()
        self.values[client] = value + delta
        return value + delta

    def set(self, client: str, value: int) -> None:
        self.values[client] = value

    def counts(self) -> list[int] | None:
        return list(self.values.values())


class _Lock(_Global):
    """The same dict, each update under one threading.Lock."""

    def __init__(self, config: ServerConfig, app: Flask) -> None:
        super().__init__(config, app)
        self.lock = threading.Lock()

    def add(self, client: str, delta: int) -> int:
        with self.lock:
            return super().add(client, delta)

    def counts(self) -> list[int] | None:
        with self.lock:
            return super().counts()


_SQLITE_SCHEMA = ("CREATE TABLE IF NOT EXISTS counts "
                  "(client TEXT PRIMARY KEY, value INTEGER NOT NULL);")


class _Sqlite:
    """A row per client, updated by one upsert statement."""

    def __init__(self, config: ServerConfig, app: Flask) -> None:
        self.db = Sqlite(config, _SQLITE_SCHEMA)

    def add(self, client: str, delta: int) -> int:
        with self.db.errors():
            return int(self.db.conn().execute(
                "INSERT INTO counts (client, value) VALUES (?, ?) ON CONFLICT (client) "
                "DO UPDATE SET value = value + excluded.value RETURNING value",
                (client, delta)).fetchone()[0])

    def set(self, client: str, value: int) -> None:
        with self.db.errors():
            self.db.conn().execute(
                "INSERT INTO counts (client, value) VALUES (?, ?) ON CONFLICT (client) "
                "DO UPDATE SET value = excluded.value", (client, value))

    def counts(self) -> list[int] | None:
        with self.db.errors():
            return [int(r[0]) for r in self.db.conn().execute("SELECT value FROM counts")]


def _pg_schema(config: ServerConfig) -> Any:
    return functools.partial(pg_create, table=table_name("session", config.namespace),
                             columns="client text PRIMARY KEY, value bigint NOT NULL",
                             fill="SELECT 1 FROM {} LIMIT 0", args=())


class _Postgres:
    """A row per client, updated by one upsert statement."""

    def __init__(self, config: ServerConfig, app: Flask) -> None:
        from psycopg import sql

        self.db = Postgres(config, _pg_schema(config))
        ident = sql.Identifier(table_name("session", config.namespace))
        upsert = ("INSERT INTO {} AS c (client, value) VALUES (%s, %s) ON CONFLICT (client) "
                  "DO UPDATE SET value = ")
        self._add = sql.SQL(upsert + "c.value + EXCLUDED.value RETURNING value").format(ident)
        self._set = sql.SQL(upsert + "EXCLUDED.value").format(ident)
        self._counts = sql.SQL("SELECT value FROM {}").format(ident)

    def add(self, client: str, delta: int) -> int:
        with self.db.transaction() as conn:
            return int(conn.execute(self._add, (client, delta)).fetchone()[0])

    def set(self, client: str, value: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(self._set, (client, value))

    def counts(self) -> list[int] | None:
        with self.db.transaction() as conn:
            return [int(r[0]) for r in conn.execute(self._counts).fetchall()]


class _Redis:
    """A hash field per client, updated with ``HINCRBY``."""

    def __init__(self, config: ServerConfig, app: Flask) -> None:
        self.db = Redis(config)
        self.key = f"{config.namespace}:session:counts"

    def add(self, client: str, delta: int) -> int:
        return int(self.db.call(lambda r: r.hincrby(self.key, client, delta)))

    def set(self, client: str, value: int) -> None:
        self.db.call(lambda r: r.hset(self.key, client, value))

    def counts(self) -> list[int] | None:
        return [int(v) for v in self.db.call(lambda r: r.hvals(self.key))]


_STORES: dict[str, Any] = {"session": _Session, "global": _Global, "lock": _Lock,
                           "sqlite": _Sqlite, "postgres": _Postgres, "redis": _Redis}


class _Side:
    def __init__(self, counts: Any) -> None:
        self.store = counts

    def state(self) -> dict[str, Any]:
        values = self.store.counts()
        if values is None:
            return {"value": 0, "total": None, "clients": None}
        return {"value": sum(values), "total": sum(values), "clients": len(values)}

    def reset(self) -> None:
        """Clients reset their own count (``GET /``); a run starts from an empty store."""


def serve(app: Flask, config: ServerConfig, served: Served) -> ServerSide:
    """Add ``/``, ``/inc`` and ``/dec`` over the configured store."""
    from flask import Response, g, request

    store = _STORES[config.store](config, app)

    def client() -> str:
        # The session store needs no cookie of its own: Flask-Session sets one.
        cookie = request.cookies.get(CLIENT_COOKIE)
        if cookie is None:
            cookie = g.racelab_new_client = secrets.token_hex(16)
        return cookie

    @app.after_request
    def give_cookie(response: Response) -> Response:
        new = g.pop("racelab_new_client", None)
        if new is not None and config.store != "session":
            response.set_cookie(CLIENT_COOKIE, new, httponly=True, samesite="Lax")
        return response

    def update(delta: int) -> Any:
        arrival_ns = time.monotonic_ns()
        count = store.add(client(), delta)
        served.add()
        return answer(app, arrival_ns, count=count, value=count)

    @app.route("/", methods=["GET", "POST"])
    def index() -> Any:
        arrival_ns = time.monotonic_ns()
        store.set(client(), 0)
        return answer(app, arrival_ns, count=0, value=0)

    app.add_url_rule("/inc", "inc", lambda: update(1), methods=["GET", "POST"])
    app.add_url_rule("/dec", "dec", lambda: update(-1), methods=["GET", "POST"])
    return _Side(store)


def _prepare(config: ServerConfig) -> None:
    from scenarios.counter.external import SessionStore

    if config.store == "session":
        SessionStore.prepare(config)
    prepare_store(config, sqlite=lambda c: _SQLITE_SCHEMA, postgres=_pg_schema)


def _cleanup(config: ServerConfig) -> None:
    from scenarios.counter.external import SessionStore

    if config.store == "session":
        SessionStore.cleanup(config)
    cleanup_store(config, "session")


# --- the checker ---------------------------------------------------------------------


def check_session(table: HistoryTable, final: Any = None, *,
                  per_process: bool = False) -> Verdict:
    """Check per-client counters: each client's answers fit its own requests.

    For one client, take the answers of its ``ok`` updates: an increment that
    answered n moved the count from n - 1 up to n, a decrement that answered n
    moved it from n + 1 down to n. Some order of the client's requests explains
    them only if the moves form one walk from 0 to some final count: between n
    and n + 1 it went up exactly once more than down (below the final count),
    as often up as down (beyond it). Each move that fits no such walk is an
    update that was lost (two requests loaded the same count and both saved
    it); an update of unknown outcome (``info``) may explain one. An answer
    further from 0 than the client's own requests can reach came from another
    client's count.

    Args:
        table: the history; ``inc``/``incr`` add one, ``dec``/``decr`` subtract one.
        final: the final state (``final.json``: each copy's ``total`` of every
            count), or None to judge the answers alone.
        per_process: each process keeps its own copy of the counts.

    Returns:
        ``no`` with witnesses; ``unknown`` when no update succeeded; ``yes`` otherwise.
    """
    from reports.history.checkers import guarded

    return guarded("session")(_check)(table, final, per_process)


def _check(table: HistoryTable, final: Any, per_process: bool) -> Verdict:
    import numpy as np

    from reports.history.checkers import plural
    from reports.history.table import FAIL, INFO, OK
    from reports.history.verdict import Verdict
    from scenarios._checking import conclude, final_states

    delta = np.zeros(len(table), dtype=np.int64)
    for name, d in DELTAS.items():
        delta[table.op_is(name)] = d
    updates = delta != 0
    ok = updates & (table.outcome == OK) & table.value_known
    unknown = updates & ((table.outcome == INFO) | ((table.outcome == OK) & ~table.value_known))
    counts = {"updates": int(updates.sum()), "ok": int(ok.sum()), "info": int(unknown.sum()),
              "fail": int((updates & (table.outcome == FAIL)).sum()), "clients": 0,
              "lost_updates": 0, "clients_losing_updates": 0, "isolation_breaches": 0,
              "final_total_off": 0}
    if not counts["ok"]:
        return Verdict("session", "unknown", counts, reason="no increment or decrement succeeded")
    witnesses: list[Witness] = []
    order = np.lexsort((table.invoke_ns, table.client))
    order = order[updates[order]]
    bounds = np.flatnonzero(np.diff(table.client[order])) + 1
    for rows in np.split(order, bounds):
        mine = rows[ok[rows]]
        if not mine.size:
            continue
        counts["clients"] += 1
        name = table.client_names[int(table.client[rows[0]])]
        _one_client(table, name, mine, delta[mine], int(unknown[rows].sum()), int(rows.size),
                    counts, witnesses)
    state = final_states(final, per_process)
    totals = state.ints("total")
    if totals is not None:
        total = sum(totals) if state.per_process else totals[0]
        told = int(delta[ok].sum())
        off = max(0, abs(total - told) - counts["info"])
        counts["final_total_off"] = off
        if off:
            witnesses.append(_total_witness(told, total, counts))
    counts["anomalies"] = counts["lost_updates"] + counts["isolation_breaches"] + bool(
        counts["final_total_off"] and not counts["lost_updates"])
    findings = []
    if counts["lost_updates"]:
        findings.append(f"{plural(counts['lost_updates'], 'update')} lost by "
                        f"{plural(counts['clients_losing_updates'], 'client')}")
    if counts["isolation_breaches"]:
        findings.append(f"{plural(counts['isolation_breaches'], 'answer')} from another "
                        "client's count")
    if counts["final_total_off"]:
        findings.append(f"the counts end {counts['final_total_off']:,} away from the updates "
                        "the clients were told of")
    return conclude("session", counts, witnesses, findings,
                    [state.problem] if state.problem else [], (
        f"each of {plural(counts['clients'], 'client')} saw its own count, explained by its "
        "own increments and decrements" + (", and so does the final total" if totals else "")))


def _one_client(table: HistoryTable, name: str, rows: np.ndarray, delta: np.ndarray,
                unknown: int, attempts: int, counts: dict[str, int],
                witnesses: list[Witness]) -> None:
    """Count one client's lost updates and isolation breaches (see ``check_session``)."""
    import numpy as np

    from reports.history.checkers import WITNESSES_PER_KIND
    from reports.history.verdict import Witness

    value = table.value[rows]
    foreign = np.abs(value) > attempts
    if foreign.any():
        counts["isolation_breaches"] += int(foreign.sum())
        i = int(np.flatnonzero(foreign)[0])
        witnesses.append(Witness("isolation-breach", (
            f"client {name}: request {int(table.op_id[rows[i]])} answered {int(value[i])} after "
            f"{attempts:,} updates of its own: the count came from another client"),
            (int(table.op_id[rows[i]]),), {"client": name, "value": int(value[i])}))
        rows, delta, value = rows[~foreign], delta[~foreign], value[~foreign]
    # The move n -> n + 1 (edge n) of each update, and how often the count crossed each edge.
    edge = np.where(delta > 0, value - 1, value)
    low = int(min(edge.min(initial=0), -1))
    span = int(max(edge.max(initial=0), 0)) - low + 1
    net = np.bincount(edge - low, weights=delta, minlength=span).astype(np.int64)
    levels = np.arange(low, low + span)
    # D(F) = sum |net_L - expected_L(F)|: the walk from 0 to F crosses edges 0..F-1 up
    # once, edges F..-1 down once, the others as often up as down.
    base = int(np.abs(net).sum())
    up_gain = np.cumsum(np.where(levels >= 0, np.abs(net - 1) - np.abs(net), 0))
    down_gain = np.cumsum(np.where(levels < 0, np.abs(net + 1) - np.abs(net), 0)[::-1])[::-1]
    zero = -low  # index of edge 0
    # cost[k] for the final counts low..high+1: F > 0 adds edges 0..F-1, F < 0 edges F..-1.
    cost = base + np.concatenate((down_gain[:zero], [0], up_gain[zero:]))
    pick = int(np.argmin(cost))
    best, final = int(cost[pick]), low + pick
    lost = max(0, best - unknown)
    if not lost:
        return
    counts["lost_updates"] += lost
    counts["clients_losing_updates"] += 1
    if sum(w.kind == "lost-update" for w in witnesses) >= WITNESSES_PER_KIND:
        return
    expected = np.where((levels >= 0) & (levels < final), 1,
                        np.where((levels < 0) & (levels >= final), -1, 0))
    worst = int(np.argmax(np.abs(net - expected)))
    level, sign = int(levels[worst]), 1 if net[worst] > expected[worst] else -1
    same = np.flatnonzero((edge == level) & (delta == sign))[:2]
    ids = tuple(int(table.op_id[rows[i]]) for i in same)
    if len(ids) == 2:
        verb = "added one" if sign > 0 else "subtracted one"
        start, end = (level, level + 1) if sign > 0 else (level + 1, level)
        sentence = (f"client {name}: requests {ids[0]} and {ids[1]} both {verb} and both "
                    f"answered {end}: both loaded {start} and the later save overwrote the "
                    "other; no order of this client's own requests explains it")
    else:
        sentence = (f"client {name}: its answers cross {level} to {level + 1} "
                    f"{abs(int(net[worst]))} more times {'up' if net[worst] > 0 else 'down'} "
                    "than down, which no order of its own requests explains")
    witnesses.append(Witness("lost-update", sentence, ids,
                             {"client": name, "level": level, "lost": lost}))


def _total_witness(told: int, total: int, counts: dict[str, int]) -> Witness:
    from reports.history.verdict import Witness

    return Witness("final-total", (
        f"the clients were told of updates adding up to {told:,}, yet every count together "
        f"ends at {total:,} ({counts['info']:,} updates had an unknown outcome)"), (),
        {"told": told, "total": total})


SCENARIO = Scenario(
    name="session",
    title="count per client: /inc and /dec on the client's own session",
    operations=OPERATIONS,
    stores=("session", "global", "lock", "sqlite", "postgres", "redis"),
    windowed_stores=frozenset({"session", "global", "lock"}),
    checkers=("session",),
    serve=serve,
    prepare=_prepare,
    cleanup=_cleanup,
    store_sentences={
        "session": "The session store keeps each client's count in its Flask-Session session: "
                   "loaded when a request starts, saved when it ends, so clients never share a "
                   "count, but two requests with one cookie overwrite each other.",
        "global": "The global store keeps every client's count in one dict, one copy per "
                  "process, with nothing keeping two updates of one client apart.",
        "lock": "The lock store updates the dict under one threading.Lock: safe between "
                "threads; every process still holds its own counts.",
        "sqlite": "The sqlite store updates a row per client with one upsert "
                  "(ON CONFLICT DO UPDATE SET value = value + excluded.value RETURNING).",
        "postgres": "The postgres store updates a row per client with one upsert "
                    "(ON CONFLICT DO UPDATE ... RETURNING), atomic for every process.",
        "redis": "The redis store keeps a hash field per client, updated with HINCRBY.",
    },
    register=registrar("session", check_session),
)

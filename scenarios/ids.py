"""The ids scenario: hand out order numbers and store the orders.

``POST /order`` takes the next order number, stores the order under it and
answers it (``{"id": 5, ...}``). The naive code (``global``) is a tutorial
app's dict keyed by the next id:

    order_id = self.next_id               # read
    <window>                              # between the read and the write
    self.orders[order_id] = order         # store the order
    self.next_id = order_id + 1           # write
    return order_id

Two requests that read the same ``next_id`` both answer it, and the second
order overwrites the first in the dict: an order acknowledged to its client is
gone. Every process keeps its own dict and counter, so under several processes
the numbers repeat, though no order is overwritten.

The fixes let the store hand out the number: one ``threading.Lock`` (``lock``,
one process only), ``INSERT ... RETURNING id`` on an ``AUTOINCREMENT`` /
identity column (``sqlite``, ``postgres``), a Lua script doing ``INCR`` and
``HSET`` (``redis``), ``incr`` then one key per order (``memcached``). No
``manager`` store: the supervisor's manager serves the counter object only.

Invariants (``check_ids``): every id unique; every acknowledged order present
at the end (lost inserts counted from the final state).
"""

from __future__ import annotations

import functools
import threading
import time
from typing import TYPE_CHECKING, Any

from scenarios._checking import registrar
from scenarios._serving import (
    Memcached,
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
    from flask import Flask

    from demo_server.served.config import ServerConfig
    from reports.history.table import HistoryTable
    from reports.history.verdict import Verdict, Witness

# The checkers below import numpy and reports.history inside their functions: a server
# worker imports this module for its routes and never checks a history.
__all__ = ["OPERATIONS", "SCENARIO", "check_ids"]

OPERATIONS = (Operation(name="order", method="POST", path="/order", body='{"item": "book"}',
                        value=ValueSpec("json", "id")),)


# --- the server side, one class per store ----------------------------------------------


class _Global:
    """The tutorial app's order book: a dict and a next id, one copy per process."""

    def __init__(self, config: ServerConfig) -> None:
        self.next_id = 1
        self.orders: dict[int, str] = {}
        self.window = window_of(config)

    def place(self, item: str) -> int:
        order_id = self.next_id
        if self.window is not None:
            self.window()
        self.orders[order_id] = item
        self.next_id = order_id + 1
        return order_id

    def stored(self) -> tuple[int, int]:
        """(orders held, the last id handed out)."""
        return len(self.orders), self.next_id - 1

    def reset(self) -> None:
        self.orders.clear()
        self.next_id = 1


class _Lock(_Global):
    """The same order book under one threading.Lock."""

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.lock = threading.Lock()

    def place(self, item: str) -> int:
        with self.lock:
            return super().place(item)

    def stored(self) -> tuple[int, int]:
        with self.lock:
            return super().stored()

    def reset(self) -> None:
        with self.lock:
            super().reset()


_SQLITE_SCHEMA = ("CREATE TABLE IF NOT EXISTS orders "
                  "(id INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL);")


class _Sqlite:
    """A table whose ``AUTOINCREMENT`` key the INSERT hands back (``RETURNING id``)."""

    def __init__(self, config: ServerConfig) -> None:
        self.db = Sqlite(config, _SQLITE_SCHEMA)

    def place(self, item: str) -> int:
        with self.db.errors():
            return int(self.db.conn().execute(
                "INSERT INTO orders (item) VALUES (?) RETURNING id", (item,)).fetchone()[0])

    def stored(self) -> tuple[int, int]:
        with self.db.errors():
            count, last = self.db.conn().execute(
                "SELECT count(*), coalesce(max(id), 0) FROM orders").fetchone()
        return int(count), int(last)

    def reset(self) -> None:
        with self.db.errors():
            self.db.conn().execute("DELETE FROM orders")
            self.db.conn().execute("DELETE FROM sqlite_sequence WHERE name = 'orders'")


def _pg_schema(config: ServerConfig) -> Any:
    return functools.partial(
        pg_create, table=table_name("ids", config.namespace),
        columns="id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item text NOT NULL",
        fill="SELECT 1 FROM {} LIMIT 0", args=())


class _Postgres:
    """A table with an identity column: ``INSERT ... RETURNING id``."""

    def __init__(self, config: ServerConfig) -> None:
        from psycopg import sql

        name = table_name("ids", config.namespace)
        self.db = Postgres(config, _pg_schema(config))
        ident = sql.Identifier(name)
        self._insert = sql.SQL("INSERT INTO {} (item) VALUES (%s) RETURNING id").format(ident)
        self._stored = sql.SQL("SELECT count(*), coalesce(max(id), 0) FROM {}").format(ident)
        self._reset = sql.SQL("TRUNCATE {} RESTART IDENTITY").format(ident)

    def place(self, item: str) -> int:
        with self.db.transaction() as conn:
            return int(conn.execute(self._insert, (item,)).fetchone()[0])

    def stored(self) -> tuple[int, int]:
        with self.db.transaction() as conn:
            count, last = conn.execute(self._stored).fetchone()
        return int(count), int(last)

    def reset(self) -> None:
        with self.db.transaction() as conn:
            conn.execute(self._reset)


_PLACE_LUA = """
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], id, ARGV[1])
return id
"""


class _Redis:
    """``INCR`` for the id and ``HSET`` of the order, together in one Lua script."""

    def __init__(self, config: ServerConfig) -> None:
        self.db = Redis(config)
        self.keys = [f"{config.namespace}:ids:next", f"{config.namespace}:ids:orders"]
        self._script = self.db.call(lambda r: r.register_script(_PLACE_LUA))

    def place(self, item: str) -> int:
        return int(self.db.call(lambda r: self._script(keys=self.keys, args=[item], client=r)))

    def stored(self) -> tuple[int, int]:
        last, count = self.db.call(lambda r: (r.get(self.keys[0]), r.hlen(self.keys[1])))
        return int(count), int(last or 0)

    def reset(self) -> None:
        self.db.call(lambda r: r.delete(*self.keys))


class _Memcached:
    """The id from memcached's atomic ``incr``, then one key per order."""

    def __init__(self, config: ServerConfig) -> None:
        self.db = Memcached(config)
        self.prefix = f"{config.namespace}:ids"

    def place(self, item: str) -> int:
        key = f"{self.prefix}:next"
        order_id = self.db.call(lambda m: m.incr(key, 1))
        if order_id is None:  # the first order: add() creates the key only if still absent
            self.db.call(lambda m: m.add(key, b"0"))
            order_id = self.db.call(lambda m: m.incr(key, 1))
        self.db.call(lambda m: m.set(f"{self.prefix}:order:{int(order_id)}", item.encode()))
        return int(order_id)

    def stored(self) -> tuple[int, int]:
        last = int(self.db.call(lambda m: m.get(f"{self.prefix}:next")) or 0)
        count = 0
        for start in range(1, last + 1, 500):
            keys = [f"{self.prefix}:order:{i}" for i in range(start, min(start + 500, last + 1))]
            count += len(self.db.call(functools.partial(_get_many, keys)))
        return count, last

    def reset(self) -> None:
        self.db.call(lambda m: m.set(f"{self.prefix}:next", b"0"))


def _get_many(keys: list[str], client: Any) -> dict[str, Any]:
    return dict(client.get_many(keys))


_STORES: dict[str, Any] = {"global": _Global, "lock": _Lock, "sqlite": _Sqlite,
                           "postgres": _Postgres, "redis": _Redis, "memcached": _Memcached}


class _Side:
    def __init__(self, book: Any) -> None:
        self.book = book

    def state(self) -> dict[str, Any]:
        count, last = self.book.stored()
        return {"value": count, "orders": count, "last_id": last}

    def reset(self) -> None:
        self.book.reset()


def serve(app: Flask, config: ServerConfig, served: Served) -> ServerSide:
    """Add ``POST /order`` over the configured store."""
    from flask import request

    book = _STORES[config.store](config)

    @app.post("/order")
    def order() -> Any:
        arrival_ns = time.monotonic_ns()
        data = request.get_json(silent=True)
        item = str(data.get("item", "")) if isinstance(data, dict) else ""
        order_id = book.place(item or "item")
        served.add()
        return answer(app, arrival_ns, id=order_id, value=order_id)

    return _Side(book)


# --- the checker ---------------------------------------------------------------------


def check_ids(table: HistoryTable, final: Any = None, *, per_process: bool = False) -> Verdict:
    """Check an order book's history: every id unique, every acknowledged order kept.

    Args:
        table: the history; every ``ok`` operation's value is an id (any ``op``,
            so a history of another app's id endpoint can be checked too).
        final: the final state (``final.json``: each copy's ``orders``), or None
            to skip the lost-insert check.
        per_process: each process keeps its own order book.

    Returns:
        ``no`` with witnesses for repeated ids or lost orders; ``unknown`` when no
        id was handed out or the final state is unusable; ``yes`` otherwise.
    """
    from reports.history.checkers import guarded

    return guarded("ids")(_check)(table, final, per_process)


def _check(table: HistoryTable, final: Any, per_process: bool) -> Verdict:
    import numpy as np

    from reports.history.checkers import Ops, plural
    from reports.history.table import FAIL, INFO, OK
    from reports.history.verdict import Verdict
    from scenarios._checking import conclude, final_states, retold_duplicates, together

    state = final_states(final, per_process)
    ops = Ops.of(table, np.flatnonzero((table.outcome == OK) & table.value_known))
    counts = {"ids": len(ops), "info": int((table.outcome == INFO).sum()),
              "fail": int((table.outcome == FAIL).sum())}
    if not len(ops):
        return Verdict("ids", "unknown", counts, reason="no ok operation returned an id")

    def tell(value: int, ids: list[int], how: str, when: str) -> str:
        who, each, either = together(ids)
        if when == "overlapped":
            return (f"{who} got order number {value}: {each} read next id {value} before "
                    f"{either} wrote {value + 1}; {how}")
        if when == "apart":
            return (f"{who} got order number {value}: each read next id {value}, which an "
                    f"order that had read it earlier wrote back after the other's; {how}")
        return f"{who} got order number {value}: {how}"

    dup_counts, witnesses = retold_duplicates(ops, state.per_process, tell)
    counts.update(dup_counts)
    counts["lost_inserts"] = 0
    witnesses += _lost_inserts(ops, state, counts)
    counts["anomalies"] = max(counts["duplicate_extra_returns"], counts["lost_inserts"])
    findings = []
    if counts["duplicate_values"]:
        findings.append(f"{plural(counts['duplicate_values'], 'id')} handed out more than once "
                        f"({counts['duplicate_extra_returns']:,} extra)")
    if counts["lost_inserts"]:
        findings.append(f"{plural(counts['lost_inserts'], 'acknowledged order')} missing at "
                        "the end")
    return conclude("ids", counts, witnesses, findings, [state.problem] if state.problem else [],
                    f"{plural(len(ops), 'id')}, all distinct"
                    + (", every acknowledged order kept" if state.states else ""))


def _lost_inserts(ops: Any, state: Any, counts: dict[str, int]) -> list[Witness]:
    """Acknowledged orders above what each copy of the order book holds at the end."""
    from reports.history.checkers import WITNESSES_PER_KIND, plural
    from reports.history.verdict import Witness

    held = state.ints("orders")
    if held is None:
        return []
    if state.per_process:
        copies = [(f"process {s.get('pid')}", int((ops.pid == s.get("pid")).sum()), h)
                  for s, h in zip(state.states, held, strict=True)]
    else:
        copies = [("the order book", len(ops), max(held))]
    witnesses: list[Witness] = []
    for name, acknowledged, kept in copies:
        lost = max(0, acknowledged - kept)
        counts["lost_inserts"] += lost
        if lost and len(witnesses) < WITNESSES_PER_KIND:
            witnesses.append(Witness("lost-insert", (
                f"{name} acknowledged {plural(acknowledged, 'order')}, yet holds {kept:,} at the "
                f"end: {plural(lost, 'order was', 'orders were')} stored under an id another "
                "order also got, and overwritten"), (),
                {"copy": name, "acknowledged": acknowledged, "held": kept}))
    return witnesses


SCENARIO = Scenario(
    name="ids",
    title="hand out order numbers and store the orders",
    operations=OPERATIONS,
    stores=("global", "lock", "sqlite", "postgres", "redis", "memcached"),
    windowed_stores=frozenset({"global", "lock"}),
    checkers=("ids",),
    serve=serve,
    prepare=functools.partial(prepare_store, sqlite=lambda c: _SQLITE_SCHEMA,
                              postgres=_pg_schema),
    cleanup=functools.partial(cleanup_store, kind="ids",
                              memcached=lambda c: _Memcached(c).reset()),
    store_sentences={
        "global": "The global store reads the next id, stores the order under it, then writes "
                  "the next id back, with nothing keeping two orders apart.",
        "lock": "The lock store takes the id and stores the order under one threading.Lock: "
                "safe between threads; every process still numbers its own orders.",
        "sqlite": "The sqlite store lets the database number the order: INSERT ... RETURNING "
                  "id on an AUTOINCREMENT key.",
        "postgres": "The postgres store lets the database number the order: INSERT ... "
                    "RETURNING id on an identity column.",
        "redis": "The redis store takes the id with INCR and stores the order with HSET, in "
                 "one Lua script.",
        "memcached": "The memcached store takes the id with memcached's atomic incr, then "
                     "stores the order under its own key.",
    },
    register=registrar("ids", check_ids),
)

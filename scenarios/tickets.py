"""The tickets scenario: a box office with a fixed stock, check-then-act.

``POST /buy`` checks the stock, then sells a seat: it answers the seat number
(``{"seat": 12, ...}``) or, once nothing is left, ``409 sold out`` (a ``fail``
in the history: the request had no effect). Seats are numbered by the stock
the sale saw: the first buyer of 100 seats gets seat 100, the last seat 1. So
two requests that both saw stock 12 both get seat 12, and the history's
``value`` column shows a double sale as a repeated value, for any tool.

The naive code (``global``) reads the stock, and writes it back one lower:

    stock = self.stock          # check
    if stock <= 0: sold out
    <window>                    # what runs between the check and the sale
    self.stock = stock - 1      # act

The fixes make check and act one step: a ``threading.Lock`` around both
(``lock``: one process only), ``UPDATE ... SET stock = stock - 1 WHERE stock >
0 RETURNING`` (``sqlite``, ``postgres``), a Lua script (``redis``), ``incr`` of
the seats sold (``memcached``: the buyer whose number is within the stock gets a
seat). No ``manager`` store: the supervisor's manager process serves the counter
object only.

Moving the stock into a shared store is not enough by itself: each shared store
also offers the naive ``read-write`` update (read the stock, window, write back
what was read minus one: Redis ``GET``/``SET``, ``SELECT`` then ``UPDATE`` in one
transaction at PostgreSQL's default isolation, memcached ``get``/``set``, SQLite
as Python's sqlite3 runs it), which oversells from every process at once, and
the fixes that keep that shape: ``locked`` (``SELECT ... FOR UPDATE``, ``BEGIN
IMMEDIATE``, redis-py's lock) and ``optimistic`` (``WATCH``/``MULTI``,
REPEATABLE READ retried, ``gets``/``cas``, ``UPDATE ... WHERE stock = :read``).

Invariants (``check_tickets``): no seat sold twice; never more sold than the
stock, and the stock went down once per sale (from the final state); nobody
told "sold out" while seats remained (a later sale, or seats left at the end).
"""

from __future__ import annotations

import functools
import threading
import time
from typing import TYPE_CHECKING, Any

from demo_server.basics.errors import StoreUnavailable
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
from scenarios._updates import PG_ISOLATION, Conflict, UpdateForms
from scenarios.base import Scenario, Served, ServerSide
from scenarios.operation import Operation, ValueSpec

if TYPE_CHECKING:
    from flask import Flask

    from demo_server.served.config import ServerConfig
    from reports.history.table import HistoryTable
    from reports.history.verdict import Verdict, Witness

# The checkers below import numpy and reports.history inside their functions: a server
# worker imports this module for its routes and never checks a history.
__all__ = ["OPERATIONS", "SCENARIO", "check_tickets"]

SOLD_OUT = 409
OPERATIONS = (Operation(name="buy", method="POST", path="/buy", value=ValueSpec("json", "seat"),
                        statuses=((SOLD_OUT, "fail"),)),)


# --- the server side, one class per store ----------------------------------------------


class _Global:
    """The naive box office: a module-level object, one copy per process."""

    def __init__(self, config: ServerConfig) -> None:
        self.initial = config.stock
        self.stock = config.stock
        self.window = window_of(config)

    def buy(self) -> int | None:
        stock = self.stock
        if stock <= 0:
            return None
        if self.window is not None:
            self.window()
        self.stock = stock - 1
        return stock

    def remaining(self) -> int:
        return self.stock

    def reset(self) -> None:
        self.stock = self.initial


class _Lock(_Global):
    """The same box office, check and sale under one threading.Lock."""

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.lock = threading.Lock()

    def buy(self) -> int | None:
        with self.lock:
            return super().buy()

    def reset(self) -> None:
        with self.lock:
            super().reset()


def _sqlite_schema(stock: int) -> str:
    return ("CREATE TABLE IF NOT EXISTS box_office (id INTEGER PRIMARY KEY, stock INTEGER);"
            f"INSERT OR IGNORE INTO box_office (id, stock) VALUES (1, {int(stock)});")


class _Sqlite(UpdateForms):
    """One row; the check is the UPDATE's WHERE clause, so check and sale are one statement."""

    updates = ("atomic", "read-write", "locked", "optimistic")

    def __init__(self, config: ServerConfig) -> None:
        self.initial = config.stock
        self.db = Sqlite(config, _sqlite_schema(config.stock))

    def buy(self) -> int | None:
        with self.db.errors():
            row = self.db.conn().execute(
                "UPDATE box_office SET stock = stock - 1 WHERE id = 1 AND stock > 0 "
                "RETURNING stock + 1").fetchone()
        return None if row is None else int(row[0])

    def remaining(self) -> int:
        with self.db.errors():
            return _sqlite_stock(self.db.conn())

    def reset(self) -> None:
        with self.db.errors():
            self.db.conn().execute("UPDATE box_office SET stock = ? WHERE id = 1", (self.initial,))

    def _sell(self, conn: Any) -> int | None:
        stock = _sqlite_stock(conn)
        if stock <= 0:
            return None
        self.wait()
        conn.execute("UPDATE box_office SET stock = ? WHERE id = 1", (stock - 1,))
        return stock

    def buy_read_write(self) -> int | None:
        # As Python's sqlite3 module runs it by default: the SELECT outside any transaction.
        with self.db.errors():
            return self._sell(self.db.conn())

    def buy_locked(self) -> int | None:
        with self.db.immediate() as conn:
            return self._sell(conn)

    def buy_optimistic(self) -> int | None:
        def attempt() -> int | None:
            conn = self.db.conn()
            stock = _sqlite_stock(conn)
            if stock <= 0:
                return None
            if not conn.execute("UPDATE box_office SET stock = ? WHERE id = 1 AND stock = ?",
                                (stock - 1, stock)).rowcount:
                raise Conflict
            return stock

        with self.db.errors():
            return self.retry(f"SQLite {self.db.path}", attempt)


def _sqlite_stock(conn: Any) -> int:
    return int(conn.execute("SELECT stock FROM box_office WHERE id = 1").fetchone()[0])


def _pg_schema(config: ServerConfig) -> Any:
    return functools.partial(
        pg_create, table=table_name("tickets", config.namespace),
        columns="id integer PRIMARY KEY, stock integer NOT NULL",
        fill="INSERT INTO {} (id, stock) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
        args=(config.stock,))


class _Postgres(UpdateForms):
    """One row; ``UPDATE ... WHERE stock > 0 RETURNING``: the row lock makes it one step."""

    updates = ("atomic", "read-write", "locked", "optimistic")

    def __init__(self, config: ServerConfig) -> None:
        from psycopg import sql

        self.initial = config.stock
        self.table = sql.Identifier(table_name("tickets", config.namespace))
        self.db = Postgres(config, _pg_schema(config))

    def _one(self, query: str, *args: Any) -> Any:
        from psycopg import sql

        with self.db.transaction() as conn:
            return conn.execute(sql.SQL(query).format(self.table), args).fetchone()

    def buy(self) -> int | None:
        row = self._one("UPDATE {} SET stock = stock - 1 WHERE id = 1 AND stock > 0 "
                        "RETURNING stock + 1")
        return None if row is None else int(row[0])

    def remaining(self) -> int:
        return int(self._one("SELECT stock FROM {} WHERE id = 1")[0])

    def reset(self) -> None:
        self._one("UPDATE {} SET stock = %s WHERE id = 1 RETURNING stock", self.initial)

    def _sell(self, read: str, isolation: str = "") -> int | None:
        from psycopg import sql

        with self.db.transaction(isolation) as conn:
            stock = int(conn.execute(sql.SQL(read).format(self.table)).fetchone()[0])
            if stock <= 0:
                return None
            self.wait()
            conn.execute(sql.SQL("UPDATE {} SET stock = %s WHERE id = 1").format(self.table),
                         (stock - 1,))
            return stock

    def buy_read_write(self) -> int | None:
        return self._sell("SELECT stock FROM {} WHERE id = 1")

    def buy_locked(self) -> int | None:
        return self._sell("SELECT stock FROM {} WHERE id = 1 FOR UPDATE")

    def buy_optimistic(self) -> int | None:
        return self.retry(f"PostgreSQL at {self.db.dsn}", lambda: self._sell(
            "SELECT stock FROM {} WHERE id = 1", PG_ISOLATION))


_BUY_LUA = """
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
if stock <= 0 then return 0 end
redis.call('SET', KEYS[1], stock - 1)
return stock
"""


class _Redis(UpdateForms):
    """A key holding the stock; a Lua script checks and decrements it in one atomic step."""

    updates = ("atomic", "read-write", "locked", "optimistic")

    def __init__(self, config: ServerConfig) -> None:
        self.initial = config.stock
        self.key = f"{config.namespace}:tickets:stock"
        self.db = Redis(config)
        self._script = self.db.call(lambda r: r.register_script(_BUY_LUA))
        self.db.call(lambda r: r.set(self.key, self.initial, nx=True))

    def buy(self) -> int | None:
        seat = int(self.db.call(lambda r: self._script(keys=[self.key], client=r)))
        return seat or None

    def remaining(self) -> int:
        return int(self.db.call(lambda r: r.get(self.key)) or 0)

    def reset(self) -> None:
        self.db.call(lambda r: r.set(self.key, self.initial))

    def _sell(self, r: Any) -> int | None:
        stock = int(r.get(self.key) or 0)
        if stock <= 0:
            return None
        self.wait()
        r.set(self.key, stock - 1)
        return stock

    def buy_read_write(self) -> int | None:
        result: int | None = self.db.call(self._sell)
        return result

    def buy_locked(self) -> int | None:
        def locked(r: Any) -> int | None:
            with self.locked_by_redis(r, f"{self.key}:lock", self.db.url):
                return self._sell(r)

        result: int | None = self.db.call(locked)
        return result

    def buy_optimistic(self) -> int | None:
        import redis

        def attempt(r: Any) -> int | None:
            with r.pipeline() as pipe:
                try:
                    pipe.watch(self.key)
                    stock = int(pipe.get(self.key) or 0)
                    if stock <= 0:
                        return None
                    pipe.multi()
                    pipe.set(self.key, stock - 1)
                    pipe.execute()
                except redis.WatchError:
                    raise Conflict from None
            return stock

        result: int | None = self.db.call(
            lambda r: self.retry(f"Redis at {self.db.url}", lambda: attempt(r)))
        return result


class _Memcached(UpdateForms):
    """The seats sold in one key, counted with ``incr``: the buyer whose number is within the
    stock gets a seat (number n sells seat stock - n + 1); the others are told sold out.

    The other updates keep the stock itself in a second key: ``read-write`` (``get``,
    then ``set``) and ``optimistic`` (``gets``, then ``cas``, tried again when it fails).
    """

    updates = ("atomic", "read-write", "optimistic")

    def __init__(self, config: ServerConfig) -> None:
        self.initial = config.stock
        self.update = config.update
        self.sold_key = f"{config.namespace}:tickets:sold"
        self.key = f"{config.namespace}:tickets:stock"
        self.db = Memcached(config)
        if self.update == "atomic":
            self.db.call(lambda m: m.add(self.sold_key, b"0"))
        else:
            self.db.call(lambda m: m.add(self.key, str(self.initial).encode()))

    def buy(self) -> int | None:
        sold = self.db.call(lambda m: m.incr(self.sold_key, 1))
        if sold is None:  # evicted or never added: add() creates it only if still absent
            self.db.call(lambda m: m.add(self.sold_key, b"0"))
            sold = self.db.call(lambda m: m.incr(self.sold_key, 1))
        if sold is None:
            raise StoreUnavailable(f"memcached at {self.db.address} lost the key "
                                   f"{self.sold_key}")
        seat = self.initial - int(sold) + 1
        return seat if seat >= 1 else None

    def _stock(self, raw: Any) -> int:
        return int(raw) if raw is not None else self.initial

    def buy_read_write(self) -> int | None:
        stock = self._stock(self.db.call(lambda m: m.get(self.key)))
        if stock <= 0:
            return None
        self.wait()
        self.db.call(lambda m: m.set(self.key, str(stock - 1).encode()))
        return stock

    def buy_optimistic(self) -> int | None:
        def attempt() -> int | None:
            raw, token = self.db.call(lambda m: m.gets(self.key))
            if raw is None:
                self.db.call(lambda m: m.add(self.key, str(self.initial).encode()))
                raise Conflict
            stock = int(raw)
            if stock <= 0:
                return None
            if not self.db.call(functools.partial(_cas, self.key, str(stock - 1).encode(),
                                                  token)):
                raise Conflict
            return stock

        return self.retry(f"memcached at {self.db.address}", attempt)

    def remaining(self) -> int:
        if self.update == "atomic":
            raw = self.db.call(lambda m: m.get(self.sold_key))
            return max(0, self.initial - (int(raw) if raw is not None else 0))
        return self._stock(self.db.call(lambda m: m.get(self.key)))

    def reset(self) -> None:
        self.db.call(lambda m: m.set(self.sold_key, b"0"))
        self.db.call(lambda m: m.set(self.key, str(self.initial).encode()))


def _cas(key: str, value: bytes, token: Any, client: Any) -> bool:
    return bool(client.cas(key, value, token))


_STORES: dict[str, Any] = {"global": _Global, "lock": _Lock, "sqlite": _Sqlite,
                           "postgres": _Postgres, "redis": _Redis, "memcached": _Memcached}


class _Side:
    def __init__(self, office: Any, stock: int) -> None:
        self.office, self.stock = office, stock

    def state(self) -> dict[str, Any]:
        remaining = self.office.remaining()
        extra = self.office.update_state() if isinstance(self.office, UpdateForms) else {}
        return {"value": remaining, "remaining": remaining, "stock": self.stock, **extra}

    def reset(self) -> None:
        self.office.reset()
        if isinstance(self.office, UpdateForms):
            self.office.reset_stats()


def serve(app: Flask, config: ServerConfig, served: Served) -> ServerSide:
    """Add ``POST /buy`` (and ``GET /stock``) over the configured store."""
    office = _STORES[config.store](config)
    sell = office.update_form(config, "buy") if isinstance(office, UpdateForms) else office.buy

    @app.post("/buy")
    def buy() -> Any:
        arrival_ns = time.monotonic_ns()
        seat = sell()
        if seat is None:
            return answer(app, arrival_ns, SOLD_OUT, error="sold out", remaining=0)
        served.add()
        return answer(app, arrival_ns, seat=seat, value=seat, remaining=seat - 1)

    @app.get("/stock")
    def stock() -> Any:
        return answer(app, time.monotonic_ns(), value=office.remaining(), stock=config.stock)

    return _Side(office, config.stock)


# --- the checker ---------------------------------------------------------------------


def check_tickets(table: HistoryTable, final: Any = None, *, per_process: bool = False) -> Verdict:
    """Check a box office's history: no double sale, no oversell, no false sold-out.

    Args:
        table: the history; ``buy`` operations are read. An ``ok`` buy's value is
            its seat; a ``fail`` with status 409 is a "sold out" answer.
        final: the final state (``final.json``: each process's ``stock`` and
            ``remaining``), or None to skip the checks that need it.
        per_process: each process sells from its own copy (``final.json`` says so
            when given).

    Returns:
        ``no`` with witnesses on any anomaly; ``unknown`` when the history cannot
        decide (no sale, most outcomes unknown, an unusable final state);
        ``yes`` otherwise.
    """
    from reports.history.checkers import guarded

    return guarded("tickets")(_check)(table, final, per_process)


def _check(table: HistoryTable, final: Any, per_process: bool) -> Verdict:
    import numpy as np

    from reports.history.checkers import Ops, plural
    from reports.history.table import FAIL, INFO, OK
    from reports.history.verdict import Verdict
    from scenarios._checking import (
        conclude,
        final_states,
        retold_duplicates,
        statuses,
        together,
    )

    buys = table.op_is("buy")
    outcome = table.outcome
    sold_out = buys & (outcome == FAIL) & (statuses(table) == SOLD_OUT)
    ok = buys & (outcome == OK) & table.value_known
    counts = {"ops": int(buys.sum()), "sales": int(ok.sum()), "sold_out": int(sold_out.sum()),
              "fail": int((buys & (outcome == FAIL)).sum()),
              "info": int((buys & (outcome == INFO)).sum())}
    if not counts["ops"]:
        return Verdict("tickets", "unknown", counts, reason="the history has no buy operations")
    state = final_states(final, per_process)
    ops = Ops.of(table, np.flatnonzero(ok))

    def tell(seat: int, ids: list[int], how: str, when: str) -> str:
        who, each, either = together(ids)
        if when == "overlapped":
            return (f"{who} bought seat {seat}: {each} saw stock {seat} before {either} wrote "
                    f"{seat - 1}; {how}")
        if when == "apart":
            return (f"{who} bought seat {seat}: each saw stock {seat}, which a sale that had "
                    f"read it earlier wrote back after the other's sale; {how}")
        return f"{who} bought seat {seat}: {how}"

    dup_counts, witnesses = retold_duplicates(ops, state.per_process, tell)
    counts.update(dup_counts)
    counts["seats_sold_twice"] = dup_counts["duplicate_values"]
    counts.update(oversold=0, unrecorded_sales=0, false_sold_out=0)
    oversell = _oversold(ops, state, counts)
    witnesses += oversell
    witnesses += _false_sold_out(table, ops, np.flatnonzero(sold_out), state, counts)

    counts["anomalies"] = max(counts["duplicate_extra_returns"], counts["oversold"],
                              counts["unrecorded_sales"]) + counts["false_sold_out"]
    findings = []
    if counts["seats_sold_twice"]:
        findings.append(f"{plural(counts['seats_sold_twice'], 'seat')} sold more than once "
                        f"({plural(counts['duplicate_extra_returns'], 'extra sale')})")
    if counts["oversold"]:
        findings.append(f"{plural(counts['oversold'], 'seat')} sold beyond the stock")
    if counts["unrecorded_sales"]:
        findings.append(f"{plural(counts['unrecorded_sales'], 'sale')} the stock never counted")
    if counts["false_sold_out"]:
        findings.append(f"{plural(counts['false_sold_out'], 'buyer')} told 'sold out' while "
                        "seats remained")
    undecided = [state.problem] if state.problem else []
    if counts["info"] * 2 > counts["ops"]:
        undecided.append(f"{counts['info']:,} of {counts['ops']:,} buys have an unknown outcome")
    if not counts["sales"] and not counts["sold_out"]:
        undecided.append("no buy succeeded or was told sold out")
    return conclude("tickets", counts, witnesses, findings, undecided, (
        f"{plural(counts['sales'], 'seat')} sold, none twice"
        + (", none beyond the stock" if state.states else "")
        + f"; {plural(counts['sold_out'], 'sold-out answer')}, none while seats remained"))


def _copies(ops: Any, state: Any) -> list[tuple[str, int, int, int]]:
    """(name, sales answered as ok, stock, remaining) for each copy of the stock."""
    stocks, remaining = state.ints("stock"), state.ints("remaining")
    if stocks is None or remaining is None:
        return []
    if state.per_process:
        pids = [s.get("pid") for s in state.states]
        return [(f"process {pid}", int((ops.pid == pid).sum()), stock, left)
                for pid, stock, left in zip(pids, stocks, remaining, strict=True)]
    return [("the box office", len(ops), stocks[0], min(remaining))]


def _oversold(ops: Any, state: Any, counts: dict[str, int]) -> list[Witness]:
    from reports.history.checkers import plural
    from reports.history.verdict import Witness

    witnesses = []
    for name, sales, stock, left in _copies(ops, state):
        over, unrecorded = max(0, sales - stock), max(0, sales - (stock - left))
        counts["oversold"] += over
        counts["unrecorded_sales"] += unrecorded
        details = {"copy": name, "sales": sales, "stock": stock, "remaining": left}
        if over:
            witnesses.append(Witness("oversold", (
                f"{name} sold {plural(sales, 'seat')} but had {stock:,}: "
                f"{plural(over, 'seat')} oversold"), (), details))
        if unrecorded:
            witnesses.append(Witness("unrecorded-sale", (
                f"{name} sold {plural(sales, 'seat')}, yet its stock went down by only "
                f"{stock - left:,} (from {stock:,} to {left:,}): {plural(unrecorded, 'sale')} "
                "wrote over another's"), (), details))
    return witnesses[:6]


def _false_sold_out(table: HistoryTable, ops: Any, rows: Any, state: Any,
                    counts: dict[str, int]) -> list[Witness]:
    """Sold-out answers followed by a sale (real time), or with seats left at the end."""
    import numpy as np

    from reports.history.checkers import WITNESSES_PER_KIND, duration_text
    from reports.history.verdict import Witness

    if not rows.size:
        return []
    done = np.where(table.complete_known[rows], table.complete_ns[rows], np.iinfo(np.int64).max)
    by_invoke = np.argsort(ops.invoke, kind="stable")
    invokes = ops.invoke[by_invoke]
    later = np.searchsorted(invokes, done, side="right")  # first sale sent after the answer
    followed = later < invokes.shape[0]
    left_at_end = np.zeros(rows.shape[0], dtype=bool)
    remaining = state.ints("remaining")
    if remaining is not None:
        if state.per_process:
            left = {s.get("pid"): r for s, r in zip(state.states, remaining, strict=True)}
            pids = np.where(table.server_pid_known[rows], table.server_pid[rows], -1).tolist()
            left_at_end = np.array([left.get(p, 0) > 0 for p in pids], dtype=bool)
        else:
            left_at_end[:] = min(remaining) > 0
    false = followed | left_at_end
    counts["false_sold_out"] = int(false.sum())
    witnesses = []
    for k in np.flatnonzero(false)[:WITNESSES_PER_KIND].tolist():
        s = int(table.op_id[rows[k]])
        if followed[k]:
            b = int(by_invoke[later[k]])
            gap = int(ops.invoke[b]) - int(done[k])
            sentence = (f"request {s} was told 'sold out' {duration_text(gap)} before request "
                        f"{int(ops.op_id[b])} was sent, yet request {int(ops.op_id[b])} "
                        f"bought seat {int(ops.value[b])}")
            ids: tuple[int, ...] = (s, int(ops.op_id[b]))
        else:
            sentence = f"request {s} was told 'sold out', yet seats remained at the end"
            ids = (s,)
        witnesses.append(Witness("false-sold-out", sentence, ids, {"sold_out": s}))
    return witnesses


_UPDATE_SENTENCES = {
    "sqlite:read-write": "The sqlite store reads the stock with SELECT and writes it back one "
                         "lower with UPDATE, as Python's sqlite3 runs them by default: two "
                         "buyers can read the same stock, and both get that seat.",
    "sqlite:locked": "The sqlite store checks and sells inside BEGIN IMMEDIATE: the write lock "
                     "is taken before the stock is read.",
    "sqlite:optimistic": "The sqlite store writes the lower stock only WHERE the stock is still "
                         "what it read, and reads again when no row matched.",
    "postgres:read-write": "The postgres store SELECTs the stock, then UPDATEs it to the stock "
                           "read minus one, in one transaction at READ COMMITTED (PostgreSQL's "
                           "default): the transaction does not stop two buyers from reading "
                           "the same stock, and both get that seat.",
    "postgres:locked": "The postgres store reads the stock with SELECT ... FOR UPDATE: the next "
                       "buyer waits for the row until the sale commits.",
    "postgres:optimistic": "The postgres store checks and sells at REPEATABLE READ: a sale whose "
                           "row another one changed fails with a serialization error and is "
                           "tried again.",
    "redis:read-write": "The redis store reads the stock with GET and writes it back one lower "
                        "with SET: two buyers can read the same stock, and both get that seat.",
    "redis:locked": "The redis store takes redis-py's lock around its GET and SET: one sale at "
                    "a time.",
    "redis:optimistic": "The redis store WATCHes the stock and sells in MULTI/EXEC: if another "
                        "buyer wrote it in between, EXEC does nothing and the sale is tried "
                        "again.",
    "memcached:read-write": "The memcached store reads the stock with get and writes it back one "
                            "lower with set: two buyers can read the same stock.",
    "memcached:optimistic": "The memcached store reads the stock with gets and writes it with "
                            "cas, which stores only if nobody wrote since; else the sale starts "
                            "again.",
}

SCENARIO = Scenario(
    name="tickets",
    title="sell seats from a fixed stock: check, then act",
    operations=OPERATIONS,
    stores=("global", "lock", "sqlite", "postgres", "redis", "memcached"),
    windowed_stores=frozenset({"global", "lock"}),
    updates={store: cls.updates for store, cls in _STORES.items()
             if issubclass(cls, UpdateForms)},
    checkers=("tickets",),
    serve=serve,
    prepare=functools.partial(prepare_store, sqlite=lambda c: _sqlite_schema(c.stock),
                              postgres=_pg_schema),
    cleanup=functools.partial(cleanup_store, kind="tickets", memcached=lambda c: Memcached(
        c).call(lambda m: m.delete_many([f"{c.namespace}:tickets:stock",
                                         f"{c.namespace}:tickets:sold"]))),
    store_sentences={
        "global": "The global store checks the stock, then writes it back one lower, with "
                  "nothing keeping two buyers apart: both can see the same seat free.",
        "lock": "The lock store checks and sells under one threading.Lock: safe between the "
                "threads of one process; every process still sells its own copy of the seats.",
        "sqlite": "The sqlite store sells with one UPDATE ... SET stock = stock - 1 WHERE "
                  "stock > 0 RETURNING: the check is part of the write.",
        "postgres": "The postgres store sells with one UPDATE ... WHERE stock > 0 RETURNING: "
                    "the row lock makes check and sale one step for every process.",
        "redis": "The redis store sells in a Lua script, which Redis runs without "
                 "interruption: check and sale are one step for every process.",
        "memcached": "The memcached store counts the seats sold with incr, one atomic step: "
                     "the buyer whose number is within the stock gets a seat.",
        **_UPDATE_SENTENCES,
    },
    register=registrar("tickets", check_tickets),
)

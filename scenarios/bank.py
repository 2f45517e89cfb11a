"""The bank scenario: transfers between accounts, a multi-key update.

Ten accounts start with 100 each. ``POST /transfer`` picks two accounts and an
amount (1 to 50) at random and moves it if the source can pay (else ``409
insufficient funds``, a ``fail``: no effect); ``GET /total`` reads the sum of
all balances while the transfers run. The naive code (``global``) reads both
balances, checks, then writes both:

    src_balance, dst_balance = balances[src], balances[dst]   # read
    if src_balance < amount: refuse
    <window>                                                  # between read and write
    balances[src] = src_balance - amount                      # write
    balances[dst] = dst_balance + amount

Two transfers that touch one account and overlap both write what they read
before the other wrote: money appears or vanishes. No single atomic increment
fixes it (two keys change together). Each shared store changes both balances in
one of these ways (its ``update``):

- ``atomic`` (the default): the debit and the credit as relative updates, the
  debit only ``WHERE balance >= amount``, in one transaction (PostgreSQL, in id
  order so that two transfers cannot deadlock; SQLite, under ``BEGIN
  IMMEDIATE``), or one Lua script (Redis): the app reads no balance at all;
- ``read-write``: the naive code above with the balances in the store (two
  ``GET``s and two ``SET``s; ``SELECT`` then ``UPDATE ... SET balance = :read -
  amount`` in one transaction at PostgreSQL's default isolation; SQLite as
  Python's sqlite3 runs it, the reads outside the transaction);
- ``locked``: the same reads and writes, the rows locked first (``SELECT ... FOR
  UPDATE`` in id order, ``BEGIN IMMEDIATE``, redis-py's lock on both accounts in
  id order);
- ``optimistic``: the same reads and writes, dropped and tried again when
  another transfer wrote a balance in between (``WATCH``/``MULTI``/``EXEC``;
  REPEATABLE READ, retried on a serialization failure).

A ``threading.Lock`` (``lock``) is safe in one process only. Neither
``memcached`` (no update of two keys at once) nor ``manager`` (the supervisor's
manager serves the counter only) is offered.

Invariants (``check_bank``): every total read during the load equals the
starting total; the final total too; no final balance below zero.
"""

from __future__ import annotations

import functools
import random
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
__all__ = ["ACCOUNTS", "OPERATIONS", "SCENARIO", "START", "TOTAL", "check_bank"]

ACCOUNTS = 10
START = 100
TOTAL = ACCOUNTS * START
MAX_AMOUNT = 50
REFUSED = 409
OPERATIONS = (
    Operation(name="transfer", method="POST", path="/transfer", weight=9,
              value=ValueSpec("json", "amount"), statuses=((REFUSED, "fail"),)),
    Operation(name="total", method="GET", path="/total", weight=1,
              value=ValueSpec("json", "total")),
)


# --- the server side, one class per store ----------------------------------------------


class _Global:
    """The naive bank: a list of balances in a module-level object, one copy per process."""

    def __init__(self, config: ServerConfig) -> None:
        self.balances = [START] * ACCOUNTS
        self.window = window_of(config)

    def transfer(self, src: int, dst: int, amount: int) -> bool:
        balances = self.balances
        src_balance, dst_balance = balances[src], balances[dst]
        if src_balance < amount:
            return False
        if self.window is not None:
            self.window()
        balances[src] = src_balance - amount
        balances[dst] = dst_balance + amount
        return True

    def read(self) -> list[int]:
        return list(self.balances)

    def reset(self) -> None:
        self.balances[:] = [START] * ACCOUNTS


class _Lock(_Global):
    """The same bank; transfers and reads under one threading.Lock."""

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.lock = threading.Lock()

    def transfer(self, src: int, dst: int, amount: int) -> bool:
        with self.lock:
            return super().transfer(src, dst, amount)

    def read(self) -> list[int]:
        with self.lock:
            return super().read()

    def reset(self) -> None:
        with self.lock:
            super().reset()


_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);"
    + "".join(f"INSERT OR IGNORE INTO accounts VALUES ({i}, {START});" for i in range(ACCOUNTS)))


class _Sqlite(UpdateForms):
    """Balances in rows; a transfer is one ``BEGIN IMMEDIATE`` transaction of relative updates."""

    updates = ("atomic", "read-write", "locked")

    def __init__(self, config: ServerConfig) -> None:
        self.db = Sqlite(config, _SQLITE_SCHEMA)

    def transfer(self, src: int, dst: int, amount: int) -> bool:
        with self.db.immediate() as conn:
            if not conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ? AND "
                                "balance >= ?", (amount, src, amount)).rowcount:
                return False
            conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, dst))
            return True

    def _move(self, conn: Any, src: int, dst: int, amount: int, begin: str) -> bool:
        # The reads run wherever ``begin`` leaves them: before the transaction (read-write,
        # as Python's sqlite3 runs a SELECT) or inside BEGIN IMMEDIATE (locked).
        if begin == "BEGIN IMMEDIATE":
            conn.execute(begin)
        read = dict(conn.execute("SELECT id, balance FROM accounts WHERE id IN (?, ?)",
                                 (src, dst)).fetchall())
        if read[src] < amount:
            if begin == "BEGIN IMMEDIATE":
                conn.execute("COMMIT")
            return False
        self.wait()
        if begin != "BEGIN IMMEDIATE":
            conn.execute(begin)
        try:
            conn.execute("UPDATE accounts SET balance = ? WHERE id = ?", (read[src] - amount, src))
            conn.execute("UPDATE accounts SET balance = ? WHERE id = ?", (read[dst] + amount, dst))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return True

    def transfer_read_write(self, src: int, dst: int, amount: int) -> bool:
        with self.db.errors():
            return self._move(self.db.conn(), src, dst, amount, "BEGIN")

    def transfer_locked(self, src: int, dst: int, amount: int) -> bool:
        with self.db.errors():
            return self._move(self.db.conn(), src, dst, amount, "BEGIN IMMEDIATE")

    def read(self) -> list[int]:
        with self.db.errors():
            rows = self.db.conn().execute("SELECT balance FROM accounts ORDER BY id").fetchall()
        return [int(r[0]) for r in rows]

    def reset(self) -> None:
        with self.db.errors():
            self.db.conn().execute("UPDATE accounts SET balance = ?", (START,))


def _pg_schema(config: ServerConfig) -> Any:
    return functools.partial(
        pg_create, table=table_name("bank", config.namespace),
        columns="id integer PRIMARY KEY, balance bigint NOT NULL",
        fill="INSERT INTO {} SELECT i, %s FROM generate_series(0, %s) i ON CONFLICT (id) "
             "DO NOTHING", args=(START, ACCOUNTS - 1))


class _Postgres(UpdateForms):
    """Balances in rows; a transfer is one transaction over both rows, in id order."""

    updates = ("atomic", "read-write", "locked", "optimistic")

    def __init__(self, config: ServerConfig) -> None:
        from psycopg import sql

        name = table_name("bank", config.namespace)
        self.db = Postgres(config, _pg_schema(config))
        ident = sql.Identifier(name)
        self._debit = sql.SQL("UPDATE {} SET balance = balance - %s WHERE id = %s AND "
                              "balance >= %s").format(ident)
        self._credit = sql.SQL("UPDATE {} SET balance = balance + %s WHERE id = %s").format(ident)
        self._select = sql.SQL("SELECT id, balance FROM {} WHERE id = ANY(%s) ORDER BY id"
                               ).format(ident)
        self._lock = sql.SQL("SELECT id, balance FROM {} WHERE id = ANY(%s) ORDER BY id "
                             "FOR UPDATE").format(ident)
        self._write = sql.SQL("UPDATE {} SET balance = %s WHERE id = %s").format(ident)
        self._read = sql.SQL("SELECT balance FROM {} ORDER BY id").format(ident)
        self._reset = sql.SQL("UPDATE {} SET balance = %s").format(ident)

    def transfer(self, src: int, dst: int, amount: int) -> bool:
        import psycopg

        moved = False
        with self.db.transaction() as conn:
            # Rows in id order: two transfers between the same accounts lock them in the
            # same order and cannot deadlock.
            for account in sorted((src, dst)):
                if account == dst:
                    conn.execute(self._credit, (amount, dst))
                elif not conn.execute(self._debit, (amount, src, amount)).rowcount:
                    raise psycopg.Rollback  # not enough money: the credit is undone
            moved = True
        return moved

    def _move(self, src: int, dst: int, amount: int, read: Any, isolation: str = "") -> bool:
        with self.db.transaction(isolation) as conn:
            balances = dict(conn.execute(read, ([src, dst],)).fetchall())
            if balances[src] < amount:
                return False
            self.wait()
            new = {src: balances[src] - amount, dst: balances[dst] + amount}
            for account in sorted(new):  # in id order, as above
                conn.execute(self._write, (new[account], account))
            return True

    def transfer_read_write(self, src: int, dst: int, amount: int) -> bool:
        return self._move(src, dst, amount, self._select)

    def transfer_locked(self, src: int, dst: int, amount: int) -> bool:
        return self._move(src, dst, amount, self._lock)

    def transfer_optimistic(self, src: int, dst: int, amount: int) -> bool:
        return self.retry(f"PostgreSQL at {self.db.dsn}", lambda: self._move(
            src, dst, amount, self._select, PG_ISOLATION))

    def read(self) -> list[int]:
        with self.db.transaction() as conn:
            return [int(r[0]) for r in conn.execute(self._read).fetchall()]

    def reset(self) -> None:
        with self.db.transaction() as conn:
            conn.execute(self._reset, (START,))


_TRANSFER_LUA = """
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if balance < amount then return 0 end
redis.call('DECRBY', KEYS[1], amount)
redis.call('INCRBY', KEYS[2], amount)
return 1
"""


class _Redis(UpdateForms):
    """A key per account; a transfer is a Lua script, which Redis runs without interruption."""

    updates = ("atomic", "read-write", "locked", "optimistic")

    def __init__(self, config: ServerConfig) -> None:
        self.db = Redis(config)
        self.keys = [f"{config.namespace}:bank:{i}" for i in range(ACCOUNTS)]
        self.db.call(lambda r: r.msetnx(dict.fromkeys(self.keys, START)))
        self._script = self.db.call(lambda r: r.register_script(_TRANSFER_LUA))

    def transfer(self, src: int, dst: int, amount: int) -> bool:
        keys = [self.keys[src], self.keys[dst]]
        return bool(self.db.call(lambda r: self._script(keys=keys, args=[amount], client=r)))

    def _move(self, r: Any, src: int, dst: int, amount: int,
              before_write: Any = None, writer: Any = None) -> bool:
        """Read both balances, check, write both (after ``before_write``: MULTI) through
        ``writer`` (a transaction's pipeline), or ``r``."""
        ks, kd = self.keys[src], self.keys[dst]
        src_balance, dst_balance = int(r.get(ks) or 0), int(r.get(kd) or 0)
        if src_balance < amount:
            return False
        self.wait()
        if before_write is not None:
            before_write()
        writer = r if writer is None else writer
        writer.set(ks, src_balance - amount)
        writer.set(kd, dst_balance + amount)
        return True

    def transfer_read_write(self, src: int, dst: int, amount: int) -> bool:
        return bool(self.db.call(lambda r: self._move(r, src, dst, amount)))

    def transfer_locked(self, src: int, dst: int, amount: int) -> bool:
        first, second = sorted((src, dst))  # both accounts' locks, in id order

        def locked(r: Any) -> bool:
            with self.locked_by_redis(r, f"{self.keys[first]}:lock", self.db.url), \
                    self.locked_by_redis(r, f"{self.keys[second]}:lock", self.db.url), \
                    r.pipeline(transaction=True) as both:
                # The locks keep other transfers out; MULTI/EXEC keeps a reader (MGET,
                # which takes no lock) from seeing one balance written and not the other.
                moved = self._move(r, src, dst, amount, writer=both)
                if moved:
                    both.execute()
                return moved

        return bool(self.db.call(locked))

    def transfer_optimistic(self, src: int, dst: int, amount: int) -> bool:
        import redis

        ks, kd = self.keys[src], self.keys[dst]

        def attempt(r: Any) -> bool:
            with r.pipeline() as pipe:
                try:
                    pipe.watch(ks, kd)  # the reads run at once; the writes wait for EXEC
                    if not self._move(pipe, src, dst, amount, before_write=pipe.multi):
                        return False
                    pipe.execute()
                except redis.WatchError:
                    raise Conflict from None
            return True

        return bool(self.db.call(
            lambda r: self.retry(f"Redis at {self.db.url}", lambda: attempt(r))))

    def read(self) -> list[int]:
        return [int(v or 0) for v in self.db.call(lambda r: r.mget(self.keys))]

    def reset(self) -> None:
        self.db.call(lambda r: r.mset(dict.fromkeys(self.keys, START)))


_STORES: dict[str, Any] = {"global": _Global, "lock": _Lock, "sqlite": _Sqlite,
                           "postgres": _Postgres, "redis": _Redis}


class _Side:
    def __init__(self, bank: Any) -> None:
        self.bank = bank

    def state(self) -> dict[str, Any]:
        balances = self.bank.read()
        extra = self.bank.update_state() if isinstance(self.bank, UpdateForms) else {}
        return {"value": sum(balances), "total": sum(balances), "balances": balances,
                "initial_total": TOTAL, **extra}

    def reset(self) -> None:
        self.bank.reset()
        if isinstance(self.bank, UpdateForms):
            self.bank.reset_stats()


def serve(app: Flask, config: ServerConfig, served: Served) -> ServerSide:
    """Add ``POST /transfer`` and ``GET /total`` over the configured store."""
    bank = _STORES[config.store](config)
    move = bank.update_form(config, "transfer") if isinstance(bank, UpdateForms) else bank.transfer
    rng = random.Random()

    @app.post("/transfer")
    def transfer() -> Any:
        arrival_ns = time.monotonic_ns()
        src, dst = rng.sample(range(ACCOUNTS), 2)
        amount = rng.randint(1, MAX_AMOUNT)
        if not move(src, dst, amount):
            return answer(app, arrival_ns, REFUSED, error="insufficient funds",
                          source=src, target=dst, amount_asked=amount)
        served.add()
        return answer(app, arrival_ns, value=amount, amount=amount, source=src, target=dst)

    @app.get("/total")
    def total() -> Any:
        arrival_ns = time.monotonic_ns()
        balances = bank.read()
        return answer(app, arrival_ns, value=sum(balances), total=sum(balances),
                      balances=balances)

    return _Side(bank)


# --- the checker ---------------------------------------------------------------------


def check_bank(table: HistoryTable, final: Any = None, *, per_process: bool = False) -> Verdict:
    """Check a bank's history: money is conserved, no balance ends below zero.

    Args:
        table: the history; ``total`` reads are compared with the starting total,
            ``transfer`` operations are counted.
        final: the final state (``final.json``: each copy's ``balances``, ``total``
            and ``initial_total``), or None to judge the reads alone.
        per_process: each process keeps its own copy of the accounts.

    Returns:
        ``no`` with witnesses when a total read or the final state is off, or a
        balance is negative; ``unknown`` when nothing can be compared; ``yes``
        otherwise.
    """
    from reports.history.checkers import guarded

    return guarded("bank")(_check)(table, final, per_process)


def _check(table: HistoryTable, final: Any, per_process: bool) -> Verdict:
    import numpy as np

    from reports.history.checkers import WITNESSES_PER_KIND, plural
    from reports.history.table import FAIL, INFO, OK
    from reports.history.verdict import Witness
    from scenarios._checking import conclude, final_states

    state = final_states(final, per_process)
    transfers, totals = table.op_is("transfer"), table.op_is("total")
    outcome = table.outcome
    counts = {"transfers": int(transfers.sum()),
              "transfers_ok": int((transfers & (outcome == OK)).sum()),
              "transfers_refused": int((transfers & (outcome == FAIL)).sum()),
              "transfers_info": int((transfers & (outcome == INFO)).sum()),
              "total_reads": 0, "wrong_total_reads": 0, "money_created": 0, "money_lost": 0,
              "negative_balances": 0}
    initial = state.ints("initial_total")
    expected = initial[0] if initial else TOTAL
    reads = np.flatnonzero(totals & (outcome == OK) & table.value_known)
    counts["total_reads"] = int(reads.size)
    wrong = reads[table.value[reads] != expected]
    counts["wrong_total_reads"] = int(wrong.size)
    witnesses: list[Witness] = []
    for i in wrong[:WITNESSES_PER_KIND].tolist():
        got = int(table.value[i])
        off = (f"{got - expected:,} created" if got > expected else f"{expected - got:,} missing")
        pid = f" from process {int(table.server_pid[i])}" if table.server_pid_known[i] else ""
        witnesses.append(Witness("wrong-total", (
            f"request {int(table.op_id[i])} read a total of {got:,}{pid} while transfers ran; "
            f"the accounts started with {expected:,}: {off}"), (int(table.op_id[i]),),
            {"total": got, "expected": expected}))
    for s in state.states or ():
        balances = s.get("balances")
        if not isinstance(balances, list) or not all(isinstance(b, int) for b in balances):
            continue
        where = f"process {s['pid']}" if state.per_process and "pid" in s else "the bank"
        total = sum(balances)
        start = int(s.get("initial_total", expected))
        if total != start:
            counts["money_created" if total > start else "money_lost"] += abs(total - start)
            witnesses.append(Witness("total-drift", (
                f"{where} ends with {total:,} in its accounts, but they started with {start:,}: "
                f"{abs(total - start):,} {'created' if total > start else 'lost'} by transfers "
                "that overwrote each other"), (), {"balances": balances, "total": total,
                                                   "initial_total": start}))
        negative = [(k, b) for k, b in enumerate(balances) if b < 0]
        counts["negative_balances"] += len(negative)
        if negative:
            witnesses.append(Witness("negative-balance", (
                f"{where} ends with {plural(len(negative), 'account')} below zero (account "
                f"{negative[0][0]}: {negative[0][1]:,})"), (), {"balances": balances}))

    counts["anomalies"] = (counts["wrong_total_reads"] + counts["negative_balances"]
                           + bool(counts["money_created"] or counts["money_lost"]))
    findings = []
    if counts["wrong_total_reads"]:
        findings.append(f"{plural(counts['wrong_total_reads'], 'total read')} off the starting "
                        f"total of {expected:,}")
    if counts["money_created"]:
        findings.append(f"{counts['money_created']:,} created")
    if counts["money_lost"]:
        findings.append(f"{counts['money_lost']:,} lost")
    if counts["negative_balances"]:
        findings.append(f"{plural(counts['negative_balances'], 'balance')} below zero")
    undecided = [state.problem] if state.problem else []
    if not counts["transfers_ok"]:
        undecided.append("no transfer succeeded")
    if not reads.size and not state.states:
        undecided.append("no total was read and no final state is known")
    return conclude("bank", counts, witnesses, findings, undecided, (
        f"{plural(counts['transfers_ok'], 'transfer')}; every one of "
        f"{plural(counts['total_reads'], 'total read')} saw {expected:,}"
        + (", and so did the final state, with no balance below zero" if state.states else "")))


_UPDATE_SENTENCES = {
    "sqlite:read-write": "The sqlite store reads both balances with SELECT (outside any "
                         "transaction, as Python's sqlite3 runs it), then writes both back in "
                         "one: a transfer that overlaps another overwrites its balance.",
    "sqlite:locked": "The sqlite store reads and writes both balances inside BEGIN IMMEDIATE: "
                     "the write lock is held from the reads to the commit.",
    "postgres:read-write": "The postgres store SELECTs both balances, then UPDATEs them to the "
                           "values read minus and plus the amount, in one transaction at READ "
                           "COMMITTED (PostgreSQL's default): the transaction does not stop an "
                           "overlapping transfer from overwriting a balance.",
    "postgres:locked": "The postgres store locks both rows with SELECT ... FOR UPDATE (in id "
                       "order, so two transfers cannot deadlock) before it reads and writes "
                       "them.",
    "postgres:optimistic": "The postgres store reads and writes both balances at REPEATABLE "
                           "READ: a transfer whose rows another one changed fails with a "
                           "serialization error and is tried again.",
    "redis:read-write": "The redis store GETs both balances and SETs both back: a transfer "
                        "that overlaps another overwrites its balance.",
    "redis:locked": "The redis store takes redis-py's lock on both accounts (in id order) "
                    "around its GETs and SETs, the two SETs in one MULTI/EXEC so that a "
                    "reader, who takes no lock, never sees half a transfer.",
    "redis:optimistic": "The redis store WATCHes both balances and writes them in MULTI/EXEC: "
                        "if another client wrote one in between, the transfer is dropped and "
                        "tried again.",
}

SCENARIO = Scenario(
    name="bank",
    title="move money between two accounts: a multi-key update",
    operations=OPERATIONS,
    stores=("global", "lock", "sqlite", "postgres", "redis"),
    windowed_stores=frozenset({"global", "lock"}),
    updates={store: cls.updates for store, cls in _STORES.items()
             if issubclass(cls, UpdateForms)},
    checkers=("bank",),
    serve=serve,
    prepare=functools.partial(prepare_store, sqlite=lambda c: _SQLITE_SCHEMA,
                              postgres=_pg_schema),
    cleanup=functools.partial(cleanup_store, kind="bank"),
    store_sentences={
        "global": "The global store reads both balances, checks, then writes both back, with "
                  "nothing keeping two transfers apart: one overwrites the other's balance.",
        "lock": "The lock store runs each transfer under one threading.Lock: safe between the "
                "threads of one process; every process keeps its own accounts.",
        "sqlite": "The sqlite store moves the money with two relative UPDATEs in one BEGIN "
                  "IMMEDIATE transaction, the debit only WHERE balance >= amount: the app "
                  "reads no balance.",
        "postgres": "The postgres store moves the money with two relative UPDATEs in one "
                    "transaction (in id order, so two transfers cannot deadlock), the debit "
                    "only WHERE balance >= amount: the app reads no balance.",
        "redis": "The redis store moves the money in a Lua script, which Redis runs without "
                 "interruption.",
        **_UPDATE_SENTENCES,
    },
    register=registrar("bank", check_bank),
)

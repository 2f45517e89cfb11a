"""The order book fixed: SQLite hands out the ids, shared by every process."""

import os
import sqlite3

from flask import Flask, jsonify

app = Flask(__name__)
DB = os.environ.get("ORDER_BOOK_DB", "orders.sqlite3")


def _connect() -> sqlite3.Connection:
    conn = sqlite3.connect(DB, timeout=30, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT)")
    return conn


@app.post("/order")
def order():
    conn = _connect()
    try:
        order_id = conn.execute("INSERT INTO orders (item) VALUES ('book')").lastrowid
    finally:
        conn.close()
    return jsonify(id=order_id)

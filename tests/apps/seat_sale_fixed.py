"""The box office fixed: one UPDATE ... RETURNING in SQLite, shared by every process."""

import os
import sqlite3

from flask import Flask, jsonify

app = Flask(__name__)
DB = os.environ.get("SEAT_SALE_DB", "seats.sqlite3")


def _connect() -> sqlite3.Connection:
    conn = sqlite3.connect(DB, timeout=30, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS box (id INTEGER PRIMARY KEY, stock INTEGER)")
    conn.execute("INSERT OR IGNORE INTO box (id, stock) VALUES (1, 1000)")
    return conn


@app.post("/buy")
def buy():
    conn = _connect()
    try:
        row = conn.execute("UPDATE box SET stock = stock - 1 WHERE id = 1 AND stock > 0 "
                           "RETURNING stock + 1").fetchone()
    finally:
        conn.close()
    if row is None:
        return jsonify(error="sold out"), 409
    return jsonify(seat=row[0])

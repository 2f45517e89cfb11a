"""The tutorial counter fixed: SQLite increments it, shared by every process."""

import os
import sqlite3

from flask import Flask

app = Flask(__name__)
DB = os.environ.get("COUNTER_DB", "counter.sqlite3")


@app.get("/")
def index() -> str:
    conn = sqlite3.connect(DB, timeout=30, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS c (id INTEGER PRIMARY KEY, n INTEGER)")
        conn.execute("INSERT OR IGNORE INTO c (id, n) VALUES (1, 0)")
        (value,) = conn.execute("UPDATE c SET n = n + 1 WHERE id = 1 RETURNING n").fetchone()
    finally:
        conn.close()
    return str(value)

"""The streamed counter fixed: SQLite increments it; the body is still chunked."""

import os
import sqlite3

DB = os.environ.get("STREAM_DB", "stream.sqlite3")


def app(environ, start_response):
    conn = sqlite3.connect(DB, timeout=30, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS c (id INTEGER PRIMARY KEY, n INTEGER)")
        conn.execute("INSERT OR IGNORE INTO c (id, n) VALUES (1, 0)")
        (value,) = conn.execute("UPDATE c SET n = n + 1 WHERE id = 1 RETURNING n").fetchone()
    finally:
        conn.close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    text = str(value).encode()
    return iter([text[:1], text[1:]])

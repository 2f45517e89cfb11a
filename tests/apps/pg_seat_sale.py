"""A box office moved to PostgreSQL the way people first write it (racy).

SELECT the stock, then UPDATE it to the value read minus one, in one transaction
at PostgreSQL's default isolation (READ COMMITTED): the stock is one row every
process shares, yet two buyers can read the same stock and both get that seat.
The table (``SEAT_SALE_TABLE``, one row ``id = 1``) is created before the app starts.
"""

import os

import psycopg
from flask import Flask, jsonify

app = Flask(__name__)
DSN = os.environ.get("SEAT_SALE_DSN", "postgresql://127.0.0.1:5432/test")
TABLE = os.environ.get("SEAT_SALE_TABLE", "box_office")


@app.post("/buy")
def buy():
    with psycopg.connect(DSN) as conn:  # one transaction, committed when the block ends
        (stock,) = conn.execute(f"SELECT stock FROM {TABLE} WHERE id = 1").fetchone()
        if stock <= 0:
            return jsonify(error="sold out"), 409
        conn.execute(f"UPDATE {TABLE} SET stock = %s WHERE id = 1", (stock - 1,))
    return jsonify(seat=stock)


@app.get("/stock")
def stock():
    with psycopg.connect(DSN) as conn:
        (left,) = conn.execute(f"SELECT stock FROM {TABLE} WHERE id = 1").fetchone()
    return jsonify(stock=left)

"""A tutorial-style order book: the next id is read, then the order stored (racy)."""

import time

from flask import Flask, jsonify

app = Flask(__name__)
orders: dict[int, str] = {}


@app.post("/order")
def order():
    order_id = len(orders) + 1  # read
    time.sleep(0)  # where a real app would talk to a database
    orders[order_id] = "book"  # write
    return jsonify(id=order_id)

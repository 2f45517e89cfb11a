"""Check-then-act: a box office that checks the stock, then sells a seat (racy)."""

import time

from flask import Flask, jsonify

app = Flask(__name__)
stock = 1000


@app.post("/buy")
def buy():
    global stock
    left = stock  # check
    if left <= 0:
        return jsonify(error="sold out"), 409
    time.sleep(0)  # the payment call
    stock = left - 1  # act
    return jsonify(seat=left)

"""A counter moved to Redis the way people first write it: GET, add one, SET (racy).

Every worker process talks to the same Redis key, so the state is shared; the
read and the write are two commands, so two requests can read the same value.
"""

import os

import redis
from flask import Flask

app = Flask(__name__)
r = redis.Redis.from_url(os.environ.get("COUNTER_REDIS_URL", "redis://127.0.0.1:6379/0"))
KEY = os.environ.get("COUNTER_KEY", "visits")


@app.get("/")
def index() -> str:
    n = int(r.get(KEY) or 0) + 1
    r.set(KEY, n)
    return str(n)


@app.get("/count")
def count() -> str:
    return str(int(r.get(KEY) or 0))

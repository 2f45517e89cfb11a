"""A tutorial-style Flask counter on a module global: racy across processes."""

from flask import Flask

app = Flask(__name__)
counter = 0


@app.get("/")
def index() -> str:
    global counter
    counter += 1
    return str(counter)

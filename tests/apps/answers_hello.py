"""An app whose answer is a greeting, not the integer the counter checker reads."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "hello"

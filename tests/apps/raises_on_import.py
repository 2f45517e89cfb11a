"""An app whose module raises while it is imported."""

from flask import Flask

app = Flask(__name__)
raise RuntimeError("the database URL is not configured")

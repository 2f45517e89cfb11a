"""Locust swarms against a running server, and the history they record."""

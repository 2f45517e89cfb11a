"""Fixtures shared by racelab's tests: app clients, a CLI runner, live servers, a browser."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from demo_server import ServerConfig, create_app
from demo_server.control.modes import LaunchSpec
from demo_server.control.supervisor import Supervisor

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "stress" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="stress test: run with -m stress")
    for item in items:
        if "stress" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def app_client():
    """A Flask test client of the global store (no server process)."""
    return create_app(ServerConfig(store="global")).test_client()


@pytest.fixture
def cli_runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def live_server(tmp_path: Path):
    """Factory: start a real server with the supervisor; every one started is stopped."""
    started: list[Supervisor] = []

    def start(store: str = "global", mode: str = "threaded", window: str = "none",
              **spec: object) -> Supervisor:
        run_dir = tmp_path / f"server-{len(started)}"
        sup = Supervisor(ServerConfig(store=store, window=window), LaunchSpec(mode=mode, **spec),
                         run_dir)  # type: ignore[arg-type]
        started.append(sup)
        return sup.start()

    yield start
    for sup in started:
        sup.stop()


def chromium_path() -> str | None:
    """Debian's Chromium (``apt-get install chromium``), or $RACELAB_CHROMIUM."""
    return os.environ.get("RACELAB_CHROMIUM") or shutil.which("chromium")


@pytest.fixture
def browser() -> Iterator[object]:
    """A headless Chromium driven by Playwright; skips with the reason where absent."""
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium not installed (apt-get install chromium, or set RACELAB_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()

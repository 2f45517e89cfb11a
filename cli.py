"""racelab's command line: thin click commands over the packages.

Errors raised by the packages (``RacelabError``) become one line on stderr and
exit code 1; usage mistakes exit 2; Ctrl-C stops what was started and exits 130.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from demo_server.config import MODES, STORES, WINDOWS, ServerConfig
from demo_server.errors import RacelabError
from demo_server.modes import LaunchSpec

__all__ = ["main"]


@dataclasses.dataclass
class Settings:
    """Options shared by every command (``ctx.obj``)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_dsn: str = "postgresql://127.0.0.1:5432/test"
    memcached: str = "127.0.0.1:11211"
    start_services: bool = False


class RacelabGroup(click.Group):
    """A click group that turns library errors into one line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RacelabError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("racelab: interrupted; everything it started was stopped", err=True)
            ctx.exit(130)


def _positive(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise click.BadParameter(f"must be at least 1, got {value}")
    return value


# Options shared by every command that launches a server.
def server_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--mode", type=click.Choice(MODES), default="threaded", show_default=True,
                         help="How the app is served."),
            click.option("--store", type=click.Choice(STORES), default="global",
                         show_default=True, help="Where the counter lives."),
            click.option("--window", type=click.Choice(WINDOWS), default="none",
                         show_default=True, help="What runs between read and write."),
            click.option("--work-us", type=int, default=50, show_default=True,
                         callback=_positive, help="CPU time of the 'work' window (µs)."),
            click.option("--workers", type=int, default=2, show_default=True,
                         callback=_positive, help="Worker processes."),
            click.option("--threads", type=int, default=4, show_default=True,
                         callback=_positive, help="Threads per gthread worker."),
            click.option("--instances", type=int, default=2, show_default=True,
                         callback=_positive, help="Instances in cluster mode."),
        ]
    ):
        func = option(func)
    return func


def build_server(settings: Settings, **opts: Any) -> tuple[ServerConfig, LaunchSpec]:
    """Turn the shared server options into a config and a launch spec."""
    config = ServerConfig(
        store=opts["store"],
        window=opts["window"],
        work_us=opts["work_us"],
        mode=opts["mode"],
        redis_url=settings.redis_url,
        postgres_dsn=settings.postgres_dsn,
        memcached=settings.memcached,
    )
    spec = LaunchSpec(
        mode=opts["mode"],
        workers=opts["workers"],
        threads=opts["threads"],
        instances=opts["instances"],
        host=opts.get("host", "127.0.0.1"),
        port=opts.get("port", 0) or 0,
    )
    return config, spec


@click.group(cls=RacelabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis-url", envvar="RACELAB_REDIS_URL", default=Settings.redis_url,
              show_default=True, help="Redis for the redis and session stores.")
@click.option("--postgres-dsn", envvar="RACELAB_POSTGRES_DSN", default=Settings.postgres_dsn,
              show_default=True, help="PostgreSQL for the postgres store.")
@click.option("--memcached", envvar="RACELAB_MEMCACHED", default=Settings.memcached,
              show_default=True, help="host:port of memcached.")
@click.option("--start-services", is_flag=True,
              help="Start private Redis / PostgreSQL / memcached instances when none answer.")
@click.version_option(package_name="racelab")
@click.pass_context
def main(
    ctx: click.Context, redis_url: str, postgres_dsn: str, memcached: str, start_services: bool
) -> None:
    """Show, measure and explain race conditions in web apps that keep state in globals.

    \b
    Examples:
      racelab demo                      # the whole answer, as an HTML report
      racelab serve --mode gunicorn-sync --store global
      racelab doctor                    # what this machine offers
    """
    ctx.obj = Settings(redis_url, postgres_dsn, memcached, start_services)


@main.command()
@server_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Port (default: a free one).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where server logs go (default: runs/serve-TIMESTAMP).")
@click.pass_obj
def serve(settings: Settings, run_dir: Path | None, **opts: Any) -> None:
    """Run one demo server in the foreground until Ctrl-C.

    \b
    Examples:
      racelab serve --mode gunicorn-sync --workers 2
      racelab serve --mode threaded --window yield --port 8000
      curl http://127.0.0.1:8000/        # the counter, as text
      racelab --start-services serve --store redis   # a private Redis if none answers
    """
    from demo_server.services import services_for
    from demo_server.supervisor import Supervisor

    run_dir = run_dir or Path("runs") / time.strftime("serve-%Y%m%d-%H%M%S")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with services_for(settings, [opts["store"]]) as settings:
        config, spec = build_server(settings, **opts)
        with Supervisor(config, spec, run_dir) as sup:
            for url in sup.urls:
                click.echo(url)
            click.echo(
                f"serving {config.store} store, window {config.window}, mode {spec.mode}; "
                f"logs in {run_dir}; Ctrl-C stops",
                err=True,
            )
            try:
                while sup.alive():
                    time.sleep(0.2)
            except KeyboardInterrupt:
                click.echo("stopping", err=True)
                return
    raise click.ClickException(f"the server exited on its own; see the logs in {run_dir}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def doctor(settings: Settings, as_json: bool) -> None:
    """Report what this machine offers: servers, load tools, stores, interpreter.

    \b
    Examples:
      racelab doctor
      racelab --redis-url redis://127.0.0.1:6380/0 doctor --json
    """
    from demo_server.doctor import diagnose

    checks = diagnose(settings.redis_url, settings.postgres_dsn, settings.memcached)
    if as_json:
        click.echo(json.dumps(checks, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("check", "status", "detail")
    for check in checks:
        table.add_row(check["name"], "ok" if check["ok"] else "missing", check["detail"])
    Console().print(table)


# Further commands (swarm, check, report, matrix, demo) are added below.


if __name__ == "__main__":
    main()

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

    redis_url: str = ServerConfig.redis_url
    postgres_dsn: str = ServerConfig.postgres_dsn
    memcached: str = ServerConfig.memcached
    start_services: bool = False
    session_backend: str = "filesystem"


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
        session_backend=settings.session_backend,
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
@click.option("--session-backend", type=click.Choice(["filesystem", "redis"]),
              envvar="RACELAB_SESSION_BACKEND", default="filesystem", show_default=True,
              help="Where the session store keeps sessions (redis: at --redis-url).")
@click.option("--start-services", is_flag=True,
              help="Start private Redis / PostgreSQL / memcached instances when none answer.")
@click.version_option(package_name="racelab")
@click.pass_context
def main(
    ctx: click.Context, redis_url: str, postgres_dsn: str, memcached: str,
    session_backend: str, start_services: bool,
) -> None:
    """Show, measure and explain race conditions in web apps that keep state in globals.

    \b
    Examples:
      racelab demo                      # the whole answer, as an HTML report
      racelab serve --mode gunicorn-sync --store global
      racelab doctor                    # what this machine offers
    """
    # A shell that starts racelab in the background leaves SIGINT ignored; Ctrl-C
    # (or kill -INT) must still stop everything racelab started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ctx.obj = Settings(redis_url, postgres_dsn, memcached, start_services, session_backend)


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
    with services_for(settings, [opts["store"]], settings.session_backend) as settings:
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


@main.command()
@server_options
@click.option("--users", type=int, default=16, show_default=True, callback=_positive,
              help="Concurrent Locust users.")
@click.option("--requests", type=int, default=None, callback=_positive,
              help="Total requests over all users (default 2000 unless --duration).")
@click.option("--duration", type=float, default=None, help="Seconds of load.")
@click.option("--burst", type=int, default=None, callback=_positive, metavar="K",
              help="Burst swarm: K users released together, round after round (overrides --users).")
@click.option("--spawn-rate", type=float, default=0.0,
              help="Users started per second (0: at once).")
@click.option("--processes", type=int, default=1, show_default=True, callback=_positive,
              help="Locust processes generating the load.")
@click.option("--reconnect", type=click.IntRange(min=0), default=10, show_default=True,
              help="Requests per connection before a user opens a new one, as clients do "
              "(0: keep-alive for good; connections may then stick to one worker).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default: runs/swarm-TIMESTAMP).")
@click.pass_obj
def swarm(settings: Settings, users: int, requests: int | None, duration: float | None,
          burst: int | None, spawn_rate: float, processes: int, reconnect: int,
          out: Path | None, **opts: Any) -> None:
    """Run one experiment: start a server, swarm it, record every operation.

    \b
    Examples:
      racelab swarm --mode gunicorn-sync --store global --users 32 --requests 5000
      racelab swarm --mode threaded --window yield --burst 50 --requests 2000
      racelab swarm --mode cluster --store redis --duration 10 --processes 2
    """
    from demo_server.services import services_for
    from scenarios.experiment import ExperimentSpec

    if duration is not None and duration <= 0:
        raise click.BadParameter(f"must be positive, got {duration}", param_hint="--duration")
    build_server(settings, **opts)  # validates the server options before anything starts
    spec = ExperimentSpec(
        store=opts["store"], window=opts["window"], work_us=opts["work_us"], mode=opts["mode"],
        workers=opts["workers"], threads=opts["threads"], instances=opts["instances"],
        users=burst or users, requests=requests or (0 if duration else 2000),
        duration=duration or 0.0, burst=burst or 0, spawn_rate=spawn_rate, processes=processes,
        reconnect=reconnect, session_backend=settings.session_backend,
    )
    run_dir = out or Path("runs") / time.strftime("swarm-%Y%m%d-%H%M%S")
    with services_for(settings, [spec.store], settings.session_backend) as started:
        _swarm(started, spec, run_dir)


def _swarm(settings: Settings, spec: Any, run_dir: Path) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from scenarios.experiment import run_experiment

    console = Console(stderr=True)
    total = spec.requests or None
    with Progress(TextColumn("[bold]swarm"), BarColumn(), TextColumn("{task.completed} ops"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task_id = bar.add_task("swarm", total=total)
        try:
            summary = run_experiment(
                spec, run_dir, redis_url=settings.redis_url, postgres_dsn=settings.postgres_dsn,
                memcached=settings.memcached,
                progress=lambda done, _elapsed: bar.update(task_id, completed=done),
            )
        except KeyboardInterrupt:
            click.echo(f"interrupted; what was recorded is in {run_dir}", err=True)
            raise
    _print_swarm(Console(), summary, run_dir)
    if summary["server"]["died"] or summary["status"] != "ok":
        raise click.ClickException(
            f"{summary['error'] or 'the experiment failed'}; see {run_dir}")


def _print_swarm(console: Any, summary: dict[str, Any], run_dir: Path) -> None:
    from rich.table import Table

    swarm_, counts = summary["swarm"], summary["first_counts"]
    table = Table(title=summary["label"], show_header=False)
    table.add_row("requests", f"{swarm_['requests']} (locust: {swarm_['locust_requests']})")
    table.add_row("throughput", f"{swarm_['throughput_rps']:.0f} req/s")
    table.add_row("errors", f"fail {swarm_['fail']}, unknown (info) {swarm_['info']}")
    table.add_row("latency p50/p95/p99",
                  " / ".join(f"{swarm_['latency_ms'][k]:.1f} ms" for k in ("p50", "p95", "p99")))
    table.add_row("distinct values", str(counts["distinct"]))
    table.add_row("duplicates", str(counts["duplicates"]))
    table.add_row("gaps", str(counts["gaps"]))
    spreads = [b["client_ns"] for b in swarm_["burst_spreads"] if b["requests"] > 1]
    if spreads:
        spreads.sort()
        table.add_row("burst spread (client, median)", f"{spreads[len(spreads) // 2] / 1e6:.2f} ms")
    console.print(table)
    if summary["server"]["died"]:
        console.print(f"[bold red]THE SERVER DIED during the swarm (exit codes "
                      f"{summary['server']['exit_codes']}); see its logs in {run_dir}[/]")
    from reports.failure_modes import mode_names, verdict_label
    from reports.results import collect_experiment

    entry = collect_experiment(run_dir)
    word = verdict_label(entry)
    style = {"safe": "bold green", "race": "bold red"}.get(word, "bold yellow")
    verdict = entry["verdict"]
    names = ", ".join(mode_names(entry.get("failure_modes") or []))
    console.print(f"verdict: [{style}]{word}[/]{f' ({names})' if names else ''} "
                  f"({verdict['reason']})", soft_wrap=True)
    for witness in verdict["witnesses"][:3]:
        console.print(f"  - {witness['sentence']}", soft_wrap=True)
    console.print(f"run directory: {run_dir}  (racelab report {run_dir} --open)",
                  soft_wrap=True)


@main.command()
@click.argument("history", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--final", "final_value", type=int, default=None, metavar="N",
              help="The counter's final value (one shared counter).")
@click.option("--final-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="final.json written by an experiment (per-process states, served counts).")
@click.option("--per-process", is_flag=True,
              help="Each server process keeps its own counter (unless final.json says).")
@click.option("--scenario", default="counter", show_default=True,
              help="Which checkers run (counter, ids, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.pass_context
def check(ctx: click.Context, history: Path, final_value: int | None, final_file: Path | None,
          per_process: bool, scenario: str, as_json: bool) -> None:
    """Check a history for duplicates, skips, lost updates and real-time order.

    Exit code 0: valid; 1: anomalies found; 2: undecidable, or malformed input.

    \b
    Examples:
      racelab check runs/demo/history.csv --final-file runs/demo/final.json
      racelab check my-app-history.csv --final 5000
      racelab check history.csv --per-process --json | jq .counts
    """
    from reports.checkers import check_history
    from reports.history_table import read_history

    def fail(message: str) -> None:
        click.echo(f"Error: {message}", err=True)
        ctx.exit(2)

    if final_value is not None and final_file is not None:
        raise click.UsageError("give --final or --final-file, not both")
    final: Any = final_value
    if final_file is not None:
        try:
            final = json.loads(final_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            fail(f"{final_file}: cannot read the final state: {exc}")
    try:
        table = read_history(history)
        verdict = check_history(table, final=final, scenario=scenario, per_process=per_process)
    except RacelabError as exc:
        fail(f"{history}: {exc}")
        return
    if as_json:
        click.echo(json.dumps(verdict.to_dict(), indent=2))
    else:
        from reports._check_output import print_verdict

        print_verdict(verdict)
    ctx.exit({"yes": 0, "no": 1}.get(verdict.valid, 2))


def _run_demo_command(
    settings: Settings,
    cells: Any,
    *,
    preset: str,
    nominal_budget_s: float,
    budget: float | None,
    out: Path | None,
    open_report: bool,
    as_json: bool,
    repeat: int | None = None,
) -> None:
    """Shared body of ``demo`` and ``matrix``: run, print the table, say where the report is."""
    import dataclasses

    from rich.console import Console

    from demo_server.services import services_for

    if repeat is not None:
        cells = [dataclasses.replace(cell, repeat=repeat) for cell in cells]

    err = Console(stderr=True, highlight=False)
    run_dir = out or Path("runs") / time.strftime(f"{preset}-%Y%m%d-%H%M%S")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise click.BadParameter(f"{run_dir} exists and is not empty", param_hint="--out")
    with services_for(settings, sorted({cell.store for cell in cells}),
                      settings.session_backend) as started:
        _run_cells(started, cells, run_dir, err, preset=preset,
                   nominal_budget_s=nominal_budget_s, budget=budget, as_json=as_json,
                   open_report=open_report)


def _run_cells(settings: Settings, cells: Any, run_dir: Path, err: Any, *, preset: str,
               nominal_budget_s: float, budget: float | None, as_json: bool,
               open_report: bool) -> None:
    from reports.progress import MatrixConsoleProgress
    from reports.table import print_table
    from scenarios.demo import run_demo

    config = ServerConfig(redis_url=settings.redis_url, postgres_dsn=settings.postgres_dsn,
                          memcached=settings.memcached,
                          session_backend=settings.session_backend)
    def on_skip(store: str, reason: str) -> None:
        err.print(f"skipped {store}: {reason} (see racelab doctor)")

    def on_plan(count: int) -> None:
        err.print(f"racelab {preset}: {count} cells; writing to {run_dir}")

    progress = MatrixConsoleProgress(err, quiet=as_json)
    try:
        result = run_demo(cells, run_dir, config, preset=preset, budget_s=budget,
                          nominal_budget_s=nominal_budget_s, progress=progress,
                          on_skip=on_skip, on_plan=on_plan)
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(result.results, indent=2))
    else:
        print_table(result.results)
    outcome = result.outcome
    failed = [o for o in outcome.outcomes if o.status == "failed"]
    if outcome.partial:
        err.print(f"partial run: {result.results['run'].get('partial_reason', '')}")
    report = result.written.get("html")
    err.print(f"report: {report}" if report else f"results: {result.written['results']}")
    if open_report and report:
        import webbrowser

        webbrowser.open(report.resolve().as_uri())
    if outcome.interrupted:
        raise SystemExit(130)
    if failed:
        raise click.ClickException(
            f"{len(failed)} of {len(outcome.outcomes)} cells could not be run "
            f"(shown as unknown in the report); first: {failed[0].cell.label}: "
            f"{failed[0].error.splitlines()[0] if failed[0].error else ''}"
        )


_budget_option = click.option(
    "--budget", type=click.FloatRange(min=5, min_open=False), default=None, metavar="SECONDS",
    help="Scale the swarms so the run takes about this long.",
)
_repeat_option = click.option(
    "--repeat", type=click.IntRange(min=1), default=None, metavar="N",
    help="Run each cell N times and report how often it raced (default: the preset's).",
)
_out_option = click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Run directory (default: runs/NAME-TIMESTAMP).",
)


@main.command()
@click.option("--preset", default="classroom", show_default=True, metavar="NAME|FILE",
              help="classroom, quick, full, or a TOML file of your own.")
@_out_option
@click.option("--open", "open_report", is_flag=True, help="Open the HTML report when done.")
@_budget_option
@_repeat_option
@click.option("--json", "as_json", is_flag=True, help="Print results.json instead of the table.")
@click.pass_obj
def demo(settings: Settings, preset: str, out: Path | None, open_report: bool,
         budget: float | None, as_json: bool, repeat: int | None) -> None:
    """The whole answer in one command: run a preset matrix and write the HTML report.

    Runs every cell (server up, Locust swarm, final state, server down, check),
    prints the table and the report's path. Anomalies in the naive cells are
    the demo's expected result; the exit code says whether the run itself worked.

    \b
    Examples:
      racelab demo                         # classroom preset, about 2 minutes
      racelab demo --preset quick --open   # under 30 s, then open the report
      racelab demo --preset my-grid.toml --budget 300
      racelab demo --preset quick --repeat 5  # how often each cell races, k of 5
    """
    from scenarios.presets import load_preset

    loaded = load_preset(preset)
    _run_demo_command(settings, loaded.cells, preset=loaded.name,
                      nominal_budget_s=loaded.budget_s, budget=budget, out=out,
                      open_report=open_report, as_json=as_json, repeat=repeat)


def _names(kind: str, allowed: tuple[str, ...]) -> Any:
    def parse(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
        names = [v.strip() for v in value.split(",") if v.strip()]
        for name in names:
            if name not in allowed:
                raise click.BadParameter(
                    f"unknown {kind} {name!r}; choose from {', '.join(allowed)}"
                )
        if not names:
            raise click.BadParameter(f"give at least one {kind}")
        return names

    return parse


@main.command()
@click.option("--modes", default="threaded,gunicorn-sync", show_default=True,
              callback=_names("mode", MODES), help="Comma-separated modes.")
@click.option("--stores", default="global,lock,sqlite", show_default=True,
              callback=_names("store", STORES), help="Comma-separated stores.")
@click.option("--windows", default="none", show_default=True,
              callback=_names("window", WINDOWS), help="Comma-separated windows.")
@click.option("--users", type=int, default=16, show_default=True, callback=_positive)
@click.option("--requests", type=int, default=400, show_default=True, callback=_positive,
              help="Requests per cell.")
@click.option("--burst", type=click.IntRange(min=0), default=0, show_default=True,
              help="Synchronised bursts of this many users (0: plain swarm).")
@click.option("--workers", type=int, default=2, show_default=True, callback=_positive)
@click.option("--threads", type=int, default=4, show_default=True, callback=_positive)
@click.option("--instances", type=int, default=2, show_default=True, callback=_positive)
@_out_option
@click.option("--open", "open_report", is_flag=True, help="Open the HTML report when done.")
@_budget_option
@_repeat_option
@click.option("--json", "as_json", is_flag=True, help="Print results.json instead of the table.")
@click.pass_obj
def matrix(settings: Settings, modes: list[str], stores: list[str], windows: list[str],
           out: Path | None, open_report: bool, budget: float | None, as_json: bool,
           repeat: int | None, **sizes: int) -> None:
    """Run your own grid of modes x stores x windows and write the report.

    Windows apply to the global and lock stores; other stores run once per mode.

    \b
    Examples:
      racelab matrix --modes threaded,gevent --stores global,lock --windows none,yield
      racelab matrix --modes gunicorn-sync,cluster --stores redis,postgres --requests 2000
    """
    from scenarios.presets import expand

    cells = expand("command line", [{"stores": stores, "windows": windows, "modes": modes}],
                   {k: sizes[k] for k in ("users", "requests", "burst")},
                   {k: sizes[k] for k in ("workers", "threads", "instances")})
    # About 2.5 s per cell to start and stop servers and Locust, plus the swarm itself.
    nominal = sum(2.5 + cell.requests / 800 for cell in cells)
    _run_demo_command(settings, cells, preset="matrix", nominal_budget_s=nominal,
                      budget=budget, out=out, open_report=open_report, as_json=as_json,
                      repeat=repeat)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]), default="html",
              show_default=True, help="html: one self-contained file; md: Markdown with "
              "images in plots/; json: results.json to stdout.")
@click.option("--open", "open_report", is_flag=True, help="Open the report in a browser.")
@click.option("--svg", is_flag=True, help="Draw the plots as SVG instead of PNG.")
@click.option("--width", type=int, default=None, callback=_positive,
              help="Print the table at this fixed width.")
def report(run_dir: Path, fmt: str, open_report: bool, svg: bool, width: int | None) -> None:
    """Re-render a run's report from its saved files, running nothing.

    results.json is recomputed from the experiment directories only when it is missing.

    \b
    Examples:
      racelab report runs/quick-20250101-120000
      racelab report runs/quick-20250101-120000 --format md --svg
      racelab report runs/quick-20250101-120000 --format json | jq '.experiments[].verdict.valid'
    """
    from rich.console import Console

    from reports.html import render_run
    from reports.results import load_results
    from reports.table import print_table

    written = render_run(run_dir, formats=[fmt], svg=svg)
    if fmt == "json":
        click.echo(written["results"].read_text(encoding="utf-8"), nl=False)
        return
    print_table(load_results(written["results"]), console=Console(width=width))
    path = written[fmt]
    click.echo(f"report: {path}", err=True)
    if open_report:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())



@main.command()
@click.option("--python", "pythons", multiple=True, metavar="PATH",
              help="Also this interpreter (repeatable); pyenv's versions are found by themselves.")
@click.option("--threads", type=int, default=8, show_default=True, callback=_positive)
@click.option("--increments", type=int, default=200_000, show_default=True, callback=_positive,
              help="Increments per thread (the yield window runs a twentieth).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def interpreters(pythons: tuple[str, ...], threads: int, increments: int, as_json: bool) -> None:
    """Race the original SomeObj in threads under every Python on this machine.

    No server: threads call the question's query() in a tight loop, with window
    none (the literal code), call and yield. How many increments are lost shows
    where each interpreter lets another thread in between the read and the write.

    \b
    Examples:
      racelab interpreters
      racelab interpreters --python /usr/bin/python3.13t --threads 4
    """
    from rich.console import Console
    from rich.table import Table

    from scenarios.interpreters import find_interpreters, run_interpreters

    results = run_interpreters(find_interpreters(pythons), threads, increments)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    table = Table("python", "GIL", "none (the original)", "call", "yield",
                  title=f"Increments lost by {threads} threads, per window")
    for r in results:
        if r.error:
            table.add_row(r.python, "", f"could not run: {r.error}", "", "")
            continue
        cells = []
        for window in ("none", "call", "yield"):
            lost, expected = r.lost(window) or (0, 0)
            style = "red" if lost else "green"
            cells.append(f"[{style}]{lost / expected:.0%}[/] ({lost:,})" if expected else "")
        table.add_row(f"{r.implementation} {r.version}", "on" if r.gil else "off", *cells)
    Console().print(table)


if __name__ == "__main__":
    main()

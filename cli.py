"""racelab's command line: thin click commands over the packages.

Errors raised by the packages (``RacelabError``) become one line on stderr and
exit code 1; usage mistakes exit 2. SIGINT (Ctrl-C), SIGTERM and SIGHUP stop what
was started, keep what was recorded, and exit 130, 143 and 129.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import click

from demo_server import interrupts
from demo_server.config import MODES, STORES, WINDOWS, ServerConfig
from demo_server.errors import RacelabError, TargetError
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
        except TargetError as exc:  # a bad app or URL to test: bad input, exit 2
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except RacelabError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt as exc:
            code = getattr(exc, "exit_code", 130)
            name = signal.Signals(code - 128).name if code > 128 else "SIGINT"
            click.echo(f"racelab: stopped by {name}; everything it started was stopped",
                       err=True)
            ctx.exit(code)


def _positive(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise click.BadParameter(f"must be at least 1, got {value}")
    return value


def spec_options(*groups: str, only: tuple[str, ...] = (), skip: tuple[str, ...] = (),
                 defaults: dict[str, Any] | None = None) -> Any:
    """Click options for the ``ExperimentSpec`` settings of ``groups`` (or ``only`` these).

    Every option is derived from its ``scenarios.spec.Setting``: flag, type,
    bounds, help and default. Options default to None ("not given") and the
    spec's default applies; ``defaults`` names the default shown where the
    command applies another one (a matrix cell's ``MATRIX_DEFAULTS``).
    """
    from scenarios.spec import SETTINGS

    defaults = defaults or {}
    chosen = [st for st in SETTINGS if (st.name in only if only else st.group in groups)
              and st.name not in skip]

    def decorate(func: Any) -> Any:
        for st in reversed(chosen):
            if st.kind == "list":
                func = click.option(st.flag, st.name, multiple=True, help=st.help)(func)
                continue
            if st.kind == "str":
                kind: Any = click.Choice(st.choices) if st.choices else str
            elif st.kind == "int":
                kind = click.IntRange(_bound(st.low), _bound(st.high))
            else:
                kind = click.FloatRange(st.low, st.high)
            default = defaults.get(st.name, _default(st.name))
            shown = f"{default:g}" if isinstance(default, float) else default
            suffix = f"  [default: {shown}]" if shown != "" else ""
            func = click.option(st.flag, st.name, type=kind, default=None,
                                help=f"{st.help}{suffix}",
                                callback=_finite if st.kind == "float" else None)(func)
        return func

    return decorate


def _run_dir(out: str | Path | None, name: str, hint: str = "--out", empty: bool = False) -> Path:
    """The run directory: ``out``, or ``runs/NAME-TIMESTAMP``; created, writable, absolute.

    Raises:
        click.BadParameter: an empty name, a path that cannot be a directory, one
            that is not writable, or (``empty``) one that already holds files.
    """
    if out is not None and not str(out).strip():
        raise click.BadParameter("give a directory name", param_hint=hint)
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name).strip(".") or "run"
    run_dir = Path(out) if out is not None else (
        Path("runs") / time.strftime(f"{safe}-%Y%m%d-%H%M%S"))
    try:
        if empty and run_dir.is_dir() and any(run_dir.iterdir()):
            raise click.BadParameter(f"{run_dir} exists and is not empty", param_hint=hint)
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".racelab-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise click.BadParameter(f"cannot use {run_dir} as a run directory: "
                                 f"{exc.strerror or exc}", param_hint=hint) from None
    return run_dir.resolve()


_fault_option = click.option(
    "--fault", "faults", multiple=True, metavar="SPEC",
    help="Inject a fault during the load (repeatable): kill-worker@2s, stop-store@1s+2s "
    "(stopped for 2 s), pause-store@1s+2s. Only stores racelab started can be stopped.")

#: ``--assert-safe``'s exit code per verdict word: it gates CI.
ASSERT_SAFE_EXIT = {"safe": 0, "race": 1, "unknown": 2}
_assert_safe_option = click.option(
    "--assert-safe", is_flag=True,
    help="Exit 0 if every experiment is safe, 1 if any races, 2 if any is unknown "
    "(a crashed server, an interrupted run, too many unknown outcomes).")


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


def _bound(value: float | None) -> int | None:
    return None if value is None else int(value)


def _default(name: str) -> Any:
    from scenarios.spec import ExperimentSpec

    return ExperimentSpec.__dataclass_fields__[name].default


# Options shared by every command that launches a server.
server_options = spec_options(only=("mode", "store", "window", "work_us", "workers", "threads",
                                    "instances", "scenario"))


def build_server(settings: Settings, **opts: Any) -> tuple[ServerConfig, LaunchSpec]:
    """Turn the shared server options into a config and a launch spec."""
    from scenarios.spec import spec_from_options

    spec = spec_from_options({k: opts.get(k) for k in (
        "scenario", "store", "window", "work_us", "mode", "workers", "threads", "instances")})
    config = ServerConfig(
        scenario=spec.scenario,
        store=spec.store,
        window=spec.window,
        work_us=spec.work_us,
        mode=spec.mode,
        redis_url=settings.redis_url,
        postgres_dsn=settings.postgres_dsn,
        memcached=settings.memcached,
        session_backend=settings.session_backend,
    )
    launch = LaunchSpec(
        mode=spec.mode,
        workers=spec.workers,
        threads=spec.threads,
        instances=spec.instances,
        host=opts.get("host", "127.0.0.1"),
        port=opts.get("port", 0) or 0,
    )
    return config, launch


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
    # SIGINT, SIGTERM and SIGHUP all stop cleanly (demo_server.interrupts).
    interrupts.install()
    ctx.obj = Settings(redis_url, postgres_dsn, memcached, start_services, session_backend)


@main.command()
@server_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Port (default: a free one).")
@click.option("--run-dir", "run_dir_name", type=click.Path(file_okay=False), default=None,
              help="Where server logs go (default: runs/serve-TIMESTAMP).")
@click.pass_obj
def serve(settings: Settings, run_dir_name: str | None, **opts: Any) -> None:
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

    run_dir = _run_dir(run_dir_name, "serve", "--run-dir")
    build_server(settings, **opts)  # validates the options before anything starts
    store = opts["store"] or _default("store")
    with services_for(settings, [store], settings.session_backend) as settings:
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
@spec_options("cell", "server", "swarm", "target")
@_fault_option
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/swarm-TIMESTAMP).")
@_assert_safe_option
@click.pass_obj
def swarm(settings: Settings, out: str | None, assert_safe: bool, **opts: Any) -> None:
    """Run one experiment: start a server, swarm it, record every operation.

    Writes history.csv, final.json, summary.json and results.json (the one
    analysis, which it prints) into the run directory.

    \b
    Examples:
      racelab swarm --mode gunicorn-sync --store global --users 32 --requests 5000
      racelab swarm --mode threaded --window yield --burst 50 --requests 2000
      racelab swarm --mode cluster --store redis --duration 10 --processes 2
      racelab swarm --mode gunicorn-sync --store postgres --assert-safe   # a CI gate
      racelab swarm --mode gunicorn-sync --store sqlite --fault kill-worker@1s
      racelab swarm --app app.py:app --mode gunicorn-sync --workers 3 --assert-safe
      racelab swarm --app shop:create_app() --request 'POST /buy' --value json:seat \\
          --check tickets --mode gunicorn-gthread
    """
    from demo_server.services import services_for
    from scenarios.spec import spec_from_options

    spec = spec_from_options({**opts, "session_backend": settings.session_backend})
    build_server(settings, **opts)  # validates the server options before anything starts
    run_dir = _run_dir(out, "swarm")
    with services_for(settings, [spec.store], settings.session_backend) as started:
        _swarm(started, spec, run_dir, assert_safe)


def _swarm(settings: Settings, spec: Any, run_dir: Path, assert_safe: bool) -> None:
    from scenarios.experiment import run_experiment

    _run_and_print("swarm", spec, run_dir, assert_safe, lambda progress: run_experiment(
        spec, run_dir, redis_url=settings.redis_url, postgres_dsn=settings.postgres_dsn,
        memcached=settings.memcached, progress=progress))


def _run_and_print(verb: str, spec: Any, run_dir: Path, assert_safe: bool,
                   run: Any) -> None:
    """Run one experiment with a progress bar, analyse it once, print the analysis.

    ``run(progress)`` returns the summary. A signal still analyses what was
    recorded (marked partial) before it stops the command.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from reports._check_output import print_experiment
    from reports.results import analyse_experiment, verdict_word

    with Progress(TextColumn(f"[bold]{verb}"), BarColumn(), TextColumn("{task.completed} ops"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task_id = bar.add_task(verb, total=spec.requests or None)
        try:
            summary = run(lambda done, _elapsed: bar.update(task_id, completed=done))
        except KeyboardInterrupt:
            analyse_experiment(run_dir, {"partial": True, "partial_reason": "interrupted"})
            click.echo(f"interrupted; what was recorded is in {run_dir}", err=True)
            raise
    entry = analyse_experiment(run_dir)
    print_experiment(Console(), entry, summary, run_dir)
    if assert_safe:
        raise SystemExit(ASSERT_SAFE_EXIT[verdict_word(entry)])
    if summary["server"]["died"] or summary["status"] != "ok":
        raise click.ClickException(
            f"{summary['error'] or f'the {verb} failed'}; see {run_dir}")


def _not_negative(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value < 0:
        raise click.BadParameter(f"a counter's final value is never negative, got {value}")
    return value


HISTORY_FORMATS = ("auto", "csv", "parquet", "jepsen-json", "jepsen-edn")


@main.command()
@click.argument("url")
@spec_options(only=("users", "requests", "duration", "burst", "spawn_rate", "processes",
                    "reconnect", "tabs", "history_format", "request", "body", "header", "value",
                    "check", "final"))
@click.option("--insecure", is_flag=True,
              help="Do not check the https certificate (a self-signed test server).")
@click.option("--allow-remote", is_flag=True,
              help="Allow a host other than this machine. Only probe what you own.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/probe-TIMESTAMP).")
@_assert_safe_option
def probe(url: str, insecure: bool, allow_remote: bool, out: str | None, assert_safe: bool,
          **opts: Any) -> None:
    """Swarm an endpoint that is already running, record every answer, check the history.

    Loopback only unless --allow-remote: probe only servers you own. racelab
    knows the values and, when the app sends X-Racelab-* headers (any app
    started with --app does), which process and thread answered; it cannot
    know how the app was served or what its code runs between read and write.

    \b
    Examples:
      racelab probe http://127.0.0.1:8000 --requests 2000 --assert-safe
      racelab probe http://127.0.0.1:8000 --request 'POST /order' --value json:id --check ids
      racelab probe https://127.0.0.1:8443 --insecure --final 'GET /count'
    """
    from scenarios.probe import check_probe_url, run_probe
    from scenarios.spec import spec_from_options

    base = check_probe_url(url, allow_remote=allow_remote)
    values = {k: v for k, v in opts.items() if v not in (None, ())}
    spec = spec_from_options({**values, "app": base})  # the target: the URL, not a launch
    run_dir = _run_dir(out, "probe")
    _run_and_print("probe", spec, run_dir, assert_safe, lambda progress: run_probe(
        spec, base, run_dir, insecure=insecure, progress=progress))


@main.command()
@click.argument("history", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--final", "final_value", type=int, default=None, metavar="N",
              callback=_not_negative, help="The counter's final value (one shared counter).")
@click.option("--final-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="final.json written by an experiment (per-process states, served counts).")
@click.option("--per-process", is_flag=True,
              help="Each server process keeps its own counter (unless final.json says).")
@click.option("--scenario", default="counter", show_default=True,
              help="Which checkers run on a racelab history (counter, ids, ...).")
@click.option("--format", "fmt", type=click.Choice(HISTORY_FORMATS), default="auto",
              show_default=True, help="The history's format (auto: from its content).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.pass_context
def check(ctx: click.Context, history: Path, final_value: int | None, final_file: Path | None,
          per_process: bool, scenario: str, fmt: str, as_json: bool) -> None:
    """Check a history for duplicates, skips, lost updates and real-time order.

    HISTORY is racelab's history.csv or history.parquet, or a Jepsen history
    (JSON or EDN), whose :f values (add/read, generate) choose the checkers.

    Exit code 0: valid; 1: anomalies found; 2: undecidable, malformed input,
    or a failure of the reader or a checker.

    \b
    Examples:
      racelab check runs/demo/history.csv --final-file runs/demo/final.json
      racelab check my-app-history.csv --final 5000
      racelab check history.csv --per-process --json | jq .counts
      racelab check history.json
    """
    def fail(message: str) -> None:
        click.echo(f"Error: {message}", err=True)
        ctx.exit(2)

    if final_value is not None and final_file is not None:
        raise click.UsageError("give --final or --final-file, not both")
    try:
        from reports._final import UnreadableFinal, read_final_file
        from reports.check_file import check_file

        final: Any = final_value
        if final_file is not None:
            try:
                final = read_final_file(final_file)
            except UnreadableFinal as exc:
                fail(f"{final_file}: cannot read the final state: {exc}")
        if not as_json:  # import the printer while pyarrow parses (it lets go of the GIL)
            threading.Thread(target=_import_quietly, args=("reports._check_output",),
                             daemon=True).start()
        try:
            verdict = check_file(history, None if fmt == "auto" else fmt, final=final,
                                 scenario=scenario, per_process=per_process)
        except RacelabError as exc:
            fail(f"{history}: {exc}")
            return
        if as_json:
            click.echo(json.dumps(verdict.to_dict(), indent=2))
        else:
            from reports._check_output import print_verdict

            print_verdict(verdict)
    except click.exceptions.Exit:
        raise
    except Exception as exc:  # a crash is never "anomalies found" (exit 1)
        fail(f"{history}: racelab failed while checking it: {type(exc).__name__}: {exc}")
    ctx.exit({"yes": 0, "no": 1}.get(verdict.valid, 2))


def _import_quietly(module: str) -> None:
    """Import a module ahead of its use; a failure shows where it is used, not here."""
    import importlib

    with contextlib.suppress(Exception):
        importlib.import_module(module)


@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path), metavar="RUN_DIR|HISTORY")
@click.option("--format", "fmt", type=click.Choice(("jepsen",)), default="jepsen",
              show_default=True, help="What to export to.")
@click.option("--edn", is_flag=True, help="EDN, one op map per line, instead of a JSON array.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The file to write (default: standard output).")
@click.option("--scenario", default=None,
              help="The history's scenario (ids: every op is :generate); default: the "
                   "run's summary.json, else counter.")
@click.pass_context
def export(ctx: click.Context, source: Path, fmt: str, edn: bool, out: Path | None,
           scenario: str | None) -> None:
    """Export a history as a Jepsen history (JSON, or EDN with --edn).

    One invocation and one completion per operation; incr is :add of 1 (the
    number returned rides as :new-value), read is :read, the ids scenario's ops
    are :generate. Times in ns from the first invocation, :index dense.

    \b
    Examples:
      racelab export runs/demo --out history.json
      racelab export runs/demo/history.csv --edn --out history.edn
      racelab check history.json
    """
    from reports.history_table import find_history, read_history
    from reports.jepsen import write_jepsen

    history = find_history(source)
    if scenario is None:
        scenario = _scenario_of(source if source.is_dir() else history.parent)
    try:
        table = read_history(history)
    except RacelabError as exc:
        click.echo(f"Error: {history}: {exc}", err=True)
        ctx.exit(2)
    if out is None:
        import sys

        write_jepsen(table, sys.stdout, edn=edn, scenario=scenario)
        return
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            count = write_jepsen(table, handle, edn=edn, scenario=scenario)
        partial.replace(out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {count:,} ops ({len(table):,} operations) to {out}", err=True)


def _scenario_of(run_dir: Path) -> str:
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "counter"
    if not isinstance(summary, dict):
        return "counter"
    experiment = summary.get("experiment")
    found = experiment.get("scenario") if isinstance(experiment, dict) else None
    found = found or summary.get("scenario")
    return found if isinstance(found, str) and found else "counter"


def _run_demo_command(
    settings: Settings,
    cells: Any,
    *,
    preset: str,
    nominal_budget_s: float,
    budget: float | None,
    out: str | None,
    open_report: bool,
    as_json: bool,
    assert_safe: bool = False,
    repeat: int | None = None,
) -> None:
    """Shared body of ``demo`` and ``matrix``: run, print the table, say where the report is."""
    import dataclasses

    from rich.console import Console

    from demo_server.services import services_for

    if repeat is not None:
        cells = [dataclasses.replace(cell, repeat=repeat) for cell in cells]

    err = Console(stderr=True, highlight=False)
    run_dir = _run_dir(out, preset, empty=True)
    with services_for(settings, sorted({cell.store for cell in cells}),
                      settings.session_backend) as started:
        _run_cells(started, cells, run_dir, err, preset=preset,
                   nominal_budget_s=nominal_budget_s, budget=budget, as_json=as_json,
                   open_report=open_report, assert_safe=assert_safe)


def _run_cells(settings: Settings, cells: Any, run_dir: Path, err: Any, *, preset: str,
               nominal_budget_s: float, budget: float | None, as_json: bool,
               open_report: bool, assert_safe: bool) -> None:
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
        err.print(f"partial run: {result.results['run'].get('partial_reason', '')}; "
                  f"re-render it any time with: racelab report {run_dir}")
    timing = result.results["run"].get("timing") or {}
    if timing.get("load_s"):
        err.print(f"time: {timing['wall_s']:.1f} s in all for {timing['load_s']:.1f} s of load "
                  f"over {timing['cells']} cells ({timing['wall_s'] / timing['load_s']:.1f}x)")
    report = result.written.get("html")
    err.print(f"report: {report}" if report else f"results: {result.written['results']}")
    if open_report and report:
        import webbrowser

        webbrowser.open(report.resolve().as_uri())
    if outcome.interrupted:
        raise SystemExit(128 + (interrupts.first_signal() or signal.SIGINT))
    if assert_safe:
        from reports.results import verdict_word

        words = {verdict_word(e) for e in result.results["experiments"]} or {"unknown"}
        code = 1 if "race" in words else 2 if "unknown" in words else 0
        raise SystemExit(code)
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
    "--out", type=click.Path(file_okay=False), default=None,
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
@_assert_safe_option
@click.pass_obj
def demo(settings: Settings, preset: str, out: str | None, open_report: bool,
         budget: float | None, as_json: bool, assert_safe: bool,
         repeat: int | None) -> None:
    """The whole answer in one command: run a preset matrix and write the HTML report.

    Runs every cell (server up, Locust swarm, final state, server down, check),
    prints the table and the report's path. Anomalies in the naive cells are
    the demo's expected result; the exit code says whether the run itself worked.

    \b
    Examples:
      racelab demo                         # classroom preset, under a minute on 2 cores
      racelab demo --preset quick --open   # about ten seconds, then open the report
      racelab demo --preset my-grid.toml --budget 300
      racelab demo --preset quick --repeat 5  # how often each cell races, k of 5
    """
    from scenarios.presets import load_preset

    loaded = load_preset(preset)
    _run_demo_command(settings, loaded.cells, preset=loaded.name,
                      nominal_budget_s=loaded.budget_s, budget=budget, out=out,
                      open_report=open_report, as_json=as_json, assert_safe=assert_safe,
                      repeat=repeat)


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
@spec_options("server", "swarm", "target", defaults={"requests": 400})
@spec_options(only=("scenario", "work_us", "stock"))
@_fault_option
@_out_option
@click.option("--open", "open_report", is_flag=True, help="Open the HTML report when done.")
@_budget_option
@_repeat_option
@click.option("--json", "as_json", is_flag=True, help="Print results.json instead of the table.")
@_assert_safe_option
@click.pass_obj
def matrix(settings: Settings, modes: list[str], stores: list[str], windows: list[str],
           out: str | None, open_report: bool, budget: float | None, as_json: bool,
           assert_safe: bool, repeat: int | None, **sizes: Any) -> None:
    """Run your own grid of modes x stores x windows and write the report.

    Windows apply to the global and lock stores; other stores run once per mode.

    \b
    Examples:
      racelab matrix --modes threaded,gevent --stores global,lock --windows none,yield
      racelab matrix --modes gunicorn-sync,cluster --stores redis,postgres --requests 2000
      racelab matrix --app app.py:app --modes threaded,gunicorn-sync,gevent --assert-safe
    """
    from scenarios.presets import expand

    faults = tuple(sizes.pop("faults", ()) or ())
    given = {k: v for k, v in sizes.items() if v not in (None, ())}
    cells = expand("command line",
                   [{"stores": stores, "windows": windows, "modes": modes, **given}], {}, {})
    if faults:
        cells = tuple(dataclasses.replace(cell, faults=faults) for cell in cells)
    # About 2.5 s per cell to start and stop servers and Locust, plus the swarm itself.
    nominal = sum(2.5 + cell.requests / 800 for cell in cells)
    _run_demo_command(settings, cells, preset="matrix", nominal_budget_s=nominal,
                      budget=budget, out=out, open_report=open_report, as_json=as_json,
                      assert_safe=assert_safe, repeat=repeat)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]), default="html",
              show_default=True, help="html: one self-contained file; md: Markdown with "
              "images in plots/; json: results.json to stdout.")
@click.option("--open", "open_report", is_flag=True, help="Open the report in a browser.")
@click.option("--svg", is_flag=True, help="Draw the plots as SVG instead of PNG.")
@click.option("--width", type=int, default=None, callback=_positive,
              help="Print the table at this fixed width.")
@click.option("--reanalyse", is_flag=True,
              help="Check and measure every experiment again and rewrite results.json "
              "(after a newer racelab, or a history edited by hand).")
def report(run_dir: Path, fmt: str, open_report: bool, svg: bool, width: int | None,
           reanalyse: bool) -> None:
    """Re-render a run's report from its saved files, running nothing.

    The stored analysis (results.json) is rendered as it is; it is computed from
    the experiment directories only when it is missing, or with --reanalyse.

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

    written = render_run(run_dir, formats=[fmt], svg=svg, reanalyse=reanalyse)
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

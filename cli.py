"""racelab's command line: thin click commands over the packages.

Errors raised by the packages (``RacelabError``) and usage mistakes become one
line on stderr and exit code 2; exit 1 means a race was found. SIGINT (Ctrl-C),
SIGTERM and SIGHUP stop what was started, keep what was recorded, and exit 130,
143 and 129. The whole table: ``demo_server.basics.exits``.

Each command imports the modules it runs inside its body (see ``_cli``): a
command pays only for what it uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from _cli import (
    HISTORY_FORMATS,
    Failure,
    RacelabGroup,
    Settings,
    assert_safe_option,
    budget_option,
    build_server,
    fault_option,
    import_quietly,
    make_run_dir,
    name_list,
    not_negative,
    out_option,
    overwrite_option,
    positive,
    repeat_option,
    run_and_print,
    run_demo_command,
    scenario_of,
    server_options,
    spec_default,
    spec_options,
    swarm_and_print,
)
from demo_server.basics import exits, interrupts
from demo_server.basics.errors import RacelabError
from demo_server.basics.procs import is_loopback
from demo_server.served.config import MODES, SESSION_BACKENDS, STORES, UPDATES, WINDOWS
from reports.history.verdict import VERDICT_WORDS
from scenarios.registry import SCENARIO_NAMES

__all__ = ["main"]


@click.group(cls=RacelabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis-url", envvar="RACELAB_REDIS_URL", default=Settings.redis_url,
              show_default=True, help="Redis for the redis and session stores.")
@click.option("--postgres-dsn", envvar="RACELAB_POSTGRES_DSN", default=Settings.postgres_dsn,
              show_default=True, help="PostgreSQL for the postgres store.")
@click.option("--memcached", envvar="RACELAB_MEMCACHED", default=Settings.memcached,
              show_default=True, help="host:port of memcached.")
@click.option("--session-backend", type=click.Choice(SESSION_BACKENDS),
              envvar="RACELAB_SESSION_BACKEND", default=Settings.session_backend,
              show_default=True,
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
    # SIGINT, SIGTERM and SIGHUP all stop cleanly (demo_server.basics.interrupts).
    interrupts.install()
    ctx.obj = Settings(redis_url=redis_url, postgres_dsn=postgres_dsn, memcached=memcached,
                       session_backend=session_backend, start_services=start_services)


@main.command()
@server_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (loopback unless --allow-remote).")
@click.option("--allow-remote", is_flag=True,
              help="Allow a --host other machines reach (0.0.0.0, ::, a LAN address): "
              "the server answers anyone, with no authentication.")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Port (default: a free one).")
@click.option("--run-dir", "run_dir_name", type=click.Path(file_okay=False), default=None,
              help="Where server logs go (default: runs/serve-TIMESTAMP).")
@overwrite_option
@click.pass_obj
def serve(settings: Settings, run_dir_name: str | None, overwrite: bool, **opts: Any) -> None:
    """Run one demo server in the foreground until Ctrl-C.

    \b
    Examples:
      racelab serve --mode gunicorn-sync --workers 2
      racelab serve --mode threaded --window yield --port 8000
      racelab serve --mode gunicorn-gthread --python 3.13t   # a free-threaded server
      racelab serve --mode gunicorn-sync --store redis --update read-write   # GET, then SET
      curl http://127.0.0.1:8000/        # the counter, as text
      racelab --start-services serve --store redis   # a private Redis if none answers
      racelab serve --host ::1           # IPv6 loopback
      racelab serve --host 0.0.0.0 --allow-remote    # a classroom's machines, on purpose
    """
    from demo_server.control.services import services_for
    from demo_server.control.supervisor import Supervisor

    build_server(settings, **opts)  # validates the options before anything starts
    run_dir = make_run_dir(run_dir_name, "serve", "--run-dir", overwrite=overwrite)
    store = opts["store"] or spec_default("store")
    with services_for(settings, [store], settings.session_backend) as settings:
        config, spec = build_server(settings, **opts)
        with Supervisor(config, spec, run_dir) as sup:
            if not is_loopback(spec.host):
                click.echo(f"warning: listening on {spec.host}: other machines can reach this "
                           "server, and it answers anyone (no authentication)", err=True)
            for url in sup.urls:
                click.echo(url)
            click.echo(
                f"serving {config.store} store"
                + (f" ({config.update} update)" if config.update != "atomic" else "")
                + f", window {config.window}, mode {spec.mode}; "
                f"logs in {run_dir}; Ctrl-C stops",
                err=True,
            )
            try:
                while sup.alive():
                    time.sleep(0.2)
            except KeyboardInterrupt:
                click.echo("stopping", err=True)
                raise
    raise Failure(f"the server exited on its own; see the logs in {run_dir}")


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
    from demo_server.control.doctor import diagnose

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



@main.command()
@spec_options("cell", "server", "swarm", "target")
@fault_option
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory, new or empty (default: runs/swarm-TIMESTAMP).")
@overwrite_option
@assert_safe_option
@click.pass_obj
def swarm(settings: Settings, out: str | None, overwrite: bool, assert_safe: bool,
          **opts: Any) -> None:
    """Run one experiment: start a server, swarm it, record every operation.

    Writes history.csv, final.json, summary.json and results.json (the one
    analysis, which it prints) into the run directory.

    \b
    Examples:
      racelab swarm --mode gunicorn-sync --store global --users 32 --requests 5000
      racelab swarm --mode threaded --window yield --burst 50 --requests 2000
      racelab swarm --mode cluster --store redis --duration 10 --processes 2
      racelab swarm --mode gunicorn-sync --store redis --update read-write   # GET, then SET
      racelab swarm --mode gunicorn-gthread --store postgres --update locked --window io
      racelab swarm --mode gunicorn-sync --store postgres --assert-safe   # a CI gate
      racelab swarm --mode gunicorn-sync --store sqlite --fault kill-worker@1s
      racelab swarm --mode threaded --store lock --out runs/lock --overwrite  # again
      racelab swarm --app app.py:app --mode gunicorn-sync --workers 3 --assert-safe
      racelab swarm --app shop:create_app() --request 'POST /buy' --value json:seat \\
          --check tickets --mode gunicorn-gthread
      racelab swarm --python 3.13t --mode gunicorn-gthread --store global   # no GIL
      racelab swarm --app app.py:app --python 3.14t --mode gunicorn-gthread --assert-safe
    """
    from demo_server.control.services import services_for
    from scenarios.run.spec import spec_from_options

    spec = spec_from_options({**opts, "session_backend": settings.session_backend})
    build_server(settings, **opts)  # validates the server options before anything starts
    run_dir = make_run_dir(out, "swarm", overwrite=overwrite)
    with services_for(settings, [spec.store], settings.session_backend) as started:
        swarm_and_print(started, spec, run_dir, assert_safe)


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
              help="Run directory, new or empty (default: runs/probe-TIMESTAMP).")
@overwrite_option
@assert_safe_option
def probe(url: str, insecure: bool, allow_remote: bool, out: str | None, overwrite: bool,
          assert_safe: bool, **opts: Any) -> None:
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
    from scenarios.run.probe import check_probe_url, run_probe
    from scenarios.run.spec import spec_from_options

    base = check_probe_url(url, allow_remote=allow_remote)
    values = {k: v for k, v in opts.items() if v not in (None, ())}
    spec = spec_from_options({**values, "app": base})  # the target: the URL, not a launch
    run_dir = make_run_dir(out, "probe", overwrite=overwrite)
    run_and_print("probe", spec, run_dir, assert_safe, lambda progress: run_probe(
        spec, base, run_dir, insecure=insecure, progress=progress))


@main.command()
@click.argument("history", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--final", "final_value", type=int, default=None, metavar="N",
              callback=not_negative, help="The counter's final value (one shared counter).")
@click.option("--final-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="final.json written by an experiment (per-process states, served counts).")
@click.option("--per-process", is_flag=True,
              help="Each server process keeps its own counter (unless final.json says).")
@click.option("--scenario", default=None,
              help="Which checkers run on a racelab history (counter, ids, ...); default: "
                   "the run's (its summary.json), else counter.")
@click.option("--format", "fmt", type=click.Choice(HISTORY_FORMATS), default="auto",
              show_default=True, help="The history's format (auto: from its content).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.pass_context
def check(ctx: click.Context, history: Path, final_value: int | None, final_file: Path | None,
          per_process: bool, scenario: str | None, fmt: str, as_json: bool) -> None:
    """Check a history for duplicates, skips, lost updates and real-time order.

    HISTORY is racelab's history.csv or history.parquet, or a Jepsen history
    (JSON or EDN), whose :f values (add/read, generate) choose the checkers.
    Anomalies name their failure mode, told from the history and the final
    state: one shared state updated in two steps, a copy per process, or
    "cannot tell".

    A history in its run directory (beside summary.json or events.json; else
    beside --final-file's) is read as the run's analysis read it: its scenario,
    its final.json, and what the run met (faults, a dead worker or load
    generator, a stop before the end) make it unknown, never safe, as racelab
    said when it ran. A Jepsen history's nemesis ops do the same.

    Exit code 0: valid; 1: anomalies found; 2: undecidable, malformed input,
    or a failure of the reader or a checker.

    \b
    Examples:
      racelab check runs/demo/history.csv --final-file runs/demo/final.json
      racelab check my-app-history.csv --final 5000
      racelab check history.csv --per-process --json | jq .counts
      racelab check history.json
    """
    def fail(message: str) -> NoReturn:
        raise Failure(message)

    if final_value is not None and final_file is not None:
        raise click.UsageError("give --final or --final-file, not both")
    try:
        from reports.analysis.check_file import check_file_modes
        from reports.analysis.results import history_context
        from reports.history.final import UnreadableFinal, read_final_file

        final: Any = final_value
        if final_file is not None:
            try:
                final = read_final_file(final_file)
            except UnreadableFinal as exc:
                fail(f"{final_file}: cannot read the final state: {exc}")
        run = history_context(history, final_file)
        problems = [run.problem] if run is not None and run.problem else []
        if run is not None:
            if final_value is None and final_file is None:  # the run's own final state
                final = run.final
                problems += [run.final_problem] if run.final_problem else []
            click.echo(f"read as its run's analysis read it: {', '.join(run.files)} "
                       f"in {run.directory}", err=True)
        if not as_json:  # import the printer while pyarrow parses (it lets go of the GIL)
            threading.Thread(target=import_quietly, args=("reports.render._check_output",),
                             daemon=True).start()
        try:
            verdict, modes, evidence = check_file_modes(
                history, None if fmt == "auto" else fmt, final=final,
                scenario=scenario or (run.scenario if run is not None else "counter"),
                per_process=per_process or (run is not None and run.per_process),
                server_problem="; ".join(problems) or None,
                reset=run.reset if run is not None else None, stated=per_process)
        except RacelabError as exc:
            fail(f"{history}: {exc}")
        if as_json:
            click.echo(json.dumps({**verdict.to_dict(), "failure_modes": modes,
                                   "sharing": evidence}, indent=2))
        else:
            from reports.render._check_output import print_verdict

            print_verdict(verdict, modes=modes, sharing=evidence)
    except (click.exceptions.Exit, click.ClickException):
        raise
    except Exception as exc:  # a crash is never "anomalies found" (exit 1)
        fail(f"{history}: racelab failed while checking it: {type(exc).__name__}: {exc}")
    ctx.exit(exits.verdict_exit(VERDICT_WORDS.get(verdict.valid, "unknown")))


@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path), metavar="RUN_DIR|HISTORY")
@click.option("--format", "fmt", type=click.Choice(("jepsen",)), default="jepsen",
              show_default=True, help="What to export to.")
@click.option("--edn", is_flag=True, help="EDN, one op map per line, instead of a JSON array.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The file to write (default: standard output).")
@click.option("--scenario", type=click.Choice(SCENARIO_NAMES), default=None,
              help="The history's scenario (ids: every op is :generate); default: the "
                   "run's summary.json, else counter.")
@click.pass_context
def export(ctx: click.Context, source: Path, fmt: str, edn: bool, out: Path | None,
           scenario: str | None) -> None:
    """Export a history as a Jepsen history (JSON, or EDN with --edn).

    One invocation and one completion per operation; incr is :add of 1 (the
    number returned rides as :new-value), read is :read, the ids scenario's ops
    are :generate. Times in ns from the first invocation, :index dense. The
    run's faults (its events.json) are :nemesis ops, so that a check of the
    export is unknown, naming them, as the run's own verdict was.

    \b
    Examples:
      racelab export runs/demo --out history.json
      racelab export runs/demo/history.csv --edn --out history.edn
      racelab check history.json
    """
    from reports.analysis.jepsen import write_jepsen
    from reports.analysis.results import run_faults
    from reports.history.table import find_history, read_history

    history = find_history(source)
    faults = run_faults(history.parent)  # the run's faults travel as nemesis ops
    if scenario is None:
        scenario = scenario_of(source if source.is_dir() else history.parent)
    try:
        table = read_history(history)
    except RacelabError as exc:
        raise Failure(f"{history}: {exc}") from None
    if out is None:
        import sys

        write_jepsen(table, sys.stdout, edn=edn, scenario=scenario, faults=faults)
        return
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            count = write_jepsen(table, handle, edn=edn, scenario=scenario, faults=faults)
        partial.replace(out)
    except OSError as exc:
        with contextlib.suppress(OSError):  # a parent that is a file: no partial to remove
            partial.unlink(missing_ok=True)
        raise Failure(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {count:,} ops ({len(table):,} operations) to {out}", err=True)


@main.command()
@click.option("--preset", default="classroom", show_default=True, metavar="NAME|FILE",
              help="classroom, quick, full, or a TOML file of your own.")
@out_option
@overwrite_option
@click.option("--open", "open_report", is_flag=True, help="Open the HTML report when done.")
@budget_option
@repeat_option
@spec_options(only=("python",))
@click.option("--json", "as_json", is_flag=True, help="Print results.json instead of the table.")
@assert_safe_option
@click.pass_obj
def demo(settings: Settings, preset: str, out: str | None, overwrite: bool, open_report: bool,
         budget: float | None, as_json: bool, assert_safe: bool,
         repeat: int | None, python: str | None) -> None:
    """The whole answer in one command: run a preset matrix and write the HTML report.

    Runs every cell (server up, Locust swarm, final state, server down, check),
    prints the table and the report's path. Anomalies in the naive cells are
    the demo's expected result; the exit code says whether the run itself worked.

    \b
    Examples:
      racelab demo                         # classroom preset, under a minute on 2 cores
      racelab demo --preset quick --open   # about five seconds, then open the report
      racelab demo --preset my-grid.toml --budget 300
      racelab demo --preset quick --repeat 5  # how often each cell races, k of 5
      racelab demo --preset quick --out runs/quick --overwrite  # replace an earlier run
      racelab demo --preset quick --python 3.13t   # every cell served by a free-threaded 3.13
    """
    from scenarios.run.presets import load_preset, on_python

    loaded = load_preset(preset)
    cells = loaded.cells if python is None else on_python(loaded.cells, python)
    run_demo_command(settings, cells, preset=loaded.name,
                     nominal_budget_s=loaded.budget_s, budget=budget, out=out,
                     open_report=open_report, as_json=as_json, assert_safe=assert_safe,
                     repeat=repeat, interpreters=loaded.interpreters, overwrite=overwrite)


@main.command()
@click.option("--modes", default="threaded,gunicorn-sync", show_default=True,
              callback=name_list("mode", MODES), help="Comma-separated modes.")
@click.option("--stores", default="global,lock,sqlite", show_default=True,
              callback=name_list("store", STORES), help="Comma-separated stores.")
@click.option("--windows", default="none", show_default=True,
              callback=name_list("window", WINDOWS), help="Comma-separated windows.")
@click.option("--updates", default="atomic", show_default=True,
              callback=name_list("update", UPDATES),
              help="Comma-separated updates of the shared stores (atomic, read-write, locked, "
                   "optimistic), for the stores that offer them.")
@spec_options("server", "swarm", "target", defaults={"requests": 400})
@spec_options(only=("scenario", "work_us", "stock"))
@fault_option
@out_option
@overwrite_option
@click.option("--open", "open_report", is_flag=True, help="Open the HTML report when done.")
@budget_option
@repeat_option
@click.option("--json", "as_json", is_flag=True, help="Print results.json instead of the table.")
@assert_safe_option
@click.pass_obj
def matrix(settings: Settings, modes: list[str], stores: list[str], windows: list[str],
           updates: list[str], out: str | None, overwrite: bool, open_report: bool,
           budget: float | None, as_json: bool, assert_safe: bool, repeat: int | None,
           **sizes: Any) -> None:
    """Run your own grid of modes x stores x windows (x updates) and write the report.

    Windows apply to the global and lock stores and to the read-write and locked
    updates; other cells run once per mode, with window none.

    \b
    Examples:
      racelab matrix --modes threaded,gevent --stores global,lock --windows none,yield
      racelab matrix --modes gunicorn-sync,cluster --stores redis,postgres --requests 2000
      racelab matrix --modes gunicorn-sync --stores redis,postgres \\
          --updates atomic,read-write,locked,optimistic
      racelab matrix --app app.py:app --modes threaded,gunicorn-sync,gevent --assert-safe
      racelab matrix --python 3.13t --modes threaded,gunicorn-gthread --stores global,lock
    """
    from scenarios.run.presets import expand

    faults = tuple(sizes.pop("faults", ()) or ())
    given = {k: v for k, v in sizes.items() if v not in (None, ())}
    cells = expand("command line",
                   [{"stores": stores, "windows": windows, "updates": updates, "modes": modes,
                     **given}], {}, {})
    if faults:
        cells = tuple(dataclasses.replace(cell, faults=faults) for cell in cells)
    # Measured on 2 cores: about 0.4 s per cell to start and stop its server and Locust,
    # about 1,200 requests a second, and 3 s for the interpreter table and the report.
    nominal = 3 + sum(0.4 + cell.requests / 1200 for cell in cells)
    run_demo_command(settings, cells, preset="matrix", nominal_budget_s=nominal,
                      budget=budget, out=out, open_report=open_report, as_json=as_json,
                      assert_safe=assert_safe, repeat=repeat, overwrite=overwrite)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]), default="html",
              show_default=True, help="html: one self-contained file; md: Markdown with "
              "images in plots/; json: results.json to stdout.")
@click.option("--open", "open_report", is_flag=True, help="Open the report in a browser.")
@click.option("--svg", is_flag=True, help="Draw the plots as SVG instead of PNG.")
@click.option("--width", type=int, default=None, callback=positive,
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

    from reports.analysis.results import load_results
    from reports.render.html import render_run
    from reports.render.table import print_table

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
@click.option("--python", "pythons", multiple=True, metavar="PYTHON",
              help="Also this interpreter: a path, a command or a version (repeatable); those "
              "on PATH, pyenv's, uv's and racelab's cache are found by themselves.")
@click.option("--threads", type=int, default=8, show_default=True, callback=positive)
@click.option("--increments", type=int, default=200_000, show_default=True, callback=positive,
              help="Increments per thread (the yield window runs a hundredth).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def interpreters(pythons: tuple[str, ...], threads: int, increments: int, as_json: bool) -> None:
    """Race the original SomeObj in threads under every Python on this machine.

    No server: threads call the question's query() in a tight loop, with window
    none (the literal code), call and yield. How many increments are lost shows
    where each interpreter lets another thread in between the read and the write.
    A free-threaded build is also checked as a server runs it: does its GIL stay
    off once Flask and the server are imported?

    \b
    Examples:
      racelab interpreters
      racelab interpreters --python 3.13t --threads 4
      racelab interpreters --python ~/.local/bin/python3.14t --json
    """
    from rich.console import Console
    from rich.table import Table

    from scenarios.run.interpreters import (
        check_python,
        failed_named,
        find_interpreters,
        run_interpreters,
    )

    pythons = tuple(check_python(p) for p in pythons)
    results = run_interpreters(find_interpreters(pythons), threads, increments,
                               check_server=True)
    failed = failed_named(results, pythons)  # one you named that cannot run: bad input
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
        if failed:
            raise Failure(failed)
        return
    table = Table("python", "build", "GIL", "GIL with the server", "none (the original)",
                  "call", "yield", title=f"Increments lost by {threads} threads, per window")
    for r in results:
        if r.error:
            table.add_row(r.python, "", "", "", f"could not run: {r.error}", "", "")
            continue
        cells = []
        for window in ("none", "call", "yield"):
            lost, expected = r.lost(window) or (0, 0)
            style = "red" if lost else "green"
            cells.append(f"[{style}]{lost / expected:.0%}[/] ({lost:,})" if expected else "")
        server = r.server or {}
        with_server = "-" if not server else (
            f"not checked: {server.get('reason')}" if not server.get("checked") else
            ("on" + (f" ({', '.join(server['gil_enabled_by'])})"
                     if server.get("gil_enabled_by") else "")) if server.get("gil") else "off")
        table.add_row(f"{r.implementation} {r.version}",
                      "free-threaded" if r.build == "free-threaded" else "GIL",
                      "on" if r.gil else "off", with_server, *cells)
    Console().print(table)
    if failed:
        raise Failure(failed)


if __name__ == "__main__":
    main()

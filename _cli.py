"""What racelab's commands share: settings, the error-handling group, options, printing.

The options of every command that configures an experiment derive from
``scenarios.run.spec.SETTINGS`` (``spec_options``); ``run_and_print`` and
``run_demo_command`` run one experiment or a matrix with progress on stderr and
print the result. Every exit code comes from ``demo_server.basics.exits``.

The packages' heavier modules (the runners, the analysis, the renderers, pyarrow
and matplotlib behind them) are imported inside the commands that use them, so
that ``racelab --help`` and ``racelab check`` start in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import click

from demo_server.basics import defaults, exits, interrupts
from demo_server.basics.errors import RacelabError
from demo_server.control.faults import check_store_faults
from demo_server.control.modes import LaunchSpec
from demo_server.served.config import Connections, ServerConfig

_STARTED = time.time()

__all__ = [
    "HISTORY_FORMATS",
    "Failure",
    "RacelabGroup",
    "Settings",
    "assert_safe_option",
    "budget_option",
    "build_server",
    "command_started",
    "fault_option",
    "import_quietly",
    "make_run_dir",
    "name_list",
    "not_negative",
    "out_option",
    "overwrite_option",
    "positive",
    "repeat_option",
    "run_and_print",
    "run_demo_command",
    "scenario_of",
    "server_options",
    "spec_default",
    "spec_options",
    "swarm_and_print",
]


@dataclasses.dataclass(frozen=True)
class Settings(Connections):
    """Options shared by every command (``ctx.obj``): where the stores are, and whether
    racelab may start private ones."""

    start_services: bool = False


class Failure(click.ClickException):
    """One line on stderr: bad input, or a job racelab could not do (never "race")."""

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        """The table's code for bad input, read when the command ends."""
        return exits.BAD_INPUT


class RacelabGroup(click.Group):
    """A click group that turns every error into one line on stderr and exit 2.

    Usage mistakes (an unknown option, a value out of bounds, an empty or blank
    value) and library errors alike: exit 1 is kept for "race". An error racelab
    did not expect is one line too, unless ``$RACELAB_TRACEBACK`` is set.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _refuse_blank(self)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _refuse_blank(cmd)
        super().add_command(cmd, name)

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:  # the group's own options: shown as one line
            raise Failure(_one_line(exc)) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RacelabError as exc:  # a bad app, URL, value or file; a store out of reach
            Failure(str(exc)).show()
            ctx.exit(exits.BAD_INPUT)
        except click.ClickException as exc:  # usage mistakes too; exit 1 is kept for "race"
            Failure(_one_line(exc)).show()
            ctx.exit(exits.BAD_INPUT)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # a crash is never "race" (exit 1), nor a traceback
            if os.environ.get(defaults.TRACEBACK_ENV):
                raise
            detail = (str(exc).strip().splitlines() or [""])[0]
            Failure(f"racelab failed: {type(exc).__name__}: {detail} (set "
                    f"{defaults.TRACEBACK_ENV}=1 to see where)").show()
            ctx.exit(exits.FAILED)
        except KeyboardInterrupt as exc:
            code = getattr(exc, "exit_code", None) or exits.signal_exit(
                interrupts.first_signal() or signal.SIGINT)
            name = signal.Signals(code - 128).name if code > 128 else "SIGINT"
            click.echo(f"racelab: stopped by {name}; everything it started was stopped",
                       err=True)
            ctx.exit(code)


def _one_line(exc: click.ClickException) -> str:
    """A click error as one line: its message, and for a usage mistake where help is."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        message = f"{message.rstrip('.')}; see '{ctx.command_path} --help'"
    return message


class _NotBlank(click.ParamType):
    """A text or path parameter that refuses a value that is empty or only blanks.

    ``--app ""`` (an unset variable in a CI script) would otherwise read as "not
    given" and test racelab's own app instead: bad input, refused at the boundary.
    """

    def __init__(self, inner: click.ParamType) -> None:
        self.inner = inner
        self.name = inner.name

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("must not be empty or blank", param, ctx)
        return self.inner.convert(value, param, ctx)

    def __getattr__(self, name: str) -> Any:  # metavar, completion, info: the inner type's
        return getattr(self.inner, name)

    def get_metavar(self, *args: Any, **kwargs: Any) -> str | None:
        return self.inner.get_metavar(*args, **kwargs)

    def to_info_dict(self) -> Any:
        return self.inner.to_info_dict()

    def split_envvar_value(self, rv: str) -> Any:
        return self.inner.split_envvar_value(rv)

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> Any:
        return self.inner.shell_complete(ctx, param, incomplete)


def _refuse_blank(command: click.Command) -> None:
    """Make every text and path parameter of ``command`` refuse an empty or blank value."""
    for param in command.params:
        if isinstance(param.type, (click.types.StringParamType, click.Path)):
            param.type = _NotBlank(param.type)


def positive(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """A click callback: at least 1 (or not given)."""
    if value is not None and value < 1:
        raise click.BadParameter(f"must be at least 1, got {value}")
    return value


def spec_options(*groups: str, only: tuple[str, ...] = (), skip: tuple[str, ...] = (),
                 defaults: dict[str, Any] | None = None) -> Any:
    """Click options for the ``ExperimentSpec`` settings of ``groups`` (or ``only`` these).

    Every option is derived from its ``scenarios.run.spec.Setting``: flag, type,
    bounds, help and default. Options default to None ("not given") and the
    spec's default applies; ``defaults`` names the default shown where the
    command applies another one (a matrix cell's ``MATRIX_DEFAULTS``).
    """
    from scenarios.run.spec import SETTINGS

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
            default = defaults.get(st.name, spec_default(st.name))
            shown = f"{default:g}" if isinstance(default, float) else default
            suffix = f"  [default: {shown}]" if shown != "" else ""
            func = click.option(st.flag, st.name, type=kind, default=None,
                                help=f"{st.help}{suffix}",
                                callback=_finite if st.kind == "float" else None)(func)
        return func

    return decorate


def make_run_dir(out: str | Path | None, name: str, hint: str = "--out",
                 overwrite: bool = False) -> Path:
    """The run directory: ``out``, or ``runs/NAME-TIMESTAMP``; new or empty, absolute.

    A run directory holds one run: one that already holds files is refused, or
    emptied first with ``overwrite`` (``demo_server.basics.files.prepare_run_dir``).

    Raises:
        Failure: an empty name, a path that cannot be a directory, one that is not
            writable, or one that holds files (one line, exit 2).
    """
    from demo_server.basics.files import RunDirError, prepare_run_dir

    if out is not None and not str(out).strip():
        raise Failure(f"{hint}: give a directory name")
    try:
        return prepare_run_dir(out, name, overwrite=overwrite)
    except RunDirError as exc:
        raise Failure(f"{hint}: {exc}") from None


def overwrite_option(func: Any) -> Any:
    """``--overwrite``: empty a run directory that holds an earlier run before this one."""
    return click.option(
        "--overwrite", is_flag=True,
        help="Empty the run directory first if it holds an earlier run (without it, a "
             "directory that holds files is refused).")(func)


fault_option = click.option(
    "--fault", "faults", multiple=True, metavar="SPEC",
    help="Inject a fault during the load (repeatable): kill-worker@2s, stop-store@1s+2s "
    "(stopped for 2 s), pause-store@1s+2s. Only stores racelab started can be stopped.")


assert_safe_option = click.option(
    "--assert-safe", is_flag=True,
    help="Exit 0 if every experiment is safe, 1 if any races, 2 if any is unknown "
    "(a crashed server, an interrupted run, too many unknown outcomes).")


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


def _bound(value: float | None) -> int | None:
    return None if value is None else int(value)


def spec_default(name: str) -> Any:
    from scenarios.run.spec import ExperimentSpec

    return ExperimentSpec.__dataclass_fields__[name].default


# Options shared by every command that launches a server.
server_options = spec_options(only=("mode", "store", "window", "update", "work_us", "workers",
                                    "threads", "instances", "python", "scenario"))


def build_server(settings: Settings, **opts: Any) -> tuple[ServerConfig, LaunchSpec]:
    """Turn the shared server options into a config and a launch spec.

    The interpreter ``--python`` names is found, and made ready, here: a name that
    finds nothing, or one that cannot serve this mode or store, is one line and exit
    2 before anything starts.
    """
    from scenarios.run.spec import spec_from_options

    spec = spec_from_options({k: opts.get(k) for k in (
        "scenario", "store", "window", "update", "work_us", "mode", "workers", "threads",
        "instances", "python", "app")})
    spec = spec.connected(settings)
    return spec.server_config(), spec.launch_spec(
        opts.get("host", defaults.HOST), opts.get("port", 0) or 0,
        python=spec.server_python(), allow_remote=bool(opts.get("allow_remote")))


def swarm_and_print(settings: Settings, spec: Any, run_dir: Path, assert_safe: bool) -> None:
    """``racelab swarm``'s body: one experiment on the stores ``settings`` points at."""
    from scenarios.run.experiment import run_experiment

    run_and_print("swarm", spec, run_dir, assert_safe, lambda progress: run_experiment(
        spec.connected(settings), run_dir, progress=progress))


def run_and_print(verb: str, spec: Any, run_dir: Path, assert_safe: bool,
                  run: Any) -> None:
    """Run one experiment with a progress bar, analyse it once, print the analysis.

    ``run(progress)`` returns the summary. A signal still analyses what was
    recorded (marked partial) before it stops the command.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from reports.analysis.results import analyse_experiment
    from reports.history.verdict import verdict_word
    from reports.render._check_output import print_experiment

    err = Console(stderr=True)
    # Off a terminal the bar would only leave an empty line in front of any error.
    with Progress(TextColumn(f"[bold]{verb}"), BarColumn(), TextColumn("{task.completed} ops"),
                  TimeElapsedColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
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
        raise SystemExit(exits.verdict_exit(verdict_word(entry)))
    if summary["server"]["died"] or summary["status"] != "ok":
        raise Failure(f"{summary['error'] or f'the {verb} failed'}; see {run_dir}")


def not_negative(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """A click callback for ``--final``: a counter's value, never below 0."""
    if value is not None and value < 0:
        raise click.BadParameter(f"a counter's final value is never negative, got {value}")
    return value


HISTORY_FORMATS = ("auto", "csv", "parquet", "jepsen-json", "jepsen-edn")


def import_quietly(module: str) -> None:
    """Import a module ahead of its use; a failure shows where it is used, not here."""
    import importlib

    with contextlib.suppress(Exception):
        importlib.import_module(module)


def scenario_of(run_dir: Path) -> str:
    """The scenario a run directory's summary.json names; ``counter`` when it names none."""
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


def run_demo_command(
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
    interpreters: bool = True,
    overwrite: bool = False,
) -> None:
    """Shared body of ``demo`` and ``matrix``: run, print the table, say where the report is.

    The run's wall time counts from this process's start.
    """
    started = command_started()
    from demo_server.control.interpreter import resolve

    # An interpreter that cannot be found is bad input, before anything starts; an
    # optional cell's (the classroom's free-threaded ones) is skipped by the run instead.
    for python in sorted({cell.python for cell in cells if cell.python and not cell.optional}):
        resolve(python)
    from demo_server.control.supervisor import check_app_loads

    for app in dict.fromkeys(cell.app for cell in cells if cell.app):
        check_app_loads(app)  # an app that cannot be imported: one line, not a failed column
    run_dir = make_run_dir(out, preset, overwrite=overwrite)
    from scenarios.run.demo import start_launchers

    # The zygotes import Locust and the servers while this process imports the rest.
    with start_launchers(cells) as launchers:
        from rich.console import Console

        from demo_server.control.services import services_for

        if repeat is not None:
            cells = [dataclasses.replace(cell, repeat=repeat) for cell in cells]
        err = Console(stderr=True, highlight=False)
        with services_for(settings, sorted({cell.store for cell in cells}),
                          settings.session_backend) as running:
            for cell in cells:  # a store fault racelab could not carry out: before any cell
                check_store_faults(cell.faults, "" if cell.app else cell.store,
                                   running.session_backend, running)
            _run_cells(running, cells, run_dir, err, preset=preset,
                       nominal_budget_s=nominal_budget_s, budget=budget, as_json=as_json,
                       open_report=open_report, assert_safe=assert_safe,
                       interpreters=interpreters, launchers=launchers, started=started)


def command_started() -> float:
    """When the command started: when ``cli`` imported this module (``time.time()``).

    Only the interpreter's own start comes before (about 0.05 s); psutil's process
    start time would include it, but the boot time it is counted from is rounded to
    the second on Linux.
    """
    return _STARTED


def _run_cells(settings: Settings, cells: Any, run_dir: Path, err: Any, *, preset: str,
               nominal_budget_s: float, budget: float | None, as_json: bool,
               open_report: bool, assert_safe: bool, interpreters: bool,
               launchers: Any, started: float) -> None:
    from reports.render.table import print_table
    from scenarios.run.demo import run_demo
    from scenarios.run.progress import MatrixConsoleProgress

    def on_skip(store: str, reason: str) -> None:
        err.print(f"skipped {store}: {reason} (see racelab doctor)")

    def on_plan(count: int) -> None:
        err.print(f"racelab {preset}: {count} cells; writing to {run_dir}")

    progress = MatrixConsoleProgress(err, quiet=as_json)
    try:
        result = run_demo(cells, run_dir, settings, preset=preset, budget_s=budget,
                          nominal_budget_s=nominal_budget_s, progress=progress,
                          on_skip=on_skip, on_plan=on_plan, interpreters=interpreters,
                          launchers=launchers, started=started)
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
        wall = time.time() - started  # from the command's start to this line, table included
        err.print(f"time: {wall:.1f} s in all for {timing['load_s']:.1f} s of load "
                  f"over {timing['cells']} cells ({wall / timing['load_s']:.1f}x)")
    report = result.written.get("html")
    err.print(f"report: {report}" if report else f"results: {result.written['results']}")
    if open_report and report:
        import webbrowser

        webbrowser.open(report.resolve().as_uri())
    if outcome.interrupted:
        raise SystemExit(exits.signal_exit(interrupts.first_signal() or signal.SIGINT))
    if assert_safe:
        from reports.history.verdict import verdict_word

        words = (verdict_word(e) for e in result.results["experiments"])
        raise SystemExit(exits.verdicts_exit(words))
    if failed:
        raise Failure(
            f"{len(failed)} of {len(outcome.outcomes)} cells could not be run "
            f"(shown as unknown in the report); first: {failed[0].cell.label}: "
            f"{failed[0].error.splitlines()[0] if failed[0].error else ''}"
        )


budget_option = click.option(
    "--budget", type=click.FloatRange(min=5, min_open=False), default=None, metavar="SECONDS",
    callback=_finite, help="Scale the swarms so the run takes about this long.",
)


repeat_option = click.option(
    "--repeat", type=click.IntRange(min=1), default=None, metavar="N",
    help="Run each cell N times and report how often it raced (default: the preset's).",
)


out_option = click.option(
    "--out", type=click.Path(file_okay=False), default=None,
    help="Run directory (default: runs/NAME-TIMESTAMP).",
)


def name_list(kind: str, allowed: tuple[str, ...]) -> Any:
    """A click callback parsing a comma-separated list of ``kind`` names from ``allowed``."""
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


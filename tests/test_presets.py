"""Matrix presets: shipped ones load, user files are validated with one clear error."""

from __future__ import annotations

import contextlib

import pytest

from demo_server import ConfigError
from scenarios.run.presets import load_preset, preset_names


def test_shipped_presets_load() -> None:
    """classroom, quick and full are shipped and expand to cells."""
    assert {"classroom", "quick", "full"} <= set(preset_names())
    for name in ("classroom", "quick", "full"):
        assert load_preset(name).cells


def test_classroom_covers_every_mode_and_embedded_store() -> None:
    """classroom: all seven modes, the five embedded stores, windows none and yield."""
    cells = load_preset("classroom").cells
    assert {c.mode for c in cells} == {"single", "threaded", "processes", "gunicorn-sync",
                                       "gunicorn-gthread", "gevent", "cluster"}
    assert {"global", "lock", "manager", "sqlite", "g"} <= {c.store for c in cells}
    assert {c.window for c in cells} == {"none", "yield"}
    assert {c.store for c in cells if c.optional and not c.python} == {
        "redis", "postgres", "memcached", "session"}
    assert all(c.optional for c in cells if c.python)  # free-threaded: only where one is found


def test_windows_apply_only_to_windowed_stores(tmp_path) -> None:
    """A group with windows none and yield runs sqlite once, with window none."""
    path = tmp_path / "p.toml"
    path.write_text('[[cells]]\nstores=["global","sqlite"]\nwindows=["none","yield"]\n'
                    'modes=["threaded"]\n')
    ids = [c.id for c in load_preset(str(path)).cells]
    assert ids == ["global-none-threaded", "global-yield-threaded", "sqlite-none-threaded"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "needs at least one"),
        ("[[cells]]\nstores=['nope']\nwindows=['none']\nmodes=['threaded']\n",
         "unknown store 'nope'"),
        ("[[cells]]\nstores=['global']\nwindows=['none']\nmodes=['x']\n", "unknown mode 'x'"),
        ("[[cells]]\nstores=['global']\nwindows=['none']\nmodes=['single']\nusers=0\n",
         "users must be between 1 and 10,000, got 0"),
        ("colour = 1\n[[cells]]\nstores=['g']\nwindows=['none']\nmodes=['single']\n",
         "unknown key 'colour'"),
        ("[[cells]\n", "invalid TOML"),
        ("interpreters = 'no'\n[[cells]]\nstores=['g']\nwindows=['none']\nmodes=['single']\n",
         "interpreters must be true or false"),
    ],
)
def test_bad_preset_files_are_one_clear_error(tmp_path, text: str, message: str) -> None:
    """Unknown names, bad counts, unknown keys and broken TOML name the file and the problem."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_preset(str(path))


def test_unknown_preset_name_lists_the_shipped_ones() -> None:
    """A name that is neither shipped nor a file lists the choices."""
    with pytest.raises(ConfigError, match="classroom"):
        load_preset("nonesuch")


def test_quick_leaves_the_interpreter_table_to_classroom() -> None:
    """quick races no interpreters (its seconds go to the cells); classroom does."""
    assert load_preset("quick").interpreters is False
    assert load_preset("classroom").interpreters is True


def test_classroom_free_threaded_cells_are_left_out_where_there_is_none(
        tmp_path, monkeypatch) -> None:
    """The classroom's free-threaded cells are optional: where no free-threaded Python is
    found they are skipped, saying how to get one, and every other cell stays."""
    from demo_server.control.interpreter import FREE_THREADED, resolve
    from demo_server.served.config import Connections
    from scenarios.run.matrix import ready_interpreters

    monkeypatch.setenv("RACELAB_CACHE", str(tmp_path))  # not the cache ./run free-threaded fills
    with contextlib.suppress(ConfigError):
        found = resolve(FREE_THREADED)
        pytest.skip(f"a free-threaded Python outside racelab's cache: {found.path}")
    cells = load_preset("classroom").cells
    free = [c for c in cells if c.python]
    assert {(c.store, c.mode) for c in free} == {(s, m) for s in ("global", "lock")
                                                 for m in ("threaded", "gunicorn-gthread")}
    kept, skipped = ready_interpreters(cells, Connections())
    assert kept == [c for c in cells if not c.python]
    ((name, reason),) = skipped
    assert name == "python free-threaded" and "./run free-threaded" in reason


def test_quick_names_no_interpreter() -> None:
    """quick stays as fast as it was: none of its cells asks for another interpreter."""
    assert not [c for c in load_preset("quick").cells if c.python]

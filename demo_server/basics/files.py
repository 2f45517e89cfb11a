"""Files and folders racelab writes into a run directory: made afresh, never through a link.

A run directory belongs to one run. Whatever racelab writes there is created
without following a symbolic link: a link found where a file or folder is to be
written is replaced by the file or folder itself, and its target is never
touched. Files written whole (``write_text``, ``write_bytes``) go to a fresh
temporary name created exclusively, then take the final name with
``os.replace``, which replaces a link rather than writing through it; streams
(``open_new``) open with ``O_NOFOLLOW``; a log starts empty (``fresh_file``).

``prepare_run_dir`` gives a command its run directory: new, or refused when it
already holds files, or emptied first when the user asked for it (``--overwrite``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import IO, Any

from demo_server.basics.errors import RacelabError

__all__ = [
    "MARKER",
    "RunDirError",
    "fresh_dir",
    "fresh_file",
    "new_dir",
    "open_new",
    "prepare_run_dir",
    "write_bytes",
    "write_text",
]

#: The file that marks a directory as a racelab run directory (``--overwrite`` empties
#: only those, or one holding an older run's ``results.json`` or ``summary.json``).
MARKER = ".racelab-run"
_OLD_SIGNS = ("results.json", "summary.json")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class RunDirError(RacelabError):
    """A run directory cannot be used: not empty, not racelab's to empty, not writable."""


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _open_fd(path: Path, flags: int) -> int:
    """``os.open`` without following a link at ``path``; a link there is removed first."""
    flags |= _NOFOLLOW | _CLOEXEC
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EMLINK) or not _is_link(path):
            raise
    os.unlink(path)  # the link, never its target
    return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)


def open_new(path: Path | str, mode: str = "w", *, append: bool = False,
             **kwargs: Any) -> IO[Any]:
    """Open ``path`` for writing, truncated (or appended to), never through a link.

    Args:
        path: the file.
        mode: ``"w"`` (text) or ``"wb"``; the file is always opened for writing.
        append: keep what the file holds and write after it.
        **kwargs: passed to ``open`` (``encoding``, ``newline``).
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = _open_fd(Path(path), flags)
    binary = "b" in mode
    if not binary:
        kwargs.setdefault("encoding", "utf-8")
    try:
        return open(fd, ("a" if append else "w") + ("b" if binary else ""), **kwargs)
    except BaseException:
        os.close(fd)
        raise


def fresh_file(path: Path | str) -> Path:
    """Make ``path`` an empty regular file of its own (a log that starts fresh)."""
    path = Path(path)
    os.close(_open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
    return path


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole: a new file renamed over the old one (or a link)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
    try:
        with open(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: Path | str, text: str) -> Path:
    """``write_bytes`` of ``text`` in UTF-8."""
    return write_bytes(path, text.encode("utf-8"))


def fresh_dir(path: Path | str) -> Path:
    """Make sure ``path`` is a real folder (a link or a file there is replaced); keep its files."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISDIR(mode):
        os.unlink(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_dir(path: Path | str) -> Path:
    """Make ``path`` a new, empty folder: whatever was there (a link, a file, a tree) goes."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    path.mkdir(parents=True)
    return path


def _empty(run_dir: Path) -> None:
    """Remove everything inside ``run_dir``; links are removed, never followed."""
    for entry in run_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def prepare_run_dir(run_dir: Path | str | None, name: str, *, overwrite: bool = False,
                    command: str = "") -> Path:
    """A run directory for one run: created, empty, marked as racelab's; its absolute path.

    Args:
        run_dir: the directory the user named, or None for ``runs/NAME-TIMESTAMP``
            (``-2``, ``-3``... when that name is taken).
        name: the run's kind (``swarm``, ``demo``...), for the default name.
        overwrite: empty a directory that already holds files, if it is a racelab run
            directory (it holds ``.racelab-run``, or an older run's ``results.json``
            or ``summary.json``).
        command: what the marker records as having made the directory.

    Raises:
        RunDirError: the directory holds files (and ``overwrite`` is off, or it is
            not a run directory), is not a directory, or cannot be written.
    """
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name).strip(".") or "run"
    try:
        if run_dir is None:
            path = _new_default(Path("runs"), time.strftime(f"{safe}-%Y%m%d-%H%M%S"))
        else:
            path = Path(run_dir)
            if path.exists() and not path.is_dir():
                raise RunDirError(f"{path} exists and is not a directory")
            if path.is_dir() and any(path.iterdir()):
                if not overwrite:
                    raise RunDirError(
                        f"{path} is not empty: a run directory holds one run; give a new "
                        "directory, or --overwrite to empty it first")
                signs = [n for n in (MARKER, *_OLD_SIGNS) if (path / n).is_file()]
                if not signs:
                    raise RunDirError(
                        f"{path} holds files that are not a racelab run (no {MARKER}, "
                        "results.json or summary.json); --overwrite empties only run "
                        "directories: give a new directory")
                _empty(path)
            path.mkdir(parents=True, exist_ok=True)
        write_text(path / MARKER, json.dumps({"made_by": command or f"racelab {name}",
                                              "created_wall": time.time()}) + "\n")
    except OSError as exc:
        where = run_dir if run_dir is not None else "runs/"
        raise RunDirError(f"cannot use {where} as a run directory: "
                          f"{exc.strerror or exc}") from None
    return path.resolve()


def _new_default(parent: Path, stem: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    for number in range(1, 1000):
        path = parent / (stem if number == 1 else f"{stem}-{number}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunDirError(f"{parent} already holds 999 runs named {stem}")

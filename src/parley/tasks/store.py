"""Reading and writing `tasks.json`: found via `TASK_FILE` or the current directory, written atomically."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from parley.tasks.models import TaskFile

DEFAULT_NAME = "tasks.json"


class TaskFileError(Exception):
    """`tasks.json` is missing, unreadable or not a valid task list; the message says which and where."""


def task_file_path() -> Path:
    """`TASK_FILE` if set, else `./tasks.json`."""
    return Path(os.environ.get("TASK_FILE") or DEFAULT_NAME)


def load(path: Path) -> TaskFile:
    """Read and validate a task file."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskFileError(
            f"{path}: no task file; run `parley tasks parse-prd FILE` or `parley tasks initialize-project`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TaskFileError(
            f"{path}: corrupt task file (invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    try:
        return TaskFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        msg = first["msg"].removeprefix("Value error, ")
        raise TaskFileError(f"{path}: not a valid task file: {where}: {msg}") from None


def load_or_new(path: Path, project: str = "") -> TaskFile:
    """The task file at `path`, or a new empty one if there is none (a corrupt file is still an error)."""
    if not path.exists():
        return TaskFile(project=project)
    return load(path)


def save(path: Path, tasks: TaskFile) -> None:
    """Write `tasks` to `path` atomically: a temporary file in the same folder, fsynced, then renamed."""
    text = json.dumps(tasks.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise TaskFileError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise TaskFileError(f"{path}: cannot write: {exc.strerror or exc}") from None


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of `path`.

    The lock is taken on the file's folder (the file itself is replaced on every write, so a lock on it
    would not be seen by the next reader), so two `parley tasks` commands never lose each other's update.
    """
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise TaskFileError(f"{path}: cannot open its folder: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

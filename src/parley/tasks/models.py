"""The task list kept in `tasks.json`: tasks, their statuses, priorities and dependencies."""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Status = Literal["pending", "in-progress", "done", "deferred"]
Priority = Literal["high", "medium", "low"]

STATUSES: tuple[Status, ...] = ("pending", "in-progress", "done", "deferred")
#: Sort rank: lower comes first in `next-task`.
PRIORITY_RANK: dict[Priority, int] = {"high": 0, "medium": 1, "low": 2}

FORMAT_VERSION = 1


class Task(BaseModel):
    """One unit of work taken from a PRD.

    `id` is the short number people type; `key` is the identity used when the PRD is parsed again
    (section path + normalised title), so re-parsing keeps ids and statuses.
    """

    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=1)
    key: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str = ""
    acceptance: str = ""
    status: Status = "pending"
    priority: Priority = "medium"
    dependencies: list[int] = Field(default_factory=list)
    section: str = Field("", description="The PRD heading path the task came from, joined with ' > '.")


class TaskFile(BaseModel):
    """The whole `tasks.json` document."""

    model_config = ConfigDict(extra="forbid")

    version: int = FORMAT_VERSION
    project: str = ""
    source: str = Field("", description="The PRD the tasks were last parsed from.")
    tasks: list[Task] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> TaskFile:
        ids = [t.id for t in self.tasks]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"task ids must be unique; repeated: {', '.join(map(str, dupes))}")
        known = set(ids)
        for task in self.tasks:
            missing = [d for d in task.dependencies if d not in known]
            if missing:
                raise ValueError(f"task {task.id} depends on unknown task(s) {', '.join(map(str, missing))}")
        return self

    def get(self, task_id: int) -> Task:
        """The task with `task_id`; `KeyError` with a readable message otherwise."""
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(f"unknown task id {task_id} ({len(self.tasks)} tasks in the list)")


class ProposedTask(BaseModel):
    """A task as a parser proposes it, before it gets an id: dependencies name other tasks by key."""

    key: str
    title: str
    description: str = ""
    acceptance: str = ""
    priority: Priority = "medium"
    section: str = ""
    depends_on: list[str] = Field(default_factory=list)


_MARKUP = re.compile(r"[`*_~\[\]()]")
_NON_WORD = re.compile(r"[^\w]+")


def normalize(text: str) -> str:
    """Lower-case words only: what two spellings of the same title have in common."""
    return _NON_WORD.sub(" ", _MARKUP.sub("", text).lower()).strip()


def task_key(section_path: list[str], title: str) -> str:
    """Stable identity of a task: a short hash of its normalised section path and title."""
    raw = " > ".join(normalize(s) for s in section_path) + " :: " + normalize(title)
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()[:12]

"""Planning over a task list: merging a parse into it (stable ids, kept statuses), choosing the next task."""

from __future__ import annotations

from dataclasses import dataclass, field

from parley.tasks.models import PRIORITY_RANK, ProposedTask, Task, TaskFile


@dataclass
class MergeResult:
    """What a parse changed: the new file plus the ids added, changed, unchanged and no longer in the PRD."""

    tasks: TaskFile
    added: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    not_in_prd: list[int] = field(default_factory=list)


def merge(existing: TaskFile, proposed: list[ProposedTask], *, source: str = "") -> MergeResult:
    """Fold `proposed` into `existing`.

    A proposed task whose key is already there keeps its id and status (its text, priority and
    dependencies are refreshed); new ones get the next free ids. Tasks the PRD no longer mentions are
    kept as they are (they may carry work) and reported in `not_in_prd`.
    """
    by_key = {t.key: t for t in existing.tasks}
    next_id = max((t.id for t in existing.tasks), default=0) + 1
    ids: dict[str, int] = {}
    for p in proposed:
        if p.key in by_key:
            ids[p.key] = by_key[p.key].id
        else:
            ids[p.key] = next_id
            next_id += 1
    result = MergeResult(tasks=existing)
    out: dict[int, Task] = {t.id: t for t in existing.tasks}
    for p in proposed:
        old = by_key.get(p.key)
        task = Task(
            id=ids[p.key],
            key=p.key,
            title=p.title,
            description=p.description,
            acceptance=p.acceptance,
            status=old.status if old else "pending",
            priority=p.priority,
            dependencies=sorted(ids[d] for d in p.depends_on if d in ids),
            section=p.section,
        )
        if old is None:
            result.added.append(task.id)
        elif old == task:
            result.unchanged.append(task.id)
        else:
            result.changed.append(task.id)
        out[task.id] = task
    proposed_keys = set(ids)
    result.not_in_prd = sorted(t.id for t in existing.tasks if t.key not in proposed_keys)
    result.tasks = TaskFile(
        version=existing.version,
        project=existing.project,
        source=source or existing.source,
        tasks=sorted(out.values(), key=lambda t: t.id),
    )
    return result


def ready(tasks: TaskFile) -> list[Task]:
    """Pending tasks whose dependencies are all done, best first (priority, then id)."""
    done = {t.id for t in tasks.tasks if t.status == "done"}
    candidates = [t for t in tasks.tasks if t.status == "pending" and all(d in done for d in t.dependencies)]
    return sorted(candidates, key=lambda t: (PRIORITY_RANK[t.priority], t.id))


def next_task(tasks: TaskFile) -> Task | None:
    """The highest-priority pending task whose dependencies are done (lowest id breaks ties)."""
    candidates = ready(tasks)
    return candidates[0] if candidates else None


def blocked_reason(tasks: TaskFile) -> str:
    """Why `next_task` found nothing, in words."""
    pending = [t for t in tasks.tasks if t.status == "pending"]
    if not tasks.tasks:
        return "the task list is empty; run `parley tasks parse-prd FILE`"
    if not pending:
        open_ = [t for t in tasks.tasks if t.status == "in-progress"]
        if open_:
            return f"no pending task; in progress: {', '.join(str(t.id) for t in open_)}"
        return "no pending task left"
    unfinished = sorted({d for t in pending for d in t.dependencies if tasks.get(d).status != "done"})
    # Name what really holds things up: unfinished tasks that are not themselves waiting in the queue.
    holders = [d for d in unfinished if tasks.get(d).status != "pending"] or unfinished
    listed = ", ".join(f"{d} ({tasks.get(d).status})" for d in holders[:10]) + (
        "…" if len(holders) > 10 else ""
    )
    return f"{len(pending)} pending task(s), all waiting for unfinished dependencies: {listed}"

"""`parley tasks initialize-project | parse-prd FILE | next-task | list | update-task ID | show ID`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from parley.cli.common import console, err_console, fail, settings
from parley.tasks import planner, store
from parley.tasks.models import STATUSES, ProposedTask, Status, Task, TaskFile
from parley.tasks.parser import PRDError, parse_prd

tasks_app = typer.Typer(
    help="Turn a PRD into a tracked task list (tasks.json; TASK_FILE overrides the path).",
    no_args_is_help=True,
)

_STATUS_STYLE = {"pending": "yellow", "in-progress": "cyan", "done": "green", "deferred": "dim"}
_PRIORITY_STYLE = {"high": "bold red", "medium": "default", "low": "dim"}


def _load() -> tuple[Path, TaskFile]:
    path = store.task_file_path()
    try:
        return path, store.load(path)
    except store.TaskFileError as exc:
        fail(str(exc))


def _save(path: Path, tasks: TaskFile) -> None:
    try:
        store.save(path, tasks)
    except store.TaskFileError as exc:
        fail(str(exc))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        with store.locked(path):
            yield
    except store.TaskFileError as exc:
        fail(str(exc))


def _task_id(raw: str, tasks: TaskFile) -> Task:
    try:
        number = int(raw.strip().lstrip("#"))
    except ValueError:
        fail(f"task id must be a number, got {raw!r}")
    try:
        return tasks.get(number)
    except KeyError as exc:
        fail(str(exc.args[0]))


def _status(raw: str) -> Status:
    value = raw.strip().lower().replace("_", "-").replace(" ", "-")
    if value == "inprogress":
        value = "in-progress"
    for status in STATUSES:
        if value == status:
            return status
    fail(f"unknown status {raw!r}; choose one of: {', '.join(STATUSES)}")


def _table(tasks: list[Task]) -> Table:
    table = Table("id", "status", "priority", "title", "depends on", "section")
    for t in tasks:
        table.add_row(
            str(t.id),
            Text(t.status, style=_STATUS_STYLE[t.status]),
            Text(t.priority, style=_PRIORITY_STYLE[t.priority]),
            Text(t.title),
            ", ".join(map(str, t.dependencies)) or "-",
            Text(t.section),
        )
    return table


@tasks_app.command("initialize-project")
def initialize_project(
    name: str | None = typer.Option(None, "--name", help="Project name (default: the folder's name)."),
) -> None:
    """Create an empty tasks.json (an existing one is left as it is)."""
    path = store.task_file_path()
    with _locked(path):
        if path.exists():
            _, tasks = _load()
            console.print(
                f"{path} already exists ({len(tasks.tasks)} tasks); left unchanged",
                highlight=False,
                soft_wrap=True,
            )
            return
        project = name or Path.cwd().resolve().name
        _save(path, TaskFile(project=project))
    console.print(
        f"created {path} for project {project!r}; next: parley tasks parse-prd docs/sample-prd.md",
        highlight=False,
        soft_wrap=True,
    )


@contextmanager
def _quiet_providers() -> Iterator[None]:
    """Hide HTTP request lines and per-attempt provider warnings while the LLM runs (unless at DEBUG):
    they would only bury the one warning line this command prints."""
    if logging.getLogger().level <= logging.DEBUG:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("httpx", "httpx2", "openai", "parley.providers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _llm_proposal(text: str, limit: int | None, agent_name: str | None) -> list[ProposedTask] | None:
    """Tasks from the agent's LLM, or None (with a warning line) when its answer is unusable."""
    from parley.agents import AgentError, AgentRegistry
    from parley.providers.factory import build_llm
    from parley.tasks.llm import LLMTasksError, propose_with_llm

    s = settings()
    try:
        agents = AgentRegistry.load(s.agents_dir, s.prompts_dir)
        agent = agents.get(agent_name or s.default_agent)
    except AgentError as exc:
        fail(f"cannot load agents for --llm: {exc.problems[0]}")
    except KeyError as exc:
        fail(str(exc.args[0]))
    spec = agent.spec.components.llm
    try:
        with _quiet_providers():
            llm = build_llm(spec, s, agent=agent.spec)
            proposal = propose_with_llm(llm, text, limit=limit)
    except LLMTasksError as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - any provider set-up failure falls back the same way
        reason = f"cannot use LLM provider {spec.provider!r}: {exc}"
    else:
        console.print(f"tasks proposed by agent {agent.key!r} (LLM {spec.provider})", highlight=False)
        return proposal
    err_console.print(
        f"[yellow]warning:[/] {reason}; using the offline parser instead", highlight=False, soft_wrap=True
    )
    return None


def _existing(path: Path) -> TaskFile:
    try:
        return store.load_or_new(path, project=Path.cwd().resolve().name)
    except store.TaskFileError as exc:
        fail(f"{exc} (not overwritten; fix or remove it)")


@tasks_app.command("parse-prd")
def parse_prd_cmd(
    file: Path = typer.Argument(..., help="The PRD (Markdown)."),  # noqa: B008 - typer style
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Keep only the first N tasks."),
    llm: bool = typer.Option(False, "--llm", help="Let the agent's LLM propose the tasks (schema-checked)."),
    agent: str | None = typer.Option(
        None, "--agent", help="Agent whose LLM to use (default: DEFAULT_AGENT)."
    ),
) -> None:
    """Parse a PRD into tasks.json; re-parsing keeps ids and statuses and adds only what is new."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"{file}: PRD file not found")
    except IsADirectoryError:
        fail(f"{file}: is a folder, expected a Markdown file")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{file}: cannot read: {exc}")
    if not text.strip():
        fail(f"{file}: the PRD is empty")
    path = store.task_file_path()
    _existing(path)  # a corrupt list is reported before any (slow) LLM call
    proposal = _llm_proposal(text, limit, agent) if llm else None
    if proposal is None:
        try:
            proposal = parse_prd(text, limit=limit)
        except PRDError as exc:
            fail(f"{file}: {exc}")
    with _locked(path):
        result = planner.merge(_existing(path), proposal, source=str(file))
        _save(path, result.tasks)
    parsed_ids = {t.id for t in result.tasks.tasks} - set(result.not_in_prd)
    console.print(_table([t for t in result.tasks.tasks if t.id in parsed_ids]))
    summary = (
        f"{len(proposal)} tasks from {file}: {len(result.added)} new, {len(result.changed)} updated, "
        f"{len(result.unchanged)} unchanged"
    )
    if result.not_in_prd:
        summary += (
            f"; kept {len(result.not_in_prd)} not in this PRD ({', '.join(map(str, result.not_in_prd))})"
        )
    console.print(f"{summary}; wrote {path}", markup=False, highlight=False, soft_wrap=True)


@tasks_app.command("next-task")
def next_task() -> None:
    """Print `[ID] title` of the highest-priority pending task whose dependencies are done."""
    _, tasks = _load()
    task = planner.next_task(tasks)
    if task is None:
        err_console.print(f"no task ready: {planner.blocked_reason(tasks)}", highlight=False, soft_wrap=True)
        return
    typer.echo(f"[{task.id}] {task.title}")


@tasks_app.command("list")
def list_tasks(
    status: str | None = typer.Option(
        None, "--status", "-s", help=f"Only this status ({', '.join(STATUSES)})."
    ),
) -> None:
    """Show the tasks as a table."""
    wanted = _status(status) if status is not None else None
    _, tasks = _load()
    chosen = [t for t in tasks.tasks if wanted is None or t.status == wanted]
    console.print(_table(chosen))
    counts = ", ".join(f"{sum(t.status == s for t in tasks.tasks)} {s}" for s in STATUSES)
    console.print(f"{len(chosen)} shown of {len(tasks.tasks)} ({counts})", highlight=False)


@tasks_app.command("update-task")
def update_task(
    task_id: str = typer.Argument(..., metavar="ID", help="Task id."),
    status: str = typer.Option(..., "--status", "-s", help=f"New status: {', '.join(STATUSES)}."),
) -> None:
    """Set a task's status."""
    new = _status(status)
    path = store.task_file_path()
    with _locked(path):
        _, tasks = _load()
        task = _task_id(task_id, tasks)
        old = task.status
        task.status = new
        _save(path, tasks)
    console.print(f"[{task.id}] {task.title}: {old} -> {new}", markup=False, highlight=False, soft_wrap=True)
    if new == "done":
        open_deps = [d for d in task.dependencies if tasks.get(d).status != "done"]
        if open_deps:
            err_console.print(
                f"[yellow]warning:[/] dependencies not done yet: {', '.join(map(str, open_deps))}",
                highlight=False,
            )


@tasks_app.command("show")
def show(task_id: str = typer.Argument(..., metavar="ID", help="Task id.")) -> None:
    """Show one task in full."""
    _, tasks = _load()
    task = _task_id(task_id, tasks)
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    deps = ", ".join(f"{d} ({tasks.get(d).status})" for d in task.dependencies) or "-"
    for label, value in (
        ("id", str(task.id)),
        ("title", Text(task.title)),
        ("status", Text(task.status, style=_STATUS_STYLE[task.status])),
        ("priority", Text(task.priority, style=_PRIORITY_STYLE[task.priority])),
        ("depends on", deps),
        ("section", Text(task.section or "-")),
        ("description", Text(task.description or "-")),
        ("acceptance", Text(task.acceptance or "-")),
    ):
        table.add_row(label, value)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(tasks_app, name="tasks")

"""`parley tasks …` end to end: round trips, re-parsing, next-task, TASK_FILE, and every bad input."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.tasks.conftest import CLI, NESTED_PRD, PARLEY, SAMPLE_PRD, read_tasks, run


def test_sample_prd_round_trip(tasks_cwd: Path, cli: CLI) -> None:
    r = cli("tasks", "initialize-project", "--name", "parley")
    assert r.exit_code == 0 and (tasks_cwd / "tasks.json").exists()
    r = cli("tasks", "parse-prd", str(SAMPLE_PRD))
    assert r.exit_code == 0, r.output
    assert "21 tasks" in r.output and "21 new" in r.output
    data = json.loads((tasks_cwd / "tasks.json").read_text())
    assert data["project"] == "parley" and data["source"] == str(SAMPLE_PRD)
    tasks = data["tasks"]
    assert [t["id"] for t in tasks] == list(range(1, 22))
    assert tasks[0]["title"] == "Package and commands" and tasks[0]["status"] == "pending"
    # High priority first among the tasks that are free to start (phase 1).
    r = cli("tasks", "next-task")
    assert r.exit_code == 0 and r.stdout.strip() == "[1] Package and commands"
    r = cli("tasks", "show", "3")
    assert r.exit_code == 0
    assert (
        "Agents and prompts" in r.output
        and "missing template" in r.output
        and "Phase 1: Foundation" in r.output
    )
    r = cli("tasks", "list")
    assert r.exit_code == 0 and "Offline STT" in r.output and "21 shown of 21" in r.output
    # The README's walk-through.
    assert cli("tasks", "update-task", "1", "--status", "in-progress").exit_code == 0
    assert cli("tasks", "next-task").stdout.strip() == "[2] Settings"
    assert cli("tasks", "update-task", "1", "--status", "done").exit_code == 0
    r = cli("tasks", "list", "--status", "pending")
    assert r.exit_code == 0 and "20 shown of 21" in r.output and "Package and commands" not in r.output
    r = cli("tasks", "show", "5")
    assert "Offline STT" in r.output and "1 (done), 2 (pending), 3 (pending), 4 (pending)" in r.output


def test_next_task_follows_dependencies_and_priority(tasks_cwd: Path, cli: CLI) -> None:
    (tasks_cwd / "prd.md").write_text(NESTED_PRD)
    assert cli("tasks", "parse-prd", "prd.md").exit_code == 0
    ids = {t["title"]: t["id"] for t in read_tasks(tasks_cwd / "tasks.json")}
    order = []
    for _ in range(len(ids)):
        r = cli("tasks", "next-task")
        assert r.exit_code == 0
        line = r.stdout.strip()
        assert line.startswith("["), r.output
        task_id = int(line[1 : line.index("]")])
        order.append(line.split("] ", 1)[1])
        assert cli("tasks", "update-task", str(task_id), "--status", "done").exit_code == 0
    # Phase order respected; within phase 2a the low-priority task comes last.
    assert order == [
        "Make a widget",
        "Paint the widget",
        "Build a factory line",
        "Hire staff",
        "Shipping",
        "Gift wrapping",
    ]
    r = cli("tasks", "next-task")
    assert r.exit_code == 0 and r.stdout == "" and "no pending task left" in r.stderr


def test_blocked_tasks_are_not_offered(tasks_cwd: Path, cli: CLI) -> None:
    (tasks_cwd / "prd.md").write_text(NESTED_PRD)
    cli("tasks", "parse-prd", "prd.md")
    cli("tasks", "update-task", "1", "--status", "in-progress")
    cli("tasks", "update-task", "2", "--status", "deferred")
    r = cli("tasks", "next-task")
    assert r.stdout == "" and "waiting for unfinished dependencies: 1 (in-progress), 2 (deferred)" in r.stderr
    r = cli("tasks", "list", "--status", "deferred")
    assert r.exit_code == 0 and "Paint the widget" in r.output and "Make a widget" not in r.output


def test_reparse_is_idempotent_and_keeps_statuses(tasks_cwd: Path, cli: CLI) -> None:
    prd = tasks_cwd / "prd.md"
    prd.write_text(NESTED_PRD)
    cli("tasks", "parse-prd", "prd.md")
    cli("tasks", "update-task", "1", "--status", "done")
    before = read_tasks(tasks_cwd / "tasks.json")
    r = cli("tasks", "parse-prd", "prd.md")
    assert r.exit_code == 0 and "0 new, 0 updated, 6 unchanged" in r.output
    assert read_tasks(tasks_cwd / "tasks.json") == before
    # Edit the PRD: a new item is appended with a new id, edits keep ids and statuses, removed ones are kept.
    prd.write_text(
        NESTED_PRD.replace("1. Make a widget (priority: high)", "1. Make a  WIDGET. (priority: low)")
        .replace("- Gift wrapping", "- Gift cards")
        .replace("- Hire staff [P3]", "- Hire staff [P3]\n- Train staff")
    )
    r = cli("tasks", "parse-prd", "prd.md")
    assert r.exit_code == 0, r.output
    after = {t["id"]: t for t in read_tasks(tasks_cwd / "tasks.json")}
    assert (
        after[1]["status"] == "done"
        and after[1]["priority"] == "low"
        and after[1]["title"] == "Make a WIDGET"
    )
    assert len(after) == 8 and {after[7]["title"], after[8]["title"]} == {"Train staff", "Gift cards"}
    assert after[6]["title"] == "Gift wrapping"  # no longer in the PRD, kept (it may carry work)
    assert "kept 1 not in this PRD (6)" in r.output


def test_limit(tasks_cwd: Path, cli: CLI) -> None:
    r = cli("tasks", "parse-prd", str(SAMPLE_PRD), "--limit", "5")
    assert r.exit_code == 0
    tasks = read_tasks(tasks_cwd / "tasks.json")
    assert [t["title"] for t in tasks] == [
        "Package and commands",
        "Settings",
        "Agents and prompts",
        "API skeleton",
        "Offline STT",
    ]
    assert tasks[4]["dependencies"] == [1, 2, 3, 4]
    # Raising the limit later adds the rest without renumbering.
    cli("tasks", "parse-prd", str(SAMPLE_PRD), "--limit", "7")
    assert [t["id"] for t in read_tasks(tasks_cwd / "tasks.json")] == list(range(1, 8))


def test_task_file_override(tasks_cwd: Path, cli: CLI) -> None:
    target = tasks_cwd / "plans" / "parley.json"
    r = cli("tasks", "parse-prd", str(SAMPLE_PRD), "--limit", "2", env={"TASK_FILE": str(target)})
    assert r.exit_code == 0 and len(read_tasks(target)) == 2
    assert not (tasks_cwd / "tasks.json").exists()
    r = cli("tasks", "next-task", env={"TASK_FILE": str(target)})
    assert r.stdout.strip() == "[1] Package and commands"


def test_atomic_write_leaves_no_temp_files_and_keeps_mode(tasks_cwd: Path, cli: CLI) -> None:
    cli("tasks", "parse-prd", str(SAMPLE_PRD), "--limit", "3")
    path = tasks_cwd / "tasks.json"
    os.chmod(path, 0o600)
    inode = path.stat().st_ino
    assert cli("tasks", "update-task", "2", "--status", "done").exit_code == 0
    assert path.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tasks_cwd.iterdir()) == ["tasks.json"]


def _one_error_line(r) -> str:  # type: ignore[no-untyped-def]
    """The single stderr line of a failed command (subprocess result or in-process click result)."""
    code = r.returncode if hasattr(r, "returncode") else r.exit_code
    assert code == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_real_command_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it: missing PRD, missing task list, unknown status."""
    line = _one_error_line(run("tasks", "parse-prd", "nope.md", cwd=tmp_path))
    assert line == "error: nope.md: PRD file not found"
    assert "no task file" in _one_error_line(run("tasks", "next-task", cwd=tmp_path))
    line = _one_error_line(run("tasks", "list", "--status", "finished", cwd=tmp_path))
    assert "unknown status 'finished'; choose one of: pending, in-progress, done, deferred" in line


def test_bad_inputs_give_one_clear_line(tasks_cwd: Path, cli: CLI) -> None:
    (tasks_cwd / "empty.md").write_text("\n  \n")
    assert "empty.md: the PRD is empty" in _one_error_line(cli("tasks", "parse-prd", "empty.md"))
    (tasks_cwd / "prose.md").write_text("# Ideas\n\nWe should build something nice.\n")
    assert "no requirements found" in _one_error_line(cli("tasks", "parse-prd", "prose.md"))
    assert "is a folder" in _one_error_line(cli("tasks", "parse-prd", str(tasks_cwd)))
    assert not (tasks_cwd / "tasks.json").exists()

    (tasks_cwd / "prd.md").write_text(NESTED_PRD)
    assert cli("tasks", "parse-prd", "prd.md").exit_code == 0
    assert "unknown task id 42" in _one_error_line(cli("tasks", "update-task", "42", "--status", "done"))
    assert "unknown task id 42" in _one_error_line(cli("tasks", "show", "42"))
    assert "task id must be a number" in _one_error_line(cli("tasks", "show", "abc"))
    line = _one_error_line(cli("tasks", "update-task", "1", "--status", "finished"))
    assert "unknown status 'finished'" in line
    assert read_tasks(tasks_cwd / "tasks.json")[0]["status"] == "pending"


@pytest.mark.parametrize(
    "content, words",
    [
        ('{"tasks": [{"id": 1, "title": "x"', "corrupt task file (invalid JSON"),
        ('{"tasks": [{"id": 1, "key": "k", "title": "x", "status": "someday"}]}', "tasks.0.status"),
        (
            '{"tasks": [{"id": 1, "key": "k", "title": "x", "dependencies": [9]}]}',
            "depends on unknown task(s) 9",
        ),
    ],
)
def test_corrupt_task_file_is_reported_and_never_overwritten(
    tasks_cwd: Path, cli: CLI, content: str, words: str
) -> None:
    (tasks_cwd / "tasks.json").write_text(content)
    for args in (
        ("list",),
        ("next-task",),
        ("show", "1"),
        ("update-task", "1", "--status", "done"),
        ("parse-prd", str(SAMPLE_PRD)),
        ("initialize-project",),
    ):
        r = cli("tasks", *args)
        assert r.exit_code == 1 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, (
            args,
            r.stderr,
        )
    assert (tasks_cwd / "tasks.json").read_text() == content


def test_initialize_project_leaves_an_existing_list_alone(tasks_cwd: Path, cli: CLI) -> None:
    assert cli("tasks", "parse-prd", str(SAMPLE_PRD), "--limit", "4").exit_code == 0
    before = (tasks_cwd / "tasks.json").read_text()
    r = cli("tasks", "initialize-project")
    assert r.exit_code == 0 and "already exists (4 tasks)" in r.stdout
    assert (tasks_cwd / "tasks.json").read_text() == before


def test_concurrent_updates_are_all_kept(tmp_path: Path) -> None:
    """Four `update-task` commands at once, each on its own task: none overwrites another's change."""
    assert run("tasks", "parse-prd", str(SAMPLE_PRD), "--limit", "6", cwd=tmp_path).returncode == 0
    env = {**{k: v for k, v in os.environ.items() if k != "TASK_FILE"}, "COLUMNS": "200"}
    procs = [
        subprocess.Popen(
            [*PARLEY, "tasks", "update-task", str(i), "--status", "done"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(1, 5)
    ]
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read() if p.stderr else ""
        if p.stderr:
            p.stderr.close()
    assert [t["status"] for t in read_tasks(tmp_path / "tasks.json")] == ["done"] * 4 + ["pending"] * 2

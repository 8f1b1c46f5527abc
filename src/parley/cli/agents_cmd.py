"""`parley agents list | show NAME | validate [PATH…]`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
import yaml
from rich.table import Table

from parley.agents import AgentError, AgentRegistry, validate_paths
from parley.cli.common import console, err_console, fail, settings

agents_app = typer.Typer(help="Inspect and check agents (agents/*.yaml).", no_args_is_help=True)


def _registry() -> AgentRegistry:
    s = settings()
    try:
        return AgentRegistry.load(s.agents_dir, s.prompts_dir)
    except AgentError as exc:
        for line in exc.problems:
            err_console.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@agents_app.command("list")
def list_agents() -> None:
    """List the agents with their engines."""
    table = Table("key", "name", "stt", "llm", "tts", "file")
    for agent in _registry():
        c = agent.spec.components
        table.add_row(agent.key, agent.name, c.stt.provider, c.llm.provider, c.tts.provider, str(agent.path))
    console.print(table)


@agents_app.command("show")
def show(name: str = typer.Argument(..., help="Agent key (file stem) or display name.")) -> None:
    """Print one agent's full configuration, defaults included."""
    registry = _registry()
    try:
        agent = registry.get(name)
    except KeyError as exc:
        fail(str(exc.args[0]))
    console.print(f"# {agent.path}", style="dim", highlight=False)
    typer.echo(yaml.safe_dump(agent.spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True))


@agents_app.command("validate")
def validate(
    paths: Optional[List[Path]] = typer.Argument(  # noqa: UP006,UP007 - typer needs these
        None, help="Agent files or folders (default: the agents folder)."
    ),
) -> None:
    """Check agent files against the schema and the prompts; one line per problem, exit 1 if any."""
    s = settings()
    targets = paths or [s.agents_dir]
    problems = validate_paths(targets, s.prompts_dir)
    if problems:
        for line in problems:
            err_console.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
        err_console.print(f"{len(problems)} problem(s) found", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]ok:[/] {', '.join(str(t) for t in targets)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(agents_app, name="agents")

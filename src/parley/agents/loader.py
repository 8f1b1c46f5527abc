"""Load and check agents: `agents/*.yaml` against the schema and against `prompts/prompts.yaml`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from parley.agents.errors import ConfigError
from parley.agents.prompts import PromptError, PromptLibrary, variables_in
from parley.agents.spec import AgentSpec

Direction = Literal["inbound", "outbound"]


class AgentError(ConfigError):
    """One or more problems in agent files; `problems` has one readable line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Agent:
    """A validated agent: its spec, where it came from, and the prompts it uses."""

    spec: AgentSpec
    path: Path
    prompts: PromptLibrary

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> str:
        """The file stem, which is how agents are referred to (`receptionist`)."""
        return self.path.stem

    def variables(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Agent defaults overridden by per-call variables."""
        return {**self.spec.variables, **(overrides or {})}

    def system_prompt(self, direction: Direction, variables: dict[str, Any] | None = None) -> str:
        """The rendered system prompt for a call; `PromptError` names any missing variable."""
        return self.prompts.get(self.spec.prompt_key(direction)).render(self.variables(variables))

    def greeting(self, direction: Direction, variables: dict[str, Any] | None = None) -> str:
        """The rendered greeting for a call (may be empty)."""
        from parley.agents.prompts import render_template

        text = getattr(self.spec.greeting, direction)
        return render_template(text, self.variables(variables), source=f"{self.path}: greeting.{direction}")


def _format_validation(path: Path, exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"{path}: {field}: {msg}")
    return lines


def parse_agent_file(path: Path) -> AgentSpec:
    """Parse and schema-check one agent file. Raises `AgentError` with file/field/reason lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentError([f"{path}: cannot read: {exc}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise AgentError([f"{path}:{where} YAML syntax error: {problem}"]) from None
    if not isinstance(raw, dict):
        raise AgentError([f"{path}: expected a mapping with at least 'name', got {type(raw).__name__}"])
    try:
        return AgentSpec.model_validate(raw)
    except ValidationError as exc:
        raise AgentError(_format_validation(path, exc)) from None


def check_agent(spec: AgentSpec, path: Path, prompts: PromptLibrary) -> list[str]:
    """Cross-file problems: prompt keys that don't exist, template variables nobody provides."""
    problems: list[str] = []
    for direction in ("inbound", "outbound"):
        key = spec.prompt_key(direction)
        try:
            template = prompts.get(key)
        except PromptError:
            known = ", ".join(sorted(prompts.templates)) or "none"
            problems.append(f"{path}: prompts.{direction}: unknown prompt key {key!r} (known: {known})")
            continue
        missing = template.missing(spec.variables)
        if missing:
            problems.append(
                f"{path}: prompts.{direction}: template {template.path.name} needs variable(s) "
                f"{', '.join(missing)}; add them under 'variables:' or the prompt's 'parameters:'"
            )
        greeting = getattr(spec.greeting, direction)
        try:
            unknown = sorted(v for v in variables_in(greeting, f"{path}: greeting.{direction}")
                             if v not in spec.variables)
        except PromptError as exc:
            problems.append(str(exc))
            continue
        if unknown:
            problems.append(
                f"{path}: greeting.{direction}: missing template variable(s) {', '.join(unknown)};"
                " add them under 'variables:'"
            )
    return problems


def load_agent(path: Path, prompts: PromptLibrary) -> Agent:
    """Parse, schema-check and cross-check one agent file."""
    spec = parse_agent_file(path)
    problems = check_agent(spec, path, prompts)
    if problems:
        raise AgentError(problems)
    return Agent(spec=spec, path=path, prompts=prompts)


class AgentRegistry:
    """Every agent in a folder, by key (file stem) and by display name."""

    def __init__(self, agents: dict[str, Agent]) -> None:
        self.agents = agents

    @classmethod
    def load(cls, agents_dir: Path, prompts_dir: Path) -> AgentRegistry:
        """Load all `*.yaml`/`*.yml` agents; raises `AgentError` listing every problem found."""
        prompts = _load_prompts(prompts_dir)
        if not agents_dir.is_dir():
            raise AgentError([f"{agents_dir}: agents folder not found"])
        agents: dict[str, Agent] = {}
        problems: list[str] = []
        for path in agent_files([agents_dir]):
            try:
                agent = load_agent(path, prompts)
            except AgentError as exc:
                problems.extend(exc.problems)
                continue
            if agent.key in agents:
                problems.append(f"{path}: duplicate agent key {agent.key!r} (also {agents[agent.key].path})")
            agents[agent.key] = agent
        if problems:
            raise AgentError(problems)
        return cls(agents)

    def get(self, name: str) -> Agent:
        """Find an agent by file stem or display name (case-insensitive)."""
        if name in self.agents:
            return self.agents[name]
        lowered = name.lower()
        for agent in self.agents.values():
            if agent.key.lower() == lowered or agent.name.lower() == lowered:
                return agent
        known = ", ".join(sorted(self.agents)) or "none"
        raise KeyError(f"unknown agent {name!r}; known: {known}")

    def __contains__(self, name: object) -> bool:
        try:
            self.get(str(name))
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[Agent]:
        return iter(sorted(self.agents.values(), key=lambda a: a.key))

    def __len__(self) -> int:
        return len(self.agents)


def _load_prompts(prompts_dir: Path) -> PromptLibrary:
    try:
        return PromptLibrary.load(prompts_dir)
    except PromptError as exc:
        raise AgentError([str(exc)]) from None


def agent_files(paths: Iterable[Path]) -> list[Path]:
    """Expand folders to their `*.yaml`/`*.yml` files; keep files as given."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        else:
            out.append(p)
    return out


def validate_paths(paths: Iterable[Path], prompts_dir: Path) -> list[str]:
    """Every problem in the given agent files/folders, one line each (empty when all is well)."""
    try:
        prompts = PromptLibrary.load(prompts_dir)
    except PromptError as exc:
        return [str(exc)]
    problems: list[str] = []
    files = agent_files(paths)
    if not files:
        return [f"{', '.join(str(p) for p in paths)}: no agent files (*.yaml) found"]
    for path in files:
        try:
            load_agent(path, prompts)
        except AgentError as exc:
            problems.extend(exc.problems)
    return problems

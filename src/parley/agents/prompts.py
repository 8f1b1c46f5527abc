"""Prompt templates: `prompts/prompts.yaml` maps a key to a Markdown file plus default parameters.

```yaml
default_inbound:
  file: default_inbound.md
  parameters: {company_name: "Parley"}
short_one: short_one.md          # shorthand: just the file
```

Templates use Jinja2 syntax (`{{ company_name }}`) and are strict: a variable that is neither a
parameter nor supplied for the call raises `PromptError` naming it, never renders as a blank.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import yaml

from parley.agents.errors import ConfigError

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


class PromptError(ConfigError):
    """A prompt or template cannot be found or rendered."""


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt: its key, source file, Markdown text and default parameters."""

    key: str
    path: Path
    text: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def variables(self) -> set[str]:
        """Names the template refers to."""
        return variables_in(self.text, str(self.path))

    def missing(self, variables: dict[str, Any] | None = None) -> list[str]:
        """Variables the template needs that neither its parameters nor `variables` provide."""
        given = {**self.parameters, **(variables or {})}
        return sorted(v for v in self.variables() if v not in given)

    def render(self, variables: dict[str, Any] | None = None) -> str:
        """The prompt text with parameters overridden by `variables`; strict about missing names."""
        return render_template(self.text, {**self.parameters, **(variables or {})}, source=str(self.path))


def variables_in(text: str, source: str = "template") -> set[str]:
    """Undeclared variable names used by a Jinja2 template."""
    try:
        return set(_compiled(text)[1])
    except jinja2.TemplateSyntaxError as exc:
        raise PromptError(f"{source}: template syntax error on line {exc.lineno}: {exc.message}") from None


@functools.lru_cache(maxsize=512)
def _compiled(text: str) -> tuple[jinja2.Template, frozenset[str]]:
    """A template's compiled form and the names it refers to, parsed and compiled once per text: every
    call renders its agent's prompt and greeting, and compiling them each time cost a call set-up ~1 ms."""
    names = frozenset(jinja2.meta.find_undeclared_variables(_ENV.parse(text)))
    return _ENV.from_string(text), names


def render_template(text: str, variables: dict[str, Any], source: str = "template") -> str:
    """Render `text` strictly: a missing variable raises `PromptError` naming it."""
    try:
        template, names = _compiled(text)
    except jinja2.TemplateSyntaxError as exc:
        raise PromptError(f"{source}: template syntax error on line {exc.lineno}: {exc.message}") from None
    missing = sorted(v for v in names if v not in variables)
    if missing:
        raise PromptError(f"{source}: missing template variable(s): {', '.join(missing)}")
    try:
        return template.render(**variables)
    except jinja2.UndefinedError as exc:
        raise PromptError(f"{source}: {exc.message}") from None


class PromptLibrary:
    """All prompts of a prompts folder, loaded eagerly so errors surface at start-up."""

    def __init__(self, templates: dict[str, PromptTemplate], source: Path) -> None:
        self.templates = templates
        self.source = source

    @classmethod
    def load(cls, prompts_dir: Path) -> PromptLibrary:
        """Read `prompts_dir/prompts.yaml` and every file it names."""
        index = prompts_dir / "prompts.yaml"
        if not index.is_file():
            raise PromptError(f"{index}: file not found")
        raw = _read_yaml(index)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise PromptError(f"{index}: expected a mapping of prompt key -> file, got {type(raw).__name__}")
        templates: dict[str, PromptTemplate] = {}
        for key, entry in raw.items():
            if isinstance(entry, str):
                entry = {"file": entry}
            if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
                raise PromptError(f"{index}: {key}: needs 'file: NAME.md' (and optional 'parameters')")
            params = entry.get("parameters") or {}
            if not isinstance(params, dict):
                raise PromptError(f"{index}: {key}.parameters: must be a mapping")
            unknown = set(entry) - {"file", "parameters", "description"}
            if unknown:
                raise PromptError(f"{index}: {key}: unknown field(s): {', '.join(sorted(unknown))}")
            path = (prompts_dir / entry["file"]).resolve()
            if not path.is_file():
                raise PromptError(f"{index}: {key}.file: {entry['file']} not found in {prompts_dir}")
            text = path.read_text(encoding="utf-8")
            template = PromptTemplate(key=str(key), path=path, text=text, parameters=params)
            template.variables()  # syntax check now, not mid-call
            templates[str(key)] = template
        return cls(templates, index)

    def get(self, key: str) -> PromptTemplate:
        """The template for `key`; `PromptError` lists the known keys otherwise."""
        try:
            return self.templates[key]
        except KeyError:
            known = ", ".join(sorted(self.templates)) or "none"
            raise PromptError(f"{self.source}: unknown prompt key {key!r}; known: {known}") from None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PromptError(f"{path}:{where}: YAML syntax error: {problem}") from None

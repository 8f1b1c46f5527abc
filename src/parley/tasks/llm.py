"""LLM mode: ask a chat model for the tasks as JSON and accept them only if they pass the schema."""

from __future__ import annotations

import asyncio
import json
import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from parley.providers.base import LLM, Message, ProviderError
from parley.tasks.models import Priority, ProposedTask, task_key


class LLMTasksError(Exception):
    """The model's answer was unusable; the message says why in one line."""


class LLMTask(BaseModel):
    """One task as the model must write it. `dependencies` refer to other tasks' `id` in the same answer."""

    model_config = ConfigDict(extra="ignore")

    id: int = Field(ge=1)
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    acceptance: str = ""
    priority: Priority = "medium"
    section: str = ""
    dependencies: list[int] = Field(default_factory=list)


class LLMTaskList(BaseModel):
    """The whole answer: `{"tasks": [...]}` with at least one task."""

    model_config = ConfigDict(extra="ignore")

    tasks: list[LLMTask] = Field(min_length=1)

    @model_validator(mode="after")
    def _graph(self) -> LLMTaskList:
        ids = [t.id for t in self.tasks]
        if len(set(ids)) != len(ids):
            raise ValueError("task ids are not unique")
        known = set(ids)
        deps = {t.id: [d for d in t.dependencies] for t in self.tasks}
        for tid, ds in deps.items():
            bad = [d for d in ds if d not in known or d == tid]
            if bad:
                raise ValueError(f"task {tid} depends on unknown or itself: {bad}")
        state: dict[int, int] = {}

        def visit(n: int) -> None:
            state[n] = 1
            for d in deps[n]:
                if state.get(d) == 1:
                    raise ValueError(f"dependency cycle through task {d}")
                if d not in state:
                    visit(d)
            state[n] = 2

        for n in ids:
            if n not in state:
                visit(n)
        return self


SYSTEM_PROMPT = """You turn a product requirements document (PRD) into an implementation task list.
Answer with ONE JSON object and nothing else, matching this JSON schema:
{schema}
Rules: one task per requirement item; keep the PRD's order; ids start at 1; `section` is the PRD heading the
task comes from (nested headings joined with " > "); `dependencies` lists ids of tasks that must be done first
(tasks of a later phase depend on the earlier phase); `acceptance` holds the acceptance criteria that apply;
`priority` is "high", "medium" or "low".{limit}"""


def _extract_json(text: str) -> str:
    fenced = re.search(r"```(?:json)?\s*(\{.*\})\s*```", text, re.DOTALL)
    if fenced:
        return fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end <= start:
        raise LLMTasksError("the model's answer holds no JSON object")
    return text[start : end + 1]


def validate_answer(text: str, *, limit: int | None = None) -> list[ProposedTask]:
    """Check a model's answer against `LLMTaskList` and turn it into proposed tasks."""
    try:
        data = json.loads(_extract_json(text))
    except json.JSONDecodeError as exc:
        raise LLMTasksError(
            f"the model's answer is not valid JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    try:
        answer = LLMTaskList.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise LLMTasksError(
            "the model's answer does not match the task schema: "
            f"{where}: {first['msg'].removeprefix('Value error, ')}"
        ) from None
    chosen = answer.tasks[:limit] if limit else answer.tasks
    keys: dict[int, str] = {}
    seen: set[str] = set()
    for t in chosen:
        path = [p.strip() for p in t.section.split(">") if p.strip()]
        key = task_key(path, t.title)
        n = 2
        while key in seen:
            key = task_key(path, f"{t.title} #{n}")
            n += 1
        seen.add(key)
        keys[t.id] = key
    return [
        ProposedTask(
            key=keys[t.id],
            title=t.title.strip(),
            description=t.description,
            acceptance=t.acceptance,
            priority=t.priority,
            section=t.section,
            depends_on=sorted(keys[d] for d in t.dependencies if d in keys),
        )
        for t in chosen
    ]


async def _ask(llm: LLM, messages: list[Message]) -> str:
    parts: list[str] = []
    async for chunk in llm.chat(messages):
        parts.append(chunk.text)
    return "".join(parts)


def propose_with_llm(
    llm: LLM, prd_text: str, *, limit: int | None = None, timeout_s: float = 180.0
) -> list[ProposedTask]:
    """Ask `llm` for the PRD's tasks; `LLMTasksError` when it fails or answers outside the schema."""
    hint = f"\nReturn at most {limit} tasks." if limit else ""
    system = SYSTEM_PROMPT.format(schema=json.dumps(LLMTaskList.model_json_schema()), limit=hint)
    messages = [Message(role="system", content=system), Message(role="user", content=prd_text)]
    try:
        text = asyncio.run(asyncio.wait_for(_ask(llm, messages), timeout_s))
    except TimeoutError:
        raise LLMTasksError(f"the model did not answer within {timeout_s:.0f} s") from None
    except ProviderError as exc:
        raise LLMTasksError(f"the model failed: {exc}") from None
    return validate_answer(text, limit=limit)

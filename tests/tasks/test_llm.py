"""`parse-prd --llm`: the agent's LLM proposes tasks as JSON; only schema-valid answers are accepted.

The LLM here is a provider registered at run time (the `providers` fixture) that answers
with the text the agent YAML gives it: it stands in for a cloud model so the validation and fallback paths of
our own code run for real. No provider of ours is replaced.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from parley.providers import registry
from parley.providers.base import LLMChunk, Message, ProviderError
from parley.settings import get_settings
from parley.tasks.parser import parse_prd
from tests.conftest import ROOT
from tests.tasks.conftest import NESTED_PRD, read_tasks


class JsonAnswerLLM:
    """Streams a fixed answer in small pieces; records the messages it was sent; may fail mid-stream."""

    name = "test-json"

    def __init__(self, answer: str, record: str | None, fail_after: int | None) -> None:
        self.answer, self.record, self.fail_after = answer, record, fail_after

    async def chat(self, messages: list[Message], tools: Any = None) -> AsyncIterator[LLMChunk]:
        if self.record:
            Path(self.record).write_text(
                json.dumps([{"role": m.role, "content": m.content} for m in messages])
            )
        for n, start in enumerate(range(0, len(self.answer), 7)):
            if self.fail_after is not None and n >= self.fail_after:
                raise ProviderError(self.name, "connection reset by peer")
            yield LLMChunk(text=self.answer[start : start + 7])


def _create(spec: Any, *, settings: Any = None, **_: Any) -> JsonAnswerLLM:
    opts = spec.options
    return JsonAnswerLLM(opts.get("answer", ""), opts.get("record"), opts.get("fail_after"))


def _broken(spec: Any, *, settings: Any = None, **_: Any) -> JsonAnswerLLM:
    raise ProviderError("test-broken", "OPENAI_API_KEY is not set")


@pytest.fixture(autouse=True)
def providers() -> None:
    """Register the stand-in LLMs the agents here name. The registry has no removal; the names are test-only
    and registering again is a no-op, so they stay for the rest of the session."""
    registry.register("llm", "test-json", _create)
    registry.register("llm", "test-broken", _broken)

GOOD = {
    "tasks": [
        {
            "id": 1,
            "title": "Make a widget",
            "priority": "high",
            "section": "Phase 1 > Basics",
            "acceptance": "a widget exists",
        },
        {
            "id": 2,
            "title": "Paint it",
            "dependencies": [1],
            "section": "Phase 1 > Basics",
            "extra": "ignored",
        },
        {"id": 3, "title": "Ship it", "priority": "low", "dependencies": [1, 2], "section": "Phase 2"},
    ]
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TASK_FILE", raising=False)
    (tmp_path / "agents").mkdir()
    (tmp_path / "prd.md").write_text(NESTED_PRD)
    return tmp_path


def agent(project: Path, answer: str, **options: Any) -> dict[str, str]:
    """Write agents/tasker.yaml whose LLM answers `answer`; return the env that selects it."""
    spec = {"name": "Tasker", "components": {"llm": {"provider": "test-json", "answer": answer, **options}}}
    (project / "agents" / "tasker.yaml").write_text(yaml.safe_dump(spec))
    return {
        "AGENTS_DIR": str(project / "agents"),
        "PROMPTS_DIR": str(ROOT / "prompts"),
        "DEFAULT_AGENT": "tasker",
    }


def invoke(cli, env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    get_settings.cache_clear()
    return cli("tasks", "parse-prd", "prd.md", "--llm", *args, env=env)


def test_valid_answer_becomes_the_task_list(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    record = project / "sent.json"
    env = agent(project, "Here you go:\n```json\n" + json.dumps(GOOD) + "\n```", record=str(record))
    r = invoke(cli, env)
    assert r.exit_code == 0, r.output
    assert "tasks proposed by agent 'tasker' (LLM test-json)" in r.output and r.stderr == ""
    tasks = read_tasks(project / "tasks.json")
    assert [(t["id"], t["title"], t["priority"], t["dependencies"]) for t in tasks] == [
        (1, "Make a widget", "high", []),
        (2, "Paint it", "medium", [1]),
        (3, "Ship it", "low", [1, 2]),
    ]
    assert tasks[0]["acceptance"] == "a widget exists" and tasks[2]["section"] == "Phase 2"
    sent = json.loads(record.read_text())
    assert sent[0]["role"] == "system" and '"dependencies"' in sent[0]["content"]
    assert sent[1] == {"role": "user", "content": NESTED_PRD}
    # The same answer again changes nothing: identities come from section + title as offline.
    r = invoke(cli, env)
    assert "0 new, 0 updated, 3 unchanged" in r.output


def test_limit_applies_to_the_answer(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    r = invoke(cli, agent(project, json.dumps(GOOD)), "--limit", "2")
    assert r.exit_code == 0
    assert [t["title"] for t in read_tasks(project / "tasks.json")] == ["Make a widget", "Paint it"]


@pytest.mark.parametrize(
    "answer, options, reason",
    [
        ("Sure! Step one: make a widget.", {}, "holds no JSON object"),
        ('{"tasks": [{"id": 1, "title": "x",}]}', {}, "not valid JSON"),
        (json.dumps({"tasks": []}), {}, "does not match the task schema: tasks"),
        (json.dumps({"tasks": [{"id": 1, "title": "x", "priority": "urgent"}]}), {}, "tasks.0.priority"),
        (
            json.dumps(
                {
                    "tasks": [
                        {"id": 1, "title": "a", "dependencies": [2]},
                        {"id": 2, "title": "b", "dependencies": [1]},
                    ]
                }
            ),
            {},
            "dependency cycle",
        ),
        (
            json.dumps({"tasks": [{"id": 1, "title": "a", "dependencies": [7]}]}),
            {},
            "depends on unknown or itself",
        ),
        (json.dumps(GOOD), {"fail_after": 3}, "the model failed: test-json: connection reset by peer"),
    ],
)
def test_unusable_answer_falls_back_to_the_offline_parser(
    project: Path,
    cli,
    answer: str,
    options: dict[str, Any],
    reason: str,  # type: ignore[no-untyped-def]
) -> None:
    r = invoke(cli, agent(project, answer, **options))
    assert r.exit_code == 0, r.output
    warning = r.stderr.strip()
    assert (
        len(warning.splitlines()) == 1 and reason in warning and "using the offline parser instead" in warning
    )
    offline = [t.title for t in parse_prd(NESTED_PRD)]
    assert [t["title"] for t in read_tasks(project / "tasks.json")] == offline


def test_unknown_agent_is_an_error(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    r = invoke(cli, agent(project, json.dumps(GOOD)), "--agent", "nobody")
    assert (
        r.exit_code == 1 and "unknown agent 'nobody'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    )
    assert not (project / "tasks.json").exists()


def test_provider_that_cannot_start_falls_back(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    env = agent(project, "")
    (project / "agents" / "tasker.yaml").write_text(
        yaml.safe_dump({"name": "Tasker", "components": {"llm": {"provider": "test-broken"}}})
    )
    r = invoke(cli, env, "--limit", "2")
    assert r.exit_code == 0
    assert "cannot use LLM provider 'test-broken': test-broken: OPENAI_API_KEY is not set" in r.stderr
    assert [t["title"] for t in read_tasks(project / "tasks.json")] == ["Make a widget", "Paint the widget"]

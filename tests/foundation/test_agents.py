"""Agents and prompts: the shipped files load, broken ones fail naming file and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from parley.agents import AgentError, AgentRegistry, PromptError, PromptLibrary, validate_paths

ORIGINAL = """name: "German Assistant"
components:
  stt: {provider: "azure", language: "de-DE"}
  llm: {provider: "openai", model: "azure_openai"}
  tts: {provider: "azure", language: "de-DE", voice: "de-DE-KatjaNeural"}
prompts: {inbound: "default_inbound", outbound: "default_outbound"}
"""


def test_shipped_agents_load(root: Path) -> None:
    registry = AgentRegistry.load(root / "agents", root / "prompts")
    assert {"receptionist", "german_assistant"} <= set(registry.agents)
    receptionist = registry.get("receptionist")
    assert receptionist.spec.components.stt.provider == "whisper"
    assert receptionist.spec.components.llm.provider == "scripted"
    assert "Parley Dental" in receptionist.greeting("inbound")
    assert "Parley Dental" in receptionist.system_prompt("inbound")
    assert registry.get("German Assistant") is registry.get("german_assistant")


def test_original_agent_yaml_loads_unchanged(root: Path, tmp_path: Path) -> None:
    assert (root / "agents" / "german_assistant.yaml").read_text() == ORIGINAL
    (tmp_path / "german.yaml").write_text(ORIGINAL)
    assert validate_paths([tmp_path / "german.yaml"], root / "prompts") == []
    spec = AgentRegistry.load(root / "agents", root / "prompts").get("german_assistant").spec
    assert spec.components.tts.voice == "de-DE-KatjaNeural"
    assert spec.components.llm.model == "azure_openai"
    assert spec.prompts.inbound == "default_inbound"


def _write(tmp_path: Path, text: str, name: str = "broken.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unknown_provider_names_file_and_field(root: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, ORIGINAL.replace('stt: {provider: "azure"', 'stt: {provider: "nope"'))
    problems = validate_paths([path], root / "prompts")
    assert len(problems) == 1
    assert str(path) in problems[0]
    assert "components.stt" in problems[0]
    assert "unknown stt provider 'nope'" in problems[0]
    assert "whisper" in problems[0]  # tells what would work


def test_missing_prompt_key(root: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, ORIGINAL.replace('inbound: "default_inbound"', 'inbound: "no_such_prompt"'))
    (problem,) = validate_paths([path], root / "prompts")
    assert str(path) in problem and "prompts.inbound" in problem and "no_such_prompt" in problem


def test_missing_template_variable(root: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(root / "prompts", prompts)
    (prompts / "default_inbound.md").write_text("You work for {{ company_name }} in {{ city }}.")
    path = _write(tmp_path, ORIGINAL)
    (problem,) = validate_paths([path], prompts)
    assert "prompts.inbound" in problem and "city" in problem
    # supplying it as an agent variable fixes it
    path.write_text(ORIGINAL + "variables: {city: Berlin}\n")
    assert validate_paths([path], prompts) == []


def test_missing_variable_in_greeting(root: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, ORIGINAL + 'greeting: "Hi, {{ nickname }} here"\n')
    problems = validate_paths([path], root / "prompts")
    assert any("greeting.inbound" in p and "nickname" in p for p in problems)


def test_bad_yaml_syntax_names_line(root: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, 'name: "x"\ncomponents:\n  stt: {provider: "azure"\n  llm: [\n')
    (problem,) = validate_paths([path], root / "prompts")
    assert str(path) in problem and "YAML syntax error" in problem and "line" in problem


def test_unknown_field_and_bad_value(root: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, ORIGINAL + "first_speaker: nobody\ncolour: blue\n")
    problems = validate_paths([path], root / "prompts")
    assert any("first_speaker" in p for p in problems)
    assert any("colour: unknown field" in p for p in problems)


def test_unknown_builtin_tool_and_bad_http_tool(root: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, ORIGINAL + "tools:\n  - {name: fly}\n  - {name: lookup, type: http}\n")
    problems = validate_paths([path], root / "prompts")
    assert any("tools.0" in p and "fly" in p for p in problems)
    assert any("tools.1" in p and "url" in p for p in problems)


def test_registry_reports_every_broken_file(root: Path, tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    _write(agents, ORIGINAL.replace("azure", "bogus", 1), "a.yaml")
    _write(agents, "name: [unclosed\n", "b.yaml")
    with pytest.raises(AgentError) as info:
        AgentRegistry.load(agents, root / "prompts")
    assert len(info.value.problems) == 2


def test_prompt_render_is_strict(root: Path) -> None:
    library = PromptLibrary.load(root / "prompts")
    template = library.get("default_outbound")
    assert "Acme" in template.render({"company_name": "Acme"})
    with pytest.raises(PromptError, match="unknown prompt key 'nope'"):
        library.get("nope")


def test_prompt_index_errors(tmp_path: Path) -> None:
    (tmp_path / "prompts.yaml").write_text("greeting:\n  file: missing.md\n")
    with pytest.raises(PromptError, match="greeting.file: missing.md not found"):
        PromptLibrary.load(tmp_path)


def test_components_become_provider_options() -> None:
    from parley.agents.spec import LLMSpec, VADSpec

    llm = LLMSpec.model_validate({"provider": "openai", "model": "m", "temperature": 0.3, "base_url": "http://x",
                                  "fallback_timeout_s": 4,
                                  "fallbacks": [{"provider": "echo", "temperature": 0.5, "prefix": "Heard: "}]})
    options = llm.provider_options()
    assert (options.provider, options.model, options.temperature) == ("openai", "m", 0.3)
    assert options.options == {"base_url": "http://x", "fallback_timeout_s": 4}
    assert options.alone().options == {"base_url": "http://x"} and options.alone().fallbacks == ()
    (echo,) = options.fallbacks
    assert (echo.provider, echo.temperature, echo.options) == ("echo", 0.5, {"prefix": "Heard: "})
    assert VADSpec(threshold=0.6).provider_options().threshold == 0.6


def test_fallbacks_are_checked_like_their_component(root: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, ORIGINAL.replace('model: "azure_openai"}',
                                             'model: "azure_openai", fallbacks: [{provider: "nope"}]}'))
    problems = validate_paths([path], root / "prompts")
    assert len(problems) == 1 and "components.llm" in problems[0] and "unknown llm provider 'nope'" in problems[0]
    path = _write(tmp_path, ORIGINAL.replace('model: "azure_openai"}',
                                             'model: "azure_openai", fallbacks: [{provider: "echo", temperature: 9}]}'))
    problems = validate_paths([path], root / "prompts")
    assert len(problems) == 1 and "components.llm.fallbacks.0.temperature" in problems[0]


def test_a_template_is_compiled_once_and_stays_strict_on_every_render() -> None:
    from parley.agents.prompts import _compiled, render_template

    text = "Hello {{ caller_name }}, this is {{ company }}. {# a comment #}"
    before = _compiled.cache_info()
    assert render_template(text, {"caller_name": "Ada", "company": "Parley"}) == "Hello Ada, this is Parley. "
    assert render_template(text, {"caller_name": "Bob", "company": "X"}) == "Hello Bob, this is X. "
    after = _compiled.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits >= 1  # parsed and compiled once
    for _ in range(2):  # a cached template still names what is missing, every time
        with pytest.raises(PromptError, match="greeting: missing template variable.*company"):
            render_template(text, {"caller_name": "Ada"}, source="greeting")
    with pytest.raises(PromptError, match="bad: template syntax error on line 1"):
        render_template("{{ oops", {}, source="bad")

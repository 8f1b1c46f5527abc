"""The offline PRD parser: what tasks, dependencies, priorities and acceptance text a PRD yields."""

from __future__ import annotations

import pytest

from parley.tasks.parser import PRDError, parse_prd
from tests.tasks.conftest import NESTED_PRD, SAMPLE_PRD


def by_title(tasks):  # type: ignore[no-untyped-def]
    return {t.title: t for t in tasks}


def test_nested_phases_dependencies_and_acceptance() -> None:
    tasks = parse_prd(NESTED_PRD)
    t = by_title(tasks)
    assert list(t) == [
        "Make a widget",
        "Paint the widget",
        "Build a factory line",
        "Hire staff",
        "Shipping",
        "Gift wrapping",
    ]
    assert "Widgets are popular" not in t  # context sections are not work
    # Phase 1 tasks are free; phase 2a waits for phase 1; 2b for 2a (phase 1 implied); phase 3 for 2b only.
    assert t["Make a widget"].depends_on == [] and t["Paint the widget"].depends_on == []
    assert set(t["Build a factory line"].depends_on) == {t["Make a widget"].key, t["Paint the widget"].key}
    assert set(t["Shipping"].depends_on) == {t["Build a factory line"].key, t["Hire staff"].key}
    assert t["Gift wrapping"].depends_on == [t["Shipping"].key]
    # Acceptance: item-level to the item, section-level to every task of the section; never a task itself.
    assert "paint is dry" in t["Paint the widget"].acceptance
    assert "paint is dry" not in t["Paint the widget"].description
    assert (
        "100 widgets a day" in t["Build a factory line"].acceptance
        and "100 widgets" in t["Shipping"].acceptance
    )
    assert not any("widgets a day" in x.title for x in tasks)
    # Priorities from markers; default medium.
    assert [t[n].priority for n in ("Make a widget", "Paint the widget", "Hire staff", "Gift wrapping")] == [
        "high",
        "medium",
        "low",
        "low",
    ]
    assert t["Shipping"].section == "Phase 2: Scale > Phase 2b: Shipping"


def test_sample_prd_structure() -> None:
    tasks = parse_prd(SAMPLE_PRD.read_text())
    t = by_title(tasks)
    assert len(tasks) == 21
    assert t["Settings"].priority == "high" and "(priority" not in t["Settings"].description
    assert "missing template variable" in t["Agents and prompts"].acceptance
    assert "make run" in t["Settings"].acceptance  # the phase's criteria
    assert t["SIP stack"].section == "Phase 3: Phone calls"
    phase2 = {x.key for x in tasks if x.section.endswith("Conversation engine")}
    assert set(t["SIP stack"].depends_on) == phase2
    assert t["Dashboard"].priority == "low"
    assert "Should recordings be kept by default?" not in t


def test_limit_keeps_the_first_tasks_and_drops_their_outside_dependencies() -> None:
    tasks = parse_prd(NESTED_PRD, limit=3)
    assert [x.title for x in tasks] == ["Make a widget", "Paint the widget", "Build a factory line"]
    keys = {x.key for x in tasks}
    assert all(set(x.depends_on) <= keys for x in tasks)


def test_keys_are_stable_across_renumbering_and_markup() -> None:
    a = by_title(parse_prd("# P\n## Phase 1: Start\n- Do **the** thing\n"))
    b = by_title(parse_prd("# Q\n## Phase 7 - start\n1. Do the thing.\n"))
    assert a["Do **the** thing"].key == b["Do the thing"].key


def test_repeated_titles_in_one_section_get_distinct_keys() -> None:
    tasks = parse_prd("## Phase 1: X\n- Write docs\n- Write docs\n")
    assert len({x.key for x in tasks}) == 2


@pytest.mark.parametrize("text", ["", "   \n\n", "# Title only\n\nSome prose, no requirement items.\n"])
def test_nothing_to_plan_is_an_error(text: str) -> None:
    with pytest.raises(PRDError):
        parse_prd(text)


def test_titles_from_wrapped_items_and_checklists() -> None:
    prd = (
        "## Phase 1: Start\n"
        "- [ ] Write the installer\n"
        "- [x] Pick a licence\n"
        "1. Offline speech recognition with Whisper base from the registry packages, run off the\n"
        "   event loop so one call never stalls the others. Pocketsphinx as the light engine.\n"
        "2. Short item that wraps\n"
        "   onto a second line\n"
    )
    titles = [t.title for t in parse_prd(prd)]
    assert titles == [
        "Write the installer",
        "Pick a licence",
        "Offline speech recognition with Whisper base from the registry packages, run off the…",
        "Short item that wraps onto a second line",
    ]


def test_only_real_acceptance_markers_open_acceptance_text() -> None:
    prd = (
        "## Phase 1: Launch\n"
        "- Acceptance testing with five real users\n"
        "- Beta programme\n"
        "  Acceptance testing happens in week two.\n"
        "  **Acceptance criteria:** ten users signed up\n"
        "\n"
        "Acceptance: the launch post is live\n"
        "\n"
        "- the blog post is out\n"
    )
    t = by_title(parse_prd(prd))
    # A soft line break continues the paragraph, so the second line belongs to the title.
    beta_title = "Beta programme Acceptance testing happens in week two"
    assert list(t) == ["Acceptance testing with five real users", beta_title]
    beta = t[beta_title]
    assert beta.acceptance == "ten users signed up"
    assert "week two" in beta.description
    assert (
        t["Acceptance testing with five real users"].acceptance
        == "the launch post is live\n\n- the blog post is out"
    )

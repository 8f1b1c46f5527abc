"""The scripted LLM picks intents from noisy recognitions, fills slots, and asks for tools."""

from __future__ import annotations

import pytest

from parley.agents.spec import AgentSpec, LLMSpec
from parley.providers.base import LLMChunk, Message, ToolDefinition
from parley.providers.factory import build_llm
from parley.providers.llm.scripted import ScriptedLLM


@pytest.fixture
def llm(receptionist: AgentSpec, settings) -> ScriptedLLM:  # type: ignore[no-untyped-def]
    return build_llm(receptionist.components.llm, settings, agent=receptionist)  # type: ignore[return-value]


async def _reply(llm, *user: str, tools: list[ToolDefinition] | None = None) -> tuple[list[LLMChunk], str]:  # type: ignore[no-untyped-def]
    messages: list[Message] = []
    for i, text in enumerate(user):
        messages.append(Message("user", text))
        if i < len(user) - 1:
            messages.append(Message("assistant", "…"))
    chunks = [c async for c in llm.chat(messages, tools)]
    return chunks, "".join(c.text for c in chunks)


@pytest.mark.parametrize(
    "heard,expected",
    [
        (
            "i wood like to buk an apointment for tuesday",
            "Sure, I can book that for Tuesday. May I have your name, please?",
        ),
        (
            "I would like to work on appointment for Tuesday.",
            "Sure, I can book that for Tuesday. May I have your name, please?",
        ),
        ("I'd like to make an appointment", "Sure, I can book that. May I have your name, please?"),
        (
            "what time do you open",
            "We're open Monday to Friday, from nine in the morning to five in the afternoon.",
        ),
        ("I want to cancel my appointment on Friday", "No problem. Which day was your appointment?"),
    ],
)
async def test_noisy_recognitions_land_on_the_right_intent(
    llm: ScriptedLLM, heard: str, expected: str
) -> None:
    chunks, text = await _reply(llm, heard)
    assert text == expected
    assert len(chunks) == len(expected.split())  # streamed word by word
    assert not any(c.tool_call for c in chunks)


async def test_goodbye_speaks_then_ends_the_call(llm: ScriptedLLM) -> None:
    chunks, text = await _reply(llm, "that's all, thanks, bye")
    assert text == "Thank you for calling Parley Dental. Goodbye!"  # agent variables rendered
    assert chunks[-1].tool_call is not None and chunks[-1].tool_call.name == "end_call"
    assert all(c.tool_call is None for c in chunks[:-1])  # the tool call comes after the words


async def test_transfer_and_offered_tools(llm: ScriptedLLM) -> None:
    chunks, text = await _reply(llm, "could you put me through to a human please")
    call = chunks[-1].tool_call
    assert text == "Of course, I'll transfer you now."
    assert (
        call is not None
        and call.name == "transfer_call"
        and call.arguments == {"target": "sip:frontdesk@127.0.0.1"}
    )
    only_end = [ToolDefinition("end_call", "", {"type": "object", "properties": {}})]
    chunks, _ = await _reply(llm, "could you put me through to a human please", tools=only_end)
    assert not any(c.tool_call for c in chunks)  # transfer_call not offered on this call


async def test_fallback_for_unrelated_or_empty_speech(llm: ScriptedLLM) -> None:
    fallback = (
        "Sorry, I didn't catch that. You can book an appointment, ask our opening hours, "
        "or speak to a person."
    )
    for heard in ("the weather is nice", "hello", "yes", ""):
        assert (await _reply(llm, heard))[1] == fallback


async def test_slots_carry_over_from_earlier_turns(llm: ScriptedLLM) -> None:
    _, text = await _reply(llm, "it's about next tuesday", "I need to book an appointment")
    assert text == "Sure, I can book that for Tuesday. May I have your name, please?"


async def test_dtmf_digits(receptionist: AgentSpec, settings, llm: ScriptedLLM) -> None:  # type: ignore[no-untyped-def]
    chunks, text = await _reply(llm, "DTMF: 0")
    assert text == "Of course, I'll transfer you now." and chunks[-1].tool_call.name == "transfer_call"  # type: ignore[union-attr]
    assert (await _reply(llm, "DTMF: 7"))[1].startswith("Sorry, I didn't catch that.")
    menu = build_llm(
        LLMSpec(provider="scripted", dtmf={1: "book_appointment", 9: "goodbye"}), settings, agent=receptionist
    )
    assert (await _reply(menu, "DTMF: 1"))[1] == "Sure, I can book that. May I have your name, please?"
    assert (await _reply(menu, "DTMF: 1 DTMF: 5"))[1].startswith("Sure, I can book that.")  # keys in a row
    assert (await _reply(menu, "DTMF 1, please"))[1].startswith("Sorry")  # words are not keys
    chunks, _ = await _reply(menu, "dtmf 9")
    assert chunks[-1].tool_call.name == "end_call"  # type: ignore[union-attr]


async def test_no_reply_unless_the_caller_spoke_last(llm: ScriptedLLM) -> None:
    messages = [
        Message("user", "goodbye"),
        Message("assistant", "Goodbye!"),
        Message("tool", "ok", tool_call_id="x"),
    ]
    assert [c async for c in llm.chat(messages)] == []
    assert [c async for c in llm.chat([Message("system", "You are Ava.")])] == []


def test_bad_configuration_is_refused(receptionist: AgentSpec, settings) -> None:  # type: ignore[no-untyped-def]
    broken = receptionist.model_copy(deep=True)
    broken.intents[0].reply = "Sure {% if day %}"
    with pytest.raises(ValueError, match="intent 'book_appointment': reply template error"):
        build_llm(LLMSpec(provider="scripted"), settings, agent=broken)
    with pytest.raises(ValueError, match="unknown intent 'nope'"):
        build_llm(LLMSpec(provider="scripted", dtmf={1: "nope"}), settings, agent=receptionist)
    with pytest.raises(ValueError, match="unknown option.*colour"):
        build_llm(LLMSpec(provider="scripted", colour="blue"), settings, agent=receptionist)


async def test_echo_llm(settings) -> None:  # type: ignore[no-untyped-def]
    echo = build_llm(LLMSpec(provider="echo"), settings)
    chunks = [c async for c in echo.chat([Message("user", "  testing   one two ")])]
    assert "".join(c.text for c in chunks) == "You said: testing one two"
    assert len(chunks) == 5


async def test_fixed_replies_are_the_texts_respond_gives(llm: ScriptedLLM, receptionist: AgentSpec) -> None:
    fixed = llm.fixed_replies()
    company = receptionist.variables["company_name"]
    assert f"Thank you for calling {company}. Goodbye!" in fixed  # an agent variable is fixed per agent
    assert receptionist.fallback_reply in fixed
    assert not [t for t in fixed if "book that" in t]  # the booking reply depends on the day said
    asked = ["when are you open", "I need to cancel my appointment", "can I speak to a person", "goodbye"]
    for heard in asked:
        _, text = await _reply(llm, heard)
        assert text in fixed

"""The offline `scripted` LLM: the agent's declared intents, matched fuzzily, answered from templates.

Each intent in the agent YAML has example phrases and keywords; the caller's last words are scored
against both with rapidfuzz, so recognition errors ("i wood like to buk an apointment") still land.
Slot values (e.g. `day`) are captured from the caller's words, and the reply template is rendered with
Jinja2 using the agent's `variables` plus the slots. `end_call: true` adds an `end_call` tool call
after the reply, `transfer_to` a `transfer_call` with the target. Unmatched input gets the agent's
`fallback_reply`. Touch-tones arrive as a user message "DTMF: 1" (or "DTMF: 12", "DTMF: 1 DTMF: 2") and
are mapped through the `dtmf` option (digits → intent name; the whole sequence first, else its first
digit); by default "0" reaches the first intent that transfers to a person.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import Template, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment
from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from parley.providers.base import LLM, LLMChunk, Message, ToolCall, ToolDefinition
from parley.providers.options import Intent, ProviderOptions, Script

if TYPE_CHECKING:
    from parley.settings import Settings

#: Intents scoring below this (0–100) give the fallback reply.
MIN_SCORE = 50.0
EXAMPLE_WEIGHT = 0.6
KEYWORD_HIT = 40.0
EXTRA_KEYWORD = 5.0
KEYWORD_SIMILARITY = 80.0
SLOT_SIMILARITY = 85.0

_DTMF = re.compile(r"^(?:\s*\[?dtmf\]?\s*[:=]?\s*[0-9*#A-D](?:[\s0-9*#A-D])*)+$", re.IGNORECASE)
_DTMF_WORD = re.compile(r"\[?dtmf\]?\s*[:=]?", re.IGNORECASE)
_WORDS = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class Match:
    """The chosen intent (None = fallback), its score and the captured slots."""

    intent: Intent | None
    score: float
    slots: dict[str, str]


def _example_score(text: str, example: str) -> float:
    score = fuzz.ratio(text, example)
    if len(text) >= len(example):  # the example said inside a longer sentence
        score = max(score, fuzz.partial_ratio(example, text))
    return score


def _keyword_hit(keyword: str, text: str, words: list[str]) -> bool:
    if " " in keyword:
        return fuzz.partial_ratio(keyword, text) >= 90 if len(text) >= len(keyword) else False
    return any(fuzz.ratio(keyword, w) >= KEYWORD_SIMILARITY for w in words)


def _ngrams(words: list[str], n: int) -> list[str]:
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


class IntentMatcher:
    """Scores a caller's words against an agent's intents."""

    def __init__(self, intents: Sequence[Intent], *, min_score: float = MIN_SCORE) -> None:
        self.intents = intents
        self.min_score = min_score
        self._examples = [[default_process(e) for e in i.examples] for i in intents]
        self._keywords = [[default_process(k) for k in i.keywords] for i in intents]

    def score(self, index: int, text: str) -> float:
        """0–100-ish score of intent `index` for normalised `text`."""
        words = text.split()
        example = max((_example_score(text, e) for e in self._examples[index] if e), default=0.0)
        hits = sum(1 for k in self._keywords[index] if k and _keyword_hit(k, text, words))
        bonus = KEYWORD_HIT + EXTRA_KEYWORD * min(hits - 1, 2) if hits else 0.0
        return EXAMPLE_WEIGHT * example + bonus

    def match(self, utterance: str) -> Match:
        """The best intent for `utterance` and its slots (intent None when nothing scores high enough)."""
        text = default_process(utterance)
        if not text:
            return Match(None, 0.0, {})
        best, best_score = None, 0.0
        for index, intent in enumerate(self.intents):
            score = self.score(index, text)
            if score > best_score:
                best, best_score = intent, score
        if best is None or best_score < self.min_score:
            return Match(None, best_score, {})
        return Match(best, best_score, capture_slots(best, utterance))


def capture_slots(intent: Intent, utterance: str) -> dict[str, str]:
    """Slot values heard in `utterance` (fuzzy, per word or word group), as written in the YAML."""
    words = default_process(utterance).split()
    found: dict[str, str] = {}
    for slot, values in intent.slots.items():
        best, best_score = None, 0.0
        for value in values:
            norm = default_process(value)
            n = max(1, len(norm.split()))
            for gram in _ngrams(words, n):
                score = fuzz.ratio(norm, gram)
                if score > best_score:
                    best, best_score = value, score
        if best is not None and best_score >= SLOT_SIMILARITY:
            found[slot] = best
    return found


class ScriptedLLM(LLM):
    """The `scripted` LLM provider."""

    name = "scripted"

    def __init__(
        self,
        script: Script,
        *,
        min_score: float = MIN_SCORE,
        dtmf: dict[str, str] | None = None,
        word_delay_s: float = 0.0,
    ) -> None:
        self.script = script
        self.matcher = IntentMatcher(script.intents, min_score=min_score)
        self._env = SandboxedEnvironment(autoescape=False)
        self._templates = {}
        for intent in script.intents:
            try:
                self._templates[intent.name] = self._env.from_string(intent.reply)
            except TemplateError as exc:
                raise ValueError(f"intent {intent.name!r}: reply template error: {exc}") from None
        self._fallback = self._env.from_string(script.fallback_reply)
        self._fixed = self._fixed_texts()
        by_name = {i.name: i for i in script.intents}
        self._dtmf: dict[str, Intent] = {}
        for digit, name in (dtmf or {}).items():
            if name not in by_name:
                raise ValueError(f"scripted dtmf option: digit {digit!r} names unknown intent {name!r}")
            self._dtmf[str(digit)] = by_name[name]
        if "0" not in self._dtmf:
            human = next((i for i in script.intents if i.transfer_to), None)
            if human is not None:
                self._dtmf["0"] = human
        self._word_delay = word_delay_s

    def fixed_replies(self) -> list[str]:
        """The replies that are always the same text (for a TTS cache): the intents' and the fallback's
        templates that use no slot and no variable the agent does not define, rendered as `respond` would."""
        return list(self._fixed)

    def _fixed_texts(self) -> list[str]:
        sources = [(i.reply, set(i.slots)) for i in self.script.intents]
        sources.append((self.script.fallback_reply, set()))
        texts: list[str] = []
        for source, slots in sources:
            used = meta.find_undeclared_variables(self._env.parse(source))
            if used & slots or not used <= set(self.script.variables):
                continue
            text = _render(self._env.from_string(source), dict(self.script.variables))
            if text and text not in texts:
                texts.append(text)
        return texts

    def respond(self, messages: list[Message]) -> tuple[str, list[ToolCall]]:
        """The reply text and tool calls for the conversation so far (no streaming)."""
        users = [m for m in messages if m.role == "user"]
        if not messages or messages[-1].role != "user" or not users:
            return "", []
        last = users[-1].content
        if _DTMF.match(last):
            digits = "".join(_DTMF_WORD.sub("", last).split()).upper()
            intent = self._dtmf.get(digits) or self._dtmf.get(digits[:1])
            match = Match(intent, 100.0 if intent else 0.0, {})
        else:
            match = self.matcher.match(last)
        context: dict[str, Any] = dict(self.script.variables)
        if match.intent is not None:
            # slots said in earlier turns carry over; the latest mention wins
            for message in users[:-1]:
                context.update(capture_slots(match.intent, message.content))
            context.update(match.slots)
        template = self._templates[match.intent.name] if match.intent else self._fallback
        text = _render(template, context)
        calls: list[ToolCall] = []
        if match.intent is not None:
            if match.intent.transfer_to:
                calls.append(_call("transfer_call", {"target": match.intent.transfer_to}))
            if match.intent.end_call:
                calls.append(_call("end_call", {}))
        return text, calls

    async def chat(
        self, messages: list[Message], tools: list[ToolDefinition] | None = None
    ) -> AsyncGenerator[LLMChunk, None]:
        """Stream the reply word by word, then the tool calls the intent asks for."""
        text, calls = self.respond(messages)
        for word in _WORDS.findall(text):
            yield LLMChunk(text=word)
            await asyncio.sleep(self._word_delay)
        offered = None if tools is None else {t.name for t in tools}
        for call in calls:
            if offered is None or call.name in offered:
                yield LLMChunk(tool_call=call)


def _render(template: Template, context: dict[str, Any]) -> str:
    return " ".join(template.render(**context).split())


def _call(name: str, arguments: dict[str, Any]) -> ToolCall:
    return ToolCall(id=f"call_{uuid.uuid4().hex[:16]}", name=name, arguments=arguments)


def create(spec: ProviderOptions, *, settings: Settings, script: Script | None = None) -> ScriptedLLM:
    """Factory used by the registry: needs `script=` (the agent); options `min_score` (0–100), `dtmf`
    (digit → intent), `word_delay_s`."""
    if script is None:
        raise ValueError(
            "the scripted LLM needs the agent's intents: build_llm(spec, settings, agent=agent_spec)"
        )
    opts = spec.options
    unknown = set(opts) - {"min_score", "dtmf", "word_delay_s"}
    if unknown:
        raise ValueError(f"scripted: unknown option(s) {', '.join(sorted(unknown))}")
    min_score = float(opts.get("min_score", MIN_SCORE))
    if not 0 < min_score <= 100:
        raise ValueError(f"scripted min_score must be in (0, 100], got {min_score}")
    dtmf = opts.get("dtmf") or {}
    if not isinstance(dtmf, dict):
        raise ValueError("scripted dtmf option must map digits to intent names")
    return ScriptedLLM(
        script,
        min_score=min_score,
        dtmf={str(k): str(v) for k, v in dtmf.items()},
        word_delay_s=float(opts.get("word_delay_s", 0.0)),
    )

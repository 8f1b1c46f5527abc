"""Post-call analysis: a summary, structured data that fits the agent's JSON schema, and success against
its rubric, made by the agent's own LLM after the call (`analysis:` in the agent YAML).

With the offline `scripted` LLM the caller's words are matched to the agent's intents: slots fill schema
properties of the same name (or ending in `_<slot>`: `appointment_day` from `day`), a boolean property is true when an intent of that name (or a prefix of it,
`callback` for `callback_requested`) was heard, the summary is the intents in words, and success is one
of `success_intents` heard. Any other LLM is asked for one JSON object with `summary`, `data`, `success`
and `success_reason`. Either way `data` is validated with jsonschema; errors are kept, never hidden.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator

from parley.calls.records import CallDetail
from parley.calls.models import utcnow
from parley.providers.base import LLM, Message

if TYPE_CHECKING:
    from parley.agents.spec import AnalysisSpec


@dataclass
class Analysis:
    """The result of analysing one call."""

    summary: str
    data: dict[str, Any]
    success: bool | None
    success_reason: str
    valid: bool = True
    errors: list[str] = field(default_factory=list)
    by: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "data": self.data, "success": self.success,
                "success_reason": self.success_reason, "valid": self.valid, "errors": self.errors,
                "by": self.by, "analyzed_at": utcnow().isoformat()}


def _words(name: str) -> str:
    return name.replace("_", " ")


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        m = re.search(r"-?\d+", value)
        return int(m.group(0)) if m else value
    if kind == "number":
        m = re.search(r"-?\d+(\.\d+)?", value)
        return float(m.group(0)) if m else value
    if kind == "boolean":
        return value.strip().lower() in ("yes", "true", "1")
    return value


def scripted(detail: CallDetail, spec: AnalysisSpec, llm: Any) -> Analysis:
    """The offline analysis from the scripted LLM's intent matcher (see the module docstring)."""
    from parley.providers.llm.scripted import capture_slots

    heard: list[str] = []
    slots: dict[str, str] = {}
    for entry in detail.transcript:
        if entry.role != "caller":
            continue
        match = llm.matcher.match(entry.text)
        if match.intent is None:
            continue
        if match.intent.name not in heard:
            heard.append(match.intent.name)
        slots.update(capture_slots(match.intent, entry.text))
    props: dict[str, Any] = spec.data_schema.get("properties", {})
    data: dict[str, Any] = {}
    for name, prop in props.items():
        slot = next((k for k in slots if name == k or name.endswith(f"_{k}")), None)  # appointment_day <- day
        if slot is not None:
            data[name] = _coerce(slots[slot], prop)
        elif prop.get("type") == "boolean":
            data[name] = any(name == i or name.startswith(f"{i}_") or i.startswith(name) for i in heard)
    if heard:
        parts = [_words(i) + (" (" + ", ".join(f"{_words(k)}: {v}" for k, v in slots.items()) + ")"
                              if i == heard[0] and slots else "") for i in heard]
        summary = "The caller wanted to " + "; then ".join(parts) + "."
    else:
        summary = "No request of the caller was recognised." if detail.transcript else "Nothing was said."
    if spec.success_intents:
        hit = [i for i in heard if i in spec.success_intents]
        success: bool | None = bool(hit)
        reason = (f"heard {', '.join(hit)}" if hit else
                  f"none of {', '.join(spec.success_intents)} was heard")
    else:
        success = None
        reason = "no success_intents given for the scripted LLM"
    return Analysis(summary, data, success, reason, by="scripted")


async def with_llm(detail: CallDetail, spec: AnalysisSpec, llm: LLM) -> Analysis:
    """Ask a real LLM for one JSON object (summary, data, success, success_reason)."""
    lines = "\n".join(f"{t.role}: {t.text}" for t in detail.transcript)
    system = (f"{spec.summary_prompt}\nAnswer with one JSON object only: {{\"summary\": string, \"data\": object "
              f"matching this JSON schema: {json.dumps(spec.data_schema)}, \"success\": boolean, "
              f"\"success_reason\": string}}." + (f"\nSuccess means: {spec.success_rubric}" if spec.success_rubric
                                                   else ""))
    text = ""
    async for chunk in llm.chat([Message("system", system), Message("user", f"Call transcript:\n{lines}")]):
        text += chunk.text
    m = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        parsed = json.loads(m.group(0)) if m else {}
    except json.JSONDecodeError:
        parsed = {}
    if not isinstance(parsed, dict) or not parsed:
        return Analysis("", {}, None, "", valid=False, errors=["the LLM did not answer with a JSON object"],
                        by=llm.name)
    raw = parsed.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    success = parsed.get("success") if isinstance(parsed.get("success"), bool) else None
    return Analysis(str(parsed.get("summary", "")), data, success, str(parsed.get("success_reason", "")),
                    by=llm.name)


async def analyze(detail: CallDetail, spec: AnalysisSpec, llm: LLM) -> Analysis:
    """Analyse a finished call with `llm`; `data` validated against the spec's schema."""
    result = scripted(detail, spec, llm) if llm.name == "scripted" and hasattr(llm, "matcher") \
        else await with_llm(detail, spec, llm)
    validator = Draft202012Validator(spec.data_schema)
    problems = [f"{'/'.join(str(p) for p in e.absolute_path) or 'data'}: {e.message}"
                for e in validator.iter_errors(result.data)]
    if problems:
        result.valid = False
        result.errors.extend(problems)
    return result


def webhook_body(detail: CallDetail, analysis: dict[str, Any]) -> str:
    """The `call.analyzed` event: the call, transcript, tool calls, outcome and analysis together."""
    import uuid

    call = detail.call
    tools = [e.data for e in detail.timeline if e.type == "tool_call"]
    amd = call.metadata.get("amd")
    body = {"id": f"evt_{uuid.uuid4().hex}", "type": "call.analyzed", "created_at": utcnow().isoformat(),
            "call": call.to_dict(), "transcript": [t.to_dict() for t in detail.transcript], "tool_calls": tools,
            "outcome": {"status": call.status, "end_reason": call.end_reason,
                        **({"amd": amd} if amd else {})},
            "analysis": analysis}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

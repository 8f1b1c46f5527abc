"""The agent schema: what an `agents/*.yaml` file may say.

The original project's format (`name`, `components.stt|llm|tts`, `prompts.inbound|outbound`) is a valid
subset; everything else has a default that suits a phone call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parley.providers import registry
from parley.providers.options import ProviderOptions


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(BaseModel):
    """One engine choice: `provider` plus provider options (language, voice, model, base_url …).

    Unknown keys are kept and passed to the provider, so a vendor option needs no schema change.
    `fallbacks` lists further providers tried in order when this one fails (each a spec of the same
    kind, so it has the same typed settings). `provider_options()` is what the providers are built from.
    """

    model_config = ConfigDict(extra="allow")

    provider: str
    language: str | None = None
    model: str | None = None
    voice: str | None = None
    fallbacks: Sequence[ComponentSpec] = Field(default_factory=list)

    KIND: ClassVar[str] = ""

    @model_validator(mode="after")
    def _known_provider(self) -> ComponentSpec:
        if self.KIND:
            for one in [self, *self.fallbacks]:
                if one.provider not in registry.known(self.KIND):
                    raise ValueError(
                        f"unknown {self.KIND} provider {one.provider!r}; "
                        f"choose one of: {', '.join(registry.known(self.KIND))}"
                    )
        return self

    @property
    def options(self) -> dict[str, Any]:
        """Provider-specific keys beyond the common ones."""
        return dict(self.model_extra or {})

    def provider_options(self) -> ProviderOptions:
        """This component as the providers' factory reads it (fallbacks included)."""
        return ProviderOptions(
            provider=self.provider, language=self.language, model=self.model, voice=self.voice,
            options=self.options, fallbacks=tuple(f.provider_options() for f in self.fallbacks),
            **self._typed(),
        )

    def _typed(self) -> dict[str, Any]:
        """The kind's own typed settings, as `ProviderOptions` fields."""
        return {}


class STTSpec(ComponentSpec):
    """The STT component."""

    KIND: ClassVar[str] = "stt"
    fallbacks: Sequence[STTSpec] = Field(default_factory=list)


class LLMSpec(ComponentSpec):
    """The LLM component."""

    KIND: ClassVar[str] = "llm"
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    fallbacks: Sequence[LLMSpec] = Field(default_factory=list)

    def _typed(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


class TTSSpec(ComponentSpec):
    """The TTS component."""

    KIND: ClassVar[str] = "tts"
    speed: float | None = Field(None, gt=0, le=4)
    fallbacks: Sequence[TTSSpec] = Field(default_factory=list)

    def _typed(self) -> dict[str, Any]:
        return {"speed": self.speed}


class VADSpec(ComponentSpec):
    """The VAD component."""

    KIND: ClassVar[str] = "vad"
    provider: str = "silero"
    threshold: float = Field(0.5, gt=0, lt=1, description="Speech probability at or above which a window "
                             "counts as speech (read by the engine as `vad.threshold`).")

    def _typed(self) -> dict[str, Any]:
        return {"threshold": self.threshold}


class Components(_Strict):
    """The engines a conversation runs on. Defaults are the offline ones."""

    stt: STTSpec = Field(default_factory=lambda: STTSpec(provider="whisper", language="en"))
    llm: LLMSpec = Field(default_factory=lambda: LLMSpec(provider="scripted"))
    tts: TTSSpec = Field(default_factory=lambda: TTSSpec(provider="piper"))
    vad: VADSpec = Field(default_factory=VADSpec)


class Prompts(_Strict):
    """Keys into `prompts/prompts.yaml` for each call direction."""

    inbound: str = "default_inbound"
    outbound: str = "default_outbound"


class Greeting(_Strict):
    """What the agent says first, per direction (templates). Empty = say nothing."""

    inbound: str = ""
    outbound: str = ""


class TurnSpec(_Strict):
    """When the caller's turn ends.

    `detector: smart_turn` (default): after `min_silence_ms` of silence the Smart Turn audio model and the
    words so far decide; "finished" ends the turn there; words that say the caller has not finished wait up
    to `max_silence_ms`, the audio model alone (the words have no objection) up to `doubt_silence_ms` (never
    more than `max_silence_ms`), and a caller asking for time ("hold on", "um") up to `hold_silence_ms`.
    `detector: silence`: the turn ends after a fixed `end_of_turn_silence_ms`.
    `prefetch_answer` asks the LLM as soon as the words are in, while the detector still waits (the answer
    is used only if the turn ends on exactly those words; an unused one costs an LLM request)."""

    detector: Literal["smart_turn", "silence"] = "smart_turn"
    min_silence_ms: int = Field(200, ge=50, le=2000, description="Silence before the detector decides.")
    max_silence_ms: int = Field(1500, ge=200, le=10000,
                                description="Longest wait when the words say the turn is unfinished.")
    doubt_silence_ms: int = Field(800, ge=100, le=10000,
                                  description="Longest wait when only the audio model hears an unfinished "
                                              "turn (the words have no objection); capped at max_silence_ms.")
    hold_silence_ms: int = Field(6000, ge=200, le=60000,
                                 description="Longest wait after the caller asked for time ('hold on', 'um').")
    threshold: float = Field(0.5, gt=0, lt=1,
                             description="Smart Turn probability from which the audio says 'finished'.")
    end_of_turn_silence_ms: int = Field(700, ge=100, le=5000, description="The `silence` detector's wait.")
    min_speech_ms: int = Field(150, ge=0, le=2000, description="Shorter sounds (clicks, coughs) are ignored.")
    prefetch_answer: bool = Field(True, description="Ask the LLM on the words before the turn is decided.")

    @model_validator(mode="after")
    def _ordered(self) -> TurnSpec:
        if not self.min_silence_ms < self.max_silence_ms <= self.hold_silence_ms:
            raise ValueError("need min_silence_ms < max_silence_ms <= hold_silence_ms; got "
                             f"{self.min_silence_ms}, {self.max_silence_ms}, {self.hold_silence_ms}")
        return self


class InterruptionSpec(_Strict):
    """Barge-in: the caller talking over the agent."""

    min_speech_ms: int = Field(300, ge=0, le=5000, description="Caller speech needed to stop the agent.")
    backchannels: list[str] = Field(
        default_factory=lambda: ["mm-hm", "mhm", "uh-huh", "yeah", "yes", "okay", "ok", "right", "sure"],
        description="Utterances that do not interrupt (acknowledgements).",
    )
    ignore_backchannels: bool = True
    false_interruption_timeout_ms: int = Field(
        1500,
        ge=0,
        le=10000,
        description="Resume the interrupted speech if the interrupting utterance's words are not known this "
        "long after it ended (recognition too slow) and the caller is silent.",
    )
    resume_false_interruptions: bool = True


class IdleSpec(_Strict):
    """What happens when nobody speaks."""

    reminder_after_s: float = Field(8.0, gt=0)
    reminders: list[str] = Field(default_factory=lambda: ["Are you still there?"])
    max_reminders: int = Field(2, ge=0)
    hangup_message: str = "I haven't heard from you, so I'll end the call now. Goodbye!"


class AcknowledgementSpec(_Strict):
    """A short line ("Let me check.") said when the LLM's answer is slow to start. Off by default.

    Said from the TTS cache (warmed at start) when no sentence of the answer has arrived `after_ms` after
    the LLM was asked; it is heard and in the transcript, not in the LLM's history as an answer."""

    enabled: bool = False
    after_ms: int = Field(
        600, ge=100, le=10000, description="Wait this long for the answer's first sentence."
    )
    phrases: list[str] = Field(
        default_factory=lambda: ["Let me check.", "One moment.", "Okay, let me see."],
        description="Said in turn, one per slow answer.",
    )

    @model_validator(mode="after")
    def _has_phrases(self) -> AcknowledgementSpec:
        if self.enabled and not any(p.strip() for p in self.phrases):
            raise ValueError("acknowledgement is enabled but has no phrases; add some or set enabled: false")
        return self


class ToolSpec(_Strict):
    """A tool the LLM may call: a built-in (`end_call`, `transfer_call`, `send_dtmf`) or an HTTP tool."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    type: Literal["builtin", "http"] = "builtin"
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema of the arguments.",
    )
    # http tools
    url: str | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(5.0, gt=0, le=60)
    # built-ins
    target: str | None = Field(None, description="transfer_call: default SIP URI or number.")
    message: str | None = Field(None, description="Line spoken before the tool acts (e.g. goodbye).")

    BUILTINS: ClassVar[frozenset[str]] = frozenset({"end_call", "transfer_call", "send_dtmf"})

    @model_validator(mode="after")
    def _consistent(self) -> ToolSpec:
        if self.type == "builtin" and self.name not in self.BUILTINS:
            raise ValueError(
                f"unknown built-in tool {self.name!r}; built-ins are {', '.join(sorted(self.BUILTINS))}"
                " (set type: http for an HTTP tool)"
            )
        if self.type == "http":
            if not self.url or not re.match(r"^https?://", self.url):
                raise ValueError(f"http tool {self.name!r} needs url: http(s)://…")
            if self.parameters.get("type") != "object":
                raise ValueError(f"tool {self.name!r}: parameters must be a JSON schema with type: object")
        return self


class IntentSpec(_Strict):
    """One intent of the offline `scripted` LLM: example phrases/keywords → a reply template."""

    name: str
    examples: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    reply: str
    slots: dict[str, list[str]] = Field(
        default_factory=dict, description="Slot name -> values recognised in the caller's words."
    )
    end_call: bool = False
    transfer_to: str | None = None

    @model_validator(mode="after")
    def _has_trigger(self) -> IntentSpec:
        if not self.examples and not self.keywords:
            raise ValueError(f"intent {self.name!r} needs examples or keywords")
        return self


class AmdSpec(_Strict):
    """Answering-machine detection on outbound calls, before the agent greets (`engine/amd.py`)."""

    enabled: bool = False
    action: Literal["hangup", "leave_message", "continue"] = Field(
        "hangup", description="On a machine: hang up, leave `message` after the beep, or talk as usual.")
    message: str | None = Field(None, description="leave_message: what to say ({{ variables }} filled in); "
                                                  "default the outbound greeting.")
    max_ms: int = Field(5000, ge=1000, le=30000, description="Decide within this much of the callee's audio.")
    greeting_max_ms: int = Field(2400, ge=800, le=10000, description="A longer unbroken greeting is a machine.")
    after_greeting_ms: int = Field(800, ge=200, le=5000, description="Silence after a short greeting: a person.")
    beep_wait_ms: int = Field(20000, ge=1000, le=60000, description="leave_message: wait this long for the beep.")


class AnalysisSpec(_Strict):
    """Post-call analysis, run by the agent's LLM after the call (`calls/analysis.py`)."""

    summary_prompt: str = Field("Summarise the call in two sentences.", max_length=4000)
    data_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}},
                                        alias="schema", description="JSON schema of the structured data.")
    success_rubric: str | None = Field(None, max_length=4000, description="What makes the call a success.")
    success_intents: list[str] = Field(default_factory=list, description="scripted LLM: intents that mean success.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("data_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise ValueError(f"schema is not a valid JSON schema: {exc.message}") from None
        if value.get("type") != "object":
            raise ValueError("schema must have type: object")
        return value


class AgentSpec(_Strict):
    """A voice agent, as written in `agents/NAME.yaml`."""

    name: str = Field(min_length=1)
    description: str = ""
    language: str = "en"
    components: Components = Field(default_factory=Components)
    prompts: Prompts = Field(default_factory=Prompts)
    greeting: Greeting = Field(default_factory=Greeting)
    first_speaker: Literal["agent", "caller"] = "agent"
    allow_interruptions: bool = True
    turn: TurnSpec = Field(default_factory=TurnSpec)
    interruption: InterruptionSpec = Field(default_factory=InterruptionSpec)
    idle: IdleSpec = Field(default_factory=IdleSpec)
    acknowledgement: AcknowledgementSpec = Field(default_factory=AcknowledgementSpec)
    max_duration_s: int = Field(1800, ge=10, le=6 * 3600)
    tools: list[ToolSpec] = Field(default_factory=list)
    intents: list[IntentSpec] = Field(default_factory=list)
    fallback_reply: str = "Sorry, I didn't catch that. Could you say it another way?"
    apology: str = "Sorry, I'm having trouble right now."
    variables: dict[str, Any] = Field(default_factory=dict)
    recording: bool = False
    webhook_url: str | None = None
    max_concurrent_calls: int | None = Field(None, ge=1)
    retry: dict[str, Any] = Field(default_factory=dict, description="Outbound retry policy overrides.")
    amd: AmdSpec = Field(default_factory=AmdSpec, description="Answering-machine detection (outbound).")
    analysis: AnalysisSpec | None = Field(None, description="Post-call analysis: summary, data, success.")

    @field_validator("greeting", mode="before")
    @classmethod
    def _greeting_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"inbound": value, "outbound": value}
        return value

    @model_validator(mode="after")
    def _unique_tools(self) -> AgentSpec:
        names = [t.name for t in self.tools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tool names must be unique; repeated: {', '.join(dupes)}")
        return self

    def prompt_key(self, direction: Literal["inbound", "outbound"]) -> str:
        """The prompts.yaml key used for a call in `direction`."""
        return getattr(self.prompts, direction)

"""`parley talk` (a WAV question through a real conversation) and `parley chat` (typed turns)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import typer

from parley.cli.common import console, fail, settings

if TYPE_CHECKING:
    from parley.agents.loader import Agent
    from parley.engine.events import Event
    from parley.settings import Settings


def _agent(name: str | None) -> tuple[Settings, Agent]:
    from parley.agents import AgentError, AgentRegistry

    s = settings()
    try:
        registry = AgentRegistry.load(s.agents_dir, s.prompts_dir)
    except AgentError as exc:
        fail("; ".join(exc.problems))
    try:
        return s, registry.get(name or s.default_agent)
    except KeyError as exc:
        fail(str(exc.args[0]))


def talk(
    agent: str | None = typer.Option(
        None, "--agent", "-a", help="Agent key or name (default: DEFAULT_AGENT)."
    ),
    input_path: Path = typer.Option(..., "--in", "-i", help="The caller's question: a 16-bit PCM WAV file."),
    output_path: Path = typer.Option(
        Path("reply.wav"), "--out", "-o", help="Where to write the agent's reply."
    ),
    speed: float = typer.Option(
        1.0,
        "--speed",
        min=0.25,
        max=20.0,
        help="Media clock speed: 1 = real time (honest latency), 4 = four times faster.",
    ),
    greet: bool = typer.Option(False, "--greet", help="Let the agent say its greeting first."),
    as_json: bool = typer.Option(False, "--json", help="Print the events as JSON lines."),
) -> None:
    """Run a real conversation over a WAV file; print the transcript and latency marks; write the reply WAV."""
    from parley.engine.events import TranscriptEntry, TurnMetrics
    from parley.engine.session import Engines, FileTalk, talk_file
    from parley.media.wav import AudioFormatError, read_wav, write_wav
    from parley.providers.base import ProviderError

    s, chosen = _agent(agent)
    try:
        pcm, rate = read_wav(input_path, max_seconds=600)
    except AudioFormatError as exc:
        fail(f"{input_path}: {exc}")
    if rate > 48000:
        fail(f"{input_path}: sample rate {rate} Hz is not supported; use 8000–48000 Hz")
    if output_path.is_dir():
        fail(f"{output_path} is a folder; give a file name for the reply WAV")

    def show(event: Event) -> None:
        if as_json:
            typer.echo(json.dumps(event.to_dict()))
        elif isinstance(event, TranscriptEntry):
            cut = " [interrupted]" if event.interrupted else ""
            who = "caller" if event.role == "user" else "agent "
            console.print(
                f"[dim]{event.start:6.2f}–{event.end:6.2f}[/] [bold]{who}[/] {event.text}{cut}",
                highlight=False,
            )
        elif isinstance(event, TurnMetrics):
            marks = ", ".join(
                f"{label} {value:.0f} ms"
                for label, value in (
                    ("stt final", event.stt_final_ms),
                    ("llm first token", event.llm_first_token_ms),
                    ("tts first audio", event.tts_first_audio_ms),
                    ("first frame out", event.first_frame_out_ms),
                )
                if value is not None
            )
            v2v = (
                f"; voice-to-voice {event.voice_to_voice_ms:.0f} ms"
                if event.voice_to_voice_ms is not None
                else ""
            )
            console.print(f"[dim]  turn {event.turn}: after end of turn: {marks}{v2v}[/]", highlight=False)

    async def run() -> FileTalk:
        engines = Engines.build(chosen, s)
        await engines.warm()
        return await talk_file(
            engines, pcm, rate, speed=speed, first_speaker="agent" if greet else "caller", on_event=show
        )

    try:
        result = asyncio.run(run())
    except (ValueError, ProviderError) as exc:
        fail(f"agent {chosen.key!r}: {exc}")
    if not result.said("user"):
        fail(f"{input_path}: no speech was recognised")
    if result.audio.size == 0:
        fail("the agent produced no spoken reply")
    try:
        write_wav(output_path, result.audio, rate)
    except OSError as exc:
        fail(f"cannot write {output_path}: {exc.strerror or exc}")
    if not as_json:
        console.print(f"reply: {output_path} ({result.audio.size / rate:.1f} s, {rate} Hz)", highlight=False)


def chat(
    agent: str | None = typer.Option(
        None, "--agent", "-a", help="Agent key or name (default: DEFAULT_AGENT)."
    ),
    direction: str = typer.Option(
        "inbound", "--direction", help="inbound or outbound (prompt and greeting)."
    ),
) -> None:
    """Chat with an agent by typing (its LLM, prompt and tools; no audio). Empty line or Ctrl-D ends."""
    from parley.engine.chat import TextChat
    from parley.providers.base import ProviderError
    from parley.providers.factory import build_llm

    if direction not in ("inbound", "outbound"):
        fail(f"--direction must be inbound or outbound, not {direction!r}")
    s, chosen = _agent(agent)
    try:
        llm = build_llm(chosen.spec.components.llm, s, agent=chosen.spec)
        session = TextChat(
            chosen.spec,
            llm,
            system_prompt=chosen.system_prompt(cast(Literal["inbound", "outbound"], direction)),
            greeting=chosen.greeting(cast(Literal["inbound", "outbound"], direction)),
        )
    except (ValueError, ProviderError) as exc:
        fail(f"agent {chosen.key!r}: {exc}")
    if len(session.history) and session.history[-1].role == "assistant":
        console.print(f"[bold]agent[/] {session.history[-1].content}", highlight=False)

    async def loop() -> None:
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                return
            if not line.strip():
                return
            try:
                reply = await session.send(line.strip())
            except ProviderError as exc:
                console.print(f"[red]provider error:[/] {exc}", highlight=False)
                continue
            if reply.text:
                console.print(f"[bold]agent[/] {reply.text}", highlight=False)
            for call, result in zip(reply.tool_calls, reply.tool_results):
                console.print(f"[dim]  tool {TextChat.describe(call)} -> {result}[/]", highlight=False)
            if reply.ended:
                console.print(f"[dim]conversation ended ({reply.ended})[/]", highlight=False)
                return

    asyncio.run(loop())


def register(app: typer.Typer) -> None:
    app.command("talk")(talk)
    app.command("chat")(chat)

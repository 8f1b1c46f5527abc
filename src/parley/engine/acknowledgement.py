"""A short phrase ("Let me check.") said when the LLM's answer is slow to start (`acknowledgement:`).

`Acknowledger.later(sp, reply)`, at the start of an LLM round that has said nothing yet, schedules the
next phrase (they are said in turn) for `after_ms` later; it is said only if the answer has no sentence
by then. Before the answer's first sentence is spoken, `Acknowledgement.settle()` cancels a phrase not
begun, or waits for one being said (one voice at a time). The phrase is a filler piece of the speech: heard
and in the transcript, never said again on a resume, not in the LLM's history as part of the answer.
Its audio comes from the TTS cache (`Engines.fixed_texts` includes the phrases).
"""

from __future__ import annotations

import asyncio

from parley.agents.spec import AcknowledgementSpec
from parley.engine.reply import ReplyStream
from parley.engine.state import AgentSpeech
from parley.engine.voice import AgentVoice


class Acknowledgement:
    """One phrase waiting for its moment (`task`); `speaking` once it has begun."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.speaking = False

    async def settle(self) -> None:
        """The answer is ready: cancel the phrase if not begun, else let it finish first."""
        if self.task is None:
            return
        if not self.speaking:
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


class Acknowledger:
    """Says an agent's acknowledgement phrases, in turn, when its answers are slow."""

    def __init__(self, spec: AcknowledgementSpec, voice: AgentVoice) -> None:
        self.after_s = spec.after_ms / 1000.0
        self.phrases = [p for p in spec.phrases if p.strip()] if spec.enabled else []
        self.voice = voice
        self.said = 0

    def later(self, sp: AgentSpeech, reply: ReplyStream) -> Acknowledgement | None:
        """Schedule the next phrase for this speech (None: off, or the speech is already heard)."""
        if not self.phrases or sp.started:
            return None
        ack = Acknowledgement()
        ack.task = sp.children.spawn(self._say(sp, reply, ack), name="acknowledgement")
        return ack

    async def _say(self, sp: AgentSpeech, reply: ReplyStream, ack: Acknowledgement) -> None:
        await asyncio.sleep(self.after_s)
        if sp.started or sp.cancelled or reply.finished or not reply.queue.empty():
            return
        ack.speaking = True
        phrase = self.phrases[self.said % len(self.phrases)]
        self.said += 1
        await self.voice.say(sp, [phrase], filler=True)

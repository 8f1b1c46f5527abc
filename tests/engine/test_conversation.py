"""The conversation engine over the file channel, with the fast deterministic providers of fakes.py.

Time is driven by audio frames (the file channel runs 4-10x faster than real time); every check is on
what a caller would notice: the audio played and when, the transcript, the history the LLM sees, the
end of the call.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import numpy as np
import pytest

from parley.engine.conversation import Conversation
from parley.engine.events import (
    ConversationEnded,
    DtmfReceived,
    Event,
    Interruption,
    ProviderFailed,
    ToolInvoked,
    TranscriptEntry,
    TurnMetrics,
)
from parley.engine.file_channel import FileChannel
from tests.engine.fakes import CallerAudio, EnergyVAD, ScriptLLM, ToneSTT, ToneTTS, agent_spec, call

RATE = 8000  # a telephone path: 8 kHz channel, 16 kHz STT/VAD, 16 kHz TTS resampled down
WORDS = {
    300: "tell me about your opening hours",
    400: "wait stop please",
    500: "",
    450: "mm-hm",
    350: "goodbye",
}

pytestmark = [pytest.mark.realtime, pytest.mark.timeout(60)]


@dataclass
class Run:
    conversation: Conversation
    channel: FileChannel
    events: list[Event]
    reason: str

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def said(self, role: str) -> list[TranscriptEntry]:
        return [e for e in self.of(TranscriptEntry) if e.role == role]

    def voiced(self, start: float, end: float) -> float:
        """Seconds of agent sound in [start, end) (5 ms blocks with energy)."""
        out = self.channel.output()[int(start * RATE) : int(end * RATE)]
        blocks = out[: out.size - out.size % 40].reshape(-1, 40).astype(np.float32)
        return float(np.count_nonzero(np.sqrt((blocks**2).mean(axis=1)) > 300)) * 0.005


async def converse(
    audio: CallerAudio,
    *,
    llm: ScriptLLM,
    tts: ToneTTS | None = None,
    stt: ToneSTT | None = None,
    speed: float = 4.0,
    tail_s: float = 0.0,
    greeting: str = "",
    dtmf: tuple[tuple[float, str], ...] = (),
    transfer_result: bool = True,
    **spec: Any,
) -> Run:
    channel = FileChannel(
        audio.pcm, audio.rate, speed=speed, tail_s=tail_s, dtmf=dtmf, transfer_result=transfer_result
    )
    events: list[Event] = []
    conversation = Conversation(
        agent_spec(**spec),
        channel,
        stt=stt or ToneSTT(WORDS),
        llm=llm,
        tts=tts or ToneTTS(),
        vad=EnergyVAD(),
        system_prompt="You are a test agent.",
        greeting=greeting,
        on_event=events.append,
    )
    reason = await conversation.run()
    return Run(conversation, channel, events, reason)


def roles(history: list[Any]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in history if m.role != "system"]


async def test_caller_first_turn_gets_a_reply_with_latency_marks() -> None:
    audio = CallerAudio(5).say(300, 0.5, 1.0)
    llm = ScriptLLM(["We are open from nine to five."])
    run = await converse(audio, llm=llm)

    assert run.voiced(0, 1.5) == 0, "caller-first: the agent must not speak before the caller"
    user = run.said("user")
    assert [u.text for u in user] == ["tell me about your opening hours"]
    assert 0.45 <= user[0].start <= 0.6 and 1.45 <= user[0].end <= 1.55
    agent = run.said("agent")
    assert [a.text for a in agent] == ["We are open from nine to five."]
    # the reply starts after the end-of-turn silence (400 ms) and sounds for its full length
    assert 1.85 <= agent[0].start <= 2.2
    assert run.voiced(agent[0].start, agent[0].end + 0.05) == pytest.approx(
        len(agent[0].text) * 0.05, abs=0.02
    )
    (marks,) = run.of(TurnMetrics)
    assert marks.speech_end == pytest.approx(1.5, abs=0.05)
    assert marks.end_of_turn == pytest.approx(1.9, abs=0.06)
    for mark in (
        marks.stt_final_ms,
        marks.llm_first_token_ms,
        marks.tts_first_audio_ms,
        marks.first_frame_out_ms,
    ):
        assert mark is not None and 0 <= mark < 1000
    assert (
        marks.stt_final_ms <= marks.llm_first_token_ms <= marks.tts_first_audio_ms <= marks.first_frame_out_ms
    )
    assert 400 <= marks.voice_to_voice_ms <= 800
    assert roles(run.conversation.history) == [
        ("user", "tell me about your opening hours"),
        ("assistant", "We are open from nine to five."),
    ]
    assert run.reason == "input_ended"
    assert run.of(ConversationEnded)[0].reason == "input_ended"


async def test_agent_first_greets_before_the_caller_speaks() -> None:
    audio = CallerAudio(6).say(300, 2.5, 1.0)
    run = await converse(
        audio, llm=ScriptLLM(["Nine to five."]), first_speaker="agent", greeting="Hello, welcome."
    )
    greeting = run.said("agent")[0]
    assert greeting.text == "Hello, welcome." and greeting.start < 0.1
    assert run.voiced(0, 0.5) > 0.4
    assert [a.text for a in run.said("agent")] == ["Hello, welcome.", "Nine to five."]
    assert roles(run.conversation.history)[0] == ("assistant", "Hello, welcome.")


async def test_barge_in_stops_output_cancels_work_and_keeps_only_heard_text() -> None:
    reply = (
        "Our opening hours are quite simple to remember. We open at nine every weekday morning. "
        "We close at five in the afternoon. On Saturdays we open at ten and close at two."
    )
    audio = CallerAudio(6).say(300, 0.2, 1.0).say(400, 2.6, 0.8)
    llm = ScriptLLM([reply, "Sorry, go ahead."], word_delay_s=0.02)  # still streaming when cut off
    tts = ToneTTS(chunk_delay_s=0.02)  # about real-time synthesis: a sentence is always in flight
    run = await converse(audio, llm=llm, tts=tts)

    (barge,) = [e for e in run.of(Interruption) if e.kind == "barge_in"]
    assert 2.75 <= barge.t <= 2.95  # 200 ms of caller speech after its onset at 2.6 s
    # output stops within one frame of the decision: nothing between then and the next reply
    next_reply = run.said("agent")[1]
    assert next_reply.text == "Sorry, go ahead."
    assert run.voiced(barge.t + 0.04, next_reply.start) == 0
    assert run.voiced(barge.t - 0.3, barge.t) > 0, "the agent was audible right before the barge-in"
    assert llm.cancelled == 1, "the LLM stream in flight was closed"
    assert tts.cancelled, "the TTS synthesis in flight was cancelled"
    # history keeps only what the caller heard, then the caller's words
    first = run.said("agent")[0]
    assert first.interrupted and first.text
    assert reply.startswith(first.text) and len(first.text) < len(reply) / 2
    heard_s = barge.t - first.start
    assert len(first.text) <= heard_s / 0.05 + 1
    assert roles(run.conversation.history) == [
        ("user", "tell me about your opening hours"),
        ("assistant", first.text),
        ("user", "wait stop please"),
        ("assistant", "Sorry, go ahead."),
    ]
    assert llm.requests[1][-2].content == first.text


async def test_false_interruption_resumes_the_reply() -> None:
    reply = "We open at nine every weekday morning. We close at five in the afternoon."
    audio = CallerAudio(9).say(300, 0.2, 1.0).say(500, 2.4, 0.4)  # a cough (no words) over the agent
    llm = ScriptLLM([reply])
    run = await converse(audio, llm=llm)

    kinds = [e.kind for e in run.of(Interruption)]
    assert kinds == ["barge_in", "resumed"]
    agent = run.said("agent")
    assert [a.text for a in agent] == [reply] and not agent[0].interrupted
    assert roles(run.conversation.history) == [
        ("user", "tell me about your opening hours"),
        ("assistant", reply),
    ]
    resumed = run.of(Interruption)[1]
    assert run.voiced(resumed.t, resumed.t + 0.5) > 0.3, "the agent speaks again after the false alarm"
    assert len(llm.requests) == 1


async def test_backchannel_does_not_take_the_turn() -> None:
    reply = "We open at nine every weekday morning. We close at five in the afternoon."
    audio = CallerAudio(9).say(300, 0.2, 1.0).say(450, 2.4, 0.35)  # "mm-hm"
    llm = ScriptLLM([reply, "unexpected"])
    run = await converse(audio, llm=llm)
    assert [u.text for u in run.said("user")] == ["tell me about your opening hours", "mm-hm"]
    assert [a.text for a in run.said("agent")] == [reply]
    assert len(llm.requests) == 1, "a backchannel does not start a new LLM turn"
    assert roles(run.conversation.history)[-1] == ("assistant", reply)


async def test_allow_interruptions_false_plays_the_whole_reply_then_answers() -> None:
    reply = "We open at nine every weekday morning. We close at five in the afternoon."
    audio = CallerAudio(12).say(300, 0.2, 1.0).say(400, 2.4, 0.8)
    llm = ScriptLLM([reply, "Yes?"])
    run = await converse(audio, llm=llm, allow_interruptions=False)
    assert not [e for e in run.of(Interruption) if e.kind == "barge_in"]
    first, second = run.said("agent")
    assert first.text == reply and not first.interrupted
    assert run.voiced(first.start, first.end + 0.05) == pytest.approx(len(reply) * 0.05, abs=0.04)
    assert second.text == "Yes?" and second.start >= first.end
    assert llm.requests[1][-1].content == "wait stop please"


async def test_idle_reminders_then_hangup_message_played_to_the_end() -> None:
    audio = CallerAudio(1)
    run = await converse(
        audio,
        llm=ScriptLLM(),
        speed=10,
        tail_s=20,
        first_speaker="agent",
        greeting="Hello.",
        idle={
            "reminder_after_s": 1.0,
            "reminders": ["Still there?"],
            "max_reminders": 2,
            "hangup_message": "Bye for now.",
        },
    )
    texts = [a.text for a in run.said("agent")]
    assert texts == ["Hello.", "Still there?", "Still there?", "Bye for now."]
    hello, r1, r2, bye = run.said("agent")
    assert 0.95 <= r1.start - hello.end <= 1.1 and 0.95 <= r2.start - r1.end <= 1.1
    assert run.reason == "idle"
    hung_at = run.channel.hangups[0][0]
    assert hung_at >= bye.end
    assert run.voiced(bye.start, hung_at + 1) == pytest.approx(len("Bye for now.") * 0.05, abs=0.02)


async def test_max_duration_ends_the_call() -> None:
    audio = CallerAudio(1)
    run = await converse(audio, llm=ScriptLLM(), speed=20, tail_s=30, max_duration_s=10)
    assert run.reason == "max_duration"
    assert run.of(ConversationEnded)[0].duration_s == pytest.approx(10.0, abs=0.05)


async def test_end_call_plays_goodbye_to_the_last_frame_even_if_the_caller_talks() -> None:
    goodbye = "Thanks for calling. Goodbye!"
    audio = CallerAudio(6).say(350, 0.2, 0.8).say(400, 2.0, 0.6)  # caller talks over the goodbye
    llm = ScriptLLM([(goodbye, [call("end_call")])])
    run = await converse(audio, llm=llm)
    assert run.reason == "agent_ended"
    assert not [e for e in run.of(Interruption) if e.kind == "barge_in"]
    (said,) = run.said("agent")
    assert said.text == goodbye and not said.interrupted
    hung_at = run.channel.hangups[0][0]
    expected = sum(len(s) for s in ["Thanks for calling.", "Goodbye!"]) * 0.05
    assert run.voiced(0, hung_at + 1) == pytest.approx(expected, abs=0.03)
    assert not run.channel.output()[int(hung_at * RATE) :].any(), "nothing is played after the hangup"
    assert [t.name for t in run.of(ToolInvoked)] == ["end_call"]


async def test_transfer_and_dtmf_tools_act_on_the_channel() -> None:
    audio = CallerAudio(4).say(300, 0.2, 0.8)
    llm = ScriptLLM([("Connecting you.", [call("send_dtmf", digits="12#"), call("transfer_call")])])
    run = await converse(audio, llm=llm)
    assert run.channel.sent_dtmf == ["12#"]
    assert run.channel.transfers == ["sip:desk@127.0.0.1"]
    assert run.reason == "transferred"
    assert [(t.name, t.ok) for t in run.of(ToolInvoked)] == [("send_dtmf", True), ("transfer_call", True)]
    assert run.voiced(0, 4) == pytest.approx(len("Connecting you.") * 0.05, abs=0.02)


async def test_dtmf_key_reaches_the_llm_as_a_user_message() -> None:
    audio = CallerAudio(3)
    llm = ScriptLLM(respond=lambda m: "You pressed five." if m[-1].content == "DTMF: 5" else None)
    run = await converse(audio, llm=llm, dtmf=((1.0, "5"),))
    assert [(e.digit, e.t) for e in run.of(DtmfReceived)] == [("5", 1.0)]
    assert [a.text for a in run.said("agent")] == ["You pressed five."]
    assert roles(run.conversation.history)[0] == ("user", "DTMF: 5")


class _SlotsHandler(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _SlotsHandler.received.append(body)
        payload = json.dumps({"day": body.get("day"), "slots": ["10:00", "14:30"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


async def test_http_tool_result_is_fed_back_to_the_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")  # the tool's server is on 127.0.0.1
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlotsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/slots"

    def respond(messages: list[Any]) -> Any:
        last = messages[-1]
        if last.role == "user":
            return ("Let me check.", [call("check_slots", day="tuesday")])
        if last.role == "tool":
            return f"The first free slot is at {json.loads(last.content)['slots'][0]}."
        return None

    try:
        audio = CallerAudio(6).say(300, 0.2, 0.8)
        tool = {
            "name": "check_slots",
            "type": "http",
            "url": url,
            "timeout_s": 2,
            "parameters": {"type": "object", "properties": {"day": {"type": "string"}}},
        }
        run = await converse(audio, llm=ScriptLLM(respond=respond), tools=[tool])
    finally:
        server.shutdown()
        server.server_close()
    assert _SlotsHandler.received == [{"day": "tuesday"}]
    (invoked,) = run.of(ToolInvoked)
    assert invoked.ok and "14:30" in invoked.result
    assert [a.text for a in run.said("agent")] == ["Let me check. The first free slot is at 10:00."]


async def test_http_tool_failure_is_reported_to_the_llm_in_words() -> None:
    def respond(messages: list[Any]) -> Any:
        last = messages[-1]
        if last.role == "user":
            return ("", [call("check_slots", day="monday")])
        return "Sorry, I can't see the calendar." if last.content.startswith("error:") else "Unexpected."

    audio = CallerAudio(5).say(300, 0.2, 0.8)
    tool = {
        "name": "check_slots",
        "type": "http",
        "url": "http://127.0.0.1:9/none",
        "timeout_s": 1,
        "parameters": {"type": "object", "properties": {}},
    }
    run = await converse(audio, llm=ScriptLLM(respond=respond), tools=[tool])
    (invoked,) = run.of(ToolInvoked)
    assert not invoked.ok and invoked.result.startswith("error: check_slots could not be reached")
    assert [a.text for a in run.said("agent")] == ["Sorry, I can't see the calendar."]


async def test_provider_error_gives_apology_and_the_next_turn_works() -> None:
    audio = CallerAudio(8).say(300, 0.2, 0.8).say(300, 3.5, 0.8)
    llm = ScriptLLM(["We open at nine."], failures=1)
    run = await converse(audio, llm=llm, apology="Sorry, I'm having trouble right now.")
    assert [a.text for a in run.said("agent")] == ["Sorry, I'm having trouble right now.", "We open at nine."]
    (failed,) = run.of(ProviderFailed)
    assert failed.component == "llm" and "model server down" in failed.message
    assert run.reason == "input_ended"


async def test_three_failed_turns_end_the_call_politely() -> None:
    audio = CallerAudio(12).say(300, 0.2, 0.6).say(300, 3.0, 0.6).say(300, 6.0, 0.6)
    llm = ScriptLLM(failures=5)
    run = await converse(audio, llm=llm, apology="Sorry, I'm having trouble right now.")
    assert run.reason == "provider_error"
    texts = [a.text for a in run.said("agent")]
    assert texts == ["Sorry, I'm having trouble right now."] * 3
    last = run.said("agent")[-1]
    assert run.channel.hangups[0][0] >= last.end
    assert len(run.of(ProviderFailed)) == 3


async def test_caller_who_goes_on_talking_gets_one_reply_to_everything() -> None:
    # a pause longer than the end-of-turn silence, while the reply is still being prepared
    audio = CallerAudio(6).say(300, 0.2, 0.8).say(400, 1.5, 0.7)
    llm = ScriptLLM(respond=lambda m: "Alright." if m[-1].role == "user" else None)
    run = await converse(audio, llm=llm, stt=ToneSTT(WORDS, delay_s=0.1))
    assert [a.text for a in run.said("agent")] == ["Alright."]
    assert roles(run.conversation.history) == [
        ("user", "tell me about your opening hours wait stop please"),
        ("assistant", "Alright."),
    ]
    assert run.voiced(0, 1.5 + 0.7) == 0, "nothing was said while the caller was still talking"


async def test_short_backchannel_over_the_agent_does_not_stop_it() -> None:
    reply = "We open at nine every weekday morning. We close at five in the afternoon."
    audio = CallerAudio(7).say(300, 0.2, 1.0).say(450, 2.4, 0.15)  # a quick "mm-hm"
    llm = ScriptLLM([reply, "unexpected"])
    run = await converse(audio, llm=llm)
    assert [e.kind for e in run.of(Interruption)] == ["ignored"]
    (said,) = run.said("agent")
    assert said.text == reply and not said.interrupted
    spoken_chars = len(reply) - 1  # two sentences, each a tone of 50 ms per character
    assert run.voiced(said.start, said.end + 0.05) == pytest.approx(spoken_chars * 0.05, abs=0.02)
    assert len(llm.requests) == 1


@pytest.mark.parametrize("failure", ["final", "push"])
async def test_stt_failure_gives_the_apology(failure: str) -> None:
    audio = CallerAudio(5).say(300, 0.2, 0.8)
    stt = ToneSTT(WORDS, fail=failure == "final", fail_push=failure == "push")
    run = await converse(audio, llm=ScriptLLM(["unexpected"]), stt=stt, apology="Sorry!")
    assert [a.text for a in run.said("agent")] == ["Sorry!"]
    assert [e.component for e in run.of(ProviderFailed)] == ["stt"]
    assert run.reason == "input_ended"


async def test_failed_transfer_is_told_to_the_llm_and_the_call_goes_on() -> None:
    def respond(messages: list[Any]) -> Any:
        last = messages[-1]
        if last.role == "user":
            return ("One moment.", [call("transfer_call", target="sip:sales@127.0.0.1")])
        if last.role == "tool" and last.content.startswith("error:"):
            return "Sorry, nobody is available right now."
        return None

    audio = CallerAudio(6).say(300, 0.2, 0.8)
    run = await converse(audio, llm=ScriptLLM(respond=respond), transfer_result=False)
    assert run.channel.transfers == ["sip:sales@127.0.0.1"]
    (invoked,) = run.of(ToolInvoked)
    assert not invoked.ok and "failed" in invoked.result
    assert [a.text for a in run.said("agent")] == ["One moment. Sorry, nobody is available right now."]
    assert run.reason == "input_ended"


async def test_key_press_interrupts_the_agent() -> None:
    reply = "We open at nine every weekday morning. We close at five in the afternoon."
    audio = CallerAudio(7).say(300, 0.2, 0.8)
    llm = ScriptLLM(respond=lambda m: reply if m[-1].content != "DTMF: 0" else "Connecting you to a person.")
    run = await converse(audio, llm=llm, dtmf=((2.5, "0"),))
    first, second = run.said("agent")
    assert first.interrupted and reply.startswith(first.text) and first.end == pytest.approx(2.5, abs=0.03)
    assert second.text == "Connecting you to a person."
    assert run.voiced(2.53, second.start) == 0

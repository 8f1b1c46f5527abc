"""`RoomChannel`: the engine's `MediaChannel` over a LiveKit room.

Parley joins the room as an agent participant (`parley-agent-<room>` by default) with a token it mints
itself (room join, publish, subscribe, data), subscribes to the caller's audio track, and publishes one
audio track (`parley-agent`) fed through an `rtc.AudioSource`.

* Inbound: the caller's track through `rtc.AudioStream` at 48 kHz → `InboundAudio` → engine frames at the
  agent's rate. Until the caller's track arrives, and whenever it stalls for more than three frames, silence
  frames keep the media clock going (the engine's timers run off frame timestamps). DTMF: LiveKit SIP
  delivers the caller's keys as `sip_dtmf` data packets (the SDK's `sip_dtmf_received`) → `DtmfEvent`.
* Outbound: `write()` queues on a `PlayoutBuffer`; a pump takes 10 ms at a time, converts it with
  `OutboundAudio` and captures it into the source, whose 100 ms queue paces it in real time.
  `played_samples` = taken − what the source still holds. `clear_output()` empties both.
* Control: `send_dtmf` publishes `sip_dtmf` packets; `transfer` asks LiveKit SIP to transfer a SIP caller
  (TransferSIPParticipant); `hangup` removes the caller from the room (RoomService.RemoveParticipant) and
  leaves. The call ends when the caller leaves (`caller_hangup`) or the room closes (`room_closed`).

Not exercised on the project's machines (no LiveKit server can run there): see docs/livekit.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import numpy as np

from parley.engine.channel import AudioFrame, DtmfEvent, InboundItem, PlayoutBuffer
from parley.logging import get_logger
from parley.telephony.livekit.audio import ROOM_RATE, InboundAudio, OutboundAudio
from parley.telephony.livekit.config import LiveKitConfig
from parley.telephony.livekit.dispatch import Participant, pick_caller

if TYPE_CHECKING:
    from livekit import rtc

log = get_logger(__name__)

SOURCE_QUEUE_MS = 100
STALL_S = 0.04  # caller audio this late past its frame's time is replaced by silence
#: DTMF digit → the RFC 4733 event code LiveKit's `sip_dtmf` packets carry.
DTMF_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}


def participant_of(p: rtc.RemoteParticipant) -> Participant:
    """The SDK participant as the dispatch decisions see it."""
    return Participant(p.identity, int(p.kind), p.metadata, dict(p.attributes))


class RoomChannel:
    """A `MediaChannel` for one caller in one LiveKit room. Build it with `await RoomChannel.join(...)`."""

    def __init__(self, config: LiveKitConfig, room_name: str, *, sample_rate: int = 16000, frame_ms: int = 20,
                 identity: str | None = None, caller_identity: str | None = None) -> None:
        self.config = config
        self.room_name = room_name
        self.sample_rate = sample_rate
        self.identity = identity or f"parley-agent-{room_name}"[:128]
        self.caller_identity = caller_identity
        self._frame_s = frame_ms / 1000
        self._inbound = InboundAudio(sample_rate, frame_ms)
        self._outbound = OutboundAudio(sample_rate)
        self._playout = PlayoutBuffer(sample_rate)
        self._queue: asyncio.Queue[np.ndarray | str] = asyncio.Queue()  # engine frames and DTMF digits
        self._written = asyncio.Event()
        self._room: rtc.Room | None = None
        self._source: rtc.AudioSource | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._caller_found = asyncio.Event()
        self._end_reason: str | None = None
        self._closed = asyncio.Event()
        self._dropped_in_source = 0  # agent samples cleared from the source's queue (never played)

    # --- joining ------------------------------------------------------------------------------------

    @classmethod
    async def join(cls, config: LiveKitConfig, room_name: str, *, timeout_s: float = 15.0,
                   **kwargs: Any) -> RoomChannel:
        """Connect to the room as the agent, publish the agent track; raises on failure (and leaves)."""
        channel = cls(config, room_name, **kwargs)
        try:
            await asyncio.wait_for(channel._connect(), timeout_s)
        except BaseException:
            await channel._leave()
            raise
        return channel

    async def _connect(self) -> None:
        from livekit import rtc

        room = rtc.Room()
        self._room = room
        room.on("participant_connected", self._on_participant)
        room.on("participant_disconnected", self._on_participant_left)
        room.on("track_subscribed", self._on_track)
        room.on("sip_dtmf_received", self._on_dtmf)
        room.on("disconnected", lambda *_: self._end("room_closed"))
        token = self.config.token(self.identity, name="Parley agent", room=self.room_name, room_join=True,
                                  metadata='{"parley": true}', agent=True)
        await room.connect(self.config.ws_url, token, rtc.RoomOptions(auto_subscribe=True))
        source = rtc.AudioSource(ROOM_RATE, 1, queue_size_ms=SOURCE_QUEUE_MS)
        track = rtc.LocalAudioTrack.create_audio_track("parley-agent", source)
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        self.start_output(source)
        for p in room.remote_participants.values():
            self._on_participant(p)
            for pub in p.track_publications.values():
                if pub.track is not None and pub.subscribed:
                    self._on_track(pub.track, pub, p)

    def start_output(self, source: rtc.AudioSource) -> None:
        """Play agent audio into `source` (the published track's; a bare `AudioSource` plays out just the same)."""
        self._source = source
        self._tasks.append(asyncio.create_task(self._pump(), name=f"livekit-pump-{self.room_name}"))

    async def wait_for_caller(self, timeout_s: float) -> str | None:
        """The caller's identity once someone to talk to is in the room (None on timeout)."""
        try:
            await asyncio.wait_for(self._caller_found.wait(), timeout_s)
        except asyncio.TimeoutError:
            return None
        return self.caller_identity

    # --- room events (SDK callbacks, on the event loop) ------------------------------------------------

    def _on_participant(self, p: rtc.RemoteParticipant) -> None:
        if self._caller_found.is_set():
            return
        chosen = pick_caller([participant_of(p)], self.caller_identity)
        if chosen is not None:
            self.caller_identity = chosen.identity
            self._caller_found.set()

    def _on_participant_left(self, p: rtc.RemoteParticipant) -> None:
        if p.identity == self.caller_identity:
            self._end("caller_hangup")

    def _on_track(self, track: rtc.Track, _pub: Any, p: rtc.RemoteParticipant) -> None:
        from livekit import rtc

        self._on_participant(p)
        if p.identity != self.caller_identity or track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        stream = rtc.AudioStream(track, sample_rate=ROOM_RATE, num_channels=1)
        self._tasks.append(asyncio.create_task(self._read(stream), name=f"livekit-read-{self.room_name}"))

    def _on_dtmf(self, dtmf: rtc.SipDTMF) -> None:
        if dtmf.participant is None or dtmf.participant.identity == self.caller_identity:
            digit = dtmf.digit or next((d for d, c in DTMF_CODES.items() if c == dtmf.code), "")
            if digit:
                self._queue.put_nowait(digit)

    async def _read(self, stream: rtc.AudioStream) -> None:
        try:
            async for event in stream:
                self.feed(event.frame)
        finally:
            await stream.aclose()

    def feed(self, frame: rtc.AudioFrame) -> None:
        """One SDK frame of the caller's audio (as `AudioStream` yields them) into the inbound stream."""
        for pcm in self._inbound.push(frame):
            self._queue.put_nowait(pcm)

    # --- inbound ------------------------------------------------------------------------------------

    async def inbound(self) -> AsyncIterator[InboundItem]:
        """Caller frames and DTMF until the caller leaves or we hang up. When no caller audio is due (no track
        yet, or it stalls for more than `STALL_S` past a frame's time), a silence frame keeps the media clock at
        real time; caller frames arriving late move the clock's anchor to them instead of piling up."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        silence = np.zeros(self._inbound.frame_samples, dtype=np.int16)
        while not self.closed:
            due = start + (n + 1) * self._frame_s + STALL_S
            try:
                item = await asyncio.wait_for(self._queue.get(), max(0.0, due - loop.time()))
            except asyncio.TimeoutError:
                item = silence
            if self.closed:
                break
            t = n * self._frame_s
            if isinstance(item, str):
                yield DtmfEvent(item, t)
                continue
            if item is not silence and loop.time() > start + (n + 1) * self._frame_s:
                start = loop.time() - (n + 1) * self._frame_s  # the caller's clock leads
            n += 1
            yield AudioFrame(item, t)

    # --- outbound -----------------------------------------------------------------------------------

    async def write(self, pcm: np.ndarray) -> None:
        if not self.closed and pcm.size:
            self._playout.write(pcm)
            self._written.set()

    async def _pump(self) -> None:
        assert self._source is not None
        step = self.sample_rate // 100
        while not self.closed:
            chunk = self._playout.pull(step)
            if chunk is None:
                self._written.clear()  # before the flush's awaits: a write meanwhile sets it again
                for frame in self._outbound.flush():
                    await self._source.capture_frame(frame)
                if self._playout.queued_samples == 0:
                    await self._written.wait()
                continue
            for frame in self._outbound.push(chunk):
                await self._source.capture_frame(frame)  # waits while the source's queue is full

    def clear_output(self) -> int:
        dropped = self._playout.clear()
        held = self._source_queued_samples()
        if self._source is not None:
            self._source.clear_queue()
        self._outbound.reset()
        self._dropped_in_source += held
        return dropped + held

    def _source_queued_samples(self) -> int:
        return round(self._source.queued_duration * self.sample_rate) if self._source is not None else 0

    @property
    def played_samples(self) -> int:
        return max(0, self._playout.played_samples - self._dropped_in_source - self._source_queued_samples())

    @property
    def output_queued_ms(self) -> float:
        return self._playout.queued_ms + (self._source.queued_duration * 1000 if self._source else 0.0)

    async def drain(self) -> None:
        await self._playout.drain()
        if self._source is not None and not self.closed:
            await self._source.wait_for_playout()

    # --- control ------------------------------------------------------------------------------------

    async def send_dtmf(self, digits: str) -> None:
        if self._room is None:
            return
        for digit in digits:
            if digit.upper() in DTMF_CODES:
                await self._room.local_participant.publish_dtmf(code=DTMF_CODES[digit.upper()], digit=digit)

    async def transfer(self, target: str) -> bool:
        """Transfer a SIP caller through LiveKit SIP (REFER); False for web callers or when refused."""
        from livekit.protocol import sip as lksip

        if not self.caller_identity:
            return False
        client = self.config.api()
        try:
            await client.sip.transfer_sip_participant(lksip.TransferSIPParticipantRequest(
                room_name=self.room_name, participant_identity=self.caller_identity,
                transfer_to=target if target.startswith(("sip:", "tel:")) else f"tel:{target}"))
        except Exception as exc:
            log.warning("LiveKit transfer refused", room=self.room_name, target=target, error=str(exc))
            return False
        finally:
            await client.aclose()
        self._end("transferred")
        await self._leave()
        return True

    async def hangup(self, reason: str) -> None:
        """Remove the caller from the room (ends a SIP call with BYE), then leave. Idempotent."""
        if self._end_reason is None:
            self._end(reason)
        if self.caller_identity and self._room is not None:
            await remove_participant(self.config, self.room_name, self.caller_identity)
        await self._leave()

    def _end(self, reason: str) -> None:
        if self._end_reason is None:
            self._end_reason = reason
        self._closed.set()
        self._written.set()
        self._playout.release()

    async def _leave(self) -> None:
        self._closed.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._source is not None:
            await self._source.aclose()
            self._source = None
        if self._room is not None:
            room, self._room = self._room, None
            await room.disconnect()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def end_reason(self) -> str | None:
        return self._end_reason if self.closed else None


async def remove_participant(config: LiveKitConfig, room: str, identity: str) -> bool:
    """RoomService.RemoveParticipant (the LiveKit way to hang up on someone); False if already gone."""
    from livekit.api import ServerError
    from livekit.protocol import room as lkroom

    client = config.api()
    try:
        await client.room.remove_participant(lkroom.RoomParticipantIdentity(room=room, identity=identity))
        return True
    except ServerError as exc:
        if exc.status == 404:
            return False
        raise
    finally:
        await client.aclose()

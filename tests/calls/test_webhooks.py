"""Outbound webhooks against a real HTTP receiver on 127.0.0.1 that refuses the first attempts of every
event, checks each signature, and records what it saw."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr

from parley.calls.webhooks import RetryTiming, sign, verify
from tests.conftest import free_port
from tests.eventually import eventually

SECRET = "whsec-test"


class Receiver:
    """Records every POST; answers 500 to the first `fail_first` attempts of each event id."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.seen: list[dict] = []
        self.tries: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok_sig = verify(SECRET, self.headers["X-Parley-Timestamp"], body,
                                self.headers.get("X-Parley-Signature", ""))
                data = json.loads(body)
                with receiver.lock:
                    receiver.tries[data["id"]] += 1
                    accepted = ok_sig and receiver.tries[data["id"]] > receiver.fail_first
                    receiver.seen.append({"event": self.headers["X-Parley-Event"], "id": data["id"],
                                          "attempt": int(self.headers["X-Parley-Attempt"]), "sig_ok": ok_sig,
                                          "accepted": accepted, "call_id": data["call"]["id"], "body": data})
                self.send_response(200 if accepted else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
                return

        self.port = free_port(kind=1)
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # never wait on a handler at teardown
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def accepted(self) -> list[dict]:
        with self.lock:
            return [s for s in self.seen if s["accepted"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


async def test_events_are_signed_retried_and_in_order_per_call(settings, receiver: Receiver,
                                                               make_service) -> None:  # type: ignore[no-untyped-def]
    s = settings.model_copy(update={"webhook_url": receiver.url, "webhook_secret": SecretStr(SECRET)})
    service = await make_service(settings_=s, webhook_poll_s=0.1,
                                 webhook_timing=RetryTiming(base_s=0.05, factor=2.0, max_attempts=6))
    a = await service.create_call(to_number="+15550001001", metadata={"crm": "A"})
    b = await service.create_call(to_number="+15550001002")
    c = await service.create_call(to_number="+15550001003")
    for call in (a, b, c):
        await service.store.transition(call.id, "dialing")
    for call in (a, b):
        await service.transition(call.id, "ringing")
    await service.transition(c.id, "busy", reason="486 Busy Here")
    for call in (a, b):
        await service.transition(call.id, "in_progress")
        await service.add_transcript(call.id, "agent", "Hello from Parley.")
        await service.add_transcript(call.id, "caller", "Bye.")
    await service.finish(a.id, "completed", "caller hung up")
    await service.finish(b.id, "completed", "agent ended the call")

    await eventually(lambda: len(receiver.accepted()) >= 10, timeout_s=60, what="10 webhooks accepted")

    async def all_recorded() -> bool:  # the sender records a delivery after the receiver has answered it
        rows = [r for call in (a, b, c) for r in await service.store.webhooks_for(call.id)]
        return len(rows) == 10 and all(r["status"] == "delivered" for r in rows)

    await eventually(all_recorded, timeout_s=10, what="10 deliveries recorded in the store")

    assert all(s["sig_ok"] for s in receiver.seen)
    full = ["call.queued", "call.ringing", "call.answered", "call.ended"]
    for call, expected in ((a, full), (b, full), (c, ["call.queued", "call.failed"])):
        mine = [s for s in receiver.seen if s["call_id"] == call.id]
        # each event: attempts 1, 2 (refused), 3 (accepted), before the next event is tried at all
        assert [(s["event"], s["attempt"]) for s in mine] == [(e, n) for e in expected for n in (1, 2, 3)]
        assert [s["accepted"] for s in mine] == [False, False, True] * len(expected)
        assert len({s["id"] for s in mine}) == len(expected)  # one stable event id per event
        rows = await service.store.webhooks_for(call.id)
        assert [(r["event"], r["status"], r["attempts"]) for r in rows] == [(e, "delivered", 3) for e in expected]

    ended = next(s["body"] for s in receiver.accepted() if s["event"] == "call.ended" and s["call_id"] == a.id)
    assert ended["end_reason"] == "caller hung up"
    assert [t["text"] for t in ended["transcript"]] == ["Hello from Parley.", "Bye."]
    assert ended["call"]["metadata"] == {"crm": "A"} and ended["call"]["status"] == "completed"
    failed = next(s["body"] for s in receiver.accepted() if s["event"] == "call.failed")
    assert failed["call"]["status"] == "busy" and failed["end_reason"] == "486 Busy Here"


async def test_per_call_url_wins_and_a_dead_receiver_is_given_up(settings, receiver: Receiver,
                                                                 make_service) -> None:  # type: ignore[no-untyped-def]
    s = settings.model_copy(update={"webhook_url": receiver.url})
    service = await make_service(settings_=s, webhook_poll_s=0.1,
                                 webhook_timing=RetryTiming(base_s=0.02, factor=1.0, max_attempts=2))
    dead_url = f"http://127.0.0.1:{free_port(kind=1)}/nobody-listens"
    call = await service.create_call(to_number="+15550001004", webhook_url=dead_url)
    await service.cancel(call.id)
    async def both_dead() -> bool:
        return [r["status"] for r in await service.store.webhooks_for(call.id)] == ["dead", "dead"]

    await eventually(both_dead, timeout_s=15, what="both events given up")
    rows = await service.store.webhooks_for(call.id)
    assert [(r["event"], r["status"], r["attempts"], r["url"]) for r in rows] == [
        ("call.queued", "dead", 2, dead_url), ("call.ended", "dead", 2, dead_url)]
    assert "ConnectError" in (rows[0]["last_error"] or "")
    assert receiver.seen == []  # the global URL was not used for this call


def test_signature_covers_timestamp_and_body() -> None:
    ts = str(int(time.time()))
    body = b'{"type":"call.ended"}'
    sig = sign(SECRET, ts, body)
    assert sig.startswith("sha256=") and verify(SECRET, ts, body, sig)
    assert not verify(SECRET, ts, body + b" ", sig)
    assert not verify("other-secret", ts, body, sig)
    assert not verify(SECRET, str(int(ts) - 3600), body, sign(SECRET, str(int(ts) - 3600), body))  # too old

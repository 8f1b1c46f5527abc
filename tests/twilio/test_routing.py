"""Which agent answers a Twilio call: the dispatch rules by called number (trunk `twilio-streams`) and the
incoming-call webhook, as for an inbound SIP call; a refused call gets `<Reject>` and no record."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from parley.telephony.store import TelephonyStore
from parley.telephony.trunks import DispatchRule, TelephonyConfig
from tests.twilio.conftest import voice_form
from tests.twilio.media_streams import parse_twiml, sid


async def _rules(app, *rules: DispatchRule) -> None:  # type: ignore[no-untyped-def]
    await TelephonyStore(app.state.calls.store).ensure(TelephonyConfig(dispatch_rules=list(rules)))


async def test_dispatch_rules_choose_the_agent(parley_app) -> None:  # type: ignore[no-untyped-def]
    app = await parley_app()
    await _rules(app, DispatchRule(name="de", numbers=["+4930123456"], trunks=["twilio-streams"],
                                   agent="german_assistant", variables={"desk": "berlin"}),
                 DispatchRule(name="us", prefixes=["+1"], agent="receptionist"))
    r = await app.webhook("/twilio/voice", voice_form(sid("CA"), to="+4930123456"))
    call = await app.state.calls.get_call(parse_twiml(r.text)[1]["call_id"])
    assert call.agent == "german_assistant" and call.variables == {"desk": "berlin"}
    assert call.trunk == "twilio-streams" and call.metadata["twilio"]["rule"] == "de"
    r = await app.webhook("/twilio/voice", voice_form(sid("CA"), to="+15005550006"))
    assert (await app.state.calls.get_call(parse_twiml(r.text)[1]["call_id"])).agent == "receptionist"

    r = await app.webhook("/twilio/voice", voice_form(sid("CA"), to="+33123456789"))
    assert r.status_code == 200
    reject = ElementTree.fromstring(r.text).find("./Reject")
    assert reject is not None and reject.get("reason") == "rejected", r.text
    calls, _ = await app.state.calls.list_calls(limit=10)
    assert len(calls) == 2


async def test_incoming_call_webhook_can_reject_or_choose(parley_app, webhook_receiver) -> None:  # type: ignore[no-untyped-def]
    app = await parley_app(incoming_call_webhook_url=webhook_receiver.url)
    webhook_receiver.answer = {"agent": "german_assistant", "variables": {"vip": True}}
    call_sid = sid("CA")
    r = await app.webhook("/twilio/voice", voice_form(call_sid))
    call = await app.state.calls.get_call(parse_twiml(r.text)[1]["call_id"])
    assert call.agent == "german_assistant" and call.variables["vip"] is True
    asked = webhook_receiver.events[-1]
    assert asked["type"] == "call.incoming" and asked["channel"] == "twilio" and asked["call_sid"] == call_sid

    webhook_receiver.answer = {"action": "reject", "reason": "blocked caller"}
    r = await app.webhook("/twilio/voice", voice_form(sid("CA")))
    assert ElementTree.fromstring(r.text).find("./Reject") is not None
    calls, _ = await app.state.calls.list_calls(limit=10)
    assert len(calls) == 1


async def test_no_free_slot_rejects_busy(parley_app, fast_agents) -> None:  # type: ignore[no-untyped-def]
    """NUM_AGENTS counts Twilio streams too: with one slot taken, the next call hears busy."""
    from tests.eventually import eventually
    from tests.twilio.media_streams import MediaStreamsClient

    app = await parley_app(agents=fast_agents, num_agents=1)
    call_sid = sid("CA")
    url, params = parse_twiml((await app.webhook("/twilio/voice", voice_form(call_sid))).text)
    client = MediaStreamsClient(url, params, call_sid=call_sid)
    await client.open()
    await eventually(lambda: params["call_id"] in app.state.twilio.live, timeout_s=10, what="the first stream live")
    r = await app.webhook("/twilio/voice", voice_form(sid("CA")))
    reject = ElementTree.fromstring(r.text).find("./Reject")
    assert reject is not None and reject.get("reason") == "busy", r.text
    await client.stop()
    await app.wait_call(params["call_id"], {"completed"})
    await client.close()


@pytest.mark.realtime
async def test_an_overloaded_worker_rejects_twilio_calls_busy_until_its_loop_recovers(  # type: ignore[no-untyped-def]
        parley_app, fast_agents) -> None:
    """Load shedding covers Twilio streams too: while the worker's event loop is over MAX_LOOP_BUSY (made
    busy here by blocking work on it), the voice webhook answers `<Reject reason="busy">` and records
    nothing; once the load is gone, the next call gets its stream."""
    from parley.api.runtime import gateway_startup
    from parley.calls import metrics
    from tests.eventually import eventually
    from tests.telephony.test_overload import Burner

    app = await parley_app(agents=fast_agents, startup=[gateway_startup(dial=False, warm=False)],
                           max_loop_busy=0.6)
    gateway = app.state.gateway
    refused_before = metrics.OVERLOAD_REFUSALS.labels("twilio")._value.get()
    burner = Burner()
    burner.start()
    try:
        await eventually(lambda: gateway.overloaded("twilio", count=False), timeout_s=15, interval_s=0.2,
                         what="the worker's event loop over MAX_LOOP_BUSY (60 %)")
        r = await app.webhook("/twilio/voice", voice_form(sid("CA")))
        reject = ElementTree.fromstring(r.text).find("./Reject")
        assert reject is not None and reject.get("reason") == "busy", r.text
        assert metrics.OVERLOAD_REFUSALS.labels("twilio")._value.get() - refused_before == 1
        assert not (await app.state.calls.list_calls(limit=5))[0], "a refused call leaves no record"
    finally:
        await burner.stop()
    await eventually(lambda: gateway.overloaded("twilio", count=False) is None, timeout_s=15,
                     interval_s=0.2, what="the worker's event loop back under MAX_LOOP_BUSY")
    r = await app.webhook("/twilio/voice", voice_form(sid("CA")))
    assert parse_twiml(r.text)[1]["call_id"], r.text

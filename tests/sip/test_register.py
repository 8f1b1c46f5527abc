"""REGISTER client against SIPp acting as a challenging registrar; SHA-256 digest between two endpoints."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from parley.sip.auth import Credentials
from parley.sip.call import IncomingCall
from parley.sip.errors import CallFailed
from tests.conftest import free_port
from tests.eventually import eventually
from tests.sip.sipp import sipp_server

pytestmark = [pytest.mark.sip]

_ROUND = """  <recv request="REGISTER" crlf="true"/>
  <send>
    <![CDATA[

      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="registrar.test", nonce="n{n}abcdef0123456789"
      Content-Length: 0

    ]]>
  </send>
  <recv request="REGISTER">
    <action>
      <ereg regexp="Expires: ([0-9]+)" search_in="msg" check_it="true" assign_to="all{n},expires{n}"/>
      <verifyauth assign_to="ok{n}" username="alice" password="secret"/>
    </action>
  </recv>
  <nop hide="true" test="ok{n}" next="good{n}"/>
  <send next="end">
    <![CDATA[

      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="good{n}"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires={grant}
      X-Seen: [$all{n}] [$expires{n}]
      Content-Length: 0

    ]]>
  </send>
"""


def registrar_scenario(rounds: list[int]) -> str:
    body = "".join(_ROUND.format(n=i, grant=g) for i, g in enumerate(rounds))
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="registrar">\n'
            + body + '  <label id="end"/>\n</scenario>\n')


async def test_register_refreshes_before_expiry_and_unregisters(endpoint, tmp_path: Path) -> None:
    port = free_port()
    sipp = await sipp_server(registrar_scenario([2, 2, 0]), tmp_path, port, timeout=20)
    reg = endpoint.registration(f"sip:127.0.0.1:{port}", "sip:alice@registrar.test",
                                Credentials("alice", "secret"), expires=60)
    await reg.start()
    assert reg.granted == 2
    # refreshed after ~1 s, before the 2 s expiry
    await eventually(lambda: reg.refreshes >= 1, timeout_s=5, what="registration refreshed")
    await reg.stop()
    result = await sipp
    assert result.code == 0, str(result)


async def test_sha256_digest_between_two_endpoints(endpoint_factory) -> None:
    uas = await endpoint_factory()
    uac = await endpoint_factory()
    seen: list[str | None] = []
    authorizations: list[str] = []
    answered = []
    uas.challenger("parley.test").algorithms = ("SHA-256",)

    async def handler(incoming: IncomingCall) -> None:
        authorizations.append(incoming.headers.get("Authorization") or "")
        user = await incoming.check_auth("parley.test", {"bob": "pw"}.get)
        seen.append(user)
        if user:
            answered.append(await incoming.accept())

    uas.on_incoming = handler
    out = await uac.invite(f"sip:1000@127.0.0.1:{uas.port}", auth=Credentials("bob", "pw"), timeout=5)
    call = await out.answered()
    assert seen == [None, "bob"]
    assert "algorithm=SHA-256" in authorizations[1]
    await call.hangup()
    assert await asyncio.wait_for(answered[0].wait_ended(), 5) == "remote_bye"

    out = await uac.invite(f"sip:1000@127.0.0.1:{uas.port}", auth=Credentials("bob", "nope"), timeout=5)
    with pytest.raises(CallFailed) as info:
        await out.answered()
    assert info.value.code == 403

"""A stand-in for LiveKit's server API (no LiveKit server can run on the project's machines).

It stands in for the Twirp services `livekit.SIP` and `livekit.RoomService` of a LiveKit server, as
documented (docs.livekit.io, "Server APIs"; the Twirp wire protocol): `POST /twirp/livekit.<Service>/<Method>`
with a protobuf body (`Content-Type: application/protobuf`, what the official `livekit-api` SDK sends) or a
JSON body (`application/json`, Twirp's JSON mapping); the answer in the same encoding; errors as JSON
`{"code", "msg"}` with the HTTP status Twirp assigns (401 unauthenticated, 403 permission_denied,
404 not_found, 400 invalid_argument).

Every request must carry `Authorization: Bearer <JWT>` signed HS256 with the API secret, `iss` = the API key,
an `exp`, and the grants LiveKit requires for the method (`sip.admin` for trunks and rules, `sip.call` for
CreateSIPParticipant, `video.roomList` for ListRooms, `video.roomAdmin` + `video.room` for participant calls).

It keeps trunks, dispatch rules and rooms in memory and counts the requests that changed something, so
tests can check idempotence. It can also sign and send webhooks the way a LiveKit server does
(`Authorization: <JWT with a sha256 claim of the body>`, `Content-Type: application/webhook+json`).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import models, room, sip

_ids = itertools.count(1)

SIP_METHODS: dict[str, tuple[type[Message], str]] = {
    # method -> (request class, grant it needs)
    "CreateSIPInboundTrunk": (sip.CreateSIPInboundTrunkRequest, "sip.admin"),
    "CreateSIPOutboundTrunk": (sip.CreateSIPOutboundTrunkRequest, "sip.admin"),
    "UpdateSIPInboundTrunk": (sip.UpdateSIPInboundTrunkRequest, "sip.admin"),
    "UpdateSIPOutboundTrunk": (sip.UpdateSIPOutboundTrunkRequest, "sip.admin"),
    "ListSIPInboundTrunk": (sip.ListSIPInboundTrunkRequest, "sip.admin"),
    "ListSIPOutboundTrunk": (sip.ListSIPOutboundTrunkRequest, "sip.admin"),
    "DeleteSIPTrunk": (sip.DeleteSIPTrunkRequest, "sip.admin"),
    "CreateSIPDispatchRule": (sip.CreateSIPDispatchRuleRequest, "sip.admin"),
    "UpdateSIPDispatchRule": (sip.UpdateSIPDispatchRuleRequest, "sip.admin"),
    "ListSIPDispatchRule": (sip.ListSIPDispatchRuleRequest, "sip.admin"),
    "DeleteSIPDispatchRule": (sip.DeleteSIPDispatchRuleRequest, "sip.admin"),
    "CreateSIPParticipant": (sip.CreateSIPParticipantRequest, "sip.call"),
}
ROOM_METHODS: dict[str, tuple[type[Message], str]] = {
    "ListRooms": (room.ListRoomsRequest, "video.roomList"),
    "ListParticipants": (room.ListParticipantsRequest, "video.roomAdmin"),
    "RemoveParticipant": (room.RoomParticipantIdentity, "video.roomAdmin"),
}
MUTATING = {"CreateSIPInboundTrunk", "CreateSIPOutboundTrunk", "UpdateSIPInboundTrunk", "UpdateSIPOutboundTrunk",
            "DeleteSIPTrunk", "CreateSIPDispatchRule", "UpdateSIPDispatchRule", "DeleteSIPDispatchRule"}


class TwirpError(Exception):
    def __init__(self, status: int, code: str, msg: str, meta: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.meta = status, code, msg, meta or {}


@dataclass
class StandInLiveKit:
    """The server API's state; `app()` serves it. `key`/`secret` are the only credentials it accepts."""

    key: str = "APIstandin"
    secret: str = "standin-secret-0123456789abcdef0123456789"
    inbound: dict[str, sip.SIPInboundTrunkInfo] = field(default_factory=dict)
    outbound: dict[str, sip.SIPOutboundTrunkInfo] = field(default_factory=dict)
    rules: dict[str, sip.SIPDispatchRuleInfo] = field(default_factory=dict)
    rooms: dict[str, models.Room] = field(default_factory=dict)
    participants: dict[str, dict[str, models.ParticipantInfo]] = field(default_factory=dict)
    sip_participants: list[sip.CreateSIPParticipantRequest] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # method -> successful requests
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # (method, status, msg)
    sip_failure: tuple[int, str] | None = None  # make CreateSIPParticipant fail with this SIP status

    @property
    def changes(self) -> int:
        """Successful requests that changed trunks or rules."""
        return sum(n for m, n in self.calls.items() if m in MUTATING)

    # --- HTTP -------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/twirp/livekit.SIP/{method}", self._handle)
        app.router.add_post("/twirp/livekit.RoomService/{method}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        table = SIP_METHODS if "livekit.SIP/" in request.path else ROOM_METHODS
        as_json = request.content_type == "application/json"
        try:
            if method not in table:
                raise TwirpError(404, "bad_route", f"no handler for path {request.path!r}")
            req_cls, grant = table[method]
            claims = self._authenticate(request.headers.get("Authorization", ""))
            body = await request.read()
            try:
                req = json_format.Parse(body or b"{}", req_cls()) if as_json else req_cls.FromString(body)
            except (DecodeError, json_format.ParseError) as exc:
                raise TwirpError(400, "malformed", f"the request body is not a {req_cls.__name__}: {exc}") from None
            self._authorize(claims, grant, req)
            resp = getattr(self, "_" + method)(req)
        except TwirpError as exc:
            self.refused.append((method, exc.status, exc.msg))
            payload: dict[str, Any] = {"code": exc.code, "msg": exc.msg}
            if exc.meta:
                payload["meta"] = exc.meta
            return web.json_response(payload, status=exc.status)
        self.calls[method] += 1
        if as_json:
            return web.Response(text=json_format.MessageToJson(resp), content_type="application/json")
        return web.Response(body=resp.SerializeToString(), content_type="application/protobuf")

    def _authenticate(self, header: str) -> dict[str, Any]:
        if not header.startswith("Bearer "):
            raise TwirpError(401, "unauthenticated", "no authorization header (expected Bearer <access token>)")
        token = header.removeprefix("Bearer ")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TwirpError(401, "unauthenticated", "invalid token: not a JWT") from None
        if unverified.get("iss") != self.key:
            raise TwirpError(401, "unauthenticated", f"invalid API key: {unverified.get('iss')!r}")
        try:
            return jwt.decode(token, self.secret, algorithms=["HS256"], issuer=self.key,
                              options={"require": ["exp"]})
        except jwt.ExpiredSignatureError:
            raise TwirpError(401, "unauthenticated", "token is expired") from None
        except jwt.PyJWTError:
            raise TwirpError(401, "unauthenticated", "invalid token: signature is invalid") from None

    @staticmethod
    def _authorize(claims: dict[str, Any], grant: str, req: Message) -> None:
        section, name = grant.split(".")
        granted = claims.get(section, {})
        if not granted.get(name):
            raise TwirpError(403, "permission_denied", f"permissions denied: the token lacks {grant}")
        if grant == "video.roomAdmin" and granted.get("room") != getattr(req, "room", None):
            raise TwirpError(403, "permission_denied", "permissions denied: the token is for another room")

    # --- SIP --------------------------------------------------------------------------------------

    @staticmethod
    def _new_id(prefix: str) -> str:
        return f"{prefix}_{next(_ids):06d}"

    def _CreateSIPInboundTrunk(self, req: sip.CreateSIPInboundTrunkRequest) -> sip.SIPInboundTrunkInfo:
        info = sip.SIPInboundTrunkInfo()
        info.CopyFrom(req.trunk)
        info.sip_trunk_id = self._new_id("ST")
        self.inbound[info.sip_trunk_id] = info
        return info

    def _CreateSIPOutboundTrunk(self, req: sip.CreateSIPOutboundTrunkRequest) -> sip.SIPOutboundTrunkInfo:
        if not req.trunk.address:
            raise TwirpError(400, "invalid_argument", "no trunk address specified")
        info = sip.SIPOutboundTrunkInfo()
        info.CopyFrom(req.trunk)
        info.sip_trunk_id = self._new_id("ST")
        self.outbound[info.sip_trunk_id] = info
        return info

    def _replace(self, table: dict[str, Any], req: Any, id_field: str) -> Any:
        key = getattr(req, id_field)
        if key not in table:
            raise TwirpError(404, "not_found", f"{id_field} {key!r} not found")
        if not req.HasField("replace"):
            raise TwirpError(400, "invalid_argument", "only replace updates are supported by this stand-in")
        info = type(table[key])()
        info.CopyFrom(req.replace)
        setattr(info, id_field, key)
        table[key] = info
        return info

    def _UpdateSIPInboundTrunk(self, req: sip.UpdateSIPInboundTrunkRequest) -> sip.SIPInboundTrunkInfo:
        return self._replace(self.inbound, req, "sip_trunk_id")

    def _UpdateSIPOutboundTrunk(self, req: sip.UpdateSIPOutboundTrunkRequest) -> sip.SIPOutboundTrunkInfo:
        return self._replace(self.outbound, req, "sip_trunk_id")

    def _ListSIPInboundTrunk(self, req: sip.ListSIPInboundTrunkRequest) -> sip.ListSIPInboundTrunkResponse:
        return sip.ListSIPInboundTrunkResponse(items=list(self.inbound.values()))

    def _ListSIPOutboundTrunk(self, req: sip.ListSIPOutboundTrunkRequest) -> sip.ListSIPOutboundTrunkResponse:
        return sip.ListSIPOutboundTrunkResponse(items=list(self.outbound.values()))

    def _DeleteSIPTrunk(self, req: sip.DeleteSIPTrunkRequest) -> sip.SIPTrunkInfo:
        if self.inbound.pop(req.sip_trunk_id, None) is None and self.outbound.pop(req.sip_trunk_id, None) is None:
            raise TwirpError(404, "not_found", f"trunk {req.sip_trunk_id!r} not found")
        return sip.SIPTrunkInfo(sip_trunk_id=req.sip_trunk_id)

    def _CreateSIPDispatchRule(self, req: sip.CreateSIPDispatchRuleRequest) -> sip.SIPDispatchRuleInfo:
        info = sip.SIPDispatchRuleInfo()
        if req.HasField("dispatch_rule"):
            info.CopyFrom(req.dispatch_rule)
        else:  # the older flat form
            info.rule.CopyFrom(req.rule)
            info.trunk_ids.extend(req.trunk_ids)
            info.inbound_numbers.extend(req.inbound_numbers)
            info.name, info.metadata = req.name, req.metadata
            info.attributes.update(req.attributes)
        for tid in info.trunk_ids:
            if tid not in self.inbound:
                raise TwirpError(400, "invalid_argument", f"inbound trunk {tid!r} does not exist")
        info.sip_dispatch_rule_id = self._new_id("SDR")
        self.rules[info.sip_dispatch_rule_id] = info
        return info

    def _UpdateSIPDispatchRule(self, req: sip.UpdateSIPDispatchRuleRequest) -> sip.SIPDispatchRuleInfo:
        return self._replace(self.rules, req, "sip_dispatch_rule_id")

    def _ListSIPDispatchRule(self, req: sip.ListSIPDispatchRuleRequest) -> sip.ListSIPDispatchRuleResponse:
        return sip.ListSIPDispatchRuleResponse(items=list(self.rules.values()))

    def _DeleteSIPDispatchRule(self, req: sip.DeleteSIPDispatchRuleRequest) -> sip.SIPDispatchRuleInfo:
        info = self.rules.pop(req.sip_dispatch_rule_id, None)
        if info is None:
            raise TwirpError(404, "not_found", f"dispatch rule {req.sip_dispatch_rule_id!r} not found")
        return info

    def _CreateSIPParticipant(self, req: sip.CreateSIPParticipantRequest) -> sip.SIPParticipantInfo:
        if req.sip_trunk_id not in self.outbound:
            raise TwirpError(404, "not_found", f"outbound trunk {req.sip_trunk_id!r} not found")
        if self.sip_failure is not None:
            code, phrase = self.sip_failure
            raise TwirpError(400, "failed_precondition", f"sip status: {code}: {phrase}",
                             {"sip_status_code": str(code), "sip_status": phrase})
        self.sip_participants.append(req)
        identity = req.participant_identity or f"sip_{req.sip_call_to}"
        info = models.ParticipantInfo(sid=self._new_id("PA"), identity=identity,
                                      kind=models.ParticipantInfo.Kind.SIP, metadata=req.participant_metadata)
        self.rooms.setdefault(req.room_name, models.Room(sid=self._new_id("RM"), name=req.room_name))
        self.participants.setdefault(req.room_name, {})[identity] = info
        return sip.SIPParticipantInfo(participant_id=info.sid, participant_identity=identity,
                                      room_name=req.room_name, sip_call_id=self._new_id("SCL"))

    # --- rooms ------------------------------------------------------------------------------------

    def _ListRooms(self, req: room.ListRoomsRequest) -> room.ListRoomsResponse:
        names = set(req.names)
        return room.ListRoomsResponse(rooms=[r for r in self.rooms.values() if not names or r.name in names])

    def _ListParticipants(self, req: room.ListParticipantsRequest) -> room.ListParticipantsResponse:
        return room.ListParticipantsResponse(participants=list(self.participants.get(req.room, {}).values()))

    def _RemoveParticipant(self, req: room.RoomParticipantIdentity) -> room.RemoveParticipantResponse:
        if self.participants.get(req.room, {}).pop(req.identity, None) is None:
            raise TwirpError(404, "not_found", "participant not found")
        return room.RemoveParticipantResponse()

    # --- webhooks ---------------------------------------------------------------------------------

    def signed_webhook(self, event: dict[str, Any], *, secret: str | None = None,
                       ttl_s: int = 600) -> tuple[str, dict[str, str]]:
        """`event` (WebhookEvent JSON) as LiveKit would POST it: the body and its headers.

        The Authorization header is a JWT (signed with `secret`, default the real one) whose `sha256`
        claim is the base64 SHA-256 of the body; a negative `ttl_s` makes it stale."""
        import datetime

        from livekit import api as lk

        body = json.dumps(event)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        token = (lk.AccessToken(self.key, secret or self.secret).with_sha256(digest)
                 .with_ttl(datetime.timedelta(seconds=ttl_s)).to_jwt())
        return body, {"Authorization": token, "Content-Type": "application/webhook+json"}

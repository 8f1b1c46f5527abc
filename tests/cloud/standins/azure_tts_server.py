"""Stand-in for the Azure Speech text-to-speech REST endpoint
(`POST https://{region}.tts.speech.microsoft.com/cognitiveservices/v1`), for tests on 127.0.0.1 —
Azure cannot be reached from here.

It follows the documented protocol: the key in `Ocp-Apim-Subscription-Key` (401 otherwise),
`Content-Type: application/ssml+xml` (415 otherwise), an SSML `<speak xml:lang>` document with one
`<voice name>` (400 when malformed), the audio format in `X-Microsoft-OutputFormat` (only the
`raw-*-16bit-mono-pcm` formats here; 400 for others), and a chunked 200 response of raw PCM at that
rate. The audio is real speech of the SSML text made with espeak-ng in the voice's language.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .openai_server import _Raw
from .server import Reply, StandInServer, asgi_stream, espeak_pcm

_FORMAT = re.compile(r"^raw-(8khz|16khz|22050hz|24khz|44100hz|48khz)-16bit-mono-pcm$")
_RATES = {"8khz": 8000, "16khz": 16000, "22050hz": 22050, "24khz": 24000, "44100hz": 44100, "48khz": 48000}
_SSML_NS = "{http://www.w3.org/2001/10/synthesis}"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


class AzureTTSStandIn(StandInServer):
    """The server; `plan("azure_tts", Reply(...))` scripts errors, delays and drops."""

    def __init__(self, key: str = "speech-test") -> None:
        self.key = key
        super().__init__(Starlette(routes=[Route("/cognitiveservices/v1", self._synthesize, methods=["POST"])]))

    async def _synthesize(self, request: Request) -> Any:
        if request.headers.get("ocp-apim-subscription-key") != self.key:
            return PlainTextResponse("", status_code=401)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/ssml+xml":
            return PlainTextResponse("Content-Type must be application/ssml+xml", status_code=415)
        fmt = request.headers.get("x-microsoft-outputformat", "")
        match = _FORMAT.match(fmt)
        if not match:
            return PlainTextResponse(f"Unsupported output format {fmt!r}", status_code=400)
        try:
            root = ET.fromstring(await request.body())
        except ET.ParseError as exc:
            return PlainTextResponse(f"SSML is not valid XML: {exc}", status_code=400)
        voice = root.find(f"{_SSML_NS}voice")
        if root.tag != f"{_SSML_NS}speak" or voice is None or not voice.get("name") or not root.get(_XML_LANG):
            return PlainTextResponse("SSML needs <speak xml:lang> with a <voice name>", status_code=400)
        text = "".join(voice.itertext()).strip()
        prosody = voice.find(f"{_SSML_NS}prosody")
        rate = _RATES[match.group(1)]
        self.record("azure_tts", voice=voice.get("name"), lang=root.get(_XML_LANG), text=text, rate=rate,
                    prosody_rate=prosody.get("rate") if prosody is not None else None)
        reply = self.next_reply("azure_tts", Reply())
        if reply.status != 200:
            return Response(reply.error_message, status_code=reply.status)
        pcm = await espeak_pcm(text, rate, voice=root.get(_XML_LANG, "en").split("-")[0])
        step = rate * 2 // 10  # 100 ms per chunk
        chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)]
        return _Raw(asgi_stream(self, "azure_tts", reply, chunks, "application/octet-stream"))

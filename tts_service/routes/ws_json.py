"""`/ws/tts`: this service's JSON WebSocket, used by `KyutaiTTS.speakStream()` in web/tts-integration.js.

In: `{"type": "text", "text"}` (any number) then `{"type": "end"}`; query `language`, `voice`,
`api_key`. Out: `{"type": "ready", "sample_rate", "format": "pcm_s16le", "provider", "model",
"language", "voice"}`, binary 16-bit PCM chunks, `{"type": "word", "word", "start", "end"}`, then
`{"type": "done", "duration"}` or `{"type": "error", "message", "code"}` (`code`: the refusal's
kind), and a close. Every refusal is an in-protocol error (a browser cannot read an HTTP status
from a failed upgrade), so that the page falls back to the Web Speech API with a reason.
"""

from __future__ import annotations

import json

from flask import request

from .. import audio
from ..security import public_model_id
from ..service import get_service
from ..speech.events import Audio, Done, Error, Word
from ..speech.refusals import Refusal
from ..speech.request import SpeechRequest
from ..speech.session import Session
from .websocket import Channel, authorized, bp, protocol_error, serve, upgrade


def _error(refusal: Refusal) -> str:
    return json.dumps({"type": "error", "message": refusal.message, "code": refusal.kind})


@bp.route("/ws/tts", websocket=True)
def json_streaming():
    args = request.args
    allowed = authorized("api_key")
    service = get_service()
    speech = SpeechRequest(streamed=True, language=args.get("language") or None,
                           voice=args.get("voice") or None)

    def handler(ws) -> None:
        channel = Channel(ws, _error)
        if not allowed:
            return channel.fail(Refusal("bad_request", "Missing or wrong API key."))

        def on_event(event) -> None:
            if isinstance(event, Audio):
                channel.send(audio.to_pcm16(event.pcm))
            elif isinstance(event, Word):
                channel.send(json.dumps({"type": "word", "word": event.text, "start": event.start, "end": event.stop}))
            elif isinstance(event, Done):
                channel.send(json.dumps({"type": "done", "duration": round(event.duration, 3)}))
                channel.close(1000, "done")
            elif isinstance(event, Error):
                channel.fail(event.refusal)

        session = Session(service, speech, on_event)
        try:
            session.start()
        except Refusal as refusal:
            return channel.fail(refusal)
        engine = session.route.engine
        channel.send(json.dumps({"type": "ready", "sample_rate": engine.sample_rate, "format": "pcm_s16le",
                                 "provider": engine.provider, "model": public_model_id(engine.model_id),
                                 "language": session.route.language, "voice": session.voice_name}))
        serve(ws, channel, session, lambda data: _dispatch(session, data))

    return upgrade(handler)


def _dispatch(session: Session, data) -> None:
    try:
        message = json.loads(data)
    except (TypeError, ValueError, RecursionError):
        raise protocol_error('messages must be JSON text such as {"type": "text", "text": "Hola"}') from None
    if not isinstance(message, dict):
        raise protocol_error("a message must be a map with a 'type'")
    kind = message.get("type")
    if kind == "text":
        session.add_text(message.get("text", ""))
    elif kind == "end":
        session.end()
    else:
        raise protocol_error(f"unknown message type {kind!r}; expected 'text' or 'end'")

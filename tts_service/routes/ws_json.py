"""`/ws/tts`: this service's JSON WebSocket, used by `KyutaiTTS.speakStream()` in web/tts-integration.js.

In: `{"type": "text", "text"}` (any number) then `{"type": "end"}`; query `language`, `voice`,
`api_key`. Out: `{"type": "ready", "sample_rate", "format": "pcm_s16le", "provider", "model",
"language"}`, binary 16-bit PCM chunks, `{"type": "word", "word", "start", "end"}`, then
`{"type": "done", "duration"}` or `{"type": "error", "message"}`, and a close. Every refusal is
an in-protocol error (a browser cannot read an HTTP status from a failed upgrade), so that the
page falls back to the Web Speech API with a reason.
"""

from __future__ import annotations

import json

from flask import current_app, request

from .. import audio
from ..security import public_model_id
from ..session import CallbackListener, Session, SessionError, choose_route, session_slots
from .websocket import Channel, ProtocolError, authorized, bp, serve, upgrade


@bp.route("/ws/tts", websocket=True)
def json_streaming():
    args = request.args
    language = args.get("language") or None
    voice = args.get("voice") or None
    allowed = authorized("api_key")
    router = current_app.extensions["tts_router"]
    settings = current_app.extensions["tts_settings"]
    slots = session_slots(current_app)

    def handler(ws) -> None:
        channel = Channel(ws, lambda text: json.dumps({"type": "error", "message": text}))
        if not allowed:
            return channel.fail("Missing or wrong API key.")

        def on_done(duration: float) -> None:
            channel.send(json.dumps({"type": "done", "duration": round(duration, 3)}))
            channel.close(1000, "done")

        try:
            route = choose_route(router, language or settings.default_language, None)
            session = Session(route, settings, CallbackListener(
                lambda pcm: channel.send(audio.to_pcm16(pcm)),
                lambda word, start, stop: channel.send(json.dumps(
                    {"type": "word", "word": word, "start": round(start, 3), "end": round(stop, 3)})),
                on_done, channel.fail), slots=slots, voice=voice, voice_fallback=False)
            session.start()
        except SessionError as exc:
            return channel.fail(str(exc))
        engine = route.engine
        channel.send(json.dumps({"type": "ready", "sample_rate": engine.sample_rate, "format": "pcm_s16le",
                                 "provider": engine.provider, "model": public_model_id(engine.model_id),
                                 "language": route.language}))
        serve(ws, channel, session, lambda data: _dispatch(session, data))

    return upgrade(handler)


def _dispatch(session: Session, data) -> None:
    try:
        message = json.loads(data)
    except (TypeError, ValueError, RecursionError):
        raise ProtocolError('messages must be JSON text such as {"type": "text", "text": "Hola"}') from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a map with a 'type'")
    kind = message.get("type")
    if kind == "text":
        session.add_text(message.get("text", ""))
    elif kind == "end":
        session.end()
    else:
        raise ProtocolError(f"unknown message type {kind!r}; expected 'text' or 'end'")

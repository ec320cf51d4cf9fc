"""`/ws/tts`: this service's JSON WebSocket, used by `KyutaiTTS.speakStream()` in web/tts-integration.js.

In: `{"type": "text", "text"}` (any number) then `{"type": "end"}`; query `language`, `voice`,
`api_key`, `format` (`pcm_s16le` by default, `ulaw`, `alaw` or any streamed format) and
`sample_rate`. Out: `{"type": "ready", "sample_rate", "format", "provider", "model", "language",
"voice", "word_times"}` (`"aligned"` or `"estimated"`), binary audio chunks, `{"type": "word",
"word", "start", "end", "word_times"}` as each word's end is known (and `"written"` where the word
reads a figure or abbreviation: `text/written.py`), then
`{"type": "done", "duration"}` or `{"type": "error", "message", "code"}` (`code`: the refusal's
kind), and a close. Every refusal is an in-protocol error (a browser cannot read an HTTP status
from a failed upgrade), so that the page falls back to the Web Speech API with a reason.
"""

from __future__ import annotations

import json

from flask import request

from ..audio.stream import STREAM_FORMATS, StreamEncoder, check_output
from ..logs import public_model_id
from ..service import get_service
from ..speech.events import Audio, Done, Error, Word
from ..speech.refusals import Refusal
from ..speech.request import SpeechRequest
from ..speech.session import Session
from .websocket import Channel, authorized, bp, protocol_error, serve, upgrade


# `pcm_s16le` is the name this socket has always used for 16-bit PCM.
FORMATS = ("pcm_s16le", *STREAM_FORMATS)


def _error(refusal: Refusal) -> str:
    return json.dumps({"type": "error", "message": refusal.message, "code": refusal.kind})


@bp.route("/ws/tts", websocket=True)
def json_streaming():
    args = request.args
    allowed = authorized()
    service = get_service()
    speech = SpeechRequest(streamed=True, language=args.get("language") or None,
                           voice=args.get("voice") or None)

    def handler(ws) -> None:
        channel = Channel(ws, _error)
        if not allowed:
            return channel.fail(Refusal("bad_request", "Missing or wrong API key."))
        try:
            fmt, rate = check_output(args.get("format", "pcm_s16le"), args.get("sample_rate"), FORMATS)
        except Refusal as refusal:
            return channel.fail(refusal)
        encoder: StreamEncoder | None = None

        def on_event(event) -> None:
            if isinstance(event, Audio):
                data = encoder.encode(event.pcm)
                if data:
                    channel.send(data)
            elif isinstance(event, Word):
                channel.send(json.dumps({"type": "word", **event.as_dict(), "word_times": session.word_times}))
            elif isinstance(event, Done):
                tail = encoder.finish()
                if tail:
                    channel.send(tail)
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
        encoder = StreamEncoder("pcm" if fmt == "pcm_s16le" else fmt, engine.sample_rate, rate)
        header = encoder.header()
        channel.send(json.dumps({"type": "ready", "sample_rate": encoder.sample_rate, "format": fmt,
                                 "provider": engine.provider, "model": public_model_id(engine.model_id),
                                 "language": session.route.language, "voice": session.voice_name,
                                 "word_times": session.word_times}))
        if header:
            channel.send(header)
        try:
            serve(ws, channel, session, lambda data: _dispatch(session, data))
        finally:
            encoder.close()

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

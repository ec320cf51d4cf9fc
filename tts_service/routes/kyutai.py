"""Kyutai moshi-server's TTS protocol: `/api/tts_streaming` (WebSocket and POST) and `/api/modules_info`.

Read from moshi-server itself (`rust/moshi-server/src/main.rs`, `py_module.rs`, `tts.rs` in
kyutai-labs/moshi) and from its clients (`scripts/tts_rust_server.py` in
kyutai-labs/delayed-streams-modeling, `unmute/tts/text_to_speech.py` in kyutai-labs/unmute):

- Query: `format` = `OggOpus` (the default), `OggOpusMessagePack`, `Pcm` or `PcmMessagePack`;
  `voice`; `auth_id` (or the `kyutai-api-key` header), checked before the upgrade (401). The Rust
  TTS module's `seed`, `temperature`, `top_k`, `cfg_alpha`, `max_seq_len` and `voices` are
  accepted and checked, and ignored: every slot of a batch shares one sampler here. `language`
  is this service's extension (Pocket TTS languages).
- In: a text frame is text to speak; the binary frame `b"\\0"` ends the text; otherwise
  MessagePack `{"type": "Text", "text"}`, `{"type": "Voice", "embeddings", "shape"}` (before the
  first text; later ones are ignored) and `{"type": "Eos"}`.
- Out: with the MessagePack formats `Ready` first (or `Error` "no free channels" at capacity),
  then `Audio` (`pcm`: 1920 floats, 80 ms at 24 kHz) or `OggOpus` (`data`: Ogg pages, the header
  pages as the first such message), `Text` (`text`, `start_s`, `stop_s`, and this service's
  `word_times`: `"aligned"` from the model, `"estimated"` shared out by length) per word, and `Error`;
  the raw formats carry only the audio (little-endian float32 frames, or Ogg pages). The socket
  closes when the audio is complete; an end with no text closes it at once.
"""

from __future__ import annotations

import logging

import msgpack
import numpy as np
from flask import Blueprint, jsonify, request

from ..audio.stream import StreamEncoder
from .errors import ApiError, bad_request
from ..service import get_service
from ..speech.events import Audio, Done, Error, Word
from ..speech.refusals import Refusal
from ..speech.request import SpeechRequest
from ..speech.session import Session
from ..speech.voices import FALLBACK
from .http import AudioStream, json_body
from .stream import audio_response
from .websocket import Channel, authorized, bp, protocol_error, serve, upgrade

logger = logging.getLogger(__name__)

FORMATS = ("OggOpus", "OggOpusMessagePack", "Pcm", "PcmMessagePack")
SAMPLE_RATE = 24000  # both engines speak at 24 kHz, as moshi-server's formats assume
FRAME_SAMPLES = 1920  # 80 ms at 24 kHz: one DSM step, the unit moshi-server sends
END_OF_STREAM = b"\0"
# Accepted for compatibility with moshi-server's Rust TTS module, ignored here (see README).
SAMPLING_PARAMETERS = {"seed": int, "temperature": float, "top_k": int, "cfg_alpha": float, "max_seq_len": int}

# Not part of the `websocket` blueprint's open, rate-limited surface: a plain status read.
info_bp = Blueprint("info", __name__)
bp.register_blueprint(info_bp)


class KyutaiOutput:
    """Encodes the session's events in one of moshi-server's four formats."""

    def __init__(self, fmt: str):
        self.format = fmt
        self.msgpack = fmt.endswith("MessagePack")
        # moshi-server's Ogg Opus: 24 kHz mono, a page per 20 ms so that each frame leaves at once.
        self.ogg = StreamEncoder("opus", SAMPLE_RATE, page_ms=20) if fmt.startswith("OggOpus") else None

    def message(self, message: dict) -> bytes | None:
        """A control message (Ready, Text, Error), which the raw formats do not carry."""
        return msgpack.packb(message, use_bin_type=True, use_single_float=True) if self.msgpack else None

    def header(self) -> bytes | None:
        if self.ogg is None:
            return None
        return self._ogg(self.ogg.header())

    def audio(self, pcm: np.ndarray) -> bytes | None:
        if self.ogg is not None:
            return self._ogg(self.ogg.encode(pcm))
        if self.msgpack:
            return self.message({"type": "Audio", "pcm": np.asarray(pcm, dtype=np.float32).tolist()})
        return np.asarray(pcm, dtype="<f4").tobytes()

    def finish(self) -> bytes | None:
        return self._ogg(self.ogg.finish()) if self.ogg is not None else None

    def _ogg(self, data: bytes) -> bytes | None:
        if not data:
            return None
        return self.message({"type": "OggOpus", "data": data}) if self.msgpack else data


def _query() -> dict:
    """The query as moshi-server reads it; a bad value is a 400 before the upgrade, as there."""
    args = request.args
    fmt = args.get("format", "OggOpus")
    if fmt not in FORMATS:
        raise bad_request(f"'format' must be one of {', '.join(FORMATS)}.")
    for name, kind in SAMPLING_PARAMETERS.items():
        if name in args:
            try:
                kind(args[name])
            except ValueError:
                raise bad_request(f"'{name}' must be a{'n integer' if kind is int else ' number'}.") from None
    voice = args.get("voice") or None
    if voice is not None and len(voice) > 300:
        raise bad_request("'voice' is too long.")
    return {"format": fmt, "voice": voice, "language": args.get("language") or None}


def _unauthorized() -> ApiError:
    return ApiError(401, "Missing or wrong API key: send the 'kyutai-api-key' header or 'auth_id'.")


@bp.route("/api/tts_streaming", websocket=True)
@bp.route("/api/tts-streaming", websocket=True)  # the name some Kyutai clients use
def kyutai_streaming():
    if not authorized():
        raise _unauthorized()
    query = _query()
    service = get_service()
    speech = SpeechRequest(streamed=True, language=query["language"], voice=query["voice"], voice_policy=FALLBACK)

    def handler(ws) -> None:
        output = KyutaiOutput(query["format"])
        channel = Channel(ws, lambda refusal: output.message({"type": "Error", "message": refusal.message}))

        def send(data: bytes | None) -> None:
            if data is not None:
                channel.send(data)

        def on_event(event) -> None:
            if isinstance(event, Audio):
                send(output.audio(event.pcm))
            elif isinstance(event, Word):
                send(output.message({"type": "Text", "text": event.text, "start_s": event.start,
                                     "stop_s": event.stop, "word_times": session.word_times}))
            elif isinstance(event, Done):
                send(output.finish())
                channel.close(1000, "done")
            elif isinstance(event, Error):
                channel.fail(event.refusal)

        session = Session(service, speech, on_event, frame_samples=FRAME_SAMPLES)
        try:
            session.start()
        except Refusal as refusal:
            return channel.fail(refusal)
        send(output.message({"type": "Ready"}))
        send(output.header())
        serve(ws, channel, session, lambda data: _dispatch(session, data))

    return upgrade(handler)


def _dispatch(session: Session, data) -> None:
    """One client frame: text, the end mark, or a MessagePack message."""
    if isinstance(data, str):
        return session.add_text(data + " ")
    if data == END_OF_STREAM:
        return session.end()
    try:
        message = msgpack.unpackb(data, raw=False)
    except Exception:
        raise protocol_error("malformed MessagePack message") from None
    if not isinstance(message, dict):
        raise protocol_error("a message must be a map with a 'type'")
    kind = message.get("type")
    if kind == "Text":
        text = message.get("text", "")
        if not isinstance(text, str):
            raise protocol_error("'text' must be a string")
        session.add_text(text + " ")
    elif kind == "Eos":
        session.end()
    elif kind == "Voice":
        try:
            embedding = np.asarray(message["embeddings"], dtype=np.float32).reshape(message["shape"])
        except Exception:
            logger.warning("a Voice message without usable 'embeddings' and 'shape' was ignored")
            session.touch()
            return
        session.set_voice_embedding(embedding)
    else:
        raise protocol_error(f"unknown message type {kind!r}; expected Text, Voice or Eos")


@bp.post("/api/tts_streaming")
@bp.post("/api/tts-streaming")
def kyutai_post():
    """moshi-server's POST form: `{"text", "voice"}` in, a WAV stream out while it is generated."""
    if not authorized():
        raise _unauthorized()
    body = json_body()
    for name in ("voice", "language"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise bad_request(f"'{name}' must be a string.")
    speech = SpeechRequest(text=body.get("text"), language=body.get("language") or None,
                           voice=body.get("voice") or None, voice_policy=FALLBACK)
    stream = AudioStream(get_service(), speech).open()
    return audio_response(stream, StreamEncoder("wav", stream.sample_rate))


@info_bp.get("/api/modules_info")
def modules_info():
    """moshi-server's module list: for each engine, the session slots used and available."""
    service = get_service()
    router, slots = service.router, service.slots
    modules, seen = [], set()
    for route in router.routes.values():
        if route.key in seen:
            continue
        seen.add(route.key)
        languages = router.languages_of(route.key)
        modules.append({"type": "py", "path": "/api/tts_streaming", "script": route.key,
                        "languages": ",".join(languages), "used_slots": str(slots.used(route.key)),
                        "total_slots": str(slots.capacity(route))})
    return jsonify(modules)

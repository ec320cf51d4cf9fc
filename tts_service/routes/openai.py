"""OpenAI's speech API (`POST /v1/audio/speech`, `GET /v1/models`), for tools that speak it.

OpenAI's model names (`tts-1`, `tts-1-hd`, `gpt-4o-mini-tts`) mean "the engine that serves the
request's language"; OpenAI's voice names (`alloy`, `nova`, ...) mean "that language's default
voice". This service's own engine names, model ids and voice names are accepted as they are.
Errors use OpenAI's shape (see errors.py), with `param` and `code` from the table below.

As OpenAI's own server does, every format is streamed while it is generated (`stream_format`
`"audio"`, the default), or sent as server-sent events (`"sse"`); `"stream": false` (an extension)
or a `speed` other than 1.0 answer once the whole audio is made, through the cache. A refusal is
a JSON error before the first byte; a failure after it ends the stream (logged).
"""

from __future__ import annotations

import base64
import functools
import json

from flask import Blueprint, Response, jsonify, request

from ..audio import encoding as audio
from ..audio.stream import StreamEncoder, check_output
from .disconnect import watch_client
from .errors import ApiError, request_id
from ..logs import public_model_id
from ..service import get_service
from ..speech import refusals
from ..speech.refusals import Refusal
from ..speech.request import SpeechRequest
from ..speech.voices import resolved_for
from ..speech.whole import cached, render
from .http import AudioStream, flag, json_body
from .stream import audio_response, stream_headers

bp = Blueprint("openai", __name__)

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage", "shimmer",
                 "verse")
RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm", "ulaw", "alaw")
STREAM_KINDS = ("audio", "sse")
SSE_CHUNK = 8192  # bytes of audio per event when a cached answer is sent as events
# A refusal's kind as OpenAI's error `code`, and the parameter it is about when the refusal names none.
OPENAI_CODES = {refusals.TOO_LARGE: ("string_above_max_length", "input"),
                refusals.NOTHING_TO_SAY: ("invalid_value", "input"),
                refusals.UNKNOWN_VOICE: ("invalid_value", "voice"),
                refusals.BAD_REQUEST: ("invalid_value", None)}


def _param_error(message: str, param: str, code: str = "invalid_value", **extra) -> ApiError:
    return ApiError(400, message, param=param, code=code, **extra)


def openai_refusals(view):
    """Refusals told with OpenAI's `param` and `code`."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except Refusal as refusal:
            code, param = OPENAI_CODES.get(refusal.kind, (None, None))
            refusal.details.setdefault("code", code)
            if refusal.details.get("param") in (None, "text"):
                refusal.details["param"] = param
            raise
    return wrapped


def _check_model(model: str, route) -> None:
    if model in OPENAI_MODELS or model == "auto":
        return
    engine = route.engine
    shown = public_model_id(engine.model_id)
    if model in (engine.kind, *engine.aliases, engine.model_id, shown):
        return
    valid = sorted(set(OPENAI_MODELS) | {"auto", engine.kind, shown})
    raise _param_error(f"Model {model!r} does not serve language {route.language!r} here. Valid models: "
                       f"{', '.join(valid)}.", "model", "model_not_found")


@bp.post("/v1/audio/speech")
@openai_refusals
def speech():
    service = get_service()
    settings = service.settings
    body = json_body()
    model = body.get("model", "tts-1")
    if not isinstance(model, str):
        raise _param_error("'model' must be a string.", "model")
    voice = _voice(body.get("voice"))
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):  # accepted, not followed: see docs
        raise _param_error("'instructions' must be a string.", "instructions")
    request_ = SpeechRequest(text=body.get("input"), language=body.get("language"),
                             voice=None if voice in OPENAI_VOICES else voice,
                             clean=flag(body, "clean", settings.clean_text),
                             normalize=flag(body, "normalize", settings.normalize), text_field="input")
    _check_model(model, resolved_for(service.router, request_).route)
    fmt, rate = check_output(body.get("response_format", "mp3"), body.get("sample_rate"), RESPONSE_FORMATS,
                             format_field="response_format")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
        raise _param_error("'speed' must be a number from 0.25 to 4.0.", "speed")
    stream_format = body.get("stream_format", "audio")
    if stream_format not in STREAM_KINDS:
        raise _param_error(f"'stream_format' must be one of {', '.join(STREAM_KINDS)}.", "stream_format")
    if flag(body, "stream", True) and speed == 1.0:
        entry, _ = cached(service, request_, fmt=fmt, rate=rate)  # a repeated answer needs no model
        hit = entry is not None
        if not hit:
            stream = AudioStream(service, request_).open()
            encoder = StreamEncoder(fmt, stream.sample_rate, rate)
            if stream_format == "sse":
                response = _events(stream.encoded(encoder), len(request_.text), lambda: stream.session.duration,
                                   stream_headers(stream, encoder))
            else:
                response = audio_response(stream, encoder)
            response.headers["X-Cache"] = "miss"
            return response
    else:
        with watch_client(request.environ, label=request_id()) as watch:
            entry, hit = render(service, request_, fmt=fmt, speed=float(speed), rate=rate, watch=watch)
    headers = {"X-Cache": "hit" if hit else "miss", "X-TTS-Provider": entry.meta["provider"],
               "X-Sample-Rate": str(entry.meta["sample_rate"])}
    if stream_format == "sse":
        parts = [entry.audio[i:i + SSE_CHUNK] for i in range(0, len(entry.audio), SSE_CHUNK)]
        return _events(iter(parts), len(request_.text), lambda: entry.meta["duration"], headers)
    return Response(entry.audio, mimetype=audio.mime_type(fmt, entry.meta["sample_rate"]), headers=headers)


def _voice(voice):
    """OpenAI's voice: a name, or `{"id": ...}` as its API takes for custom voices."""
    if isinstance(voice, dict):
        if set(voice) != {"id"} or not isinstance(voice["id"], str):
            raise _param_error("'voice' must be a name or an object {\"id\": \"...\"}.", "voice")
        voice = voice["id"]
    if voice is not None and not isinstance(voice, str):
        raise _param_error("'voice' must be a name or an object {\"id\": \"...\"}.", "voice")
    return voice


def _events(chunks, characters: int, seconds, headers: dict) -> Response:
    """OpenAI's server-sent events: `speech.audio.delta` with base64 audio, then `speech.audio.done`
    with `usage` (here: the input's characters, and the 80 ms frames of audio made)."""
    def body():
        for chunk in chunks:
            yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode("ascii")})
        frames = round(seconds() / 0.08)
        yield _event({"type": "speech.audio.done",
                      "usage": {"input_tokens": characters, "output_tokens": frames,
                                "total_tokens": characters + frames}})

    headers = {**headers, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(body(), mimetype="text/event-stream", headers=headers)


def _event(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


@bp.get("/v1/models")
def models():
    router = get_service().router
    ids = list(OPENAI_MODELS) + ["auto"]
    for scheduler in router.schedulers.values():
        ids += [scheduler.engine.kind, public_model_id(scheduler.engine.model_id)]
    data = [{"id": model_id, "object": "model", "created": 0,
             "owned_by": "openai-compatible" if model_id in OPENAI_MODELS else "kyutai"}
            for model_id in dict.fromkeys(ids)]
    return jsonify({"object": "list", "data": data})

"""OpenAI's speech API (`POST /v1/audio/speech`, `GET /v1/models`), for tools that speak it.

OpenAI's model names (`tts-1`, `tts-1-hd`, `gpt-4o-mini-tts`) mean "the engine that serves the
request's language"; OpenAI's voice names (`alloy`, `nova`, ...) mean "that language's default
voice". This service's own engine names, model ids and voice names are accepted as they are.
Errors use OpenAI's shape (see errors.py), with `param` and `code` from the table below.
"""

from __future__ import annotations

import functools

from flask import Blueprint, Response, jsonify, request

from .. import audio
from ..disconnect import watch_client
from ..errors import ApiError, request_id
from ..security import public_model_id
from ..service import get_service
from ..speech import refusals
from ..speech.refusals import Refusal
from ..speech.request import SpeechRequest
from ..speech.voices import resolve
from ..speech.whole import render
from .http import AudioStream, flag, json_body
from .stream import pcm_response

bp = Blueprint("openai", __name__)

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse")
RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
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
    voice = body.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise _param_error("'voice' must be a string.", "voice")
    request_ = SpeechRequest(text=body.get("input"), language=body.get("language"),
                             voice=None if voice in OPENAI_VOICES else voice,
                             clean=flag(body, "clean", settings.clean_text), text_field="input")
    _check_model(model, resolve(service.router, request_.language, request_.voice).route)
    fmt = body.get("response_format", "mp3")
    if fmt not in RESPONSE_FORMATS:
        raise _param_error(f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)}.", "response_format")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
        raise _param_error("'speed' must be a number from 0.25 to 4.0.", "speed")
    wants_stream = body.get("stream") is True or body.get("stream_format") == "audio"
    if wants_stream and fmt in ("pcm", "wav") and speed == 1.0:
        return pcm_response(AudioStream(service, request_).open(), fmt)
    with watch_client(request.environ, label=request_id()) as watch:
        entry, hit = render(service, request_, fmt=fmt, speed=float(speed), watch=watch)
    response = Response(entry.audio, mimetype=audio.mime_type(fmt, entry.meta["sample_rate"]))
    response.headers["X-Cache"] = "hit" if hit else "miss"
    response.headers["X-TTS-Provider"] = entry.meta["provider"]
    return response


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

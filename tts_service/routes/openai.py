"""OpenAI's speech API (`POST /v1/audio/speech`, `GET /v1/models`), for tools that speak it.

OpenAI's model names (`tts-1`, `tts-1-hd`, `gpt-4o-mini-tts`) mean "the engine that serves the
request's language"; OpenAI's voice names (`alloy`, `nova`, ...) mean "that language's default
voice". This service's own engine names, model ids and voice names are accepted as they are.
Errors use OpenAI's shape (see errors.py).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .. import audio
from ..errors import ApiError
from ..security import public_model_id
from ..routing import UnsupportedLanguageError, normalize_language
from .stream import stream_response
from .tts import ParsedRequest, json_body, render_audio
from ..engines.base import RequestError, SynthesisRequest
from ..engines.dsm import DsmEngine
from ..synthesis import prepare_text

bp = Blueprint("openai", __name__)

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse")
RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
ENGINE_NAMES = {"dsm": "dsm", "kyutai-dsm": "dsm", "pocket": "pocket", "pocket-tts": "pocket", "auto": None}


def _param_error(message: str, param: str, code: str = "invalid_value", **extra) -> ApiError:
    return ApiError(400, message, param=param, code=code, **extra)


def _route_for(model: str, language: str):
    router = current_app.extensions["tts_router"]
    try:
        route = router.route(language)
    except UnsupportedLanguageError as exc:
        raise _param_error(str(exc), "language", "unsupported_language") from None
    if model in OPENAI_MODELS or model == "auto":
        return route
    wanted = ENGINE_NAMES.get(model)
    kind = "dsm" if route.key == "dsm" else "pocket"
    shown = public_model_id(route.engine.model_id)
    if wanted == kind or model in (route.engine.model_id, shown):
        return route
    valid = sorted(set(OPENAI_MODELS) | {"auto", kind, shown})
    raise _param_error(f"Model {model!r} does not serve language {language!r} here. Valid models: "
                       f"{', '.join(valid)}.", "model", "model_not_found")


@bp.post("/v1/audio/speech")
def speech():
    settings = current_app.extensions["tts_settings"]
    body = json_body()
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise _param_error("'input' is required and must be a non-empty string.", "input")
    if len(text) > settings.max_chars:
        raise ApiError(413, f"'input' has {len(text)} characters; the limit is {settings.max_chars}.",
                       param="input", code="string_above_max_length")
    model = body.get("model", "tts-1")
    if not isinstance(model, str):
        raise _param_error("'model' must be a string.", "model")
    language = body.get("language", settings.default_language)
    if not isinstance(language, str) or not language.strip():
        raise _param_error("'language' must be a language code such as 'es'.", "language")
    language = normalize_language(language)
    route = _route_for(model, language)
    fmt = body.get("response_format", "mp3")
    if fmt not in RESPONSE_FORMATS:
        raise _param_error(f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)}.", "response_format")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
        raise _param_error("'speed' must be a number from 0.25 to 4.0.", "speed")
    voice = body.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise _param_error("'voice' must be a string.", "voice")
    names, default = route.engine.voices(language)
    if voice is None or voice in OPENAI_VOICES:
        voice = None
    elif voice not in names and not (route.key == "dsm" and DsmEngine.looks_like_repo_voice(voice)):
        raise _param_error(f"Unknown voice {voice!r}. Valid voices: {', '.join(list(OPENAI_VOICES) + names)}.",
                           "voice")
    clean = body.get("clean", settings.clean_text)
    if not isinstance(clean, bool):
        raise _param_error("'clean' must be true or false.", "clean")
    try:
        spoken = prepare_text(text, language, clean)
    except RequestError as exc:
        raise _param_error(str(exc), "input") from None
    request_ = SynthesisRequest(text=spoken, language=language, voice=voice,
                                max_audio_seconds=settings.max_audio_seconds)
    parsed = ParsedRequest(request_, route, fmt, False, characters=len(text))
    wants_stream = body.get("stream") is True or body.get("stream_format") == "audio"
    if wants_stream and fmt in ("pcm", "wav") and speed == 1.0:
        return stream_response(parsed)
    entry, hit = render_audio(parsed, speed=float(speed))
    response = Response(entry.audio, mimetype=audio.mime_type(fmt, entry.meta["sample_rate"]))
    response.headers["X-Cache"] = "hit" if hit else "miss"
    response.headers["X-TTS-Provider"] = route.engine.provider
    return response


@bp.get("/v1/models")
def models():
    router = current_app.extensions["tts_router"]
    ids = list(OPENAI_MODELS) + ["auto"]
    for scheduler in router.schedulers.values():
        kind = "dsm" if scheduler.engine.provider.endswith("DSM TTS") else "pocket"
        ids += [kind, public_model_id(scheduler.engine.model_id)]
    data = [{"id": model_id, "object": "model", "created": 0,
             "owned_by": "openai-compatible" if model_id in OPENAI_MODELS else "kyutai"}
            for model_id in dict.fromkeys(ids)]
    return jsonify({"object": "list", "data": data})

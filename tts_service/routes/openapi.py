"""The OpenAPI 3.1 description of the service, served at GET /openapi.json."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from ..audio.encoding import SAMPLE_RATES
from ..audio.stream import STREAM_FORMATS
from .openai import OPENAI_MODELS, OPENAI_VOICES, RESPONSE_FORMATS
from .tts import TTS_FORMATS
from .security import may_see_details

bp = Blueprint("openapi", __name__)

ERROR = {"$ref": "#/components/schemas/Error"}
# Something to say: a letter or digit in any script (text of only symbols or emoji is a 400).
SPEAKABLE = r"[^\W_]"
AUDIO_TYPES = ["audio/wav", "audio/flac", "audio/mpeg", "audio/ogg", "audio/aac", "audio/L16", "audio/PCMU",
               "audio/PCMA"]


# One server-sent event of the speech API (OpenAPI 3.2's reading of an event stream: each event).
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {
    "data": {"type": "string", "description": "JSON: {\"type\": \"speech.audio.delta\", \"audio\": <base64>}, "
                                              "then {\"type\": \"speech.audio.done\", \"usage\": {...}}"},
    "event": {"type": "string"}}}


def _errors(*codes: int, schema: dict = ERROR) -> dict:
    reasons = {400: "Bad input.", 401: "Missing or wrong API key.", 413: "Body or text too long.",
               415: "Body is not JSON.", 429: "Rate limit reached; see Retry-After.",
               500: "Unexpected failure; the log has the request id.", 503: "Model loading, failed or busy."}
    return {str(code): {"description": reasons[code], "content": {"application/json": {"schema": schema}}}
            for code in codes}


def _tts_request(max_chars: int, languages: list[str], voices: list[str], formats: tuple[str, ...]) -> dict:
    properties = {
        "text": {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": SPEAKABLE,
                 "description": "What to say: at least one letter or digit (symbols alone are a 400). "
                                "Longer than the limit is a 413, never cut."},
        "language": {"type": "string", "enum": languages,
                     "description": "Language code; regional tags such as 'es-ES' are accepted too."},
        "voice": {"type": "string", "description": "A voice name from GET /voices."},
        "format": {"type": "string", "enum": list(formats),
                   "description": "ulaw and alaw: G.711 for phone lines, raw, with the rate in Content-Type."},
        "sample_rate": {"type": "integer", "enum": list(SAMPLE_RATES),
                        "description": "Resample to this rate (the models speak at 24000 Hz)."},
        "words": {"type": "boolean", "description": "Return word timestamps."},
        "clean": {"type": "boolean", "description": "Turn Markdown, emoji and URLs into speakable text."},
        "normalize": {"type": "boolean", "description": "Read figures, money, dates, times, units and "
                                                        "abbreviations aloud (default TTS_NORMALIZE)."},
    }
    if voices:
        properties["voice"]["enum"] = voices
    return {"type": "object", "required": ["text"], "properties": properties, "additionalProperties": False}


def _common_voices(router) -> list[str]:
    """Voices every routed language accepts (a voice is checked against the request's language)."""
    common = None
    for route in router.routes.values():
        try:
            names = set(route.engine.voices(route.language)[0])
        except Exception:
            return []
        common = names if common is None else common & names
    return sorted(common or [])


def build_spec(app) -> dict:
    service = app.extensions["tts_service"]
    settings, router = service.settings, service.router
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    # Custom voice names are the owner's business: with a key set, only a request that has it sees them.
    voices = _common_voices(router) if may_see_details() else []

    def body(formats):
        schema = _tts_request(settings.max_chars, router.languages, voices, formats)
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    tts_request, stream_request = body(TTS_FORMATS), body(STREAM_FORMATS)
    tts_request["content"]["application/json"]["schema"]["properties"]["subtitles"] = {
        "type": "string", "enum": ["vtt", "srt"],
        "description": "Also answer WebVTT or SRT subtitles of the words in `subtitles`."}
    secured = [{"bearer": []}] if settings.api_key else []
    paths: dict[str, dict] = {
        "/health": {"get": {
            "summary": "Is the service ready to speak; with an API key set, the details need the key.",
            "responses": {
                "200": {"description": "Ready.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                "503": {"description": "Loading, or a model failed to load.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
            }}},
        "/tts": {"post": {
            "summary": "Synthesize text into base64 audio (WAV by default).",
            "security": secured, "requestBody": tts_request,
            "responses": {"200": {"description": "The audio and what produced it.",
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TTSResponse"}}}},
                          **_errors(400, 401, 413, 415, 429, 500, 503)}}},
        "/tts/stream": {"post": {
            "summary": "Stream audio while it is generated, in any format: an open-ended WAV by default.",
            "security": secured, "requestBody": stream_request,
            "responses": {"200": {"description": "Chunked audio.",
                                  "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in AUDIO_TYPES}},
                          **_errors(400, 401, 413, 415, 429, 500, 503)}}},
        "/normalize": {"post": {
            "summary": "What the engine would be given for a text (cleaning, spoken forms, lexicon, markup), unspoken.",
            "security": secured,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["text"], "additionalProperties": False,
                "properties": {"text": tts_request["content"]["application/json"]["schema"]["properties"]["text"],
                               "language": {"type": "string", "enum": router.languages},
                               "voice": tts_request["content"]["application/json"]["schema"]["properties"]["voice"],
                               "clean": {"type": "boolean"},
                               "normalize": {"type": "boolean"}}}}}},
            "responses": {"200": {"description": "The text as the engine would get it, and its language.",
                                  "content": {"application/json": {"schema": {
                                      "type": "object", "required": ["text", "language"],
                                      "properties": {"text": {"type": "string"}, "language": {"type": "string"}}}}}},
                          **_errors(400, 401, 413, 415, 429)}}},
        "/voices": {"get": {
            "summary": "The voices each language can use, and its default.",
            "security": secured,
            "responses": {"200": {"description": "Voices per language.",
                                  "content": {"application/json": {"schema": {"type": "object",
                                                                              "required": ["languages"]}}}},
                          **_errors(401, 429)}}},
        "/v1/audio/speech": {"post": {
            "summary": "OpenAI-compatible speech synthesis.",
            "security": secured,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["input"], "additionalProperties": False,
                "properties": {
                    "model": {"type": "string", "enum": list(OPENAI_MODELS) + ["auto"],
                              "description": "OpenAI's names, 'auto', or this service's engine and model ids."},
                    "input": {"type": "string", "minLength": 1, "maxLength": settings.max_chars, "pattern": SPEAKABLE},
                    "voice": {"oneOf": [
                        {"type": "string", "enum": list(OPENAI_VOICES) + voices},
                        {"type": "object", "required": ["id"], "additionalProperties": False,
                         "properties": {"id": {"type": "string", "enum": list(OPENAI_VOICES) + voices}}}],
                              "description": "OpenAI's voice names map to the language's default voice."},
                    "instructions": {"type": "string", "description": "Accepted and not followed."},
                    "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS)},
                    "sample_rate": {"type": "integer", "enum": list(SAMPLE_RATES)},
                    "stream_format": {"type": "string", "enum": ["audio", "sse"],
                                      "description": "audio: the bytes as they are made; sse: OpenAI's events."},
                    "stream": {"type": "boolean", "description": "false: answer once the audio is whole."},
                    "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0},
                    "language": {"type": "string", "enum": router.languages},
                    "clean": {"type": "boolean"}, "normalize": {"type": "boolean"}}}}}},
            "responses": {"200": {"description": "Audio, streamed as it is made, or OpenAI's server-sent events.",
                                  "content": {**{t: {"schema": {"type": "string", "format": "binary"}} for t in AUDIO_TYPES},
                                              "text/event-stream": {"schema": SSE_EVENT}}},
                          **_errors(400, 401, 413, 415, 429, 500, 503, schema={"$ref": "#/components/schemas/OpenAIError"})}}},
        "/v1/models": {"get": {
            "summary": "Models that /v1/audio/speech accepts.", "security": secured,
            "responses": {"200": {"description": "OpenAI model list.",
                                  "content": {"application/json": {"schema": {"type": "object",
                                                                              "required": ["object", "data"]}}}},
                          **_errors(401, 429, schema={"$ref": "#/components/schemas/OpenAIError"})}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics.", "security": secured,
            "responses": {"200": {"description": "Prometheus text format.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_errors(401)}}},
        "/openapi.json": {"get": {"summary": "This description.",
                                  "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                                        "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
    paths = {path: spec for path, spec in paths.items() if path in rules}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kyutai TTS service", "version": "1.0.0",
                 "description": "Self-hosted speech synthesis on Kyutai DSM TTS and Pocket TTS."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "request_id"], "properties": {
                    "error": {"type": "string"}, "request_id": {"type": "string"},
                    "fallback": {"type": "boolean"}}},
                "OpenAIError": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "object", "required": ["message", "type"], "properties": {
                        "message": {"type": "string"}, "type": {"type": "string"},
                        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
                "Health": {"type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string", "enum": ["ok", "loading", "error"]},
                    "model": {"type": ["string", "null"]}, "device": {"type": "string"},
                    "languages": {"type": "object"}, "engines": {"type": "array"}}},
                "TTSResponse": {"type": "object", "required": [
                    "audioContent", "provider", "model", "language", "characters", "sample_rate", "format",
                    "duration"], "properties": {
                    "audioContent": {"type": "string", "contentEncoding": "base64"},
                    "provider": {"type": "string"}, "model": {"type": "string"}, "language": {"type": "string"},
                    "characters": {"type": "integer", "minimum": 1}, "sample_rate": {"type": "integer"},
                    "format": {"type": "string"}, "duration": {"type": "number", "minimum": 0},
                    "voice": {"type": ["string", "null"]}, "truncated": {"type": "boolean"},
                    "words": {"type": "array", "items": {"type": "object", "required": ["word", "start", "end"],
                              "properties": {
                                  "word": {"type": "string", "description": "The word as it is spoken."},
                                  "start": {"type": "number"}, "end": {"type": "number"},
                                  "written": {"type": "string", "description":
                                              "What the word reads as written (\"1.500 €\" for \"mil\"); "
                                              "\"\" for a later word of the same stretch."}}}},
                    "word_times": {"type": "string", "enum": ["aligned", "estimated"]},
                    "subtitles": {"type": "string"}}},
            },
        },
    }


@bp.get("/openapi.json")
def spec():
    return jsonify(build_spec(current_app))

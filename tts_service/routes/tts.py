"""POST /tts: validate, hand the request to the language's worker, answer with base64 audio."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass

from flask import Blueprint, current_app, jsonify, request

from ..engines.base import RequestError, SynthesisRequest, UnknownVoiceError
from ..hub import ModelDownloadError
from ..synthesis import prepare_text, render
from ..disconnect import watch_client
from ..errors import ApiError, bad_request, request_id, unavailable
from ..security import public_model_id
from ..routing import Route, UnsupportedLanguageError, normalize_language
from ..scheduler import EngineUnavailableError, Job, JobCancelled, QueueFullError

logger = logging.getLogger(__name__)

bp = Blueprint("tts", __name__)

TTS_FORMATS = ("wav", "flac", "mp3", "opus", "aac", "pcm")


@dataclass
class ParsedRequest:
    synthesis: SynthesisRequest
    route: Route
    format: str
    words: bool
    characters: int = 0


def json_body() -> dict:
    """The request body as a JSON object, or a clear 400/415."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "Send a JSON body with 'Content-Type: application/json'.")
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object such as {\"text\": \"Hola\"}.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise bad_request("The request body is JSON nested too deeply; send a flat object such as "
                          "{\"text\": \"Hola\"}.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object such as {\"text\": \"Hola\"}.")
    return body


def parse_tts_body(body: dict) -> ParsedRequest:
    """Check every field before any work starts, so a bad request is a 4xx and not a broken stream."""
    settings = current_app.extensions["tts_settings"]
    router = current_app.extensions["tts_router"]
    text = body.get("text")
    if text is None:
        raise bad_request("'text' is required.")
    if not isinstance(text, str):
        raise bad_request("'text' must be a string.")
    if not text.strip():
        raise bad_request("'text' is empty.")
    if len(text) > settings.max_chars:
        raise ApiError(413, f"'text' has {len(text)} characters; the limit is {settings.max_chars}. "
                            "Split it into several requests.", limit=settings.max_chars)
    language = body.get("language", settings.default_language)
    if not isinstance(language, str) or not language.strip():
        raise bad_request("'language' must be a language code such as 'es' or 'en'.")
    language = normalize_language(language)
    try:
        route = router.route(language)
    except UnsupportedLanguageError as exc:
        raise bad_request(str(exc), supported_languages=exc.supported) from None
    voice = body.get("voice")
    if voice is not None and (not isinstance(voice, str) or not voice.strip()):
        raise bad_request("'voice' must be a non-empty string; GET /voices lists them.")
    fmt = body.get("format", "wav")
    if fmt not in TTS_FORMATS:
        raise bad_request(f"'format' must be one of {', '.join(TTS_FORMATS)}.")
    words = body.get("words", body.get("timestamps", False))
    if not isinstance(words, bool):
        raise bad_request("'words' must be true or false.")
    clean = body.get("clean", settings.clean_text)
    if not isinstance(clean, bool):
        raise bad_request("'clean' must be true or false.")
    try:
        spoken = prepare_text(text, language, clean)
    except RequestError as exc:
        raise bad_request(str(exc)) from None
    synthesis = SynthesisRequest(text=spoken, language=language, voice=voice,
                                 max_audio_seconds=settings.max_audio_seconds)
    return ParsedRequest(synthesis, route, fmt, words, characters=len(text))


def submit(parsed: ParsedRequest) -> Job:
    """Queue the request on its language's worker, turning refusals into JSON errors."""
    try:
        return parsed.route.scheduler.submit(parsed.synthesis)
    except Exception as exc:
        raise job_error(exc) from None


def job_error(error: BaseException) -> ApiError:
    """Map a refusal or a failure reported by the worker to the HTTP answer."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, UnknownVoiceError):
        return bad_request(str(error), valid_voices=error.valid)
    if isinstance(error, RequestError):
        return bad_request(str(error))
    if isinstance(error, QueueFullError):
        return unavailable(f"The server is busy ({error}); try again shortly.", retry_after=2)
    if isinstance(error, EngineUnavailableError):
        return unavailable(f"Speech model unavailable: {str(error).rstrip('.')}.",
                           retry_after=10 if error.loading else None)
    if isinstance(error, ModelDownloadError):
        return unavailable(f"Voice unavailable: {str(error).rstrip('.')}.", retry_after=10)
    if isinstance(error, TimeoutError):
        return unavailable(f"Synthesis timed out: {error}.", retry_after=5)
    if isinstance(error, JobCancelled):
        return ApiError(499, "Request cancelled.")
    logger.error("synthesis failed (request %s): %s", request_id(), error, exc_info=error)
    return ApiError(500, "Internal error while synthesizing; see the server log.", fallback=True)


def render_audio(parsed: ParsedRequest, speed: float = 1.0):
    """Synthesize (or fetch from the cache) and encode; errors become JSON answers."""
    settings = current_app.extensions["tts_settings"]
    cache = current_app.extensions.get("tts_cache")
    metrics = current_app.extensions.get("tts_metrics")

    def submit_piece(request_: SynthesisRequest) -> Job:
        # Watched: if the client leaves before the audio is ready, its jobs are dropped.
        return watch.track(submit(ParsedRequest(request_, parsed.route, parsed.format, parsed.words)))

    try:
        with watch_client(request.environ, label=request_id()) as watch:
            entry, hit = render(parsed.route, settings, cache, text=parsed.synthesis.text,
                                language=parsed.synthesis.language, voice=parsed.synthesis.voice,
                                fmt=parsed.format, speed=speed, submit=submit_piece)
    except Exception as exc:
        raise job_error(exc) from None
    if metrics is not None and cache is not None:
        metrics.cache.labels("hit" if hit else "miss").inc()
    return entry, hit


@bp.post("/tts")
def tts():
    parsed = parse_tts_body(json_body())
    entry, hit = render_audio(parsed)
    engine = parsed.route.engine
    meta = entry.meta
    body = {
        "audioContent": base64.b64encode(entry.audio).decode("ascii"),
        "provider": engine.provider,
        "model": public_model_id(engine.model_id),
        "language": parsed.synthesis.language,
        "characters": parsed.characters,
        "sample_rate": meta["sample_rate"],
        "format": parsed.format,
        "duration": meta["duration"],
        "voice": meta["voice"],
        "truncated": meta["truncated"],
        "request_id": request_id(),
    }
    if parsed.words:
        body["words"] = meta["words"]
        body["pieces"] = meta["pieces"]
    response = jsonify(body)
    response.headers["X-Cache"] = "hit" if hit else "miss"
    return response

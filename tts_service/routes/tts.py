"""POST /tts: a whole text in, base64 audio and its description out."""

from __future__ import annotations

import base64

from flask import Blueprint, jsonify, request

from ..audio import encoding as audio
from ..audio import subtitles
from ..audio.stream import check_output
from .disconnect import watch_client
from .errors import bad_request, request_id
from ..logs import public_model_id
from ..service import get_service
from ..speech.request import SpeechRequest
from ..speech.whole import render
from .http import flag, json_body

bp = Blueprint("tts", __name__)

TTS_FORMATS = tuple(audio.FORMATS)


def speech_request(body: dict, formats: tuple[str, ...]) -> tuple[SpeechRequest, str, int | None, bool]:
    """/tts and /tts/stream's body: the core's request, the format, the rate asked for (None: the
    model's) and whether words were asked for."""
    settings = get_service().settings
    speech = SpeechRequest(text=body.get("text"), language=body.get("language"), voice=body.get("voice"),
                           clean=flag(body, "clean", settings.clean_text),
                           normalize=flag(body, "normalize", settings.normalize))
    fmt, rate = check_output(body.get("format", "wav"), body.get("sample_rate"), formats)
    words = body.get("words", body.get("timestamps", False))
    if not isinstance(words, bool):
        raise bad_request("'words' must be true or false.")
    return speech, fmt, rate, words


@bp.post("/tts")
def tts():
    service = get_service()
    body = json_body()
    speech, fmt, rate, words = speech_request(body, TTS_FORMATS)
    captions = body.get("subtitles")
    if captions is not None and captions not in subtitles.FORMATS:
        raise bad_request(f"'subtitles' must be one of {', '.join(subtitles.FORMATS)}.")
    with watch_client(request.environ, label=request_id()) as watch:
        entry, hit = render(service, speech, fmt=fmt, rate=rate, watch=watch)
    meta = entry.meta
    answer = {
        "audioContent": base64.b64encode(entry.audio).decode("ascii"),
        "provider": meta["provider"],
        "model": public_model_id(meta["model"]),
        "language": meta["language"],
        "characters": len(speech.text),
        "sample_rate": meta["sample_rate"],
        "format": fmt,
        "duration": meta["duration"],
        "voice": meta["voice"],
        "truncated": meta["truncated"],
        "request_id": request_id(),
    }
    if words:
        answer["words"] = meta["words"]
        answer["pieces"] = meta["pieces"]
    if words or captions:
        answer["word_times"] = meta.get("word_times", "estimated")
    if captions:
        answer["subtitles"] = subtitles.render(meta["words"], captions)
    response = jsonify(answer)
    response.headers["X-Cache"] = "hit" if hit else "miss"
    return response

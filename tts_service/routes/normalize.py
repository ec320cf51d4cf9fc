"""POST /normalize: what the engine will be given for a text, through exactly the path /tts takes
(checks and limits, Markdown cleaning, spoken forms, the lexicon, say-as and sub), without speaking it."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..service import get_service
from ..speech.refusals import nothing_to_say
from ..speech.request import SpeechRequest
from ..speech.session import reading_for
from ..speech.voices import resolved_for
from ..text.checks import check_text, check_whole_text, has_speech, prepare_text
from ..text.pauses import split_breaks
from .http import flag, json_body

bp = Blueprint("normalize", __name__)


@bp.post("/normalize")
def normalize():
    service = get_service()
    settings = service.settings
    body = json_body()
    speech = SpeechRequest(text=body.get("text"), language=body.get("language"), voice=body.get("voice"),
                           clean=flag(body, "clean", settings.clean_text),
                           normalize=flag(body, "normalize", settings.normalize))
    text = check_text(check_whole_text(speech.text, settings.max_chars))
    resolved = resolved_for(service.router, speech)
    spoken = prepare_text(text, resolved.route.language, speech.clean, reading_for(service, speech))
    if not any(has_speech(words) for words, _ in split_breaks(spoken)):
        raise nothing_to_say()
    return jsonify({"text": spoken, "language": resolved.route.language})

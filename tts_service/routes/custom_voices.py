"""OpenAI's custom voices API: `POST /v1/audio/voices` (a recording in, a voice out), list, delete.

The upload is multipart (`name`, `audio_sample`, optional `consent`), as OpenAI's API takes it. Its
size is checked against `TTS_VOICE_MAX_BYTES` from Content-Length before the body is read (and
while it is read, for a body sent without one). Making the voice is the library's
(voice_library.py); the answers never hold the recording, the state or a path.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from .errors import ApiError
from ..service import get_service

bp = Blueprint("custom_voices", __name__)


@bp.post("/v1/audio/voices")
def create():
    library = get_service().voice_library
    limit = get_service().settings.voice_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"The upload is larger than {limit} bytes; send at most 30 s of audio.",
                       param="audio_sample", code="file_too_large")
    request.max_content_length = limit  # a body without Content-Length is cut off here (413)
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "Send multipart/form-data with 'name' and 'audio_sample' (and 'consent').",
                       code="invalid_content_type")
    name = request.form.get("name")
    upload = request.files.get("audio_sample")
    if name is None:
        raise ApiError(400, "'name' is missing: 1 to 64 letters, digits, '-' or '_'.", param="name",
                       code="missing_required_parameter")
    if upload is None:
        raise ApiError(400, "'audio_sample' is missing: a file with a few seconds of one person speaking.",
                       param="audio_sample", code="missing_required_parameter")
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"The upload is larger than {limit} bytes.", param="audio_sample", code="file_too_large")
    voice = library.create(name, data, request.form.get("consent"))  # a refusal is answered by the error handler
    return jsonify(voice.public())


@bp.get("/v1/audio/voices")
def listing():
    library = get_service().voice_library
    library.refresh()
    return jsonify({"object": "list", "data": [voice.public() for voice in library.list()]})


@bp.get("/v1/audio/voices/<voice_id>")
def one(voice_id: str):
    voice = get_service().voice_library.lookup(voice_id)
    if voice is None or voice.id != voice_id:
        raise ApiError(404, f"No voice with id {voice_id[:80]!r}; GET /v1/audio/voices lists them.",
                       param="voice_id", code="voice_not_found")
    return jsonify(voice.public())


@bp.delete("/v1/audio/voices/<voice_id>")
def delete(voice_id: str):
    if not get_service().voice_library.delete(voice_id):
        raise ApiError(404, f"No voice with id {voice_id[:80]!r}; GET /v1/audio/voices lists them.",
                       param="voice_id", code="voice_not_found")
    return jsonify({"id": voice_id, "object": "audio.voice", "deleted": True})

"""POST /tts/stream: the audio over chunked HTTP while it is being generated, in any format."""

from __future__ import annotations

from flask import Blueprint, Response

from ..audio.stream import STREAM_FORMATS, StreamEncoder
from ..logs import public_model_id
from ..service import get_service
from .http import AudioStream, json_body
from .tts import speech_request

bp = Blueprint("stream", __name__)


@bp.post("/tts/stream")
def tts_stream():
    speech, fmt, rate, _ = speech_request(json_body(), STREAM_FORMATS)
    stream = AudioStream(get_service(), speech).open()
    return audio_response(stream, StreamEncoder(fmt, stream.sample_rate, rate))


def stream_headers(stream: AudioStream, encoder: StreamEncoder) -> dict[str, str]:
    """What a streamed answer holds, said before its first byte."""
    route = stream.session.route
    return {
        "X-Sample-Rate": str(encoder.sample_rate),
        "X-TTS-Provider": route.engine.provider,
        "X-TTS-Model": public_model_id(route.engine.model_id),
        "X-TTS-Language": route.language,
        "X-TTS-Max-Audio-Seconds": f"{stream.session.max_audio_seconds:g}",
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    }


def audio_response(stream: AudioStream, encoder: StreamEncoder) -> Response:
    """The audio sent as it is encoded: an open-ended WAV, raw PCM or G.711, or a compressed stream."""
    return Response(stream.encoded(encoder), mimetype=encoder.mime_type, headers=stream_headers(stream, encoder))

"""POST /tts/stream: the audio over chunked HTTP while it is being generated."""

from __future__ import annotations

from flask import Blueprint, Response

from .. import audio
from ..errors import bad_request
from ..security import public_model_id
from ..service import get_service
from .http import AudioStream, json_body
from .tts import TTS_FORMATS, speech_request

bp = Blueprint("stream", __name__)

STREAM_FORMATS = ("wav", "pcm")


@bp.post("/tts/stream")
def tts_stream():
    speech, fmt, _ = speech_request(json_body(), TTS_FORMATS)
    if fmt not in STREAM_FORMATS:
        raise bad_request(f"Streaming supports 'format' {' or '.join(STREAM_FORMATS)}; "
                          "use POST /tts for other formats.")
    return pcm_response(AudioStream(get_service(), speech).open(), fmt)


def pcm_response(stream: AudioStream, fmt: str) -> Response:
    """A WAV (with a header for an open-ended length) or raw 16-bit PCM stream, and what it holds."""
    rate = stream.sample_rate
    route = stream.session.route

    def body():
        if fmt == "wav":
            yield audio.streaming_wav_header(rate)
        yield from stream.chunks(audio.to_pcm16)

    headers = {
        "X-Sample-Rate": str(rate),
        "X-TTS-Provider": route.engine.provider,
        "X-TTS-Model": public_model_id(route.engine.model_id),
        "X-TTS-Language": route.language,
        "X-TTS-Max-Audio-Seconds": f"{stream.session.max_audio_seconds:g}",
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    }
    mimetype = audio.mime_type("wav") if fmt == "wav" else audio.mime_type("pcm", rate)
    return Response(body(), mimetype=mimetype, headers=headers)

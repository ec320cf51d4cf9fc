"""POST /tts/stream: audio over chunked HTTP while it is being generated."""

from __future__ import annotations

import logging
from typing import Iterator

from flask import Blueprint, Response

from .. import audio
from ..errors import bad_request, request_id
from ..security import public_model_id
from .tts import json_body, job_error, parse_tts_body, submit

logger = logging.getLogger(__name__)

bp = Blueprint("stream", __name__)

STREAM_FORMATS = ("wav", "pcm")


@bp.post("/tts/stream")
def tts_stream():
    parsed = parse_tts_body(json_body())
    if parsed.format not in STREAM_FORMATS:
        raise bad_request(f"Streaming supports 'format' {' or '.join(STREAM_FORMATS)}; "
                          "use POST /tts for other formats.")
    return stream_response(parsed)


def stream_response(parsed) -> Response:
    """Chunked WAV or PCM while the worker generates; failures before the first audio stay JSON errors."""
    job = submit(parsed)
    events = job.events()
    # Wait for the first audio so that a failure before it is still a JSON error, not a broken stream.
    try:
        first = next(pcm for kind, pcm in events if kind == "audio")
    except StopIteration:
        first = None
    except Exception as exc:
        job.cancel()
        raise job_error(exc) from None
    engine = parsed.route.engine
    rid = request_id()

    def body() -> Iterator[bytes]:
        try:
            if parsed.format == "wav":
                yield audio.streaming_wav_header(job.sample_rate)
            if first is not None:
                yield audio.to_pcm16(first)
            for kind, pcm in events:
                if kind == "audio":
                    yield audio.to_pcm16(pcm)
            if job.truncated:
                logger.info("stream %s stopped at the %.0f s audio limit", rid, job.request.max_audio_seconds)
        except GeneratorExit:
            logger.info("client left stream %s; freeing its slot", rid)
            raise
        except Exception as exc:
            # Headers are gone: all we can do is end the stream early and say why in the log.
            logger.error("stream %s failed after audio started: %s", rid, exc, exc_info=exc)
        finally:
            job.cancel()

    headers = {
        "X-Sample-Rate": str(job.sample_rate),
        "X-TTS-Provider": engine.provider,
        "X-TTS-Model": public_model_id(engine.model_id),
        "X-TTS-Language": parsed.synthesis.language,
        "X-TTS-Max-Audio-Seconds": f"{parsed.synthesis.max_audio_seconds:g}",
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    }
    mimetype = audio.mime_type("wav") if parsed.format == "wav" else audio.mime_type("pcm", job.sample_rate)
    return Response(body(), mimetype=mimetype, headers=headers)

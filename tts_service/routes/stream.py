"""POST /tts/stream: audio over chunked HTTP while it is being generated."""

from __future__ import annotations

import logging
from typing import Iterator

from flask import Blueprint, Response

import numpy as np

from .. import audio
from ..engines.base import NothingToSayError, SynthesisRequest
from ..errors import bad_request, request_id
from ..pauses import split_breaks
from ..scheduler import Job
from ..security import public_model_id
from .tts import ParsedRequest, json_body, job_error, parse_tts_body, submit

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


def stream_parts(parsed) -> tuple[float, list[tuple[SynthesisRequest, float]]]:
    """The text's parts between pause tags as prepared requests, each with the silence after it.

    Returns the silence before the first part too. A text without tags is one part, as it came."""
    parts = split_breaks(parsed.synthesis.text)
    if len(parts) == 1:
        return 0.0, [(parsed.synthesis, 0.0)]
    lead, prepared = 0.0, []
    for words, pause in parts:
        request = SynthesisRequest(text=words, language=parsed.synthesis.language, voice=parsed.synthesis.voice,
                                   max_audio_seconds=parsed.synthesis.max_audio_seconds)
        try:
            parsed.route.scheduler.prepare(request)
        except NothingToSayError:
            if prepared:
                prepared[-1] = (prepared[-1][0], prepared[-1][1] + pause)
            else:
                lead += pause
            continue
        except Exception as exc:
            raise job_error(exc) from None
        prepared.append((request, pause))
    if not prepared:
        raise job_error(NothingToSayError())
    return lead, prepared


def stream_response(parsed) -> Response:
    """Chunked WAV or PCM while the worker generates; failures before the first audio stay JSON errors.

    Parts between pause tags are generated side by side and sent in order with exactly the asked
    silence between them, on every engine; the whole stream stops at TTS_MAX_AUDIO_SECONDS."""
    lead, parts = stream_parts(parsed)
    jobs: list[Job] = []
    try:
        for request, _ in parts:
            jobs.append(submit(ParsedRequest(request, parsed.route, parsed.format, parsed.words)))
    except Exception:
        for job in jobs:
            job.cancel()
        raise
    job = jobs[0]
    events = job.events()
    # Wait for the first audio so that a failure before it is still a JSON error, not a broken stream.
    try:
        first = next(pcm for kind, pcm in events if kind == "audio")
    except StopIteration:
        first = None
    except Exception as exc:
        for other in jobs:
            other.cancel()
        raise job_error(exc) from None
    engine = parsed.route.engine
    rid = request_id()
    limit = int(parsed.synthesis.max_audio_seconds * job.sample_rate)

    def body() -> Iterator[bytes]:
        sent = 0

        def chunk(pcm) -> bytes:
            nonlocal sent
            pcm = pcm[: max(limit - sent, 0)]
            sent += len(pcm)
            return audio.to_pcm16(pcm) if len(pcm) else b""

        def silence(seconds: float) -> bytes:
            return chunk(np.zeros(int(round(seconds * job.sample_rate)), dtype=np.float32))

        try:
            if parsed.format == "wav":
                yield audio.streaming_wav_header(job.sample_rate)
            yield silence(lead)
            if first is not None:
                yield chunk(first)
            for index, (part_job, (_, pause)) in enumerate(zip(jobs, parts)):
                for kind, pcm in (events if index == 0 else part_job.events()):
                    if kind == "audio":
                        yield chunk(pcm)
                    if sent >= limit:
                        break
                if sent >= limit:
                    logger.info("stream %s stopped at the %.0f s audio limit", rid,
                                parsed.synthesis.max_audio_seconds)
                    break
                yield silence(pause)
        except GeneratorExit:
            logger.info("client left stream %s; freeing its slot", rid)
            raise
        except Exception as exc:
            # Headers are gone: all we can do is end the stream early and say why in the log.
            logger.error("stream %s failed after audio started: %s", rid, exc, exc_info=exc)
        finally:
            for part_job in jobs:
                part_job.cancel()

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

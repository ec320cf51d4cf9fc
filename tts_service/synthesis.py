"""Whole-text synthesis for /tts and the OpenAI route: speakable text, pieces, pauses, cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from . import audio
from .cache import AudioCache, CachedAudio
from .engines.base import NothingToSayError, RequestError, SynthesisRequest, WordTiming
from .pauses import clean_keeping_breaks, split_breaks
from .routing import Route
from .scheduler import Job
from .text import group_sentences, speakable, split_sentences

logger = logging.getLogger(__name__)

PAUSE_SECONDS = 0.15


@dataclass
class Synthesis:
    audio: np.ndarray
    sample_rate: int
    words: list[WordTiming]
    truncated: bool
    voice: str | None
    pieces: list[float] = field(default_factory=list)  # duration of each piece, in order


# Characters no engine should see, whatever "clean" says: controls (but tab and newline),
# zero-width and direction marks, the byte-order mark, noncharacters.
_INVISIBLE = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0),
                            *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2070),
                            0xFEFF, 0xFFFE, 0xFFFF], " ")


def check_text(text: str) -> str:
    """Text every engine can take: lone surrogates refused, invisible characters made spaces."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError("The text holds invalid Unicode (a lone surrogate such as \\ud800); "
                           "send UTF-8 text.") from None
    return text.translate(_INVISIBLE)


def prepare_text(text: str, language: str, clean: bool) -> str:
    """What the engine will be asked to say, pause tags kept; empty when nothing speakable is left."""
    text = check_text(text)
    return clean_keeping_breaks(text, lambda part: speakable(part, language)) if clean else text.strip()


def pieces_for(route: Route, text: str) -> list[str]:
    """DSM generates pieces side by side in its batch; Pocket TTS already works sentence by sentence."""
    if route.key != "dsm":
        return [text]
    sentences = split_sentences(text)
    return group_sentences(sentences, groups=max(1, route.engine.max_slots // 2))


def synthesize(route: Route, text: str, language: str, voice: str | None, max_audio_seconds: float,
               submit) -> Synthesis:
    """Speak `text` as one or more jobs on the route's worker and join them in order.

    A pause tag splits the text: the pieces on either side are spoken apart and joined with
    exactly that much silence, on every engine."""
    requests, pauses, lead, paused_after = [], [], 0.0, -1
    for words, pause in split_breaks(text):
        for piece in pieces_for(route, words) if words.strip() else []:
            request = SynthesisRequest(text=piece, language=language, voice=voice, max_audio_seconds=max_audio_seconds)
            try:
                route.scheduler.prepare(request)  # every piece is checked before any job is queued
            except NothingToSayError:
                continue
            requests.append(request)
            pauses.append(PAUSE_SECONDS)
        if pause:
            if pauses:
                pauses[-1], paused_after = pause, len(pauses) - 1
            else:
                lead += pause
    if not requests:
        raise NothingToSayError()
    jobs: list[Job] = []
    results = []
    try:
        for request in requests:
            jobs.append(submit(request))
        rate, spoken = jobs[0].sample_rate, lead
        for job, gap in zip(jobs, pauses):
            results.append(job.result())
            spoken += len(results[-1].audio) / rate + gap
            if spoken >= max_audio_seconds:
                break  # the answer is full: the later pieces are dropped, not generated
    finally:
        for job in jobs:
            job.cancel()
    chunks, words, durations, offset = [], [], [], 0
    gaps = [lead] + pauses[:-1] + ([pauses[-1]] if paused_after == len(pauses) - 1 else [])
    for index, result in enumerate(results):
        silence = np.zeros(int(round(gaps[index] * rate)), dtype=np.float32)
        chunks.append(silence)
        offset += len(silence)
        chunks.append(result.audio)
        shift = offset / rate
        words += [WordTiming(w.word, w.start + shift, (w.end if w.end is not None else len(result.audio) / rate) + shift)
                  for w in result.words]
        durations.append(len(result.audio) / rate)
        offset += len(result.audio)
    if len(gaps) > len(results):  # the text ends with a pause
        chunks.append(np.zeros(int(round(gaps[-1] * rate)), dtype=np.float32))
    joined = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    limit = int(max_audio_seconds * rate)
    truncated = any(r.truncated for r in results) or len(results) < len(jobs) or len(joined) > limit
    joined = joined[:limit]
    words = [w for w in words if w.start * rate < limit]
    prepared = jobs[0].request.prepared if jobs else None
    return Synthesis(joined, rate, words, truncated, getattr(prepared, "voice_name", voice), durations)


def cache_key(route: Route, settings, text: str, language: str, voice: str | None, fmt: str,
              speed: float) -> str:
    engine = route.engine
    sampling = {"temperature": settings.dsm_temperature, "n_q": settings.dsm_n_q, "cfg": settings.dsm_cfg_coef} \
        if route.key == "dsm" else {}
    return AudioCache.key(engine=route.key, model=engine.model_id, language=language,
                          voice=voice or engine.voices(language)[1], text=text, format=fmt, speed=speed,
                          max_seconds=settings.max_audio_seconds, **sampling)


def render(route: Route, settings, cache: AudioCache | None, *, text: str, language: str, voice: str | None,
           fmt: str, speed: float, submit) -> tuple[CachedAudio, bool]:
    """Encoded audio and its description, from the cache when possible; returns (entry, was_hit)."""
    key = cache_key(route, settings, text, language, voice, fmt, speed) if cache is not None else None
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit, True
    # Slowed down, the audio grows: generate only what still fits TTS_MAX_AUDIO_SECONDS once slowed.
    result = synthesize(route, text, language, voice, settings.max_audio_seconds * min(speed, 1.0), submit)
    samples, words, truncated = result.audio, result.words, result.truncated
    if speed != 1.0:
        samples = audio.change_speed(samples, result.sample_rate, speed)
        words = [WordTiming(w.word, w.start / speed, (w.end or 0) / speed) for w in words]
        limit = int(settings.max_audio_seconds * result.sample_rate)
        truncated = truncated or len(samples) > limit
        samples = samples[:limit]
    meta = {
        "sample_rate": result.sample_rate,
        "duration": round(len(samples) / result.sample_rate, 3),
        "voice": result.voice,
        "truncated": truncated,
        "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end or 0, 3)} for w in words],
        "pieces": [round(d, 3) for d in result.pieces],
    }
    entry = CachedAudio(audio.encode(samples, result.sample_rate, fmt), meta)
    if cache is not None:
        cache.put(key, entry)
    return entry, False

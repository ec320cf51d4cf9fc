"""A whole text spoken by one session and encoded once: /tts and the non-streamed OpenAI answer."""

from __future__ import annotations

import queue
from dataclasses import dataclass, replace

import numpy as np

from ..audio import encoding as audio
from ..audio.cache import AudioCache, CachedAudio
from .events import Audio, Done, Error, EventQueue, Word
from .refusals import TIMED_OUT, Refusal
from .request import SpeechRequest
from .session import Session, reading_for
from ..text.checks import check_text, check_whole_text
from .voices import resolved_for


@dataclass
class Spoken:
    audio: np.ndarray
    sample_rate: int
    words: list[Word]
    truncated: bool
    voice: str | None
    pieces: list[float]
    route: object
    word_times: str = "estimated"


def speak(service, request: SpeechRequest, watch=None) -> Spoken:
    """Run a whole-text session to its end; raises its Refusal. `watch` cancels it if the client leaves."""
    events = EventQueue()
    session = Session(service, replace(request, listening=False), events)
    session.start()
    if watch is not None:
        watch.track(session)
    chunks: list[np.ndarray] = []
    words: list[Word] = []
    try:
        while True:
            try:
                event = events.get(timeout=service.settings.request_timeout + 30)
            except queue.Empty:
                raise Refusal(TIMED_OUT, "Synthesis timed out.", retry_after=5) from None
            if isinstance(event, Audio):
                chunks.append(event.pcm)
            elif isinstance(event, Word):
                words.append(event)
            elif isinstance(event, Error):
                raise event.refusal
            elif isinstance(event, Done):
                break
    finally:
        session.cancel()
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return Spoken(samples, session.sample_rate, words, session.truncated, session.voice_name, session.pieces,
                  session.route, session.word_times)


def reading_key(service, request: SpeechRequest) -> str:
    reading = reading_for(service, request)
    return f"{reading.normalize}:{reading.lexicon.fingerprint}" if reading.normalize else "as-written"


def cache_key(service, request: SpeechRequest, fmt: str, speed: float, rate: int | None = None) -> str:
    resolved = resolved_for(service.router, request)
    engine = resolved.route.engine
    return AudioCache.key(engine=resolved.route.key, model=engine.model_id, language=resolved.language,
                          voice=resolved.voice or engine.voices(resolved.language)[1], custom=resolved.custom_id,
                          text=request.text,
                          clean=request.clean, reading=reading_key(service, request), format=fmt, speed=speed,
                          rate=rate,
                          max_seconds=service.settings.max_audio_seconds, **engine.sampling())


def cached(service, request: SpeechRequest, *, fmt: str, speed: float = 1.0,
           rate: int | None = None) -> tuple[CachedAudio | None, str | None]:
    """The cached answer to `request`, or None; and its cache key (None without a cache)."""
    settings, cache = service.settings, service.cache
    if not request.checked:  # before it is hashed; the session takes it as checked
        request.text = check_text(check_whole_text(request.text, settings.max_chars, request.text_field))
        request.checked = True
    if cache is None:
        return None, None
    key = cache_key(service, request, fmt, speed, rate)
    hit = cache.get(key)
    service.metrics.cache.labels("hit" if hit is not None else "miss").inc()
    return hit, key


def render(service, request: SpeechRequest, *, fmt: str, speed: float = 1.0, rate: int | None = None,
           watch=None) -> tuple[CachedAudio, bool]:
    """Encoded audio and its description, from the cache when possible; returns (entry, was_hit)."""
    settings, cache = service.settings, service.cache
    hit, key = cached(service, request, fmt=fmt, speed=speed, rate=rate)
    if hit is not None:
        return hit, True
    # Slowed down, the audio grows: generate only what still fits TTS_MAX_AUDIO_SECONDS once slowed.
    request.max_audio_seconds = settings.max_audio_seconds * min(speed, 1.0)
    spoken = speak(service, request, watch)
    samples, words, truncated = spoken.audio, spoken.words, spoken.truncated
    if speed != 1.0:
        samples = audio.change_speed(samples, spoken.sample_rate, speed)
        words = [Word(w.text, w.start / speed, w.stop / speed, w.written) for w in words]
        limit = int(settings.max_audio_seconds * spoken.sample_rate)
        truncated = truncated or len(samples) > limit
        samples = samples[:limit]
    data, out_rate = audio.encode(samples, spoken.sample_rate, fmt, rate)
    meta = {
        "language": spoken.route.language,
        "provider": spoken.route.engine.provider,
        "model": spoken.route.engine.model_id,
        "sample_rate": out_rate,
        "duration": round(len(samples) / spoken.sample_rate, 3),
        "voice": spoken.voice,
        "truncated": truncated,
        "words": [w.as_dict() for w in words],
        "word_times": spoken.word_times,
        "pieces": [round(d, 3) for d in spoken.pieces],
    }
    entry = CachedAudio(data, meta)
    if cache is not None:
        cache.put(key, entry)
    return entry, False

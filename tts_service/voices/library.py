"""Voices made from a recording while the service runs: made once, kept on disk, spoken everywhere.

A voice is made for every Pocket TTS model loaded at the time, by the package's own audio-prompt
path (`TTSModel.get_state_for_audio_prompt`, as `pocket-tts export-voice` does), and its state is
written with the package's `export_model_state`. Encoding runs in one thread of its own, with
`TTS_VOICE_ENCODE_THREADS` torch threads at a lower CPU priority, never in a worker's step: the
streams being generated keep their pace while a voice is made, and two uploads take turns.

On disk (`TTS_VOICE_STORE`, `store.py`), one folder per voice, written whole or not at all.

A language whose model was not loaded when the voice was made gets its state when it loads, from
the kept recording; without one, that language does not have the voice. Replicas that share the
folder see each other's voices at their next start, or at once through `refresh` (a listing, or a
voice name nobody here knows yet).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path

from ..config import Settings
from ..speech.refusals import BAD_REQUEST, CONFLICT, FORBIDDEN, TIMED_OUT, UNAVAILABLE, Refusal
from ..logs import log_safe
from ..threads import release_helpers, set_own_threads
from .recordings import PreparedSample, prepared_from_upload
from .store import NAME, VOICE_ID, CustomVoice, VoiceStore

logger = logging.getLogger(__name__)

MAX_CONSENT_CHARS = 1000
LOW_PRIORITY = 10  # the encoding thread's nice value: the workers go first
REFRESH_EVERY = 2.0  # seconds between two reads of the store for other replicas' voices


def _encoding_thread_setup(threads: int) -> None:
    """The encoding thread's own torch threads and a lower priority; the workers' are left as they are
    (`set_own_threads` changes this thread's count only)."""
    set_own_threads(threads)
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOW_PRIORITY)
    except (OSError, AttributeError):
        pass


class _Handoff:
    """Who decides a voice's fate when its making runs late: the waiter giving up or the encoder
    putting it in place, never both. One lock orders the two, so a voice whose client was told it
    failed is never left on disk, and one already in place is handed to its client."""

    def __init__(self):
        self._lock = threading.Lock()
        self.abandoned = False
        self._committed = False

    def abandon(self) -> bool:
        """The waiter gives up; False when the voice is already in place (wait for it instead)."""
        with self._lock:
            self.abandoned = not self._committed
            return self.abandoned

    def commit(self, place) -> bool:
        """The encoder puts the voice in place unless its waiter gave up first."""
        with self._lock:
            if self.abandoned:
                return False
            place()
            self._committed = True
            return True


class VoiceLibrary:
    """The voices of `TTS_VOICE_STORE`, the Pocket TTS engines that speak them, and the one encoding thread."""

    def __init__(self, settings: Settings, router):
        self.settings = settings
        self.router = router
        self.store = VoiceStore(Path(settings.voice_store).expanduser())
        self._voices: dict[str, CustomVoice] = {}
        self._reserved: set[str] = set()
        self._lock = threading.RLock()
        self._refreshed = 0.0
        self._encoder = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="voice-encode", initializer=_encoding_thread_setup,
            initargs=(settings.voice_encode_threads,))
        router.voice_library = self
        for engine in self.engines():
            engine.library = self

    # -- reading ---------------------------------------------------------------------------
    def engines(self) -> list:
        """Every Pocket TTS engine of the routes, once each."""
        seen = {}
        for scheduler in self.router.schedulers.values():
            if scheduler.engine.capabilities.voice_cloning:
                seen[id(scheduler.engine)] = scheduler.engine
        return list(seen.values())

    def open(self) -> None:
        """Read the store (before the models load, which read their voices' states from it)."""
        with self._lock:
            self.store.clear_leftovers()
            self._voices = self.store.read()
            self._refreshed = time.monotonic()
        if self._voices:
            logger.info("%d custom voice(s) in the voice store", len(self._voices))

    def refresh(self, force: bool = False) -> None:
        """Pick up the voices other replicas made or deleted in a shared store (at most every few seconds)."""
        if not force and time.monotonic() - self._refreshed < REFRESH_EVERY:
            return
        found = self.store.read()
        with self._lock:
            self._refreshed = time.monotonic()
            for voice_id in list(self._voices):
                if voice_id not in found and not self.store.has(voice_id):  # not one made meanwhile
                    del self._voices[voice_id]
            for voice_id, voice in found.items():
                if voice_id in self._voices or any(v.name == voice.name for v in self._voices.values()):
                    continue
                self._load_states(voice)
                self._voices[voice_id] = voice

    def _load_states(self, voice: CustomVoice) -> None:
        """Another replica's voice: its states into the loaded engines, before anyone can ask for it."""
        for engine in self.engines():
            path = self._state_path(voice, engine)
            if path is not None and engine.is_loaded:
                try:
                    engine.add_voice_state(path, engine.read_voice_state(path))
                except Exception as exc:  # a damaged file: that language goes without this voice
                    logger.warning("voice %s: its %s state cannot be read: %s", voice.id, engine.language,
                                   type(exc).__name__)
                    voice.states.pop(engine.language, None)

    def list(self) -> list[CustomVoice]:
        with self._lock:
            return sorted(self._voices.values(), key=lambda v: (v.created_at, v.id))

    def find(self, name_or_id: str) -> CustomVoice | None:
        """A voice by its id or its name."""
        with self._lock:
            voice = self._voices.get(name_or_id)
            if voice is None:
                voice = next((v for v in self._voices.values() if v.name == name_or_id), None)
        return voice

    def lookup(self, name_or_id: str) -> CustomVoice | None:
        """`find`, reading the store again first when nobody here knows the voice yet."""
        voice = self.find(name_or_id)
        if voice is None and (NAME.fullmatch(name_or_id) or VOICE_ID.fullmatch(name_or_id)):
            self.refresh()
            voice = self.find(name_or_id)
        return voice

    def _state_path(self, voice: CustomVoice, engine) -> Path | None:
        entry = voice.states.get(engine.language)
        if not entry or entry.get("model") != engine.model_id:
            return None  # made with another model (a changed config): not this one's
        return self.store.state_path(voice, engine.language)

    def states_for(self, engine) -> dict[str, Path]:
        """Name -> state file of every voice `engine` can speak."""
        with self._lock:
            voices = list(self._voices.values())
        found = {}
        for voice in voices:
            path = self._state_path(voice, engine)
            if path is not None:
                found[voice.name] = path
        return found

    # -- making ----------------------------------------------------------------------------
    def create(self, name: str, data: bytes, consent: str | None = None) -> CustomVoice:
        """Make, store and register a voice; a refusal leaves nothing behind."""
        if not isinstance(name, str) or not NAME.fullmatch(name) or VOICE_ID.fullmatch(name):
            raise Refusal(BAD_REQUEST, "'name' must be 1 to 64 letters, digits, '-' or '_' (not a voice id).",
                          code="invalid_value", param="name")
        if consent is not None and (not isinstance(consent, str) or len(consent) > MAX_CONSENT_CHARS):
            raise Refusal(BAD_REQUEST, f"'consent' must be text of at most {MAX_CONSENT_CHARS} characters.",
                          code="invalid_value", param="consent")
        if not self.settings.voice_cloning:
            raise Refusal(FORBIDDEN, "Voice cloning is off on this server (TTS_VOICE_CLONING=off).",
                          code="voice_cloning_disabled")
        engines = [engine for engine in self.engines() if engine.is_loaded and engine.clones_voices]
        if not engines:
            if not self.engines():
                raise Refusal(BAD_REQUEST, "No language is served by Pocket TTS here, the only model whose voice "
                                           "cloning Kyutai released.", code="voice_cloning_unavailable")
            raise Refusal(UNAVAILABLE, "No Pocket TTS model that can clone a voice is loaded yet; try again shortly.",
                          retry_after=10, code="model_loading")
        self.refresh(force=True)
        with self._lock:
            self._check_name(name)
            if len(self._voices) + len(self._reserved) >= self.settings.voice_max_count:
                raise Refusal(CONFLICT, f"The voice library is full ({self.settings.voice_max_count} voices); "
                                        "delete one first.", code="voice_limit_reached")
            self._reserved.add(name)
        try:
            sample = prepared_from_upload(data, self.settings.voice_prompt_seconds)
            voice = CustomVoice(id=f"voice_{secrets.token_hex(12)}", name=name, created_at=int(time.time()),
                                consent=consent, recording=self.settings.voice_keep_recording)
            handoff = _Handoff()
            future = self._encoder.submit(self._make, voice, sample, engines, handoff)
            try:
                states = future.result(timeout=self.settings.request_timeout)
            except concurrent.futures.TimeoutError:
                if handoff.abandon():
                    raise Refusal(TIMED_OUT, "Making the voice took too long; try again later.", retry_after=10,
                                  code="timeout") from None
                states = future.result()  # already in place on disk: it finishes now, and the client gets it
            with self._lock:
                for engine, path, state in states:
                    engine.add_voice_state(path, state)  # before the name is known: no request finds it without
                self._voices[voice.id] = voice
        finally:
            with self._lock:
                self._reserved.discard(name)
        logger.info("custom voice %s (%s) made for %s", voice.id, log_safe(name), ",".join(sorted(voice.states)))
        return voice

    def _check_name(self, name: str) -> None:
        taken = name in self._reserved or any(v.name == name for v in self._voices.values())
        if not taken:
            for language, route in self.router.routes.items():
                try:
                    taken = taken or name in route.engine.voices(language)[0]
                except Exception:
                    continue
        if taken:
            raise Refusal(CONFLICT, f"A voice named {name!r} already exists; choose another name or delete it first.",
                          code="voice_name_taken", param="name")

    def _make(self, voice: CustomVoice, sample: PreparedSample, engines: list, handoff: _Handoff) -> list:
        """In the encoding thread: one state per engine, then the voice written whole into the store."""
        try:
            started = time.perf_counter()
            states = [(engine, engine.clone_state(sample.samples)) for engine in engines]
            encoded = time.perf_counter() - started
            if handoff.abandoned:
                return []
            writers = [(engine.language, engine.model_id,
                        lambda path, engine=engine, state=state: engine.write_voice_state(state, path))
                       for engine, state in states]
            recording = sample.wav() if voice.recording else None
            # The client was told it failed once the waiter gave up: then it must not appear.
            if not self.store.write_new(voice, writers, recording, handoff.commit):
                return []
            logger.info("voice %s encoded in %.2f s (%.1f s of speech)", voice.id, encoded, sample.speech_seconds)
            return [(engine, self.store.state_path(voice, engine.language), state) for engine, state in states]
        finally:
            release_helpers()

    def catch_up(self, engine) -> None:
        """At `engine`'s load: the kept recordings of voices it has no state for, encoded now (in its loading thread)."""
        if not engine.clones_voices:
            return
        with self._lock:
            missing = [v for v in self._voices.values() if v.recording and self._state_path(v, engine) is None]
        for voice in missing:
            try:
                state = engine.clone_state(PreparedSample(self.store.recording(voice), 0.0, 0.0).samples)
                file = self.store.add_state(voice, engine.language,
                                            lambda path: engine.write_voice_state(state, path))
                with self._lock:
                    voice.states[engine.language] = {"model": engine.model_id, "file": file}
                    self.store.write_meta(voice)
                engine.add_voice_state(self.store.state_path(voice, engine.language), state)
                logger.info("voice %s made for %s from its kept recording", voice.id, engine.language)
            except Exception as exc:
                logger.warning("voice %s not made for %s: %s", voice.id, engine.language, type(exc).__name__)

    # -- deleting --------------------------------------------------------------------------
    def delete(self, voice_id: str) -> bool:
        """Forget a voice and remove its folder; False when there is none with this id."""
        self.refresh(force=True)
        with self._lock:
            voice = self._voices.pop(voice_id, None) if VOICE_ID.fullmatch(voice_id or "") else None
            if voice is None:
                return False
            try:
                trash = self.store.take_away(voice.id)
            except OSError:
                self._voices[voice.id] = voice
                raise
            if trash is None:
                return True  # another replica deleted it first
        shutil.rmtree(trash, ignore_errors=True)
        logger.info("custom voice %s deleted", voice.id)
        return True

    def close(self) -> None:
        self._encoder.shutdown(wait=False, cancel_futures=True)

"""One client's text stream turned into speech: the core every streaming protocol adapts.

A protocol adapter (Kyutai's WebSocket protocol, the JSON WebSocket, the POST form, Wyoming)
parses its own messages and maps them to this small API::

    session = Session(route, settings, listener, slots=session_slots(app), voice="name")
    session.start()            # capacity and voice; raises CapacityError / SessionError
    session.set_voice_embedding(array)   # optional, before the first text (DSM only)
    session.add_text("Hello ")           # any number of times; raises SessionError
    session.end()              # no more text: the rest is spoken, then on_done
    session.cancel()           # the client left: its jobs are dropped at the next step
    session.wait(timeout)      # until the last event was delivered

The listener's callbacks run in the session's own thread, in order: `on_audio(pcm)` (float32 at
the engine's rate, in `frame_samples` frames when set), `on_word(word, start_s, stop_s)`,
then exactly one of `on_done(duration_s)` or `on_error(message)`; the message is safe to show.

With `clean=True` an LLM's Markdown is made speakable as over HTTP, each sentence once it is
complete (`complete_sentences`). Nothing here needs a Flask request: any thread may drive a session.

Text is checked and prepared in the caller's thread as it arrives, never in a model worker:
pause tags (`<break time="1.5s"/>`) split the stream, and each pause is exact silence put between
the pieces. On DSM the words of each stretch between pauses feed one streaming job, which waits
for words rather than inventing them. On Pocket TTS, which needs whole texts, words collect into
clauses spoken as soon as each is complete: at a sentence end, or when no new word arrived for
`TTS_SESSION_CLAUSE_PAUSE`; each word's time is estimated from its clause's audio length, since
Pocket TTS reports none. Sessions hold at most a share of each engine's slots
(`TTS_SESSION_SLOT_SHARE`), so that HTTP requests always find room, and a job's time limit
(`TTS_REQUEST_TIMEOUT`) counts only its idle time: it runs from its last word or audio, not from
the start of a slow LLM answer.

Behaviour follows Kyutai's moshi-server (`rust/moshi-server/src/py_module.rs` in
kyutai-labs/moshi: one channel per connection reserved up front, "no free channels" when none is
left, an unknown voice falling back to the default one, an empty end of stream closing at once).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter, deque
from typing import Callable, Protocol

import numpy as np

from .engines.base import NothingToSayError, RequestError, SynthesisRequest, UnknownVoiceError
from .pauses import split_breaks, unfinished_tag
from .routing import Route, Router, UnsupportedLanguageError, normalize_language
from .scheduler import EngineUnavailableError, Job, QueueFullError
from .synthesis import check_text, prepare_text
from .text import split_sentences

logger = logging.getLogger(__name__)

# A clause ends after one of these marks followed by a space (Pocket TTS sessions).
_CLAUSE_END = re.compile(r"[.!?…;:][\"')\]»”’]*\s")
# A clause with no end in sight is cut at a space once it is this long.
MAX_CLAUSE_CHARS = 400
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")


class SessionError(Exception):
    """The session cannot go on; the message is safe to send to the client."""


class CapacityError(SessionError):
    """Every slot this engine gives to sessions is taken (moshi-server's words)."""

    def __init__(self) -> None:
        super().__init__("no free channels")


class Listener(Protocol):
    def on_audio(self, pcm: np.ndarray) -> None: ...
    def on_word(self, word: str, start: float, stop: float) -> None: ...
    def on_done(self, duration: float) -> None: ...
    def on_error(self, message: str) -> None: ...


class SessionSlots:
    """How many sessions each engine holds at once: a share of its slots, at least one."""

    def __init__(self, share: float):
        self.share = share
        self._used: Counter[str] = Counter()
        self._lock = threading.Lock()

    def capacity(self, route: Route) -> int:
        return max(1, int(route.engine.max_slots * self.share))

    def used(self, key: str) -> int:
        return self._used[key]

    def acquire(self, route: Route) -> bool:
        with self._lock:
            if self._used[route.key] >= self.capacity(route):
                return False
            self._used[route.key] += 1
            return True

    def release(self, route: Route) -> None:
        with self._lock:
            self._used[route.key] = max(0, self._used[route.key] - 1)


_slots_lock = threading.Lock()


def session_slots(app) -> SessionSlots:
    """The app's one SessionSlots, made on first use."""
    with _slots_lock:
        slots = app.extensions.get("tts_session_slots")
        if slots is None:
            slots = app.extensions["tts_session_slots"] = SessionSlots(app.extensions["tts_settings"].session_slot_share)
        return slots


def _voice_languages(router: Router, voice: str) -> list[str]:
    """The routed languages whose engine knows `voice`; a Kyutai repository voice means DSM's languages."""
    from .engines.dsm import DsmEngine  # no torch at import: only the module

    known = []
    for language, route in sorted(router.routes.items()):
        try:
            names, _ = route.engine.voices(language)
        except Exception:  # a voice listing that fails says nothing about this voice
            names = []
        if voice in names:
            known.append(language)
    if not known and DsmEngine.looks_like_repo_voice(voice):
        known = [lang for lang in router.settings.dsm_languages if lang in router.routes]
    return known


def choose_route(router: Router, language: str | None, voice: str | None) -> Route:
    """A session's language: the one asked for, else the voice's own, else the service's default."""
    default = router.settings.default_language
    if language is None and voice:
        languages = _voice_languages(router, voice)
        if languages:
            language = default if default in languages else languages[0]
    try:
        return router.route(normalize_language(language or default))
    except UnsupportedLanguageError as exc:
        raise SessionError(str(exc)) from None


def _refusal(exc: Exception) -> SessionError:
    """What the client is told when the engine refuses: the reason, without local paths."""
    from .hub import ModelDownloadError
    from .security import redact_paths

    if isinstance(exc, (QueueFullError, EngineUnavailableError)):
        return SessionError(redact_paths(f"speech model unavailable: {exc}"))
    if isinstance(exc, RequestError):
        return SessionError(str(exc))
    if isinstance(exc, ModelDownloadError):
        return SessionError(redact_paths(f"voice unavailable: {exc}"))
    raise exc


def complete_sentences(buffer: str) -> tuple[list[str], str]:
    """Split streamed text into the sentences known to be complete and the rest still being written.

    A sentence is complete at a paragraph break (outside a code fence), or at . ! ? … followed by
    whitespace when the service's own sentence rules agree (an abbreviation such as "Dr. " is not an end)."""
    sentences: list[str] = []
    while True:
        match = _PARAGRAPH.search(buffer)
        if match is None or buffer[:match.start()].count("```") % 2:
            break
        sentences += split_sentences(buffer[:match.start()])
        buffer = buffer[match.end():]
    pieces = split_sentences(buffer)
    if not pieces:
        return sentences, buffer
    *done, last = pieces
    rest = buffer[buffer.rfind(last):]
    # The last piece is complete when whitespace follows it and a following capital would start a new sentence.
    if buffer[-1:].isspace() and len(split_sentences(last + " X")) > 1:
        done.append(last)
        rest = ""
    return sentences + done, rest


class _Speech:
    """Words for one DSM streaming job, fed before and after the job is queued."""

    def __init__(self, request: SynthesisRequest):
        self.request = request
        self.job: Job | None = None
        self.early: list[object] = []
        self._timeout = 0.0
        self.closed = False
        self.lock = threading.Lock()

    def feed(self, entries: object) -> None:
        with self.lock:
            if self.job is not None:
                self.job.feed_text(entries)
                self._renew()
            else:
                self.early.append(entries)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            if self.job is not None:
                self.job.end_text()
                self._renew()

    def _renew(self) -> None:
        """The job's time limit runs from the last text it received, not from a slow LLM's start."""
        self.job.deadline = max(self.job.deadline, time.monotonic() + self._timeout)

    def submit(self, route: Route) -> Job:
        with self.lock:
            self._timeout = route.scheduler.timeout
            self.job = route.scheduler.submit(self.request)
            for entries in self.early:
                self.job.feed_text(entries)
            self.early.clear()
            if self.closed:
                self.job.end_text()
            return self.job


class _Clause:
    """A complete clause for Pocket TTS, prepared when it was complete."""

    def __init__(self, request: SynthesisRequest, words: list[str]):
        self.request = request
        self.words = words


class Session:
    """A stream of text in, audio and word times out; see the module docstring for the API."""

    def __init__(self, route: Route, settings, listener: Listener, *, slots: SessionSlots | None = None,
                 voice: str | None = None, voice_fallback: bool = True, frame_samples: int | None = None,
                 clean: bool = False):
        self.route = route
        self.settings = settings
        self.listener = listener
        self.slots = slots
        self.voice = voice
        self.voice_fallback = voice_fallback
        self.embedding = None
        self.frame_samples = frame_samples
        self.clean = clean  # an LLM's Markdown is made speakable, a whole sentence at a time
        self._raw = ""  # clean: the sentence still being written
        self.sample_rate = route.engine.sample_rate
        self.streams_text = route.key == "dsm"
        self.ended = False
        self.cancelled = False
        self.started_text = False
        self.chars = 0
        self.last_activity = time.monotonic()
        self._held = False
        self._pending = ""  # text not handed out yet: it ends in an unfinished pause tag
        self._pending_clause = ""  # Pocket TTS: words of a clause that has not ended yet
        self._clause_order = threading.Lock()  # clauses leave in order, whichever thread completes them
        self._last_text = time.monotonic()
        self._segments: deque = deque()  # _Speech, _Clause, or a pause in seconds
        self._speech: _Speech | None = None
        self._jobs: list[Job] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._carry = np.zeros(0, dtype=np.float32)
        self._samples = 0  # audio sent so far, pauses included
        self.truncated = False

    # -- the API -----------------------------------------------------------------------------
    def start(self) -> None:
        """Take a session slot and check the voice; nothing is generated until text arrives."""
        if self.slots is not None:
            if not self.slots.acquire(self.route):
                raise CapacityError()
            self._held = True
        try:
            self.voice = self._resolve_voice(self.voice)
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._pump, daemon=True, name="tts-session")
        self._thread.start()

    def set_voice_embedding(self, embedding) -> bool:
        """A raw DSM speaker embedding instead of the voice; ignored after text or when unusable."""
        self.touch()
        if self.started_text:
            logger.info("a voice sent after the first text was ignored, as moshi-server does")
            return False
        if not self.streams_text:
            logger.warning("voice embeddings are for Kyutai DSM TTS; %s keeps its voice", self.route.key)
            return False
        probe = SynthesisRequest(text="", language=self.route.language, voice_embedding=embedding,
                                 streaming_text=True)
        try:
            self.route.scheduler.prepare(probe)
        except (RequestError, ValueError) as exc:
            logger.warning("voice embedding refused (%s); using the default voice", exc)
            return False
        except Exception as exc:
            raise _refusal(exc) from None
        self.embedding, self.voice = embedding, None
        return True

    def add_text(self, text: str) -> None:
        """More text; whatever is complete is prepared now, in the caller's thread."""
        self.touch()
        if self.ended:
            raise SessionError("text arrived after the end of the text")
        if not isinstance(text, str):
            raise SessionError("'text' must be a string")
        self.chars += len(text)
        if self.chars > self.settings.session_max_chars:
            raise SessionError(f"the session sent more than {self.settings.session_max_chars} characters "
                               "of text; start a new session")
        try:
            text = check_text(text)
        except RequestError as exc:
            raise SessionError(str(exc)) from None
        if text.strip():
            self.started_text = True
        if self.clean:
            text = self._clean_sentences(text, final=False)
        with self._cond:
            self._pending += text
            self._last_text = time.monotonic()
        self._release_text(final=False)

    def end(self) -> None:
        """No more text will come: speak what is left, then finish."""
        self.touch()
        if self.ended:
            raise SessionError("the end of the text was already sent")
        if self.clean:
            rest = self._clean_sentences("", final=True)
            with self._cond:
                self._pending += rest
        self._release_text(final=True)
        if not self.streams_text:
            self._feed_clauses("", flush=True)
        with self._cond:
            self.ended = True
            if self._speech is not None:
                self._speech.close()
                self._speech = None
            self._cond.notify_all()

    def cancel(self) -> None:
        """The client left or broke the protocol: drop every job, free the slot."""
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()
            jobs = list(self._jobs)
            segments = list(self._segments)
        for job in jobs:
            job.cancel()
        for segment in segments:
            if isinstance(segment, _Speech) and segment.job is not None:
                segment.job.cancel()
        if self._thread is None:
            self._release()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    @property
    def finished(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    @property
    def duration(self) -> float:
        return self._samples / self.sample_rate

    # -- voices --------------------------------------------------------------------------------
    def _resolve_voice(self, voice: str | None) -> str | None:
        if not voice:
            return None
        from .hub import ModelDownloadError

        try:
            if self.streams_text:
                self.route.scheduler.prepare(SynthesisRequest(text="", language=self.route.language, voice=voice,
                                                              streaming_text=True))
            else:
                names, _ = self.route.engine.voices(self.route.language)
                if voice not in names:
                    raise UnknownVoiceError(voice, names)
        except (UnknownVoiceError, ModelDownloadError) as exc:
            if not self.voice_fallback:
                raise SessionError(str(exc)) from None
            logger.warning("voice %r is not available for %s (%s); using the default voice",
                           voice[:100], self.route.language, str(exc)[:200])
            return None
        except Exception as exc:
            raise _refusal(exc) from None
        return voice

    def _request(self, text: str, **extra) -> SynthesisRequest:
        remaining = self.settings.max_audio_seconds - self.duration
        return SynthesisRequest(text=text, language=self.route.language, voice=self.voice,
                                voice_embedding=self.embedding, max_audio_seconds=max(remaining, 0.08), **extra)

    # -- text, in the caller's thread --------------------------------------------------------
    def _clean_sentences(self, text: str, final: bool) -> str:
        """Markdown needs whole sentences to be read right: the complete ones cleaned now, the rest later."""
        self._raw += text
        if final:
            done, self._raw = [self._raw], ""
        else:
            done, self._raw = complete_sentences(self._raw)
        cleaned = (prepare_text(sentence, self.route.language, True) for sentence in done)
        return "".join(f"{sentence} " for sentence in cleaned if sentence)

    def _release_text(self, final: bool) -> None:
        """Hand out the text that is complete: up to an unfinished tag, and for Pocket whole clauses."""
        with self._cond:
            text = self._pending
            cut = unfinished_tag(text)
            ready, self._pending = (text[:cut], text[cut:]) if cut >= 0 else (text, "")
            if final and self._pending:
                logger.info("ignored a pause tag that never ended")
                self._pending = ""
        if not ready:
            return
        for words, pause in split_breaks(ready):
            if self.streams_text:
                self._feed_dsm(words)
                if pause:
                    self._close_speech()
            else:
                self._feed_clauses(words, flush=bool(pause) or final)
            if pause:
                self._push(float(pause))

    def _feed_dsm(self, words: str) -> None:
        if not words.strip():
            return
        speech = self._speech
        try:
            if speech is None:
                request = self._request("", streaming_text=True)
                self.route.scheduler.prepare(request)
                speech = _Speech(request)
            entries = self.route.engine.prepare_piece(speech.request, words)
        except Exception as exc:
            raise _refusal(exc) from None
        if not entries:
            return
        speech.feed(entries)
        if self._speech is None:
            self._speech = speech
            self._push(speech)

    def _close_speech(self) -> None:
        if self._speech is not None:
            self._speech.close()
            self._speech = None

    def _feed_clauses(self, words: str, flush: bool) -> None:
        """Pocket TTS: complete clauses go out now; the rest waits for more words or the clause pause."""
        with self._clause_order:
            self._complete_clauses(words, flush)

    def _complete_clauses(self, words: str, flush: bool) -> None:
        with self._cond:
            buffer = self._pending_clause + words
            cut = 0
            for match in _CLAUSE_END.finditer(buffer, max(0, len(self._pending_clause) - 3)):
                cut = match.end()
            if len(buffer) - cut > MAX_CLAUSE_CHARS:
                space = buffer.rfind(" ", cut, len(buffer) - 1)
                cut = space + 1 if space > cut else len(buffer)
            if flush:
                cut = len(buffer)
            complete, self._pending_clause = buffer[:cut], buffer[cut:]
        if complete.strip():
            self._speak_clause(complete)

    def _speak_clause(self, text: str) -> None:
        request = self._request(" ".join(text.split()))
        try:
            self.route.scheduler.prepare(request)
        except NothingToSayError:
            return  # marks only: nothing to say, nothing wrong
        except Exception as exc:
            raise _refusal(exc) from None
        self._push(_Clause(request, text.split()))

    def _push(self, segment) -> None:
        with self._cond:
            self._segments.append(segment)
            self._cond.notify_all()

    # -- audio, in the session's thread ------------------------------------------------------
    def _next_segment(self):
        """The next thing to speak; None at the end. Pocket's words waiting too long become a clause."""
        while True:
            with self._cond:
                if self.cancelled:
                    return None
                if self._segments:
                    return self._segments.popleft()
                if self.ended:
                    return None
                idle = time.monotonic() - self._last_text
                pause = self.settings.session_clause_pause
                waiting = not self.streams_text and self._pending_clause.strip() and idle >= pause
                if not waiting:
                    self._cond.wait(max(pause - idle, 0.05) if self._pending_clause.strip() else 0.5)
                    continue
            self._feed_clauses("", flush=True)

    def _pump(self) -> None:
        try:
            while not self.truncated:
                segment = self._next_segment()
                if segment is None:
                    break
                if isinstance(segment, float):
                    self._silence(segment)
                elif isinstance(segment, _Speech):
                    self._relay(segment.submit(self.route), None)
                else:
                    self._relay(self.route.scheduler.submit(segment.request), segment.words)
            if self.cancelled:
                return
            self._flush_frames()
            self.listener.on_done(self.duration)
        except SessionError as exc:
            self.listener.on_error(str(exc))
        except (QueueFullError, EngineUnavailableError, RequestError) as exc:
            self.listener.on_error(str(_refusal(exc)))
        except TimeoutError:
            if not self.cancelled:
                self.listener.on_error("synthesis timed out: no progress for the request timeout")
        except Exception as exc:
            if not self.cancelled:
                logger.warning("text stream failed: %s", exc)
                self.listener.on_error(f"synthesis failed: {type(exc).__name__}")
        finally:
            self._release()
            with self._cond:
                jobs = list(self._jobs)
            for job in jobs:
                job.cancel()

    def _release(self) -> None:
        if self._held and self.slots is not None:
            self._held = False
            self.slots.release(self.route)

    def _relay(self, job: Job, words: list[str] | None) -> None:
        """Forward a job's audio; DSM's words as each one's end is known, Pocket's estimated at the end."""
        with self._cond:
            self._jobs.append(job)
        if self.cancelled:
            job.cancel()
            return
        offset = self.duration
        held = None
        samples = 0
        for kind, payload in job.events():
            # A session's job is timed out only when idle: no new words and no new audio.
            job.deadline = max(job.deadline, time.monotonic() + self.route.scheduler.timeout)
            if kind == "audio":
                samples += len(payload)
                self._emit(payload)
            elif kind == "word":
                if held is not None:
                    self.listener.on_word(held.word, offset + held.start, offset + payload.start)
                held = payload
        duration = samples / self.sample_rate
        if held is not None:
            self.listener.on_word(held.word, offset + held.start, offset + max(duration, held.start))
        if words:
            self._estimate_words(words, offset, duration)
        self.truncated = self.truncated or job.truncated
        with self._cond:
            self._jobs.remove(job)

    def _estimate_words(self, words: list[str], offset: float, duration: float) -> None:
        """Word times for an engine that reports none: the clause's length shared by word length."""
        weights = [len(word) + 1 for word in words]
        total = sum(weights)
        start = offset
        for word, weight in zip(words, weights):
            stop = start + duration * weight / total
            self.listener.on_word(word, round(start, 3), round(stop, 3))
            start = stop

    def _silence(self, seconds: float) -> None:
        room = self.settings.max_audio_seconds - self.duration
        if room <= 0:
            self.truncated = True
            return
        self._emit(np.zeros(int(round(min(seconds, room) * self.sample_rate)), dtype=np.float32))

    def _emit(self, pcm: np.ndarray) -> None:
        self._samples += len(pcm)
        if not self.frame_samples:
            if len(pcm):
                self.listener.on_audio(pcm)
            return
        self._carry = np.concatenate([self._carry, pcm]) if len(self._carry) else pcm
        size = self.frame_samples
        whole = len(self._carry) // size * size
        for start in range(0, whole, size):
            self.listener.on_audio(self._carry[start:start + size])
        self._carry = self._carry[whole:]

    def _flush_frames(self) -> None:
        """The last partial frame, padded with silence to a whole frame."""
        if self.frame_samples and len(self._carry):
            pad = self.frame_samples - len(self._carry)
            self._samples += pad
            self.listener.on_audio(np.concatenate([self._carry, np.zeros(pad, dtype=np.float32)]))
            self._carry = np.zeros(0, dtype=np.float32)


class CallbackListener:
    """A Listener made of four functions (the adapters' usual case)."""

    def __init__(self, on_audio: Callable, on_word: Callable, on_done: Callable, on_error: Callable):
        self.on_audio, self.on_word, self.on_done, self.on_error = on_audio, on_word, on_done, on_error

"""A speech session: a whole text, or a stream of text, turned into tagged events.

Every surface speaks through this one class::

    session = Session(service, SpeechRequest(text=None, language="es", voice=None), on_event)
    session.start()            # language, voice, capacity; a whole text is checked and queued here
    session.add_text("Hola ")  # streamed text: any number of times
    session.end()              # no more text: the rest is spoken, then Done
    session.cancel()           # the client left: its jobs are dropped at the next step

`start`, `add_text` and `end` raise a `Refusal` for what cannot be spoken, before any audio.
`on_event` is called from the session's own thread, in order: `Audio` and `Word` events, then
exactly one `Done` or `Error`. A whole text is a session that ends at once: its pieces are all
queued by `start` (on an engine that generates pieces side by side, in one batch) and spoken in
order, joined by short pauses.

Text is checked and prepared in the caller's thread as it arrives, never in a model worker:
pause tags (`<break time="1.5s"/>`) split the text, and each pause is exact silence put between
the pieces. On an engine that takes streamed text (DSM) the words of each stretch between pauses
feed one job, which waits for words rather than inventing them. On the others, which need whole
texts, words collect into clauses spoken as soon as each is complete: at a sentence end (the
session's first clause already at a comma: `clauses.py`), or
when no new word arrived for `TTS_SESSION_CLAUSE_PAUSE`; each word's time is then read from the
model's attention where the engine can (`Capabilities.word_times`), else estimated from its clause's
audio length. Nothing without a letter or a digit is ever spoken: a stream that held
only marks or emoji ends with a `nothing_to_say` error. Streamed sessions hold at most a share of
each engine's slots (`TTS_SESSION_SLOT_SHARE`), so that whole texts always find room, and a job's
time limit (`TTS_REQUEST_TIMEOUT`) counts only its idle time.

Behaviour follows Kyutai's moshi-server (`rust/moshi-server/src/py_module.rs` in
kyutai-labs/moshi: one channel per connection reserved up front, "no free channels" when none is
left, an empty end of stream closing at once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from ..engines.base import NothingToSayError, SynthesisRequest, UnknownVoiceError
from ..engines.hub import ModelDownloadError
from ..text.pauses import MAX_BREAK_SECONDS, split_breaks, unfinished_tag
from ..routing import Route
from ..scheduler import Job
from ..text.markdown import group_sentences, split_sentences
from ..text.markup import unfinished_markup
from ..text.written import Transcript
from .clauses import ClauseCutter
from .events import Audio, Done, Error, Event, Word
from .request import SpeechRequest
from .failures import as_refusal
from .refusals import BAD_REQUEST, BUSY, TOO_LARGE, Refusal, nothing_to_say
from ..text.checks import (AS_WRITTEN, CONTEXT_CHARS, Reading, check_length, check_text, check_whole_text,
                           complete_sentences, figures_cut, has_speech, prepare_text, speech_parts)
from .voices import FALLBACK, Resolved, resolved_for

logger = logging.getLogger(__name__)

# Silence between the pieces of one text that were generated side by side.
PAUSE_SECONDS = 0.15
class _Speech:
    """Words for one streaming-text job, fed before and after the job is queued."""

    def __init__(self, request: SynthesisRequest):
        self.request = request
        self.job: Job | None = None
        self.early: list[object] = []
        self._timeout = 0.0
        self.closed = False
        self.pushed = False  # handed to the pump: it holds words to say
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


class _Piece:
    """A prepared text (a clause, or a piece of a whole text), queued now or when its turn comes."""

    def __init__(self, request: SynthesisRequest, words: list[str] | None):
        self.request = request
        self.words = words  # for engines without word times: each word's time is estimated
        self.job: Job | None = None


def reading_for(service, request: SpeechRequest) -> Reading:
    """How this request's figures are read: its own "normalize", else the service's, with its lexicon."""
    normalize = service.settings.normalize if request.normalize is None else request.normalize
    return Reading(normalize, service.lexicon) if normalize else AS_WRITTEN


class Session:
    """Text in, tagged events out; see the module docstring."""

    def __init__(self, service, request: SpeechRequest, on_event: Callable[[Event], None], *,
                 frame_samples: int | None = None):
        self.service = service
        self.settings = service.settings
        self.request = request
        self.on_event = on_event
        self.frame_samples = frame_samples
        self.resolved: Resolved | None = None
        self.route: Route | None = None
        self.voice: str | None = None
        self.embedding = None
        self.whole = not request.streamed
        self.reading = reading_for(service, request)
        self.max_audio_seconds = request.max_audio_seconds or self.settings.max_audio_seconds
        self.ended = False
        self.cancelled = False
        self.started_text = False
        self.spoke = False  # a segment with words to say was queued
        self.chars = 0
        self.last_activity = time.monotonic()
        self.pieces: list[float] = []  # the duration of each spoken piece, in order
        self.truncated = False
        self._held = False
        self._raw = ""  # clean: the sentence still being written
        self._pending = ""  # text not handed out yet: it ends in an unfinished pause tag
        self._clauses = ClauseCutter()
        self._read = ""  # the stream's text read last (as written), the context of what comes next
        self.transcript = Transcript()  # the words to be spoken, each with what it reads as written
        self._raw_lock = threading.Lock()  # `_raw` is read by the caller's thread and, at a clause pause, the session's
        self._clause_order = threading.Lock()  # clauses leave in order, whichever thread completes them
        self._last_text = time.monotonic()
        self._segments: deque = deque()  # _Speech, _Piece, or a pause in seconds
        self._speech: _Speech | None = None
        self._jobs: list[Job] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._carry = np.zeros(0, dtype=np.float32)
        self._samples = 0  # audio sent so far, pauses included
        self._told_end = False  # Done or Error was sent: nothing more is

    # -- the API -----------------------------------------------------------------------------
    def start(self) -> None:
        """Resolve language and voice, take a slot; a whole text is checked and queued now."""
        request = self.request
        text = None
        if self.whole:
            text = request.text if request.checked else check_whole_text(request.text, self.settings.max_chars,
                                                                         request.text_field)
        self.resolved = resolved_for(self.service.router, request)
        self.route, self.voice = self.resolved.route, self.resolved.voice
        self.sample_rate = self.route.engine.sample_rate
        self.streams_text = self.route.engine.capabilities.streams_text and not self.whole
        try:
            self.route.scheduler.check_available()
        except Exception as exc:
            raise as_refusal(exc) from None
        if not self.whole and self.service.slots is not None:
            if not self.service.slots.acquire(self.route):
                raise Refusal(BUSY, "no free channels", retry_after=2)
            self._held = True
        try:
            if self.voice and self.route.engine.capabilities.streams_text:
                self._check_voice()
            if self.whole:
                replaced: list = []
                text = prepare_text(text, self.route.language, request.clean, self.reading, replaced=replaced)
                self.transcript.add(text, replaced)
                self._plan_whole(text)
        except BaseException:
            self._release()
            self._cancel_jobs()
            raise
        self._thread = threading.Thread(target=self._pump, daemon=True, name="tts-session")
        self._thread.start()

    def set_voice_embedding(self, embedding) -> bool:
        """A raw speaker embedding instead of the voice (engines that stream text); ignored when unusable."""
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
        except ValueError as exc:
            logger.warning("voice embedding refused (%s); using the default voice", exc)
            return False
        except Exception as exc:
            raise as_refusal(exc) from None
        self.embedding, self.voice = embedding, None
        return True

    def add_text(self, text: str) -> None:
        """More text; whatever is complete is prepared now, in the caller's thread."""
        self.touch()
        if self.whole or self.ended:
            raise Refusal(BAD_REQUEST, "text arrived after the end of the text")
        if not isinstance(text, str):
            raise Refusal(BAD_REQUEST, "'text' must be a string")
        check_length(text, self.settings.max_chars)
        self.chars += len(text)
        if self.chars > self.settings.session_max_chars:
            limit = self.settings.session_max_chars
            raise Refusal(TOO_LARGE, f"the streamed text has more than {limit} characters; the limit is {limit} "
                                     "per session: start a new session", limit=limit)
        text = check_text(text)
        if text.strip():
            self.started_text = True
        if self.request.clean or self.reading.normalize:
            with self._raw_lock:
                text = self._clean_sentences(text, final=False)
        with self._cond:
            self._pending += text
            self._last_text = time.monotonic()
        self._release_text(final=False)

    def end(self) -> None:
        """No more text will come: speak what is left, then finish."""
        self.touch()
        if self.ended:
            raise Refusal(BAD_REQUEST, "the end of the text was already sent")
        if self.request.clean or self.reading.normalize:
            self._release_held(final=True)
        else:
            self._release_text(final=True)
        if not self.streams_text:
            self._feed_clauses("", flush=True)
        with self._cond:
            self.ended = True
            self._close_speech()
            self._cond.notify_all()

    def cancel(self) -> None:
        """The client left or broke the protocol: drop every job, free the slot."""
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()
        self._cancel_jobs()
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

    @property
    def word_times(self) -> str:
        """"aligned" when the engine reports when each word is spoken, "estimated" when shared out by length."""
        return "aligned" if self.route.engine.capabilities.word_times else "estimated"

    @property
    def voice_name(self) -> str | None:
        """The voice that speaks (the default one's name when none was asked for)."""
        return self.voice or self.route.engine.voices(self.route.language)[1]

    # -- voices and requests -----------------------------------------------------------------
    def _check_voice(self) -> None:
        """A voice that must be fetched (a Kyutai repository voice) is fetched now, not mid-stream."""
        try:
            self.route.scheduler.prepare(SynthesisRequest(text="", language=self.route.language, voice=self.voice,
                                                          streaming_text=True))
        except (UnknownVoiceError, ModelDownloadError) as exc:
            if self.request.voice_policy != FALLBACK:
                raise as_refusal(exc) from None
            logger.warning("voice %r is not available for %s (%s); using the default voice",
                           self.voice[:100], self.route.language, str(exc)[:200])
            self.voice = None
        except Exception as exc:
            raise as_refusal(exc) from None

    def _request(self, text: str, whole: bool = False, **extra) -> SynthesisRequest:
        remaining = self.max_audio_seconds if whole else self.max_audio_seconds - self.duration
        return SynthesisRequest(text=text, language=self.route.language, voice=self.voice,
                                voice_embedding=self.embedding, max_audio_seconds=max(remaining, 0.08),
                                listening=self.request.listening, background=self.request.background, **extra)

    def _prepared(self, text: str, whole: bool = False) -> SynthesisRequest | None:
        """A request prepared in this thread; None when the engine finds nothing to say in it."""
        request = self._request(text, whole=whole)
        try:
            self.route.scheduler.prepare(request)
        except NothingToSayError:
            return None
        except Exception as exc:
            raise as_refusal(exc) from None
        return request

    def _plan_whole(self, text: str) -> None:
        """Every piece prepared and queued now, side by side; pauses between them in order."""
        engine = self.route.engine
        for words, pause in speech_parts(text):
            pieces = [words] if has_speech(words) else []
            # A background piece stays one row: it must leave the other rows to live requests.
            if pieces and engine.capabilities.side_by_side_pieces and not self.request.background:
                # One text takes about a quarter of the queue at most, however long its figures read
                # aloud: a few long answers arriving together must not fill it for everyone.
                pieces = group_sentences(split_sentences(words), groups=max(1, engine.max_slots // 2),
                                         max_pieces=max(1, self.settings.max_queue // 4))
            for piece in pieces:
                request = self._prepared(piece, whole=True) if has_speech(piece) else None
                if request is None:
                    continue
                if self._segments and isinstance(self._segments[-1], _Piece):
                    self._segments.append(PAUSE_SECONDS)
                self._segments.append(_Piece(request, None if engine.capabilities.word_times else piece.split()))
                self.spoke = True
            if pause:
                if self._segments and isinstance(self._segments[-1], float):
                    self._segments[-1] = min(self._segments[-1] + pause, MAX_BREAK_SECONDS)
                else:
                    self._segments.append(pause)
        if not self.spoke:
            raise nothing_to_say()
        for segment in self._segments:
            if isinstance(segment, _Piece):
                segment.job = self._submit(segment.request)
        self.ended = True

    def _submit(self, request: SynthesisRequest) -> Job:
        try:
            job = self.route.scheduler.submit(request)
        except Exception as exc:
            raise as_refusal(exc) from None
        with self._cond:
            self._jobs.append(job)
        return job

    # -- streamed text, in the caller's thread -----------------------------------------------
    def _clean_sentences(self, text: str, final: bool) -> str:
        """Markdown and figures need whole sentences to be read right: the complete ones prepared now, the
        rest later ("1", ".500", " €" arriving apart are read as "1.500 €")."""
        self._raw += text
        if final:
            done, self._raw = [self._raw], ""
        else:
            held = unfinished_markup(self._raw)  # a <say-as>/<sub> still arriving is read whole
            tag = unfinished_tag(self._raw)
            held = min(held, tag) if tag >= 0 else held
            if self.request.clean:  # Markdown is read a sentence at a time
                done, rest = complete_sentences(self._raw[:held])
            else:  # words go on as they come, but no figure is cut from its context
                cut = min(held, figures_cut(self._read, self._raw[:held], self.route.language))
                done, rest = [self._raw[:cut]] if cut else [], self._raw[:held][cut:]
            self._raw = rest + self._raw[held:]
        cleaned = []
        for part in done:
            replaced: list = []
            context = "" if self.request.clean else self._read
            cleaned.append(prepare_text(part, self.route.language, self.request.clean, self.reading, context,
                                        replaced))
            self.transcript.add(cleaned[-1], replaced)
            if not self.request.clean:
                self._read = (self._read + part)[-CONTEXT_CHARS:]
        return "".join(f"{sentence} " for sentence in cleaned if sentence)

    def _release_held(self, final: bool) -> None:
        """The words held back for their sentence or their figures, prepared now and handed out."""
        with self._raw_lock:
            rest = self._clean_sentences("", final=True)
        with self._cond:
            self._pending += rest
        self._release_text(final=final)

    def _release_text(self, final: bool) -> None:
        """Hand out the text that is complete: up to an unfinished tag, and whole clauses where needed."""
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
                self._feed_words(words)
                if pause:
                    self._close_speech()
            else:
                self._feed_clauses(words, flush=bool(pause) or final)
            if pause:
                self._push(float(pause))

    def _feed_words(self, words: str) -> None:
        """Words for the stretch's streaming job, queued once it holds something to say."""
        if not words.strip():
            return
        speech = self._speech
        try:
            if speech is None:
                request = self._request("", streaming_text=True)
                self.route.scheduler.prepare(request)
                speech = self._speech = _Speech(request)
            entries = self.route.engine.prepare_piece(speech.request, words)
        except Exception as exc:
            raise as_refusal(exc) from None
        if entries:
            speech.feed(entries)
        if not speech.pushed and has_speech(words):
            speech.pushed = True
            self._push(speech)

    def _close_speech(self) -> None:
        """The stretch is over; a stretch that never had words to say is dropped unspoken."""
        if self._speech is not None:
            self._speech.close()
            self._speech = None

    def _feed_clauses(self, words: str, flush: bool) -> None:
        """Complete clauses go out now; the rest waits for more words or the clause pause."""
        with self._clause_order:
            with self._cond:
                complete = self._clauses.feed(words, flush)
            for clause in complete:
                request = self._prepared(" ".join(clause.split()))
                if request is not None:
                    self._clauses.first_done = True
                    self._push(_Piece(request, None if self.route.engine.capabilities.word_times else clause.split()))

    def _push(self, segment) -> None:
        with self._cond:
            if not isinstance(segment, float):
                self.spoke = True
            self._segments.append(segment)
            self._cond.notify_all()

    # -- audio, in the session's thread ------------------------------------------------------
    def _next_segment(self):
        """The next thing to speak; None at the end. Words waiting too long become a clause."""
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
                held = self._clauses.pending.strip() or (not self.request.clean and self._raw.strip())
                waiting = not self.streams_text and held and idle >= pause
                if not waiting:
                    self._cond.wait(max(pause - idle, 0.05) if held else 0.5)
                    continue
            if not self.request.clean:  # the words held for their figures' sake go too
                self._release_held(final=False)
            self._feed_clauses("", flush=True)  # a refusal here ends the session in `_pump`, once

    def _pump(self) -> None:
        failed = False
        try:
            while not self.truncated:
                segment = self._next_segment()
                if segment is None:
                    break
                if isinstance(segment, float):
                    self._silence(segment)
                elif isinstance(segment, _Speech):
                    self._relay(self._track(segment.submit(self.route)), None)
                else:
                    job = segment.job or self._track(self.route.scheduler.submit(segment.request))
                    self._relay(job, segment.words)
            if self.cancelled:
                return
            if not self.spoke and self.started_text:
                failed = True
                self._send(Error(nothing_to_say()))
                return
            self._flush_frames()
            self._send(Done(self.duration, self.truncated))
        except Exception as exc:
            if not self.cancelled and not failed:
                self._send(Error(as_refusal(exc)))
        finally:
            self._release()
            self._cancel_jobs()

    def _track(self, job: Job) -> Job:
        with self._cond:
            self._jobs.append(job)
        return job

    def _cancel_jobs(self) -> None:
        with self._cond:
            jobs = list(self._jobs)
            segments = list(self._segments)
        for job in jobs:
            job.cancel()
        for segment in segments:
            if isinstance(segment, _Speech) and segment.job is not None:
                segment.job.cancel()

    def _send(self, event: Event) -> None:
        terminal = isinstance(event, (Done, Error))
        if self._told_end:
            logger.error("a second end event was dropped: %r", event)
            return
        self._told_end = terminal
        if not self.cancelled or terminal:
            self.on_event(event)

    def _release(self) -> None:
        if self._held and self.service.slots is not None:
            self._held = False
            self.service.slots.release(self.route)

    def _relay(self, job: Job, words: list[str] | None) -> None:
        """Forward a job's audio; reported words as each one's end is known, estimated ones at the end."""
        if self.cancelled:
            job.cancel()
            return
        offset = self.duration
        held = None
        samples = 0
        for kind, payload in job.events():
            # A streamed session's job is timed out only when idle: no new words and no new audio.
            if not self.whole:
                job.deadline = max(job.deadline, time.monotonic() + self.route.scheduler.timeout)
            if kind == "audio":
                samples += len(payload)
                self._emit(payload)
                if self.truncated:
                    break
            elif kind == "word":
                if held is not None:
                    self._word(held.word, offset + held.start, offset + payload.start)
                    held = None
                if payload.end is not None:  # its end is known (aligned from the model's attention)
                    self._word(payload.word, offset + payload.start, offset + payload.end)
                else:
                    held = payload
        duration = samples / self.sample_rate
        if held is not None:
            self._word(held.word, offset + held.start, offset + max(duration, held.start))
        if words:
            self._estimate_words(words, offset, duration)
        self.pieces.append(duration)
        self.truncated = self.truncated or job.truncated
        job.cancel()

    def _word(self, word: str, start: float, stop: float) -> None:
        if start < self.max_audio_seconds:
            self._send(Word(word, round(start, 3), round(min(stop, self.max_audio_seconds), 3),
                            self.transcript.written(word)))

    def _estimate_words(self, words: list[str], offset: float, duration: float) -> None:
        """Word times for an engine that reports none: the piece's length shared by word length."""
        weights = [len(word) + 1 for word in words]
        total = sum(weights)
        start = offset
        for word, weight in zip(words, weights):
            stop = start + duration * weight / total
            self._word(word, start, stop)
            start = stop

    def _silence(self, seconds: float) -> None:
        self._emit(np.zeros(int(round(seconds * self.sample_rate)), dtype=np.float32))

    def _emit(self, pcm: np.ndarray) -> None:
        room = int(self.max_audio_seconds * self.sample_rate) - self._samples
        if len(pcm) > room:
            pcm = pcm[:max(room, 0)]
            self.truncated = True
        self._samples += len(pcm)
        if not self.frame_samples:
            if len(pcm):
                self._send(Audio(pcm))
            return
        self._carry = np.concatenate([self._carry, pcm]) if len(self._carry) else pcm
        size = self.frame_samples
        whole = len(self._carry) // size * size
        for start in range(0, whole, size):
            self._send(Audio(self._carry[start:start + size]))
        self._carry = self._carry[whole:]

    def _flush_frames(self) -> None:
        """The last partial frame, padded with silence to a whole frame."""
        if self.frame_samples and len(self._carry):
            pad = self.frame_samples - len(self._carry)
            self._samples += pad
            self._send(Audio(np.concatenate([self._carry, np.zeros(pad, dtype=np.float32)])))
            self._carry = np.zeros(0, dtype=np.float32)

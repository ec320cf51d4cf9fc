"""Home Assistant's Wyoming protocol: a thin adapter from Wyoming events to the session core.

`describe` answers with every voice of every routed language. Each synthesis is one
`session.Session`: `synthesize` speaks a whole text (cleaned and checked first, as over HTTP);
`synthesize-start` / `synthesize-chunk` / `synthesize-stop` feed an LLM's answer to the session as
it is written (`add_text`, then `end`), so each sentence is spoken as soon as it is complete, all in
one `audio-start` ... `audio-stop`, then `synthesize-stopped`. The session's audio is sent as
16-bit mono PCM `audio-chunk` events; its errors become `error` events and the connection stays
usable. Routes, voices, limits and schedulers are the service's own, so Wyoming requests batch
with everything else.

Built on the `wyoming` package's own events, with one `AsyncEventHandler` per connection of its
server (`wyoming_server.py`). Text is handed to the session off the server's asyncio loop, and the session's events come back with
`call_soon_threadsafe`. Refusals are `error` events whose code comes from one table.
What a streaming server must answer (and that Home Assistant also sends the whole text as a plain
`synthesize` inside the stream, for older servers) was learned from the package's README,
`wyoming/tts.py`, Home Assistant's `components/wyoming/tts.py` and wyoming-piper's `handler.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings

with warnings.catch_warnings():
    # wyoming.audio imports the standard library's audioop, deprecated since Python 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from ..audio import encoding as audio
from ..routing import Router, normalize_language
from ..logs import public_model_id
from ..speech import refusals
from ..speech.events import Audio, Done, Error as ErrorEvent
from ..speech.refusals import Refusal
from ..speech.request import SpeechRequest
from ..speech.session import Session

logger = logging.getLogger(__name__)

KYUTAI = Attribution(name="Kyutai", url="https://kyutai.org")
PROGRAM_VERSION = "1.0.0"  # the service's API version, as in openapi.py
# A refusal's kind as the code of Wyoming's `error` event.
ERROR_CODES = {refusals.BAD_REQUEST: "bad-request", refusals.TOO_LARGE: "too-long",
               refusals.UNKNOWN_VOICE: "unknown-voice", refusals.NOTHING_TO_SAY: "nothing-to-say",
               refusals.FORBIDDEN: "forbidden", refusals.CONFLICT: "conflict",
               refusals.BUSY: "busy", refusals.UNAVAILABLE: "unavailable", refusals.TIMED_OUT: "timeout",
               refusals.INTERNAL: "internal"}


def describe(router: Router) -> Info:
    """One TTS program; a voice per (language, voice) since Home Assistant sends only the voice's name."""
    voices = []
    for language, route in sorted(router.routes.items()):
        engine = route.engine
        names, default = engine.voices(language)
        for name in names:
            voices.append(TtsVoice(
                name=voice_id(language, name), attribution=KYUTAI, installed=engine.state != "error",
                description=f"{name} (default)" if name == default else name, version=public_model_id(engine.model_id),
                languages=[language]))
    program = TtsProgram(
        name="kyutai-tts", attribution=KYUTAI, installed=True, version=PROGRAM_VERSION,
        description="Kyutai TTS: DSM for English and French, Pocket TTS for Spanish and more",
        voices=voices, supports_synthesize_streaming=True)
    return Info(tts=[program])


def voice_id(language: str, name: str) -> str:
    """The Wyoming name of a voice: unique across languages, so the name alone picks the language."""
    return f"{language}:{name}"


def speech_request(router: Router, voice, text: str | None, clean: bool, streamed: bool = False) -> SpeechRequest:
    """Wyoming's `voice` ({name, language, speaker}; speakers are ignored) as the core's request.

    `name` is a name from `describe` ("es:tiny-es"), whose prefix is its language, or a bare name
    from GET /voices, resolved by the core's one rule."""
    voice = voice if isinstance(voice, dict) else {}
    name, language = voice.get("name"), voice.get("language")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise Refusal(refusals.BAD_REQUEST, "voice 'name' must be a non-empty string; 'describe' lists the voices.")
    if language is not None and (not isinstance(language, str) or not language.strip()):
        raise Refusal(refusals.BAD_REQUEST, "voice 'language' must be a language code such as 'es' or 'en'.")
    if name:
        prefix, _, bare = name.strip().partition(":")
        if bare and normalize_language(prefix) in router.routes and (
                language is None or normalize_language(prefix) == normalize_language(language)):
            name, language = bare, prefix
    return SpeechRequest(text=text, streamed=streamed, language=language, voice=name or None, clean=clean)


def error_event(exc: BaseException) -> Error:
    """The Wyoming error for a refusal; anything unexpected is logged and said plainly."""
    if isinstance(exc, Refusal):
        language, valid, voice = (exc.details.get(key) for key in ("language", "valid_voices", "voice"))
        if exc.kind == refusals.UNKNOWN_VOICE and language and valid is not None and voice:
            # Home Assistant knows the voices by their Wyoming names.
            names = [voice_id(language, name) for name in valid]
            return Error(text=refusals.unknown_voice_message(voice, names), code=ERROR_CODES[exc.kind])
        return Error(text=exc.message, code=ERROR_CODES[exc.kind])
    logger.error("wyoming request failed: %s", exc, exc_info=exc)
    return Error(text="Internal error while synthesizing; see the server log.", code="internal")


async def _off_loop(function, *args):
    """Voice listings read files and text is prepared piece by piece: never on the loop serving every client."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


class Speech:
    """One synthesis as a Session: its events cross from the session's thread to the loop."""

    def __init__(self, handler: "WyomingHandler", request: SpeechRequest):
        self.handler, self.request = handler, request
        self.whole = not request.streamed
        self.rate = 0
        self.chars = 0
        self.samples = 0
        self.audio_started = False
        self.failed = False
        self.began = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue = asyncio.Queue()
        self._relay: asyncio.Task | None = None
        self.session = Session(handler.server.service, request, self._put)

    def _put(self, event) -> None:
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the loop is closed: the server stopped and nobody reads this any more
            pass

    async def start(self) -> None:
        """Resolve the voice and open the session (a whole text is queued); raises a Refusal."""
        await _off_loop(self.session.start)
        self.rate = self.session.sample_rate
        self.chars = len(self.request.text or "")
        self._relay = asyncio.create_task(self._forward(), name="wyoming audio")
        # A client that leaves never awaits the task: take its outcome so asyncio does not log it.
        self._relay.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def add(self, text) -> None:
        """More text, prepared off the loop; a refusal ends this synthesis with an error."""
        if self.failed:
            return
        if not isinstance(text, str):
            return await self.fail(Refusal(refusals.BAD_REQUEST, "synthesize-chunk needs 'text', a string."))
        self.chars += len(text)
        try:
            await _off_loop(self.session.add_text, text)
        except Refusal as refusal:
            await self.fail(refusal)

    async def _forward(self) -> None:
        """Audio as the session makes it, `audio-start` before the first chunk; an error said at once."""
        while True:
            event = await self._events.get()
            if isinstance(event, Audio):
                if not self.audio_started:
                    await self._audio_start()
                self.samples += len(event.pcm)
                await self.handler.write_event(AudioChunk(rate=self.rate, width=2, channels=1,
                                                          audio=audio.to_pcm16(event.pcm)).event())
            elif isinstance(event, Done):
                return
            elif isinstance(event, ErrorEvent):
                return await self.fail(event.refusal)

    async def _audio_start(self) -> None:
        self.audio_started = True
        await self.handler.write_event(AudioStart(rate=self.rate, width=2, channels=1).event())

    async def fail(self, refusal: Refusal) -> None:
        """Say why once and stop speaking; the audio stream is still ended by `finish`."""
        if self.failed:
            return
        self.failed = True
        self.cancel()
        await self.handler.write_event(error_event(refusal).event())

    async def finish(self) -> None:
        """No more text: speak the rest, then `audio-stop` (a whole text always gets its `audio-start`)."""
        if not self.failed and not self.whole:
            try:
                await _off_loop(self.session.end)
            except Refusal as refusal:
                await self.fail(refusal)
        if not self.failed and self._relay is not None:
            await self._relay
        if self.whole and not self.failed and not self.audio_started:
            await self._audio_start()
        if self.audio_started:
            await self.handler.write_event(AudioStop().event())
        logger.info("wyoming %s %s voice=%s: %d characters, %.2f s of audio in %.2f s",
                    "synthesize" if self.whole else "text stream", self.session.route.language,
                    self.session.voice or "default", self.chars, self.samples / max(self.rate, 1),
                    time.monotonic() - self.began)

    def cancel(self) -> None:
        """The client left or the synthesis failed: the session drops its jobs and frees its slot."""
        self.session.cancel()
        if self._relay is not None and not self._relay.done() and asyncio.current_task() is not self._relay:
            self._relay.cancel()


class WyomingHandler(AsyncEventHandler):
    """One Wyoming connection: events in, events out; any number of requests one after another."""

    def __init__(self, server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        super().__init__(reader, writer)
        self.server = server
        self.streaming = False  # between synthesize-start and synthesize-stop
        self.got_chunks = False
        self.stream: Speech | None = None  # None in a stream whose start was refused: the rest is only acknowledged
        self.speech: Speech | None = None  # the plain synthesize being spoken

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._dispatch(event)
        except ConnectionError:
            return False
        except Exception as exc:
            try:
                await self.write_event(error_event(exc).event())
            except ConnectionError:
                return False
        return True

    async def _dispatch(self, event: Event) -> None:
        text = event.data.get("text")
        if Describe.is_type(event.type):
            await self.write_event((await _off_loop(describe, self.server.service.router)).event())
        elif SynthesizeStart.is_type(event.type):
            await self._start_stream(event.data.get("voice"))
        elif SynthesizeChunk.is_type(event.type):
            if not self.streaming:
                raise Refusal(refusals.BAD_REQUEST,
                              "synthesize-chunk must come between synthesize-start and synthesize-stop.")
            self.got_chunks = True
            await self._stream_text(text)
        elif Synthesize.is_type(event.type):
            if not self.streaming:
                await self._synthesize(text, event.data.get("voice"))
            elif not self.got_chunks:
                # Sent inside a stream only for servers without streaming: spoken only if no chunk came.
                await self._stream_text(text)
        elif SynthesizeStop.is_type(event.type):
            if not self.streaming:
                raise Refusal(refusals.BAD_REQUEST, "synthesize-stop without synthesize-start.")
            await self._stop_stream()
        # Other events are not for a TTS server; Wyoming servers ignore what they do not handle.

    async def _start_stream(self, voice) -> None:
        if self.streaming:
            self.abort()
            await self.write_event(Error(text="synthesize-start arrived before the previous stream's "
                                         "synthesize-stop; the previous stream was dropped.", code="bad-request").event())
        self.streaming, self.got_chunks, self.stream = True, False, None
        service = self.server.service
        speech = Speech(self, speech_request(service.router, voice, None, service.settings.clean_text, streamed=True))
        await speech.start()
        self.stream = speech

    async def _stream_text(self, text) -> None:
        speech = self.stream
        if speech is not None:
            await speech.add(text)

    async def _stop_stream(self) -> None:
        """`synthesize-stop`: speak the rest, end the audio and answer `synthesize-stopped`."""
        speech, self.stream, self.streaming = self.stream, None, False
        if speech is not None:
            try:
                await speech.finish()
            finally:
                speech.cancel()
        await self.write_event(SynthesizeStopped().event())

    async def _synthesize(self, text, voice) -> None:
        """A whole text, checked and cleaned as over HTTP, spoken by one session."""
        service = self.server.service
        speech = self.speech = Speech(self, speech_request(service.router, voice, text, service.settings.clean_text))
        try:
            await speech.start()
            await speech.finish()
        finally:
            speech.cancel()
            self.speech = None

    def abort(self) -> None:
        """Free every job this connection holds."""
        for speech in (self.stream, self.speech):
            if speech is not None:
                speech.cancel()
        self.stream = None

    async def disconnect(self) -> None:
        self.abort()
        self.server.handlers.discard(self)

"""Home Assistant's Wyoming protocol: a TCP server in the service process, on the same workers.

A second door to the same models: `describe` answers with every voice of every routed language,
`synthesize` speaks a whole text, and `synthesize-start` / `synthesize-chunk` / `synthesize-stop`
speak an LLM's answer sentence by sentence while it is being written, all in one
`audio-start` ... `audio-stop`, then `synthesize-stopped`. Text goes through the same cleaning,
limits, routes, voices and schedulers as HTTP, so Wyoming requests batch with everything else.

Built on the `wyoming` package's own events and `AsyncTcpServer` / `AsyncEventHandler` (one
handler per connection). Its asyncio loop runs in a daemon thread; a job's blocking `events()`
are read in a thread per synthesis and handed to the loop with `call_soon_threadsafe`.
What a streaming server must answer (and that Home Assistant also sends the whole text as a plain
`synthesize` inside the stream, for older servers) was learned from the package's README,
`wyoming/tts.py`, Home Assistant's `components/wyoming/tts.py` and wyoming-piper's `handler.py`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import AsyncIterator

import numpy as np

with warnings.catch_warnings():
    # wyoming.audio imports the standard library's audioop, deprecated since Python 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler, AsyncTcpServer
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from . import audio
from .config import ConfigError, Settings
from .engines.base import SynthesisRequest, UnknownVoiceError
from .routing import Route, Router, UnsupportedLanguageError, normalize_language
from .scheduler import EngineUnavailableError, JobCancelled, QueueFullError
from .synthesis import prepare_text
from .text import split_sentences

logger = logging.getLogger(__name__)

KYUTAI = Attribution(name="Kyutai", url="https://kyutai.org")
PROGRAM_VERSION = "1.0.0"  # the service's API version, as in openapi.py
LOOKAHEAD = 2  # sentences of one text stream on the worker at once: the next one is ready when this one ends
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")


class WyomingRequestError(ValueError):
    """What the client sent cannot be spoken; answered with an `error` event, the connection stays open."""

    def __init__(self, message: str, code: str = "bad-request"):
        super().__init__(message)
        self.code = code


def describe(router: Router) -> Info:
    """One TTS program; a voice per (language, voice) since Home Assistant sends only the voice's name."""
    voices = []
    for language, route in sorted(router.routes.items()):
        engine = route.engine
        names, default = engine.voices(language)
        for name in names:
            voices.append(TtsVoice(
                name=voice_id(language, name), attribution=KYUTAI, installed=engine.state != "error",
                description=f"{name} (default)" if name == default else name, version=engine.model_id,
                languages=[language]))
    program = TtsProgram(
        name="kyutai-tts", attribution=KYUTAI, installed=True, version=PROGRAM_VERSION,
        description="Kyutai TTS: DSM for English and French, Pocket TTS for Spanish and more",
        voices=voices, supports_synthesize_streaming=True)
    return Info(tts=[program])


def voice_id(language: str, name: str) -> str:
    """The Wyoming name of a voice: unique across languages, so the name alone picks the language."""
    return f"{language}:{name}"


def resolve_voice(router: Router, settings: Settings, voice: dict | None) -> tuple[Route, str | None]:
    """The route and voice for Wyoming's `voice` ({name, language, speaker}); speakers are ignored.

    `name` is a name from `describe` ("es:tiny-es"), or a bare name from GET /voices, spoken in
    `language` when given, else in the default language when it has that voice, else in the first
    language that does. With only `language`, its default voice."""
    voice = voice if isinstance(voice, dict) else {}
    name, language = voice.get("name"), voice.get("language")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise WyomingRequestError("voice 'name' must be a non-empty string; 'describe' lists the voices.")
    if language is not None and (not isinstance(language, str) or not language.strip()):
        raise WyomingRequestError("voice 'language' must be a language code such as 'es' or 'en'.")
    if language is not None:
        language = normalize_language(language)
    if name:
        name = name.strip()
        prefix, _, bare = name.partition(":")
        if bare and normalize_language(prefix) in router.routes and (language is None or
                                                                     normalize_language(prefix) == language):
            return _checked(router, normalize_language(prefix), bare)
        if language is not None:
            return _checked(router, language, name)
        speaking = [lang for lang, route in sorted(router.routes.items()) if name in route.engine.voices(lang)[0]]
        if not speaking:
            valid = [voice_id(lang, v) for lang, route in sorted(router.routes.items())
                     for v in route.engine.voices(lang)[0]]
            raise WyomingRequestError(f"Unknown voice {name!r}. Valid voices: {', '.join(valid) or 'none'}.")
        return _checked(router, settings.default_language if settings.default_language in speaking
                        else speaking[0], name)
    return _checked(router, language or settings.default_language, None)


def _checked(router: Router, language: str, name: str | None) -> tuple[Route, str | None]:
    try:
        route = router.route(language)
    except UnsupportedLanguageError as exc:
        raise WyomingRequestError(str(exc)) from None
    if name is not None:
        names, _ = route.engine.voices(language)
        if name not in names:
            raise WyomingRequestError(str(UnknownVoiceError(name, [voice_id(language, n) for n in names])))
    return route, name


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


def _speakable(text: str) -> bool:
    return any(char.isalnum() for char in text)


def error_event(exc: BaseException) -> Error:
    """The Wyoming error for a failure, worded as the HTTP answers are; the traceback only in the log."""
    if isinstance(exc, WyomingRequestError):
        return Error(text=str(exc), code=exc.code)
    if isinstance(exc, QueueFullError):
        return Error(text=f"The server is busy ({exc}); try again shortly.", code="busy")
    if isinstance(exc, EngineUnavailableError):
        return Error(text=f"Speech model unavailable: {str(exc).rstrip('.')}.", code="unavailable")
    if isinstance(exc, TimeoutError):
        return Error(text=f"Synthesis timed out: {exc}.", code="timeout")
    if isinstance(exc, ValueError):  # the engine refused what the client sent (unknown voice, no words...)
        return Error(text=str(exc), code="bad-request")
    logger.error("wyoming synthesis failed: %s", exc, exc_info=exc)
    return Error(text="Internal error while synthesizing; see the server log.", code="internal")


class Synthesis:
    """One text on its route's worker: submitted and read in a thread, its audio handed to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, route: Route, text: str, voice: str | None,
                 settings: Settings):
        self.route, self.text, self.voice, self.settings = route, text, voice, settings
        self.sample_rate = route.engine.sample_rate
        self.truncated = False
        self._loop = loop
        self._queue: asyncio.Queue = asyncio.Queue()
        self._lock = threading.Lock()
        self._job = None
        self._cancelled = False
        threading.Thread(target=self._run, daemon=True, name="wyoming-synthesis").start()

    def _put(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server stopped and nobody reads this any more
            pass

    def _run(self) -> None:
        try:
            language = self.route.language
            spoken = prepare_text(self.text, language, self.settings.clean_text)
            if not spoken or not _speakable(spoken):
                raise WyomingRequestError("The text has nothing speakable once markup and symbols are removed.")
            job = self.route.scheduler.submit(SynthesisRequest(
                text=spoken, language=language, voice=self.voice,
                max_audio_seconds=self.settings.max_audio_seconds))
            with self._lock:
                self._job = job
                if self._cancelled:
                    job.cancel()
            for kind, payload in job.events():
                if kind == "audio":
                    self._put(("audio", payload))
            self._put(("done", job.truncated))
        except BaseException as exc:  # handed to the loop, where it is answered or logged
            self._put(("error", exc))

    async def audio(self) -> AsyncIterator[np.ndarray]:
        """Float samples as the worker makes them; re-raises the worker's error."""
        while True:
            kind, payload = await self._queue.get()
            if kind == "audio":
                yield payload
            elif kind == "done":
                self.truncated = payload
                if payload:
                    logger.info("wyoming synthesis stopped at the %.0f s audio limit", self.settings.max_audio_seconds)
                return
            else:
                raise payload

    def cancel(self) -> None:
        """Free the job's slot or queue place (a no-op once it has finished)."""
        with self._lock:
            self._cancelled = True
            if self._job is not None:
                self._job.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled


@dataclass
class _Output:
    """One audio stream to the client: `audio-start` before the first samples, `audio-stop` once."""

    handler: "WyomingHandler"
    rate: int
    started: bool = False
    samples: int = 0
    began: float = field(default_factory=time.monotonic)

    async def write(self, pcm: np.ndarray) -> None:
        if not self.started:
            await self.start()
        self.samples += len(pcm)
        await self.handler.write_event(AudioChunk(rate=self.rate, width=2, channels=1,
                                                  audio=audio.to_pcm16(pcm)).event())

    async def start(self) -> None:
        self.started = True
        await self.handler.write_event(AudioStart(rate=self.rate, width=2, channels=1).event())

    async def stop(self) -> None:
        if self.started:
            await self.handler.write_event(AudioStop().event())

    def log(self, kind: str, route: Route | None, voice: str | None, characters: int) -> None:
        """One line per request, as the HTTP access log has."""
        logger.info("wyoming %s %s voice=%s: %d characters, %.2f s of audio in %.2f s", kind,
                    route.language if route is not None else "-", voice or "default", characters,
                    self.samples / self.rate, time.monotonic() - self.began)


class TextStream:
    """`synthesize-start` ... `synthesize-stop`: each sentence is spoken as soon as it is complete."""

    def __init__(self, handler: "WyomingHandler", route: Route | None, voice: str | None):
        self.handler = handler
        self.server = handler.server
        self.route, self.voice = route, voice
        self.failed = route is None  # a bad voice at the start: the rest of the stream is only acknowledged
        self.chars = 0
        self.got_chunks = False
        self._buffer = ""
        self._texts: collections.deque[str] = collections.deque()
        self._inflight: collections.deque[Synthesis] = collections.deque()
        self._ended = False
        self._wake = asyncio.Event()
        self._output = _Output(handler, route.engine.sample_rate if route is not None else 24000)
        self._task = None if self.failed else asyncio.create_task(self._speak(), name="wyoming text stream")
        if self._task is not None:
            # A client that leaves mid-stream never awaits the task: take its outcome so asyncio does not log it.
            self._task.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def add(self, text: str) -> None:
        self.got_chunks = True
        if self.failed:
            return
        self.chars += len(text)
        limit = self.server.settings.max_chars
        if self.chars > limit:
            return await self.fail(WyomingRequestError(
                f"The streamed text has {self.chars} characters; the limit is {limit}.", code="too-long"))
        sentences, self._buffer = complete_sentences(self._buffer + text)
        self._queue(sentences)

    def _queue(self, sentences: list[str]) -> None:
        self._texts.extend(s for s in sentences if _speakable(s))
        self._fill()

    def _fill(self) -> None:
        while self._texts and len(self._inflight) < LOOKAHEAD:
            self._inflight.append(self.server.synthesis(self.route, self._texts.popleft(), self.voice))
        self._wake.set()

    async def _speak(self) -> None:
        """Relay the sentences' audio in order, one `audio-start` for all of them."""
        while True:
            self._fill()
            if not self._inflight:
                if self._ended:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            head = self._inflight[0]
            try:
                async for pcm in head.audio():
                    await self._output.write(pcm)
            except (ConnectionError, asyncio.CancelledError):
                raise
            except Exception as exc:
                if not head.cancelled:
                    await self.fail(exc)
                return
            finally:
                head.cancel()
            self._inflight.popleft()

    async def fail(self, exc: BaseException) -> None:
        """Say why once, stop speaking, and still end the stream properly at `synthesize-stop`."""
        if self.failed:
            return
        self.failed = True
        self.cancel()
        if not isinstance(exc, JobCancelled):
            await self.handler.write_event(error_event(exc).event())

    async def finish(self) -> None:
        """`synthesize-stop`: speak the rest, end the audio and answer `synthesize-stopped`."""
        self._ended = True
        if not self.failed:
            self._queue([self._buffer] if self._buffer.strip() else [])
            self._buffer = ""
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                if not self.failed:
                    raise
        await self._output.stop()
        await self.handler.write_event(SynthesizeStopped().event())
        self._output.log("text stream", self.route, self.voice, self.chars)

    def cancel(self) -> None:
        """The client left or the stream failed: free every job it holds."""
        self._texts.clear()
        for synthesis in self._inflight:
            synthesis.cancel()
        if self._task is not None and asyncio.current_task() is not self._task and not self._task.done():
            self._task.cancel()
        self._wake.set()


class WyomingHandler(AsyncEventHandler):
    """One Wyoming connection: events in, events out; any number of requests one after another."""

    def __init__(self, server: "WyomingServer", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        super().__init__(reader, writer)
        self.server = server
        self.stream: TextStream | None = None
        self.synthesis: Synthesis | None = None

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._dispatch(event)
        except ConnectionError:
            return False
        except Exception as exc:
            logger.exception("wyoming event %r failed", event.type)
            try:
                await self.write_event(error_event(exc).event())
            except ConnectionError:
                return False
        return True

    async def _dispatch(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event((await self._off_loop(describe, self.server.router)).event())
        elif SynthesizeStart.is_type(event.type):
            await self._start_stream(event)
        elif SynthesizeChunk.is_type(event.type):
            if self.stream is None:
                await self._error("synthesize-chunk must come between synthesize-start and synthesize-stop.")
            else:
                text = event.data.get("text")
                if not isinstance(text, str):
                    return await self.stream.fail(WyomingRequestError("synthesize-chunk needs 'text', a string."))
                await self.stream.add(text)
        elif Synthesize.is_type(event.type):
            if self.stream is not None:
                # Sent inside a stream only for servers without streaming: speak it only if no chunk came.
                text = event.data.get("text")
                if not self.stream.got_chunks and isinstance(text, str):
                    await self.stream.add(text)
            else:
                await self._synthesize(event)
        elif SynthesizeStop.is_type(event.type):
            if self.stream is None:
                await self._error("synthesize-stop without synthesize-start.")
            else:
                stream, self.stream = self.stream, None
                await stream.finish()
        # Other events are not for a TTS server; Wyoming servers ignore what they do not handle.

    async def _off_loop(self, function, *args):
        """Voice listings may read files: never on the loop that serves every connection."""
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    async def _error(self, message: str, code: str = "bad-request") -> None:
        await self.write_event(Error(text=message, code=code).event())

    async def _start_stream(self, event: Event) -> None:
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None
            await self._error("synthesize-start arrived before the previous stream's synthesize-stop; "
                              "the previous stream was dropped.")
        try:
            route, voice = await self._off_loop(resolve_voice, self.server.router, self.server.settings,
                                                event.data.get("voice"))
        except WyomingRequestError as exc:
            self.stream = TextStream(self, None, None)
            await self.write_event(error_event(exc).event())
            return
        self.stream = TextStream(self, route, voice)

    async def _synthesize(self, event: Event) -> None:
        """A whole text: one job, its audio relayed as it is generated."""
        settings = self.server.settings
        text = event.data.get("text")
        try:
            if not isinstance(text, str):
                raise WyomingRequestError("synthesize needs 'text', a string.")
            if not text.strip():
                raise WyomingRequestError("The text is empty.")
            if len(text) > settings.max_chars:
                raise WyomingRequestError(f"The text has {len(text)} characters; the limit is {settings.max_chars}. "
                                          "Split it into several requests.", code="too-long")
            route, voice = await self._off_loop(resolve_voice, self.server.router, settings, event.data.get("voice"))
        except WyomingRequestError as exc:
            return await self.write_event(error_event(exc).event())
        synthesis = self.synthesis = self.server.synthesis(route, text, voice)
        output = _Output(self, synthesis.sample_rate)
        try:
            async for pcm in synthesis.audio():
                await output.write(pcm)
            if not output.started:
                await output.start()
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            if synthesis.cancelled:
                raise ConnectionResetError("the connection is closing") from None
            await self.write_event(error_event(exc).event())
        finally:
            synthesis.cancel()
            self.synthesis = None
        await output.stop()
        output.log("synthesize", route, voice, len(text))

    def abort(self) -> None:
        """Free every job this connection holds."""
        if self.stream is not None:
            self.stream.cancel()
        if self.synthesis is not None:
            self.synthesis.cancel()

    async def disconnect(self) -> None:
        self.abort()
        self.server.handlers.discard(self)


class WyomingServer:
    """The Wyoming TCP server and the asyncio loop it runs on, in a daemon thread."""

    def __init__(self, settings: Settings, router: Router):
        self.settings, self.router = settings, router
        self.host = settings.wyoming_host or settings.host
        self.port = settings.wyoming_port
        self.handlers: set[WyomingHandler] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: AsyncTcpServer | None = None
        self._zeroconf = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def synthesis(self, route: Route, text: str, voice: str | None) -> Synthesis:
        return Synthesis(self._loop, route, text, voice, self.settings)

    def _handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> WyomingHandler:
        handler = WyomingHandler(self, reader, writer)
        self.handlers.add(handler)
        return handler

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Listen (and announce over mDNS when asked); a port in use or a missing package is a ConfigError."""
        if self.settings.wyoming_zeroconf:
            _zeroconf_module()  # before anything starts: a missing package fails at once
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="wyoming")
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"the Wyoming server did not start within {timeout:.0f} s")
        if self._error is not None:
            self._thread.join(5)
            error, self._error = self._error, None
            if isinstance(error, ConfigError):
                raise error
            raise ConfigError(f"TTS_WYOMING_PORT={self.port}: cannot listen on {self.host}:{self.port}: "
                              f"{error}") from None
        logger.info("Wyoming server on tcp://%s:%d%s", self.host, self.port,
                    " (announced over mDNS)" if self._zeroconf is not None else "")

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:
            self._error = exc
            loop.run_until_complete(self._close())
            loop.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close())
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _open(self) -> None:
        self._server = AsyncTcpServer(self.host, self.port)
        await self._server.start(self._handler)
        if self.settings.wyoming_zeroconf:
            self._zeroconf = await _announce(self.host, self.port)

    async def _close(self) -> None:
        for handler in list(self.handlers):
            handler.abort()
        if self._zeroconf is not None:
            zeroconf, service = self._zeroconf
            self._zeroconf = None
            try:
                await zeroconf.async_unregister_service(service)
            finally:
                await zeroconf.async_close()
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop listening, end every connection (freeing its jobs) and the loop's thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout)
        except Exception as exc:
            logger.warning("Wyoming server did not close cleanly: %s", exc)
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # closed meanwhile
            pass
        thread.join(timeout)


def _zeroconf_module():
    try:
        from zeroconf import asyncio as zeroconf_asyncio
    except ImportError:
        raise ConfigError("TTS_WYOMING_ZEROCONF=true needs the zeroconf package: "
                          ".venv/bin/pip install zeroconf (or set TTS_WYOMING_ZEROCONF=false).") from None
    return zeroconf_asyncio


async def _announce(host: str, port: int):
    """Register `_wyoming._tcp` as wyoming/zeroconf.py does, keeping the handles to unregister at stop."""
    zeroconf_asyncio = _zeroconf_module()
    address = host
    if host in ("", "0.0.0.0", "::"):
        # The address other machines reach us on: the one the route to the mDNS group leaves from (no packet sent).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(("224.0.0.251", 5353))
                address = probe.getsockname()[0]
            except OSError as exc:
                raise ConfigError(f"TTS_WYOMING_ZEROCONF: no network address to announce ({exc}); "
                                  "set TTS_WYOMING_HOST to this machine's LAN address.") from None
    name = socket.gethostname().split(".")[0] or "kyutai-tts"
    service = zeroconf_asyncio.AsyncServiceInfo(
        "_wyoming._tcp.local.", f"kyutai-tts-{name}._wyoming._tcp.local.",
        addresses=[socket.inet_aton(address)], port=port)
    zeroconf = zeroconf_asyncio.AsyncZeroconf()
    await zeroconf.async_register_service(service)
    return zeroconf, service


def install(settings: Settings, router: Router) -> WyomingServer | None:
    """Start the Wyoming server when TTS_WYOMING_PORT is set; it stops first whenever the router stops."""
    if not settings.wyoming_port:
        return None
    server = WyomingServer(settings, router)
    server.start()
    router.before_stop(lambda timeout: server.stop(timeout=10.0 if timeout is None else min(timeout, 10.0)))
    return server

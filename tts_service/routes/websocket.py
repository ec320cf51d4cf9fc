"""Text in while audio goes out, over WebSocket.

`/api/tts_streaming` speaks the protocol of Kyutai's moshi-server TTS (MessagePack messages
`Text`, `Voice`, `Eos` in; `Ready`, `Text`, `Audio`, `Error` out), so Kyutai's own clients work
unchanged. `/ws/tts` is this service's browser-friendly variant: JSON text messages in, binary
16-bit PCM and JSON word/done/error messages out. Both feed words into a DSM slot as they arrive;
the slot waits (it never invents words) until enough text is known for the model's look-ahead.
Languages served by Pocket TTS are spoken sentence by sentence as each sentence completes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Callable

import msgpack
import numpy as np
from flask import Blueprint, current_app, request
from flask_sock import ConnectionClosed, Sock

from ..engines.base import NothingToSayError, RequestError, SynthesisRequest, UnknownVoiceError
from ..synthesis import check_text
from ..routing import UnsupportedLanguageError, normalize_language
from ..scheduler import EngineUnavailableError, Job, QueueFullError
from ..security import _presented_key, key_is_valid
from .. import audio

logger = logging.getLogger(__name__)

bp = Blueprint("websocket", __name__)
sock = Sock()

SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+")


class ProtocolError(ValueError):
    """The client broke the protocol; answered with an error message and a clean close."""


def _route(language: str | None):
    """The route for a language; Kyutai's protocol names none, so it gets the first DSM language."""
    router = current_app.extensions["tts_router"]
    if language is None:
        for lang, route in sorted(router.routes.items()):
            if route.key == "dsm":
                return route
        raise ProtocolError("no language is routed to Kyutai DSM TTS on this server")
    try:
        return router.route(normalize_language(language))
    except UnsupportedLanguageError as exc:
        raise ProtocolError(str(exc)) from None


def _submit(route, request_: SynthesisRequest) -> Job:
    try:
        return route.scheduler.submit(request_)
    except NothingToSayError:
        raise
    except RequestError as exc:
        raise ProtocolError(str(exc)) from None
    except (QueueFullError, EngineUnavailableError) as exc:
        raise ProtocolError(f"speech model unavailable: {exc}") from None


class TextSession:
    """One client's text stream, spoken by one job (DSM) or one job per sentence (Pocket TTS)."""

    def __init__(self, route, voice: str | None, embedding, on_audio: Callable, on_word: Callable,
                 on_done: Callable, on_error: Callable):
        self.route = route
        self.voice = voice
        self.embedding = embedding
        self.on_audio, self.on_word, self.on_done, self.on_error = on_audio, on_word, on_done, on_error
        self.settings = current_app.extensions["tts_settings"]
        self.streams_text = route.key == "dsm"
        self.ended = False
        self.job: Job | None = None
        self._pending_sentences: list[str] = []
        self._buffer = ""
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._offset = 0.0
        self.cancelled = False

    def check_voice(self) -> None:
        probe = SynthesisRequest(text="", language=self.route.language, voice=self.voice,
                                 voice_embedding=self.embedding, streaming_text=True)
        engine = self.route.engine
        if self.streams_text:
            if engine.is_loaded:
                try:
                    engine.prepare(probe)  # unknown voice, bad embedding: UnknownVoiceError is a ValueError
                except ValueError as exc:
                    raise ProtocolError(str(exc)) from None
        elif self.voice is not None:
            names, _ = engine.voices(self.route.language)
            if self.voice not in names:
                raise ProtocolError(str(UnknownVoiceError(self.voice, names)))

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._pump, daemon=True, name="ws-session")
            if self.streams_text:
                self.job = _submit(self.route, SynthesisRequest(
                    text="", language=self.route.language, voice=self.voice, streaming_text=True,
                    voice_embedding=self.embedding, max_audio_seconds=self.settings.max_audio_seconds))
            self._thread.start()

    def add_text(self, text: str) -> None:
        if self.ended:
            raise ProtocolError("text arrived after the end of the text")
        if not isinstance(text, str):
            raise ProtocolError("'text' must be a string")
        try:
            text = check_text(text)
        except RequestError as exc:
            raise ProtocolError(str(exc)) from None
        if self.streams_text:
            self._start()
            # Each piece is checked and tokenized here, in the connection's thread, never in the worker.
            entries = self.route.engine.prepare_piece(self.job.request, text) if text.strip() else None
            if entries:
                self.job.feed_text(entries)
            return
        with self._lock:
            self._buffer += text
            *complete, self._buffer = SENTENCE_END.split(self._buffer)
            self._pending_sentences += [s for s in complete if s.strip()]
            self._lock.notify_all()
        if complete:
            self._start()

    def end(self) -> None:
        if self.ended:
            raise ProtocolError("the end of the text was already sent")
        self.ended = True
        if self.streams_text:
            self._start()
            self.job.end_text()
            return
        with self._lock:
            if self._buffer.strip():
                self._pending_sentences.append(self._buffer)
            self._buffer = ""
            self._lock.notify_all()
        self._start()

    def cancel(self) -> None:
        self.cancelled = True
        with self._lock:
            self._lock.notify_all()
        if self.job is not None:
            self.job.cancel()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _pump(self) -> None:
        try:
            if self.streams_text:
                self._relay(self.job)
            else:
                while not self.cancelled:
                    with self._lock:
                        while not self._pending_sentences and not self.ended and not self.cancelled:
                            self._lock.wait(0.5)
                        if not self._pending_sentences:
                            break
                        sentence = self._pending_sentences.pop(0)
                    try:
                        self.job = _submit(self.route, SynthesisRequest(
                            text=sentence.strip(), language=self.route.language, voice=self.voice,
                            max_audio_seconds=self.settings.max_audio_seconds))
                    except NothingToSayError:
                        continue  # a sentence of marks only: nothing to speak, nothing wrong
                    self._relay(self.job)
            if not self.cancelled:
                self.on_done(self._offset)
        except ProtocolError as exc:
            self.on_error(str(exc))
        except Exception as exc:
            if not self.cancelled:
                logger.warning("text stream failed: %s", exc)
                self.on_error(f"synthesis failed: {type(exc).__name__}")

    def _relay(self, job: Job) -> None:
        """Forward a job's audio, and each word once its end is known."""
        held = None
        samples = 0
        for kind, payload in job.events():
            if kind == "audio":
                samples += len(payload)
                self.on_audio(payload)
            elif kind == "word":
                if held is not None:
                    self.on_word(held.word, self._offset + held.start, self._offset + payload.start)
                held = payload
        duration = samples / job.sample_rate
        if held is not None:
            self.on_word(held.word, self._offset + held.start, self._offset + max(duration, held.start))
        self._offset += duration


def _authorized() -> bool:
    settings = current_app.extensions["tts_settings"]
    return not settings.api_key or key_is_valid(settings, _presented_key() or request.args.get("api_key", ""))


def _serve(ws, *, encode: Callable, error_message: Callable[[str], dict], unauthorized: str,
           start: Callable, decode: Callable, dispatch: Callable) -> None:
    """One WebSocket session: authenticate, start, feed client messages, and end cleanly on any error."""
    send_lock = threading.Lock()
    failed = threading.Event()

    def send(message) -> None:
        with send_lock:
            ws.send(encode(message) if isinstance(message, dict) else message)

    def error_and_close(text: str) -> None:
        failed.set()
        try:
            send(error_message(text))
            ws.close(reason=1000, message=text[:120])
        except ConnectionClosed:
            pass

    if not _authorized():
        return error_and_close(unauthorized)
    session = None
    try:
        session = start(send, error_and_close)
        while not failed.is_set():
            data = ws.receive(timeout=0.5)
            if data is None:
                if session.ended and session._thread is not None and not session._thread.is_alive():
                    break
                continue
            message = decode(data)
            if not isinstance(message, dict):
                raise ProtocolError("a message must be a map with a 'type'")
            dispatch(session, message)
        session.wait(timeout=5)
    except ProtocolError as exc:
        if session is not None:
            session.cancel()
        error_and_close(str(exc))
    except ConnectionClosed:
        if session is not None:
            session.cancel()
    except Exception:
        logger.exception("text stream failed")
        if session is not None:
            session.cancel()
        error_and_close("internal error; see the server log")
    finally:
        if session is not None and not session.ended:
            session.cancel()


@sock.route("/api/tts_streaming", bp=bp)
def kyutai_streaming(ws):
    """Kyutai moshi-server's TTS protocol, MessagePack both ways."""

    def start(send, error_and_close) -> TextSession:
        args = request.args
        if args.get("format", "PcmMessagePack") != "PcmMessagePack":
            raise ProtocolError("only format=PcmMessagePack is supported")
        session = TextSession(
            _route(None), args.get("voice") or None, None,
            on_audio=lambda pcm: send({"type": "Audio", "pcm": pcm.tolist()}),
            on_word=lambda word, start_s, stop_s: send({"type": "Text", "text": word, "start_s": round(start_s, 3),
                                                        "stop_s": round(stop_s, 3)}),
            on_done=lambda _duration: ws.close(reason=1000, message="done"),
            on_error=error_and_close)
        session.check_voice()
        send({"type": "Ready"})
        return session

    def decode(data):
        if isinstance(data, str):
            raise ProtocolError("messages must be binary MessagePack")
        try:
            return msgpack.unpackb(data, raw=False)
        except Exception:
            raise ProtocolError("malformed MessagePack message") from None

    def dispatch(session: TextSession, message: dict) -> None:
        kind = message.get("type")
        if kind == "Text":
            session.add_text(message.get("text", ""))
        elif kind == "Eos":
            session.end()
        elif kind == "Voice":
            if session._thread is not None:
                raise ProtocolError("Voice must come before the first Text")
            try:
                session.embedding = np.asarray(message["embeddings"], dtype=np.float32).reshape(message["shape"])
            except Exception:
                raise ProtocolError("Voice needs 'embeddings' (floats) and a matching 'shape'") from None
            session.voice = None
            session.check_voice()
        else:
            raise ProtocolError(f"unknown message type {kind!r}; expected Text, Voice or Eos")

    _serve(ws, encode=lambda m: msgpack.packb(m, use_bin_type=True, use_single_float=True),
           error_message=lambda text: {"type": "Error", "message": text}, unauthorized="invalid api key",
           start=start, decode=decode, dispatch=dispatch)


@sock.route("/ws/tts", bp=bp)
def json_streaming(ws):
    """This service's variant: JSON text messages in, binary 16-bit PCM and JSON events out."""

    def start(send, error_and_close) -> TextSession:
        args = request.args
        settings = current_app.extensions["tts_settings"]
        route = _route(args.get("language") or settings.default_language)

        def on_done(duration: float) -> None:
            send({"type": "done", "duration": round(duration, 3)})
            ws.close(reason=1000, message="done")

        session = TextSession(
            route, args.get("voice") or None, None, on_audio=lambda pcm: send(audio.to_pcm16(pcm)),
            on_word=lambda word, begin, end: send({"type": "word", "word": word, "start": round(begin, 3),
                                                   "end": round(end, 3)}),
            on_done=on_done, on_error=error_and_close)
        session.check_voice()
        engine = route.engine
        send({"type": "ready", "sample_rate": engine.sample_rate, "format": "pcm_s16le",
              "provider": engine.provider, "model": engine.model_id, "language": route.language})
        return session

    def decode(data):
        try:
            return json.loads(data)
        except (TypeError, ValueError, RecursionError):
            raise ProtocolError('messages must be JSON text such as {"type": "text", "text": "Hola"}') from None

    def dispatch(session: TextSession, message: dict) -> None:
        kind = message.get("type")
        if kind == "text":
            session.add_text(message.get("text", ""))
        elif kind == "end":
            session.end()
        else:
            raise ProtocolError(f"unknown message type {kind!r}; expected 'text' or 'end'")

    _serve(ws, encode=json.dumps, error_message=lambda text: {"type": "error", "message": text},
           unauthorized="Missing or wrong API key.", start=start, decode=decode, dispatch=dispatch)

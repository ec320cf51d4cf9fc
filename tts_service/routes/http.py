"""What the HTTP surfaces share: the JSON body, the one refusal table, and streaming a session's audio."""

from __future__ import annotations

import json
import logging
import queue
from typing import Callable, Iterator

from flask import request

from .disconnect import start_watch, stop_watch
from .errors import ApiError, bad_request, request_id
from ..speech import refusals
from ..speech.events import Audio, Done, Error, EventQueue, Word
from ..speech.refusals import Refusal
from ..speech.request import SpeechRequest
from ..speech.session import Session

logger = logging.getLogger(__name__)

def json_body() -> dict:
    """The request body as a JSON object, or a clear 400/415."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "Send a JSON body with 'Content-Type: application/json'.")
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object such as {\"text\": \"Hola\"}.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise bad_request("The request body is JSON nested too deeply; send a flat object such as "
                          "{\"text\": \"Hola\"}.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object such as {\"text\": \"Hola\"}.")
    return body


def flag(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false.", param=name)
    return value


class AudioStream:
    """A whole-text session whose audio is sent as it is made.

    `open` waits for the first audio, so that a refusal found before it is still a JSON error;
    `chunks` then yields the rest. A client that leaves cancels the session (its jobs are freed)."""

    def __init__(self, service, speech: SpeechRequest):
        self.service = service
        self.events = EventQueue()
        self.session = Session(service, speech, self.events)
        self.first: Audio | None = None
        self.rid = request_id()
        self.watch = None

    def open(self) -> "AudioStream":
        self.session.start()
        # From here to the answer's end a client that leaves cancels the session, whether it
        # leaves while the first audio is awaited or while the rest is written.
        self.watch = start_watch(request.environ, self.rid)
        self.watch.track(self.session)
        try:
            event = self._next()
            while isinstance(event, Word):  # this stream carries only audio
                event = self._next()
            if isinstance(event, Error):
                self.session.cancel()
                raise event.refusal
        except BaseException:
            stop_watch(self.watch)
            raise
        self.first = event if isinstance(event, Audio) else None
        return self

    @property
    def sample_rate(self) -> int:
        return self.session.sample_rate

    def _next(self):
        try:
            return self.events.get(timeout=self.service.settings.request_timeout + 30)
        except queue.Empty:
            self.session.cancel()
            raise Refusal(refusals.TIMED_OUT, "Synthesis timed out.", retry_after=5) from None

    def encoded(self, encoder) -> Iterator[bytes]:
        """The answer through a `StreamEncoder`: its header, each chunk, and its end."""
        try:
            header = encoder.header()
            if header:
                yield header
            yield from self.chunks(encoder.encode)
            tail = encoder.finish()
            if tail:
                yield tail
        finally:
            encoder.close()

    def chunks(self, encode: Callable[[object], bytes]) -> Iterator[bytes]:
        """Each audio chunk through `encode` (float32 PCM in, bytes out), in order, until the end."""
        try:
            event = self.first
            while event is not None and not isinstance(event, Done):
                if isinstance(event, Audio):
                    data = encode(event.pcm)
                    if data:
                        yield data
                elif isinstance(event, Error):
                    # Headers are gone: all we can do is end the stream early and say why in the log.
                    logger.error("stream %s failed after audio started: %s", self.rid, event.message)
                    return
                event = self._next()
            if isinstance(event, Done) and event.truncated:
                logger.info("stream %s stopped at the %.0f s audio limit", self.rid, self.session.max_audio_seconds)
        except GeneratorExit:
            logger.info("client left stream %s; freeing its slot", self.rid)
            raise
        except Refusal as refusal:
            logger.error("stream %s failed after audio started: %s", self.rid, refusal.message)
        finally:
            self.session.cancel()
            stop_watch(self.watch)

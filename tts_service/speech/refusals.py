"""One refusal type for everything a request can be told instead of speech, whatever the door.

Each protocol maps a refusal's `kind` to its own words with one small table (an HTTP status, a
WebSocket close code, a Wyoming error code); the message is always safe to show to the client.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

BAD_REQUEST = "bad_request"
TOO_LARGE = "too_large"
UNKNOWN_VOICE = "unknown_voice"
NOTHING_TO_SAY = "nothing_to_say"
BUSY = "busy"
UNAVAILABLE = "unavailable"
TIMED_OUT = "timed_out"
INTERNAL = "internal"
KINDS = (BAD_REQUEST, TOO_LARGE, UNKNOWN_VOICE, NOTHING_TO_SAY, BUSY, UNAVAILABLE, TIMED_OUT, INTERNAL)

NOTHING_SPEAKABLE = ("The text has nothing speakable left once punctuation, symbols and markup are removed; "
                     "send words to speak.")


class Refusal(Exception):
    """Why a request gets no (more) speech: a `kind` from KINDS and a message safe to show.

    `retry_after` (seconds) says when trying again makes sense; `details` are extra fields a
    protocol may show (the valid voices, the supported languages, the limit)."""

    def __init__(self, kind: str, message: str, *, retry_after: int | None = None, **details):
        if kind not in KINDS:
            raise ValueError(f"unknown refusal kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.details = details

    def __repr__(self) -> str:
        return f"Refusal({self.kind!r}, {self.message!r})"


def nothing_to_say() -> Refusal:
    return Refusal(NOTHING_TO_SAY, NOTHING_SPEAKABLE)


def as_refusal(error: BaseException, request_id: str | None = None) -> Refusal:
    """The refusal for anything an engine, a scheduler or a download raised: the one mapping.

    An unexpected failure is logged here with its traceback and told as `internal`."""
    from ..engines.base import NothingToSayError, RequestError, UnknownVoiceError
    from ..engines.hub import ModelDownloadError
    from ..scheduler import EngineUnavailableError, JobCancelled, QueueFullError
    from ..routes.security import redact_paths

    if isinstance(error, Refusal):
        return error
    if isinstance(error, UnknownVoiceError):
        return Refusal(UNKNOWN_VOICE, str(error), valid_voices=error.valid)
    if isinstance(error, NothingToSayError):
        return Refusal(NOTHING_TO_SAY, str(error))
    if isinstance(error, RequestError):
        return Refusal(BAD_REQUEST, str(error))
    if isinstance(error, QueueFullError):
        return Refusal(BUSY, f"The server is busy ({error}); try again shortly.", retry_after=error.retry_after)
    if isinstance(error, EngineUnavailableError):
        return Refusal(UNAVAILABLE, redact_paths(f"Speech model unavailable: {str(error).rstrip('.')}."),
                       retry_after=10 if error.loading else None)
    if isinstance(error, ModelDownloadError):
        return Refusal(UNAVAILABLE, redact_paths(f"Voice unavailable: {str(error).rstrip('.')}."), retry_after=10)
    if isinstance(error, TimeoutError):
        return Refusal(TIMED_OUT, f"Synthesis timed out: {str(error) or 'no progress for the request timeout'}.",
                       retry_after=5)
    if isinstance(error, JobCancelled):
        return Refusal(INTERNAL, "Request cancelled.")
    logger.error("synthesis failed%s: %s", f" (request {request_id})" if request_id else "", error,
                 exc_info=error)
    return Refusal(INTERNAL, "Internal error while synthesizing; see the server log.")

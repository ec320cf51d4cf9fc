"""What an engine, the scheduler or a model download raised, told as a refusal: the one mapping."""

from __future__ import annotations

import logging

from ..engines.base import NothingToSayError, RequestError, UnknownVoiceError
from ..engines.hub import ModelDownloadError
from ..logs import redact_paths
from ..scheduler import EngineUnavailableError, JobCancelled, JobPreempted, QueueFullError
from .refusals import BAD_REQUEST, BUSY, INTERNAL, NOTHING_TO_SAY, TIMED_OUT, UNAVAILABLE, UNKNOWN_VOICE, Refusal

logger = logging.getLogger(__name__)


def as_refusal(error: BaseException, request_id: str | None = None) -> Refusal:
    """The refusal for anything an engine, a scheduler or a download raised: the one mapping.

    An unexpected failure is logged here with its traceback and told as `internal`."""
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
    if isinstance(error, JobPreempted):
        return Refusal(BUSY, "Live requests came first; try again shortly.", retry_after=1)
    if isinstance(error, JobCancelled):
        return Refusal(INTERNAL, "Request cancelled.")
    logger.error("synthesis failed%s: %s", f" (request {request_id})" if request_id else "", error,
                 exc_info=error)
    return Refusal(INTERNAL, "Internal error while synthesizing; see the server log.")

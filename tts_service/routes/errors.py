"""One JSON error shape for every failure, with the request id and never a traceback."""

from __future__ import annotations

import logging
import uuid

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ..speech import refusals
from ..speech.refusals import Refusal

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as `{"error": message, ...extra}` with an HTTP status."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


# A refusal's kind as an HTTP status; 503 and 500 tell the browser client to use its fallback voice.
HTTP_STATUS = {refusals.BAD_REQUEST: 400, refusals.TOO_LARGE: 413, refusals.UNKNOWN_VOICE: 400,
               refusals.FORBIDDEN: 403, refusals.CONFLICT: 409,
               refusals.NOTHING_TO_SAY: 400, refusals.BUSY: 503, refusals.UNAVAILABLE: 503,
               refusals.TIMED_OUT: 503, refusals.INTERNAL: 500}


def api_error(refusal: Refusal) -> ApiError:
    """The HTTP answer for a refusal, by the table above."""
    status = HTTP_STATUS[refusal.kind]
    headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after and status == 503 else None
    extra = dict(refusal.details)
    if status >= 500:
        extra["fallback"] = True
    return ApiError(status, refusal.message, headers=headers, **extra)


def bad_request(message: str, **extra) -> ApiError:
    return ApiError(400, message, **extra)


def unavailable(message: str, retry_after: int | None = None, **extra) -> ApiError:
    """The client should speak with its fallback voice, and may retry later."""
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return ApiError(503, message, headers=headers, fallback=True, **extra)


def request_id() -> str:
    if "request_id" not in g:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if incoming.isascii() and 0 < len(incoming) <= 64 and incoming.isprintable() \
            else uuid.uuid4().hex
    return g.request_id


OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                413: "invalid_request_error", 415: "invalid_request_error", 429: "rate_limit_error",
                503: "server_error", 500: "server_error"}


def error_response(error: ApiError) -> Response:
    if request.path.startswith("/v1/"):
        # OpenAI's error shape, so that OpenAI clients show the message.
        extra = dict(error.extra)
        body = {"error": {"message": error.message, "type": OPENAI_TYPES.get(error.status, "invalid_request_error"),
                          "param": extra.pop("param", None), "code": extra.pop("code", None), **extra},
                "request_id": request_id()}
    else:
        body = {"error": error.message, **error.extra, "request_id": request_id()}
    response = jsonify(body)
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return error_response(error)

    @app.errorhandler(Refusal)
    def _refusal(refusal: Refusal):
        return error_response(api_error(refusal))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        api_error = ApiError(error.code or 500, error.description or error.name)
        response = error_response(api_error)
        allowed = getattr(error, "valid_methods", None)
        if error.code == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        logger.exception("unexpected failure in %s %s (request %s)", request.method, request.path, request_id())
        return error_response(ApiError(500, "Internal error while synthesizing; see the server log.",
                                       fallback=True))

    @app.after_request
    def _tag(response: Response) -> Response:
        response.headers.setdefault("X-Request-Id", request_id())
        return response

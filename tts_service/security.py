"""Who may call: API key, CORS origins, per-client rate limits, and the access log line."""

from __future__ import annotations

import hmac
import logging
import time

from flask import Flask, Response, g, request
from flask_cors import CORS
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Settings
from .errors import ApiError, request_id

access_log = logging.getLogger("tts_service.access")

# Endpoints anyone may call, even when an API key is set.
OPEN_ENDPOINTS = {"health.health", "openapi.spec", "openapi.docs", "static"}
# The WebSocket handlers check the key themselves, to answer with an error message in-protocol.
OPEN_BLUEPRINTS = {"web", "websocket"}


def _presented_key() -> str:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("kyutai-api-key", "") or request.headers.get("X-API-Key", "")


def key_is_valid(settings: Settings, presented: str) -> bool:
    """Constant-time comparison, so the key cannot be guessed byte by byte from timings."""
    return hmac.compare_digest(presented.encode("utf-8"), settings.api_key.encode("utf-8"))


def install(app: Flask, settings: Settings, metrics=None) -> Limiter:
    if settings.trust_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trust_proxy, x_proto=settings.trust_proxy)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()] or ["*"]
    CORS(app, origins=origins if origins != ["*"] else "*", send_wildcard=origins == ["*"],
         expose_headers=["X-Request-Id", "X-Sample-Rate", "X-TTS-Provider", "X-TTS-Model", "X-Cache",
                         "Retry-After"],
         allow_headers=["Content-Type", "Authorization", "X-Request-Id"], max_age=600)

    def is_open() -> bool:
        return (request.method == "OPTIONS" or request.endpoint in OPEN_ENDPOINTS
                or (request.blueprint or "") in OPEN_BLUEPRINTS or request.endpoint is None)

    @app.before_request
    def _authenticate():
        g.started = time.perf_counter()
        if not settings.api_key or is_open():
            return None
        if not key_is_valid(settings, _presented_key()):
            if metrics is not None:
                metrics.rejected.labels("unauthorized").inc()
            raise ApiError(401, "Missing or wrong API key: send 'Authorization: Bearer <key>'.",
                           headers={"WWW-Authenticate": 'Bearer realm="tts"'})
        return None

    @app.after_request
    def _retry_after_only_on_refusals(response: Response) -> Response:
        # Registered before the limiter's own hook, so it runs after it (Flask runs them in reverse).
        if response.status_code not in (429, 503):
            response.headers.pop("Retry-After", None)
        return response

    limiter = Limiter(get_remote_address, app=app, storage_uri="memory://", headers_enabled=True,
                      default_limits=[settings.rate_limit] if settings.rate_limit else [],
                      default_limits_exempt_when=is_open, enabled=bool(settings.rate_limit))

    @app.after_request
    def _access_log(response: Response) -> Response:
        started = g.get("started")
        rid = request_id()
        path, method = request.path, request.method

        def line():
            elapsed = (time.perf_counter() - started) * 1000 if started else 0.0
            outcome = "ok" if response.status_code < 400 else "refused" if response.status_code < 500 else "failed"
            access_log.info("%s %s %s %d %.0fms %s client=%s", rid, method, path, response.status_code,
                            elapsed, outcome, request.remote_addr if not response.is_streamed else "-")

        if response.is_streamed:
            response.call_on_close(line)
        else:
            line()
        if response.status_code == 429 and metrics is not None:
            metrics.rejected.labels("rate_limited").inc()
        return response

    return limiter

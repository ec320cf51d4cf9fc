"""Who may call: API key, CORS origins, per-client rate limits, and the access log line.

One rate budget per client covers every synthesis surface (/tts, /tts/stream, /v1/audio/speech
and WebSocket sessions, whose upgrade is an ordinary GET that passes through here): it is one
Flask-Limiter shared limit applied to each of those blueprints. Wrong API keys are counted per
client in their own window, and a client over it is refused before its key is even compared, so
the key cannot be guessed at request speed.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time

from flask import Flask, Response, current_app, g, request
from flask_cors import CORS
from flask_limiter import Limiter
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import Settings
from .errors import ApiError, request_id
from ..logs import log_safe

access_log = logging.getLogger("tts_service.access")

# Endpoints anyone may call, even when an API key is set.
OPEN_ENDPOINTS = {"health.health", "openapi.spec", "openapi.docs", "static"}
# The WebSocket handlers check the key themselves, to answer with an error message in-protocol.
OPEN_BLUEPRINTS = {"web", "websocket"}
# Every route that makes a model speak shares one budget per client.
SYNTHESIS_BLUEPRINTS = {"tts", "stream", "normalize", "websocket"}  # /normalize: the same text path, the same budget
SYNTHESIS_ENDPOINTS = {"openai.speech", "custom_voices.create",  # making a voice costs a model's time too
                       "jobs.create"}  # a long-text job: its POST only; reading its progress is not synthesis
# Changing the voice library needs TTS_ADMIN_KEY when it is set (else the API key).
ADMIN_ENDPOINTS = {"custom_voices.create", "custom_voices.delete"}


def _presented_key() -> str:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("kyutai-api-key", "") or request.headers.get("X-API-Key", "")


def key_is_valid(settings: Settings, presented: str, key: str | None = None) -> bool:
    """Constant-time comparison, so the key cannot be guessed byte by byte from timings."""
    expected = settings.api_key if key is None else key
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def required_key(settings: Settings) -> str:
    """The key this request needs: the admin key for the voice library's changes when set, else the API key."""
    if request.endpoint in ADMIN_ENDPOINTS:
        return settings.admin_key or settings.api_key
    return settings.api_key


def client_key() -> str:
    """The client's address (after ProxyFix when proxies are trusted); IPv6 by its /64 network,
    since one host is usually given a whole /64 and could otherwise rotate addresses."""
    address = request.remote_addr or "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def is_synthesis() -> bool:
    return (request.blueprint or "") in SYNTHESIS_BLUEPRINTS or request.endpoint in SYNTHESIS_ENDPOINTS


def may_see_details() -> bool:
    """Without a key everything is public; with one, details need it (checked in `_authenticate`)."""
    return not current_app.extensions["tts_service"].settings.api_key or bool(g.get("key_ok"))


class AuthThrottle:
    """Wrong API keys per client in a moving window (TTS_AUTH_FAIL_LIMIT)."""

    def __init__(self, limit: str):
        self.items = parse_many(limit) if limit else []
        self.window = MovingWindowRateLimiter(MemoryStorage())

    def locked(self, client: str) -> bool:
        return any(not self.window.test(item, "auth-fail", client) for item in self.items)

    def failed(self, client: str) -> None:
        for item in self.items:
            self.window.hit(item, "auth-fail", client)

    def retry_after(self, client: str) -> int:
        resets = [self.window.get_window_stats(item, "auth-fail", client).reset_time for item in self.items
                  if not self.window.test(item, "auth-fail", client)]
        return max(1, int(max(resets, default=time.time()) - time.time() + 1))


def _waits(retry_after: str | None) -> bool:
    """A Retry-After that is absent, a date, or at least one second."""
    if retry_after is None:
        return True
    try:
        return int(retry_after) >= 1
    except ValueError:
        return not retry_after.strip().lstrip("-").isdigit()


def install(app: Flask, settings: Settings, metrics=None) -> Limiter:
    if settings.trust_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trust_proxy, x_proto=settings.trust_proxy)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()] or ["*"]
    CORS(app, origins=origins if origins != ["*"] else "*", send_wildcard=origins == ["*"],
         expose_headers=["X-Request-Id", "X-Sample-Rate", "X-TTS-Provider", "X-TTS-Model", "X-Cache",
                         "Retry-After"],
         allow_headers=["Content-Type", "Authorization", "X-Request-Id"], max_age=600)
    throttle = AuthThrottle(settings.auth_fail_limit)

    def is_open() -> bool:
        return (request.method == "OPTIONS" or request.endpoint in OPEN_ENDPOINTS
                or (request.blueprint or "") in OPEN_BLUEPRINTS or request.endpoint is None)

    def reject(reason: str) -> None:
        if metrics is not None:
            metrics.rejected.labels(reason).inc()

    @app.before_request
    def _authenticate():
        g.started = time.perf_counter()
        expected = required_key(settings)
        if not expected or request.method == "OPTIONS":
            return None
        websocket = request.blueprint == "websocket"
        # WebSocket clients may send the key in the query (browsers cannot set headers there).
        presented = _presented_key() or (request.args.get("api_key", "") or request.args.get("auth_id", "")
                                         if websocket else "")
        needs_key = not is_open()
        if not needs_key and not presented:
            return None  # an open endpoint asked without a key: it answers without details
        client = client_key()
        if throttle.locked(client):
            if needs_key or websocket:
                g.auth_throttled = True
                reject("auth_throttled")
                raise ApiError(429, "Too many wrong API keys from this address; try again later.",
                               headers={"Retry-After": str(throttle.retry_after(client))})
            return None  # /health and the like still answer, without details
        if key_is_valid(settings, presented, expected):
            g.key_ok = True
            return None
        throttle.failed(client)
        if needs_key:
            reject("unauthorized")
            which = "admin key" if settings.admin_key and request.endpoint in ADMIN_ENDPOINTS else "API key"
            raise ApiError(401, f"Missing or wrong {which}: send 'Authorization: Bearer <key>'.",
                           headers={"WWW-Authenticate": 'Bearer realm="tts"'})
        return None  # a WebSocket answers in-protocol; an open endpoint without details

    @app.after_request
    def _retry_after_only_on_refusals(response: Response) -> Response:
        # Registered before the limiter's own hook, so it runs after it (Flask runs them in reverse).
        if response.status_code not in (429, 503):
            response.headers.pop("Retry-After", None)
        elif not _waits(response.headers.get("Retry-After")):
            # At the edge of a window the limiter says "0": that tells clients to retry at once.
            response.headers["Retry-After"] = "1"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    limiter = Limiter(client_key, app=app, storage_uri="memory://", headers_enabled=True,
                      default_limits=[settings.rate_limit] if settings.rate_limit else [],
                      default_limits_exempt_when=lambda: is_open() or is_synthesis(),
                      enabled=bool(settings.rate_limit))
    if settings.rate_limit:
        # Call `install` after the blueprints are registered: the budget is applied to them by name.
        budget = limiter.shared_limit(settings.rate_limit, scope="synthesis", override_defaults=False,
                                      exempt_when=lambda: request.method == "OPTIONS" or not is_synthesis())
        synthesis_blueprints = SYNTHESIS_BLUEPRINTS | {endpoint.split(".")[0] for endpoint in SYNTHESIS_ENDPOINTS}
        for name, blueprint in app.blueprints.items():
            if name in synthesis_blueprints:
                budget(blueprint)

    @app.after_request
    def _access_log(response: Response) -> Response:
        started = g.get("started")
        rid = request_id()
        path, method = log_safe(request.path), log_safe(request.method)
        client = log_safe(request.remote_addr) if not response.is_streamed else "-"

        def line():
            elapsed = (time.perf_counter() - started) * 1000 if started else 0.0
            outcome = "ok" if response.status_code < 400 else "refused" if response.status_code < 500 else "failed"
            access_log.info("%s %s %s %d %.0fms %s client=%s", rid, method, path, response.status_code,
                            elapsed, outcome, client)

        if response.is_streamed:
            response.call_on_close(line)
        else:
            line()
        if response.status_code == 429 and metrics is not None and not g.get("auth_throttled"):
            metrics.rejected.labels("rate_limited").inc()
        return response

    return limiter

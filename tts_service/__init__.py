"""A self-hosted speech service on Kyutai's open TTS models."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from . import openapi, security
from .cache import AudioCache
from .config import Settings
from .metrics import Metrics
from .errors import register_error_handlers
from .routing import Router

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, start: bool = True, **overrides: Any) -> Flask:
    """Build the Flask app; with `start`, the workers start (and load models when preloading)."""
    settings = settings or Settings.from_env(**overrides)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["tts_settings"] = settings
    app.extensions["tts_cache"] = AudioCache(settings.cache_bytes) if settings.cache_bytes else None
    metrics = Metrics()
    app.extensions["tts_metrics"] = metrics
    router = Router(settings, metrics=metrics)
    app.extensions["tts_router"] = router
    register_error_handlers(app)
    app.extensions["tts_limiter"] = security.install(app, settings, metrics)
    metrics.install(app)

    from .routes import health, openai as openai_routes, stream, tts, voices, web
    app.register_blueprint(health.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(openai_routes.bp)
    app.register_blueprint(voices.bp)
    app.register_blueprint(tts.bp)
    app.register_blueprint(stream.bp)
    app.register_blueprint(openapi.bp)
    from .routes import websocket
    app.register_blueprint(websocket.bp)

    if start:
        if settings.wyoming_port:
            from .session import session_slots
            from .wyoming import install as install_wyoming
            app.extensions["tts_wyoming"] = install_wyoming(settings, router, session_slots(app))
        router.start()
    return app

"""A self-hosted speech service on Kyutai's open TTS models."""

from __future__ import annotations

from typing import Any

from flask import Flask

from .routes import openapi
from .routes import security
from .config import Settings
from .routes.errors import register_error_handlers
from .heap import cap_arenas
from .service import Service, get_service

__all__ = ["create_app", "get_service", "Service"]


def create_app(settings: Settings | None = None, *, service: Service | None = None, **overrides: Any) -> Flask:
    """Build the Flask app around a service; nothing starts here (see `Service.start`)."""
    cap_arenas()  # before the service's threads allocate: see heap.py
    settings = service.settings if service is not None else settings or Settings.from_env(**overrides)
    service = service or Service(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["tts_service"] = service
    register_error_handlers(app)
    service.metrics.install(app)

    # kyutai and ws_json add their routes to the shared WebSocket blueprint (one key check, one budget).
    from .routes import (custom_voices, health, kyutai, openai as openai_routes, stream, tts, voices, web,  # noqa: F401
                         websocket, ws_json)
    for blueprint in (health.bp, web.bp, openai_routes.bp, voices.bp, custom_voices.bp, tts.bp, stream.bp, openapi.bp,
                      websocket.bp):
        app.register_blueprint(blueprint)
    security.install(app, settings, service.metrics)  # after the blueprints: it budgets them by name
    return app

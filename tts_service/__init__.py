"""A self-hosted speech service on Kyutai's open TTS models."""

from __future__ import annotations

from typing import Any

from flask import Flask

from .config import Settings
from .heap import cap_arenas
from .routes import (custom_voices, health, jobs, kyutai, normalize, openai as openai_routes, openapi, security,
                     stream, tts, voices, web, websocket, ws_json)
from .routes.errors import register_error_handlers
from .routes.wyoming_server import WyomingServer
from .jobs.runner import JobRunner
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
    assert kyutai.bp is ws_json.bp is websocket.bp
    for blueprint in (health.bp, web.bp, openai_routes.bp, voices.bp, custom_voices.bp, tts.bp, stream.bp, normalize.bp,
                      openapi.bp, websocket.bp, jobs.bp):
        app.register_blueprint(blueprint)
    security.install(app, settings, service.metrics)  # after the blueprints: it budgets them by name
    if settings.resolved_wyoming_uri() and not any(isinstance(door, WyomingServer) for door in service.doors):
        service.doors.append(WyomingServer(service))
    if settings.job_store and not any(isinstance(door, JobRunner) for door in service.doors):
        service.doors.append(JobRunner(service))  # long-text jobs, run in the background
    return app

"""GET /health: is the service ready to speak, and with what.

Open to anyone. With an API key set, an answer without the key says only the status (200 when
ready, 503 otherwise); engines, models, devices and errors need the key. Local paths never show:
a model loaded from a directory is named by the directory's last component.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..logs import public_model_id, redact_paths
from .security import may_see_details
from ..service import get_service

bp = Blueprint("health", __name__)


def _details(router, settings) -> dict:
    engines = []
    for key, scheduler in router.schedulers.items():
        engine = scheduler.engine
        entry = {
            "name": key,
            "provider": engine.provider,
            "model": public_model_id(engine.model_id),
            "device": engine.device,
            "status": {"ready": "ok", "idle": "idle"}.get(engine.state, engine.state),
            "languages": router.languages_of(key),
            "queue_depth": scheduler.queue_depth,
            "active": scheduler.active,
            "slots": engine.max_slots,
        }
        headroom = scheduler.realtime_headroom
        if headroom is not None:
            entry["realtime_headroom"] = round(headroom, 2)  # times faster than real time, this batch (idle: one)
        if engine.error:
            entry["error"] = redact_paths(str(engine.error))
        engines.append(entry)
    primary = router.routes.get(settings.default_language) or next(iter(router.routes.values()), None)
    body = {
        "model": public_model_id(primary.engine.model_id) if primary else None,
        "provider": primary.engine.provider if primary else None,
        "device": primary.engine.device if primary else settings.resolved_device(),
        "languages": {lang: route.engine.provider for lang, route in sorted(router.routes.items())},
        "loaded": sorted(lang for lang, route in router.routes.items() if route.engine.is_loaded),
        "engines": engines,
    }
    errors = [f"{e['name']}: {e['error']}" for e in engines if e.get("error")]
    if errors:
        body["error"] = "; ".join(errors)
    return body


@bp.get("/health")
def health():
    service = get_service()
    router, settings = service.router, service.settings
    status = router.status()
    body = {"status": status}
    if may_see_details():
        body.update(_details(router, settings))
    response = jsonify(body)
    response.status_code = 200 if status == "ok" else 503
    if status == "loading":
        response.headers["Retry-After"] = "10"
    return response

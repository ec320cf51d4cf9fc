"""GET /voices: per language, the voices that can be asked for and the default one."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..logs import public_model_id
from ..service import get_service

bp = Blueprint("voices", __name__)


@bp.get("/voices")
def voices():
    router = get_service().router
    languages = {}
    for language, route in sorted(router.routes.items()):
        names, default = route.engine.voices(language)
        languages[language] = {"engine": route.engine.provider, "model": public_model_id(route.engine.model_id),
                               "voices": names, "default": default}
    return jsonify({"languages": languages})

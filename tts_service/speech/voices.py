"""The one rule for a request's language and voice.

- A language named by the client is spoken (`es-ES`, `ES` and `es_419` all mean `es`).
- A voice without a language: the voice's own language, the default language first when it has
  that voice, else the first language (alphabetically) that does.
- Neither: `TTS_DEFAULT_LANGUAGE` with its default voice.
A voice the chosen language does not have is refused (`strict`) or replaced by that language's
default voice (`fallback`, which Kyutai's protocol documents and moshi-server does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..logs import public_model_id
from ..routing import Route, Router, UnsupportedLanguageError, normalize_language
from .refusals import BAD_REQUEST, UNKNOWN_VOICE, Refusal, unknown_voice_message

logger = logging.getLogger(__name__)

STRICT = "strict"
FALLBACK = "fallback"


@dataclass(frozen=True)
class Resolved:
    route: Route
    voice: str | None  # None: the route's default voice
    custom_id: str | None = None  # a voice made from a recording: its id (a name may be made again)

    @property
    def language(self) -> str:
        return self.route.language


def voice_languages(router: Router, voice: str) -> list[str]:
    """The routed languages whose engine knows `voice`, in order."""
    known = []
    for language, route in sorted(router.routes.items()):
        try:
            if route.engine.knows_voice(language, voice):
                known.append(language)
        except Exception:  # a voice listing that fails says nothing about this voice
            continue
    return known


def route_for(router: Router, language) -> Route:
    if not isinstance(language, str) or not language.strip():
        raise Refusal(BAD_REQUEST, "'language' must be a language code such as 'es' or 'en'.",
                      param="language")
    try:
        return router.route(normalize_language(language))
    except UnsupportedLanguageError as exc:
        raise Refusal(BAD_REQUEST, str(exc), supported_languages=exc.supported, param="language",
                      code="unsupported_language") from None


def resolved_for(router: Router, request) -> Resolved:
    """A request's language and voice, resolved once and carried with it (cache key, session, adapter)."""
    if request.resolved is None:
        request.resolved = resolve(router, request.language, request.voice, request.voice_policy)
    return request.resolved


def resolve(router: Router, language: str | None, voice: str | None, policy: str = STRICT) -> Resolved:
    """The route and voice for what the client named; raises a Refusal (bad request, unknown voice)."""
    if voice is not None and (not isinstance(voice, str) or not voice.strip() or len(voice) > 300):
        raise Refusal(BAD_REQUEST, "'voice' must be a non-empty string; GET /voices lists them.", param="voice")
    voice = voice.strip() if voice else None
    default = router.settings.default_language
    custom = router.voice_library.lookup(voice) if voice and router.voice_library is not None else None
    if custom is not None:
        return _resolve_custom(router, language, custom)
    if language is None and voice:
        languages = voice_languages(router, voice)
        if languages:
            language = default if default in languages else languages[0]
    route = route_for(router, language if language is not None else default)
    if voice and not route.engine.knows_voice(route.language, voice):
        names, _ = route.engine.voices(route.language)
        if policy != FALLBACK:
            raise Refusal(UNKNOWN_VOICE, unknown_voice_message(voice, names),
                          valid_voices=names, language=route.language, voice=voice, param="voice")
        logger.warning("voice %r is not available for %s; using the default voice", voice[:100], route.language)
        voice = None
    return Resolved(route, voice)


def _resolve_custom(router: Router, language: str | None, custom) -> Resolved:
    """A voice made from a recording (by name or id): spoken by the Pocket TTS languages that have it.

    DSM cannot speak one: Kyutai has not released its voice cloning, so that is a bad request
    whatever the policy, never a silent fallback to another voice."""
    if language is None:
        languages = voice_languages(router, custom.name)
        default = router.settings.default_language
        language = (default if default in languages else languages[0]) if languages else default
    route = route_for(router, language)
    engine = route.engine
    if not engine.capabilities.voice_cloning:
        raise Refusal(BAD_REQUEST, f"Voice {custom.name!r} is a custom voice, and {route.language!r} is spoken by "
                                   f"{engine.provider}, whose voice cloning Kyutai has not released; ask for a "
                                   f"Pocket TTS language: {', '.join(custom.public()['languages']) or 'none'}.",
                      param="voice", code="voice_cloning_unavailable")
    made_for = custom.states.get(route.language, {}).get("model")
    if not engine.knows_voice(route.language, custom.name) and made_for and made_for != engine.model_id:
        raise Refusal(BAD_REQUEST, f"Custom voice {custom.name!r} was made for another {route.language!r} model "
                                   f"({public_model_id(made_for)}; this server now runs "
                                   f"{public_model_id(engine.model_id)}), and its recording was not kept. Make it "
                                   "again with POST /v1/audio/voices from a recording, or serve the model it was "
                                   "made for.", param="voice", code="voice_made_for_another_model")
    if not engine.knows_voice(route.language, custom.name):
        raise Refusal(BAD_REQUEST, f"Custom voice {custom.name!r} was made while the {route.language!r} model was "
                                   f"not loaded, so that language cannot speak it; it speaks: "
                                   f"{', '.join(custom.public()['languages']) or 'none'}.",
                      param="voice", code="voice_not_in_language")
    return Resolved(route, custom.name, custom.id)

"""Which engine speaks which language, and the one scheduler (worker) per loaded model."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .config import Settings
from .engines.base import Engine
from .scheduler import Scheduler
from .threads import set_torch_threads

logger = logging.getLogger(__name__)

POCKET_ONLY = ("es", "de", "it", "pt")


class UnsupportedLanguageError(ValueError):
    def __init__(self, language: str, supported: list[str]):
        super().__init__(f"Language {language!r} is not supported. Supported languages: {', '.join(supported)}.")
        self.language = language
        self.supported = supported


def normalize_language(value: str) -> str:
    """'es-ES', 'ES' and 'es_419' all mean 'es'."""
    return value.strip().replace("_", "-").split("-")[0].lower()


def default_routes(settings: Settings, cuda: bool) -> dict[str, str]:
    """Spanish, German, Italian, Portuguese on Pocket TTS; English and French on DSM with a GPU."""
    routes: dict[str, str] = {}
    for language in settings.pocket_languages:
        routes[language] = "pocket"
    if cuda:
        for language in settings.dsm_languages:
            routes[language] = "dsm"
    for language, engine in (settings.routes or {}).items():
        routes[language] = engine
    return routes


@dataclass
class Route:
    language: str
    key: str
    scheduler: Scheduler

    @property
    def engine(self) -> Engine:
        return self.scheduler.engine


class Router:
    """Builds only the engines the routes use, each behind its own scheduler."""

    def __init__(self, settings: Settings, cuda: bool | None = None, metrics=None):
        self.settings = settings
        if cuda is None:
            cuda = settings.resolved_device().startswith("cuda")
        self.routes_config = default_routes(settings, cuda)
        self.schedulers: dict[str, Scheduler] = {}
        self.routes: dict[str, Route] = {}
        # Pocket TTS languages outside this set load on their first request and unload when idle.
        self.preload_languages = set(settings.pocket_preload_languages
                                     or (settings.default_language, "en"))
        self.lazy: set[str] = set()
        self.voice_library = None  # the voices made from recordings (voice_library.py), set by the service
        for language, kind in sorted(self.routes_config.items()):
            key = kind if kind == "dsm" else f"pocket-{language}"
            if kind == "dsm" and language not in settings.dsm_languages:
                raise ValueError(f"TTS_ROUTES sends {language!r} to dsm, but TTS_DSM_LANGUAGES is "
                                 f"{','.join(settings.dsm_languages)}")
            if key not in self.schedulers:
                hooks = {}
                if metrics is not None:
                    hooks = {"on_step": metrics.batch_size.labels(key).observe,
                             "on_done": lambda job, key=key: metrics.observe_job(key, job.request.language, job)}
                if kind == "pocket" and language not in self.preload_languages:
                    self.lazy.add(key)
                    hooks["idle_unload"] = settings.pocket_idle_unload
                self.schedulers[key] = Scheduler(
                    self._build(kind, language), max_queue=settings.max_queue,
                    batch_wait=settings.batch_wait_ms / 1000.0, timeout=settings.request_timeout, name=key,
                    realtime_margin=settings.realtime_margin,
                    **hooks)
            self.routes[language] = Route(language, key, self.schedulers[key])

    def _build(self, kind: str, language: str) -> Engine:
        if kind == "dsm":
            from .engines.dsm.engine import DsmEngine
            return DsmEngine(self.settings)
        from .engines.pocket.engine import PocketEngine
        return PocketEngine(self.settings, language)

    def start(self) -> None:
        set_torch_threads(self.settings, pocket="pocket" in self.routes_config.values())
        for key, scheduler in self.schedulers.items():
            scheduler.start(preload=self.settings.preload and key not in self.lazy)

    def stop(self, timeout: float | None = None) -> None:
        for scheduler in self.schedulers.values():
            scheduler.stop(timeout)

    @property
    def languages(self) -> list[str]:
        return sorted(self.routes)

    def languages_of(self, key: str) -> list[str]:
        """The languages one engine (a scheduler's key) speaks here."""
        return sorted(language for language, route in self.routes.items() if route.key == key)

    def route(self, language: str) -> Route:
        try:
            return self.routes[language]
        except KeyError:
            raise UnsupportedLanguageError(language, self.languages) from None

    def status(self) -> str:
        states = [s.engine.state for s in self.schedulers.values()]
        if any(state == "error" for state in states):
            return "error"
        # A language loading for its first request is not the service loading.
        if any(s.engine.state == "loading" for key, s in self.schedulers.items() if key not in self.lazy):
            return "loading"
        return "ok"

"""The running service: engines behind their schedulers, the audio cache, session slots, Wyoming.

`create_app` only builds one and hangs it on the app; the entry point (`tts_server.py`),
gunicorn's worker start (`gunicorn.conf.py`) or a test fixture calls `start`.
"""

from __future__ import annotations

import logging

from flask import current_app

from .audio.cache import AudioCache
from .config import ConfigError, Settings
from .engines.hub import probe_at_start
from .metrics import Metrics
from .routing import Router
from .text.lexicon import EMPTY, Lexicon, LexiconError
from .speech.slots import SessionSlots
from .voices.library import VoiceLibrary

logger = logging.getLogger(__name__)


class Service:
    """Everything a request needs, built from the settings; nothing runs until `start`."""

    def __init__(self, settings: Settings, *, cuda: bool | None = None):
        self.settings = settings
        self.metrics = Metrics()
        self.router = Router(settings, cuda=cuda, metrics=self.metrics)
        self.cache = AudioCache(settings.cache_bytes) if settings.cache_bytes else None
        self.slots = SessionSlots(settings.session_slot_share)
        self.voice_library = VoiceLibrary(settings, self.router)
        self.lexicon = load_lexicon(settings)
        self.doors: list = []  # servers beside the HTTP app (Wyoming), started and stopped with the workers
        self.started = False

    def start(self) -> "Service":
        """Start the workers (loading models when preloading), then the other doors.

        A door that cannot listen (its port taken) raises a ConfigError, after the workers stopped again."""
        if self.started:
            return self
        self.started = True
        self.voice_library.open()  # before the models load: they read their voices from it
        probe_at_start([scheduler.engine.model_id for scheduler in self.router.schedulers.values()])
        self.router.start()
        for door in self.doors:
            try:
                door.start()
            except BaseException:
                self.stop(timeout=30)
                raise
        return self

    def reload_lexicon(self) -> bool:
        """Read TTS_LEXICON again (on SIGHUP); a file that became invalid keeps the last good one."""
        try:
            self.lexicon = load_lexicon(self.settings)
        except ConfigError as exc:
            logger.error("the lexicon was not reloaded: %s", exc)
            return False
        logger.info("lexicon reloaded: %d entries", len(self.lexicon))
        return True

    def stop(self, timeout: float | None = None) -> None:
        """Close the other doors first, then let the workers finish what they accepted."""
        for door in reversed(self.doors):
            door.stop(timeout=10.0 if timeout is None else min(timeout, 10.0))
        self.router.stop(timeout)
        self.voice_library.close()


def load_lexicon(settings: Settings) -> Lexicon:
    """The operator's lexicon (TTS_LEXICON), or none; a ConfigError names the file and the line."""
    if not settings.lexicon:
        return EMPTY
    try:
        return Lexicon.load(settings.lexicon)
    except LexiconError as exc:
        raise ConfigError(f"TTS_LEXICON: {exc}") from None


def get_service(app=None) -> Service:
    """The app's service: the one accessor every view uses."""
    return (app or current_app).extensions["tts_service"]

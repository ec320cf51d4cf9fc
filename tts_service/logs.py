"""Logging for the service processes: stdout and a rotating file, level from the settings."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from .config import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """Called by the entry points (tts_server.py, gunicorn), never by create_app or tests."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if settings.log_file:
        handlers.append(logging.handlers.RotatingFileHandler(
            settings.log_file, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"))
    formatter = logging.Formatter(FORMAT)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # The access log line replaces werkzeug's own.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

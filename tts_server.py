#!/usr/bin/env python3
"""Kyutai TTS service: `python tts_server.py` loads the models and serves on HOST:PORT (0.0.0.0:5001).

For production, gunicorn imports the factory instead: `gunicorn 'tts_server:create_app()'`.
"""

from __future__ import annotations

import logging
import signal
import sys

from tts_service import create_app, get_service
from tts_service.config import ConfigError, Settings
from tts_service.logs import configure_logging

__all__ = ["create_app", "main"]


def main() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        app = create_app(settings)
        service = get_service(app).start()
    except ValueError as exc:  # ConfigError too: a bad route, a Wyoming port in use
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGHUP, lambda *_: service.reload_lexicon())  # the lexicon, edited in place
    logging.getLogger("tts_server").info("serving on http://%s:%d", settings.host, settings.port)
    app.run(host=settings.host, port=settings.port, threaded=True, debug=False, use_reloader=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

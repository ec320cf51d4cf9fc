"""gunicorn settings: one process owns the models, threads carry the HTTP I/O.

    .venv/bin/gunicorn --config gunicorn.conf.py 'tts_server:create_app()'

On SIGTERM gunicorn stops accepting connections, lets in-flight requests (streams included)
finish for up to `graceful_timeout` seconds, then the worker's models are released.
"""

import sys

from tts_service.config import ConfigError, Settings
from tts_service.logs import configure_logging

try:
    _settings = Settings.from_env()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

bind = f"{_settings.host}:{_settings.port}" if ":" not in _settings.host else f"[{_settings.host}]:{_settings.port}"
workers = 1  # never more: each process would load its own copy of every model
worker_class = "gthread"
threads = _settings.http_threads
timeout = 120
graceful_timeout = int(_settings.request_timeout) + 10
keepalive = 5
accesslog = None  # the service writes its own access line, with the request id
capture_output = True


def on_starting(server):
    configure_logging(_settings)


def post_worker_init(worker):
    """The worker's app is built: its service (workers, models, Wyoming) starts here, in the worker."""
    configure_logging(_settings)
    worker.wsgi.extensions["tts_service"].start()


def worker_exit(server, worker):
    app = getattr(worker, "wsgi", None)
    service = getattr(app, "extensions", {}).get("tts_service") if app is not None else None
    if service is not None:
        service.stop(timeout=graceful_timeout)

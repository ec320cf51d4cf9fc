"""Logging for the service processes, and what log lines and open answers may contain.

Stdout and a rotating file, level from the settings.
One record is one line: control characters in a message (a request path with %0A, an escape
sequence) are written escaped, and the lines of a traceback follow indented, so that nothing a
client sends can start a line that passes for a record of its own.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from pathlib import Path

from .config import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
CONTINUATION = "  | "


def log_safe(value: object) -> str:
    """Control characters written as escapes (\\x0a); escaping twice changes nothing more."""
    def escape(match: re.Match) -> str:
        char = match.group()
        return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    return _CONTROL.sub(escape, str(value))


class OneLineFormatter(logging.Formatter):
    """The message on one line; traceback and stack lines indented under it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = log_safe(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return self._indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self._indented(super().formatStack(stack_info))

    @staticmethod
    def _indented(text: str) -> str:
        return "\n".join(CONTINUATION + log_safe(line) for line in text.splitlines())


def configure_logging(settings: Settings) -> None:
    """Called by the entry points (tts_server.py, gunicorn), never by create_app or tests."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if settings.log_file:
        handlers.append(logging.handlers.RotatingFileHandler(
            settings.log_file, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"))
    formatter = OneLineFormatter(FORMAT)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # The access log line replaces werkzeug's own.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


# -- what open answers and log lines may contain -----------------------------------------------
_LOCAL_PATH = re.compile(r"(?<![\w.:/~-])~?/(?:[^\s'\"()\[\],;/]+/)+[^\s'\"()\[\],;/]*")


def redact_paths(text: str) -> str:
    """Local paths in a message (e.g. a model that failed to load) shortened to their last part."""
    def last_part(match: re.Match) -> str:
        parts = [p for p in match.group().split("/") if p and p != "~"]
        return parts[-1] if parts else match.group()
    return _LOCAL_PATH.sub(last_part, text)


def public_model_id(model_id: str | None) -> str | None:
    """A Hugging Face repo id as it is; a local directory or file by its last path component."""
    if not model_id:
        return model_id
    if "://" not in model_id and (model_id.startswith(("/", "~", ".")) or os.path.exists(model_id)):
        return Path(model_id).expanduser().name or model_id
    return model_id

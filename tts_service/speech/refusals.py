"""One refusal type for everything a request can be told instead of speech, whatever the door.

Each protocol maps a refusal's `kind` to its own words with one small table (an HTTP status, a
WebSocket close code, a Wyoming error code); the message is always safe to show to the client.
"""

from __future__ import annotations

BAD_REQUEST = "bad_request"
TOO_LARGE = "too_large"
UNKNOWN_VOICE = "unknown_voice"
FORBIDDEN = "forbidden"  # switched off on this server
CONFLICT = "conflict"  # clashes with what is there (a name taken, a store full)
NOTHING_TO_SAY = "nothing_to_say"
BUSY = "busy"
UNAVAILABLE = "unavailable"
TIMED_OUT = "timed_out"
INTERNAL = "internal"
KINDS = (BAD_REQUEST, TOO_LARGE, UNKNOWN_VOICE, FORBIDDEN, CONFLICT, NOTHING_TO_SAY, BUSY, UNAVAILABLE, TIMED_OUT,
         INTERNAL)

NOTHING_SPEAKABLE = ("The text has nothing speakable left once punctuation, symbols and markup are removed; "
                     "send words to speak.")


def unknown_voice_message(voice: str, valid: list[str]) -> str:
    return f"Unknown voice {voice!r}. Valid voices: {', '.join(valid) or 'none'}."


class Refusal(Exception):
    """Why a request gets no (more) speech: a `kind` from KINDS and a message safe to show.

    `retry_after` (seconds) says when trying again makes sense; `details` are extra fields a
    protocol may show (the valid voices, the supported languages, the limit)."""

    def __init__(self, kind: str, message: str, *, retry_after: int | None = None, **details):
        if kind not in KINDS:
            raise ValueError(f"unknown refusal kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.details = details

    def __repr__(self) -> str:
        return f"Refusal({self.kind!r}, {self.message!r})"


def nothing_to_say() -> Refusal:
    return Refusal(NOTHING_TO_SAY, NOTHING_SPEAKABLE)

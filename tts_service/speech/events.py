"""What a speech session says, as tagged events: audio, word, done, error."""

from __future__ import annotations

import queue
from dataclasses import dataclass, field

import numpy as np

from .refusals import Refusal


@dataclass
class Audio:
    pcm: np.ndarray  # float32 mono at the session's sample rate
    kind: str = field(default="audio", init=False)


@dataclass
class Word:
    text: str
    start: float  # seconds from the start of the session's audio
    stop: float
    written: str | None = None  # what the user wrote that this word reads, "" for a later word of it (`written.py`)
    kind: str = field(default="word", init=False)

    def as_dict(self) -> dict:
        """{"word", "start", "end"}, and "written" where the word reads something written otherwise."""
        out = {"word": self.text, "start": round(self.start, 3), "end": round(self.stop, 3)}
        if self.written is not None:
            out["written"] = self.written
        return out


@dataclass
class Done:
    duration: float
    truncated: bool = False
    kind: str = field(default="done", init=False)


@dataclass
class Error:
    refusal: Refusal
    kind: str = field(default="error", init=False)

    @property
    def message(self) -> str:
        return self.refusal.message


Event = Audio | Word | Done | Error


class EventQueue:
    """A session's events for a reader in another thread (an HTTP body, an asyncio relay)."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()

    def __call__(self, event: Event) -> None:
        self._queue.put(event)

    def get(self, timeout: float | None = None) -> Event:
        """The next event; raises queue.Empty after `timeout`."""
        return self._queue.get(timeout=timeout)

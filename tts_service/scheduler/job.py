"""One request in flight between an HTTP thread and its engine's worker: its events, in order."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..engines.base import SynthesisRequest, WordTiming

_ids = itertools.count(1)


class JobPreempted(RuntimeError):
    """Background work gave its row to a live request; it is made again later, whole."""


class JobCancelled(RuntimeError):
    """The job was dropped before it finished (client left or deadline passed)."""


@dataclass
class JobResult:
    audio: np.ndarray
    sample_rate: int
    words: list[WordTiming]
    truncated: bool


class Job:
    """One request in flight; the worker writes its events, the HTTP thread reads them."""

    def __init__(self, request: SynthesisRequest, sample_rate: int, timeout: float):
        self.id = next(_ids)
        self.request = request
        self.sample_rate = sample_rate
        self.created = time.monotonic()
        self.deadline = self.created + timeout
        self.first_audio_at: float | None = None
        self.finished_at: float | None = None
        self.samples = 0
        self.truncated = False
        self.held = False  # it waited for a row that keeps the batch real time
        self.admitted_at: float | None = None
        self.admitted_step = 0
        self.words: list[WordTiming] = []
        self._events: queue.Queue = queue.Queue()
        self._cancelled = threading.Event()
        self._done = False
        self.completed = False
        self._text_feed: queue.Queue = queue.Queue()
        self.text_closed = not request.streaming_text

    # -- text arriving while audio is generated ----------------------------------------------
    def feed_text(self, piece: object) -> None:
        """More words for a streaming-text job, as the engine's `prepare_piece` made them (thread-safe)."""
        if self.text_closed:
            raise ValueError("text was already ended")
        self._text_feed.put(piece)

    def end_text(self) -> None:
        """No more words will come: the job may finish after the last one."""
        if not self.text_closed:
            self.text_closed = True
            self._text_feed.put(None)

    def take_text(self) -> list[object | None]:
        """For the worker: the text pieces that arrived since the last call; None means the end."""
        pieces = []
        while True:
            try:
                pieces.append(self._text_feed.get_nowait())
            except queue.Empty:
                return pieces

    # -- written by the worker -------------------------------------------------------------
    def push_audio(self, pcm: np.ndarray) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
        self.samples += len(pcm)
        self._events.put(("audio", pcm))

    def push_word(self, word: str, start: float, end: float | None = None) -> None:
        if self.words and self.words[-1].end is None:
            self.words[-1].end = start
        timing = WordTiming(word, start, end)
        self.words.append(timing)
        self._events.put(("word", timing))

    def finish(self, truncated: bool = False) -> None:
        if self._done:
            return
        self._done = True
        self.completed = True
        self.truncated = truncated
        self.finished_at = time.monotonic()
        if self.words and self.words[-1].end is None:
            self.words[-1].end = round(self.samples / self.sample_rate, 3)
        self._events.put(("done", truncated))

    def fail(self, error: BaseException) -> None:
        if self._done:
            return
        self._done = True
        self.finished_at = time.monotonic()
        self._events.put(("error", error))

    # -- read by the requester -------------------------------------------------------------
    def cancel(self) -> None:
        """The client left: the worker frees the slot at its next step."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def done(self) -> bool:
        return self._done

    def expired(self, now: float | None = None) -> bool:
        return (now or time.monotonic()) > self.deadline

    def events(self) -> Iterator[tuple[str, object]]:
        """Yield ("audio", pcm) and ("word", WordTiming) until done; re-raise the worker's error."""
        while True:
            remaining = self.deadline - time.monotonic() + 5.0
            try:
                kind, payload = self._events.get(timeout=max(remaining, 0.1))
            except queue.Empty:
                self.cancel()
                raise TimeoutError("synthesis took longer than the request timeout") from None
            if kind == "done":
                return
            if kind == "error":
                raise payload  # type: ignore[misc]
            yield kind, payload

    def result(self) -> JobResult:
        chunks = [payload for kind, payload in self.events() if kind == "audio"]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return JobResult(audio.astype(np.float32, copy=False), self.sample_rate, list(self.words),
                         self.truncated)

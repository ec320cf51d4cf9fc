"""The engine interface the scheduler drives, and the request it generates for."""

from __future__ import annotations

import abc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..speech.refusals import NOTHING_SPEAKABLE, unknown_voice_message

import numpy as np

logger = logging.getLogger(__name__)


def is_speaker_embedding(path) -> bool:
    """DSM voices are `speaker_wavs` embeddings; other .safetensors (Pocket TTS states) are not."""
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="numpy") as handle:
            return "speaker_wavs" in handle.keys()
    except Exception:
        return False


class EngineError(Exception):
    """The engine cannot serve: not loaded, failed to load, or broke."""


class RequestError(ValueError):
    """The request itself cannot be spoken: the client's 4xx, found before the job reaches a worker."""


class NothingToSayError(RequestError):
    """Nothing speakable is left once the engine's own text rules are applied."""

    def __init__(self, message: str = NOTHING_SPEAKABLE):
        super().__init__(message)


class UnknownVoiceError(RequestError):
    """The request names a voice this engine does not have."""

    def __init__(self, voice: str, valid: list[str]):
        super().__init__(unknown_voice_message(voice, valid))
        self.voice = voice
        self.valid = valid


@dataclass
class SynthesisRequest:
    """What to say and how; validated before it reaches an engine."""

    text: str
    language: str
    voice: str | None = None
    max_audio_seconds: float = 120.0
    temperature: float | None = None
    seed: int | None = None
    # When set, `text` is only the beginning: more arrives through the job's text feed.
    streaming_text: bool = False
    # A raw voice embedding ([1, dim, frames]) sent by the client instead of a voice name.
    voice_embedding: object = None
    # Someone plays the audio as it comes (a stream); False for a whole text answered at its end,
    # which takes the rows that streams leave.
    listening: bool = True
    # Part of a background job (a long document): it runs only on the capacity live requests leave.
    background: bool = False
    # Set by the engine's `prepare`: whatever it needs to start quickly in the worker.
    prepared: object = None


@dataclass
class WordTiming:
    word: str
    start: float
    end: float | None = None


@dataclass
class SlotOutput:
    """What one step made for one job: its audio, the words it began (text, start in seconds) or
    ended (text, start, end), and whether the job is done (its slot already freed). The scheduler
    hands them to the job."""

    job: Any
    audio: np.ndarray | None = None
    words: list[tuple] = field(default_factory=list)
    done: bool = False


def output_for(outputs: dict, job) -> SlotOutput:
    """The step's output for `job`, made on first use (an engine may add to it several times)."""
    if job not in outputs:
        outputs[job] = SlotOutput(job)
    return outputs[job]


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, declared by the engine, so that nothing needs to know it by name."""

    streams_text: bool = False  # takes words while it speaks (a session feeds one job as they come)
    word_times: bool = False  # reports when each word is spoken
    voice_cloning: bool = False  # makes a voice from a recording
    side_by_side_pieces: bool = False  # a whole text is split into pieces generated in one batch


@dataclass
class EngineInfo:
    provider: str
    model: str
    device: str
    sample_rate: int
    languages: tuple[str, ...]


class Engine(abc.ABC):
    """A TTS model owned by one worker thread: it holds up to `max_slots` requests at once.

    The worker calls `admit` to start a job in a free slot, `step` to advance every active job
    by one unit of audio (it returns each slot's output; the scheduler owns the jobs, their
    truncation at `max_audio_seconds` and their word ends), and `release` to drop a job
    (truncated or abandoned). Only `prepare`, `voices` and the properties may be called from
    other threads.
    """

    provider: str = ""
    kind: str = ""  # the short name clients may ask for ("dsm", "pocket")
    aliases: tuple[str, ...] = ()  # other model names clients use for it
    frame_seconds: float = 0.08  # audio one step makes for each row (both models run at 12.5 Hz)
    # Steps over which a step's cost repeats (Pocket TTS decodes its frames four at a time): a
    # batch's cost is their mean, and a new row joins only once the batch has run that many.
    steps_per_cycle: int = 1
    capabilities = Capabilities()
    frame_rate: float = 12.5

    def __init__(self) -> None:
        self.state = "idle"  # idle -> loading -> ready | error
        self.error: str | None = None
        self.load_seconds: float | None = None
        self._load_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model once; on failure keep the reason for /health and raise EngineError."""
        with self._load_lock:
            if self.state == "ready":
                return
            self.state, self.error = "loading", None
            started = time.perf_counter()
            try:
                self._load()
            except Exception as exc:
                self.state, self.error = "error", str(exc) or type(exc).__name__
                logger.exception("failed to load %s", self.model_id)
                raise EngineError(self.error) from exc
            self.load_seconds = time.perf_counter() - started
            logger.info("%s loaded in %.1f s", self.model_id, self.load_seconds)
            self.state = "ready"

    @property
    def is_loaded(self) -> bool:
        return self.state == "ready"

    @abc.abstractmethod
    def _load(self) -> None: ...

    # -- description -----------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def model_id(self) -> str: ...

    @property
    @abc.abstractmethod
    def device(self) -> str: ...

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int: ...

    @property
    @abc.abstractmethod
    def languages(self) -> tuple[str, ...]: ...

    @property
    def max_slots(self) -> int:
        return 1

    def info(self) -> EngineInfo:
        return EngineInfo(self.provider, self.model_id, self.device, self.sample_rate, self.languages)

    @abc.abstractmethod
    def voices(self, language: str) -> tuple[list[str], str | None]:
        """The voice names that can be asked for in `language`, and the default one."""

    def knows_voice(self, language: str, voice: str) -> bool:
        """Whether `voice` can be asked for in `language` (checked before any work starts)."""
        return voice in self.voices(language)[0]

    def sampling(self) -> dict:
        """The sampling settings that change its audio (part of the audio cache's key)."""
        return {}

    # -- work ------------------------------------------------------------------------------
    def prepare(self, request: SynthesisRequest) -> None:
        """Do every per-request step in the caller's thread: voice, text rules, tokens.

        Sets `request.prepared`; raises a RequestError (UnknownVoiceError, NothingToSayError...)
        for what the client sent, so that nothing a client sends can make the worker's step raise.
        """

    def prepare_piece(self, request: SynthesisRequest, text: str) -> object | None:
        """Prepare one more piece of streamed text for a started request, in the caller's thread.

        Returns what the worker feeds to the job (None when the piece has nothing to say)."""
        raise RequestError("this engine does not take streamed text")

    @abc.abstractmethod
    def admit(self, job) -> None:
        """Start `job` in a free slot."""

    @abc.abstractmethod
    def step(self) -> list[SlotOutput] | None:
        """Advance every active job by one unit: the output of each slot that made something.

        A job reported done has left its slot. Returns None when no job could advance (all are
        waiting for more text)."""

    @abc.abstractmethod
    def release(self, job) -> None:
        """Drop `job` from its slot, whatever its progress."""

    @abc.abstractmethod
    def active_jobs(self) -> list: ...

    def free_slots(self) -> int:
        return self.max_slots - len(self.active_jobs())

    def reset(self) -> None:
        """Forget every active job after a failure, so the next step starts clean."""
        for job in list(self.active_jobs()):
            self.release(job)

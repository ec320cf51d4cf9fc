"""Kyutai Pocket TTS through the pocket-tts package: Spanish, German, Italian, Portuguese, and more.

One model per language, loaded with the package's own `TTSModel.load_model` (its language config,
or a configured YAML). The package generates one request at a time and runs its own generation
and decoding threads, so the worker interleaves requests fairly instead: each step speaks one
sentence of one request, round-robin, streaming that sentence's chunks as they are decoded.
A long answer therefore never holds a short one back by more than a sentence.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import Settings
from ..hub import ModelDownloadError, download
from ..text import split_sentences
from .base import Engine, NothingToSayError, SynthesisRequest, UnknownVoiceError, is_speaker_embedding

if TYPE_CHECKING:
    from ..scheduler import Job

logger = logging.getLogger(__name__)

PACKAGE_LANGUAGES = {"en": "english", "fr": "french", "de": "german", "it": "italian",
                     "pt": "portuguese", "es": "spanish", "nl": "dutch"}
VOICE_FILES = (".wav", ".mp3", ".flac", ".ogg")
STATE_FILES = (".safetensors",)
@dataclass
class PocketPiece:
    """One chunk as the package will speak it: its own text rules applied, tokens counted."""

    text: str
    frames_after_eos: int
    tokens: list[int]


@dataclass
class PocketPrepared:
    sentences: list[PocketPiece]
    voice_name: str
    voice_source: str | Path


@dataclass
class _Active:
    job: "Job"
    sentences: collections.deque = field(default_factory=collections.deque)
    samples: int = 0


class PocketEngine(Engine):
    provider = "Kyutai Pocket TTS"

    def __init__(self, settings: Settings, language: str):
        super().__init__()
        self.settings = settings
        self.language = language
        self.package_language = PACKAGE_LANGUAGES.get(language)
        if self.package_language is None and not settings.pocket_config:
            raise ValueError(f"Pocket TTS has no model for {language!r}; "
                             f"it speaks {', '.join(sorted(PACKAGE_LANGUAGES))}")
        self._model = None
        self._voice_states: dict[str, object] = {}
        self._broken_voices: set[str] = set()
        self._active: collections.deque[_Active] = collections.deque()
        self._voice_dir = Path(settings.voice_dir).expanduser() if settings.voice_dir else None
        self._stop = threading.Event()

    # -- description -----------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        if self.settings.pocket_config:
            return self.settings.pocket_config
        return f"kyutai/pocket-tts ({self.package_language})"

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def sample_rate(self) -> int:
        return 24000

    @property
    def languages(self) -> tuple[str, ...]:
        return (self.language,)

    @property
    def max_slots(self) -> int:
        return self.settings.max_batch_size

    @property
    def _predefined_voice(self) -> str | None:
        """The package's named voice for this language, usable only with its released weights."""
        if self.settings.pocket_config:
            return None
        from pocket_tts.default_parameters import DEFAULT_VOICE_FALLBACK, DEFAULT_VOICE_FOR_LANGUAGE
        return DEFAULT_VOICE_FOR_LANGUAGE.get(self.package_language, DEFAULT_VOICE_FALLBACK)

    @cached_property
    def _custom_voices(self) -> dict[str, Path]:
        """The voice folder, read once: a new voice file is picked up at the next start."""
        if self._voice_dir is None or not self._voice_dir.is_dir():
            return {}
        return {p.stem: p for p in sorted(self._voice_dir.iterdir())
                if p.suffix.lower() in VOICE_FILES
                or (p.suffix.lower() in STATE_FILES and not is_speaker_embedding(p))}

    def voices(self, language: str) -> tuple[list[str], str | None]:
        names = [self._predefined_voice] if self._predefined_voice else []
        names += [n for n in self._custom_voices if n not in names and n not in self._broken_voices]
        default = self.settings.pocket_default_voice or (names[0] if names else None)
        return names, default

    # -- loading ---------------------------------------------------------------------------
    def _load(self) -> None:
        from pocket_tts import TTSModel

        if self.settings.pocket_config:
            config = self.settings.pocket_config
            if not config.startswith("hf://") and not Path(config).expanduser().is_file():
                raise ModelDownloadError(f"TTS_POCKET_CONFIG={config!r}: no such file.")
            self._model = download(config, "the Pocket TTS model",
                                   lambda: TTSModel.load_model(config=config), "TTS_POCKET_CONFIG")
        else:
            self._model = download("kyutai/pocket-tts", f"the Pocket TTS {self.package_language} model",
                                   lambda: TTSModel.load_model(language=self.package_language),
                                   "TTS_POCKET_LANGUAGES")
        names, default = self.voices(self.language)
        if default is None:
            raise ValueError("Pocket TTS has no voice: set TTS_POCKET_VOICE to a WAV in TTS_VOICE_DIR")
        if default not in names:
            raise ValueError(f"TTS_POCKET_VOICE={default!r} is not a voice; available: {', '.join(names)}")
        self._voice_state(self._voice_source(default))
        # Every voice is encoded once here, so that no request encodes audio in the worker.
        for name in names:
            if name == default:
                continue
            try:
                self._voice_state(self._voice_source(name))
            except Exception as exc:
                logger.warning("voice %r left out: %s", name, exc)
                self._broken_voices.add(name)

    def _voice_source(self, name: str) -> str | Path:
        custom = self._custom_voices
        if name in custom:
            return custom[name]
        return name  # a predefined voice name of the package

    def _voice_state(self, source: str | Path):
        key = str(source)
        if key not in self._voice_states:
            model = self._model
            self._voice_states[key] = download(
                "kyutai/pocket-tts", f"voice {Path(key).name!r}",
                lambda: model.get_state_for_audio_prompt(source), "TTS_POCKET_VOICE")
        return self._voice_states[key]

    # -- requests --------------------------------------------------------------------------
    def prepare(self, request: SynthesisRequest) -> None:
        names, default = self.voices(request.language)
        name = request.voice or default
        if name not in names:
            raise UnknownVoiceError(request.voice or "", names)
        pieces = self.pieces(request.text)
        if not pieces:
            raise NothingToSayError()
        request.prepared = PocketPrepared(pieces, name, self._voice_source(name))

    def pieces(self, text: str) -> list[PocketPiece]:
        """The text as the package would speak it, checked here rather than in the worker.

        Each of our sentences goes through the package's own chunking and text rules (its
        `replace_characters`, `remove_semicolons`, capitalisation and final punctuation) and its
        tokenizer. A chunk those rules leave without a letter or digit is dropped: the package
        refuses an empty prompt, and a lone mark would only be noise.
        """
        from pocket_tts.default_parameters import MAX_TOKEN_PER_CHUNK
        from pocket_tts.models.text_chunking import prepare_text_prompt, split_into_best_sentences

        model = self._model
        rules = (model.pad_with_spaces_for_short_inputs, model.remove_semicolons,
                 model.append_terminal_punctuation, model.capitalize_first_letter, model.replace_characters)
        conditioner = model.flow_lm.conditioner
        pieces = []
        for sentence in split_sentences(text):
            try:
                chunks = split_into_best_sentences(conditioner.tokenizer, sentence, MAX_TOKEN_PER_CHUNK,
                                                   *rules[:2], append_terminal_punctuation=rules[2],
                                                   capitalize_first_letter=rules[3], replace_characters=rules[4])
            except ValueError:
                continue  # empty once the package's characters are replaced
            for chunk in chunks:
                try:
                    prompt, guess = prepare_text_prompt(chunk, *rules)
                except ValueError:
                    continue
                if not any(ch.isalnum() for ch in prompt):
                    continue
                tokens = conditioner.prepare(prompt)[0].tolist()
                after_eos = model.model_recommended_frames_after_eos
                pieces.append(PocketPiece(prompt, after_eos if after_eos is not None else guess + 2, tokens))
        return pieces

    def admit(self, job: "Job") -> None:
        prepared: PocketPrepared = job.request.prepared
        self._active.append(_Active(job, collections.deque(prepared.sentences)))

    def release(self, job: "Job") -> None:
        for entry in list(self._active):
            if entry.job is job:
                self._active.remove(entry)

    def active_jobs(self) -> list["Job"]:
        return [entry.job for entry in self._active]

    def step(self) -> bool:
        if not self._active:
            return False
        entry = self._active.popleft()
        job = entry.job
        limit = int(job.request.max_audio_seconds * self.sample_rate)
        state = self._voice_states[str(job.request.prepared.voice_source)]
        piece: PocketPiece | None = entry.sentences.popleft() if entry.sentences else None
        stop = threading.Event()
        truncated = False
        if piece is not None:
            for chunk in self._model._generate_audio_stream_short_text(
                    model_state=state, text_to_generate=piece.text, frames_after_eos=piece.frames_after_eos,
                    copy_state=True, stop=stop):
                pcm = chunk.detach().cpu().numpy().astype(np.float32, copy=False)
                if entry.samples + len(pcm) >= limit:
                    pcm = pcm[: max(limit - entry.samples, 0)]
                    truncated = True
                if len(pcm):
                    job.push_audio(np.clip(pcm, -1.0, 1.0))
                    entry.samples += len(pcm)
                if truncated or job.cancelled:
                    stop.set()
                    break
        if truncated:
            job.finish(truncated=True)
        elif job.cancelled:
            return True  # the scheduler frees it and tells the requester
        elif entry.sentences:
            self._active.append(entry)  # back of the line: the others speak their next sentence first
        else:
            job.finish()
        return True

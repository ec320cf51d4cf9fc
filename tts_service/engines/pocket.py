"""Kyutai Pocket TTS through the pocket-tts package: Spanish, German, Italian, Portuguese, and more.

One model per language, loaded with the package's own `TTSModel.load_model` (its language config,
or a configured YAML). The package generates one request at a time, a whole sentence per call,
in its own generation and decoding threads. Here the worker drives the package's modules itself,
one frame (80 ms of audio) per step for every active request: a new request hears its first
audio one frame-round after it is admitted, and cancellation and deadlines are checked every
frame. The loop follows the package's own `_generate` / `_autoregressive_generation` /
`_decode_audio_worker` (pocket_tts/models/tts_model.py, 4.0.1) call for call, so that a request
alone gets exactly the audio `generate_audio` gives; it is pinned to that version and falls back
to the package's per-sentence generator when the internals differ.
"""

from __future__ import annotations

import collections
import copy
import importlib.metadata
import logging
import threading
import warnings
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
# The package version whose internals the frame loop was written against.
FRAME_LOOP_VERSION = "4.0.1"
_MODEL_ATTRIBUTES = ("_run_flow_lm_and_increment_step", "_expand_kv_cache", "_flow_lm_current_end",
                     "_estimate_max_gen_len", "_MIN_FRAMES_BEFORE_EOS", "flow_lm", "mimi", "eos_threshold")


def frame_loop_problem(model) -> str | None:
    """Why the frame loop cannot drive this model (None when it can): version and internals."""
    try:
        version = importlib.metadata.version("pocket-tts")
    except importlib.metadata.PackageNotFoundError:
        return "pocket-tts is not installed as a distribution"
    if version != FRAME_LOOP_VERSION:
        return f"pocket-tts {version} is installed; the frame loop was written for {FRAME_LOOP_VERSION}"
    missing = [name for name in _MODEL_ATTRIBUTES if not hasattr(model, name)]
    missing += [f"mimi.{name}" for name in ("decode_from_latent", "encoder_frame_rate", "frame_rate")
                if not hasattr(getattr(model, "mimi", None), name)]
    missing += [f"flow_lm.{name}" for name in ("emb_std", "emb_mean", "ldim", "dtype", "conditioner")
                if not hasattr(getattr(model, "flow_lm", None), name)]
    if missing:
        return f"pocket-tts lacks {', '.join(missing)}"
    return None


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
class _Piece:
    """One chunk being generated: its flow-LM and Mimi states, as the package keeps them."""

    flow_state: dict
    mimi_state: dict
    latent: object  # the last latent, fed back in; NaN (the package's BOS) at the start
    max_frames: int
    frames_after_eos: int
    frame: int = 0
    eos_frame: int | None = None
    faded: bool = False


@dataclass
class _Active:
    job: "Job"
    sentences: collections.deque = field(default_factory=collections.deque)
    samples: int = 0
    piece: _Piece | None = None


class PocketEngine(Engine):
    provider = "Kyutai Pocket TTS"

    def __init__(self, settings: Settings, language: str):
        super().__init__()
        self.settings = settings
        self.language = language
        self.package_language = PACKAGE_LANGUAGES.get(language)
        if self.package_language is None and not self._config:
            raise ValueError(f"Pocket TTS has no model for {language!r}; "
                             f"it speaks {', '.join(sorted(PACKAGE_LANGUAGES))}")
        self._model = None
        self._frame_loop = False
        self._voice_states: dict[str, object] = {}
        self._broken_voices: set[str] = set()
        self._active: collections.deque[_Active] = collections.deque()
        self._voice_dir = Path(settings.voice_dir).expanduser() if settings.voice_dir else None
        self._stop = threading.Event()

    # -- description -----------------------------------------------------------------------
    @property
    def _config(self) -> str:
        """This language's YAML: `<language>.yaml` in TTS_POCKET_CONFIG_DIR, else TTS_POCKET_CONFIG."""
        if self.settings.pocket_config_dir:
            path = Path(self.settings.pocket_config_dir).expanduser() / f"{self.language}.yaml"
            if path.is_file():
                return str(path)
        return self.settings.pocket_config

    @property
    def quantized(self) -> bool:
        """int8 as Kyutai serves Pocket TTS on CPUs; off next to a CUDA device unless asked for."""
        if self.settings.pocket_quantize == "auto":
            return not self.settings.resolved_device().startswith("cuda")
        return self.settings.pocket_quantize == "on"

    @property
    def model_id(self) -> str:
        if self._config:
            return self._config
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
        if self._config:
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
        # pocket-tts quantizes through torch.ao, which torch has deprecated: nothing to act on here.
        # (A filter, not catch_warnings: two languages may load at once, and that is not thread-safe.)
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
        self._load_model()
        names, default = self.voices(self.language)
        if default is None:
            raise ValueError("Pocket TTS has no voice: set TTS_POCKET_VOICE to a WAV in TTS_VOICE_DIR")
        if default not in names:
            raise ValueError(f"TTS_POCKET_VOICE={default!r} is not a voice; available: {', '.join(names)}")
        problem = frame_loop_problem(self._model)
        self._frame_loop = problem is None
        if problem:
            logger.warning("Pocket TTS %s: %s; generating a sentence per step instead of a frame",
                           self.language, problem)
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

    def _load_model(self) -> None:
        from pocket_tts import TTSModel

        quantize = self.quantized
        config = self._config
        if config:
            if not config.startswith("hf://") and not Path(config).expanduser().is_file():
                raise ModelDownloadError(f"TTS_POCKET_CONFIG={config!r}: no such file.")
            self._model = download(config, "the Pocket TTS model",
                                   lambda: TTSModel.load_model(config=config, quantize=quantize),
                                   "TTS_POCKET_CONFIG")
        else:
            self._model = download("kyutai/pocket-tts", f"the Pocket TTS {self.package_language} model",
                                   lambda: TTSModel.load_model(language=self.package_language,
                                                               quantize=quantize),
                                   "TTS_POCKET_LANGUAGES")

    def unload(self) -> None:
        """Give the model's memory back (an unused language); the next request loads it again."""
        import gc

        with self._load_lock:
            if self._active or self.state != "ready":
                return
            self.state = "idle"
            self._model = None
            self._voice_states.clear()
        gc.collect()

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
        if not self._frame_loop:
            return self._step_sentence()
        for entry in list(self._active):
            self._advance(entry)
        return True

    # -- one frame per step ----------------------------------------------------------------
    def _advance(self, entry: _Active) -> None:
        """One frame of `entry`'s current piece (starting the next piece when one ends)."""
        import torch

        job = entry.job
        with torch.no_grad():
            pcm = None
            while pcm is None:
                if entry.piece is None:
                    if not entry.sentences:
                        self._active.remove(entry)
                        job.finish()
                        return
                    entry.piece = self._start_piece(job, entry.sentences.popleft())
                pcm = self._next_frame(entry.piece)
                if pcm is None:
                    entry.piece = None  # this piece ended; the next one starts in this same step
        limit = int(job.request.max_audio_seconds * self.sample_rate)
        pcm = pcm[: max(limit - entry.samples, 0)]
        if len(pcm):
            job.push_audio(np.clip(pcm, -1.0, 1.0))
            entry.samples += len(pcm)
        if entry.samples >= limit:
            self._active.remove(entry)
            job.finish(truncated=True)

    def _start_piece(self, job: "Job", piece: PocketPiece) -> _Piece:
        """A fresh copy of the voice state, prompted with the piece's tokens (as `_generate` does)."""
        import torch
        from pocket_tts.modules.stateful_module import init_states

        model = self._model
        state = copy.deepcopy(self._voice_states[str(job.request.prepared.voice_source)])
        tokens = torch.tensor([piece.tokens], dtype=torch.long, device=model.device)
        max_frames = model._estimate_max_gen_len(len(piece.tokens))
        model._expand_kv_cache(state, sequence_length=model._flow_lm_current_end(state) + len(piece.tokens)
                               + max_frames)
        model._run_flow_lm_and_increment_step(model_state=state, text_tokens=tokens)
        steps_per_latent = int(model.mimi.encoder_frame_rate / model.mimi.frame_rate)
        mimi_state = init_states(model.mimi, batch_size=1, sequence_length=max_frames * steps_per_latent)
        latent = torch.full((1, 1, model.flow_lm.ldim), float("NaN"), device=model.device,
                            dtype=model.flow_lm.dtype)
        return _Piece(state, mimi_state, latent, max_frames, piece.frames_after_eos)

    def _next_frame(self, piece: _Piece) -> np.ndarray | None:
        """The next frame's PCM, or None when the piece is over (its end of speech, or its length)."""
        model = self._model
        if piece.frame >= piece.max_frames:
            return None
        latent, is_eos = model._run_flow_lm_and_increment_step(model_state=piece.flow_state,
                                                               backbone_input_latents=piece.latent)
        step = piece.frame
        piece.frame += 1
        if is_eos.item() and piece.eos_frame is None and step >= model._MIN_FRAMES_BEFORE_EOS:
            piece.eos_frame = step
        if piece.eos_frame is not None and step >= piece.eos_frame + piece.frames_after_eos:
            return None
        piece.latent = latent
        return self._decode(piece, latent)

    def _decode(self, piece: _Piece, latent) -> np.ndarray:
        import torch
        from pocket_tts.modules.stateful_module import increment_steps

        model = self._model
        audio = model.mimi.decode_from_latent(torch.cat([latent], dim=1) * model.flow_lm.emb_std
                                              + model.flow_lm.emb_mean, piece.mimi_state)
        if not piece.faded:
            # The package fades the first 5 ms of every chunk in: a fresh decoder state clicks.
            fade = torch.linspace(0, 1, self.sample_rate // 200)
            n = min(fade.numel(), audio.shape[-1])
            audio[..., :n] *= fade[:n].to(audio)
            piece.faded = True
        increment_steps(model.mimi, piece.mimi_state,
                        increment=int(model.mimi.encoder_frame_rate / model.mimi.frame_rate))
        return audio[0, 0].detach().cpu().numpy().astype(np.float32, copy=False)

    # -- one sentence per step (other pocket-tts versions) ---------------------------------
    def _step_sentence(self) -> bool:
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
